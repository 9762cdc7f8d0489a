"""Environment for local ROS runs (tests, demo, bench): DDS stays on loopback, each run on its own domain."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Optional

#: shared-memory transport sized for whole camera frames (see the file for why)
FASTDDS_PROFILE = Path(__file__).with_name("fastdds_large_images.xml")


def local_ros_env(domain_id: Optional[int] = None, large_data: bool = True) -> dict[str, str]:
    """Settings for processes that only talk to each other on this machine.

    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` keeps discovery multicast off the network interfaces.
    ``ROS_DOMAIN_ID``: the caller's if set, else a random one so concurrent runs do not see each other.
    ``FASTDDS_DEFAULT_PROFILES_FILE``: :data:`FASTDDS_PROFILE`, a shared-memory segment large enough for whole
    frames; without it best-effort subscribers lose most frames over ~1 MB. Every process of the run must use
    the same setting (children inherit it).
    """
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID") or random.Random(os.getpid()).randint(1, 100))
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(domain_id)}
    if large_data:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return env


def apply_local_ros_env(**kwargs) -> dict[str, str]:
    """Set :func:`local_ros_env` in this process (before rclpy.init) and return it."""
    env = local_ros_env(**kwargs)
    os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)  # would override the profile's transports
    os.environ.update(env)
    return env
