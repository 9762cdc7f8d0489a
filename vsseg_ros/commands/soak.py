"""`vsseg-ros soak`: the real node (started for you) for minutes under a camera-rate stream over DDS: RSS, output
rate, drops, latency and wrong stamps over time (:mod:`vsseg_ros.bench.soak`); exits 1 on RSS growth after the
warm-up, a wrong stamp, no output or a dead node.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vsseg_ros.commands.args import param, size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=30.0, help="how long to stream (default 30)")
    p.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    p.add_argument("--size", type=size, default=(720, 1280), help="HEIGHTxWIDTH of the frames (default 720x1280)")
    p.add_argument("--encoding", default="bgr8", help="sensor_msgs/Image encoding of the frames (default bgr8)")
    p.add_argument("--json", type=Path, help="write the results (summary and time series) here")
    p.add_argument("--plot", type=Path, help="draw RSS, rates and latency over time into this PNG")
    p.add_argument(
        "--max-rss-growth-mb",
        type=float,
        default=50.0,
        help="fail when the node's RSS grows more than this after the warm-up (default 50)",
    )
    p.add_argument(
        "--warmup-minutes",
        type=float,
        default=None,
        help="RSS growth is measured from here (default 2, or half of a run shorter than 4 minutes)",
    )
    p.add_argument(
        "--sample-seconds",
        type=float,
        default=None,
        help="seconds per point of the time series (default: 1/60 of the run, 2 to 10 s)",
    )
    p.add_argument("--model", default="", help="checkpoint (default: the packaged model)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--node-param",
        type=param,
        action="append",
        metavar="NAME=VALUE",
        help="a node parameter, e.g. worker_threads=1 (repeatable)",
    )
    p.add_argument("--out", type=Path, default=Path("out/soak"), help="folder for the node's log (default out/soak)")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.bench.soak import plot, soak

    result = soak(
        args.minutes,
        args.rate,
        args.size,
        args.encoding,
        args.model,
        args.device,
        dict(args.node_param or []),
        args.out,
        args.max_rss_growth_mb,
        args.warmup_minutes,
        args.sample_seconds,
    )
    m = result.summary
    lat = m["latency_ms"]
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    print(
        f"soak {m['size']} {m['encoding']} at {m['rate_hz']:g} Hz for {m['minutes']:g} min: sent {m['frames_sent']}, "
        f"masks {m['frames_out']} ({m['output_rate_hz']:.2f} Hz), RSS {m['rss_mb_start']:.0f} -> "
        f"{m['rss_mb_end']:.0f} MB (growth after warm-up {m['rss_growth_mb']:.1f} MB), latency p50 "
        f"{fmt(lat['p50'])} / p99 {fmt(lat['p99'])} ms, wrong stamps {m['wrong_stamps']}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.to_json(), indent=2))
    if args.plot:
        plot(result, args.plot)
    for failure in m["failures"]:
        print(f"FAILED: {failure}")
    return 0 if m["passed"] else 1
