"""`vsseg-ros bench`: speed, as ratios from one run: the model alone vs the node end to end
(:mod:`vsseg_ros.bench.run`), backends side by side (``--backends``), N cameras on one node (``--cameras``), a
temporal model (``--temporal``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vsseg_ros.commands.args import param, size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sizes",
        type=size,
        nargs="+",
        default=[(360, 480), (720, 1280)],
        help="input sizes HEIGHTxWIDTH (default 360x480 720x1280)",
    )
    p.add_argument("--frames", type=int, default=30, help="timed frames per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    p.add_argument("--model", default="", help="checkpoint (default: the packaged default model)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open-loop input rate in Hz (default 30; with --cameras, per camera, default 7.5)",
    )
    p.add_argument(
        "--cameras",
        type=int,
        default=0,
        metavar="N",
        help="one node serving N cameras (at the first --sizes) against one camera: per-camera output "
        "rates, fairness, RSS ratio, and batched vs one-at-a-time model throughput",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="with --cameras: seconds streamed per node")
    p.add_argument(
        "--open-loop-frames",
        type=int,
        default=60,
        help="frames published at --rate without waiting (0 = skip the open-loop phase)",
    )
    p.add_argument(
        "--temporal",
        metavar="MODEL",
        help="also time a temporal model (checkpoint, or config/models/*.yaml with random weights): "
        "streaming vs per-frame vs naive, MAR share, DIS flow",
    )
    p.add_argument("--no-node", action="store_true", help="skip the node and model-alone measurements")
    p.add_argument(
        "--node-param",
        type=param,
        action="append",
        metavar="NAME=VALUE",
        help="a node parameter for the node phase, e.g. worker_threads=1 (repeatable)",
    )
    p.add_argument(
        "--backends",
        metavar="LIST",
        help="compare backends side by side, e.g. torch,onnxruntime,openvino,onnxruntime-int8 "
        "(NAME-int8: the int8 export on NAME); JSON key 'backends'",
    )
    p.add_argument(
        "--int8-model",
        default="",
        help="with --backends: the int8 export the -int8 entries run (default: the packaged default_int8)",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument(
        "--chart", type=Path, metavar="PNG", help="with --temporal: also draw its results as a bar chart (PNG)"
    )


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.bench.run import run_bench

    if args.chart and not args.temporal:
        print("vsseg-ros bench: error: --chart draws the --temporal results; give --temporal MODEL", file=sys.stderr)
        return 2

    if args.cameras:
        from vsseg_ros.bench.cameras import run_cameras

        return run_cameras(
            args.cameras,
            args.sizes[0],
            rate_hz=args.rate or 7.5,
            seconds=args.seconds,
            model_path=args.model,
            device=args.device,
            node_params=dict(args.node_param or []),
            json_path=args.json,
            node=not args.no_node,
        )

    backends = None
    if args.backends:
        from vsseg_ros.bench.backends import parse_backends

        try:
            backends = parse_backends(args.backends)
        except ValueError as e:
            print(f"vsseg-ros bench: error: {e}", file=sys.stderr)
            return 2
    return run_bench(
        sizes=args.sizes,
        frames=args.frames,
        warmup=args.warmup,
        json_path=args.json,
        device=args.device,
        model_path=args.model,
        rate_hz=args.rate or 30.0,
        open_loop_frames=args.open_loop_frames,
        temporal=args.temporal,
        node=not args.no_node,
        node_params=dict(args.node_param or []),
        chart_path=args.chart,
        backends=backends,
        int8_model=args.int8_model,
    )
