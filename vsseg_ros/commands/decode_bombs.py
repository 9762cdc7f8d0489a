"""`vsseg-ros decode-bombs`: hostile compressed images (decompression bombs, scan bombs, other formats) through the
node's decoder, one process each (:mod:`vsseg_ros.hostile.bombs`): outcome, time and peak memory; exits 1 when an
input of at most 1 MB misses its target."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from vsseg_ros.hostile.bombs import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, TARGET_MB, TARGET_S, measure, misses


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="the decoder's pixel limit (default: the node's max_input_pixels default)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help="the decoder's per-axis limit (default: the node's max_input_side default)",
    )
    p.add_argument(
        "--only", action="append", metavar="TEXT", help="only the inputs whose name contains TEXT (repeatable)"
    )
    p.add_argument("--json", type=Path, help="write the results here")


def run(args: argparse.Namespace) -> int:
    rows = measure(args.only, args.max_pixels, args.max_side)
    width = max(len(r["name"]) for r in rows)
    print(f"{'input':{width}}  {'bytes':>8}  {'outcome':8}  {'s':>6}  {'peak MB':>7}  detail")
    for r in rows:
        detail = r["kind"] or r["message"]
        print(
            f"{r['name']:{width}}  {r['bytes']:8d}  {r['outcome']:8}  {r['seconds']:6.3f}  "
            f"{r['peak_rss_growth_mb']:7.1f}  {detail}{'  MISSES: ' + ', '.join(misses(r)) if misses(r) else ''}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "max_pixels": args.max_pixels,
                    "max_side": args.max_side,
                    "target_mb": TARGET_MB,
                    "target_s": TARGET_S,
                    "inputs": rows,
                },
                indent=2,
            )
        )
    return 1 if any(misses(r) for r in rows) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros decode-bombs", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
