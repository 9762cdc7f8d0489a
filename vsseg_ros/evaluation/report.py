"""The pictures and the Markdown page of an evaluation report.

:func:`write_report` writes into a folder: ``iou.png`` (per-class IoU bars, one bar per model per class),
``confusion.png`` (row-normalised confusion matrix per model), ``latency.png`` (latency histogram per model with
p50 / p95 / p99 marks), ``overlays.png`` (a strip of frames: image, ground truth, and per model its prediction and
its errors in red) and ``index.md`` (the numbers as tables, the pictures inline). The charts are drawn by
:mod:`vsseg_ros.charts` (matplotlib), the strip of frames with OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.visualize import write_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WHITE = (255, 255, 255)
ERROR_COLOR = (230, 20, 20)


def error_view(image: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray], ignore_id: int = 255) -> np.ndarray:
    """The image dimmed to grey, wrong pixels in red, ignored pixels hatched dark (no ground truth: the grey
    image with a note)."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    out = np.repeat((gray // 2 + 64)[..., None], 3, axis=2)
    if gt is None:
        cv2.putText(out, "no ground truth", (6, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.5, WHITE, 1, cv2.LINE_AA)
        return out
    ignore = gt == ignore_id
    wrong = (pred != gt) & ~ignore
    out[wrong] = ERROR_COLOR
    yy, xx = np.indices(gt.shape)
    out[ignore & (((yy + xx) // 3) % 2 == 0)] = (30, 30, 30)
    return out


@dataclass
class StripFrame:
    """One frame of the overlay strip: image, ground truth (or None) and each model's prediction."""

    name: str
    image: np.ndarray
    gt: Optional[np.ndarray]
    preds: list[np.ndarray]


def overlay_strip(
    frames: Sequence[StripFrame], class_map: ClassMap, model_names: Sequence[str], thumb_width: int = 240
) -> np.ndarray:
    """Rows of frames; columns: image, ground truth, then per model its overlay and its errors (red)."""
    import cv2

    from vsseg_ros.core import visualize

    rows = []
    for f in frames:
        h, w = f.image.shape[:2]
        tw, th = thumb_width, max(1, int(round(h * thumb_width / w)))

        def small(x: np.ndarray, nearest: bool = False, size: tuple[int, int] = (tw, th)) -> np.ndarray:
            return cv2.resize(x, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

        row = [visualize.label(small(f.image), f.name[:26])]
        row.append(
            small(visualize.color_mask(f.gt, class_map), True)
            if f.gt is not None
            else np.full((th, tw, 3), 200, np.uint8)
        )
        for pred in f.preds:
            row.append(small(visualize.overlay(f.image, pred, class_map, 0.55)))
            wrong = None
            if f.gt is not None:
                valid = f.gt != class_map.ignore_id
                wrong = 100.0 * float(((pred != f.gt) & valid).sum()) / max(1, int(valid.sum()))
            view = small(error_view(f.image, pred, f.gt, class_map.ignore_id), True)
            row.append(visualize.label(view, f"{wrong:.1f}% wrong") if wrong is not None else view)
        rows.append(row)
    titles = ["image", "ground truth"]
    for name in model_names:
        short = name[:18]
        titles += [f"{short}", "errors (red)"]
    ncol = 2 + 2 * len(model_names)
    sheet_w = ncol * thumb_width + (ncol + 1) * 4  # contact_sheet's default gap is 4 px
    return visualize.contact_sheet(rows, titles, footer=visualize.legend(class_map, sheet_w))


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.2f}" if pct else f"{v:.2f}"


def bag_table(bags: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]] = (), limit: int = 200) -> list[str]:
    """Markdown lines: one row per scored bag (in the order given: worst mIoU first for a fleet) with its frame
    counts and headline numbers, then the bags that failed with their errors."""
    lines = [
        f"## Bags ({len(bags)} scored, worst mIoU first)",
        "",
        "| # | bag | frames (labelled) | mIoU (%) | boundary F (%) | mVC8 (%) | TC (%) | p50 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, b in enumerate(bags[:limit], 1):
        chunk = f" [chunk {b['chunk'][0]}/{b['chunk'][1]}]" if b.get("chunk") else ""
        gt = "" if b.get("ground_truth", True) else " (no ground truth)"
        lines.append(
            f"| {i} | `{b['bag']}`{chunk}{gt} | {b['frames']} ({b.get('labelled_frames')}) | "
            f"{_fmt(b.get('miou'))} | {_fmt(b.get('boundary_f'))} | {_fmt(b.get('mvc8'))} | "
            f"{_fmt(b.get('tc'))} | {_fmt(b.get('latency_ms_p50'), False)} |"
        )
    if len(bags) > limit:
        lines.append(f"\n({len(bags) - limit} more bags in the JSON's `bags`.)")
    if failed:
        lines += ["", f"## Bags that failed ({len(failed)})", "", "| bag | error |", "|---|---|"]
        lines += [f"| `{f['bag']}` | {str(f.get('error')).replace('|', '/')} |" for f in failed]
    return lines + [""]


def bag_bars(bags: Sequence[dict[str, Any]], count: int = 30) -> Optional[Figure]:
    """The ``count`` first bags given (worst first) that have an mIoU, as bars (None when none has one)."""
    from vsseg_ros import charts

    scored = [b for b in bags if b.get("miou") is not None][:count]
    if not scored:
        return None
    names: dict[str, Optional[float]] = {}
    for b in scored:
        name = Path(b["bag"]).name + (f" [{b['chunk'][0]}/{b['chunk'][1]}]" if b.get("chunk") else "")
        while name in names:
            name += "'"
        names[name[-40:]] = b["miou"]
    return charts.iou_bars([names], ["mIoU per bag"], xlabel="mIoU (%)", title=f"mIoU of the {len(names)} worst bags")


def markdown(
    results: Sequence[dict[str, Any]], model_names: Sequence[str], source: str, pictures: dict[str, str]
) -> str:
    """The report page: summary table (one column per model), per-class IoU table, notes and the pictures."""
    lines = [f"# Evaluation: {source}", ""]
    head = "| metric | " + " | ".join(model_names) + " |"
    lines += [head, "|---|" + "---|" * len(results)]
    rows = [
        ("mIoU (%)", "miou", True),
        ("pixel accuracy (%)", "pixel_accuracy", True),
        ("boundary F (%)", "boundary_f", True),
        ("mVC8 (%)", "mvc8", True),
        ("mVC16 (%)", "mvc16", True),
        ("TC (%)", "tc", True),
    ]
    for title, key, pct in rows:
        lines.append(f"| {title} | " + " | ".join(_fmt(r.get(key), pct) for r in results) + " |")
    for p in ("p50", "p95", "p99", "mean", "max"):
        lines.append(f"| latency {p} (ms) | " + " | ".join(_fmt(r["latency_ms"].get(p), False) for r in results) + " |")
    lines.append(
        "| frames (labelled) | "
        + " | ".join(f"{r['frames']} ({r.get('labelled_frames', 'n/a')})" for r in results)
        + " |"
    )
    tol = results[0].get("boundary", {}).get("tolerance_px")
    if tol is not None:
        lines += [
            "",
            f"Boundary F: tolerance {tol} px. mVC: windows of 8 / 16 consecutive labelled frames "
            f"({', '.join(str(r.get('mvc_windows')) for r in results)} windows). "
            "TC: flow-warp consistency between consecutive predictions (DIS optical flow).",
        ]
    lines += [
        "",
        "## Per-class IoU (%)",
        "",
        "| class | " + " | ".join(model_names) + " |",
        "|---|" + "---|" * len(results),
    ]
    for cname in results[0]["per_class_iou"]:
        lines.append(f"| {cname} | " + " | ".join(_fmt(r["per_class_iou"].get(cname)) for r in results) + " |")
    notes = [(name, n) for name, r in zip(model_names, results) for n in r.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {name}: {n}" for name, n in notes]
    lines += [""]
    for title, key in (
        ("Per-class IoU", "iou"),
        ("Confusion matrix", "confusion"),
        ("Latency", "latency"),
        ("Frames (errors in red)", "overlays"),
    ):
        if key in pictures:
            lines += [f"## {title}", "", f"![{title}]({pictures[key]})", ""]
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    results: Sequence[dict[str, Any]],
    model_names: Sequence[str],
    confusions: Sequence[np.ndarray],
    latencies: Sequence[Sequence[float]],
    class_map: ClassMap,
    strip: Sequence[StripFrame] = (),
    source: str = "",
    bags: Sequence[dict[str, Any]] = (),
    failed: Sequence[dict[str, Any]] = (),
) -> dict[str, Path]:
    """Write the pictures and ``index.md`` into ``out_dir`` (created); returns name -> path of what was written.
    ``strip`` empty: no overlay picture (e.g. when the frames may not be shown). ``bags`` / ``failed`` (a fleet):
    a per-bag table in that order and a chart of the first bags' mIoU (``bags.png``), and the bags that failed."""
    from vsseg_ros import charts

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    colors = class_map.colors if len(results) == 1 else None
    written["iou"] = charts.save_png(
        charts.iou_bars([r["per_class_iou"] for r in results], model_names, colors), out_dir / "iou.png"
    )
    names = list(results[0]["per_class_iou"].keys())
    written["confusion"] = charts.save_png(
        charts.confusion_matrices(confusions, names, [f"confusion matrix: {n}" for n in model_names]),
        out_dir / "confusion.png",
    )
    written["latency"] = charts.save_png(
        charts.latency_histogram(latencies, model_names, [r["latency_ms"] for r in results]), out_dir / "latency.png"
    )
    if strip:
        written["overlays"] = write_png(out_dir / "overlays.png", overlay_strip(strip, class_map, model_names))
    bars = bag_bars(bags) if bags else None
    if bars is not None:
        written["bags"] = charts.save_png(bars, out_dir / "bags.png")
    pictures = {k: p.name for k, p in written.items()}
    index = out_dir / "index.md"
    page = markdown(results, model_names, source, pictures)
    if bags or failed:
        page += "\n" + "\n".join(bag_table(bags, failed))
        if bars is not None:
            page += f"\n![mIoU of the worst bags]({pictures['bags']})\n"
    index.write_text(page, encoding="utf-8")
    written["index"] = index
    return written


def strip_indices(total: int, count: int) -> list[int]:
    """``count`` stream indices spread evenly over ``total`` frames (first and last included)."""
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    return sorted({int(math.floor(i * (total - 1) / (count - 1) + 0.5)) for i in range(count)})


__all__ = [
    "StripFrame",
    "bag_bars",
    "bag_table",
    "error_view",
    "markdown",
    "overlay_strip",
    "strip_indices",
    "write_report",
]
