"""Speed of a temporal model, as ratios measured in one run (part of ``vsseg-ros bench --temporal``).

Per input size, on the same frames and interleaved frame by frame (so machine noise hits every variant alike;
every other frame in reverse order, so none always follows the same one):

- ``perframe``: the model's own per-frame network alone (:class:`PerFrameSegmenter`), the bar;
- ``streaming``: :class:`TemporalSegmenter` (one backbone pass per frame + the fusion over the window);
- ``streaming_no_mar``: the same without MAR (what MAR adds);
- ``naive``: what the reference does, recompute every frame of the window for each output
  (T backbone passes + the same fusion + the same output maps).

Plus DIS optical flow per frame (the Flow2Seg input) for the presets at the input size. Every variant produces
the full label map at input resolution. Ratios: streaming / perframe, naive / streaming (of the medians), and
MAR's cost three ways:

- ``mar_share`` ("MAR adds"): paired after the backbone. streaming and streaming_no_mar run back to back on the
  same frame, so a slow spell of the machine hits both; each pair's difference of the time spent *outside the
  backbone stage* (MAR runs after the backbone, which is the same work in both) is MAR's cost on that frame,
  and the median of those differences is taken over the streaming_no_mar median. The backbone's own
  frame-to-frame spread (a few ms at 360x480) then drops out of the pairs: the per-frame differences spread
  half as much as whole-frame ones.
- ``mar_share_whole_frame``: the median over frames of each frame's streaming time over its streaming_no_mar
  time, minus 1 (the same pairs, backbone included; a ratio of the two medians moved between 0 and 6 % from run
  to run, this one between 2 and 7 %). ``mar_backbone_ms``: the pairs' median backbone difference (with minus
  without MAR), the check that the stage left out carries no cost of MAR's.
- ``mar_stage_share``: the MAR stage's median over the streaming median, from the same frames.

``frame_ms`` keeps every timed frame and ``backbone_frame_ms`` the two streaming copies' backbone stage on
those frames (what ``mar_share`` leaves out). :func:`write_chart` draws them as bars.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from vsseg_ros.bench.measure import latency_stats
from vsseg_ros.core.segmenter import Frame, OutputRequest


def load_temporal_model(spec: Union[str, Path]) -> tuple[Any, Any, str]:
    """(TemporalSegNet, ClassMap, model id) from a temporal checkpoint or a model config YAML (random weights:
    speed does not depend on them)."""
    from vsseg_ros.core.checkpoint import load_checkpoint
    from vsseg_ros.core.classes import CAMVID, CITYSCAPES
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.models.temporal import TemporalSegNet

    p = Path(spec)
    if p.suffix in (".yaml", ".yml"):
        cfg = ModelConfig.from_yaml(p)
        if cfg.temporal is None:
            raise ValueError(f"{p}: not a temporal model config (no temporal section)")
        torch.manual_seed(0)
        model = TemporalSegNet(cfg).eval()
        cmap = {c.num_classes: c for c in (CAMVID, CITYSCAPES)}.get(cfg.num_classes)
        if cmap is None:
            raise ValueError(
                f"{p}: {cfg.num_classes} classes; benchmark configs must have CamVid's 11 or "
                "Cityscapes' 19 (or pass a checkpoint)"
            )
        return model, cmap, f"{cfg.name} (random weights, from {p.name})"
    ckpt = load_checkpoint(p)
    if ckpt.config.temporal is None:
        raise ValueError(f"{p}: not a temporal checkpoint")
    return ckpt.build_model(), ckpt.class_map, ckpt.model_id


def _paired(*series: list[float]) -> list[np.ndarray]:
    """``series`` as arrays, checked to be timed in pairs: the same nonzero number of frames each."""
    n = len(series[0])
    if not n or any(len(t) != n for t in series):
        raise ValueError(f"need the same nonzero number of paired times in each series, got {[len(t) for t in series]}")
    return [np.asarray(t, dtype=float) for t in series]


def paired_share(with_it: list[float], without: list[float]) -> float:
    """What a component adds, from frames timed in pairs: the median of ``with_it[i] / without[i]``, minus 1."""
    a, b = _paired(with_it, without)
    return round(float(np.median(a / b)) - 1.0, 3)


def paired_share_after(
    with_it: list[float], without: list[float], with_shared: list[float], without_shared: list[float]
) -> float:
    """What a component adds outside a stage both variants share, from frames timed in pairs: the median of
    ``(with_it[i] - with_shared[i]) - (without[i] - without_shared[i])`` over the median of ``without``. The
    shared stage's own noise drops out of each pair's difference."""
    a, b, a_shared, b_shared = _paired(with_it, without, with_shared, without_shared)
    return round(float(np.median((a - a_shared) - (b - b_shared)) / np.median(b)), 3)


class NaiveTemporal:
    """The reference's way: for each output, every frame of the window goes through the backbone again."""

    def __init__(self, streaming: Any) -> None:
        self.seg = streaming  # use its prepared network, preparer and output maps (never its stream)
        self.window: list[np.ndarray] = []

    def push(self, image: np.ndarray, request: OutputRequest) -> np.ndarray:
        seg = self.seg
        self.window = (self.window + [image])[-seg.window_size :]
        H, W = image.shape[:2]
        with torch.inference_mode():
            feats = []
            for img in self.window:
                x, h, w = seg.prepare(img, H, W)
                feats.append(seg.net.frame_features(x))
            target = seg.net.target_index(len(feats)) if seg.mode == "centered" else len(feats) - 1
            # the same work after the backbone as the streaming segmenter's
            out = seg.net.fuse(feats, target, boundary=False, rows=seg.logit_rows(h, feats[-1]))
            labels, _, _ = seg.output_maps(out["logits"], None, H, W, h, w, request)
        return labels


def bench_temporal(
    spec: Union[str, Path],
    sizes: list[tuple[int, int]],
    frames: int = 20,
    warmup: int = 3,
    video: Optional[Path] = None,
    dis_presets: tuple[str, ...] = ("ultrafast", "fast", "medium"),
) -> list[dict[str, Any]]:
    from vsseg_ros.core.flow import DISFlow, to_gray
    from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter
    from vsseg_ros.core.temporal_segmenter import TemporalSegmenter
    from vsseg_ros.imaging.video import default_video, read_frames

    model, cmap, model_id = load_temporal_model(spec)
    results = []
    for size in sizes:
        clip = list(read_frames(video or default_video(), max_frames=frames + warmup, size=size))
        no_mar = copy.deepcopy(model)
        no_mar.mar = None
        variants = {
            "perframe": PerFrameSegmenter(model.perframe, cmap, model_id, input_size=size),
            "streaming": TemporalSegmenter(model, cmap, model_id, input_size=size, mode="causal"),
            "streaming_no_mar": TemporalSegmenter(no_mar, cmap, model_id, input_size=size, mode="causal"),
        }
        # the naive way has a network of its own: borrowing the streaming variant's warmed that copy's weights for
        # it on every frame, help the no-MAR copy never got (it biased the paired MAR estimates)
        naive = NaiveTemporal(TemporalSegmenter(model, cmap, model_id, input_size=size, mode="causal"))
        request = OutputRequest(boundary=False, confidence=False)
        times: dict[str, list[float]] = {k: [] for k in (*variants, "naive")}
        stages: dict[str, dict[str, list[float]]] = {"streaming": {}, "streaming_no_mar": {}}
        order = list(times)
        for i, rgb in enumerate(tqdm(clip, desc=f"temporal {size[0]}x{size[1]}", unit="frame", leave=False)):
            frame = Frame(image=rgb, stamp_ns=i * 33_333_333, camera_id="bench")
            # every other frame in reverse order: no variant always runs after the same one (caches, clocks)
            for name in order if i % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                res = naive.push(rgb, request) if name == "naive" else variants[name].push(frame, request)
                dt = (time.perf_counter() - t0) * 1e3
                if i >= warmup:
                    times[name].append(dt)
                    if name in stages:
                        for k, v in res.timings_ms.items():
                            stages[name].setdefault(k, []).append(v)
        flow_ms: dict[str, dict[str, float]] = {}
        grays = [to_gray(f) for f in clip]
        for preset in dis_presets:
            for scale in (1.0, 0.5):
                dis = DISFlow(preset, scale)
                dis(grays[0], grays[1])
                ts = []
                for a, b in zip(grays, grays[1:]):
                    t0 = time.perf_counter()
                    dis(a, b)
                    ts.append((time.perf_counter() - t0) * 1e3)
                flow_ms[f"{preset}@{scale:g}"] = latency_stats(ts)
        ms = {k: latency_stats(v) for k, v in times.items()}
        p50 = {k: v["p50"] for k, v in ms.items()}
        stage_ms = {k: latency_stats(v)["p50"] for k, v in stages["streaming"].items()}
        backbone = {k: stages[k]["backbone"] for k in stages}
        results.append(
            {
                "size": f"{size[0]}x{size[1]}",
                "model_id": model_id,
                "frames": frames,
                "window": int(model.frames),
                "ms": ms,
                "streaming_stages_ms": stage_ms,
                "streaming_over_perframe": round(p50["streaming"] / p50["perframe"], 3),
                "naive_over_streaming": round(p50["naive"] / p50["streaming"], 3),
                "mar_share": paired_share_after(
                    times["streaming"], times["streaming_no_mar"], backbone["streaming"], backbone["streaming_no_mar"]
                ),
                "mar_share_whole_frame": paired_share(times["streaming"], times["streaming_no_mar"]),
                "mar_backbone_ms": round(
                    float(np.median(np.subtract(backbone["streaming"], backbone["streaming_no_mar"]))), 2
                ),
                "mar_stage_share": round(stage_ms.get("mar", 0.0) / p50["streaming"], 3),
                "dis_ms": flow_ms,
                "frame_ms": times,
                "backbone_frame_ms": backbone,
            }
        )
    return results


def print_temporal(results: list[dict[str, Any]]) -> None:
    if not results:
        return
    r0 = results[0]
    print(
        f"\ntemporal model {r0['model_id']!r}, T={r0['window']} causal (median ms per frame, "
        f"{r0['frames']} frames, variants interleaved frame by frame)"
    )
    print(
        f"{'input':>10} {'per-frame':>10} {'streaming':>10} {'naive':>8} {'stream/pf':>10} {'naive/stream':>13} "
        f"{'MAR adds':>9} {'MAR stage':>10}"
    )
    for r in results:
        ms = r["ms"]
        print(
            f"{r['size']:>10} {ms['perframe']['p50']:>10.1f} {ms['streaming']['p50']:>10.1f} "
            f"{ms['naive']['p50']:>8.1f} {r['streaming_over_perframe']:>10.3f} {r['naive_over_streaming']:>13.3f} "
            f"{r['mar_share']:>9.1%} {r['mar_stage_share']:>10.1%}"
        )
    for r in results:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["streaming_stages_ms"].items())
        flows = ", ".join(f"{k} {v['p50']:.1f}" for k, v in r["dis_ms"].items())
        print(f"{r['size']:>10} streaming stages (ms): {stages}")
        print(
            f"{'':>10} MAR adds {r['mar_share']:.1%} after the backbone (paired), {r['mar_share_whole_frame']:.1%} "
            f"whole frames (paired); backbone with - without MAR {r['mar_backbone_ms']:+.2f} ms"
        )
        print(f"{'':>10} DIS flow per frame (ms, preset@scale): {flows}")


def write_chart(path: Union[str, Path], results: list[dict[str, Any]]) -> None:
    """:func:`bench_temporal`'s results as a bar chart (:func:`vsseg_ros.charts.temporal_bench`), a PNG at
    ``path``."""
    from vsseg_ros import charts

    charts.save_png(charts.temporal_bench(results), path)
