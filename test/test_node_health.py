"""Health levels: the rules (no ROS), then a real node's /diagnostics, its warning about a matched publisher
whose frames never arrive, and a model that raises on some frames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rosutil import needs_ros
from vsseg_ros.ros import health
from vsseg_ros.ros.health import ERROR, OK, WARN, Limits, Period, assess

LIMITS = Limits(input_timeout_s=5.0, latency_budget_ms=500.0, expected_rate_hz=0.0, max_drop_rate=0.5)


def period(**kw) -> Period:
    base = dict(
        seconds=5.0,
        received=50,
        processed=50,
        dropped=0,
        rejected=0,
        failed=0,
        skipped=0,
        latency_ms=(100.0,) * 50,
        since_input_s=0.1,
        active_for_s=60.0,
    )
    return Period(**{**base, **kw})


@pytest.mark.parametrize(
    "kw, limits, level, text",
    [
        ({}, LIMITS, OK, "ok"),
        ({"active": False, "since_input_s": None}, LIMITS, OK, "inactive"),
        ({"dropped": 40, "processed": 10}, LIMITS, WARN, "drop rate 80%"),
        ({"dropped": 2, "received": 3, "processed": 1}, LIMITS, OK, "ok"),  # too few frames to judge a rate
        ({"latency_ms": (100.0,) * 90 + (900.0,) * 10}, LIMITS, WARN, "latency p95"),
        ({"received": 100}, Limits(expected_rate_hz=30.0), WARN, "input rate 20.0 Hz below"),
        ({"received": 140}, Limits(expected_rate_hz=30.0), OK, "ok"),  # 28 Hz: within 10 %
        ({"rejected": 3}, LIMITS, WARN, "rejected"),
        ({"failed": 1, "failing_in_a_row": 1}, LIMITS, WARN, "failed in the model"),
        ({"failed": 4, "failing_in_a_row": 4, "last_failure": "RuntimeError: boom"}, LIMITS, ERROR, "model failing"),
        ({"since_input_s": 7.5, "received": 0, "processed": 0}, LIMITS, ERROR, "no input for 7.5 s"),
        ({"since_input_s": None, "active_for_s": 9.0, "received": 0, "processed": 0}, LIMITS, ERROR, "no input"),
        ({"in_model_s": 12.0, "processed": 0}, LIMITS, ERROR, "inference stalled"),
        ({"since_input_s": 60.0, "received": 0, "processed": 0}, Limits(input_timeout_s=0.0), OK, "ok"),
        ({"processed": 0}, LIMITS, WARN, "none is processed"),
    ],
)
def test_health_rules(kw, limits, level, text):
    got, message = assess(period(**kw), limits)
    assert got == level and text in message, (got, message)


def test_every_problem_is_listed_errors_first():
    level, message = assess(period(rejected=2, since_input_s=8.0, latency_ms=(900.0,)), LIMITS)
    assert level == ERROR and message.index("no input") < message.index("rejected") < message.index("latency")


@pytest.fixture(scope="module")
def rclpy_ctx():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


@needs_ros
def test_diagnostics_levels_and_the_silent_publisher_warning(tmp_path, rclpy_ctx):
    """A fresh node (no frame yet): a publisher matched on its input that sends nothing gets the once-only
    warning naming the fix; /diagnostics says ERROR (no input), then OK once frames flow, per camera (name
    and hardware_id)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from vsseg_ros.ros.node_client import SegmentationClient, make_image_msg
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file
    from vsseg_ros.ros.qos import qos_profile

    params = {
        "network_image_height": 96,
        "network_image_width": 128,
        "worker_threads": 1,
        "stats_period": 0.5,
        "input_timeout": 1.5,
        "latency_budget_ms": 0.0,
    }
    proc = NodeProcess(
        params_file=write_params_file(params, path=tmp_path / "p.yaml"),
        log_path=tmp_path / "n.log",
        image_topic="/hl/image",
        extra_args=("--namespace", "hl"),
    )
    client = SegmentationClient(image_topic="/hl/image", namespace="/hl", outputs=("mask",), name="hl_client")
    statuses: list = []
    peer = Node("hl_peer")
    peer.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: statuses.extend(s for s in m.status if s.name.startswith("/hl/")), 10
    )
    silent = peer.create_publisher(Image, "/hl/image", qos_profile("reliable", 1))  # matched, never publishes
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor()
    ex.add_node(peer)
    threading.Thread(target=ex.spin, daemon=True).start()
    try:
        assert client.wait_for_class_map(120.0, proc.alive) is not None, proc.log()[-2000:]
        deadline = time.monotonic() + 20
        while "no frame has arrived" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        warning = [ln for ln in proc.log().splitlines() if "no frame has arrived" in ln]
        assert len(warning) == 1 and "FASTDDS_DEFAULT_PROFILES_FILE" in warning[0] and "input_qos" in warning[0]
        deadline = time.monotonic() + 20
        while not any(s.level == bytes([ERROR]) for s in statuses) and time.monotonic() < deadline:
            time.sleep(0.1)
        err = [s for s in statuses if s.level == bytes([ERROR])]
        assert err and "no input" in err[-1].message, [s.message for s in statuses]
        assert err[-1].name == "/hl/segmentation_node: /hl/image"
        assert client.wait_until_serving("mask", np.zeros((48, 64, 3), np.uint8), 60.0, proc.alive)
        for i in range(8):  # frames flow: the next report is OK, hardware_id the camera's frame_id
            client.publish(
                make_image_msg(np.zeros((48, 64, 3), np.uint8), "rgb8", 5_000_000_000 + i * 10**8, frame_id="front_cam")
            )
            time.sleep(0.15)
        n = len(statuses)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            s.level == bytes([OK]) and s.hardware_id == "front_cam" for s in statuses[n:]
        ):
            time.sleep(0.1)
        ok = [s for s in statuses[n:] if s.hardware_id == "front_cam"]
        assert ok and ok[-1].level == bytes([OK]), [(s.level, s.message) for s in statuses[n:]]
        keys = {kv.key for kv in ok[-1].values}
        assert {"received", "dropped", "drop_rate", "pipeline_latency_ms_p95", "input_rate_hz", "state"} <= keys
        assert sum("no frame has arrived" in ln for ln in proc.log().splitlines()) == 1
    finally:
        ex.shutdown(timeout_sec=1.0)
        peer.destroy_publisher(silent)
        peer.destroy_node()
        client.close()
        assert proc.stop() == 0


@needs_ros
def test_a_model_exception_is_counted_logged_once_and_the_node_goes_on(rclpy_ctx):
    """In-process node, real DDS: the model raises on frames whose frame_id is "boom"; each is counted as failed,
    the first logged, three in a row make the health ERROR, and the next good frame is processed."""
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from vsseg_ros.ros.node import SegmentationNode
    from vsseg_ros.ros.node_client import make_image_msg
    from vsseg_ros.ros.qos import qos_profile

    overrides = [
        Parameter("network_image_height", value=96),
        Parameter("network_image_width", value=128),
        Parameter("stats_period", value=0.0),
    ]
    seg_node = SegmentationNode(namespace="/boom", parameter_overrides=overrides)
    push = seg_node._segmenter.push

    def flaky(frame, request):
        if frame.camera_id == "boom":
            raise RuntimeError("simulated model failure")
        return push(frame, request)

    seg_node._segmenter.push = flaky
    errors: list[str] = []
    log = seg_node.get_logger()
    original_error = log.error
    log.error = lambda text, **kw: errors.append(text) or original_error(text, **kw)  # type: ignore[method-assign]
    peer = Node("boom_peer")
    cam = peer.create_publisher(Image, "/boom/image", qos_profile("reliable", 5))
    masks: list = []
    peer.create_subscription(Image, "/boom/semantic/mask", masks.append, qos_profile("reliable", 5))
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(seg_node)
    ex.add_node(peer)
    threading.Thread(target=ex.spin, daemon=True).start()
    stamp = [6_000_000_000]

    def send(frame_id: str) -> None:
        stamp[0] += 10**8
        cam.publish(make_image_msg(np.zeros((48, 64, 3), np.uint8), "rgb8", stamp[0], frame_id=frame_id))

    try:
        deadline = time.monotonic() + 30
        while not masks and time.monotonic() < deadline:
            send("good")
            time.sleep(0.3)
        assert masks
        for _ in range(4):
            send("boom")
            time.sleep(0.4)
        c = seg_node.camera
        assert c.counters.failed == 4 and c.failing_in_a_row == 4
        p, _, _ = c.period(active=True)
        level, message = health.assess(p, seg_node._limits())
        assert level == ERROR and "simulated model failure" in message
        assert sum("inference failed" in e for e in errors) == 1
        before = len(masks)
        send("good")
        deadline = time.monotonic() + 10
        while len(masks) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(masks) > before and c.failing_in_a_row == 0
    finally:
        ex.shutdown(timeout_sec=2.0)
        seg_node.destroy_node()
        peer.destroy_node()
