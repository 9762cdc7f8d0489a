"""Targets for the boundary head, made from a label map.

A pixel is a boundary pixel when some pixel within ``radius`` (a disk, at the resolution of the label map,
which is the network input resolution) carries a valid label different from the pixel's own; for a pixel
whose own label is the ignore id that means: two or more different valid labels lie within the radius.
Pixels with only ignore labels within the radius are excluded from the loss (target ``IGNORE_ID``).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from vsseg_ros.core.classes import IGNORE_ID


def disk(radius: int) -> np.ndarray:
    """A (2r+1)x(2r+1) uint8 disk structuring element (Euclidean distance <= r)."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return ((yy * yy + xx * xx) <= r * r).astype(np.uint8)


def boundary_targets(
    label: np.ndarray, radius: int = 2, num_classes: Optional[int] = None, ignore_id: int = IGNORE_ID
) -> np.ndarray:
    """HxW uint8: 1 = boundary, 0 = not, ``ignore_id`` = excluded (only ignore labels within ``radius``)."""
    if label.ndim != 2:
        raise ValueError(f"label must be HxW, got shape {label.shape}")
    lab = np.ascontiguousarray(label, dtype=np.uint8)
    classes = np.unique(lab)
    classes = classes[classes != ignore_id]
    if num_classes is not None:
        classes = classes[classes < num_classes]
    out = np.full(lab.shape, ignore_id, np.uint8)
    if classes.size == 0:
        return out
    if radius <= 0:
        out[lab != ignore_id] = 0
        return out
    kernel = disk(radius)
    # how many different valid labels lie within the radius of each pixel
    count = np.zeros(lab.shape, np.uint8)
    for c in classes:
        count += cv2.dilate((lab == c).view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    # valid pixel: its own label is among them, so a different one means count >= 2; ignore pixel: likewise
    out[count >= 1] = 0
    out[count >= 2] = 1
    return out


__all__ = ["boundary_targets", "disk"]
