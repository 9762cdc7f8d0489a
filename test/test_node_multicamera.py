"""One node, five cameras (real node process, real DDS): four cameras of different sizes and frame_ids stream
at once and each gets its own masks and camera_info with its own stamps; a fifth never publishes and its
/diagnostics status says so while the others are served; a camera flooding at 200 Hz does not starve a 5 Hz
one; mono8 confidence is round(255 x the float map); duplicate topics are refused at start."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from rosutil import needs_ros, set_parameters

pytestmark = needs_ros

SEC = 1_000_000_000
NET = (96, 128)
CAMERAS = {"a": (48, 64), "b": (60, 80), "c": (72, 96), "d": (96, 128)}  # name -> frame size
SILENT = "/cam_silent/image_raw"


def _topic(name: str) -> str:
    return f"/cam_{name}/image_raw"


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w])


_count = [0]


def _stamp(name: str) -> int:
    """Unique per camera and call: camera c's stamps are c's own (nothing can match another camera's)."""
    _count[0] += 1
    return 4_000 * SEC + "abcd".index(name) * 100 * SEC + _count[0] * SEC // 100


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    import rclpy

    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    rclpy.init()
    d = tmp_path_factory.mktemp("multicam")
    params = {
        "image_topics": [_topic(n) for n in CAMERAS] + [SILENT],
        "network_image_height": NET[0],
        "network_image_width": NET[1],
        "confidence_encoding": "mono8",
        "stats_period": 1.0,
        "input_timeout": 2.0,
        "worker_threads": 1,
        "max_batch": 4,
        "input_qos": "reliable",
        "input_qos_depth": 1,
    }
    proc = NodeProcess(params_file=write_params_file(params, path=d / "params.yaml"), log_path=d / "node.log")
    yield proc
    rc = proc.stop()
    rclpy.try_shutdown()
    assert rc == 0, proc.log()[-2000:]


@pytest.fixture(scope="module")
def clients(node):
    from diagnostic_msgs.msg import DiagnosticArray

    from vsseg_ros.ros.node_client import SegmentationClient

    cs = {
        n: SegmentationClient(
            image_topic=_topic(n),
            namespace=f"/cam_{n}",
            name=f"multicam_{n}",
            outputs=("mask", "confidence", "segmentation", "camera_info"),
        )
        for n in CAMERAS
    }
    cs["a"].diagnostics = []
    cs["a"].node.create_subscription(DiagnosticArray, "/diagnostics", cs["a"].diagnostics.append, 50)
    for n, c in cs.items():
        assert c.wait_for_class_map(120.0, node.alive) is not None, node.log()[-3000:]
        assert c.wait_until_serving("mask", _rgb(*CAMERAS[n], 0), 60.0, node.alive), node.log()[-3000:]
    yield cs
    for c in cs.values():
        c.close()


def _send(client, name: str, seed: int, info: bool = True):
    from vsseg_ros.ros.node_client import make_camera_info, make_image_msg

    h, w = CAMERAS[name]
    stamp = _stamp(name)
    img = _rgb(h, w, seed)
    info_msg = make_camera_info(w, h, stamp, f"frame_{name}")  # a driver stamps it as the image
    if info and name != "d":
        client.publish_camera_info(info_msg)
    key = client.publish(make_image_msg(img, "rgb8", stamp, frame_id=f"frame_{name}"))
    if info and name == "d":  # camera d's driver publishes the image first
        client.publish_camera_info(info_msg)
    return img, key


def test_every_camera_gets_its_own_masks_and_camera_info(node, clients):
    from vsseg_ros.ros.convert import image_msg_to_array

    sent: dict[str, list] = {n: [] for n in CAMERAS}
    for round_ in range(3):
        for n, c in clients.items():  # all four at the same time
            sent[n].append(_send(c, n, round_)[1])
        # the next round once this one is served: with depth-1 reliable QoS a loaded machine could otherwise let
        # a camera's next frame replace this one in the writer's history (one CI run lost a frame that way)
        for n, c in clients.items():
            c.wait_for("mask", sent[n][-1], 30.0)
    for n, c in clients.items():
        h, w = CAMERAS[n]
        for key in sent[n]:
            mask, info, seg = (c.wait_for(o, key, 30.0) for o in ("mask", "camera_info", "segmentation"))
            assert mask is not None, f"camera {n}: no mask for {key}\n{node.log()[-2000:]}"
            assert (mask.height, mask.width) == (h, w) and mask.header.frame_id == f"frame_{n}"
            assert info is not None, f"camera {n}: no camera_info for {key}"
            assert info.header == mask.header and (info.width, info.height) == (w, h)
            assert info.k[0] == 100.0 and info.k[2] == (w - 1) / 2.0  # unscaled: masks at the input size
            assert seg.header == mask.header and seg.frames_fused == 1
            assert image_msg_to_array(mask).max() < 11
        # nothing crosses: every stamp this camera's topics carry is one of its own frames
        own = set(sent[n])
        for out in ("mask", "camera_info", "segmentation"):
            assert c.keys(out) <= own | {k for k in c.keys(out) if k[0] == 0}, f"camera {n} got another's {out}"


def test_mono8_confidence_is_round_255_times_the_float_map(node, clients):
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.segmenter import Frame
    from vsseg_ros.ros.convert import image_msg_to_array, to_mono8

    seg = load_segmenter("", device="cpu", input_size=NET, backend="auto")  # the node's model, here
    c = clients["b"]
    img, key = _send(c, "b", 7)
    msg = c.wait_for("confidence", key, 30.0)
    assert msg is not None and msg.encoding == "mono8" and (msg.height, msg.width) == CAMERAS["b"]
    got = image_msg_to_array(msg).astype(int)
    ref = seg.push(Frame(img, 0)).confidence
    assert np.array_equal(to_mono8(np.array([0.0, 0.5, 0.999, 1.0, 1.2], np.float32)), [0, 128, 255, 255, 255])
    want = to_mono8(ref).astype(int)
    # the same model in another process: equal but for a rounding step where the float differs in its last bits
    assert np.abs(got - want).max() <= 1 and (got == want).mean() > 0.99
    assert 255 // 11 <= got.min() and got.max() <= 255


def _set_max_batch(client, value: int) -> None:
    (result,) = set_parameters(client.node, "/segmentation_node", timeout=30.0, max_batch=value)
    assert result.successful, "max_batch was not set"


def test_a_flooding_camera_does_not_starve_a_slow_one_and_a_silent_camera_says_so(node, clients):
    """Camera a floods at 200 Hz while camera c sends a frame, waits for its mask, and sends the next (at most
    5 Hz). The node takes one frame at a time (max_batch 1), so the scheduler's order alone decides who goes
    next: taking the longest-waiting camera first, c's frame waits for at most the frame in the model and one
    of a's. A scheduler that preferred a (the first camera, always waiting) would leave c's frames behind a's
    newest ones for as long as the flood lasts. Closed-loop on c, so a machine too loaded to keep up with 5 Hz
    slows the test down instead of losing c's frames to its own newer ones."""
    import threading

    from vsseg_ros.ros.node_client import make_image_msg

    fast, slow = clients["a"], clients["c"]
    frames = {n: make_image_msg(_rgb(*CAMERAS[n], 3), "rgb8", 0, frame_id=f"frame_{n}") for n in ("a", "c")}
    fast_keys: list = []
    n_diag = len(fast.diagnostics)
    flooding = threading.Event()
    flooding.set()

    def flood() -> None:
        msg, t0, i = frames["a"], time.monotonic(), 0
        while flooding.is_set():
            i += 1
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(_stamp("a"), SEC)
            fast_keys.append(fast.publish(msg))
            time.sleep(max(0.0, t0 + i * 0.005 - time.monotonic()))

    _set_max_batch(fast, 1)
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    slow_latency, lost, windows = [], [], []  # c's round trips: seconds, and (sent, mask arrived)
    try:
        time.sleep(0.5)  # the flood is on before c's first frame
        for _ in range(12):
            msg = frames["c"]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(_stamp("c"), SEC)
            key = slow.publish(msg)
            got = slow.wait_for("mask", key, 10.0)
            if got is None:
                lost.append(key)
            else:
                windows.append((slow.publish_times[key], slow.arrival_times("mask")[key]))
                slow_latency.append(windows[-1][1] - windows[-1][0])
            time.sleep(0.2)
        time.sleep(1.0)  # a's stats period and diagnostics cover the flood
    finally:
        flooding.clear()
        flooder.join(5.0)
        _set_max_batch(fast, 4)
    arrived = fast.arrival_times("mask")
    assert not lost, (lost, node.log()[-2000:])
    assert len(fast_keys) > 500 and sum(k in arrived for k in fast_keys) > 4 * len(windows)  # a flooded, was served
    # The scheduler's count, not a time: while one of c's frames made its round trip, how many of a's masks came
    # out. Longest-waiting first lets the frame in the model and at most one of a's go ahead (2 on this machine,
    # idle or loaded); preferring a let 2-71 go by, median 22. Times say less: the machine's load sets most of
    # the round trip (0.02-0.33 s here with the fair order, 0.03-1.4 s with the unfair one).
    passed = [sum(t0 < t < t1 for t in arrived.values()) for t0, t1 in windows]
    assert np.median(passed) <= 4 and max(passed) > 0, (passed, np.round(slow_latency, 3).tolist())
    statuses = [s for d in fast.diagnostics[n_diag:] for s in d.status]
    silent = [s for s in statuses if s.name.endswith(SILENT)]
    assert silent and all(s.level == b"\x02" and "no input" in s.message for s in silent[-2:])
    assert any(v.key == "seconds_since_input" and v.value == "never" for v in silent[-1].values)
    for n in ("a", "c"):
        mine = [s for s in statuses if s.name.endswith(_topic(n))]
        assert mine and "no input" not in mine[-1].message and mine[-1].hardware_id == f"frame_{n}"
    # a and c sent no camera_info here, but had before: no "never match" warning (it needs no match ever)
    assert "never match" not in node.log()


def test_duplicate_topics_are_refused_at_start(tmp_path):
    from vsseg_ros.ros.node_process import write_params_file

    pf = write_params_file(
        {"image_topics": ["/cam_x/image_raw", "/cam_y/image_raw", "/cam_x/image_raw"]}, path=tmp_path / "dup.yaml"
    )
    out = subprocess.run(
        [sys.executable, "-m", "vsseg_ros.cli", "node", "--params-file", str(pf)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "image_topics" in text and "/cam_x/image_raw" in text and "twice" in text and "Traceback" not in text
