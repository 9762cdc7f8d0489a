"""`vsseg-ros`: the package's command line, a dispatcher.

Each subcommand is a module of :mod:`vsseg_ros.commands` named after it (``make-bag``: ``commands/make_bag.py``)
with ``add_arguments(parser)`` and ``run(args) -> exit code``. A subcommand's module is imported only when that
subcommand runs (or for ``--help``), and imports its heavy dependencies (torch, rclpy) only inside ``run``, so
`vsseg-ros node` starts without importing torch before its signal handlers are in place.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

#: (name, help, needs ROS) of every subcommand, in the order ``--help`` lists them
COMMANDS: tuple[tuple[str, str, bool], ...] = (
    (
        "node",
        "run the segmentation node (what `ros2 run vsseg_ros segmentation_node` runs)",
        True,
    ),
    (
        "demo",
        "play a street video through the node over DDS and write pictures + stats",
        True,
    ),
    (
        "bench",
        "speed: model alone vs the node end to end, as ratios from one run",
        True,
    ),
    (
        "train",
        "train from a YAML recipe (config/train/*.yaml): per-frame (stage 1) or, for "
        "a `stage: temporal` recipe, STF + MAR on a trained per-frame model",
        False,
    ),
    (
        "package-model",
        "store a trained checkpoint as fp16 and record its measured mIoU",
        False,
    ),
    (
        "export",
        "export a checkpoint to ONNX (fp32, fp16 or calibrated int8) as a model directory the node runs on "
        "onnxruntime / openvino / tensorrt; --default re-exports the shipped default",
        False,
    ),
    (
        "eval",
        "accuracy, temporal consistency and latency of a model on a dataset split or a bag (offline, no DDS)",
        False,
    ),
    (
        "make-bag",
        "turn a dataset sequence or a video into a ROS 2 bag (images, camera_info, ground truth)",
        False,
    ),
    (
        "replay",
        "play a bag live through the node over DDS, record its outputs and score them",
        True,
    ),
    (
        "build-memory",
        "build the MAR memory of a temporal model from a dataset and store it in the checkpoint",
        False,
    ),
    (
        "mar-analysis",
        "what a MAR model's memory holds (per class, on boundaries or not) and where MAR changes the per-frame "
        "model's answers (fixed or broken, boundaries vs interiors)",
        False,
    ),
    (
        "bench-reference",
        "run the ST_Memory reference code beside ours: logits difference and time per output frame",
        False,
    ),
    (
        "bench-fleet",
        "fleet evaluation speed: sequential vs Ray with 1 and N workers on the same bags, and the workers a fleet "
        "needs",
        False,
    ),
    (
        "temporal-headroom",
        "what fusing a per-frame model's outputs over a causal window could gain, no learning: per-frame vs causal "
        "mean, flow-aligned mean and the any-of-T oracle",
        False,
    ),
    (
        "soak",
        "run the node (started for you) for minutes under a camera-rate stream over DDS: RSS, output rate, drops, "
        "latency and wrong stamps over time; fails on RSS growth or a wrong stamp",
        True,
    ),
    (
        "fuzz-decoders",
        "property-based fuzzing (hypothesis) of the Image and CompressedImage decoders: every message decodes to its "
        "declared size or is refused with ImageDecodeError",
        False,
    ),
    (
        "decode-bombs",
        "hostile compressed images (decompression bombs, scan bombs, other formats) through the node's decoder, one "
        "process each: outcome, time and peak memory",
        False,
    ),
)

NEEDS_ROS = {name for name, _, ros in COMMANDS if ros}


def command_module(name: str) -> str:
    """The module that holds subcommand ``name``."""
    return "vsseg_ros.commands." + name.replace("-", "_")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; a subcommand's module is imported only when ``command`` is that subcommand or None."""
    p = argparse.ArgumentParser(prog="vsseg-ros", description="Video semantic segmentation for ROS 2.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text, _ in COMMANDS:
        _add_command(sub, name, help_text, load=command in (None, name))
    return p


def _add_command(sub: "argparse._SubParsersAction", name: str, help_text: str, load: bool = True) -> None:
    import importlib

    if not load:
        sub.add_parser(name, help=help_text, description=help_text)
        return
    try:
        mod = importlib.import_module(command_module(name))
    except ImportError as e:  # a broken install: say so when the command is used, keep the others working
        error = f"vsseg-ros {name} is unavailable: {e}"
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(func=lambda args: (print(error, file=sys.stderr), 2)[1])
        return
    sp = sub.add_parser(name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text))
    mod.add_arguments(sp)
    sp.set_defaults(func=mod.run)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    args.ros_args = ros_args  # `vsseg-ros node` passes them on to ROS
    offline = args.command == "replay" and getattr(args, "score_recorded", None) is not None  # scores a bag only
    if args.command in NEEDS_ROS and not offline:
        missing = _missing_ros()
        if missing:
            print(
                f"vsseg-ros {args.command} needs ROS 2: {missing}. Source a ROS 2 install and this package's "
                "colcon workspace (install/setup.bash), or run `make setup` in the repository.",
                file=sys.stderr,
            )
            return 2
    return int(args.func(args) or 0)


def _missing_ros() -> str:
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        return "rclpy is not installed"
    try:
        if importlib.util.find_spec("vsseg_ros.msg") is None:
            return "the vsseg_ros messages are not built (colcon build)"
    except ModuleNotFoundError:
        return "the vsseg_ros messages are not built (colcon build)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
