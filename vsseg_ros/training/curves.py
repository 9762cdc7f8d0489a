"""Validation curves of training runs (their ``train_log.jsonl``) in one matplotlib chart, for the docs.

    python -m vsseg_ros.training.curves --out docs/long_recipe_val_miou.png --baseline 0.7078 \\
        --run "long recipe=out/train/mbv2_lite_camvid_long/train_log.jsonl" \\
        --run "per-frame + MAR=out/train/mbv2_lite_mar_camvid/train_log.jsonl"

Each run is drawn as val mIoU over training steps; a per-frame run with a weight average (``train.ema``) also
gets a dashed line for the trained weights (``val_miou_trained_weights``). ``--baseline`` draws the model to beat.
:func:`plot_curve` draws the one run a trainer is running (its ``val_miou.png``, at every validation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a ``train_log.jsonl`` (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curve(
    points: Sequence[tuple[int, float]], path: Path, title: str = "validation mIoU", xlabel: str = "iteration"
) -> None:
    """A line chart of (x, mIoU in [0, 1]) (:func:`vsseg_ros.charts.training_curve`), written as PNG."""
    from vsseg_ros import charts

    path.parent.mkdir(parents=True, exist_ok=True)
    charts.save_png(charts.training_curve(points, title, xlabel), path)


def plot_runs(
    runs: Sequence[tuple[str, Path]],
    out: Path,
    baseline: Optional[float] = None,
    baseline_label: str = "default",
    title: str = "CamVid val mIoU",
) -> Path:
    """Write a PNG of val mIoU (%) over steps for each ``(label, train_log.jsonl)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        for label, path in runs:
            log = read_log(path)
            steps = [r["step"] for r in log]
            ax.plot(steps, [100 * (r["val_miou"] or 0.0) for r in log], marker="o", label=label)
            raw = [(r["step"], r["val_miou_trained_weights"]) for r in log if r.get("val_miou_trained_weights")]
            if raw:
                ax.plot(
                    [s for s, _ in raw],
                    [100 * v for _, v in raw],
                    linestyle="--",
                    marker=".",
                    label=f"{label} (trained weights, not averaged)",
                )
        if baseline is not None:
            ax.axhline(100 * baseline, color="grey", linestyle=":", label=f"{baseline_label} {100 * baseline:.2f} %")
        ax.set_xlabel("training step")
        ax.set_ylabel("val mIoU %")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vsseg_ros.training.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, metavar="LABEL=LOG", help="a train_log.jsonl")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--baseline", type=float, default=None, help="mIoU (0-1) of the model to beat")
    p.add_argument("--baseline-label", default="default")
    p.add_argument("--title", default="CamVid val mIoU")
    args = p.parse_args(argv)
    runs = []
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            print(f"error: --run wants LABEL=PATH to an existing train_log.jsonl, got {item!r}", file=sys.stderr)
            return 2
        runs.append((label, Path(path)))
    print(plot_runs(runs, args.out, args.baseline, args.baseline_label, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
