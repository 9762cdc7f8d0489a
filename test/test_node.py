"""The segmentation node end to end: a real node process, real rclpy, real Fast DDS."""

from __future__ import annotations

import re
import time
from typing import Any, Optional

import numpy as np
import pytest

from rosutil import needs_ros
from vsseg_ros.bench.memory import peak_rss_mb

pytestmark = needs_ros

H, W = 48, 64  # small frames keep the suite fast; the network runs at 96x128 here


def _rgb(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.uint8)
    return np.clip(img.astype(int) + rng.integers(-8, 8, img.shape), 0, 255).astype(np.uint8)


_stamp = [2_000_000_000]


def _next_stamp() -> int:
    _stamp[0] += 10_000_000
    return _stamp[0]


@pytest.fixture(scope="module")
def rclpy_ctx():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


def _start(tmp_path_factory, name: str, extra_args=(), **params):
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    d = tmp_path_factory.mktemp(name)
    base = {
        "network_image_height": 96,
        "network_image_width": 128,
        "max_input_pixels": 1_000_000,
        "stats_period": 1.0,
        "worker_threads": 1,
    }
    pf = write_params_file({**base, **params}, path=d / "params.yaml")
    return NodeProcess(params_file=pf, log_path=d / "node.log", extra_args=extra_args)


@pytest.fixture(scope="module")
def node(tmp_path_factory, rclpy_ctx):
    proc = _start(tmp_path_factory, "node")
    yield proc
    rc = proc.stop()
    assert rc == 0, f"node exited with {rc}:\n{proc.log()[-2000:]}"


@pytest.fixture(scope="module")
def client(node):
    from vsseg_ros.ros.node_client import SegmentationClient

    c = SegmentationClient(outputs=("segmentation", "mask", "boundary_confidence", "confidence", "color_mask"))
    assert c.wait_for_class_map(120.0, node.alive) is not None, (
        f"node never published its class map:\n{node.log()[-3000:]}"
    )
    for out in c.received:  # every output must be flowing before the tests start
        assert c.wait_until_serving(out, _rgb(), 60.0, node.alive), node.log()[-3000:]
    yield c
    c.close()


def _roundtrip(client, msg, outputs=("mask",), timeout=30.0):
    key = client.publish(msg)
    return key, [client.wait_for(o, key, timeout) for o in outputs]


def _encodings():
    from vsseg_ros.imaging.decode import SUPPORTED_ENCODINGS

    return SUPPORTED_ENCODINGS


@pytest.mark.parametrize("encoding", _encodings())
def test_every_encoding_gives_a_mask_at_input_size_with_the_input_header(client, encoding):
    from vsseg_ros.ros.convert import image_msg_to_array
    from vsseg_ros.ros.node_client import make_image_msg

    msg = make_image_msg(_rgb(), encoding, _next_stamp(), frame_id=f"cam_{encoding}")
    key, (mask, boundary, conf, color, seg) = _roundtrip(
        client, msg, ("mask", "boundary_confidence", "confidence", "color_mask", "segmentation")
    )
    assert mask is not None, f"no mask for {encoding}"
    assert (mask.height, mask.width, mask.encoding) == (H, W, "mono8")
    assert mask.header.stamp == msg.header.stamp and mask.header.frame_id == f"cam_{encoding}"
    labels = image_msg_to_array(mask)
    assert labels.max() < len(client.class_maps[-1].class_names)
    b = image_msg_to_array(boundary)
    assert boundary.encoding == "32FC1" and b.shape == (H, W) and 0.0 <= b.min() and b.max() <= 1.0
    c = image_msg_to_array(conf)
    assert c.shape == (H, W) and c.min() >= 1.0 / len(client.class_maps[-1].class_names) - 1e-4
    assert c.max() <= 1.0 + 1e-6
    assert color.encoding == "rgb8" and image_msg_to_array(color).shape == (H, W, 3)
    assert seg.header == msg.header and seg.frames_fused == 1 and seg.model_id
    assert seg.inference_time_ms > 0
    assert np.array_equal(image_msg_to_array(seg.mask), labels)


def test_class_map_reaches_a_late_subscriber(client):
    from vsseg_ros.ros.node_client import SegmentationClient

    time.sleep(1.0)
    late = SegmentationClient(outputs=(), name="late_subscriber")
    try:
        cm = late.wait_for_class_map(15.0)
        assert cm is not None
        assert len(cm.class_ids) == len(cm.class_names) == len(cm.colors) // 3 > 1
        assert cm.ignore_id == 255 and cm.model_id
    finally:
        late.close()


@pytest.mark.parametrize("camera_qos", ["reliable", "best_effort"])
def test_reliable_and_best_effort_cameras_both_reach_the_node(client, camera_qos):
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from vsseg_ros.ros.node_client import make_image_msg
    from vsseg_ros.ros.qos import qos_profile

    cam = Node(f"camera_{camera_qos}")
    pub = cam.create_publisher(Image, "/camera/image_raw", qos_profile(camera_qos, 5))
    try:
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.get_subscription_count() > 0, "QoS mismatch: the node did not match this camera"
        msg = make_image_msg(_rgb(), "rgb8", _next_stamp(), frame_id=camera_qos)
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        for _ in range(3):  # best effort may lose one; the same frame again is harmless
            pub.publish(msg)
            if client.wait_for("mask", key, 10.0) is not None:
                break
        assert client.get("mask", key) is not None
    finally:
        cam.destroy_node()


def test_camera_sized_frames_reach_the_best_effort_subscription(client):
    """1280x720 bgr8 (2.7 MB) into the default sensor-data subscription: without the shared-memory profile
    of local_ros_env, Fast DDS loses almost all such best-effort samples."""
    from vsseg_ros.ros.node_client import make_image_msg

    got = 0
    for i in range(3):
        msg = make_image_msg(_rgb(720, 1280, seed=i), "bgr8", _next_stamp(), frame_id="hd")
        _, (mask,) = _roundtrip(client, msg, timeout=20.0)
        got += mask is not None and (mask.height, mask.width) == (720, 1280)
    assert got == 3


BAD_FRAMES = {
    "unknown encoding": (dict(encoding="xyz16"), "not supported|unsupported|unknown"),
    "data length": (dict(data_cut=10), "step|length|bytes"),
    "zero size": (dict(height=0), "zero|empty"),
    "too large": (dict(height=1000, width=1100), "max_input_pixels"),
}


def _bad_msg(kind: str):
    import array

    from sensor_msgs.msg import Image

    from vsseg_ros.ros.node_client import make_image_msg

    spec = BAD_FRAMES[kind][0]
    h, w = spec.get("height", H), spec.get("width", W)
    msg = make_image_msg(_rgb(max(h, 1), w), "rgb8", _next_stamp(), frame_id="bad")
    if "encoding" in spec:
        msg.encoding = spec["encoding"]
    if "data_cut" in spec:
        msg.data = array.array("B", bytes(msg.data)[: -spec["data_cut"]])
    if h == 0:
        msg = Image(header=msg.header, height=0, width=w, encoding="rgb8", step=w * 3, data=array.array("B"))
    return msg


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
def test_bad_frame_is_rejected_once_and_the_node_keeps_working(node, client, kind):
    for _ in range(3):
        bad = _bad_msg(kind)
        client.publish(bad)
        assert client.wait_for("mask", (bad.header.stamp.sec, bad.header.stamp.nanosec), 0.5) is None
    from vsseg_ros.ros.node_client import make_image_msg

    good = make_image_msg(_rgb(), "rgb8", _next_stamp())
    _, (mask,) = _roundtrip(client, good)
    assert mask is not None, "the node stopped working after a bad frame"
    assert node.alive()
    pattern = BAD_FRAMES[kind][1]
    lines = [ln for ln in node.log().splitlines() if "rejected a frame" in ln and re.search(pattern, ln, re.I)]
    assert len(lines) == 1, f"expected the {kind!r} problem reported once, got {len(lines)}:\n" + "\n".join(lines)


def _set_params(client, values: dict):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    cli = client.node.create_client(SetParameters, "/segmentation_node/set_parameters")
    assert cli.wait_for_service(timeout_sec=10.0)
    req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    fut = cli.call_async(req)
    deadline = time.monotonic() + 60
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    client.node.destroy_client(cli)
    assert fut.done(), "set_parameters did not answer"
    return fut.result().results


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("overlay_alpha", 1.5, "range|overlay_alpha"),
        ("device", "tpu:0", "device"),
        ("precision", "int4", "precision|fp32"),
        ("model_path", "/nonexistent/model.pt", "/nonexistent/model.pt"),
        ("network_image_width", -5, "range|network_image_width"),
        ("input_qos", "reliable", "read-only|read only"),
    ],
)
def test_bad_parameter_values_are_refused_with_a_reason(client, name, value, reason):
    (result,) = _set_params(client, {name: value})
    assert not result.successful
    assert re.search(reason, result.reason, re.I), result.reason


def test_good_parameter_value_is_accepted_and_used(client):
    from vsseg_ros.ros.convert import image_msg_to_array
    from vsseg_ros.ros.node_client import make_image_msg

    (result,) = _set_params(client, {"overlay_alpha": 1.0})
    assert result.successful, result.reason
    rgb = _rgb()
    _, (color,) = _roundtrip(client, make_image_msg(rgb, "rgb8", _next_stamp()), ("color_mask",))
    assert np.array_equal(image_msg_to_array(color), rgb)  # alpha 1 = the camera image only
    (result,) = _set_params(client, {"overlay_alpha": 0.0})
    assert result.successful


@pytest.fixture(scope="module")
def compressed_node(tmp_path_factory, rclpy_ctx):
    from vsseg_ros.ros.node_client import SegmentationClient

    # Its own namespace, so its outputs and parameter services do not mix with the raw node's.
    # A relative --namespace, as users type it (it used to die in rclpy.init).
    proc = _start(
        tmp_path_factory,
        "compressed",
        extra_args=("--namespace", "cz"),
        image_transport="compressed",
        max_input_pixels=3840 * 2160 * 2,
    )
    c = SegmentationClient(
        image_topic="/camera/image_raw", namespace="/cz", outputs=("mask",), compressed=True, name="compressed_client"
    )
    assert c.wait_for_class_map(120.0, proc.alive) is not None, proc.log()[-3000:]
    assert c.wait_until_serving("mask", _rgb(), 60.0, proc.alive), proc.log()[-3000:]
    yield proc, c
    c.close()
    proc.stop()


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8"])
def test_compressed_input(compressed_node, fmt):
    from sensor_msgs.msg import CompressedImage

    from vsseg_ros.imaging.encode import encode_compressed

    proc, c = compressed_node
    msg = CompressedImage(format=fmt, data=encode_compressed(_rgb(), "png" if "png" in fmt else "jpeg"))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(_next_stamp(), 1_000_000_000)
    msg.header.frame_id = "zipped"
    key, (mask,) = _roundtrip(c, msg)
    assert mask is not None and (mask.height, mask.width) == (H, W) and mask.header.frame_id == "zipped"


def _counters(proc) -> Optional[tuple[int, int, int, int]]:
    """(received, processed, dropped, rejected) from the node's latest counter line (every stats_period)."""
    found = re.findall(r"frames received (\d+), processed (\d+), dropped (\d+), rejected (\d+)", proc.log())
    return tuple(map(int, found[-1])) if found else None


def _rejected_so_far(proc) -> int:
    counters = _counters(proc)
    return counters[3] if counters else 0


def test_corrupt_compressed_frame_is_rejected_once(compressed_node):
    from sensor_msgs.msg import CompressedImage

    from vsseg_ros.imaging.encode import encode_compressed

    proc, c = compressed_node
    # Until the node has rejected three of them: the input keeps the newest frame only, so on a loaded machine a
    # bad frame can be replaced by the next before the worker decodes it.
    before, deadline = _rejected_so_far(proc), time.monotonic() + 30.0
    while _rejected_so_far(proc) < before + 3 and time.monotonic() < deadline:
        bad = CompressedImage(format="jpeg", data=b"\xff\xd8\xff" + bytes(200))
        bad.header.stamp.sec, bad.header.stamp.nanosec = divmod(_next_stamp(), 1_000_000_000)
        c.publish(bad)
        time.sleep(0.3)
    assert _rejected_so_far(proc) >= before + 3, proc.log()[-2000:]
    good = CompressedImage(format="png", data=encode_compressed(_rgb(), "png"))
    good.header.stamp.sec, good.header.stamp.nanosec = divmod(_next_stamp(), 1_000_000_000)
    _, (mask,) = _roundtrip(c, good)
    assert mask is not None and proc.alive()
    lines = [ln for ln in proc.log().splitlines() if "rejected a frame" in ln]
    assert len(lines) == 1, lines


def _compressed_msg(data: bytes, fmt: str, frame_id: str = "zipped"):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(_next_stamp(), 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def test_compressed_bombs_are_refused_from_the_bytes_at_no_cost(compressed_node):
    """The issue's bombs (a JPEG declaring 20000x20000 sent as png, after 600 APP segments, a valid 20000x20000
    PNG sent as jpeg): refused in well under a second each, the node's peak RSS unchanged, still serving."""
    from vsseg_ros.hostile import images as hi
    from vsseg_ros.imaging.encode import encode_compressed

    proc, c = compressed_node
    small = encode_compressed(_rgb(), "jpeg")
    bombs = [
        (hi.with_declared_size(small, 20000, 20000), "png"),
        (hi.with_app_segments(hi.with_declared_size(small, 20000, 20000), 600), "jpeg"),
        (hi.flat_png(20000, 20000, 1, 0), "jpeg"),
    ]
    peak = peak_rss_mb(proc.proc.pid)
    t0 = time.monotonic()
    for data, fmt in bombs:
        c.publish(_compressed_msg(data, fmt, "bomb"))
        time.sleep(0.3)  # one at a time (keep-last would drop some)
    _, (mask,) = _roundtrip(c, _compressed_msg(encode_compressed(_rgb(), "png"), "png"))
    assert mask is not None and time.monotonic() - t0 < 10.0
    assert peak_rss_mb(proc.proc.pid) - peak < 100, "a bomb made the node's memory grow"
    log = proc.log()
    assert "20000 x 20000" in log and "max_input_pixels" in log


def test_compressed_frames_keep_their_pixels_and_the_libraries_stay_quiet(compressed_node):
    """EXIF orientation 6 is not applied (the mask keeps the sent 640x480), a PNG sent as "jpeg" decodes as PNG,
    and 20 corrupt frames from each library print none of libjpeg's or libpng's own lines."""
    from vsseg_ros.hostile import images as hi
    from vsseg_ros.imaging.encode import encode_compressed

    proc, c = compressed_node
    rotated = hi.with_exif_orientation(encode_compressed(_rgb(480, 640), "jpeg"), 6)
    _, (mask,) = _roundtrip(c, _compressed_msg(rotated, "jpeg"))
    assert mask is not None and (mask.height, mask.width) == (480, 640)
    _, (mask,) = _roundtrip(c, _compressed_msg(encode_compressed(_rgb(), "png"), "jpeg"))
    assert mask is not None and (mask.height, mask.width) == (H, W)
    bad_jpeg = hi.jpeg_with_bad_scan(encode_compressed(_rgb(), "jpeg"))
    bad_png = hi.png_with_corrupt_idat(encode_compressed(_rgb(), "png"))
    for i in range(20):
        c.publish(_compressed_msg(bad_jpeg if i % 2 else bad_png, "jpeg" if i % 2 else "png", "broken"))
        time.sleep(0.05)
    _, (mask,) = _roundtrip(c, _compressed_msg(encode_compressed(_rgb(), "png"), "png"))
    assert mask is not None
    lines = proc.log().splitlines()
    raw = [ln for ln in lines if not ln.startswith("[")]  # not one of the node's own log records
    assert not [ln for ln in raw if "JPEG" in ln or "libpng" in ln], raw
    assert sum("libpng" in ln for ln in lines) <= 1 and sum("Corrupt JPEG data" in ln for ln in lines) <= 1


def test_garbage_encodings_are_reported_once(node, client):
    """Every frame with a different unknown encoding string: one log line (the first value), the rest counted."""
    from vsseg_ros.ros.node_client import make_image_msg

    for i in range(20):
        msg = make_image_msg(_rgb(), "rgb8", _next_stamp(), frame_id="garbage")
        msg.encoding = f"garbage-{i}-" + "x" * i
        client.publish(msg)
        time.sleep(0.05)
    _, (mask,) = _roundtrip(client, make_image_msg(_rgb(), "rgb8", _next_stamp()))
    assert mask is not None
    lines = [ln for ln in node.log().splitlines() if "rejected a frame" in ln and "encoding" in ln]
    assert len(lines) == 1, lines  # (the unknown-encoding case of the test above is the same kind)


def _param_service(client, srv_type, name: str, request):
    cli = client.node.create_client(srv_type, f"/segmentation_node/{name}")
    assert cli.wait_for_service(timeout_sec=10.0)
    fut = cli.call_async(request)
    deadline = time.monotonic() + 60
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    client.node.destroy_client(cli)
    assert fut.done(), f"{name} did not answer"
    return fut.result()


def test_param_dump_lists_every_parameter(client):
    """What `ros2 param dump` does (list_parameters, then get_parameters for all): every parameter comes back
    with a value (it printed `ros__parameters: {}` while image_mean/image_stddev had none)."""
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    from vsseg_ros.ros.params import PARAMS

    names = _param_service(client, ListParameters, "list_parameters", ListParameters.Request()).result.names
    values = _param_service(client, GetParameters, "get_parameters", GetParameters.Request(names=names)).values
    assert values is not None and len(values) == len(names)
    dumped = {n: parameter_value_to_python(v) for n, v in zip(names, values)}
    for spec in PARAMS:
        assert spec.name in dumped
    assert dumped["image_mean"] == "" and dumped["image_stddev"] == ""


def test_normalisation_can_be_changed_at_runtime(client):
    """`ros2 param set /segmentation_node image_mean "[0.2, 0.3, 0.4]"` sends a DOUBLE_ARRAY (rclpy hands it over
    as array('d')): accepted, the model reloaded with it; "" goes back to the model's own."""
    from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue

    from vsseg_ros.ros.node_client import make_image_msg

    def set_array(name: str, values) -> Any:
        value = (
            ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=values)
            if values != ""
            else ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="")
        )
        (result,) = _set_param_msgs(client, [ParameterMsg(name=name, value=value)])
        return result

    for name, values in (("image_mean", [0.9, 0.9, 0.9]), ("image_stddev", [0.05, 0.05, 0.05])):
        result = set_array(name, values)
        assert result.successful, result.reason
    bad = set_array("image_stddev", [0.1, 0.0, 0.1])
    assert not bad.successful and "image_stddev" in bad.reason
    _, (seg,) = _roundtrip(client, make_image_msg(_rgb(), "rgb8", _next_stamp()), ("segmentation",))
    assert seg is not None
    for name in ("image_mean", "image_stddev"):
        assert set_array(name, "").successful


def _set_param_msgs(client, msgs):
    from rcl_interfaces.srv import SetParameters

    return _param_service(client, SetParameters, "set_parameters", SetParameters.Request(parameters=msgs)).results


def test_counters_are_logged_periodically(node, client):
    time.sleep(1.5)
    counters = _counters(node)
    assert counters, node.log()[-2000:]
    received, processed, dropped, rejected = counters
    assert processed > 0 and rejected >= 3 and received >= processed + rejected


def test_the_node_counts_as_up_before_its_first_output(rclpy_ctx):
    """main() counts the node as started through ``on_up`` (a SIGINT after a client saw the latched class map
    must stop it with 0, not as "while starting"): called once, with the model loaded, before the constructor
    returns; a managed node is up only when it is configured."""
    from rclpy.parameter import Parameter

    from vsseg_ros.ros.node import SegmentationLifecycleNode, SegmentationNode

    overrides = [Parameter("network_image_height", value=96), Parameter("network_image_width", value=128)]
    seen: list = []
    plain = SegmentationNode(
        namespace="/up", parameter_overrides=overrides, worker_thread=False, on_up=lambda n: seen.append(n.configured)
    )
    try:
        assert seen == [True]
    finally:
        plain.destroy_node()
    seen.clear()
    managed = SegmentationLifecycleNode(
        namespace="/up_managed", parameter_overrides=overrides, worker_thread=False, on_up=lambda n: seen.append(1)
    )
    try:
        assert seen == []
        assert managed.configure() is None and seen == [1]
    finally:
        managed.destroy_node()


def test_outputs_nobody_subscribes_to_are_not_computed(rclpy_ctx):
    """In-process node (still real DDS between two nodes): record what the worker asks the model for."""
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
    seg_node = SegmentationNode(namespace="/lazy", parameter_overrides=overrides)
    requests = []
    push = seg_node._segmenter.push
    seg_node._segmenter.push = lambda frame, request: requests.append(request) or push(frame, request)
    peer = Node("lazy_peer")
    cam = peer.create_publisher(Image, "/lazy/image", qos_profile("reliable", 5))
    masks = []
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(seg_node)
    ex.add_node(peer)
    import threading

    threading.Thread(target=ex.spin, daemon=True).start()
    try:

        def send() -> None:
            cam.publish(make_image_msg(_rgb(), "rgb8", _next_stamp()))
            time.sleep(0.3)

        for _ in range(5):  # nobody listens: the model does not run at all
            send()
        assert requests == [] and seg_node.camera.counters.skipped >= 1
        peer.create_subscription(Image, "/lazy/semantic/mask", masks.append, qos_profile("reliable", 5))
        deadline = time.monotonic() + 30
        while not masks and time.monotonic() < deadline:
            send()
        assert masks, "mask subscriber never got a mask"
        # Only the mask is wanted: neither boundary nor confidence is computed.
        assert requests and all(not r.boundary and not r.confidence for r in requests)
    finally:
        ex.shutdown(timeout_sec=2.0)
        seg_node.destroy_node()
        peer.destroy_node()


def test_double_sigint_shuts_down_cleanly(tmp_path_factory, rclpy_ctx):
    """`ros2 launch` without a tty forwards a second SIGINT while the node tears down."""
    import os
    import signal

    from vsseg_ros.ros.node_client import SegmentationClient

    proc = _start(tmp_path_factory, "sigint", extra_args=("--namespace", "/sig"))
    c = SegmentationClient(namespace="/sig", outputs=(), name="sigint_client")
    try:
        assert c.wait_for_class_map(120.0, proc.alive) is not None, proc.log()[-2000:]
    finally:
        c.close()
    os.killpg(proc.proc.pid, signal.SIGINT)
    time.sleep(0.1)
    os.killpg(proc.proc.pid, signal.SIGINT)
    assert proc.wait(30.0) == 0, proc.log()[-2000:]
    assert "Traceback" not in proc.log()
    proc.stop()
