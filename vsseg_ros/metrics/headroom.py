"""Temporal headroom: what fusing a per-frame model's own outputs over a causal window of frames gains on a
stream, with no learning at all, and what perfect selection among the window could reach.

For every frame t the per-frame class probabilities ``p_t`` (softmax of the logits, computed exactly as the node
computes its labels) are kept for the last ``T`` frames, and four predictions are scored side by side with
:class:`~vsseg_ros.metrics.scorer.StreamScorer`:

- ``per_frame``: argmax of ``p_t`` (the model as the node runs it);
- ``mean``: argmax of the mean of ``p_{t-T+1} .. p_t``, not aligned (pixels of moving objects are mixed);
- ``aligned_mean``: the same mean after warping each earlier map into frame t with DIS optical flow
  (:class:`~vsseg_ros.core.flow.DISFlow` from frame t to the earlier frame, bilinear);
- ``oracle``: a pixel counts as right when the argmax of ANY of the T aligned maps equals its label (what a
  perfect per-pixel selection among the window could reach); elsewhere, on ignored pixels and on unlabelled
  frames it keeps the per-frame label. An upper bound for window fusion, not a method: it reads the labels.

The window restarts (holds only the current frame) at a new ``sequence``, a change of image size or a stamp gap
above ``max_frame_gap_s``; until it is full every baseline fuses the frames it has. Memory stays bounded: the
last ``T`` probability maps and grey images. Nothing here imports ROS.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from vsseg_ros.metrics.scorer import StreamScorer

#: the predictions scored, in table order
BASELINES = ("per_frame", "mean", "aligned_mean", "oracle")
#: human-readable names of :data:`BASELINES`
BASELINE_TITLES = {
    "per_frame": "per-frame",
    "mean": "causal mean (no warp)",
    "aligned_mean": "causal mean (DIS warp)",
    "oracle": "oracle (any of T aligned)",
}
#: headline metrics whose gain over ``per_frame`` is reported
GAIN_METRICS = ("miou", "mvc8", "mvc16", "boundary_f", "pixel_accuracy")
#: seconds between two frames above which the window restarts (as the temporal segmenter's max_frame_gap)
DEFAULT_MAX_FRAME_GAP_S = 0.5


class TemporalModelError(ValueError):
    """A temporal checkpoint was given where the per-frame model whose outputs are fused is needed."""


class SoftmaxModel:
    """Per-pixel class probabilities ``(H, W, C)`` float32 of a per-frame model at the frame's size, computed on
    the node's own path: the :class:`~vsseg_ros.core.perframe_segmenter.PerFrameSegmenter`'s frame preparer
    (resize, normalisation, zero padding), its inference copy of the network and its bilinear upsampling of the
    logits to the frame size, then softmax. So ``probs.argmax(-1)`` is the node's label map."""

    def __init__(self, segmenter: Any) -> None:
        from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter

        if not isinstance(segmenter, PerFrameSegmenter):
            raise TemporalModelError(
                f"temporal headroom needs a per-frame model (it fuses the per-frame outputs itself); "
                f"{getattr(segmenter, 'model_id', segmenter)!r} is a {type(segmenter).__name__}: give the "
                "per-frame checkpoint the temporal model was built on"
            )
        if segmenter.precision != "fp32":
            raise ValueError(f"temporal headroom runs the model in fp32, got a {segmenter.precision} segmenter")
        self.segmenter = segmenter
        self.class_map = segmenter.class_map
        self.model_id = segmenter.model_id

    @classmethod
    def load(cls, model_path: Union[str, Path] = "", device: str = "cpu") -> "SoftmaxModel":
        """The per-frame model at ``model_path`` ("" = the packaged default), as :func:`load_segmenter` loads it
        for the node. Raises :class:`TemporalModelError` for a temporal checkpoint (before building it),
        :class:`~vsseg_ros.core.errors.CheckpointError` for an unusable file."""
        from vsseg_ros.core.checkpoint import load_checkpoint
        from vsseg_ros.core.loading import load_segmenter

        path = str(model_path or "").strip()
        if path:
            ckpt = load_checkpoint(path)
            if ckpt.config.temporal is not None:
                raise TemporalModelError(
                    f"{path} is a temporal model ({ckpt.model_id!r}, temporal: {dict(ckpt.config.temporal)}); "
                    "temporal headroom measures what fusing a PER-FRAME model's outputs over a window can gain: "
                    "give a per-frame checkpoint (e.g. the one the temporal model was trained on, or none for the "
                    "packaged default)"
                )
        return cls(load_segmenter(path, device=device, precision="fp32"))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from vsseg_ros.core.frame_input import check_image

        seg = self.segmenter
        H, W = check_image(image)
        with torch.inference_mode():
            x, h, w = seg.prepare(image, H, W)
            logits = seg.net(x, boundary=False)["logits"]
            up = seg.output_maps.upsampled_logits(logits, H, W, h, w)  # the node's own upsampling
            probs = torch.softmax(up, dim=0)
        return probs.permute(1, 2, 0).contiguous().cpu().numpy()


def warp_into(probs: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """An earlier frame's ``(H, W, C)`` map sampled on the current frame's grid: ``flow`` (H, W, 2) is the optical
    flow from the current frame to the earlier one (DIS(current, earlier)), so pixel (x, y) of the current frame
    reads the earlier map at (x + u, y + v); bilinear, the border repeated."""
    import cv2

    H, W = probs.shape[:2]
    if flow.shape != (H, W, 2):
        raise ValueError(f"flow {flow.shape} does not match the map {probs.shape[:2]} (expected (H, W, 2))")
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    out = cv2.remap(
        np.ascontiguousarray(probs, dtype=np.float32),
        gx + flow[..., 0],
        gy + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(probs.shape)  # remap drops a trailing axis of size 1


def oracle_labels(aligned: Sequence[np.ndarray], label: Optional[np.ndarray], ignore_id: int = 255) -> np.ndarray:
    """The oracle prediction from the window's aligned ``(H, W, C)`` maps (current frame first): the label where
    any map's argmax equals it, elsewhere (and on ignored pixels, or without a label) the current frame's argmax."""
    current: np.ndarray = aligned[0].argmax(-1).astype(np.uint8)
    if label is None:
        return current
    hit = np.zeros(current.shape, bool)
    for p in aligned:
        hit |= p.argmax(-1) == label
    hit &= label != ignore_id
    labels: np.ndarray = np.where(hit, label, current).astype(np.uint8)
    return labels


class HeadroomScorer:
    """Scores the :data:`BASELINES` on a stream of per-frame probability maps, fed in stream order.

    ``class_names``: the model's classes. ``window``: T, the frames fused (current included, >= 1).
    ``dis_preset``: DIS optical flow preset for the alignment ("ultrafast", "fast", "medium").
    ``max_frame_gap_s``: a larger gap between stamps restarts the window. ``flow``: a callable
    ``flow(current_gray, earlier_gray) -> (H, W, 2)`` replacing DIS (tests). TC is not computed.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        window: int = 3,
        dis_preset: str = "medium",
        ignore_id: int = 255,
        boundary_tolerance_px: int = 2,
        max_frame_gap_s: float = DEFAULT_MAX_FRAME_GAP_S,
        flow: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
    ) -> None:
        from vsseg_ros.core.flow import DISFlow

        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(
                f"the window must be a whole number of frames >= 1 (the current one included), got {window!r}"
            )
        if not max_frame_gap_s > 0:
            raise ValueError(f"max_frame_gap_s must be > 0 seconds, got {max_frame_gap_s!r}")
        self.window = int(window)
        self.dis_preset = str(dis_preset)
        self.flow = flow if flow is not None else DISFlow(dis_preset)
        self.max_frame_gap_ns = float(max_frame_gap_s) * 1e9
        self.ignore_id = int(ignore_id)
        self.scorers = {
            b: StreamScorer(
                class_names, ignore_id=ignore_id, boundary_tolerance_px=boundary_tolerance_px, flow_consistency=False
            )
            for b in BASELINES
        }
        self.num_classes = len(self.scorers["per_frame"].class_names)
        # (grey image, probabilities) of the last T frames, oldest first
        self._recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.window)
        self._sequence: Optional[str] = None
        self._stamp: Optional[int] = None
        self.restarts = 0
        self.flow_ms: list[float] = []

    def _continues(self, shape: tuple[int, ...], sequence: str, stamp_ns: Optional[int]) -> bool:
        if not self._recent or sequence != self._sequence or self._recent[-1][1].shape != shape:
            return False
        return stamp_ns is None or self._stamp is None or abs(stamp_ns - self._stamp) <= self.max_frame_gap_ns

    def add(
        self,
        image: np.ndarray,
        probs: np.ndarray,
        label: Optional[np.ndarray],
        sequence: str = "",
        stamp_ns: Optional[int] = None,
        name: str = "",
    ) -> dict[str, np.ndarray]:
        """The next frame: RGB ``image`` (H, W, 3) uint8, its per-frame ``probs`` (H, W, C), ``label`` (H, W ids,
        ``ignore_id`` = not scored) or None. Returns each baseline's label map (H, W) uint8."""
        from vsseg_ros.core.flow import to_gray

        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 3 or probs.shape[2] != self.num_classes:
            raise ValueError(
                f"probabilities must be (H, W, {self.num_classes}) (one channel per class), got shape {probs.shape}"
            )
        if probs.shape[:2] != np.asarray(image).shape[:2]:
            raise ValueError(f"image {np.asarray(image).shape[:2]} and probabilities {probs.shape[:2]} differ in size")
        gray = to_gray(image)
        if not self._continues(probs.shape, sequence, stamp_ns):
            if self._recent:
                self.restarts += 1
            self._recent.clear()
        earlier = list(self._recent)  # oldest first
        self._recent.append((gray, probs))
        self._sequence, self._stamp = sequence, stamp_ns

        aligned = [probs]
        t0 = time.perf_counter()
        for prev_gray, prev_probs in reversed(earlier):  # newest earlier frame first
            aligned.append(warp_into(prev_probs, self.flow(gray, prev_gray)))
        if earlier:
            self.flow_ms.append((time.perf_counter() - t0) * 1e3)
        plain_mean = probs if not earlier else (probs + sum(p for _, p in earlier)) / (len(earlier) + 1)
        aligned_mean = probs if not earlier else sum(aligned[1:], aligned[0]) / len(aligned)
        preds = {
            "per_frame": probs.argmax(-1).astype(np.uint8),
            "mean": plain_mean.argmax(-1).astype(np.uint8),
            "aligned_mean": aligned_mean.argmax(-1).astype(np.uint8),
            "oracle": oracle_labels(aligned, label, self.ignore_id),
        }
        for b, pred in preds.items():
            self.scorers[b].add(image, pred, label, sequence=sequence, name=name)
        return preds

    def result(self) -> dict[str, Any]:
        """JSON-ready: ``baselines`` (per baseline the scorer's numbers and ``gain`` over per-frame, in the same
        units), ``frames``, ``labelled_frames``, ``window``, ``window_restarts``, ``flow_ms_mean``, ``notes``."""
        per = {b: s.result() for b, s in self.scorers.items()}
        base = per["per_frame"]
        baselines: dict[str, Any] = {}
        for b, r in per.items():
            r = {k: v for k, v in r.items() if k not in ("latency_ms", "tc", "tc_pairs")}
            r["title"] = BASELINE_TITLES[b]
            r["gain"] = {m: (None if r.get(m) is None or base.get(m) is None else r[m] - base[m]) for m in GAIN_METRICS}
            baselines[b] = r
        notes = [n for n in base["notes"] if not n.startswith("TC ")]
        if self.window == 1:
            notes.append("a window of 1 frame: every baseline is the per-frame prediction")
        return {
            "baselines": baselines,
            "frames": base["frames"],
            "labelled_frames": base["labelled_frames"],
            "window": self.window,
            "dis_preset": self.dis_preset,
            "max_frame_gap_s": self.max_frame_gap_ns / 1e9,
            "window_restarts": self.restarts,
            "flow_ms_mean": float(np.mean(self.flow_ms)) if self.flow_ms else None,
            "notes": notes,
        }


def temporal_headroom(
    model: SoftmaxModel,
    frames: Iterable[Any],
    window: int = 3,
    dis_preset: str = "medium",
    max_frame_gap_s: float = DEFAULT_MAX_FRAME_GAP_S,
    boundary_tolerance_px: int = 2,
    max_frames: Optional[int] = None,
) -> dict[str, Any]:
    """Stream :class:`~vsseg_ros.data.sources.LabelledFrame` s (a dataset's or a bag's, in stream order) through
    ``model`` and score the baselines (see :class:`HeadroomScorer`); returns its :meth:`~HeadroomScorer.result`
    plus ``model`` and ``model_ms_mean``. Wrap ``frames`` in a progress bar if one is wanted."""
    cm = model.class_map
    scorer = HeadroomScorer(
        cm.names,
        window=window,
        dis_preset=dis_preset,
        ignore_id=cm.ignore_id,
        boundary_tolerance_px=boundary_tolerance_px,
        max_frame_gap_s=max_frame_gap_s,
    )
    model_ms: list[float] = []
    for i, lf in enumerate(frames):
        if max_frames is not None and i >= max_frames:
            break
        t0 = time.perf_counter()
        probs = model(lf.image)
        model_ms.append((time.perf_counter() - t0) * 1e3)
        scorer.add(lf.image, probs, lf.label, sequence=lf.sequence, stamp_ns=lf.stamp_ns, name=lf.name)
    out = scorer.result()
    out["model"] = model.model_id
    out["model_ms_mean"] = float(np.mean(model_ms)) if model_ms else None
    return out


__all__ = [
    "BASELINES",
    "BASELINE_TITLES",
    "DEFAULT_MAX_FRAME_GAP_S",
    "GAIN_METRICS",
    "HeadroomScorer",
    "SoftmaxModel",
    "TemporalModelError",
    "oracle_labels",
    "temporal_headroom",
    "warp_into",
]
