"""Temporal consistency of a prediction stream: video consistency mVC_k and flow-warp consistency TC.

**mVC_k** (VSPW's video consistency): for every window of ``k`` consecutive labelled frames of one sequence,
A = pixels whose ground truth is the same class in all ``k`` frames (ignored pixels excluded), B = pixels whose
prediction is the same in all ``k`` frames; VC = |A and B| / |A|. mVC_k is the mean over *all* windows (a
sequence of T labelled frames has T - k + 1; VSPW's script stops one early). A window with an empty A is skipped.
A frame without ground truth, a new sequence or a change of image size ends the run of consecutive frames.

**TC** (flow-warp consistency): for consecutive frames t, t+1 of one sequence, the prediction of t+1 is warped
back onto frame t with the optical flow from t to t+1 (nearest neighbour, pixels whose flow leaves the image are
dropped) and compared with the prediction of t; the pairs' confusion matrix is accumulated over the stream and
TC is its mIoU. It needs no ground truth.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable, Optional, Sequence

import numpy as np

from vsseg_ros.metrics.confusion import ConfusionMatrix


class VideoConsistency:
    """mVC over windows of ``k`` frames for each ``k`` in ``windows``; feed frames in stream order."""

    def __init__(self, windows: Sequence[int] = (8, 16), ignore_id: int = 255) -> None:
        ks = sorted({int(k) for k in windows})
        if not ks or ks[0] < 2:
            raise ValueError(f"mVC windows must be >= 2 frames, got {list(windows)}")
        self.windows = ks
        self.ignore_id = ignore_id
        self._recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=ks[-1])
        self._sequence: Optional[str] = None
        self.values: dict[int, list[float]] = {k: [] for k in ks}
        self.empty_windows: dict[int, int] = {k: 0 for k in ks}

    def break_run(self) -> None:
        """The next frame does not follow the previous ones (new clip, unlabelled frame)."""
        self._recent.clear()

    def add(self, pred: np.ndarray, gt: Optional[np.ndarray], sequence: str = "") -> None:
        if gt is None:
            self.break_run()
            return
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        if sequence != self._sequence or (self._recent and self._recent[-1][0].shape != gt.shape):
            self.break_run()
        self._sequence = sequence
        self._recent.append((gt, pred))
        n = len(self._recent)
        for k in self.windows:
            if n >= k:
                self._score_window(k, list(self._recent)[n - k :])

    def _score_window(self, k: int, frames: list[tuple[np.ndarray, np.ndarray]]) -> None:
        gt0, pred0 = frames[0]
        same_gt = gt0 != self.ignore_id
        same_pred = np.ones(pred0.shape, bool)
        for gt, pred in frames[1:]:
            same_gt &= gt == gt0
            same_pred &= pred == pred0
        a = int(same_gt.sum())
        if a == 0:
            self.empty_windows[k] += 1
            return
        self.values[k].append(float((same_gt & same_pred).sum()) / a)

    def mvc(self, k: int) -> Optional[float]:
        """Mean VC over the windows of ``k`` frames, None when there was no window. The sum is exact
        (:func:`math.fsum`), so it does not depend on the order of the windows: per-bag sums merge into it."""
        v = self.values[k]
        return math.fsum(v) / len(v) if v else None

    def summary(self) -> dict[str, Any]:
        return {f"mvc{k}": self.mvc(k) for k in self.windows} | {
            "windows": {str(k): len(self.values[k]) for k in self.windows},
            "empty_windows": {str(k): self.empty_windows[k] for k in self.windows},
        }


def warp_back(labels_next: np.ndarray, flow: np.ndarray, fill: int = 255) -> np.ndarray:
    """``labels_next`` (frame t+1) sampled at ``x + flow`` for every pixel x of frame t (nearest neighbour);
    pixels whose target lies outside the image get ``fill``."""
    import cv2

    h, w = labels_next.shape
    if flow.shape != (h, w, 2):
        raise ValueError(f"flow {flow.shape} does not match labels {labels_next.shape}")
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx = gx + flow[..., 0]
    my = gy + flow[..., 1]
    warped = cv2.remap(
        np.ascontiguousarray(labels_next, np.uint8),
        mx,
        my,
        cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
    # remap rounds to the nearest pixel: sources up to half a pixel outside still land on the edge; drop them
    outside = (mx < -0.5) | (mx > w - 0.5) | (my < -0.5) | (my > h - 0.5)
    warped[outside] = fill
    return warped


FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def dis_flow(preset: str = "medium") -> tuple[FlowFn, Callable[[np.ndarray], np.ndarray]]:
    """(flow(prev_gray, gray) -> HxWx2, to_gray(rgb) -> grey): OpenCV DIS, as the Flow2Seg path computes it."""
    from vsseg_ros.core.flow import DISFlow, to_gray

    return DISFlow(preset), to_gray


class FlowConsistency:
    """TC over consecutive frame pairs; ``flow_fn(prev_gray, gray)`` gives the flow from the earlier frame."""

    def __init__(
        self,
        num_classes: int,
        dis_preset: str = "medium",
        flow_fn: Optional[FlowFn] = None,
        to_gray: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    ) -> None:
        if flow_fn is None or to_gray is None:
            dflow, dgray = dis_flow(dis_preset)
            flow_fn, to_gray = flow_fn or dflow, to_gray or dgray
        self.flow_fn = flow_fn
        self.to_gray = to_gray
        self.confusion = ConfusionMatrix(num_classes, ignore_index=255)
        self.pairs = 0
        self._prev: Optional[tuple[np.ndarray, np.ndarray, str]] = None

    def break_run(self) -> None:
        self._prev = None

    def add(self, image: np.ndarray, pred: np.ndarray, sequence: str = "") -> None:
        gray = self.to_gray(image)
        pred = np.asarray(pred)
        if gray.shape != pred.shape:
            raise ValueError(f"image {gray.shape} and prediction {pred.shape} differ in size")
        prev = self._prev
        self._prev = (gray, pred, sequence)
        if prev is None or prev[2] != sequence or prev[0].shape != gray.shape:
            return
        flow = self.flow_fn(prev[0], gray)
        # prediction t is the reference, the warped t+1 the candidate; 255 marks pixels that left the image
        reference = prev[1].astype(np.uint8).copy()
        warped = warp_back(pred, flow)
        reference[warped == 255] = 255
        self.confusion.update(warped, reference)
        self.pairs += 1

    def tc(self) -> Optional[float]:
        if not self.pairs:
            return None
        v = self.confusion.miou()
        return None if np.isnan(v) else v

    def summary(self) -> dict[str, Any]:
        return {"tc": self.tc(), "pairs": self.pairs}


__all__ = ["FlowConsistency", "VideoConsistency", "dis_flow", "warp_back"]
