"""The real node over DDS on each installed exported backend: masks with the input's exact stamp, the backend in
its log, the ``backend`` parameter validated at start (exit 2) and at runtime (refused with what is available)."""

from __future__ import annotations

import importlib.util
import re

import pytest

from rosutil import needs_ros
from test_node import _next_stamp, _rgb, _set_params, _start
from test_node_startup import _check_clean_failure, _start as _start_cli

pytestmark = needs_ros

ENGINES = [
    pytest.param(e, marks=pytest.mark.skipif(importlib.util.find_spec(e) is None, reason=f"{e} not installed"))
    for e in ("onnxruntime", "openvino")
]


@pytest.fixture(scope="module")
def rclpy_ctx():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture(autouse=True)
def _export_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VSSEG_EXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "export-cache"))


@pytest.mark.parametrize("backend", ENGINES)
def test_node_on_each_backend_publishes_masks_with_the_input_stamp(tmp_path_factory, rclpy_ctx, backend):
    from vsseg_ros.ros.node_client import SegmentationClient, make_image_msg

    node = _start(tmp_path_factory, f"node_{backend}", backend=backend)
    client = SegmentationClient(outputs=("mask",), name=f"client_{backend}")
    try:
        assert client.wait_until_serving("mask", _rgb(), 120.0, node.alive), node.log()[-3000:]
        stamp = _next_stamp()
        key = client.publish(make_image_msg(_rgb(), "rgb8", stamp, frame_id="cam_b"))
        mask = client.wait_for("mask", key, 30.0)
        assert mask is not None, node.log()[-3000:]
        assert mask.header.stamp.sec * 1_000_000_000 + mask.header.stamp.nanosec == stamp
        assert mask.header.frame_id == "cam_b" and (mask.height, mask.width) == _rgb().shape[:2]
        log = node.log()
        assert re.search(rf"backend {backend}: {backend} ", log), log[-2000:]  # which engine and provider run
        # the thread setup: the engine's pool, pre/post-processing on one torch thread (docs/deployment.md)
        threads = rf"backend {backend}: .*\d thread\(s\).*pre/post-processing on 1 torch thread"
        assert re.search(threads, log), log[-2000:]
        if backend == "onnxruntime":
            for value, reason in (
                ("tensorrt", r"not available here.*available: auto, torch"),
                ("tflite", r"not known.*torch, onnxruntime"),
            ):
                (result,) = _set_params(client, {"backend": value})
                assert not result.successful and re.search(reason, result.reason), result.reason
            (result,) = _set_params(client, {"backend": "torch"})
            assert result.successful, result.reason
            key = client.publish(make_image_msg(_rgb(seed=1), "rgb8", _next_stamp()))
            assert client.wait_for("mask", key, 30.0) is not None
    finally:
        client.close()
        assert node.stop() == 0, node.log()[-2000:]


def test_backend_not_installed_stops_the_node_at_start_with_what_is_available(tmp_path_factory, rclpy_ctx):
    from vsseg_ros.runtimes.backends import backend_status

    if backend_status()["tensorrt"] is None:
        pytest.skip("TensorRT is installed here")
    proc = _start_cli(tmp_path_factory.mktemp("node_trt"), "node_trt", ["-p", "backend:=tensorrt"])
    _check_clean_failure(proc, r"backend 'tensorrt' is not available here.*available: auto, torch")
