"""What every training session of either stage sets up alike: seeding, CPU threads, the output folder and its
files, the run's clock (earlier sessions included, rank 0's on every rank), each rank's share of a batch, and
printing on rank 0 only."""

from __future__ import annotations

import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from vsseg_ros.training.recipe import TrainConfigError


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's global RNGs from ``seed`` (the same initial weights on every rank)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: Optional[int], configured: Any) -> None:
    """torch's CPU threads: ``threads`` (``--threads``) if given, else the recipe's ``train.threads`` if set."""
    n = threads if threads is not None else configured
    if n:
        torch.set_num_threads(int(n))


def shard_batch(batch_size: int, world_size: int, config_path: Path) -> int:
    """Each rank's share of a step's ``train.batch_size`` (the batch of one step over all processes, so a recipe
    means the same on any number of them); TrainConfigError when it does not divide."""
    if batch_size % world_size:
        raise TrainConfigError(
            f"{config_path}: train.batch_size={batch_size} (the batch of one step, over all "
            f"processes) must be divisible by the number of processes, {world_size}"
        )
    return batch_size // world_size


def command_line(command: Optional[str]) -> str:
    """``command`` as given, else this process's own command line (recorded in the checkpoints)."""
    return command if command is not None else shlex.join([Path(sys.executable).name] + sys.argv)


def printer(is_main: bool) -> Callable[..., None]:
    """``print`` on rank 0, silence on the others."""
    return print if is_main else (lambda *a, **k: None)


class RunFiles:
    """A run's output folder (default ``out/train/<recipe file stem>``, created) and the files in it."""

    def __init__(self, out_dir: Optional[Path], config_path: Path) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else Path("out/train") / Path(config_path).stem
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.last = self.out_dir / "last.pt"
        self.best = self.out_dir / "best.pt"
        self.log = self.out_dir / "train_log.jsonl"  # one record per validation
        self.loss_log = self.out_dir / "loss_log.jsonl"  # the training loss every log_every steps
        self.curve = self.out_dir / "val_miou.png"

    def start_fresh(self) -> None:
        """A fresh (not resumed) run starts fresh logs."""
        for p in (self.log, self.loss_log):
            p.unlink(missing_ok=True)


class RunClock:
    """The run's training time, earlier sessions included (a resumed run keeps its time budget)."""

    def __init__(self, ctx: Any, elapsed_before: float = 0.0) -> None:
        self.ctx = ctx
        self.t0 = time.monotonic()
        self.elapsed_before = float(elapsed_before)

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.t0)

    def shared(self) -> float:
        """Rank 0's :meth:`elapsed` on every rank: the schedule, the budget and validation follow one clock."""
        return float(self.ctx.broadcast(self.elapsed()))
