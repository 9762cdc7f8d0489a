"""The core trains and evaluates anywhere: importing it (and the CLI's ROS-free commands) never needs rclpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Make every ROS import fail in the child, then import everything that must work without ROS.
PROBE = """
import sys
# A None entry in sys.modules makes `import X` fail and find_spec(X) answer None, as if X were not installed.
for name in ('rclpy', 'sensor_msgs', 'std_msgs', 'rcl_interfaces', 'diagnostic_msgs', 'launch', 'launch_ros',
             'vsseg_ros.msg'):
    sys.modules[name] = None
import numpy as np
import vsseg_ros.core.loading, vsseg_ros.core.visualize, vsseg_ros.core.mailbox
import vsseg_ros.imaging.decode, vsseg_ros.imaging.encode, vsseg_ros.imaging.video
import vsseg_ros.data.camvid, vsseg_ros.metrics.confusion, vsseg_ros.metrics.evaluate
import vsseg_ros.training.perframe, vsseg_ros.model_files.package
import vsseg_ros.fleet.run, vsseg_ros.fleet.tasks, vsseg_ros.metrics.mergeable, vsseg_ros.bench.fleet
assert 'ray' not in sys.modules  # Ray is imported by the --ray path only
from vsseg_ros.cli import main
assert main(['node']) == 2  # a clear message, not a traceback
print('ROS-FREE OK')
"""


def test_core_imports_and_cli_work_without_ros():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ROS-FREE OK" in out.stdout
    assert "needs ROS 2" in out.stderr
