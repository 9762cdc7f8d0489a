"""`vsseg-ros bench-reference`: the ST_Memory reference code beside our TemporalSegNet on the same weights, logits
difference and time per output frame (:mod:`vsseg_ros.bench.reference`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference-dir",
        type=Path,
        required=True,
        help="checkout of github.com/jfzhuang/ST_Memory (holds ST_Memory/ and mmsegmentation/)",
    )
    p.add_argument(
        "--extra-path",
        type=Path,
        action="append",
        default=[],
        help="directory to put on sys.path for the reference's dependencies (addict, yapf); repeatable",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(256, 512),
        metavar=("H", "W"),
        help="input size (multiples of 128, as the reference needs); default 256 512",
    )
    p.add_argument(
        "--outputs",
        type=int,
        default=3,
        help="timed output frames per implementation, alternating between them (median reported)",
    )
    p.add_argument("--no-mar", action="store_true", help="compare PSPNet + STF only")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the numbers here")


def _print(result: dict[str, Any]) -> None:
    H, W = result["size"]
    print(
        f"ST_Memory reference vs vsseg_ros TemporalSegNet, PSPNet-R50 + STF{' + MAR' if result['mar'] else ''}, "
        f"random weights, fp32, {H}x{W}, {result['threads']} threads"
    )
    for name, d in result["diff"].items():
        print(f"  {name:18s} max |diff| {d['max_abs_diff']:.3e}   (max |value| {d['max_abs_value']:.3g})")
    print(f"  argmax agreement   {100 * result['argmax_agreement']:.4f} %")
    t = result["time_ms"]
    print(
        f"  per output frame: reference {t['reference_per_output']:.0f} ms (3 backbones + fusion), "
        f"ours streaming {t['ours_streaming_per_output']:.0f} ms (backbone {t['ours_backbone']:.0f}, "
        f"STF {t['ours_stf']:.0f} incl. classifier, MAR {t['ours_mar']:.0f}); x{t['speedup']:.2f}"
    )
    if result["notes"].get("torchvision_stub"):
        print("  note: torchvision is not installed; an import-only stand-in satisfied mmcv's runner import")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.bench.reference import compare

    try:
        result = compare(args)
    except (FileNotFoundError, ModuleNotFoundError, ValueError) as e:
        print(f"vsseg-ros bench-reference: {e}", file=sys.stderr)
        return 2
    _print(result)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0
