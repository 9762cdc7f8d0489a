"""`vsseg-ros temporal-headroom`: how much could fusing a per-frame model's outputs over a causal window of frames
gain, before any temporal model is trained (:mod:`vsseg_ros.evaluation.headroom`). Nothing here imports ROS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from vsseg_ros.metrics.headroom import DEFAULT_MAX_FRAME_GAP_S


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vsseg_ros.evaluation.inputs import add_input_arguments

    add_input_arguments(p, context_after=False)

    m = p.add_argument_group("model and fusion")
    m.add_argument("--model", default="", help="a PER-FRAME checkpoint (default: the packaged default model)")
    m.add_argument(
        "--frames", type=int, default=3, help="T: frames in the causal window, the current one included (default 3)"
    )
    m.add_argument(
        "--dis-preset",
        default="medium",
        choices=("ultrafast", "fast", "medium"),
        help="DIS optical flow preset for the alignment (default medium)",
    )
    m.add_argument(
        "--max-frame-gap",
        type=float,
        default=DEFAULT_MAX_FRAME_GAP_S,
        help=f"seconds between frames after which the window restarts (default {DEFAULT_MAX_FRAME_GAP_S})",
    )
    m.add_argument("--boundary-tolerance", type=int, default=2, help="boundary F-score tolerance in px (default 2)")
    m.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    o = p.add_argument_group("output")
    o.add_argument(
        "--out",
        type=Path,
        default=Path("out/temporal_headroom"),
        help="folder for headroom.json and headroom.png (default out/temporal_headroom)",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """The ``vsseg-ros temporal-headroom`` command: 0 on success, 2 on bad input (the message says what was wrong)."""
    from vsseg_ros.core.errors import CheckpointError
    from vsseg_ros.evaluation.headroom import format_table, measure, title

    try:
        out = measure(args)
    except (ValueError, CheckpointError, OSError) as e:
        print(f"vsseg-ros temporal-headroom: error: {e}", file=sys.stderr)
        return 2
    print(title(out))
    print(format_table(out))
    for note in out["notes"] + out["warnings"]:
        print(f"  note: {note}")
    print(f"wrote {args.out / 'headroom.json'} and {args.out / 'headroom.png'}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros temporal-headroom", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
