"""`vsseg-ros export`: a checkpoint -> a self-describing exported model directory (fp32, fp16 or int8), checked on
every installed engine (:mod:`vsseg_ros.model_files.export`); ``--default`` re-exports the shipped default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from vsseg_ros.commands.args import network_size


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vsseg_ros.data.registry import DATASETS
    from vsseg_ros.model_files.export import DEFAULT_RECIPE
    from vsseg_ros.runtimes.quantize import EXCLUDES, METHODS, MIN_CALIB_FRAMES, WEIGHT_TYPES

    p.add_argument("--model", default="", help="checkpoint to export (default: the packaged default model)")
    p.add_argument("--out", type=Path, help="output directory (required unless --default)")
    p.add_argument(
        "--default",
        action="store_true",
        help="re-export the shipped set: default.pt -> vsseg_ros/weights/default_int8 (int8, the "
        "measured recipe, calibrated on --calib-root, checked on --eval-root)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="fp32 (default); fp16 (for GPUs: CUDA / TensorRT); int8 (static, calibrated)",
    )
    p.add_argument("--input-size", type=network_size, help="network input HEIGHTxWIDTH (default: the model's own)")
    g = p.add_argument_group("int8 calibration (training frames only)")
    g.add_argument("--calib-dataset", choices=DATASETS, default="camvid")
    g.add_argument("--calib-root", type=Path, default=Path("../shared/data/camvid"))
    g.add_argument("--calib-split", default="train")
    g.add_argument(
        "--calib-frames",
        type=int,
        default=DEFAULT_RECIPE["calib_frames"],
        help=f"frames taken evenly over the split (at least {MIN_CALIB_FRAMES})",
    )
    g.add_argument("--calib-method", choices=METHODS, default=DEFAULT_RECIPE["calib_method"])
    g.add_argument(
        "--int8-exclude",
        choices=EXCLUDES,
        default=DEFAULT_RECIPE["int8_exclude"],
        help="nodes kept in fp32: none; ends (first conv, last layer before each output); ends+resize",
    )
    g.add_argument("--int8-weights", choices=WEIGHT_TYPES, default=DEFAULT_RECIPE["int8_weights"])
    g.add_argument("--no-reduce-range", action="store_true", help="8-bit instead of 7-bit weights (VNNI CPUs)")
    e = p.add_argument_group("checks")
    e.add_argument("--eval-dataset", choices=DATASETS, default="camvid")
    e.add_argument("--eval-root", type=Path, default=Path("../shared/data/camvid"))
    e.add_argument("--eval-split", default="val")
    e.add_argument(
        "--no-eval", action="store_true", help="skip the mIoU measurement (int8 then is not trusted by backend auto)"
    )


def _check_args(args: argparse.Namespace) -> Optional[str]:
    """The reason the arguments cannot work, found before any work is done."""
    from vsseg_ros.runtimes.quantize import check_options

    if args.default:
        if args.model or args.out:
            return "--default writes default.pt's export into the package; give neither --model nor --out"
        args.precision = "int8"
    elif args.out is None:
        return "give --out DIR (or --default)"
    if args.precision == "int8":
        try:
            check_options(args.calib_frames, args.calib_method, args.int8_exclude, args.int8_weights)
        except ValueError as e:
            return str(e)
        if args.calib_split == args.eval_split and Path(args.calib_root) == Path(args.eval_root):
            return f"--calib-split {args.calib_split} is also the evaluation split: calibrate on training frames"
    return None


def run(args: argparse.Namespace) -> int:
    reason = _check_args(args)
    if reason:
        print(f"vsseg-ros export: error: {reason}", file=sys.stderr)
        return 2
    from vsseg_ros.core.errors import CheckpointError
    from vsseg_ros.data.base import DatasetError
    from vsseg_ros.model_files.export import export

    try:
        summary = export(args)
    except (CheckpointError, DatasetError, ValueError, OSError) as e:
        print(f"vsseg-ros export: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
