"""`vsseg-ros replay` against the real node: a short bag over real Fast DDS, outputs recorded and scored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rosutil import needs_ros

pytestmark = needs_ros

H, W = 48, 64
START = 1_700_000_000 * 10**9


def _frames(n: int, seed: int = 0):
    from vsseg_ros.data.sources import LabelledFrame

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    out = []
    for i in range(n):
        image = np.stack([(x * 4 + i * 9) % 256, y * 5, (x + y) * 2], -1).astype(np.uint8)
        label = rng.integers(0, 11, (H, W)).astype(np.uint8)
        out.append(
            LabelledFrame(image=image, label=label, stamp_ns=0, camera_id="cam", sequence="clip", name=f"clip_{i:03d}")
        )
    return out


def _replay(tmp_path: Path, bag: Path, *extra: str, timeout: float = 300) -> tuple[int, str, dict]:
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {"/**": {"ros__parameters": {"network_image_height": 96, "network_image_width": 128, "worker_threads": 1}}}
        )
    )
    out = tmp_path / "replay"
    cmd = [
        sys.executable,
        "-m",
        "vsseg_ros.cli",
        "replay",
        "--bag",
        str(bag),
        "--out",
        str(out),
        "--params-file",
        str(params),
        "--no-tc",
        "--startup-timeout",
        "120",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    text = proc.stdout + proc.stderr
    result = json.loads((out / "replay.json").read_text()) if (out / "replay.json").exists() else {}
    return proc.returncode, text, result


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    from vsseg_ros.bags.writer import write_bag

    d = tmp_path_factory.mktemp("replay_raw")
    frames = _frames(8)
    write_bag(d / "in", frames, 2.0, "mcap", start_ns=START, frame_id="front_cam")  # 2 Hz: the node keeps up
    rc, text, result = _replay(d, d / "in")
    return d, frames, rc, text, result


def test_every_frame_comes_back_with_its_stamp_and_frame_id(raw_run):
    from vsseg_ros.bags.masks import BagMasks
    from vsseg_ros.bags.reader import BagFrames

    d, frames, rc, text, r = raw_run
    assert rc == 0, text[-4000:]
    assert r["frames_published"] == 8 and r["frames_received"] == {"mask": 8, "segmentation": 8}, text[-3000:]
    assert r["frames_dropped"] == 0 and r["outputs_with_unknown_stamp"] == {"mask": 0, "segmentation": 0}
    assert r["node_counters"]["processed"] >= 8 and r["node_exit_code"] == 0
    assert r["frames_lost_before_node"] == 0 and r["frames_dropped_by_node"] == 0
    inputs = {f.stamp_ns: f for f in BagFrames(d / "in")}
    masks = list(BagMasks(r["output_bag"]))  # a mask per processed frame, as recorded
    assert sorted(s for s, _, _, _ in masks) == sorted(inputs)  # stamps preserved, one mask each
    assert all(fid == "front_cam" and m.shape == (H, W) and m.max() < 11 for _, fid, _, m in masks)
    seg = BagMasks(r["output_bag"], topic="/semantic/segmentation")
    assert len(seg) == 8 and seg.model_id
    assert r["output_bag_messages"]["/semantic/class_map"] >= 1


def test_live_numbers_and_scores(raw_run):
    _, _, rc, text, r = raw_run
    assert rc == 0, text[-4000:]
    lat = r["latency_ms"]
    assert lat["count"] == 8 and 0 < lat["p50"] <= lat["p95"] < 10_000
    assert r["input_rate_hz"] == pytest.approx(2.0, rel=0.1)
    assert r["output_rate_hz"] == pytest.approx(2.0, rel=0.5)
    s = r["score"]
    assert (s["frames_received"], s["frames_dropped"], s["labelled_frames_scored"]) == (8, 0, 8)
    acc = s["accuracy"]
    assert acc["frames"] == 8 and 0.0 <= acc["miou"] <= 1.0 and acc["latency_ms"]["count"] == 8
    assert "end-to-end latency p50" in text and "mIoU" in text


def test_score_recorded_reads_the_same_numbers_back(raw_run, tmp_path):
    d, _, rc, text, r = raw_run
    assert rc == 0, text[-4000:]
    rc2, text2, r2 = _replay(tmp_path, d / "in", "--score-recorded", r["output_bag"])
    assert rc2 == 0, text2[-3000:]
    assert r2["score"]["frames_received"] == 8 and r2["score"]["accuracy"]["miou"] == pytest.approx(
        r["score"]["accuracy"]["miou"]
    )


def test_compressed_sqlite3_bag_with_clock(tmp_path):
    from vsseg_ros.bags.writer import write_bag

    write_bag(tmp_path / "in", _frames(4, seed=1), 2.0, "sqlite3", encoding="png", start_ns=START)
    rc, text, r = _replay(tmp_path, tmp_path / "in", "--clock", "--outputs", "mask", "--storage", "sqlite3")
    assert rc == 0, text[-4000:]
    assert r["image_topic"] == "/camera/image_raw/compressed"
    # every frame answered, or dropped by the node's keep-newest input (a stall over 0.5 s on a loaded machine
    # replaces a frame before the worker takes it; one CI run got 3 of 4): none lost without the node counting it
    answered, node_dropped = r["frames_received"]["mask"], r["node_counters"]["dropped"]
    log = (tmp_path / "replay" / "node.log").read_text()
    assert answered >= 3 and answered + node_dropped >= 4, (r["frames_received"], r["node_counters"], log[-2000:])
    assert r["outputs_with_unknown_stamp"] == {"mask": 0}
    params = yaml.safe_load((tmp_path / "replay" / "node_params.yaml").read_text())["/**"]["ros__parameters"]
    assert params["use_sim_time"] is True and params["image_transport"] == "compressed"
    assert "Traceback" not in log


def test_bad_bag_fails_before_starting_a_node(tmp_path):
    rc, text, _ = _replay(tmp_path, tmp_path / "missing_bag", timeout=60)
    assert rc == 2 and "bag not found" in text
    from vsseg_ros.bags.writer import write_bag
    from vsseg_ros.data.sources import LabelledFrame

    unlabelled = [LabelledFrame(image=f.image, label=None, stamp_ns=0, name=f.name) for f in _frames(2)]
    write_bag(tmp_path / "in", unlabelled, 2.0, start_ns=START)
    rc, text, _ = _replay(tmp_path, tmp_path / "in", "--image-topic", "/front/image", timeout=60)
    assert rc == 2 and "/camera/image_raw (sensor_msgs/msg/Image, 2 msgs)" in text
    assert not (tmp_path / "replay" / "node.log").exists()


def _camera_frames(name: str, h: int, w: int, n: int, seed: int):
    from vsseg_ros.data.sources import LabelledFrame

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    return [
        LabelledFrame(
            image=np.stack([(x * 4 + i * 9) % 256, y * 3, (x + y + seed) % 256], -1).astype(np.uint8),
            label=rng.integers(0, 11, (h, w)).astype(np.uint8),
            stamp_ns=0,
            camera_id=f"{name}_cam",
            sequence="clip",
            name=f"{name}_{i:03d}",
        )
        for i in range(n)
    ]


def test_two_cameras_into_one_node(tmp_path):
    """Two cameras of different sizes and frame_ids in one bag, replayed into one node (image_topics): each
    camera's masks come back on its own topics with its own stamps, frame_id and size, and nothing crosses."""
    from vsseg_ros.bags.bagfile import bag_topics
    from vsseg_ros.bags.masks import BagMasks
    from vsseg_ros.bags.reader import BagFrames
    from vsseg_ros.bags.writer import write_bag

    sizes = {"front": (48, 64), "rear": (64, 96)}
    streams = {n: _camera_frames(n, h, w, 5, seed=i) for i, (n, (h, w)) in enumerate(sizes.items())}
    interleaved = [f for pair in zip(*streams.values()) for f in pair]  # front, rear, front, ... : 2 Hz each
    write_bag(
        tmp_path / "in",
        interleaved,
        4.0,
        "mcap",
        start_ns=START,
        camera_topics={f"{n}_cam": f"/cam_{n}/image_raw" for n in sizes},
    )
    rc, text, r = _replay(tmp_path, tmp_path / "in")
    assert rc == 0, text[-4000:]
    assert r["image_topic"] == ["/cam_front/image_raw", "/cam_rear/image_raw"], text[-3000:]
    params = yaml.safe_load((tmp_path / "replay" / "node_params.yaml").read_text())["/**"]["ros__parameters"]
    assert params["image_topics"] == ["/cam_front/image_raw", "/cam_rear/image_raw"]
    assert (r["frames_published"], r["frames_dropped"], r["score"]["frames_received"]) == (10, 0, 10)
    recorded = bag_topics(r["output_bag"])
    assert "/semantic/mask" not in recorded
    for n, (h, w) in sizes.items():
        topic = f"/cam_{n}/image_raw"
        cam = r["cameras"][topic]
        assert cam["frames_received"] == {"mask": 5, "segmentation": 5}, text[-3000:]
        assert cam["outputs_with_unknown_stamp"] == {"mask": 0, "segmentation": 0}
        assert cam["latency_ms"]["count"] == 5 and cam["input_rate_hz"] == pytest.approx(2.0, rel=0.2)
        assert cam["node_counters"]["processed"] >= 5
        s = cam["score"]
        assert (s["frames_received"], s["labelled_frames_scored"], s["outputs_with_unknown_stamp"]) == (5, 5, 0)
        assert 0.0 <= s["accuracy"]["miou"] <= 1.0 and cam["ground_truth"]["matched"] == 5
        inputs = {f.stamp_ns for f in BagFrames(tmp_path / "in", image_topic=topic)}
        masks = list(BagMasks(r["output_bag"], topic=f"/cam_{n}/semantic/mask"))
        assert sorted(s for s, _, _, _ in masks) == sorted(inputs)  # its own stamps, each once
        assert all(fid == f"{n}_cam" and m.shape == (h, w) for _, fid, _, m in masks)
        assert len(BagMasks(r["output_bag"], topic=f"/cam_{n}/semantic/segmentation")) == 5
    assert "replay [/cam_rear/image_raw]: end-to-end latency" in text and "replay [all cameras]: 10 frames" in text
    again = tmp_path / "again"
    again.mkdir()
    rc2, text2, r2 = _replay(again, tmp_path / "in", "--score-recorded", r["output_bag"])
    assert rc2 == 0, text2[-3000:]
    assert {t: c["score"]["accuracy"]["miou"] for t, c in r2["cameras"].items()} == pytest.approx(
        {t: c["score"]["accuracy"]["miou"] for t, c in r["cameras"].items()}
    )
