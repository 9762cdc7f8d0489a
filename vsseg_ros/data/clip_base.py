"""What every training clip dataset shares: a key to its random draw (deterministic given ``(index, seed)``,
per epoch or per draw seed), the target frame, the scale / crop / flip geometry, the colour jitter shared by a
clip's frames, the warp to the crop and the output dict. The datasets themselves are in
:mod:`vsseg_ros.data.clips` (real neighbours) and :mod:`vsseg_ros.data.clip_synthesis` (clips made from stills).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np

from vsseg_ros.core.classes import IGNORE_ID
from vsseg_ros.data.base import LabelledDataset
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


class ClipDataset:
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
