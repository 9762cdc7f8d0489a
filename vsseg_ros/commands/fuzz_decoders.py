"""`vsseg-ros fuzz-decoders`: property-based fuzzing (hypothesis) of the Image and CompressedImage decoders
(:mod:`vsseg_ros.hostile.fuzz`): every message decodes to its declared size or is refused with ImageDecodeError;
exits 1 on another exception or a decode whose peak RSS growth passes the bound."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--examples", type=int, default=10_000, help="generated messages per decoder (default 10000)")
    p.add_argument("--json", type=Path, help="write the counts here")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.hostile.fuzz import BOUND_MB, fuzz_report

    report = fuzz_report(args.examples)
    worst, error = report["max_decode_rss_growth_mb"], report["error"]
    for name, r in report["decoders"].items():
        print(
            f"{name}: {r['examples']} messages in {r['seconds']:.0f} s, no unexpected exception; largest peak "
            f"RSS growth of one decode {r['max_decode_rss_growth_mb']:.1f} MB ({r['worst_message']}); "
            f"outcomes {r['outcomes']}"
        )
    print(f"largest peak RSS growth of one decode: {worst:.1f} MB (bound {BOUND_MB:g} MB)")
    if error:
        print(f"FAILED: {error}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if error or worst > BOUND_MB else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros fuzz-decoders", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
