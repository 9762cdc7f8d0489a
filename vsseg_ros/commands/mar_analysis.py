"""`vsseg-ros mar-analysis`: what a MAR model's memory holds, and where MAR changes the per-frame model's answers
(:mod:`vsseg_ros.evaluation.mar_analysis`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="MAR checkpoint (a temporal model with temporal.mar)")
    p.add_argument(
        "--baseline", default="", help="the per-frame checkpoint it was built on (default: the packaged default)"
    )
    p.add_argument("--dataset", default="camvid", help="camvid, cityscapes or folder")
    p.add_argument("--root", type=Path, required=True, help="dataset root")
    p.add_argument("--split", default="val", help="split where the changes are counted (default val)")
    p.add_argument("--memory-split", default="train", help="split the memory is rebuilt from ('' to skip)")
    p.add_argument("--boundary-radius", type=int, default=2, help="px around a ground-truth boundary (default 2)")
    p.add_argument("--limit", type=int, default=0, help="first N labelled frames of each split (0: all)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.core.errors import CheckpointError
    from vsseg_ros.data.base import DatasetError
    from vsseg_ros.evaluation.mar_analysis import analyse, format_report

    try:
        out = analyse(args)
    except (CheckpointError, DatasetError, ValueError, FileNotFoundError) as e:
        print(f"vsseg-ros mar-analysis: {e}", file=sys.stderr)
        return 2
    print(format_report(out))
    return 0
