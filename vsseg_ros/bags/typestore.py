"""Which rosbags typestore reads or writes a bag, and this package's own message types for it.

The message types a bag of camera frames uses (sensor_msgs Image, CompressedImage, CameraInfo, std_msgs Header)
have the same definition in every ROS 2 distribution since Dashing, so any distro's store decodes them. The
choice still matters for what a writer embeds (message definitions and type hashes, which newer ``ros2 bag``
versions check) and for bags without embedded definitions (Humble's sqlite3 bags), which can only be read
with a store that knows the types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

#: distro name -> rosbags store; "latest" is the newest one rosbags knows
DISTROS: dict[str, Stores] = {
    "foxy": Stores.ROS2_FOXY,
    "galactic": Stores.ROS2_GALACTIC,
    "humble": Stores.ROS2_HUMBLE,
    "iron": Stores.ROS2_IRON,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}
DEFAULT_DISTRO = "kilted"

#: rosbag2 metadata version rosbags writes for each distro: only 8 or 9 exist there. 8 stores QoS profiles as
#: the YAML string older readers parse; 9 as a list, which Humble's reader cannot convert.
WRITE_VERSION: dict[str, int] = {"foxy": 8, "galactic": 8, "humble": 8, "iron": 8, "jazzy": 9, "kilted": 9}
#: the version that distro's own rosbag2 writes (and the newest it knows); the v8 file rosbags writes has every
#: field these versions have, so only the number in metadata.yaml is lowered for the older ones
METADATA_VERSION: dict[str, int] = {"foxy": 4, "galactic": 5, "humble": 5, "iron": 8, "jazzy": 9, "kilted": 9}

PACKAGE = "vsseg_ros"
PACKAGE_TYPES = ("ClassMap", "SemanticSegmentation")


def distro_names() -> str:
    return ", ".join(DISTROS)


def typestore_for(distro: Optional[str] = None) -> Typestore:
    """The store of ``distro`` (a name in :data:`DISTROS`); None or an unknown name (such as the ``rosbags``
    a rosbags-written bag records) gives :data:`DEFAULT_DISTRO`'s."""
    key = (distro or "").strip().lower()
    return get_typestore(DISTROS.get(key, DISTROS[DEFAULT_DISTRO]))


def check_distro(distro: str) -> str:
    key = distro.strip().lower()
    if key not in DISTROS:
        raise ValueError(f"unknown ROS 2 distribution {distro!r}; accepted: {distro_names()}")
    return key


def package_msg_dir() -> Optional[Path]:
    """Where this package's .msg files are: the installed share folder, else the source checkout's ``msg/``."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            share = Path(get_package_share_directory(PACKAGE)) / "msg"
            if share.is_dir():
                return share
        except PackageNotFoundError:
            pass
    except ImportError:  # no ROS at all: the source checkout still has the files
        pass
    checkout = Path(__file__).resolve().parents[2] / "msg"
    return checkout if checkout.is_dir() else None


def add_package_types(typestore: Typestore) -> Typestore:
    """Register ``vsseg_ros/msg/{ClassMap, SemanticSegmentation}`` (from their .msg text) in ``typestore``.

    Raises FileNotFoundError when the .msg files cannot be found (neither installed nor in a checkout)."""
    folder = package_msg_dir()
    if folder is None:
        raise FileNotFoundError(
            f"the {PACKAGE} .msg files were not found (no installed share/{PACKAGE}/msg and "
            "no source checkout); source the workspace's install/setup.bash"
        )
    types = {}
    for name in PACKAGE_TYPES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"{PACKAGE}/msg/{name}"))
    typestore.register(types)
    return typestore


__all__ = [
    "DEFAULT_DISTRO",
    "DISTROS",
    "METADATA_VERSION",
    "WRITE_VERSION",
    "add_package_types",
    "check_distro",
    "distro_names",
    "package_msg_dir",
    "typestore_for",
]
