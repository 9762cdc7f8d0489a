"""Stages 2 and 3 end to end on a tiny labelled folder: STF then MAR train, the loss stays finite, and best.pt is
a temporal checkpoint the node's loader runs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from vsseg_ros.core.checkpoint import load_checkpoint, save_checkpoint
from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.loading import load_segmenter
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.segmenter import Frame
from vsseg_ros.core.temporal_segmenter import TemporalSegmenter
from vsseg_ros.training.temporal import TrainConfigError, load_temporal_recipe, train_temporal

SIZE = (64, 96)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _folder(root: Path) -> None:
    """Two classes: bright squares (1) on a dark textured background (0); 6 train and 6 val frames (a clip shorter than
    mVC8's window: mVC8 is n/a, so the best checkpoint is chosen by mIoU alone and is always written)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("background 0 0 0\nsquare 255 255 255\n")
    for split, n in (("train", 6), ("val", 6)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 80, (*SIZE, 3), dtype=np.uint8)
            lab = np.zeros(SIZE, np.uint8)
            y, x = 10 + 3 * i, 20 + 4 * i
            img[y:y + 24, x:x + 30] = rng.integers(170, 255, (24, 30, 3), dtype=np.uint8)
            lab[y:y + 24, x:x + 30] = 1
            cv2.imwrite(str(root / "images" / split / f"clip_{i:04d}.png"), img[:, :, ::-1])
            cv2.imwrite(str(root / "labels" / split / f"clip_{i:04d}.png"), lab)


def _recipe(tmp_path: Path, **train: object) -> Path:
    data = tmp_path / "data"
    _folder(data)
    base = ModelConfig(name="tiny", head_channels=16, num_classes=2, input_size=SIZE, output_stride=16)
    torch.manual_seed(0)
    init = save_checkpoint(tmp_path / "perframe.pt", PerFrameSegNet(base), base,
                           ClassMap(names=("background", "square"), colors=((0, 0, 0), (255, 255, 255))), "tiny")
    model = {**base.to_dict(), "temporal": {
        "frames": 3, "mode": "causal", "mar": {"slots_per_class": 2, "dim": 8, "ffn": 16},
        "stf": {"heads": 2, "ffn": 16, "block": 4, "dropout": 0.0, "pe_size": [4, 6], "dim": 8, "pool": 1}}}
    recipe = {"stage": "temporal", "model": model, "model_id": "tiny_stf_mar", "init": str(init),
              "data": {"dataset": "folder", "root": str(data), "clip_size": list(SIZE),
                       "clips": {"transient": 0.5, "target_degrade": 0.5}},
              "train": {"batch_size": 2, "stf_iters": 4, "mar_iters": 3, "warmup_iters": 1, "val_every_min": 0,
                        "lr": 1e-3, "mar_lr": 1e-3, "log_every": 1, **train}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_stf_then_mar_train_and_the_result_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    best = train_temporal(_recipe(tmp_path), out_dir=out, progress=False)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["stf", "mar"]
    losses = [json.loads(line)["loss"] for line in (out / "loss_log.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(losses))
    assert (out / "val_miou.png").is_file()
    assert all(r["val_mvc8"] is None for r in log)
    ckpt = load_checkpoint(best)
    assert ckpt.config.temporal is not None and ckpt.meta["perframe_val_miou"] is not None
    seg = load_segmenter(str(best), device="cpu")
    assert isinstance(seg, TemporalSegmenter)
    image = np.zeros((*SIZE, 3), np.uint8)
    res = seg.push(Frame(image=image, stamp_ns=0, camera_id="c"))
    assert res is not None and res.labels.shape == SIZE
    # the final state holds the built memory (not the zeros it starts from)
    state = torch.load(out / "last.pt", weights_only=True)["model"]
    assert float(state["mar.memory_key"].abs().sum()) > 0


def test_the_recipe_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stage": "temporal", "model": {"name": "x"}, "init": "a.pt"}))
    with pytest.raises(TrainConfigError, match="temporal"):
        load_temporal_recipe(bad)
    bad.write_text(yaml.safe_dump({"stage": "temporal", "model": {"name": "x", "temporal": {"frames": 3}},
                                   "init": "a.pt", "train": {"stf_itres": 3}}))
    with pytest.raises(TrainConfigError, match="stf_itres"):
        load_temporal_recipe(bad)
