"""Test-wide setup: every test run gets its own ROS_DOMAIN_ID and keeps DDS on loopback; a fixture for
modules whose small models run faster on one torch thread."""

from __future__ import annotations

import os
import random
import time

import pytest

from vsseg_ros.ros.node_process import apply_local_ros_env

# Before anything imports rclpy: this process and every node it starts share these.
apply_local_ros_env(
    domain_id=int(os.environ.get("VSSEG_TEST_DOMAIN_ID") or random.Random(os.getpid() ^ time.time_ns()).randint(1, 100))
)


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test (small models: thread start-up costs more than it saves)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
