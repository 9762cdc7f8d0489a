"""Training clips synthesised from one labelled still (CamVid's training stills are 1 Hz with no labelled
neighbours): the target frame *is* the still (after the shared augmentation), so its label is exact; the other
frames look at the same scene through a camera that moves smoothly (a homography per frame whose translation,
rotation, zoom and perspective follow a constant velocity plus a small acceleration), with colour that drifts
away from the target's, motion blur along the camera motion, sensor noise, polygon occluders that move across
the clip and, optionally, transient blotches. Occluders are drawn on the target frame too; the label under them
is ignore (255).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np

from vsseg_ros.core.classes import IGNORE_ID
from vsseg_ros.data.base import DecodedPairs, LabelledDataset
from vsseg_ros.data.clip_base import ClipDataset, Key


def _matrix(tx: float, ty: float, angle: float, log_zoom: float, px: float, py: float) -> np.ndarray:
    """Translation . rotation . zoom . perspective, in coordinates centred on the frame and scaled to [-1, 1]."""
    c, s = math.cos(angle), math.sin(angle)
    z = math.exp(log_zoom)
    a = np.array([[z * c, -z * s, tx], [z * s, z * c, ty], [0.0, 0.0, 1.0]])
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [px, py, 1.0]])
    m: np.ndarray = a @ p
    return m


def _line_kernel(dx: float, dy: float) -> Optional[np.ndarray]:
    """A normalised motion-blur kernel along (dx, dy) pixels; None when shorter than a pixel."""
    import cv2

    length = math.hypot(dx, dy)
    if length < 1.0:
        return None
    k = int(math.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    ux, uy = dx / 2, dy / 2
    scale = 16  # sub-pixel end points (cv2.line shift=4)
    cv2.line(
        kernel,
        (int(round((c - ux) * scale)), int(round((c - uy) * scale))),
        (int(round((c + ux) * scale)), int(round((c + uy) * scale))),
        1.0,
        1,
        cv2.LINE_AA,
        shift=4,
    )
    total = float(kernel.sum())
    return kernel / total if total > 0 else None


_GREY = np.array([0.299, 0.587, 0.114])


def _colour_drift(image: np.ndarray, gains: np.ndarray, contrast: float, saturation: float) -> np.ndarray:
    """Per-channel gains, then contrast about the mean grey level, then saturation about each pixel's grey:
    all linear, so one 3x4 colour transform (uint8 in and out, saturating)."""
    import cv2

    d = np.diag(np.asarray(gains, np.float64))
    mean_grey = float(_GREY @ d @ np.asarray(cv2.mean(image)[:3]))
    s = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _GREY)
    m = np.concatenate([contrast * s @ d, np.full((3, 1), (1.0 - contrast) * mean_grey)], axis=1)
    return cv2.transform(image, m)


class StillClipDataset(ClipDataset):
    """T-frame clips synthesised from labelled stills (see the module doc); a ``torch.utils.data.Dataset``.

    Shared augmentation (every frame): ``scale_range``, ``hflip`` (probability), ``jitter`` (probability of a
    colour jitter with ``brightness``, ``contrast``, ``saturation``, ``hue`` as in :class:`TrainAugment`).
    Camera motion per frame, each drawn uniformly in +-the value: ``shift`` (translation, fraction of the longer
    side), ``rotate`` (degrees), ``zoom`` (log scale), ``perspective`` (projective terms in centred [-1, 1]
    coordinates); ``accel`` is the largest acceleration as a fraction of those ranges, per frame.
    ``drift``: per-frame colour drift (log gain of brightness, contrast, saturation and each channel).
    ``blur``: probability that a clip has motion blur (``exposure`` in [0.3, 1] of the frame-to-frame motion);
    ``noise``: largest sensor-noise sigma (grey levels); ``occluders``: probability of 1..``max_occluders``
    moving polygons. Blur, noise and drift leave the target frame untouched.
    """

    def __init__(
        self,
        data: LabelledDataset,
        frames: int = 3,
        target: Union[str, int] = "last",
        size: Sequence[int] = (288, 384),
        seed: int = 0,
        *,
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: float = 0.5,
        jitter: float = 0.8,
        brightness: float = 0.25,
        contrast: float = 0.25,
        saturation: float = 0.25,
        hue: float = 0.03,
        shift: float = 0.02,
        rotate: float = 1.0,
        zoom: float = 0.02,
        perspective: float = 0.01,
        accel: float = 0.25,
        drift: float = 0.02,
        blur: float = 0.3,
        noise: float = 3.0,
        occluders: float = 0.3,
        max_occluders: int = 2,
        target_degrade: float = 0.0,
        transient: float = 0.0,
        cache: bool = True,
    ) -> None:
        super().__init__(
            data, frames, target, size, seed, scale_range, hflip, jitter, brightness, contrast, saturation, hue
        )
        for name, v in (
            ("shift", shift),
            ("rotate", rotate),
            ("zoom", zoom),
            ("perspective", perspective),
            ("accel", accel),
            ("drift", drift),
            ("noise", noise),
        ):
            if float(v) < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        for name, v in (("blur", blur), ("occluders", occluders), ("hflip", hflip), ("jitter", jitter)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {v}")
        self.shift, self.rotate, self.zoom = float(shift), float(rotate), float(zoom)
        self.perspective, self.accel, self.drift = float(perspective), float(accel), float(drift)
        self.blur, self.noise = float(blur), float(noise)
        self.occluders, self.max_occluders = float(occluders), max(1, int(max_occluders))
        # Temporal fusion only pays off where a frame's neighbours know more than the frame itself: with
        # probability target_degrade the target also gets the blur and noise, and each frame independently gets
        # transient blotches (glare, dirt, dropouts) with probability transient; the label under them is kept
        # (the scene is still there), so looking at the other frames is the way to get those pixels right.
        if not (0.0 <= float(target_degrade) <= 1.0 and 0.0 <= float(transient) <= 1.0):
            raise ValueError(
                f"target_degrade and transient are probabilities in [0, 1], got {target_degrade}, {transient}"
            )
        self.target_degrade, self.transient = float(target_degrade), float(transient)
        self.pairs = DecodedPairs(data, keep=cache)

    def _source(self, key: Key) -> tuple[int, np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
        index, rng = self._rng(key)
        image, label = self.pairs[index]
        scale, flip, t = self._geometry(label.shape[:2], rng)
        jseed = self._jitter_seed(rng)
        src = self._apply_jitter(self._resize(image, scale, flip), jseed)
        lbl = self._resize(label, scale, flip, nearest=True)
        return index, rng, src, lbl, t

    def still(self, key: Key) -> tuple[np.ndarray, np.ndarray]:
        """The augmented still of draw ``key`` (h x w x 3 RGB, h x w label): the clip's target frame and label
        before occluders."""
        _, _, src, lbl, t = self._source(key)
        return self._warp(src, t), self._warp(lbl, t, label=True)

    def motion(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One 3x3 matrix per frame: target-frame pixel coordinates seen at each output pixel (identity at the
        target)."""
        h, w = self.size
        half = max(h, w) / 2.0
        # per-frame velocities in centred coordinates (1 = half the longer side)
        vmax = np.array(
            [2 * self.shift, 2 * self.shift, math.radians(self.rotate), self.zoom, self.perspective, self.perspective]
        )
        v = rng.uniform(-1.0, 1.0, 6) * vmax
        a = rng.uniform(-1.0, 1.0, 6) * vmax * self.accel
        to_c = np.array([[1 / half, 0, -w / 2 / half], [0, 1 / half, -h / 2 / half], [0, 0, 1.0]])
        from_c = np.linalg.inv(to_c)
        out = []
        for k in self.offsets:
            p = v * k + 0.5 * a * k * k
            out.append(from_c @ _matrix(*p) @ to_c)
        return out

    def __getitem__(self, key: Key) -> dict[str, Any]:
        import cv2

        index, rng, src, lbl, t = self._source(key)
        h, w = self.size
        motions = self.motion(rng)
        label = self._warp(lbl, t, label=True)
        frames = [self._warp(src, t @ m) if k != 0 else self._warp(src, t) for k, m in zip(self.offsets, motions)]

        # colour drift away from the target: brightness, contrast, saturation, per channel (log gains per frame)
        rates = rng.uniform(-1.0, 1.0, 6) * self.drift
        # blur and noise
        exposure = float(rng.uniform(0.3, 1.0)) if rng.random() < self.blur else 0.0
        sigma = float(rng.uniform(0.0, self.noise)) if self.noise > 0 else 0.0
        noise_seed = int(rng.integers(0, 2**63))
        degrade_target = self.target_degrade > 0 and rng.random() < self.target_degrade
        # occluders: polygons with a start position, a velocity and a spin (pixels and radians per frame)
        polys = []
        if rng.random() < self.occluders:
            for _ in range(int(rng.integers(1, self.max_occluders + 1))):
                n = int(rng.integers(3, 8))
                angles = np.sort(rng.uniform(0, 2 * math.pi, n))
                radius = rng.uniform(0.05, 0.2) * min(h, w) * rng.uniform(0.6, 1.0, n)
                centre = rng.uniform([0, 0], [w, h])
                speed = rng.uniform(-0.05, 0.05, 2) * max(h, w)
                spin = float(rng.uniform(-0.1, 0.1))
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                polys.append((angles, radius, centre, speed, spin, colour))

        centre = np.array([w / 2.0, h / 2.0, 1.0])
        pts = [m @ centre for m in motions]
        pts = [p[:2] / p[2] for p in pts]
        for i, k in enumerate(self.offsets):
            img = frames[i]
            if k != 0 and self.drift > 0:
                img = _colour_drift(
                    img, np.exp(rates[0] * k + rates[3:6] * k), math.exp(rates[1] * k), math.exp(rates[2] * k)
                )
            occluded = np.zeros((h, w), np.uint8) if polys and k == 0 else None
            for angles, radius, c0, speed, spin, colour in polys:
                c = c0 + speed * k
                a = angles + spin * k
                poly = np.stack([c[0] + radius * np.cos(a), c[1] + radius * np.sin(a)], 1)
                pts = [np.round(poly * 16).astype(np.int32)]  # one polygon, 1/16 px (shift=4)
                cv2.fillPoly(img, pts, colour, cv2.LINE_AA, shift=4)
                if occluded is not None:  # the same anti-aliased fill, so its soft edge counts as covered too
                    cv2.fillPoly(occluded, pts, 255, cv2.LINE_AA, shift=4)
            if k == 0 and occluded is not None:
                label[occluded > 0] = IGNORE_ID
            if self.transient > 0 and rng.random() < self.transient:
                img = _blotches(img, rng)
            if k != 0 or degrade_target:
                if exposure > 0:
                    j = i + 1 if i + 1 < len(pts) else i - 1
                    d = (pts[i] - pts[j]) * exposure if len(pts) > 1 else np.zeros(2)
                    kernel = _line_kernel(float(d[0]), float(d[1]))
                    if kernel is not None:
                        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
                if sigma > 0:
                    grain = np.random.default_rng([noise_seed, i]).standard_normal(img.shape, np.float32)
                    grain *= sigma
                    grain += img
                    img = np.clip(grain, 0, 255, out=grain).astype(np.uint8)
            frames[i] = img
        return self._pack(frames, label, index)


def _blotches(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-3 ellipses of glare (washed out), dirt (dark) or a flat colour at random places of one frame."""
    import cv2

    h, w = img.shape[:2]
    out = img.copy()
    for _ in range(int(rng.integers(1, 4))):
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.uniform(0.04, 0.15) * w), int(rng.uniform(0.04, 0.15) * h))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
        kind = rng.integers(0, 3)
        if kind == 0:
            fill = np.full_like(out, 255)
        elif kind == 1:
            fill = np.zeros_like(out)
        else:
            fill = np.empty_like(out)
            fill[:] = rng.integers(0, 256, 3, dtype=np.uint8)
        a = (mask.astype(np.float32) / 255.0 * float(rng.uniform(0.6, 1.0)))[..., None]
        out = (out * (1.0 - a) + fill * a).astype(np.uint8)
    return out
