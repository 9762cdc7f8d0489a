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


def set_parameters(node, target: str, timeout: float = 60.0, **values) -> list:
    """Set parameters of the node ``target`` (its full name) from our rclpy ``node``; the SetParametersResults."""
    import time

    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(node, target)
    assert params.wait_for_services(10.0)
    fut = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    deadline = time.monotonic() + timeout
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fut.done(), "set_parameters did not answer"
    return fut.result().results
