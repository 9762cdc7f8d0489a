"""Stages 2 and 3: the temporal modules (STF, then MAR) on top of a trained, frozen per-frame network.

As the reference does, the per-frame network (backbone + head) is trained first (stage 1,
:mod:`vsseg_ros.training.perframe`) and frozen here: stage 2 trains STF on clips with the label on the target
frame only; stage 3 builds the MAR memory from the training set with the STF-fused features
(:mod:`vsseg_ros.core.memory_bank`) and fine-tunes MAR (its memory included) with STF frozen.

``train_temporal(config_path)`` reads a YAML recipe (``config/train/*stf*.yaml``)::

    stage: temporal
    model: config/models/mbv2_lite_stf_mar.yaml   # a temporal ModelConfig (mapping or path)
    model_id: mbv2_lite_stf_mar_camvid
    init: vsseg_ros/weights/default.pt            # per-frame checkpoint: fills model.perframe (frozen)
    data:  {dataset, root, train_split, val_split, clip_size, clips: {...StillClipDataset options}}
    train: {seed, batch_size, stf_iters, mar_iters, time_budget_min, mar_share, lr, mar_lr,
            classifier_lr_mult, weight_decay, grad_clip, warmup_iters, class_weighting, val_every_min,
            log_every, threads}

A model with ``temporal.frames: 1`` and no STF (``config/models/mbv2_lite_mar.yaml``) skips stage 2: MAR on the
per-frame default, trained on the stills themselves (clips of one frame), selected on mIoU alone.

Validation streams the whole validation split in order through :class:`TemporalSegmenter` (causal or centred,
as configured) and scores it with :class:`StreamScorer` (mIoU and mVC8, as ``vsseg-ros eval`` does); the
per-frame model is scored the same way once, so every log line shows the gain over it. ``best.pt`` is the
checkpoint with the best validation mIoU among those whose mVC8 is not below the per-frame model's.

``last.pt`` (written at every validation, once the MAR memory is built and when a stage ends) holds the whole
training state: weights, the stage's optimiser, the stage and step, the elapsed time, the history, the best
score, the RNG and the recipe. ``resume=True`` (``--resume``) continues from it on the data stream an
uninterrupted run would draw (:class:`SeedStream` from the saved step) and never rebuilds a memory it holds.

Data-parallel: ``torchrun --nproc_per_node N -m vsseg_ros.training.temporal --config ...`` trains with N CPU
processes (gloo); ``train.batch_size`` stays the batch of one step over all of them. See
:func:`run_temporal_training`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

from vsseg_ros.training.command import run_command
from vsseg_ros.training.recipe import TrainConfigError, load_temporal_recipe
from vsseg_ros.training.temporal_run import TemporalRun, TemporalTrainResult


def run_temporal_training(
    config_path: Union[str, Path],
    out_dir: Optional[Path] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    stf_iters: Optional[int] = None,
    mar_iters: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
    resume: bool = False,
    stop_after: Optional[int] = None,
) -> TemporalTrainResult:
    """Train STF (stage 2) and MAR (stage 3) from the recipe at ``config_path``.

    ``resume``: continue from ``out_dir/last.pt`` (written at every validation, after the MAR memory is built and
    when a stage ends) at its stage and step, with its optimiser, clock (time budget), history, best score and
    RNG, on the data stream an uninterrupted run would draw; ``stf_iters``/``mar_iters`` then default to the
    saved run's. ``stop_after``: save ``last.pt`` and return after this many optimisation steps in this session
    (split a run over jobs with a time limit).

    Under ``torchrun`` every process calls this: they join one group (gloo, CPU), each takes
    ``batch_size / N`` clips of every step from the shared stream, DDP averages the gradients, rank 0's clock
    steers the schedule and the budget, and rank 0 alone scores, logs, builds the MAR memory (copied to the
    others) and writes files while the others wait.
    """
    from vsseg_ros.training.distributed import init_distributed

    if stop_after is not None and int(stop_after) < 1:
        raise TrainConfigError(f"stop_after must be a number of steps >= 1, got {stop_after}")
    recipe = load_temporal_recipe(config_path, data_root)
    ctx = init_distributed("cpu")
    try:
        run = TemporalRun(
            recipe,
            ctx,
            out_dir,
            threads,
            {"stf_iters": stf_iters, "mar_iters": mar_iters},
            command,
            progress,
            resume,
            stop_after,
        )
        return run.run()
    finally:
        ctx.close()


def train_temporal(
    config_path: Union[str, Path],
    out_dir: Optional[Path] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    stf_iters: Optional[int] = None,
    mar_iters: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
    resume: bool = False,
    stop_after: Optional[int] = None,
) -> Path:
    """:func:`run_temporal_training`, returning ``best.pt``'s path."""
    return run_temporal_training(
        config_path, out_dir, data_root, threads, stf_iters, mar_iters, command, progress, resume, stop_after
    ).best_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vsseg_ros.training.temporal",
        description="Train STF and MAR on a frozen per-frame network (stages 2 and 3). "
        "Several processes: torchrun --nproc_per_node N -m "
        "vsseg_ros.training.temporal ...",
    )
    p.add_argument("--config", required=True, type=Path, help="e.g. config/train/mbv2_lite_stf_mar_camvid.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt at its saved stage and step")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="save OUT/last.pt and stop after this many steps in this session (continue with --resume)",
    )
    p.add_argument("--data-root", type=Path, default=None, help="override data.root")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (per process)")
    p.add_argument("--stf-iters", type=int, default=None, help="override train.stf_iters")
    p.add_argument("--mar-iters", type=int, default=None, help="override train.mar_iters")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    def run(args: argparse.Namespace, command: str) -> Path:
        return train_temporal(
            args.config,
            out_dir=args.out,
            data_root=args.data_root,
            threads=args.threads,
            stf_iters=args.stf_iters,
            mar_iters=args.mar_iters,
            command=command,
            progress=not args.no_progress,
            resume=args.resume,
            stop_after=args.stop_after,
        )

    return run_command(build_parser(), argv, run)


if __name__ == "__main__":
    sys.exit(main())
