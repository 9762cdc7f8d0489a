"""One version everywhere a user or a tool reads it: package.xml (colcon, rosdep), pyproject.toml (pip),
``vsseg_ros.__version__`` and the newest CHANGELOG.rst entry (the ROS release tooling takes it from there)."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import vsseg_ros

ROOT = Path(__file__).resolve().parents[1]


def test_versions_agree() -> None:
    package_xml = ET.parse(ROOT / "package.xml").getroot().findtext("version")
    # a regex, not tomllib: the package supports Python 3.10, which has no tomllib
    pyproject = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pyproject is not None, "pyproject.toml has no version line"
    changelog = re.search(r"^(\d+\.\d+\.\d+) \(\d{4}-\d{2}-\d{2}\)$", (ROOT / "CHANGELOG.rst").read_text(), re.M)
    assert changelog is not None, "CHANGELOG.rst has no 'X.Y.Z (YYYY-MM-DD)' release heading"
    found = {
        "package.xml": package_xml,
        "pyproject.toml": pyproject.group(1),
        "vsseg_ros.__version__": vsseg_ros.__version__,
        "CHANGELOG.rst (newest)": changelog.group(1),
    }
    assert len(set(found.values())) == 1, f"versions disagree: {found}"
