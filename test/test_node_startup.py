"""Starting the node as a user does (`vsseg-ros node --ros-args ...`): every bad start value, refused ROS
argument and signal before the node is up ends with exit status 2, one FATAL line saying why, and no traceback.
The processes of a test start together (each imports torch: seconds), then each is checked."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from rosutil import needs_ros

pytestmark = needs_ros

BAD_VALUES = {
    "cuda:99": (["-p", "device:=cuda:99"], "cuda:99"),
    "missing model": (["-p", "model_path:=/nonexistent.pt"], "/nonexistent.pt"),
    "int4": (["-p", "precision:=int4"], "precision"),
    "negative width": (["-p", "network_image_width:=-5"], "network_image_width"),
    "alpha 1.5": (["-p", "overlay_alpha:=1.5"], "overlay_alpha"),
    "wrong type": (["-p", "max_input_pixels:=lots"], "max_input_pixels"),
    "width without height": (["-p", "network_image_width:=320"], "network_image_height"),
    "bad remap": (["-r", "__ns:=cam-0"], "ROS arguments|namespace"),
}


def _start(tmp_path, name: str, ros_args=(), extra_args=()):
    from vsseg_ros.ros.node_process import NodeProcess

    return NodeProcess(log_path=tmp_path / f"{name}.log", extra_args=(*extra_args, "--ros-args", *ros_args))


def _check_clean_failure(proc, pattern: str) -> None:
    rc = proc.wait(120.0)
    log = proc.log()
    proc.stop()
    fatal = [ln for ln in log.splitlines() if "FATAL" in ln]
    assert rc == 2, f"exit {rc}:\n{log[-2000:]}"
    assert "Traceback" not in log, log
    assert len(fatal) == 1, log
    assert re.search(pattern, fatal[0]), fatal[0]


def test_every_bad_start_value_exits_2_with_one_fatal_line(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage, not a checkpoint" * 10)
    cases = {
        **BAD_VALUES,
        "corrupt model": (["-p", f"model_path:={corrupt}"], f"{corrupt}.*(corrupt|not a)"),
        "depth 0": (["-p", "input_qos_depth:=0"], "input_qos_depth"),
    }
    procs = {name: _start(tmp_path, re.sub(r"\W", "_", name), args) for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        _check_clean_failure(proc, cases[name][1])


def test_a_relative_namespace_is_made_absolute_and_a_bad_one_refused(tmp_path):
    from vsseg_ros.commands.node import node_namespace

    assert node_namespace("cam0") == "/cam0" and node_namespace("/cam0/") == "/cam0" and node_namespace("") == ""
    assert node_namespace("front/cam0") == "/front/cam0"
    with pytest.raises(ValueError, match="cam-0"):
        node_namespace("cam-0")
    proc = _start(tmp_path, "badns", extra_args=("--namespace", "cam-0"))
    assert proc.wait(60.0) == 2 and "not a valid ROS namespace" in proc.log() and "Traceback" not in proc.log()
    proc.stop()


def test_a_signal_before_the_node_is_up_exits_2_cleanly(tmp_path):
    """SIGINT during the imports (0.3 s in: torch is being imported), SIGTERM while the model loads."""
    early = _start(tmp_path, "sigint_import")
    loading = _start(tmp_path, "sigterm_model")
    time.sleep(0.3)
    os.killpg(early.proc.pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while "loading the model" not in loading.log() and time.monotonic() < deadline and loading.alive():
        time.sleep(0.01)
    os.killpg(loading.proc.pid, signal.SIGTERM)
    _check_clean_failure(early, "SIGINT")
    _check_clean_failure(loading, "SIGTERM")


def test_a_signal_a_library_turns_into_its_own_error_still_reads_as_the_signal():
    """CI caught SIGTERM arriving while an extension module was being imported: pybind11 turned the interrupt
    into ``ImportError: initialization failed``, and the node blamed that. Here the model load re-raises the
    interrupt as a library's error, and importing rclpy does as an extension's import would."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os, signal, sys
        where = sys.argv[1]

        def interrupted_by(exc_type, text):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except BaseException as err:  # as a C library does: the interrupt becomes its own error
                raise exc_type(text) from err

        if where == "model":
            import vsseg_ros.ros.node as node_module

            def init(self, *a, **k):
                interrupted_by(RuntimeError, "initialization failed")

            node_module.SegmentationNode.__init__ = init
        else:
            import rclpy
            rclpy.init = lambda *a, **k: interrupted_by(ImportError, "initialization failed")
        from vsseg_ros.ros.main import main
        sys.exit(main(["--ros-args", "-r", "__node:=startup_interrupt"]))
        """
    )
    for where in ("model", "import"):
        out = subprocess.run([sys.executable, "-c", script, where], capture_output=True, text=True, timeout=120)
        text = out.stdout + out.stderr
        fatal = [ln for ln in text.splitlines() if "FATAL" in ln]
        assert out.returncode == 2 and "Traceback" not in text and len(fatal) == 1, (where, text)
        assert "SIGTERM arrived while the node was starting" in fatal[0], (where, fatal)
