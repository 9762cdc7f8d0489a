"""Training clips of T frames with the label on one (target) frame.

CamVid's training stills are 1 Hz with no labelled neighbours, so :class:`StillClipDataset` makes a clip from
one still: the target frame *is* the still (after the usual scale / crop / flip / colour augmentation, shared by
every frame), so its label is exact; the other frames look at the same scene through a camera that moves
smoothly (a homography per frame whose translation, rotation, zoom and perspective follow a constant velocity
plus a small acceleration, so consecutive frames differ by about the same amount), with colour that drifts
smoothly away from the target's, motion blur along the camera motion, sensor noise, and polygon occluders that
move across the clip. Occluders are drawn on the target frame too; the label under them is ignore (255).

Where real neighbours exist (Cityscapes ``leftImg8bit_sequence``, a folder's ``frames/``, CamVid val's
consecutive labelled frames) :class:`RealClipDataset` reads them and applies only the shared augmentation.

Both return ``{"frames": (T, 3, h, w) uint8 RGB, "label": (h, w) int64 (255 = ignore), "target": int,
"index": int}`` and are deterministic given ``(index, seed)``: ``dataset[i]`` draws from ``(seed, epoch, i)``
(:meth:`set_epoch` changes the draw per epoch), ``dataset[(i, s)]`` from ``(seed, s)`` (the per-draw seeds the
trainer's ``SeedStream`` hands out).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from vsseg_ros.core.classes import IGNORE_ID
from vsseg_ros.data.base import DatasetError, DecodedPairs, LabelledDataset
from vsseg_ros.data.transforms import photometric_jitter

Key = Union[int, tuple[int, int], list[int]]


def target_index(frames: int, target: Union[str, int]) -> int:
    """``"last"`` -> T-1, ``"center"`` -> T//2 (the middle frame), an int -> itself (checked to be in range)."""
    if isinstance(target, str):
        if target == "last":
            return frames - 1
        if target in ("center", "centre"):
            return frames // 2
        raise ValueError(f"target must be 'last', 'center' or a frame index, got {target!r}")
    t = int(target)
    if not 0 <= t < frames:
        raise ValueError(f"target index {t} is outside a clip of {frames} frames")
    return t


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


class _ClipDataset:
    """What both clip datasets share: keys -> random draws, the crop geometry, colour jitter and the output."""

    def __getitem__(self, key: Key) -> dict[str, Any]:  # each dataset draws its clips its own way
        raise NotImplementedError

    def __init__(
        self,
        data: LabelledDataset,
        frames: int = 3,
        target: Union[str, int] = "last",
        size: Sequence[int] = (288, 384),
        seed: int = 0,
        scale_range: Sequence[float] = (0.5, 2.0),
        hflip: float = 0.5,
        jitter: float = 0.8,
        brightness: float = 0.25,
        contrast: float = 0.25,
        saturation: float = 0.25,
        hue: float = 0.03,
    ) -> None:
        if int(frames) < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if len(size) != 2 or int(size[0]) < 1 or int(size[1]) < 1:
            raise ValueError(f"size must be (height, width), got {size!r}")
        if len(scale_range) != 2 or not 0 < float(scale_range[0]) <= float(scale_range[1]):
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range!r}")
        self.data = data
        self.frames = int(frames)
        self.target = target_index(self.frames, target)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.hflip = float(hflip)
        self.jitter = float(jitter)
        self.jitter_args = (float(brightness), float(contrast), float(saturation), float(hue))
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        """Integer keys draw from ``(seed, epoch, index)``: a new epoch gives new clips of the same stills."""
        self.epoch = int(epoch)

    @property
    def offsets(self) -> list[int]:
        """Frame offsets relative to the target: ``[-2, -1, 0]`` for 3 frames with the target last."""
        return [t - self.target for t in range(self.frames)]

    def _rng(self, key: Key) -> tuple[int, np.random.Generator]:
        if isinstance(key, (tuple, list)):
            index, draw = int(key[0]), int(key[1])
            entropy = [self.seed, 1, draw & 0xFFFFFFFFFFFF, index]
        else:
            index = int(key)
            entropy = [self.seed, 0, self.epoch, index]
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} samples")
        return index, np.random.default_rng(entropy)

    def _geometry(self, shape: tuple[int, int], rng: np.random.Generator) -> tuple[float, bool, np.ndarray]:
        """(scale, flip, T): resize the still by ``scale``, flip it, then output pixel p comes from source
        pixel T p (T a translation; a crop larger than the scaled still reads outside it: reflected image,
        ignore label)."""
        lo, hi = self.scale_range
        scale = float(rng.uniform(lo, hi)) if hi > lo else lo
        flip = bool(rng.random() < self.hflip)
        h, w = max(1, int(round(shape[0] * scale))), max(1, int(round(shape[1] * scale)))
        ch, cw = self.size
        y0 = int(rng.integers(min(0, h - ch), max(0, h - ch) + 1))
        x0 = int(rng.integers(min(0, w - cw), max(0, w - cw) + 1))
        return scale, flip, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])

    @staticmethod
    def _resize(image: np.ndarray, scale: float, flip: bool, nearest: bool = False) -> np.ndarray:
        import cv2

        if abs(scale - 1.0) > 1e-6:
            h, w = max(1, int(round(image.shape[0] * scale))), max(1, int(round(image.shape[1] * scale)))
            interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
            image = cv2.resize(image, (w, h), interpolation=interp)
        return np.ascontiguousarray(image[:, ::-1]) if flip else image

    def _jitter_seed(self, rng: np.random.Generator) -> Optional[int]:
        """A seed for the colour jitter shared by every frame of the clip (None: no jitter this draw)."""
        on = self.jitter > 0 and rng.random() < self.jitter
        seed = int(rng.integers(0, 2**63))
        return seed if on else None

    def _apply_jitter(self, image: np.ndarray, seed: Optional[int]) -> np.ndarray:
        if seed is None:
            return image
        return photometric_jitter(image, np.random.default_rng(seed), *self.jitter_args)

    def _warp(self, image: np.ndarray, m: np.ndarray, label: bool = False) -> np.ndarray:
        """Output pixel p <- ``image`` at m p (m: 3x3; affine m uses the cheaper affine warp)."""
        import cv2

        h, w = self.size
        flags = cv2.WARP_INVERSE_MAP | (cv2.INTER_NEAREST if label else cv2.INTER_LINEAR)
        mode = cv2.BORDER_CONSTANT if label else cv2.BORDER_REFLECT_101
        value = IGNORE_ID if label else 0  # a reflected border reads no value
        out: np.ndarray
        if abs(m[2, 0]) < 1e-12 and abs(m[2, 1]) < 1e-12 and abs(m[2, 2] - 1.0) < 1e-12:
            out = cv2.warpAffine(
                image, m[:2].astype(np.float64), (w, h), flags=flags, borderMode=mode, borderValue=value
            )
        else:
            out = cv2.warpPerspective(
                image, m.astype(np.float64), (w, h), flags=flags, borderMode=mode, borderValue=value
            )
        return out

    def _pack(self, frames: list[np.ndarray], label: np.ndarray, index: int) -> dict[str, Any]:
        import torch

        x = np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))
        return {
            "frames": torch.from_numpy(x),
            "label": torch.from_numpy(label.astype(np.int64)),
            "target": self.target,
            "index": index,
        }


class StillClipDataset(_ClipDataset):
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


class RealClipDataset(_ClipDataset):
    """T-frame clips of real consecutive frames around each labelled one (``data.neighbours``), with the shared
    augmentation (scale, crop, flip, colour jitter) applied identically to every frame.

    ``frame_step``: frames between clip frames in the dataset's numbering (CamVid val, every second frame
    labelled: 2). ``missing``: what to do with samples that lack a neighbour: ``"error"``
    (:class:`DatasetError` at construction, naming them), ``"skip"`` (leave them out) or ``"synthesize"``
    (a :class:`StillClipDataset` clip of them, with ``synth`` as its extra options).
    """

    def __init__(
        self,
        data: LabelledDataset,
        frames: int = 3,
        target: Union[str, int] = "last",
        size: Sequence[int] = (288, 384),
        seed: int = 0,
        *,
        frame_step: int = 1,
        missing: str = "error",
        synth: Optional[dict[str, Any]] = None,
        **augment: Any,
    ) -> None:
        super().__init__(data, frames, target, size, seed, **augment)
        if int(frame_step) < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        if missing not in ("error", "skip", "synthesize"):
            raise ValueError(f"missing must be 'error', 'skip' or 'synthesize', got {missing!r}")
        if not hasattr(data, "neighbours"):
            raise DatasetError(f"{type(data).__name__} has no neighbouring frames; use StillClipDataset")
        self.frame_step = int(frame_step)
        self.missing = missing
        steps = [o * self.frame_step for o in self.offsets]
        self.real = [data.has_neighbours(i, steps) for i in range(len(data))]
        lacking = [data[i].name for i, ok in enumerate(self.real) if not ok]
        if lacking and missing == "error":
            shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
            raise DatasetError(
                f"{len(lacking)} of {len(data)} samples lack a frame at offsets {steps}: {shown} "
                "(missing='skip' leaves them out, missing='synthesize' makes clips from the stills)"
            )
        self.indices = [i for i, ok in enumerate(self.real) if ok or missing == "synthesize"]
        if not self.indices:
            raise DatasetError(f"no sample of {data!r} has frames at offsets {steps}")
        self._synth: Optional[StillClipDataset] = None
        if lacking and missing == "synthesize":
            self._synth = StillClipDataset(data, frames, self.target, size, seed, **augment, **dict(synth or {}))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        index, rng = self._rng(key)
        sample = self.indices[index]
        if not self.real[sample]:
            assert self._synth is not None
            inner = (sample, int(key[1])) if isinstance(key, (tuple, list)) else sample
            self._synth.set_epoch(self.epoch)
            return {**self._synth[inner], "index": index}
        images = self.data.neighbours(sample, [o * self.frame_step for o in self.offsets])
        label = self.data.read_label(sample)
        for o, img in zip(self.offsets, images):
            if img.shape[:2] != label.shape[:2]:
                raise DatasetError(
                    f"frame at offset {o * self.frame_step:+d} from {self.data[sample].name} is "
                    f"{img.shape[1]}x{img.shape[0]} but its label is {label.shape[1]}x"
                    f"{label.shape[0]} (width x height); they must be the same size"
                )
        scale, flip, t = self._geometry(label.shape[:2], rng)
        jseed = self._jitter_seed(rng)
        frames = [self._warp(self._apply_jitter(self._resize(img, scale, flip), jseed), t) for img in images]
        label = self._warp(self._resize(label, scale, flip, nearest=True), t, label=True)
        return self._pack(frames, label, index)


def make_clips(
    data: LabelledDataset,
    frames: int = 3,
    target: Union[str, int] = "last",
    size: Sequence[int] = (288, 384),
    seed: int = 0,
    frame_step: int = 1,
    **options: Any,
) -> _ClipDataset:
    """Real clips where the data have neighbours (synthesised ones for the samples that lack them), else clips
    synthesised from the stills. ``options``: :class:`StillClipDataset` options (the shared augmentation ones
    apply to real clips too)."""
    shared = {
        k: options.pop(k)
        for k in ("scale_range", "hflip", "jitter", "brightness", "contrast", "saturation", "hue")
        if k in options
    }
    steps = [(t - target_index(frames, target)) * frame_step for t in range(frames)]
    if hasattr(data, "has_neighbours") and any(data.has_neighbours(i, steps) for i in range(len(data))):
        return RealClipDataset(
            data, frames, target, size, seed, frame_step=frame_step, missing="synthesize", synth=options, **shared
        )
    return StillClipDataset(data, frames, target, size, seed, **shared, **options)


def save_clip_preview(
    dataset: _ClipDataset, path: Union[str, Path], n: int = 4, seed: int = 0, max_width: int = 1600
) -> Path:
    """A contact sheet PNG: one row per clip (``n`` clips spread over the dataset, draw seeds from ``seed``),
    its frames left to right (target outlined in green) and the target's label in class colours on the right."""
    import cv2

    from vsseg_ros.core.visualize import write_png

    path = Path(path)
    if len(dataset) == 0:
        raise ValueError("empty dataset: nothing to preview")
    n = max(1, min(int(n), len(dataset)))
    picks = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    palette = dataset.data.class_map.palette()
    rows = []
    for r, i in enumerate(picks):
        item = dataset[(int(i), seed + r)]
        frames = item["frames"].numpy().transpose(0, 2, 3, 1)
        tiles = []
        for k, f in enumerate(frames):
            tile = np.ascontiguousarray(f)
            if k == item["target"]:
                cv2.rectangle(tile, (1, 1), (tile.shape[1] - 2, tile.shape[0] - 2), (40, 220, 40), 3)
            off = k - item["target"]
            cv2.putText(
                tile,
                "t" if off == 0 else f"t{off:+d}",
                (8, 24),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.7,
                (255, 255, 255),
                2,
                cv2.LINE_AA,
            )
            tiles.append(tile)
        tiles.append(palette[item["label"].numpy().astype(np.uint8)])
        gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
        row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
        rows.append(row)
        rows.append(np.full((4, row.shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows[:-1], axis=0)
    if sheet.shape[1] > max_width:
        f = max_width / sheet.shape[1]
        sheet = cv2.resize(sheet, (max_width, int(round(sheet.shape[0] * f))), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, sheet)


__all__ = ["RealClipDataset", "StillClipDataset", "make_clips", "save_clip_preview", "target_index"]
