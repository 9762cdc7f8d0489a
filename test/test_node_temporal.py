"""A temporal checkpoint in the real node process (real rclpy, real DDS): the window fills (frames_fused 1, 2, 3),
a runtime switch to centered mode publishes frame t with frame t's header once t+1 has arrived, and the frame
held back at the end is published when the node stops."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rosutil import needs_ros, set_parameters

pytestmark = needs_ros

H, W = 48, 64
SEC = 1_000_000_000
BASE = 3_000 * SEC  # far from the probes' 1970 stamps
NODE = "/tmp_seg/segmentation_node"


def _rgb(i: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([(x * 4 + i * 3) % 256, (y * 5) % 256, (x + y + 7 * i) % 256], -1).astype(np.uint8)


def _stamp(i: int) -> int:
    return BASE + i * SEC // 10  # 10 Hz


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vsseg_ros.core.checkpoint import save_checkpoint
    from vsseg_ros.core.classes import CAMVID
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.models.temporal import TemporalSegNet

    torch.manual_seed(0)
    cfg = ModelConfig(
        name="tiny_stf",
        head_channels=16,
        input_size=(32, 48),
        temporal={
            "frames": 3,
            "mode": "causal",
            "stf": {"heads": 2, "ffn": 32, "block": 2, "pe_size": [4, 6]},
            "mar": {"slots_per_class": 2, "dim": 16},
        },
    )
    model = TemporalSegNet(cfg).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "stf.pt", model, cfg, CAMVID, "tiny:stf-mar")


@pytest.fixture(scope="module")
def node(tmp_path_factory, checkpoint):
    import rclpy

    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    rclpy.init()
    d = tmp_path_factory.mktemp("temporal_node")
    pf = write_params_file(
        {"model_path": str(checkpoint), "max_frame_gap": 2.0, "stats_period": 1.0, "worker_threads": 1},
        path=d / "params.yaml",
    )
    proc = NodeProcess(params_file=pf, log_path=d / "node.log", extra_args=("--namespace", "/tmp_seg"))
    yield proc
    proc.stop()
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def client(node):
    from diagnostic_msgs.msg import DiagnosticArray

    from vsseg_ros.ros.node_client import SegmentationClient

    c = SegmentationClient(namespace="/tmp_seg", outputs=("segmentation",), name="temporal_client")
    c.diagnostics = []
    c.node.create_subscription(DiagnosticArray, "/diagnostics", c.diagnostics.append, 10)
    assert c.wait_for_class_map(120.0, node.alive) is not None, node.log()[-3000:]
    assert c.wait_until_serving("segmentation", _rgb(0), 60.0, node.alive), node.log()[-3000:]  # causal: at once
    yield c
    c.close()


def _send(client, i: int):
    from vsseg_ros.ros.node_client import make_image_msg

    return client.publish(make_image_msg(_rgb(i), "rgb8", _stamp(i), frame_id="front"))


def _set(client, **values) -> list:
    return set_parameters(client.node, NODE, **values)


def test_temporal_checkpoint_runs_and_the_window_fills(node, client):
    fused = []
    for i in range(4):
        key = _send(client, i)
        seg = client.wait_for("segmentation", key, 30.0)  # causal: frame i is labelled when it arrives
        assert seg is not None, node.log()[-3000:]
        assert (seg.header.stamp.sec, seg.header.stamp.nanosec) == key and seg.header.frame_id == "front"
        assert seg.model_id == "tiny:stf-mar" and (seg.mask.height, seg.mask.width) == (H, W)
        fused.append(seg.frames_fused)
    assert fused == [1, 2, 3, 3]
    assert "temporal: causal window of 3 frames" in node.log()


def test_diagnostics_report_delay_and_window_fill(node, client):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        values = [
            {kv.key: kv.value for kv in s.values}
            for d in client.diagnostics
            for s in d.status
            if s.name.startswith(NODE)
        ]
        values = [v for v in values if float(v.get("frames_fused_mean", 0)) > 1]
        if values:
            break
        time.sleep(0.1)
    assert values, "no /diagnostics with frames fused"
    v = values[-1]
    assert v["temporal_mode"] == "causal" and v["delay_frames"] == "0" and v["window_frames"] == "3"
    assert 0 < float(v["window_fill"]) <= 1 and "gap=" in v["window_resets"]


@pytest.mark.parametrize("name, value", [("temporal_mode", "future"), ("max_frame_gap", 0.0), ("max_frame_gap", -1.0)])
def test_bad_temporal_parameters_are_refused(client, name, value):
    (result,) = _set(client, **{name: value})
    assert not result.successful and name in result.reason


def test_centered_mode_publishes_frame_t_with_its_header_after_t_plus_1(node, client):
    (result,) = _set(client, temporal_mode="centered")
    assert result.successful, result.reason
    first = _send(client, 10)
    time.sleep(1.5)  # the new model takes frame 10 and holds it back
    assert client.get("segmentation", first) is None, "centered: frame t must wait for t+1"
    previous = first
    for i, expect in ((11, 2), (12, 3)):
        key = _send(client, i)
        seg = client.wait_for("segmentation", previous, 30.0)
        assert seg is not None, node.log()[-3000:]
        assert seg.frames_fused == expect and seg.header.frame_id == "front"
        assert client.arrival_times("segmentation")[previous] > client.publish_times[key]  # after t+1 was sent
        time.sleep(0.3)
        assert client.get("segmentation", key) is None  # frame t+1 is held in turn
        previous = key
    assert "temporal: centered window of 3 frames, 1 frame(s) of added delay" in node.log()


def test_stopping_publishes_the_held_back_frame(node, client):
    held = (_stamp(12) // SEC, _stamp(12) % SEC)
    assert client.get("segmentation", held) is None
    assert node.stop() == 0, node.log()[-3000:]
    seg = client.wait_for("segmentation", held, 10.0)
    assert seg is not None, node.log()[-3000:]
    assert seg.frames_fused == 2  # frames 11 and 12: no frame after it
    assert "published 1 held-back frame(s) before stopping" in node.log()
    assert "Traceback" not in node.log()
