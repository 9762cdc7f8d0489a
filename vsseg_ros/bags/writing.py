"""What both bag writers share: the storages accepted, opening a rosbags Writer with the path and storage checked,
the QoS profile a topic is offered with, metadata.yaml's version number per distro, and the size of what was
written. Every failure is a :class:`BagWriteError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsseg_ros.bags.typestore import METADATA_VERSION, WRITE_VERSION

STORAGES = ("mcap", "sqlite3")


class BagWriteError(ValueError):
    """A bag that cannot be written as asked (existing path, bad option, frames out of order)."""


def offered_qos(reliable: bool = True, depth: int = 10, transient_local: bool = False) -> Any:
    """An offered QoS profile for the bag's metadata (``ros2 bag play`` republishes with it)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)  # 0 = the RMW default (infinite) for deadline, lifespan, lease
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


def bag_size(path: Path) -> int:
    """Bytes of a bag file, or of every file in a bag folder."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def open_writer(path: Path, storage: str, distro: str) -> Any:
    """A rosbags Writer (not yet opened) for a new bag at ``path`` in ``storage``, with ``distro``'s bag version."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise BagWriteError(f"unknown storage {storage!r}; accepted: {', '.join(STORAGES)}")
    if path.exists():
        raise BagWriteError(f"{path} exists already; choose another output path or remove it")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=WRITE_VERSION[distro], storage_plugin=plugin)


def set_metadata_version(path: Path, distro: str) -> None:
    """Give metadata.yaml the version number ``distro``'s rosbag2 writes (see :data:`METADATA_VERSION`)."""
    import re

    version = METADATA_VERSION[distro]
    if version == WRITE_VERSION[distro]:
        return
    meta = path / "metadata.yaml"
    # the key of rosbag2_bagfile_information (indented 2; folded custom_data lines are indented deeper)
    text, n = re.subn(r"^  version: \d+$", f"  version: {version}", meta.read_text(), flags=re.MULTILINE)
    if n != 1:  # pragma: no cover - rosbags always writes the key
        raise BagWriteError(f"{meta} has no version line to set")
    meta.write_text(text)
