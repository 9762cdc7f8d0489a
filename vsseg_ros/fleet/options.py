"""The fleet options of ``vsseg-ros eval --bags``: their arguments, their checks, and the settings every task
scores with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vsseg_ros.fleet.discover import FleetError
from vsseg_ros.fleet.tasks import ScoreSettings, file_sha256, model_file

#: eval options that name one input or one model's outputs, which a fleet run does not take
_SINGLE_INPUT_ONLY = (
    ("bag", "--bag (give it to --bags)"),
    ("dataset", "--dataset"),
    ("compare", "--compare"),
    ("output_bag", "--output-bag"),
    ("max_frames", "--max-frames"),
)


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    """The fleet options of ``vsseg-ros eval`` (used together with the model and metric options)."""
    f = p.add_argument_group("fleet: many bags, in this process or on Ray (docs/fleet.md)")
    f.add_argument(
        "--bags",
        nargs="+",
        metavar="PATTERN",
        help="score many bags: globs (quote them; ** recurses), folders (searched for bags) or text files "
        "listing bags, folders or globs one per line; the results merge exactly",
    )
    f.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="MODE",
        help="run each bag as a Ray task: 'local' (a private instance on this machine), 'auto' (default "
        "when given alone: RAY_ADDRESS or a `ray start` cluster here, else local) or HOST:PORT / "
        "ray://HOST:PORT of a cluster. Without --ray the bags run one after the other here",
    )
    f.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tasks running at once (default: the CPUs Ray has / --cpus-per-worker)",
    )
    f.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="CPUs each Ray task reserves, and its torch threads unless --threads (default 1)",
    )
    f.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="keep one JSON per finished bag, the merged JSON and the report here; a rerun skips the "
        "bags already scored",
    )
    f.add_argument(
        "--chunk-frames",
        type=int,
        default=0,
        metavar="N",
        help="cut a bag of more than N frames into tasks of about N frames at its sequence starts "
        "(make-bag bags of several sequences); 0 = whole bags (default)",
    )
    f.add_argument(
        "--retry-failed", action="store_true", help="score again the bags a previous run recorded as unreadable"
    )
    f.add_argument("--ray-timeout", type=float, default=10.0, help="seconds a Ray address has to answer (default 10)")
    f.add_argument(
        "--no-ship-model",
        action="store_true",
        help="workers read --model from its path (shared storage) instead of receiving it from this "
        "process through Ray's object store",
    )


def check_args(args: argparse.Namespace) -> None:
    """FleetError for a fleet option out of range or an option that scores one input only."""
    for attr, flag in _SINGLE_INPUT_ONLY:
        if getattr(args, attr, None):
            raise FleetError(f"{flag} scores one input; it does not go with --bags")
    if any(getattr(args, "context", (0, 0)) or ()):
        raise FleetError("--context applies to --dataset, not to --bags")
    if args.workers is not None and args.workers < 1:
        raise FleetError(f"--workers must be >= 1, got {args.workers}")
    if args.workers and args.workers > 1 and not args.ray:
        raise FleetError(
            f"--workers {args.workers} needs --ray (local, auto or a cluster's address): without it the "
            "bags run one after the other in this process"
        )
    if not args.cpus_per_worker > 0:
        raise FleetError(f"--cpus-per-worker must be > 0, got {args.cpus_per_worker}")
    if args.chunk_frames < 0:
        raise FleetError(f"--chunk-frames must be >= 0, got {args.chunk_frames}")
    if not args.ray_timeout > 0:
        raise FleetError(f"--ray-timeout must be > 0 seconds, got {args.ray_timeout}")


def settings_from(args: argparse.Namespace) -> ScoreSettings:
    """What every task of the run scores with, from the command line (the model file checked and hashed)."""
    threads = args.threads
    if args.ray and not threads:
        threads = max(1, int(args.cpus_per_worker))  # one process per worker: no oversubscription
    path = model_file(ScoreSettings(model=str(args.model or "")))
    if not (path.is_file() or path.is_dir()):
        raise FileNotFoundError(f"--model {path} does not exist")
    return ScoreSettings(
        model=str(args.model or ""),
        model_sha256=file_sha256(path),
        device=args.device,
        backend=getattr(args, "backend", "torch"),
        precision=args.precision,
        input_size=args.input_size,
        temporal_mode=args.temporal_mode,
        max_frame_gap=args.max_frame_gap,
        threads=threads,
        warmup=args.warmup,
        boundary_tolerance=args.boundary_tolerance,
        tc=not args.no_tc,
        dis_preset=args.dis_preset,
        image_topic=args.image_topic,
        gt_topic=args.gt_topic,
    )
