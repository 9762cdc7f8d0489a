"""What `vsseg-ros temporal-headroom` measures: how much could fusing a per-frame model's outputs over a causal
window of frames gain on a dataset split or a bag, before any temporal model is trained?

Runs the per-frame model as the node does, then scores (see :mod:`vsseg_ros.metrics.headroom`) the per-frame
prediction, the causal mean of the last T probability maps without and with DIS-flow alignment, and the oracle
(right where any of the T aligned frames is right). Prints a table (mIoU, mVC8, mVC16, boundary F and the gain
over per-frame, in points) and writes ``OUT/headroom.json`` and a bar chart ``OUT/headroom.png``.
Nothing here imports ROS.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

from vsseg_ros.metrics.headroom import BASELINE_TITLES, BASELINES

#: (result key, column / chart title) of the metrics shown
METRICS = (("miou", "mIoU"), ("mvc8", "mVC8"), ("mvc16", "mVC16"), ("boundary_f", "boundary F"))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurement described by ``args`` and write ``headroom.json`` / ``headroom.png``; returns the JSON."""
    import torch
    from tqdm import tqdm

    from vsseg_ros.evaluation.inputs import check_classes, open_source
    from vsseg_ros.metrics.headroom import SoftmaxModel, temporal_headroom

    if (args.bag is None) == (args.dataset is None):
        raise ValueError("give exactly one input: --bag BAG or --dataset NAME --root DIR [--split S]")
    if args.bag is not None and args.context:
        raise ValueError("--context applies to --dataset (a bag streams all of its frames already)")
    if args.dataset is not None and args.root is None:
        raise ValueError("--dataset needs --root DIR (the dataset's root folder)")
    if args.dataset is not None and not Path(args.root).is_dir():
        raise ValueError(f"dataset root {args.root} does not exist or is not a folder")
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1 (the window includes the current frame), got {args.frames}")
    if args.context < 0:
        raise ValueError(f"--context must be >= 0, got {args.context}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if not args.max_frame_gap > 0:
        raise ValueError(f"--max-frame-gap must be > 0 seconds, got {args.max_frame_gap}")
    if args.threads:
        torch.set_num_threads(int(args.threads))

    model = SoftmaxModel.load(args.model, device=args.device)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        source = open_source(
            argparse.Namespace(**{**vars(args), "context": (args.context, 0)}), model.class_map.num_classes
        )
        notes = check_classes(source, [model])
        total = source.total if args.max_frames is None else min(source.total or args.max_frames, args.max_frames)
        frames = tqdm(source.frames, total=total, desc="temporal-headroom", unit="frame", disable=args.quiet)
        out = temporal_headroom(
            model,
            frames,
            window=args.frames,
            dis_preset=args.dis_preset,
            max_frame_gap_s=args.max_frame_gap,
            boundary_tolerance_px=args.boundary_tolerance,
            max_frames=args.max_frames,
        )
    caught = [f"{w.category.__name__}: {w.message}" for w in rec]
    for line in caught:
        print(f"warning: {line}", file=sys.stderr)
    if out["frames"] == 0:
        raise ValueError(f"{source.description}: no frames to score")
    out["model_path"] = args.model or "default"
    out["source"] = source.info
    out["source_description"] = source.description
    out["settings"] = {
        "frames": args.frames,
        "dis_preset": args.dis_preset,
        "max_frame_gap_s": args.max_frame_gap,
        "boundary_tolerance_px": args.boundary_tolerance,
        "device": args.device,
        "context_before": args.context,
        "max_frames": args.max_frames,
    }
    out["warnings"] = caught + notes

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "headroom.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    write_chart(args.out / "headroom.png", out)
    return out


def _pts(v: Optional[float], signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f}"


def format_table(out: dict[str, Any]) -> str:
    """The result as a plain-text table: each metric in % and its gain over per-frame in points."""
    head = f"{'baseline':28s}" + "".join(f"{title:>11s}{'gain':>8s}" for _, title in METRICS)
    lines = [head, "-" * len(head)]
    for b in BASELINES:
        r = out["baselines"][b]
        row = f"{BASELINE_TITLES[b]:28s}"
        for key, _ in METRICS:
            gain = "-" if b == "per_frame" else _pts(r["gain"][key], signed=True)
            row += f"{_pts(r[key]):>11s}{gain:>8s}"
        lines.append(row)
    return "\n".join(lines)


def title(out: dict[str, Any]) -> str:
    return (
        f"temporal headroom of {out['model']} (T={out['window']}, DIS {out['dis_preset']}): "
        f"{out['frames']} frames, {out['labelled_frames']} labelled"
    )


def write_chart(path: Path, out: dict[str, Any]) -> None:
    """The gains as a bar chart (:func:`vsseg_ros.charts.temporal_headroom`), a PNG at ``path``."""
    from vsseg_ros import charts

    charts.save_png(charts.temporal_headroom(out, METRICS, BASELINE_TITLES), path)
