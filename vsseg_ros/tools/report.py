"""The pictures and the Markdown page of an evaluation report (OpenCV + numpy only; no plotting library).

:func:`write_report` writes into a folder: ``iou.png`` (per-class IoU bars, one bar per model per class),
``confusion.png`` (row-normalised confusion matrix per model), ``latency.png`` (latency histogram per model with
p50 / p95 / p99 marks), ``overlays.png`` (a strip of frames: image, ground truth, and per model its prediction and
its errors in red) and ``index.md`` (the numbers as tables, the pictures inline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.visualize import write_png

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (225, 225, 225)
#: model colours in comparisons (RGB): first model blue, second orange
MODEL_COLORS = ((52, 101, 164), (230, 126, 34))
ERROR_COLOR = (230, 20, 20)
FONT_SCALE = 0.45


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = FONT_SCALE, color=BLACK,
          thickness: int = 1) -> None:
    import cv2

    cv2.putText(img, text, (int(org[0]), int(org[1])), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)


def _text_width(text: str, scale: float = FONT_SCALE) -> int:
    import cv2

    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def _vertical_text(text: str, scale: float = FONT_SCALE) -> np.ndarray:
    """``text`` written bottom-to-top on a white strip (for column labels)."""
    w = _text_width(text, scale) + 6
    strip = np.full((18, w, 3), 255, np.uint8)
    _text(strip, text, (3, 13), scale)
    return np.ascontiguousarray(np.rot90(strip))


def iou_bars(per_class: Sequence[dict[str, Optional[float]]], model_names: Sequence[str],
             class_map: Optional[ClassMap] = None, width: int = 720) -> np.ndarray:
    """Horizontal bars: per class, one bar per model (IoU in %); a class with no IoU (absent from ground truth and
    predictions) shows "n/a". With one model the bars take the class colours."""
    names = list(per_class[0].keys())
    n_models = len(per_class)
    label_w = max(_text_width(n) for n in names) + 16
    bar_h, gap = 14, 8
    row_h = n_models * bar_h + gap
    top, bottom = 30, 34
    h = top + len(names) * row_h + bottom
    img = np.full((h, width, 3), 255, np.uint8)
    x0, x1 = label_w, width - 60
    for t in range(0, 101, 10):
        x = x0 + (x1 - x0) * t // 100
        img[top - 4:h - bottom + 2, x] = GRID
        _text(img, f"{t}", (x - _text_width(f"{t}") // 2, h - bottom + 18))
    _text(img, "IoU (%)", ((x0 + x1) // 2 - 25, h - 4))
    for m, name in enumerate(model_names if n_models > 1 else []):
        x = x0 + m * 220
        img[8:20, x:x + 12] = MODEL_COLORS[m % len(MODEL_COLORS)]
        _text(img, name[:28], (x + 16, 19))
    for i, cname in enumerate(names):
        y = top + i * row_h
        _text(img, cname, (label_w - 8 - _text_width(cname), y + (n_models * bar_h) // 2 + 5))
        for m in range(n_models):
            v = per_class[m].get(cname)
            yb = y + m * bar_h
            if v is None:
                _text(img, "n/a", (x0 + 4, yb + bar_h - 3), 0.4, (120, 120, 120))
                continue
            if n_models == 1 and class_map is not None and i < class_map.num_classes:
                color = tuple(int(c) for c in class_map.colors[i])
            else:
                color = MODEL_COLORS[m % len(MODEL_COLORS)]
            xe = x0 + int(round((x1 - x0) * max(0.0, min(1.0, v))))
            img[yb + 1:yb + bar_h - 1, x0:max(x0 + 1, xe)] = color
            _text(img, f"{100 * v:.1f}", (xe + 4, yb + bar_h - 3), 0.4)
    return img


def confusion_image(matrix: np.ndarray, names: Sequence[str], title: str = "", cell: int = 0) -> np.ndarray:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction) as a heat map with the
    percentages written in the cells; a row without ground-truth pixels stays grey."""
    import cv2

    m = np.asarray(matrix, np.float64)
    c = m.shape[0]
    cell = cell or max(22, min(44, 560 // max(1, c)))
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(rows > 0, m / np.where(rows > 0, rows, 1), np.nan)
    heat = np.full((c * cell, c * cell, 3), 200, np.uint8)
    vals = np.nan_to_num(norm, nan=0.0)
    colors = cv2.cvtColor(cv2.applyColorMap(np.clip(vals * 255 + 0.5, 0, 255).astype(np.uint8),
                                            cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    for i in range(c):
        for j in range(c):
            y, x = i * cell, j * cell
            if np.isnan(norm[i, j]):
                continue
            heat[y:y + cell, x:x + cell] = colors[i, j]
            if cell >= 26:
                pct = 100 * norm[i, j]
                txt = f"{pct:.0f}" if pct >= 0.5 else ""
                fg = BLACK if norm[i, j] > 0.55 else WHITE
                _text(heat, txt, (x + (cell - _text_width(txt, 0.38)) // 2, y + cell // 2 + 5), 0.38, fg)
    heat[::cell, :] = WHITE
    heat[:, ::cell] = WHITE
    label_w = max(_text_width(n) for n in names) + 12
    col_labels = [_vertical_text(n) for n in names]
    head_h = max(x.shape[0] for x in col_labels) + 4
    title_h = 26
    out = np.full((title_h + head_h + c * cell + 26, label_w + c * cell + 10, 3), 255, np.uint8)
    _text(out, title or "confusion matrix", (4, 17), 0.5)
    for j, lab in enumerate(col_labels):
        x = label_w + j * cell + (cell - lab.shape[1]) // 2
        y = title_h + head_h - lab.shape[0]
        out[y:y + lab.shape[0], x:x + lab.shape[1]] = lab
    for i, n in enumerate(names):
        _text(out, n, (label_w - 6 - _text_width(n), title_h + head_h + i * cell + cell // 2 + 5))
    out[title_h + head_h:title_h + head_h + c * cell, label_w:label_w + c * cell] = heat
    _text(out, "rows: ground truth, columns: prediction, % of the row", (4, out.shape[0] - 8), 0.4)
    return out


def latency_histogram(latencies: Sequence[Sequence[float]], model_names: Sequence[str],
                      stats: Sequence[dict[str, Any]], width: int = 720, height: int = 300,
                      bins: int = 40) -> np.ndarray:
    """Histogram of per-frame latencies (ms), one colour per model, with dashed p50 / p95 / p99 marks."""
    left, right, bottom = 50, 20, 40
    top = 16 + 16 * len(latencies)  # one summary line per model above the plot
    height += top - 32
    img = np.full((height, width, 3), 255, np.uint8)
    all_v = np.concatenate([np.asarray(v, np.float64) for v in latencies if len(v)]) if any(
        len(v) for v in latencies) else np.zeros(0)
    if all_v.size == 0:
        _text(img, "no latencies were measured", (left, height // 2))
        return img
    lo, hi = float(all_v.min()), float(np.percentile(all_v, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = [np.histogram(np.clip(np.asarray(v, np.float64), lo, hi), edges)[0] for v in latencies]
    peak = max(1, max(int(c.max()) for c in counts))
    pw, ph = width - left - right, height - top - bottom

    def xpos(v: float) -> int:
        return left + int(round((min(max(v, lo), hi) - lo) / (hi - lo) * pw))

    step = max(1, math.ceil(peak / 5))
    for t in range(0, peak + 1, step):  # whole frame counts on the y axis
        y = top + ph - int(round(t / peak * ph))
        img[y, left:left + pw] = GRID
        _text(img, f"{t}", (4, y + 4), 0.38)
    for t in np.linspace(lo, hi, 7):
        x = xpos(t)
        img[top + ph:top + ph + 4, x] = BLACK
        _text(img, f"{t:.1f}", (x - 14, top + ph + 16), 0.38)
    _text(img, "latency per frame (ms)", (left + pw // 2 - 80, height - 6))
    n = len(counts)
    bw = pw / bins
    for m, c in enumerate(counts):
        color = MODEL_COLORS[m % len(MODEL_COLORS)]
        for b in range(bins):
            if not c[b]:
                continue
            x_a = left + int(b * bw + m * bw / n)
            x_b = left + int(b * bw + (m + 1) * bw / n) - 1
            y = top + ph - int(round(c[b] / peak * ph))
            img[y:top + ph, x_a:max(x_a + 1, x_b)] = color
        for p, dash in (("p50", 3), ("p95", 6), ("p99", 10)):
            v = stats[m].get(p)
            if v is None:
                continue
            x = xpos(float(v))
            for y in range(top, top + ph, 2 * dash):
                img[y:y + dash, x] = color
            _text(img, p, (x + 2, top + 10 + 12 * (("p50", "p95", "p99").index(p)) + 36 * m), 0.35, color)
    img[top:top + ph + 1, left] = BLACK
    img[top + ph, left:left + pw] = BLACK
    for m, name in enumerate(model_names):
        v = stats[m]
        line = (f"{name[:30]}: p50 {_ms(v.get('p50'))}  p95 {_ms(v.get('p95'))}  p99 {_ms(v.get('p99'))} ms"
                f"  (n={v.get('count', 0)})")
        _text(img, line, (left, 14 + 16 * m), 0.4, MODEL_COLORS[m % len(MODEL_COLORS)])
    return img


def _ms(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def error_view(image: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray], ignore_id: int = 255) -> np.ndarray:
    """The image dimmed to grey, wrong pixels in red, ignored pixels hatched dark (no ground truth: the grey
    image with a note)."""
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    out = np.repeat((gray // 2 + 64)[..., None], 3, axis=2)
    if gt is None:
        _text(out, "no ground truth", (6, 36), 0.5, WHITE)
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


def overlay_strip(frames: Sequence[StripFrame], class_map: ClassMap, model_names: Sequence[str],
                  thumb_width: int = 240) -> np.ndarray:
    """Rows of frames; columns: image, ground truth, then per model its overlay and its errors (red)."""
    import cv2

    from vsseg_ros.core import visualize

    rows = []
    for f in frames:
        h, w = f.image.shape[:2]
        tw, th = thumb_width, max(1, int(round(h * thumb_width / w)))

        def small(x: np.ndarray, nearest: bool = False) -> np.ndarray:
            return cv2.resize(x, (tw, th), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

        row = [visualize.label(small(f.image), f.name[:26])]
        row.append(small(visualize.color_mask(f.gt, class_map), True) if f.gt is not None
                   else np.full((th, tw, 3), 200, np.uint8))
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
    lines = [f"## Bags ({len(bags)} scored, worst mIoU first)", "",
             "| # | bag | frames (labelled) | mIoU (%) | boundary F (%) | mVC8 (%) | TC (%) | p50 (ms) |",
             "|---|---|---|---|---|---|---|---|"]
    for i, b in enumerate(bags[:limit], 1):
        chunk = f" [chunk {b['chunk'][0]}/{b['chunk'][1]}]" if b.get("chunk") else ""
        gt = "" if b.get("ground_truth", True) else " (no ground truth)"
        lines.append(f"| {i} | `{b['bag']}`{chunk}{gt} | {b['frames']} ({b.get('labelled_frames')}) | "
                     f"{_fmt(b.get('miou'))} | {_fmt(b.get('boundary_f'))} | {_fmt(b.get('mvc8'))} | "
                     f"{_fmt(b.get('tc'))} | {_fmt(b.get('latency_ms_p50'), False)} |")
    if len(bags) > limit:
        lines.append(f"\n({len(bags) - limit} more bags in the JSON's `bags`.)")
    if failed:
        lines += ["", f"## Bags that failed ({len(failed)})", "", "| bag | error |", "|---|---|"]
        lines += [f"| `{f['bag']}` | {str(f.get('error')).replace('|', '/')} |" for f in failed]
    return lines + [""]


def bag_bars(bags: Sequence[dict[str, Any]], count: int = 30) -> Optional[np.ndarray]:
    """The ``count`` first bags given (worst first) that have an mIoU, as bars (None when none has one)."""
    scored = [b for b in bags if b.get("miou") is not None][:count]
    if not scored:
        return None
    names: dict[str, Optional[float]] = {}
    for b in scored:
        name = Path(b["bag"]).name + (f" [{b['chunk'][0]}/{b['chunk'][1]}]" if b.get("chunk") else "")
        while name in names:
            name += "'"
        names[name[-40:]] = b["miou"]
    return iou_bars([names], ["mIoU per bag"])


def markdown(results: Sequence[dict[str, Any]], model_names: Sequence[str], source: str,
             pictures: dict[str, str]) -> str:
    """The report page: summary table (one column per model), per-class IoU table, notes and the pictures."""
    lines = [f"# Evaluation: {source}", ""]
    head = "| metric | " + " | ".join(model_names) + " |"
    lines += [head, "|---|" + "---|" * len(results)]
    rows = [("mIoU (%)", "miou", True), ("pixel accuracy (%)", "pixel_accuracy", True),
            ("boundary F (%)", "boundary_f", True), ("mVC8 (%)", "mvc8", True), ("mVC16 (%)", "mvc16", True),
            ("TC (%)", "tc", True)]
    for title, key, pct in rows:
        lines.append(f"| {title} | " + " | ".join(_fmt(r.get(key), pct) for r in results) + " |")
    for p in ("p50", "p95", "p99", "mean", "max"):
        lines.append(f"| latency {p} (ms) | " + " | ".join(_fmt(r["latency_ms"].get(p), False) for r in results)
                     + " |")
    lines.append("| frames (labelled) | " + " | ".join(f"{r['frames']} ({r.get('labelled_frames', 'n/a')})"
                                                      for r in results) + " |")
    tol = results[0].get("boundary", {}).get("tolerance_px")
    if tol is not None:
        lines += ["", f"Boundary F: tolerance {tol} px. mVC: windows of 8 / 16 consecutive labelled frames "
                      f"({', '.join(str(r.get('mvc_windows')) for r in results)} windows). "
                      "TC: flow-warp consistency between consecutive predictions (DIS optical flow)."]
    lines += ["", "## Per-class IoU (%)", "", "| class | " + " | ".join(model_names) + " |",
              "|---|" + "---|" * len(results)]
    for cname in results[0]["per_class_iou"]:
        lines.append(f"| {cname} | " + " | ".join(_fmt(r["per_class_iou"].get(cname)) for r in results) + " |")
    notes = [(name, n) for name, r in zip(model_names, results) for n in r.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {name}: {n}" for name, n in notes]
    lines += [""]
    for title, key in (("Per-class IoU", "iou"), ("Confusion matrix", "confusion"), ("Latency", "latency"),
                       ("Frames (errors in red)", "overlays")):
        if key in pictures:
            lines += [f"## {title}", "", f"![{title}]({pictures[key]})", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, results: Sequence[dict[str, Any]], model_names: Sequence[str],
                 confusions: Sequence[np.ndarray], latencies: Sequence[Sequence[float]], class_map: ClassMap,
                 strip: Sequence[StripFrame] = (), source: str = "", bags: Sequence[dict[str, Any]] = (),
                 failed: Sequence[dict[str, Any]] = ()) -> dict[str, Path]:
    """Write the pictures and ``index.md`` into ``out_dir`` (created); returns name -> path of what was written.
    ``strip`` empty: no overlay picture (e.g. when the frames may not be shown). ``bags`` / ``failed`` (a fleet):
    a per-bag table in that order and a chart of the first bags' mIoU (``bags.png``), and the bags that failed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["iou"] = write_png(out_dir / "iou.png", iou_bars([r["per_class_iou"] for r in results], model_names,
                                                             class_map))
    names = list(results[0]["per_class_iou"].keys())
    mats = [confusion_image(m, names, title=f"confusion matrix: {n}") for m, n in zip(confusions, model_names)]
    written["confusion"] = write_png(out_dir / "confusion.png", _hstack(mats))
    written["latency"] = write_png(out_dir / "latency.png",
                                   latency_histogram(latencies, model_names, [r["latency_ms"] for r in results]))
    if strip:
        written["overlays"] = write_png(out_dir / "overlays.png", overlay_strip(strip, class_map, model_names))
    bars = bag_bars(bags) if bags else None
    if bars is not None:
        written["bags"] = write_png(out_dir / "bags.png", bars)
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


def _hstack(images: Sequence[np.ndarray], gap: int = 12) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    parts = []
    for k, im in enumerate(images):
        pad = np.full((h, im.shape[1], 3), 255, np.uint8)
        pad[:im.shape[0]] = im
        parts.append(pad)
        if k + 1 < len(images):
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def strip_indices(total: int, count: int) -> list[int]:
    """``count`` stream indices spread evenly over ``total`` frames (first and last included)."""
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    if count == 1:
        return [0]
    return sorted({int(math.floor(i * (total - 1) / (count - 1) + 0.5)) for i in range(count)})


__all__ = ["StripFrame", "bag_bars", "bag_table", "confusion_image", "error_view", "iou_bars", "latency_histogram", "markdown",
           "overlay_strip", "strip_indices", "write_report"]
