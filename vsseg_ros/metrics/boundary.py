"""Boundary F-score: how well predicted class boundaries line up with the ground truth's, within a tolerance.

A boundary pixel is a pixel whose label differs from its right, lower or lower-right neighbour (one-pixel-thin
boundaries, as in the DAVIS / BSDS ``seg2bmap`` convention). In the ground truth only transitions between two
labelled pixels count; a transition into the ignore id is not a boundary anyone can be scored against.

Matching is by distance: a predicted boundary pixel is correct when a ground-truth boundary pixel lies within
``tolerance_px`` (Euclidean, a disk), and a ground-truth boundary pixel is found when a predicted one lies within
the tolerance. Predicted boundary pixels that match nothing but lie within the tolerance of an ignored pixel
are not counted at all (the ground truth cannot say whether a boundary belongs there).

Counts are summed over all frames, then precision = matched predicted / predicted, recall = matched ground truth
/ ground truth, F = 2PR / (P + R). An undefined value (nothing to divide by) is ``None``, never 0.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def boundary_map(labels: np.ndarray, ignore_id: Optional[int] = None) -> np.ndarray:
    """HxW bool: pixels whose label differs from the right, lower or lower-right neighbour.

    With ``ignore_id``, a pair where either pixel is ignored is not a boundary."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"a label map must be HxW, got shape {lab.shape}")
    out = np.zeros(lab.shape, bool)
    valid = None if ignore_id is None else lab != ignore_id
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        a = lab[: lab.shape[0] - dy, : lab.shape[1] - dx]
        b = lab[dy:, dx:]
        diff = a != b
        if valid is not None:
            diff &= valid[: lab.shape[0] - dy, : lab.shape[1] - dx] & valid[dy:, dx:]
        out[: lab.shape[0] - dy, : lab.shape[1] - dx] |= diff
    return out


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    disk: np.ndarray = (x * x + y * y <= r * r).astype(np.uint8)
    return disk


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    import cv2

    return cv2.dilate(mask.astype(np.uint8), _disk(radius)) > 0


class BoundaryScore:
    """Accumulates boundary matches over frames; ``tolerance_px`` >= 0 is the matching radius in pixels."""

    def __init__(self, tolerance_px: int = 2, ignore_id: int = 255) -> None:
        if int(tolerance_px) != tolerance_px or tolerance_px < 0:
            raise ValueError(f"boundary tolerance must be a whole number of pixels >= 0, got {tolerance_px}")
        self.tolerance_px = int(tolerance_px)
        self.ignore_id = ignore_id
        self.pred_total = 0  # predicted boundary pixels that are scored
        self.pred_matched = 0
        self.gt_total = 0
        self.gt_matched = 0
        self.frames = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame (HxW predicted ids, HxW ground-truth ids with the ignore id)."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        pb = boundary_map(pred)
        gb = boundary_map(gt, self.ignore_id)
        near_gt = _dilate(gb, self.tolerance_px)
        near_pred = _dilate(pb, self.tolerance_px)
        near_ignore = _dilate(gt == self.ignore_id, self.tolerance_px)
        matched = pb & near_gt
        scored = matched | (pb & ~near_ignore)
        self.pred_total += int(scored.sum())
        self.pred_matched += int(matched.sum())
        self.gt_total += int(gb.sum())
        self.gt_matched += int((gb & near_pred).sum())
        self.frames += 1

    def precision(self) -> Optional[float]:
        return self.pred_matched / self.pred_total if self.pred_total else None

    def recall(self) -> Optional[float]:
        return self.gt_matched / self.gt_total if self.gt_total else None

    def f_score(self) -> Optional[float]:
        """2PR / (P + R); None when precision or recall is undefined; 0.0 when both are 0."""
        p, r = self.precision(), self.recall()
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)

    def summary(self) -> dict[str, Any]:
        return {
            "f": self.f_score(),
            "precision": self.precision(),
            "recall": self.recall(),
            "tolerance_px": self.tolerance_px,
            "pred_pixels": self.pred_total,
            "gt_pixels": self.gt_total,
            "frames": self.frames,
        }


__all__ = ["BoundaryScore", "boundary_map"]
