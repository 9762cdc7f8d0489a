"""`vsseg-ros bench-fleet`: how fleet evaluation scales, sequential vs Ray with 1 and N workers on the same bags
(:mod:`vsseg_ros.bench.fleet`; docs/fleet.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bags", nargs="+", metavar="PATTERN", help="bags to score (default: make them, see --make)")
    p.add_argument(
        "--make",
        type=int,
        default=8,
        metavar="N",
        help="without --bags: make N bags of CamVid val (--root) in --work (default 8)",
    )
    p.add_argument("--frames-per-bag", type=int, default=51, help="frames of each made bag (default 51: all of val)")
    p.add_argument("--root", type=Path, default=Path("../shared/data/camvid"), help="CamVid root for --make")
    p.add_argument("--work", type=Path, default=Path("out/bench_fleet"), help="folder for the made bags")
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="Ray worker counts beyond 1 (default 2)")
    p.add_argument("--no-sequential", action="store_true", help="skip the sequential run")
    p.add_argument(
        "--eval-args",
        default="--dis-preset medium",
        help="more `vsseg-ros eval` options for every run, as one string (default '--dis-preset medium')",
    )
    p.add_argument("--fleet-hours", type=float, default=1000.0, help="fleet size in hours of video (default 1000)")
    p.add_argument("--fleet-rate", type=float, default=10.0, help="fleet frame rate in Hz (default 10)")
    p.add_argument("--deadline-hours", type=float, default=8.0, help="time to score the fleet in (default 8)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--chart", type=Path, metavar="PNG", help="draw frames/s per run here")


def run(args: argparse.Namespace) -> int:
    import shlex

    from vsseg_ros import charts
    from vsseg_ros.bench.fleet import bench_fleet, make_bags
    from vsseg_ros.fleet.discover import FleetError

    try:
        if args.bags:
            patterns = list(args.bags)
        else:
            if not (args.root / "val").is_dir():
                raise FleetError(f"--make needs CamVid at --root {args.root} (val/, valannot/), or give --bags")
            patterns = [str(p) for p in make_bags(args.root, args.work / "bags", args.make, args.frames_per_bag)]
        result = bench_fleet(
            patterns,
            args.workers,
            shlex.split(args.eval_args),
            not args.no_sequential,
            args.fleet_hours,
            args.fleet_rate,
            args.deadline_hours,
        )
    except (FleetError, ValueError, OSError) as err:
        print(f"vsseg-ros bench-fleet: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"ratios": result["ratios"], "sizing": result["sizing"]}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.chart:
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        charts.save_png(charts.fleet_bench(result), args.chart)
    return 0
