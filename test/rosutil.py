"""Helpers for the tests that talk to a real node."""

from __future__ import annotations

import importlib.util

import pytest

HAVE_RCLPY = importlib.util.find_spec("rclpy") is not None
try:
    HAVE_MSGS = HAVE_RCLPY and importlib.util.find_spec("vsseg_ros.msg") is not None
except ModuleNotFoundError:
    HAVE_MSGS = False

needs_ros = pytest.mark.skipif(
    not HAVE_MSGS,
    reason="rclpy or the built vsseg_ros messages are missing: run `make test` (it builds them with colcon)",
)
