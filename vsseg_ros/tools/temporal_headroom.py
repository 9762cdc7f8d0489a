"""`vsseg-ros temporal-headroom`: how much could fusing a per-frame model's outputs over a causal window of frames
gain on a dataset split or a bag, before any temporal model is trained?

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

import numpy as np

from vsseg_ros.metrics.headroom import BASELINE_TITLES, BASELINES, DEFAULT_MAX_FRAME_GAP_S

#: (result key, column / chart title) of the metrics shown
METRICS = (("miou", "mIoU"), ("mvc8", "mVC8"), ("mvc16", "mVC16"), ("boundary_f", "boundary F"))
#: bar colours (BGR) of the fused baselines in the chart
COLORS = {"mean": (180, 180, 180), "aligned_mean": (200, 120, 40), "oracle": (60, 160, 60)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vsseg_ros.tools.evaluate import add_input_arguments

    add_input_arguments(p, context_after=False)

    m = p.add_argument_group("model and fusion")
    m.add_argument("--model", default="", help="a PER-FRAME checkpoint (default: the packaged default model)")
    m.add_argument("--frames", type=int, default=3, help="T: frames in the causal window, the current one included "
                                                         "(default 3)")
    m.add_argument("--dis-preset", default="medium", choices=("ultrafast", "fast", "medium"),
                   help="DIS optical flow preset for the alignment (default medium)")
    m.add_argument("--max-frame-gap", type=float, default=DEFAULT_MAX_FRAME_GAP_S,
                   help=f"seconds between frames after which the window restarts (default {DEFAULT_MAX_FRAME_GAP_S})")
    m.add_argument("--boundary-tolerance", type=int, default=2, help="boundary F-score tolerance in px (default 2)")
    m.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("out/temporal_headroom"),
                   help="folder for headroom.json and headroom.png (default out/temporal_headroom)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurement described by ``args`` and write ``headroom.json`` / ``headroom.png``; returns the JSON."""
    import torch
    from tqdm import tqdm

    from vsseg_ros.metrics.headroom import SoftmaxModel, temporal_headroom
    from vsseg_ros.tools.evaluate import check_classes, open_source

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
        source = open_source(argparse.Namespace(**{**vars(args), "context": (args.context, 0)}),
                             model.class_map.num_classes)
        notes = check_classes(source, [model])
        total = source.total if args.max_frames is None else min(source.total or args.max_frames, args.max_frames)
        frames = tqdm(source.frames, total=total, desc="temporal-headroom", unit="frame", disable=args.quiet)
        out = temporal_headroom(model, frames, window=args.frames, dis_preset=args.dis_preset,
                                max_frame_gap_s=args.max_frame_gap, boundary_tolerance_px=args.boundary_tolerance,
                                max_frames=args.max_frames)
    caught = [f"{w.category.__name__}: {w.message}" for w in rec]
    for line in caught:
        print(f"warning: {line}", file=sys.stderr)
    if out["frames"] == 0:
        raise ValueError(f"{source.description}: no frames to score")
    out["model_path"] = args.model or "default"
    out["source"] = source.info
    out["source_description"] = source.description
    out["settings"] = {"frames": args.frames, "dis_preset": args.dis_preset, "max_frame_gap_s": args.max_frame_gap,
                       "boundary_tolerance_px": args.boundary_tolerance, "device": args.device,
                       "context_before": args.context, "max_frames": args.max_frames}
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


def _title(out: dict[str, Any]) -> str:
    return (f"temporal headroom of {out['model']} (T={out['window']}, DIS {out['dis_preset']}): "
            f"{out['frames']} frames, {out['labelled_frames']} labelled")


def draw_chart(out: dict[str, Any], size: tuple[int, int] = (520, 960)) -> np.ndarray:
    """A BGR bar chart: per metric, the gain in points of each fused baseline over per-frame (the per-frame value
    is written under the metric's name)."""
    import cv2

    H, W = size
    img = np.full((H, W, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fused = [b for b in BASELINES if b != "per_frame"]
    gains = {(b, k): out["baselines"][b]["gain"][k] for b in fused for k, _ in METRICS}
    values = [100 * v for v in gains.values() if v is not None] + [0.0]
    lo, hi = min(values), max(values)
    span = max(hi - lo, 1.0)
    lo, hi = lo - 0.12 * span, hi + 0.12 * span
    top, bottom, left, right = 70, H - 90, 60, W - 20

    def y_of(v: float) -> int:
        return int(round(bottom - (v - lo) / (hi - lo) * (bottom - top)))

    cv2.putText(img, _title(out)[:110], (10, 24), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "gain over per-frame (points)", (10, 48), font, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    step = _tick_step(hi - lo)
    tick = np.ceil(lo / step) * step
    while tick <= hi:
        y = y_of(tick)
        cv2.line(img, (left, y), (right, y), (225, 225, 225), 1)
        text = "0" if abs(tick) < step / 1e6 else f"{tick:+.3g}"
        cv2.putText(img, text, (6, y + 4), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
        tick += step
    cv2.line(img, (left, y_of(0.0)), (right, y_of(0.0)), (0, 0, 0), 1)
    group_w = (right - left) / len(METRICS)
    bar_w = int(group_w * 0.8 / len(fused))
    for g, (key, title) in enumerate(METRICS):
        x0 = int(left + g * group_w + group_w * 0.1)
        for i, b in enumerate(fused):
            v = gains[(b, key)]
            xa, xb = x0 + i * bar_w + 2, x0 + (i + 1) * bar_w - 2
            if v is None:
                cv2.putText(img, "n/a", (xa, y_of(0.0) - 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
                continue
            y0, y1 = sorted((y_of(0.0), y_of(100 * v)))
            cv2.rectangle(img, (xa, y0), (xb, max(y1, y0 + 1)), COLORS[b], -1)
            label = f"{100 * v:+.2f}"
            ty = y_of(100 * v) - 5 if v >= 0 else y_of(100 * v) + 14
            cv2.putText(img, label, (xa, ty), font, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        base = out["baselines"]["per_frame"][key]
        cx = int(left + g * group_w + group_w * 0.1)
        cv2.putText(img, title, (cx, bottom + 22), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"per-frame {_pts(base)}", (cx, bottom + 42), font, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    lx = left
    for b in fused:
        cv2.rectangle(img, (lx, H - 28), (lx + 14, H - 14), COLORS[b], -1)
        cv2.putText(img, BASELINE_TITLES[b], (lx + 20, H - 16), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        lx += 20 + 9 * len(BASELINE_TITLES[b]) + 30
    return img


def _tick_step(span: float) -> float:
    """A 1/2/5 x 10^k step giving about 5 to 10 grid lines over ``span``."""
    raw = span / 6
    k = 10 ** np.floor(np.log10(raw))
    return float(next(m * k for m in (1, 2, 5, 10) if m * k >= raw))


def write_chart(path: Path, out: dict[str, Any]) -> None:
    from vsseg_ros.core.visualize import write_png

    write_png(path, draw_chart(out), rgb=False)


def run(args: argparse.Namespace) -> int:
    """The ``vsseg-ros temporal-headroom`` command: 0 on success, 2 on bad input (the message says what was wrong)."""
    from vsseg_ros.core.checkpoint import CheckpointError

    try:
        out = measure(args)
    except (ValueError, CheckpointError, OSError) as e:
        print(f"vsseg-ros temporal-headroom: error: {e}", file=sys.stderr)
        return 2
    print(_title(out))
    print(format_table(out))
    for note in out["notes"] + out["warnings"]:
        print(f"  note: {note}")
    print(f"wrote {args.out / 'headroom.json'} and {args.out / 'headroom.png'}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vsseg_ros.tools.temporal_headroom",
                                description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
