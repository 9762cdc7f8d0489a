"""Data-parallel stage-1 training: two CPU processes on gloo, started by torchrun, on a tiny synthetic set."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_train_smoke import _recipe, _synthetic_camvid
from vsseg_ros.core.checkpoint import load_checkpoint
from vsseg_ros.training.distributed import DistContext, init_distributed
from vsseg_ros.training.perframe_run import train_session as _run
from vsseg_ros.training.recipe import TrainConfigError, load_recipe
from vsseg_ros.training.stream import SeedStream

WORKER = """
import os, sys
from pathlib import Path
import torch
from vsseg_ros.training.perframe import run_training

config, out, iters = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
result = run_training(config, out_dir=out, max_iters=iters, threads=1, progress=False, command="test_ddp")
torch.save(result.model.state_dict(), out / f"rank{os.environ['RANK']}_state.pt")
print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: step {result.step}", flush=True)
"""


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_seed_stream_shards_one_stream_by_batches() -> None:
    whole = list(itertools.islice(SeedStream(5, seed=3), 24))
    for start in (0, 8):
        ranks = [
            list(itertools.islice(SeedStream(5, 3, start, rank=r, world_size=2, shard_batch=2), 8)) for r in range(2)
        ]
        # step k of the single-process stream (batch 4) = rank 0's k-th pair of draws + rank 1's k-th pair
        for k in range(4):
            assert ranks[0][2 * k : 2 * k + 2] + ranks[1][2 * k : 2 * k + 2] == whole[start + 4 * k : start + 4 * k + 4]
    with pytest.raises(ValueError, match="rank 2 outside a world of 2"):
        SeedStream(5, 0, rank=2, world_size=2)


def test_single_process_context_without_torchrun(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert not ctx.enabled and ctx.is_main and ctx.world_size == 1 and ctx.device.type == "cpu"
    assert ctx.all_reduce([1.0, 2.0]).tolist() == [1.0, 2.0] and ctx.broadcast(3.5) == 3.5
    with pytest.raises(ValueError, match="device must be cpu, cuda or auto"):
        init_distributed("tpu")


def test_batch_must_split_evenly_over_processes(tmp_path: Path) -> None:
    config = _recipe(tmp_path, _synthetic_camvid(tmp_path / "camvid", n_train=2, n_val=1))
    recipe = load_recipe(config)
    recipe.train["batch_size"] = 3
    with pytest.raises(TrainConfigError, match=r"batch_size=3 .* divisible by the number of processes, 2"):
        _run(recipe, DistContext(rank=0, world_size=2), config, tmp_path / "out", False, 2, 1, "t", False)


def test_two_gloo_processes_stay_in_sync_and_learn(tmp_path: Path) -> None:
    data = _synthetic_camvid(tmp_path / "camvid")
    config = _recipe(tmp_path, data)
    raw = yaml.safe_load(config.read_text())
    raw["train"].update({"batch_size": 4, "val_every_iters": 5, "device": "cpu"})  # 2 crops per process and step
    config.write_text(yaml.safe_dump(raw))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    out = tmp_path / "run"
    iters = 10
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(worker),
            str(config),
            str(out),
            str(iters),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "rank 0 of 2: step 10" in proc.stdout and "rank 1 of 2: step 10" in proc.stdout

    # both ranks end with the same weights and BatchNorm statistics, and they moved away from the start
    s0 = torch.load(out / "rank0_state.pt", weights_only=True)
    s1 = torch.load(out / "rank1_state.pt", weights_only=True)
    assert s0.keys() == s1.keys()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k

    # rank 0 alone writes the logs: one line per step, losses averaged over both processes, and they drop
    losses = _read_jsonl(out / "loss_log.jsonl")
    assert [r["step"] for r in losses] == list(range(1, iters + 1))
    first, last = np.mean([r["ce"] for r in losses[:3]]), np.mean([r["ce"] for r in losses[-3:]])
    assert last < 0.9 * first, (first, last)
    val = _read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in val] == [5, 10]
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.meta["processes"] == 2 and ckpt.meta["iterations"] in (5, 10)
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["step"] == iters
