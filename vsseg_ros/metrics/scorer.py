"""All evaluation metrics of one prediction stream, fed frame by frame in stream order.

:class:`StreamScorer` keeps the confusion matrix (mIoU, per-class IoU), the boundary F-score, video consistency
(mVC8, mVC16), flow-warp consistency (TC) and the per-frame latencies. A metric that cannot be computed from what
was fed (no ground truth, no consecutive pairs, too few frames for a window) is ``None`` in :meth:`result` and
``notes`` says why: a missing score is never reported as 0.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from vsseg_ros.metrics.boundary import BoundaryScore
from vsseg_ros.metrics.confusion import ConfusionMatrix
from vsseg_ros.metrics.consistency import FlowConsistency, VideoConsistency
from vsseg_ros.metrics.mergeable import StreamTotals

MVC_WINDOWS = (8, 16)


class StreamScorer:
    """Scores a stream of predictions against optional ground truth.

    ``class_names``: the model's classes (ids 0..C-1). ``ignore_id``: ground-truth id that is not scored.
    ``boundary_tolerance_px``: matching radius of the boundary F-score. ``flow_consistency``: compute TC (one
    DIS optical flow per consecutive pair, ``dis_preset`` "ultrafast" | "fast" | "medium").
    """

    def __init__(
        self,
        class_names: Sequence[str],
        ignore_id: int = 255,
        boundary_tolerance_px: int = 2,
        flow_consistency: bool = True,
        dis_preset: str = "medium",
    ) -> None:
        self.class_names = [str(n) for n in class_names]
        if not self.class_names:
            raise ValueError("StreamScorer needs at least one class name")
        self.num_classes = len(self.class_names)
        self.ignore_id = int(ignore_id)
        self.confusion = ConfusionMatrix(self.num_classes, ignore_index=self.ignore_id)
        self.boundary = BoundaryScore(boundary_tolerance_px, ignore_id=self.ignore_id)
        self.video = VideoConsistency(MVC_WINDOWS, ignore_id=self.ignore_id)
        self.flow: Optional[FlowConsistency] = (
            FlowConsistency(self.num_classes, dis_preset) if flow_consistency else None
        )
        self.latencies: list[float] = []
        self.frames = 0
        self.labelled_frames = 0
        self.empty_gt_frames = 0  # labelled frames whose every pixel is ignored
        #: per frame: (name, sequence, pixel accuracy or None) in stream order (for reports)
        self.frame_accuracy: list[tuple[str, str, Optional[float]]] = []

    def add(
        self,
        image: np.ndarray,
        pred: np.ndarray,
        gt: Optional[np.ndarray],
        latency_ms: Optional[float] = None,
        sequence: str = "",
        name: str = "",
    ) -> None:
        """The next frame of the stream: RGB ``image`` (HxWx3 uint8), ``pred`` (HxW ids 0..C-1), ``gt`` (HxW ids
        with ``ignore_id``, or None when the frame is unlabelled). A new ``sequence`` value starts a new clip."""
        pred = np.asarray(pred)
        image = np.asarray(image)
        if pred.ndim != 2:
            raise ValueError(f"prediction must be an HxW class-id map, got shape {pred.shape}")
        if image.shape[:2] != pred.shape:
            raise ValueError(f"image {image.shape[:2]} and prediction {pred.shape} differ in size")
        if pred.size and int(pred.max()) >= self.num_classes:
            raise ValueError(
                f"prediction has class id {int(pred.max())} but the model has {self.num_classes} "
                f"classes (0..{self.num_classes - 1})"
            )
        accuracy = None
        if gt is not None:
            gt = np.asarray(gt)
            if gt.shape != pred.shape:
                raise ValueError(
                    f"ground truth {gt.shape} and prediction {pred.shape} differ in size (frame {name or self.frames})"
                )
            self.confusion.update(pred, gt)
            self.boundary.update(pred, gt)
            self.labelled_frames += 1
            valid = gt != self.ignore_id
            n_valid = int(valid.sum())
            if n_valid:
                accuracy = float((pred[valid] == gt[valid]).sum()) / n_valid
            else:
                self.empty_gt_frames += 1
        self.video.add(pred, gt, sequence)
        if self.flow is not None:
            self.flow.add(image, pred, sequence)
        if latency_ms is not None:
            self.latencies.append(float(latency_ms))
        self.frame_accuracy.append((name, sequence, accuracy))
        self.frames += 1

    def per_class_iou(self) -> dict[str, Optional[float]]:
        """Class name -> IoU; None for a class in neither the ground truth nor the predictions."""
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.class_names, self.confusion.iou())}

    def result(self) -> dict[str, Any]:
        """Plain-Python numbers (JSON-ready): miou, per_class_iou, boundary_f, mvc8, mvc16, tc, latency_ms,
        frames, plus details (pixel accuracy, boundary precision/recall, window and pair counts, notes).
        Computed from :meth:`totals` (the same arithmetic that merges many streams), latency percentiles exactly."""
        return self.totals().result(latencies=self.latencies)

    def totals(self) -> StreamTotals:
        """What the scores are computed from, as a value that merges with other streams' (see
        :mod:`vsseg_ros.metrics.mergeable`)."""
        return StreamTotals.of(self)


__all__ = ["MVC_WINDOWS", "StreamScorer"]
