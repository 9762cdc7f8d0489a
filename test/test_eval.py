"""`vsseg-ros eval` end to end: dataset and bag inputs through the packaged model, JSON keys, determinism, side by
side comparison, report pictures, the output bag, and what bad input does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vsseg_ros.commands.eval import main
from vsseg_ros.data.sources import LabelledFrame

H, W = 48, 64
SMALL = ["--input-size", "64x96", "--threads", "1", "--quiet", "--dis-preset", "ultrafast"]
KEYS = {"miou", "per_class_iou", "boundary_f", "mvc8", "mvc16", "tc", "latency_ms", "frames", "model"}


def _scene(t: int) -> tuple[np.ndarray, np.ndarray]:
    """A small street-like frame moving 2 px per frame: sky over building over road, with a car."""
    img = np.zeros((H, W, 3), np.uint8)
    lab = np.zeros((H, W), np.uint8)
    img[:14], lab[:14] = (150, 170, 200), 0  # sky
    img[14:30], lab[14:30] = (120, 60, 40), 1  # building
    img[30:], lab[30:] = (90, 80, 90), 3  # road
    x = 4 + 2 * t
    img[28:40, x : x + 16], lab[28:40, x : x + 16] = (40, 20, 120), 8  # car
    lab[0, :] = 11  # void row
    rng = np.random.default_rng(t)
    img = np.clip(img.astype(np.int16) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    return img, lab


def _camvid(root: Path, n: int = 10, split: str = "val") -> Path:
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    for t in range(n):
        img, lab = _scene(t)
        name = f"0099XX_{8000 + 2 * t:05d}.png"
        cv2.imwrite(str(root / split / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / f"{split}annot" / name), lab)
    return root


def _run(argv: list[str]) -> int:
    return main([str(a) for a in argv])


def _without_latency(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    for r in d.get("models", [d]):
        r.pop("latency_ms")
    return d


def test_dataset_eval_writes_every_key_and_is_deterministic(tmp_path, capsys):
    root = _camvid(tmp_path / "camvid")
    for out in ("a.json", "b.json"):
        assert _run(["--dataset", "camvid", "--root", root, "--split", "val", "--json", tmp_path / out] + SMALL) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert KEYS <= set(a)
    assert a["frames"] == a["labelled_frames"] == 10 and a["mvc_windows"] == {"8": 3, "16": 0}
    assert a["mvc16"] is None and any("mVC16 undefined" in n for n in a["notes"])
    assert 0.0 <= a["miou"] <= 1.0 and a["tc"] is not None and a["tc_pairs"] == 9
    assert set(a["latency_ms"]) >= {"p50", "p95", "p99", "mean", "max"} and a["latency_ms"]["count"] == 10
    assert a["model"] == "mbv2_lite_camvid" or a["model"]
    assert _without_latency(a) == _without_latency(b)
    assert "mIoU" in capsys.readouterr().out


def test_compare_runs_two_models_on_the_same_frames_and_reports_them(tmp_path):
    root = _camvid(tmp_path / "camvid", n=4)
    rep = tmp_path / "report"
    code = _run(
        [
            "--dataset",
            "camvid",
            "--root",
            root,
            "--compare",
            "default",
            "default",
            "--json",
            tmp_path / "c.json",
            "--report",
            rep,
            "--strip",
            "2",
            "--max-frames",
            "3",
        ]
        + SMALL
    )
    assert code == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert len(c["models"]) == 2 and c["frames"] == 3
    a, b = c["models"]
    assert _without_latency(a) == _without_latency(b)  # same model, same frames: same scores
    assert c["delta"]["miou"] == 0.0
    for name in ("iou.png", "confusion.png", "latency.png", "overlays.png", "index.md"):
        assert (rep / name).is_file(), name
    strip = cv2.imread(str(rep / "overlays.png"))
    assert strip is not None and strip.shape[1] > 6 * 240  # image, gt, 2 x (overlay, errors)
    page = (rep / "index.md").read_text()
    assert "| mIoU (%) |" in page and "![Per-class IoU](iou.png)" in page and "A: " in page


def _bag(tmp_path: Path, n: int = 6) -> Path:
    from vsseg_ros.bags.writer import write_bag

    frames = []
    for t in range(n):
        img, lab = _scene(t)
        frames.append(
            LabelledFrame(
                image=img,
                label=np.where(lab == 11, 255, lab).astype(np.uint8),
                stamp_ns=t * 66_666_667,
                camera_id="cam",
                sequence="0099XX",
                name=f"0099XX_{8000 + 2 * t:05d}",
            )
        )
    write_bag(tmp_path / "in_bag", frames, None, "mcap", start_ns=1_700_000_000 * 10**9)
    return tmp_path / "in_bag"


def test_bag_eval_equals_dataset_eval_and_writes_an_output_bag(tmp_path):
    from vsseg_ros.bags.masks import BagMasks
    from vsseg_ros.bags.reader import BagFrames
    from vsseg_ros.bags.score import score_outputs

    bag = _bag(tmp_path)
    root = _camvid(tmp_path / "camvid", n=6)
    assert _run(["--bag", bag, "--json", tmp_path / "bag.json", "--output-bag", "auto"] + SMALL) == 0
    assert _run(["--dataset", "camvid", "--root", root, "--json", tmp_path / "ds.json"] + SMALL) == 0
    got = json.loads((tmp_path / "bag.json").read_text())
    ref = json.loads((tmp_path / "ds.json").read_text())
    for key in ("miou", "per_class_iou", "boundary_f", "mvc8", "tc", "frames", "labelled_frames"):
        assert got[key] == ref[key], key
    out = tmp_path / "in_bag_eval"
    assert got["output_bag"]["path"] == str(out) and got["source"]["kind"] == "bag"
    masks = BagMasks(out)
    assert len(masks) == 6 and masks.model_id == got["model"] and masks.class_names[0] == "Sky"
    stamps = [m[0] for m in masks]
    assert stamps == [f.stamp_ns for f in BagFrames(bag)]  # every output carries its input frame's stamp
    # the stored masks score exactly as the evaluation did
    again = score_outputs(BagFrames(bag), masks, flow_consistency=False)
    assert again["frames_dropped"] == 0 and again["accuracy"]["miou"] == pytest.approx(got["miou"])


def test_ground_truth_that_matches_no_image_stamp_is_a_warning_with_counts(tmp_path, capsys):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from vsseg_ros.bags.typestore import typestore_for

    bag = _bag(tmp_path)
    ts = typestore_for("kilted")
    shifted = tmp_path / "shifted"
    with Reader(bag) as r, Writer(shifted, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        i = 0
        for c, t, raw in r.messages():
            if c.topic == "/camera/semantic_gt":
                if i in (1, 3):  # two ground-truth messages 1 ms off their image
                    msg = ts.deserialize_cdr(raw, c.msgtype)
                    msg.header.stamp.nanosec = (msg.header.stamp.nanosec + 1_000_000) % 10**9
                    raw = bytes(ts.serialize_cdr(msg, c.msgtype))
                i += 1
            w.write(conns[c.id], t, raw)
    assert _run(["--bag", shifted, "--json", tmp_path / "s.json", "--no-tc"] + SMALL) == 0
    err = capsys.readouterr().err
    assert "2 of 6 ground-truth messages" in err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["labelled_frames"] == 4 and s["frames"] == 6
    assert s["source"]["ground_truth"]["unmatched"] == 2 and any("match no image" in w for w in s["warnings"])
    assert s["tc"] is None and any("TC not computed" in n for n in s["notes"])


def test_wrong_dataset_layout_says_which_layout_was_expected(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert _run(["--dataset", "camvid", "--root", tmp_path, "--split", "val"] + SMALL) == 2
    err = capsys.readouterr().err
    assert "expected the SegNet CamVid layout" in err and "valannot" in err
    assert _run(["--dataset", "camvid", "--root", tmp_path / "nowhere"] + SMALL) == 2
    assert "not found" in capsys.readouterr().err


def test_bad_arguments_are_errors_not_tracebacks(tmp_path, capsys):
    root = _camvid(tmp_path / "camvid", n=2)
    assert _run(["--quiet"]) == 2
    assert "exactly one input" in capsys.readouterr().err
    assert _run(["--dataset", "camvid", "--root", root, "--bag", tmp_path / "x", "--quiet"]) == 2
    assert _run(["--dataset", "camvid", "--root", root, "--model", tmp_path / "missing.pt"] + SMALL) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert _run(["--dataset", "camvid", "--root", root, "--output-bag", "auto"] + SMALL) == 2
    assert "needs --bag" in capsys.readouterr().err


def test_ground_truth_with_another_class_count_is_refused(tmp_path, capsys):
    root = tmp_path / "folder"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    img, lab = _scene(0)
    cv2.imwrite(str(root / "images" / "s_000001.png"), img)
    cv2.imwrite(str(root / "labels" / "s_000001.png"), np.minimum(lab, 2))
    (root / "classes.txt").write_text("sky\nbuilding\nroad\n")
    assert _run(["--dataset", "folder", "--root", root, "--split", ""] + SMALL) == 2
    err = capsys.readouterr().err
    assert "3 classes" in err and "predicts 11" in err


@pytest.mark.skipif(shutil.which("vsseg-ros") is None, reason="the vsseg-ros entry point is not installed")
def test_the_cli_lists_eval():
    import subprocess

    out = subprocess.run(["vsseg-ros", "eval", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--compare" in out.stdout and "--bag" in out.stdout


def test_a_centred_temporal_model_has_every_result_scored_against_its_own_frame(tmp_path):
    import torch

    from vsseg_ros.core.checkpoint import save_checkpoint
    from vsseg_ros.core.classes import CAMVID
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.models.temporal import TemporalSegNet
    from vsseg_ros.core.segmenter import Frame, OutputRequest
    from vsseg_ros.data.camvid import CamVid

    temporal = {
        "frames": 3,
        "mode": "centered",
        "mar": None,
        "flow2seg": None,
        "stf": {"heads": 2, "ffn": 32, "block": 2, "dropout": 0.0, "pe_size": [4, 6]},
    }
    config = ModelConfig(name="tiny_stf", head_channels=16, input_size=(64, 96), output_stride=16, temporal=temporal)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TemporalSegNet(config).eval()
        with torch.no_grad():
            model.perframe.head.classifier.weight.normal_(0.0, 1.0)  # decisive, frame-dependent labels
    ckpt = save_checkpoint(tmp_path / "stf.pt", model, config, CAMVID, "tiny:stf")
    root = _camvid(tmp_path / "camvid", n=7)

    # drive the model by hand over the same stream and make each frame's ground truth its own prediction:
    # scored against its own frame every result is right (mIoU 1); against a neighbour it is not
    torch.set_num_threads(1)
    seg = load_segmenter(ckpt, device="cpu", input_size=(64, 96))
    data = CamVid(root, "val")
    by_stamp = {}
    results = []
    for s in data.samples:
        stamp = int(round(s.frame * 1e9 / 30.0))
        by_stamp[stamp] = s
        results.append(
            seg.push(Frame(image=data.read_image(s), stamp_ns=stamp, camera_id=s.sequence), OutputRequest(False, False))
        )
    results = [r for r in results if r is not None] + seg.flush(OutputRequest(False, False))
    assert len(results) == 7
    assert not all(np.array_equal(results[0].labels, r.labels) for r in results)  # the labels do change
    for r in results:
        cv2.imwrite(str(by_stamp[r.frame.stamp_ns].label_path), r.labels)

    assert _run(["--dataset", "camvid", "--root", root, "--model", ckpt, "--json", tmp_path / "t.json"] + SMALL) == 0
    got = json.loads((tmp_path / "t.json").read_text())
    assert got["delay_frames"] == 1 and got["frames_without_result"] == 0
    assert got["frames"] == got["labelled_frames"] == 7
    assert got["miou"] == 1.0 and got["boundary_f"] == 1.0


def test_context_frames_stream_unlabelled_neighbours_in_frame_order(tmp_path):
    from vsseg_ros.data.registry import open_dataset
    from vsseg_ros.data.sources import frames_of, plan_frames

    root = tmp_path / "folder"
    for d in ("images", "labels", "frames"):
        (root / d).mkdir(parents=True)
    for t in (10, 12):  # labelled
        img, lab = _scene(t)
        cv2.imwrite(str(root / "images" / f"drive_{t:06d}.png"), img)
        cv2.imwrite(str(root / "labels" / f"drive_{t:06d}.png"), np.where(lab == 11, 255, lab).astype(np.uint8))
    for t in (8, 9, 11, 13, 20):  # unlabelled video frames
        cv2.imwrite(str(root / "frames" / f"drive_{t:06d}.png"), _scene(t)[0])
    data = open_dataset("folder", root, None, num_classes=11)
    assert [n for _, n, _ in plan_frames(data, (2, 1))] == [8, 9, 10, 11, 12, 13]
    frames = list(frames_of(data, 10.0, (2, 1)))
    assert [f.name for f in frames] == [f"drive_{t:06d}" for t in (8, 9, 10, 11, 12, 13)]
    assert [f.label is not None for f in frames] == [False, False, True, False, True, False]
    assert [f.stamp_ns for f in frames] == [t * 100_000_000 for t in (8, 9, 10, 11, 12, 13)]
    assert [f.name for f in frames_of(data, 10.0)] == ["drive_000010", "drive_000012"]
    with pytest.raises(ValueError, match=">= 0"):
        plan_frames(data, (-1, 0))
    assert (
        _run(
            ["--dataset", "folder", "--root", root, "--split", "", "--context", "2", "1", "--json", tmp_path / "c.json"]
            + SMALL
        )
        == 0
    )
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["frames"] == 6 and c["labelled_frames"] == 2 and c["tc_pairs"] == 5 and c["source"]["context"] == [2, 1]
