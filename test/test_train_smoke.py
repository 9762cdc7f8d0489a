"""A few iterations of the stage-1 trainer on a tiny synthetic CamVid-layout set."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from vsseg_ros.core.checkpoint import load_checkpoint
from vsseg_ros.training.perframe import main, train
from vsseg_ros.training.recipe import load_recipe

# each class gets its own colour, so a few steps are enough to learn something
COLOURS = {0: (200, 200, 220), 3: (90, 60, 100), 5: (40, 140, 30), 8: (220, 40, 40)}


def _synthetic_camvid(root: Path, n_train: int = 6, n_val: int = 2, size=(48, 64)) -> Path:
    rng = np.random.default_rng(0)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for k in range(n):
            label = np.zeros((h, w), np.uint8)  # sky on top
            label[h // 2 + int(rng.integers(-6, 6)) :] = 3  # road below a random horizon
            x0 = int(rng.integers(0, w - 20))
            label[h // 3 : h // 3 + 12, x0 : x0 + 16] = 5
            y0, x1 = int(rng.integers(h // 2, h - 10)), int(rng.integers(0, w - 12))
            label[y0 : y0 + 10, x1 : x1 + 12] = 8
            label[:2] = 11  # void
            image = np.zeros((h, w, 3), np.uint8)
            for c, rgb in COLOURS.items():
                image[label == c] = rgb
            image = np.clip(image.astype(np.int16) + rng.integers(-15, 16, image.shape), 0, 255).astype(np.uint8)
            name = f"SYN_{k:05d}.png"
            cv2.imwrite(str(root / split / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / f"{split}annot" / name), label)
    return root


def _recipe(tmp_path: Path, data_root: Path) -> Path:
    recipe = {
        "model": {
            "name": "tiny",
            "output_stride": 16,
            "head_channels": 16,
            "num_classes": 11,
            "boundary_head": True,
            "input_size": [48, 64],
        },
        "model_id": "tiny_synthetic",
        "data": {
            "root": str(data_root),
            "crop_size": [32, 32],
            "scale_range": [0.75, 1.25],
            "num_workers": 0,
            "val_batch_size": 2,
        },
        "train": {
            "seed": 0,
            "batch_size": 4,
            "max_iters": 12,
            "optimizer": "adamw",
            "lr": 0.003,
            "head_lr_mult": 3.0,
            "warmup_iters": 2,
            "pretrained": "none",
            "val_every_iters": 6,
            "val_every_min": None,
            "log_every": 1,
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("train")
    data = _synthetic_camvid(tmp / "camvid")
    config = _recipe(tmp, data)
    out = tmp / "run"
    best = train(config, out_dir=out, max_iters=6, progress=False, command="pytest")
    return config, out, best


def test_train_lowers_the_loss_and_writes_outputs(trained) -> None:
    config, out, best = trained
    assert best == out / "best.pt" and best.is_file()
    for name in ("last.pt", "train_log.jsonl", "loss_log.jsonl", "val_miou.png"):
        assert (out / name).is_file(), name
    assert cv2.imread(str(out / "val_miou.png")) is not None
    val = _read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in val] == [6]
    assert 0.0 <= val[0]["val_miou"] <= 1.0 and set(val[0]["val_iou"]) >= {"Sky", "Road", "Bicyclist"}


def test_resume_continues_from_saved_step(trained) -> None:
    config, out, _ = trained
    state = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 6
    best = train(config, out_dir=out, resume=True, max_iters=12, progress=False, command="pytest")
    val = _read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in val] == [6, 12]
    losses = _read_jsonl(out / "loss_log.jsonl")
    assert [r["step"] for r in losses] == list(range(1, 13))
    first, last = np.mean([r["ce"] for r in losses[:3]]), np.mean([r["ce"] for r in losses[-3:]])
    assert last < first, (first, last)
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["step"] == 12
    ckpt = load_checkpoint(best)
    assert ckpt.model_id == "tiny_synthetic"
    assert ckpt.meta["dataset"] == "camvid" and ckpt.meta["split"] == "val"
    assert ckpt.meta["iterations"] in (6, 12) and 0.0 <= ckpt.meta["val_miou"] <= 1.0
    assert set(ckpt.meta["per_class_iou"]) == {
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    }
    assert ckpt.meta["train_config"]["model_id"] == "tiny_synthetic" and ckpt.meta["command"] == "pytest"


def test_best_checkpoint_loads_with_load_segmenter(trained) -> None:
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.segmenter import Frame

    _, out, _ = trained
    seg = load_segmenter(str(out / "best.pt"), device="cpu")
    assert seg.model_id == "tiny_synthetic"
    res = seg.push(Frame(image=np.zeros((48, 64, 3), np.uint8), stamp_ns=1))
    assert res is not None and res.labels.shape == (48, 64)


def test_resume_without_state_and_cli_errors(tmp_path: Path, capsys) -> None:
    data = _synthetic_camvid(tmp_path / "camvid", n_train=1, n_val=1)
    config = _recipe(tmp_path, data)
    assert main(["--config", str(config), "--out", str(tmp_path / "x"), "--resume", "--no-progress"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {batch_sise: 3}\n", encoding="utf-8")
    assert main(["--config", str(bad)]) == 2
    assert "batch_sise" in capsys.readouterr().err


def test_relative_data_root_is_resolved_against_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "config" / "train").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("", encoding="utf-8")
    cfg = repo / "config" / "train" / "r.yaml"
    cfg.write_text("data: {root: ../shared/data/camvid}\n", encoding="utf-8")
    assert load_recipe(cfg).data_root == (tmp_path / "shared" / "data" / "camvid").resolve()
    assert load_recipe(cfg, data_root=tmp_path / "elsewhere").data_root == (tmp_path / "elsewhere").resolve()
