"""A temporal checkpoint serving two cameras in one node (real node process, real DDS), batched: each camera
has its own frame window (frames_fused 1, 2, 3 per camera, whatever the other sends), and with
output_resolution network the masks come at the network's size with camera_info scaled to match."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rosutil import needs_ros

pytestmark = needs_ros

SEC = 1_000_000_000
NET = (32, 48)
CAMERAS = {"left": (48, 64), "right": (64, 96)}


def _rgb(h: int, w: int, i: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 4 + i * 3) % 256, (y * 5) % 256, (x + y + 7 * i) % 256], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    import rclpy

    from vsseg_ros.core.checkpoint import save_checkpoint
    from vsseg_ros.core.classes import CAMVID
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.models.temporal import TemporalSegNet
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    torch.manual_seed(0)
    cfg = ModelConfig(
        name="tiny_stf",
        head_channels=16,
        input_size=NET,
        temporal={
            "frames": 3,
            "mode": "causal",
            "stf": {"heads": 2, "ffn": 32, "block": 2, "pe_size": [4, 6]},
            "mar": {"slots_per_class": 2, "dim": 16},
        },
    )
    d = tmp_path_factory.mktemp("multicam_temporal")
    ckpt = save_checkpoint(d / "stf.pt", TemporalSegNet(cfg).eval(), cfg, CAMVID, "tiny:stf-mar")
    rclpy.init()
    pf = write_params_file(
        {
            "model_path": str(ckpt),
            "image_topics": [f"/{n}/image_raw" for n in CAMERAS],
            "output_resolution": "network",
            "max_frame_gap": 5.0,
            "stats_period": 1.0,
            "worker_threads": 1,
        },
        path=d / "params.yaml",
    )
    proc = NodeProcess(params_file=pf, log_path=d / "node.log")
    yield proc
    proc.stop()
    rclpy.try_shutdown()


@pytest.fixture(scope="module")
def clients(node):
    from vsseg_ros.ros.node_client import SegmentationClient

    cs = {
        n: SegmentationClient(
            image_topic=f"/{n}/image_raw", namespace=f"/{n}", name=f"mct_{n}", outputs=("segmentation", "camera_info")
        )
        for n in CAMERAS
    }
    for n, c in cs.items():
        assert c.wait_for_class_map(120.0, node.alive) is not None, node.log()[-3000:]
        assert c.wait_until_serving("segmentation", _rgb(*CAMERAS[n], 0), 60.0, node.alive), node.log()[-3000:]
    yield cs
    for c in cs.values():
        c.close()


def test_per_camera_windows_and_network_resolution_with_scaled_camera_info(node, clients):
    from vsseg_ros.ros.node_client import make_camera_info, make_image_msg

    fused: dict[str, list[int]] = {n: [] for n in CAMERAS}
    for i in range(4):
        keys = {}
        for j, (n, c) in enumerate(clients.items()):  # both cameras at once: one batch when both wait
            h, w = CAMERAS[n]
            stamp = 5_000 * SEC + i * SEC // 10 + j * 5_000_000  # one clock, the cameras 5 ms apart
            c.publish_camera_info(make_camera_info(w, h, stamp, n))
            keys[n] = c.publish(make_image_msg(_rgb(h, w, i + 1), "rgb8", stamp, frame_id=n))
        for n, c in clients.items():
            seg = c.wait_for("segmentation", keys[n], 30.0)
            info = c.wait_for("camera_info", keys[n], 5.0)
            assert seg is not None, node.log()[-2000:]
            fused[n].append(seg.frames_fused)
            h, w = CAMERAS[n]
            assert (seg.mask.height, seg.mask.width) == NET and seg.header.frame_id == n
            assert info is not None and info.header == seg.header and (info.height, info.width) == NET
            sx, sy = NET[1] / w, NET[0] / h
            assert info.k[0] == pytest.approx(100.0 * sx) and info.k[2] == pytest.approx((w - 1) / 2 * sx)
            assert info.k[4] == pytest.approx(110.0 * sy) and info.k[5] == pytest.approx((h - 1) / 2 * sy)
            assert info.p[3] == pytest.approx(-12.0 * sx) and info.p[6] == pytest.approx((h - 1) / 2 * sy)
        time.sleep(0.05)
    assert fused == {n: [1, 2, 3, 3] for n in CAMERAS}, node.log()[-2000:]
