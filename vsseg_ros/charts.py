"""The project's charts, drawn with matplotlib on its Agg canvas (no display, no pyplot state): the evaluation
report's per-class IoU bars, confusion matrices and latency histogram, the training curve, the temporal and fleet
benchmark charts, the temporal headroom chart and the soak run's time series.

Why one module over 400 lines: one function per chart, each independent, under the one shared style (sizes,
colours, number formats) at the top; a catalogue read one function at a time.

Each chart function takes the numbers its command computed and returns a :class:`~matplotlib.figure.Figure`;
:func:`save_png` writes one (atomically), :func:`to_rgb` renders one into an array. Pictures of frames (overlays,
masks, contact sheets) are images, not charts: they stay in :mod:`vsseg_ros.core.visualize` (OpenCV).
Nothing here imports ROS or torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

DPI = 100
#: colours of the models in a comparison (first blue, second orange)
MODEL_COLORS = ("#3465a4", "#e67e22")
#: bars that stand for a whole frame (the per-frame model, the naive temporal way)
WHOLE_FRAME = "#b9b9b9"
#: the streaming temporal model's stages, stacked in the temporal bench chart
STAGE_COLORS = {
    "preprocess": "#969696",
    "backbone": "#3c8cc8",
    "flow": "#e6aa3c",
    "fusion": "#3ca03c",
    "mar": "#c82828",
    "postprocess": "#aa5aaa",
}
#: the fused baselines of the temporal headroom chart
HEADROOM_COLORS = {"mean": "#b4b4b4", "aligned_mean": "#2878c8", "oracle": "#3ca03c"}
#: the fleet bench's two rates per run
FLEET_COLORS = ("#285a8c", "#82b4dc")


def _figure(width_in: float, height_in: float) -> Figure:
    """A figure on its own Agg canvas; ``constrained`` layout keeps the labels inside the picture."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _model_color(m: int) -> str:
    return MODEL_COLORS[m % len(MODEL_COLORS)]


def _num(v: Optional[float], fmt: str = ".1f") -> str:
    return "n/a" if v is None else format(v, fmt)


def save_png(fig: Figure, path: Union[str, Path]) -> Path:
    """Write ``fig`` as a PNG at ``path`` (written next to it, then renamed over it: a reader never sees half a
    picture); OSError ``could not write PATH: ...`` when it cannot be written (a missing folder, no permission)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {e.strerror or e}") from e
    return path


def to_rgb(fig: Figure) -> np.ndarray:
    """``fig`` rendered as an HxWx3 uint8 RGB array."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# -- evaluation report ----------------------------------------------------------------------------


def iou_bars(
    per_class: Sequence[Mapping[str, Optional[float]]],
    model_names: Sequence[str],
    class_colors: Optional[Sequence[Sequence[int]]] = None,
    xlabel: str = "IoU (%)",
    title: str = "per-class IoU",
) -> Figure:
    """Horizontal bars, per class (or per bag) one bar per model, the value written at its end; a class with no
    IoU (absent from ground truth and predictions) says "n/a". With one model and ``class_colors`` (RGB 0-255)
    the bars take the class colours."""
    names = list(per_class[0].keys())
    n = len(per_class)
    bar_h = 0.8 / n
    fig = _figure(7.2, 1.0 + 0.22 * len(names) * max(1.0, 0.75 * n))
    ax = fig.add_subplot()
    for m, values in enumerate(per_class):
        ys = [i + (m - (n - 1) / 2) * bar_h for i in range(len(names))]
        widths = [100 * (values.get(c) or 0.0) for c in names]
        if n == 1 and class_colors is not None:
            colors = [
                tuple(v / 255 for v in class_colors[i]) if i < len(class_colors) else _model_color(0)
                for i in range(len(names))
            ]
        else:
            colors = [_model_color(m)] * len(names)
        bars = ax.barh(
            ys,
            widths,
            height=0.9 * bar_h,
            color=colors,
            edgecolor="0.35",
            linewidth=0.4,
            label=model_names[m] if m < len(model_names) else None,
        )
        labels = ["n/a" if values.get(c) is None else f"{w:.1f}" for c, w in zip(names, widths)]
        ax.bar_label(bars, labels=labels, padding=3, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()  # first class on top
    ax.set_xlim(0, 108)
    ax.set_xticks(range(0, 101, 10))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    if n > 1:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row over its sum (rows: ground truth); NaN in a row without ground-truth pixels."""
    m = np.asarray(matrix, np.float64)
    rows = m.sum(axis=1, keepdims=True)
    out: np.ndarray = np.full_like(m, np.nan)
    np.divide(m, rows, out=out, where=rows > 0)
    return out


def confusion_matrices(matrices: Sequence[np.ndarray], names: Sequence[str], titles: Sequence[str]) -> Figure:
    """One row-normalised confusion matrix per model side by side (rows: ground truth, columns: prediction), as a
    heat map with the percentages in the cells; a class with no ground-truth pixels is a grey row."""
    c = len(names)
    side = max(4.5, min(9.0, 2.2 + 0.42 * c))
    fig = _figure(side * len(matrices) + 1.0, side + 0.4)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.8")
    image = None
    for ax, matrix, title in zip(axes, matrices, titles):
        pct = 100 * row_normalised(matrix)
        image = ax.imshow(np.ma.masked_invalid(pct), cmap=cmap, vmin=0, vmax=100)
        if c <= 24:  # beyond that the numbers do not fit in the cells
            for i, j in zip(*np.nonzero(np.nan_to_num(pct) >= 0.5)):
                ax.text(
                    j,
                    i,
                    f"{pct[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if pct[i, j] > 55 else "white",
                )
        ax.set_xticks(range(c), names, rotation=90, fontsize=8)
        ax.set_yticks(range(c), names, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("ground-truth class")
        ax.set_title(title, fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="% of the ground-truth row (grey: no such pixels)")
    return fig


def latency_histogram(
    latencies: Sequence[Sequence[float]], model_names: Sequence[str], stats: Sequence[Mapping[str, Any]], bins: int = 40
) -> Figure:
    """Histogram of the per-frame latencies (ms), one colour per model, with its p50 / p95 / p99 as vertical
    lines; frames slower than the 99.5th percentile of all are counted in the last bin (the axis label says so)."""
    fig = _figure(7.2, 3.6)
    ax = fig.add_subplot()
    arrays = [np.asarray(v, np.float64) for v in latencies]
    all_v = np.concatenate([a for a in arrays if a.size]) if any(a.size for a in arrays) else np.zeros(0)
    if all_v.size == 0:
        ax.text(0.5, 0.5, "no latencies were measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    lo, hi = float(all_v.min()), float(np.percentile(all_v, 99.5))
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    styles = (("p50", "-"), ("p95", "--"), ("p99", ":"))
    for m, (values, name) in enumerate(zip(arrays, model_names)):
        color = _model_color(m)
        s = stats[m]
        label = (
            f"{name[:30]}: p50 {_num(s.get('p50'))}, p95 {_num(s.get('p95'))}, p99 {_num(s.get('p99'))} ms"
            f" (n={s.get('count', len(values))})"
        )
        ax.hist(
            np.clip(values, lo, hi),
            bins=edges,
            histtype="stepfilled",
            color=color,
            edgecolor=color,
            alpha=0.55 if len(arrays) > 1 else 0.8,
            label=label,
        )
        for key, ls in styles:
            if s.get(key) is not None:
                ax.axvline(float(s[key]), color=color, ls=ls, lw=1.3)
    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="black", ls=ls, lw=1.3, label=key) for key, ls in styles]
    ax.set_ylim(0, 1.45 * ax.get_ylim()[1])  # room above the bars for the legend
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    clipped = bool((all_v > hi).any())
    ax.set_xlabel("latency per frame (ms)" + (f"; frames over {hi:.1f} ms counted in the last bin" if clipped else ""))
    ax.set_ylabel("frames")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    return fig


# -- training ---------------------------------------------------------------------------------------


def training_curve(
    points: Sequence[tuple[float, float]], title: str = "validation mIoU", xlabel: str = "iteration"
) -> Figure:
    """Validation mIoU (points of (x, mIoU in [0, 1])) as a line with its best point marked."""
    fig = _figure(8.0, 5.0)
    ax = fig.add_subplot()
    xs = [p[0] for p in points]
    ys = [100.0 * p[1] for p in points]
    if ys:
        ax.plot(xs, ys, marker="o", ms=4, color="#1e5ac8", label="validation mIoU")
        b = int(np.argmax(ys))
        ax.plot(
            [xs[b]],
            [ys[b]],
            marker="*",
            ms=13,
            color="#c82828",
            ls="none",
            label=f"best {ys[b]:.1f} % at {xlabel} {xs[b]:g}",
        )
        ax.legend(loc="lower right")
        title += f" (best {max(ys):.1f} %, last {ys[-1]:.1f} %)"
    else:
        title += " (no points yet)"
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, min(100.0, max(10.0, np.ceil(max(ys, default=0.0) / 10.0) * 10.0 + 10.0)))
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(color="0.9")
    return fig


# -- benchmarks -------------------------------------------------------------------------------------


def temporal_bench(results: Sequence[Mapping[str, Any]]) -> Figure:
    """``vsseg-ros bench --temporal``'s results: per input size, horizontal bars for the per-frame model, the
    streaming model split into its stages (medians; their sum is close to, not exactly, the total) and the naive
    way, each with its median and ratio. 960 px wide."""
    fig = _figure(9.6, 1.2 + 1.9 * max(1, len(results)))
    axes = fig.subplots(max(1, len(results)), 1, squeeze=False)[:, 0]
    if results:
        r0 = results[0]
        fig.suptitle(
            # two lines: a long model id on one line would be wider than the figure and push the axes out of it
            f"{r0['model_id']}, T={r0['window']} causal\nmedian ms per frame, {r0['frames']} frames, "
            "variants interleaved frame by frame",
            fontsize=10,
        )
    for ax, r in zip(axes, results):
        ms = {k: float(r["ms"][k]["p50"]) for k in ("perframe", "streaming", "naive")}
        ax.barh(0, ms["perframe"], color=WHOLE_FRAME)
        left = 0.0
        for stage, v in r["streaming_stages_ms"].items():
            if v > 0:
                ax.barh(1, v, left=left, color=STAGE_COLORS.get(stage, WHOLE_FRAME))
                left += v
        ax.barh(2, ms["naive"], color=WHOLE_FRAME)
        ends = (ms["perframe"], max(left, ms["streaming"]), ms["naive"])
        labels = (
            f"{ms['perframe']:.1f} ms",
            f"{ms['streaming']:.1f} ms ({r['streaming_over_perframe']:.2f}x per-frame)",
            f"{ms['naive']:.1f} ms ({r['naive_over_streaming']:.2f}x streaming)",
        )
        for y, (end, label) in enumerate(zip(ends, labels)):
            ax.text(end + 0.01 * max(ends), y, label, va="center", fontsize=8)
        ax.set_yticks(range(3), ["per-frame", "streaming", "naive"])
        ax.invert_yaxis()
        ax.set_xlim(0, 1.4 * max(ends))
        ax.set_xlabel("median ms per frame")
        ax.set_title(
            f"{r['size']}: MAR stage {r['mar_stage_share']:.1%} of streaming, MAR adds {r['mar_share']:.1%}",
            loc="left",
            fontsize=9,
        )
        ax.grid(axis="x", color="0.9")
        ax.set_axisbelow(True)
    handles = [Patch(color=c, label=s) for s, c in STAGE_COLORS.items()]
    handles.append(Patch(color=WHOLE_FRAME, label="per-frame, naive (whole frame)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    return fig


def _run_label(name: str, run: Mapping[str, Any]) -> str:
    if not name.startswith("ray"):
        return name
    return f"Ray, {run['workers']} worker{'s' if run['workers'] > 1 else ''}"


def fleet_bench(result: Mapping[str, Any]) -> Figure:
    """``vsseg-ros bench-fleet``'s result: per run, frames/s over the whole run and over the scoring phase."""
    runs = result["runs"]
    fig = _figure(8.6, 1.6 + 0.6 * len(runs))
    ax = fig.add_subplot()
    ys = np.arange(len(runs))
    for j, (key, label) in enumerate((("frames_per_s", "whole run"), ("frames_per_s_scoring", "scoring phase"))):
        values = [r.get(key) for r in runs.values()]
        bars = ax.barh(
            ys + (j - 0.5) * 0.4, [v or 0.0 for v in values], height=0.38, color=FLEET_COLORS[j], label=label
        )
        ax.bar_label(bars, labels=[_num(v, ".2f") for v in values], padding=3, fontsize=8)
    ax.set_yticks(ys, [_run_label(n, r) for n, r in runs.items()])
    ax.invert_yaxis()
    ax.margins(x=0.15)
    ax.set_xlabel("frames/s")
    first = next(iter(runs.values()))
    ax.set_title(
        f"vsseg-ros eval --bags: {first['bags']} bags, {first['frames']} frames, {result['cpus']} CPUs", fontsize=10
    )
    fig.legend(loc="outside right upper", fontsize=8)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    ratios = ", ".join(f"{k} {v}" for k, v in result.get("ratios", {}).items() if not k.endswith("_scoring"))
    if ratios:
        fig.supxlabel(ratios, fontsize=8, color="0.35")
    return fig


def temporal_headroom(out: Mapping[str, Any], metrics: Sequence[tuple[str, str]], titles: Mapping[str, str]) -> Figure:
    """``vsseg-ros temporal-headroom``'s result: per metric (``(key, title)``), the gain in points of each fused
    baseline over per-frame, its per-frame value under the metric's name. ``titles``: baseline -> legend text."""
    fused = [b for b in out["baselines"] if b != "per_frame"]
    fig = _figure(9.6, 5.2)
    ax = fig.add_subplot()
    x = np.arange(len(metrics))
    w = 0.8 / max(1, len(fused))
    for i, b in enumerate(fused):
        gains = [out["baselines"][b]["gain"][k] for k, _ in metrics]
        bars = ax.bar(
            x + (i - (len(fused) - 1) / 2) * w,
            [100 * (g or 0.0) for g in gains],
            0.92 * w,
            color=HEADROOM_COLORS.get(b, WHOLE_FRAME),
            label=titles.get(b, b),
        )
        ax.bar_label(bars, labels=["n/a" if g is None else f"{100 * g:+.2f}" for g in gains], padding=2, fontsize=7)
    base = out["baselines"]["per_frame"]
    ax.set_xticks(
        x, [f"{t}\nper-frame {_num(None if base[k] is None else 100 * base[k], '.2f')} %" for k, t in metrics]
    )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.margins(y=0.15)
    ax.set_ylabel("gain over per-frame (points)")
    ax.set_title(
        f"temporal headroom of {out['model']} (T={out['window']}, DIS {out['dis_preset']}): "
        f"{out['frames']} frames, {out['labelled_frames']} labelled",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    return fig


def soak(result: Mapping[str, Any]) -> Figure:
    """A soak run (``SoakResult.to_json()``: the summary and its ``series``): node RSS, input and output rate and
    latency p50 / p99 over time, one panel each."""
    s = result["series"]
    t = [x["t_s"] / 60 for x in s]
    r = s[:-1] if len(s) > 2 else s  # the last point's window holds the drain after the stream stopped
    fig = _figure(9.0, 8.0)
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(t, [x["rss_mb"] for x in s], color="tab:blue", label="node RSS")
    axes[0].axvline(result["warmup_s"] / 60, color="grey", ls="--", lw=1, label="end of warm-up")
    axes[0].set_ylabel("node RSS (MB)")
    axes[0].legend(loc="lower right")
    axes[1].plot(t[: len(r)], [x["in_rate_hz"] for x in r], label="frames sent", color="tab:grey")
    axes[1].plot(t[: len(r)], [x["out_rate_hz"] for x in r], label="masks received", color="tab:green")
    axes[1].set_ylabel("rate (Hz)")
    axes[1].legend(loc="center right")
    nan = float("nan")  # a window without outputs has no latency: a gap in the line
    axes[2].plot(
        t, [nan if x["latency_p50_ms"] is None else x["latency_p50_ms"] for x in s], label="p50", color="tab:orange"
    )
    axes[2].plot(
        t, [nan if x["latency_p99_ms"] is None else x["latency_p99_ms"] for x in s], label="p99", color="tab:red"
    )
    axes[2].set_ylabel("latency, publish -> mask (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="center right")
    for ax in axes:
        ax.grid(color="0.92")
    fig.suptitle(
        f"vsseg-ros soak: {result['size']} {result['encoding']} at {result['rate_hz']:g} Hz, "
        f"{result['minutes']:g} min; RSS growth {result['rss_growth_mb']:.1f} MB, wrong stamps "
        f"{result['wrong_stamps']}",
        fontsize=10,
    )
    return fig


__all__ = [
    "FLEET_COLORS",
    "HEADROOM_COLORS",
    "MODEL_COLORS",
    "STAGE_COLORS",
    "confusion_matrices",
    "fleet_bench",
    "iou_bars",
    "latency_histogram",
    "row_normalised",
    "save_png",
    "soak",
    "temporal_bench",
    "temporal_headroom",
    "to_rgb",
    "training_curve",
]
