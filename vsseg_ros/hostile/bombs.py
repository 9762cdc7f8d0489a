"""The hostile compressed images of :mod:`.images` through the node's decoder, each in a fresh process (what
`vsseg-ros decode-bombs` runs), and report what each cost: outcome, wall time and peak RSS growth.

A fresh process per input because peak RSS only ever grows: in one process an input that costs less than an
earlier one would not show. The child resets its peak (``/proc/self/clear_refs``) after reading the input, so
the number is the decode's own. Targets (issue 19): any input of at most 1 MB refused or decoded with peak RSS
growth < 200 MB and within 1 s; the command exits 1 when one is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from tqdm import tqdm

from vsseg_ros.bench.memory import peak_rss_mb, reset_peak_rss, rss_mb

DEFAULT_MAX_PIXELS = 3840 * 2160 * 2  # the node's default max_input_pixels
DEFAULT_MAX_SIDE = 16384  # the node's default max_input_side
TARGET_MB, TARGET_S = 200.0, 1.0


def _child(path: Path, fmt: str, max_pixels: int, max_side: int) -> dict[str, Any]:
    """In the child process: decode once, measure."""
    from vsseg_ros.imaging.decode import ImageDecodeError, decode_compressed

    data = path.read_bytes()
    reset_peak_rss()
    before = rss_mb()
    t0 = time.perf_counter()
    row: dict[str, Any] = {}
    try:
        out = decode_compressed(fmt, data, max_pixels=max_pixels, max_side=max_side)
        row.update(outcome="decoded", kind="", message=f"{out.shape[1]} x {out.shape[0]}")
    except ImageDecodeError as err:
        row.update(outcome="refused", kind=err.kind, message=str(err))
    except Exception as err:  # what the decoder must never do
        row.update(outcome="exception", kind=type(err).__name__, message=str(err))
    row["seconds"] = time.perf_counter() - t0
    peak = peak_rss_mb()
    row["peak_rss_growth_mb"] = float("nan") if peak is None or before is None else max(0.0, peak - before)
    return row


def measure(
    names: Optional[Sequence[str]] = None, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE
) -> list[dict[str, Any]]:
    """Decode every catalogue input whose name contains one of ``names`` (all when None), one process each."""
    from vsseg_ros.hostile.images import catalogue

    items = [(n, spec) for n, spec in catalogue(max_pixels).items() if not names or any(s in n for s in names)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vsseg_bombs_") as tmp:
        for name, (fmt, build) in tqdm(items, desc="decode bombs", unit="input"):
            data = build()
            path = Path(tmp) / "input.bin"
            path.write_bytes(data)
            cmd = [
                sys.executable,
                "-m",
                "vsseg_ros.hostile.bombs",
                str(path),
                fmt,
                str(max_pixels),
                str(max_side),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            try:
                row = json.loads(done.stdout.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                row = {
                    "outcome": "exception",
                    "kind": f"child exit {done.returncode}",
                    "message": done.stderr[-500:],
                    "seconds": float("nan"),
                    "peak_rss_growth_mb": float("nan"),
                }
            rows.append({"name": name, "format_field": fmt, "bytes": len(data), **row})
    return rows


def misses(row: dict[str, Any]) -> list[str]:
    """What a row misses of the targets (for inputs of at most 1 MB)."""
    out = []
    if row["outcome"] == "exception":
        out.append(f"raised {row['kind']}")
    if row["bytes"] <= 1 << 20:
        if not row["peak_rss_growth_mb"] < TARGET_MB:
            out.append(f"peak RSS growth {row['peak_rss_growth_mb']:.0f} MB")
        if not row["seconds"] < TARGET_S:
            out.append(f"{row['seconds']:.2f} s")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The child process :func:`measure` starts (``python -m vsseg_ros.hostile.bombs PATH FORMAT MAX_PIXELS
    MAX_SIDE``): decodes once and prints the row as JSON."""
    path, fmt, max_pixels, max_side = list(sys.argv[1:] if argv is None else argv)[:4]
    print(json.dumps(_child(Path(path), fmt, int(max_pixels), int(max_side))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
