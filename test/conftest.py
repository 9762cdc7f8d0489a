"""Test-wide setup: every test run gets its own ROS_DOMAIN_ID and keeps DDS on loopback."""

from __future__ import annotations

import os
import random
import time

from vsseg_ros.tools.rosenv import apply_local_ros_env

# Before anything imports rclpy: this process and every node it starts share these.
apply_local_ros_env(domain_id=int(os.environ.get("VSSEG_TEST_DOMAIN_ID") or
                                  random.Random(os.getpid() ^ time.time_ns()).randint(1, 100)))
