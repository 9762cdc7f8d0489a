"""A confusion matrix over class ids, and the IoU / accuracy numbers read from it.

``matrix[g, p]`` counts pixels with ground truth ``g`` predicted as ``p``. Pixels whose ground truth is the
ignore id are not counted. A prediction outside ``0..num_classes-1`` on a counted pixel is an error for its
ground-truth class (it adds to that class's false negatives) but belongs to no class's false positives.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ConfusionMatrix:
    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
        #: counted pixels predicted as no valid class, per ground-truth class
        self.invalid_pred = np.zeros(self.num_classes, np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0
        self.invalid_pred[:] = 0

    def update(self, pred: Any, gt: Any) -> None:
        """Add one prediction/ground-truth pair (arrays or tensors of the same shape, integer ids)."""
        p = _to_numpy(pred).ravel()
        g = _to_numpy(gt).ravel()
        if p.shape != g.shape:
            raise ValueError(
                f"prediction has {p.size} values but ground truth has {g.size} (shapes {_shape(pred)} vs {_shape(gt)})"
            )
        n = self.num_classes
        keep = g != self.ignore_index if self.ignore_index is not None else np.ones(g.shape, bool)
        g = g[keep].astype(np.int64)
        p = p[keep].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= n):
            bad = np.unique(g[(g < 0) | (g >= n)])
            raise ValueError(
                f"ground truth has ids outside 0..{n - 1} that are not the ignore id "
                f"{self.ignore_index}: {bad[:20].tolist()}"
            )
        valid = (p >= 0) & (p < n)
        if not valid.all():
            self.invalid_pred += np.bincount(g[~valid], minlength=n)
            g, p = g[valid], p[valid]
        self.matrix += np.bincount(g * n + p, minlength=n * n).reshape(n, n)

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError("confusion matrices of different class counts")
        self.matrix += other.matrix
        self.invalid_pred += other.invalid_pred
        return self

    @property
    def total(self) -> int:
        """Counted (non-ignored) pixels."""
        return int(self.matrix.sum() + self.invalid_pred.sum())

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN); NaN where the class is in neither ground truth nor predictions."""
        tp = np.diag(self.matrix).astype(np.float64)
        gt_count = self.matrix.sum(axis=1) + self.invalid_pred
        pred_count = self.matrix.sum(axis=0)
        denom = (gt_count + pred_count).astype(np.float64) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes with a non-zero denominator (NaN if there are none)."""
        iou = self.iou()
        valid = ~np.isnan(iou)
        return float(iou[valid].mean()) if valid.any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct / counted pixels (NaN when nothing was counted)."""
        total = self.total
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall TP / ground-truth pixels (NaN for classes absent from the ground truth)."""
        gt_count = (self.matrix.sum(axis=1) + self.invalid_pred).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gt_count > 0, np.diag(self.matrix) / np.where(gt_count > 0, gt_count, 1.0), np.nan)

    def summary(self, names: Any = None) -> dict[str, Any]:
        """Plain-Python numbers (for JSON): miou, pixel_accuracy, per-class iou (None for NaN)."""
        iou = self.iou()
        keys = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        return {
            "miou": _num(self.miou()),
            "pixel_accuracy": _num(self.pixel_accuracy()),
            "iou": {k: _num(v) for k, v in zip(keys, iou)},
            "pixels": self.total,
        }


def _num(v: float) -> Any:
    return None if np.isnan(v) else float(v)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", ()))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


__all__ = ["ConfusionMatrix"]
