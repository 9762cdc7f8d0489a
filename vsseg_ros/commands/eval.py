"""`vsseg-ros eval`: accuracy, temporal consistency and latency of a model on a dataset split or a ROS 2 bag.

The options and the exit codes; the work is :func:`vsseg_ros.evaluation.evaluate.evaluate` (one input) and
:func:`vsseg_ros.fleet.run.run_fleet_command` (``--bags``, a fleet). Nothing here imports ROS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from vsseg_ros.commands.args import network_size_or_native
from vsseg_ros.evaluation.inputs import DEFAULT_MODEL, add_input_arguments, print_summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)

    m = p.add_argument_group("model")
    m.add_argument("--model", default="", help="checkpoint (default: the packaged default model)")
    m.add_argument(
        "--compare",
        nargs=2,
        metavar=("CKPT_A", "CKPT_B"),
        help=f"two checkpoints side by side on the same frames ('{DEFAULT_MODEL}' = the packaged model)",
    )
    m.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    m.add_argument(
        "--backend",
        default="torch",
        help="torch (default: the checkpoint's own numbers), onnxruntime, openvino, tensorrt, or auto "
        "(what the node runs by default); an exported --model runs on its engine",
    )
    m.add_argument("--precision", default="fp32", help="fp32 (default), fp16, bf16")
    m.add_argument(
        "--input-size",
        type=network_size_or_native,
        default=None,
        help="network input HEIGHTxWIDTH (default: the model's own; 0 = each frame's size)",
    )
    m.add_argument(
        "--temporal-mode", default=None, help="causal or centered (temporal models; default: the model's own)"
    )
    m.add_argument(
        "--max-frame-gap",
        type=float,
        default=0.5,
        help="seconds between frames after which a temporal model restarts its window (default 0.5)",
    )
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    m.add_argument("--warmup", type=int, default=1, help="untimed pushes of the first frame (default 1)")

    s = p.add_argument_group("metrics")
    s.add_argument("--boundary-tolerance", type=int, default=2, help="boundary F-score tolerance in px (default 2)")
    s.add_argument("--no-tc", action="store_true", help="skip flow-warp temporal consistency (no optical flow)")
    s.add_argument(
        "--dis-preset",
        default="medium",
        choices=("ultrafast", "fast", "medium"),
        help="DIS optical flow preset for TC (default medium)",
    )

    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, help="write the results as JSON here")
    o.add_argument("--report", type=Path, help="write a report folder (index.md + PNG pictures) here")
    o.add_argument("--strip", type=int, default=6, help="frames in the report's overlay strip (0 = none)")
    o.add_argument(
        "--output-bag",
        help="write the predicted masks (+ boundary confidence and class map) into a new "
        "bag at this path; 'auto' (with --bag) = beside the input, BAG_eval",
    )
    o.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="storage of --output-bag")
    o.add_argument("--quiet", action="store_true", help="no progress bar")

    from vsseg_ros.fleet.options import add_fleet_arguments

    add_fleet_arguments(p)


def run(args: argparse.Namespace) -> int:
    """The ``vsseg-ros eval`` command: 0 on success, 2 on bad input (the message says what was wrong); with
    ``--bags`` see :func:`vsseg_ros.fleet.run.run_fleet_command`."""
    from vsseg_ros.core.errors import CheckpointError

    if getattr(args, "bags", None):
        from vsseg_ros.fleet.run import run_fleet_command

        return run_fleet_command(args)

    from vsseg_ros.evaluation.evaluate import evaluate

    errors: tuple[type[BaseException], ...] = (ValueError, CheckpointError, FileNotFoundError, OSError)
    try:
        out = evaluate(args)
    except errors as e:
        print(f"vsseg-ros eval: error: {e}", file=sys.stderr)
        return 2
    print_summary(out)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros eval", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
