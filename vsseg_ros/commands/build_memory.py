"""`vsseg-ros build-memory`: build the MAR memory of a temporal checkpoint from a labelled dataset split into a new
checkpoint (:mod:`vsseg_ros.model_files.mar_memory`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vsseg_ros.model_files.mar_memory import WINDOWS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, help="temporal checkpoint with a MAR module")
    p.add_argument("--dataset", default="camvid", help="camvid, cityscapes or folder")
    p.add_argument("--root", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default="train", help="split name ('' for a folder dataset without splits)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (may equal --model)")
    p.add_argument("--window", choices=WINDOWS, default="auto", help="where the window's other frames come from")
    p.add_argument("--frame-step", type=int, default=1, help="dataset frame numbers between window frames")
    p.add_argument(
        "--prototypes",
        type=int,
        default=None,
        help="K_H: most confident pixels averaged into each class prototype (default: slots per class)",
    )
    p.add_argument("--limit", type=int, default=0, help="use the first N labelled frames only (0: all)")
    p.add_argument("--model-id", default="", help="model id of the new checkpoint (default: the input's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.core.errors import CheckpointError
    from vsseg_ros.data.base import DatasetError
    from vsseg_ros.model_files.mar_memory import build

    try:
        record = build(args)
    except (CheckpointError, DatasetError, ValueError) as e:
        print(f"vsseg-ros build-memory: {e}", file=sys.stderr)
        return 2
    names = record["class_names"]
    print(
        f"memory built from {record['frames']} frames of {record['dataset']} {record['split']} "
        f"({record['windows_real']} real windows, {record['windows_repeated']} repeated stills), "
        f"{record['pixels']} labelled pixels; written to {args.out}"
    )
    print("correct pixels per class: " + ", ".join(f"{n} {c}" for n, c in zip(names, record["correct_per_class"])))
    if record["empty_classes"]:
        print(
            "classes without a correctly classified pixel (neutral memory entries): "
            + ", ".join(names[c] for c in record["empty_classes"])
        )
    return 0
