"""Stages 2 and 3 end to end on a tiny labelled folder: STF then MAR train, the loss stays finite, and best.pt is
a temporal checkpoint the node's loader runs; a run stopped and resumed ends exactly where an uninterrupted one
does (without rebuilding the MAR memory); two gloo processes under torchrun end with identical weights."""

from __future__ import annotations

import json
import subprocess
import sys
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
from vsseg_ros.training.recipe import TrainConfigError, load_temporal_recipe
from vsseg_ros.training.temporal import main, run_temporal_training, train_temporal
from vsseg_ros.training.temporal_model import build_from_init

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (64, 96)


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
            img[y : y + 24, x : x + 30] = rng.integers(170, 255, (24, 30, 3), dtype=np.uint8)
            lab[y : y + 24, x : x + 30] = 1
            cv2.imwrite(str(root / "images" / split / f"clip_{i:04d}.png"), img[:, :, ::-1])
            cv2.imwrite(str(root / "labels" / split / f"clip_{i:04d}.png"), lab)


def tiny_perframe_start(tmp_path: Path) -> tuple[Path, ModelConfig, Path]:
    """A folder dataset of squares, a tiny per-frame config and its (untrained, seeded) checkpoint: what a
    temporal recipe starts from."""
    data = tmp_path / "data"
    _folder(data)
    base = ModelConfig(name="tiny", head_channels=16, num_classes=2, input_size=SIZE, output_stride=16)
    torch.manual_seed(0)
    init = save_checkpoint(
        tmp_path / "perframe.pt",
        PerFrameSegNet(base),
        base,
        ClassMap(names=("background", "square"), colors=((0, 0, 0), (255, 255, 255))),
        "tiny",
    )
    return data, base, init


def _recipe(tmp_path: Path, stf_dropout: float = 0.0, **train: object) -> Path:
    data, base, init = tiny_perframe_start(tmp_path)
    model = {
        **base.to_dict(),
        "temporal": {
            "frames": 3,
            "mode": "causal",
            "mar": {"slots_per_class": 2, "dim": 8, "ffn": 16},
            "stf": {"heads": 2, "ffn": 16, "block": 4, "dropout": stf_dropout, "pe_size": [4, 6], "dim": 8, "pool": 1},
        },
    }
    recipe = {
        "stage": "temporal",
        "model": model,
        "model_id": "tiny_stf_mar",
        "init": str(init),
        "data": {
            "dataset": "folder",
            "root": str(data),
            "clip_size": list(SIZE),
            "clips": {"transient": 0.5, "target_degrade": 0.5},
        },
        "train": {
            "batch_size": 2,
            "stf_iters": 4,
            "mar_iters": 3,
            "warmup_iters": 1,
            "val_every_min": 0,
            "lr": 1e-3,
            "mar_lr": 1e-3,
            "log_every": 1,
            **train,
        },
    }
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
    bad.write_text(
        yaml.safe_dump(
            {
                "stage": "temporal",
                "model": {"name": "x", "temporal": {"frames": 3}},
                "init": "a.pt",
                "train": {"stf_itres": 3},
            }
        )
    )
    with pytest.raises(TrainConfigError, match="stf_itres"):
        load_temporal_recipe(bad)


# -- resume ----------------------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _same_weights(a: dict, b: dict, prefix: str = "") -> None:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys and a.keys() == b.keys()
    for k in keys:
        assert torch.allclose(a[k], b[k], rtol=0.0, atol=1e-6), (k, float((a[k] - b[k]).abs().max()))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """One whole run (4 STF + 3 MAR steps, dropout on in both so the RNG must be carried over too)."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("resume")
    recipe = _recipe(tmp, stf_dropout=0.1)
    out = tmp / "whole"
    result = run_temporal_training(recipe, out_dir=out, progress=False, command="pytest")
    assert result.finished and (result.stage, result.step) == ("mar", 3)
    return recipe, out, {k: v.clone() for k, v in result.model.state_dict().items()}


def test_a_stopped_and_resumed_run_ends_as_an_uninterrupted_one(uninterrupted, tmp_path: Path, capsys) -> None:
    recipe, whole, final = uninterrupted
    out = tmp_path / "split"
    first = run_temporal_training(recipe, out_dir=out, progress=False, stop_after=2)
    assert not first.finished and (first.stage, first.step) == ("stf", 2)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["position"]["stage"] == "stf" and state["position"]["step"] == 2 and state["optimizer"]
    capsys.readouterr()
    second = run_temporal_training(recipe, out_dir=out, progress=False, resume=True)
    printed = capsys.readouterr().out
    assert f"resuming from {out / 'last.pt'} at stf step 2" in printed
    assert "scoring the per-frame model" not in printed  # its scores come from last.pt
    assert second.finished
    # the same steps with the same losses (same clips, same dropout masks, same optimiser state) ...
    split_log, whole_log = _jsonl(out / "loss_log.jsonl"), _jsonl(whole / "loss_log.jsonl")
    steps = [("stf", s) for s in (1, 2, 3, 4)] + [("mar", s) for s in (1, 2, 3)]
    assert [(r["stage"], r["step"]) for r in split_log] == steps
    assert [(r["stage"], r["step"]) for r in split_log] == [(r["stage"], r["step"]) for r in whole_log]
    np.testing.assert_allclose([r["loss"] for r in split_log], [r["loss"] for r in whole_log], rtol=0, atol=1e-6)
    # ... and the same weights at the end
    _same_weights(second.model.state_dict(), final, "stf.")
    _same_weights(second.model.state_dict(), final)
    assert [r["stage"] for r in _jsonl(out / "train_log.jsonl")] == ["stf", "mar"]


def test_resuming_inside_mar_keeps_the_built_memory(uninterrupted, tmp_path: Path, capsys, monkeypatch) -> None:
    import vsseg_ros.core.memory_bank as memory_bank

    recipe, _, final = uninterrupted
    out = tmp_path / "in_mar"
    first = run_temporal_training(recipe, out_dir=out, progress=False, stop_after=5)
    assert (first.stage, first.step) == ("mar", 1)
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["position"]["stage"] == "mar" and float(saved["model"]["mar.memory_key"].abs().sum()) > 0

    def no_rebuild(*_: object, **__: object) -> None:
        raise AssertionError("the resumed run built the MAR memory again")

    monkeypatch.setattr(memory_bank, "build_memory", no_rebuild)
    capsys.readouterr()
    second = run_temporal_training(recipe, out_dir=out, progress=False, resume=True)
    printed = capsys.readouterr().out
    assert "at mar step 1" in printed and "building the MAR memory" not in printed
    assert second.finished and (second.stage, second.step) == ("mar", 3)
    _same_weights(second.model.state_dict(), final)  # memory (trained in stage 3) included


def test_resume_errors_are_clear(uninterrupted, tmp_path: Path, capsys) -> None:
    from vsseg_ros.cli import main as cli_main

    recipe, whole, _ = uninterrupted
    # nothing to resume: through the trainer's CLI and through `vsseg-ros train` (which passes --resume on)
    assert main(["--config", str(recipe), "--out", str(tmp_path / "empty"), "--resume", "--no-progress"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(recipe), "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    # a finished run resumed through `vsseg-ros train` has nothing left to train
    assert cli_main(["train", "--config", str(recipe), "--out", str(whole), "--resume"]) == 0
    assert "at mar step 3 (finished)" in capsys.readouterr().out
    # a recipe whose model differs from the saved run's
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["temporal"]["stf"]["ffn"] = 32
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"model differs .*model\.temporal\.stf\.ffn"):
        run_temporal_training(other, out_dir=whole, progress=False, resume=True)


# -- two processes (torchrun, gloo) ---------------------------------------------------------------------

WORKER = """
import os, sys
from pathlib import Path
import torch
from vsseg_ros.training.temporal import run_temporal_training

config, out = Path(sys.argv[1]), Path(sys.argv[2])
result = run_temporal_training(config, out_dir=out, threads=1, progress=False, command="test_ddp")
torch.save(result.model.state_dict(), out / f"rank{os.environ['RANK']}_state.pt")
print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: {result.stage} step {result.step}", flush=True)
"""


def test_two_gloo_processes_train_the_same_weights(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, stf_iters=3, mar_iters=2)  # batch_size 2: one clip per process and step
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(worker),
            str(recipe),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "rank 0 of 2: mar step 2" in proc.stdout and "rank 1 of 2: mar step 2" in proc.stdout
    s0 = torch.load(out / "rank0_state.pt", weights_only=True)
    s1 = torch.load(out / "rank1_state.pt", weights_only=True)
    assert s0.keys() == s1.keys()
    for k in s0:  # STF, MAR (the memory rank 0 built included) and the classifier agree exactly
        assert torch.equal(s0[k], s1[k]), k
    assert float(s1["mar.memory_key"].abs().sum()) > 0
    # STF moved away from its initialisation (the trainer seeds train.seed = 0 before building the model)
    torch.manual_seed(0)
    start = build_from_init(load_temporal_recipe(recipe)["model"], tmp_path / "perframe.pt").state_dict()
    assert any(not torch.equal(s0[k], start[k]) for k in start if k.startswith("stf."))
    # rank 0 alone wrote the logs: one line per step of each stage, one validation per stage
    assert [(r["stage"], r["step"]) for r in _jsonl(out / "loss_log.jsonl")] == [
        ("stf", 1),
        ("stf", 2),
        ("stf", 3),
        ("mar", 1),
        ("mar", 2),
    ]
    assert [r["stage"] for r in _jsonl(out / "train_log.jsonl")] == ["stf", "mar"]
    assert load_checkpoint(out / "best.pt").meta["processes"] == 2
