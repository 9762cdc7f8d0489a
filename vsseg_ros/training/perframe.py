"""Stage-1 training of :class:`PerFrameSegNet` on CamVid (SegNet layout).

``train(config_path)`` reads a YAML recipe (``config/train/*.yaml``)::

    model: {...}                  # a ModelConfig mapping (as in config/models/*.yaml)
    model_id: mbv2_lite_camvid    # id written into best.pt
    data:   {root, train_split, val_split, crop_size, scale_range, hflip, jitter, boundary_radius, copy_paste,
             num_workers}
    train:  {seed, batch_size, max_iters, time_budget_min, optimizer, lr, head_lr_mult, weight_decay,
             momentum, warmup_iters, schedule, poly_power, class_weighting, boundary_loss_weight,
             boundary_pos_weight_max, pretrained, init, ema, ohem_keep, lovasz_weight, val_every_iters,
             val_every_min, log_every, threads, grad_clip, device}

Relative ``data.root`` paths are resolved against the repository the config file lies in (the nearest
folder above it holding ``pyproject.toml`` or ``package.xml``), else against the config file's folder.

Loss: pixel cross-entropy (ignore 255) with tempered class weights (``sqrt_median_freq``: the square root of
median-frequency balancing, computed from the training labels) plus ``boundary_loss_weight`` x binary
cross-entropy on the boundary head (targets from :mod:`vsseg_ros.training.targets`, excluded pixels left out,
positives up-weighted by neg/pos of the batch, capped at ``boundary_pos_weight_max``). Both heads' stride-8
outputs (stride 4 with ``model.detail_head``) are upsampled bilinearly to the crop size before the loss.

``ohem_keep`` (a fraction in (0, 1], null = off): the cross-entropy averages only that share of each batch's
labelled pixels, the ones with the highest loss (online hard example mining; the class weights still apply).
``lovasz_weight`` (>= 0, null = off): adds that many times the Lovasz-softmax loss, a surrogate of each class's
IoU in which a thin class counts as much as a large one (computed at half the crop's resolution).

``init``: start from the weights of a per-frame checkpoint (e.g. ``vsseg_ros/weights/default.pt``, resolved like
``data.root``) instead of ImageNet: a longer recipe continues from a trained model. ``ema`` (a decay such as
0.999, null = off): an exponential moving average of the weights (BatchNorm statistics included) is kept, saved
in ``last.pt`` and validated alongside the trained weights; at each validation the one with the higher val mIoU
is the candidate for ``best.pt`` (the average helps while the rate is high, the trained weights win once the
decay has ended), and the log's ``kept`` and best.pt's ``weights`` say which.

Schedule: linear warm-up, then poly (or cosine) decay over the run's *progress*, which is
``max(step / max_iters, elapsed / time_budget)``: on a shared machine whose speed varies, a time budget
still ends the run (with a completed decay, a final validation and ``best.pt``) on time.

Data-parallel: ``torchrun --nproc_per_node N -m vsseg_ros.training.perframe --config ...`` trains with N
processes (gloo on CPU; nccl with ``train.device: cuda``, one GPU per process); ``train.batch_size`` stays the
batch of one step over all processes (each takes ``batch_size / N``), so a recipe means the same on any N.
See :func:`run_training`.

Outputs in ``out_dir``: ``last.pt`` (model, optimiser, step, elapsed time, history: for ``resume``),
``best.pt`` (a vsseg_ros checkpoint of the best validation mIoU), ``train_log.jsonl`` (one line per
validation), ``loss_log.jsonl`` (training loss every ``log_every`` steps) and ``val_miou.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from vsseg_ros.training.command import run_command
from vsseg_ros.training.perframe_run import TrainResult, train_session
from vsseg_ros.training.recipe import TrainConfigError, load_recipe


def train(
    config_path: Path,
    out_dir: Optional[Path] = None,
    resume: bool = False,
    max_iters: Optional[int] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
) -> Path:
    """Train a PerFrameSegNet from the recipe at ``config_path``; return the path of ``best.pt``.

    ``out_dir`` defaults to ``out/train/<config file stem>``; ``max_iters`` overrides ``train.max_iters``;
    ``data_root`` overrides ``data.root``; ``resume`` continues from ``out_dir/last.pt`` at its saved step.
    Under ``torchrun`` every process calls this; see :func:`run_training`.
    """
    return run_training(config_path, out_dir, resume, max_iters, data_root, threads, command, progress).best_path


def run_training(
    config_path: Path,
    out_dir: Optional[Path] = None,
    resume: bool = False,
    max_iters: Optional[int] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
) -> TrainResult:
    """:func:`train`, returning the model as well.

    Data-parallel: launched by ``torchrun --nproc_per_node N``, the N processes join one group (gloo on CPU,
    nccl with ``train.device: cuda``, one GPU each), each takes ``batch_size / N`` of every step's batch from the
    shared :class:`~vsseg_ros.training.stream.SeedStream`, gradients are averaged by DistributedDataParallel
    (BatchNorm statistics are each rank's own; the running buffers are rank 0's), the logged losses and
    validation confusion matrices are summed over the ranks, and rank 0's clock steers the schedule, the time
    budget and validation for all of them. Only rank 0 writes checkpoints and logs and shows the progress bar.
    """
    from vsseg_ros.training.distributed import init_distributed

    config_path = Path(config_path)
    recipe = load_recipe(config_path, data_root)
    try:
        ctx = init_distributed(str(recipe.train["device"]))
    except ValueError as e:
        raise TrainConfigError(f"{config_path}: {e}") from None
    try:
        return train_session(recipe, ctx, config_path, out_dir, resume, max_iters, threads, command, progress)
    finally:
        ctx.close()


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vsseg_ros.training.perframe",
        description="Train the per-frame segmentation network (stage 1) on CamVid.",
    )
    p.add_argument(
        "--config", required=True, type=Path, help="training recipe (YAML), e.g. config/train/mbv2_lite_camvid.yaml"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: out/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt at its saved step")
    p.add_argument("--max-iters", type=int, default=None, help="override train.max_iters")
    p.add_argument("--data-root", type=Path, default=None, help="override data.root (the CamVid folder)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: train.threads or torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    def run(args: argparse.Namespace, command: str) -> Path:
        return train(
            args.config,
            out_dir=args.out,
            resume=args.resume,
            max_iters=args.max_iters,
            data_root=args.data_root,
            threads=args.threads,
            command=command,
            progress=not args.no_progress,
        )

    return run_command(build_parser(), argv, run)


if __name__ == "__main__":
    sys.exit(main())
