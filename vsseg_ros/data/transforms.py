"""Training augmentation for (RGB uint8 image, uint8 label) pairs; numpy and OpenCV only.

Every transform is ``t(image, label, rng) -> (image, label)`` with ``rng`` a ``numpy.random.Generator``, so a
draw is reproducible from its seed. Labels use 255 for ignore; padding added by a crop is ignore.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from vsseg_ros.core.classes import IGNORE_ID

Pair = tuple[np.ndarray, np.ndarray]
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair]


def random_scale(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, scale_range: Sequence[float] = (0.5, 2.0)
) -> Pair:
    """Resize both by one factor drawn uniformly from ``scale_range`` (image bilinear, label nearest)."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    s = rng.uniform(lo, hi) if hi > lo else lo
    if abs(s - 1.0) < 1e-6:
        return image, label
    h, w = label.shape[:2]
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
    return (
        cv2.resize(image, (nw, nh), interpolation=interp),
        cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST),
    )


def random_crop(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    size: Sequence[int],
    image_fill: Sequence[int] = (124, 116, 104),
    ignore_id: int = IGNORE_ID,
) -> Pair:
    """A ``size = (height, width)`` window at a random place; a side shorter than the window is padded
    (image with ``image_fill``, about the ImageNet mean, label with ``ignore_id``) at a random offset."""
    ch, cw = int(size[0]), int(size[1])
    h, w = label.shape[:2]
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        image = cv2.copyMakeBorder(
            image, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=tuple(int(v) for v in image_fill)
        )
        label = cv2.copyMakeBorder(label, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=ignore_id)
        h, w = label.shape[:2]
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]


def random_hflip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> Pair:
    if rng.random() < p:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def photometric_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.03,
) -> np.ndarray:
    """Brightness, contrast and saturation factors in ``[1 - x, 1 + x]`` and a hue shift of up to ``hue``
    of the colour circle, applied in a random order. uint8 RGB in and out."""
    img = image.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and brightness > 0:
            img *= rng.uniform(1 - brightness, 1 + brightness)
        elif op == 1 and contrast > 0:
            mean = float((img @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
            f = rng.uniform(1 - contrast, 1 + contrast)
            img = (img - mean) * f + mean
        elif op == 2 and saturation > 0:
            gray = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            f = rng.uniform(1 - saturation, 1 + saturation)
            img = (img - gray) * f + gray
        elif op == 3 and hue > 0:
            shift = rng.uniform(-hue, hue)
            if abs(shift) * 180 >= 0.5:
                hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
                hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(round(shift * 180))) % 180).astype(np.uint8)
                img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


@dataclass
class TrainAugment:
    """Random scale -> random crop (label padded with ignore) -> horizontal flip -> photometric jitter."""

    crop_size: tuple[int, int] = (288, 384)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.03
    jitter_p: float = 0.8
    ignore_id: int = IGNORE_ID

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: Optional[np.random.Generator] = None) -> Pair:
        rng = rng if rng is not None else np.random.default_rng()
        if image.shape[:2] != label.shape[:2]:
            raise ValueError(f"image {image.shape[:2]} and label {label.shape[:2]} differ in size")
        image, label = random_scale(image, label, rng, self.scale_range)
        image, label = random_crop(image, label, rng, self.crop_size, ignore_id=self.ignore_id)
        image, label = random_hflip(image, label, rng, self.hflip)
        if self.jitter_p > 0 and rng.random() < self.jitter_p:
            image = photometric_jitter(image, rng, self.brightness, self.contrast, self.saturation, self.hue)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


__all__ = ["TrainAugment", "Transform", "random_scale", "random_crop", "random_hflip", "photometric_jitter"]
