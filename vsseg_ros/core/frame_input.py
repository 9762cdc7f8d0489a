"""The frame into the network: check it is an RGB uint8 image, resize it to the network size and normalise it into
a reused input buffer zero-padded to a multiple of :data:`PAD_MULTIPLE` (:class:`FramePreparer`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

#: the network input is zero-padded (after normalisation) to a multiple of this
PAD_MULTIPLE = 32

try:  # OpenCV resizes uint8 images much faster than torch; torch is the fallback
    import cv2 as _cv2
except ImportError:  # pragma: no cover - opencv is a dependency, but core must not need it
    _cv2 = None  # type: ignore[assignment]  # None says OpenCV is not installed


def check_image(image: Any) -> tuple[int, int]:
    """``(H, W)`` of an HxWx3 uint8 RGB frame; ValueError saying what is wrong otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"frame.image must be an HxWx3 uint8 RGB array, got {desc}")
    H, W = image.shape[:2]
    if H < 1 or W < 1:
        raise ValueError(f"frame.image is empty ({H}x{W})")
    return H, W


def padded_size(h: int, w: int) -> tuple[int, int]:
    """The input buffer size for a network size ``h x w``: both rounded up to :data:`PAD_MULTIPLE`."""
    return -(-h // PAD_MULTIPLE) * PAD_MULTIPLE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE


class FramePreparer:
    """Resize (to ``input_size``; None keeps the frame's size) and normalise a frame into a reused
    ``(1, 3, hp, wp)`` buffer, zero-padded to a multiple of :data:`PAD_MULTIPLE` (zero = the mean colour
    after normalising). The returned buffer is overwritten by the next call."""

    def __init__(
        self,
        input_size: Optional[tuple[int, int]],
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        channels_last: bool,
    ) -> None:
        self.input_size = input_size
        self.device = device
        self.channels_last = channels_last
        # x * scale + shift == (x / 255 - mean) / std
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(3, 1, 1)
        self._shift = torch.tensor([-m / s for m, s in zip(mean, std)], device=device).view(3, 1, 1)
        self._key: Optional[tuple[int, int]] = None
        self._buf: Optional[Tensor] = None
        self._tiled: Optional[tuple[Tensor, Tensor]] = None  # scale, shift tiled along a pixel row (R, G, B, R, ...)

    def network_size(self, H: int, W: int) -> tuple[int, int]:
        """The (height, width) a frame of size HxW is resized to before padding."""
        return self.input_size if self.input_size is not None else (H, W)

    def _buffer(self, h: int, w: int) -> Tensor:
        if self._key != (h, w) or self._buf is None:
            buf = torch.zeros(1, 3, *padded_size(h, w), device=self.device)
            if self.channels_last:
                buf = buf.contiguous(memory_format=torch.channels_last)
            self._key, self._buf = (h, w), buf
            self._tiled = (self._scale.view(3).repeat(w), self._shift.view(3).repeat(w))
        return self._buf

    def __call__(self, image: np.ndarray, H: int, W: int) -> tuple[Tensor, int, int]:
        """``(buffer, h, w)``: the network input and the size of the image region inside it."""
        h, w = self.network_size(H, W)
        buf = self._buffer(h, w)
        region = buf[0, :, :h, :w]  # the padding around it stays 0
        image = np.ascontiguousarray(image)  # no copy for the usual contiguous frame
        if self.device.type == "cpu":
            if (h, w) != (H, W) and _cv2 is not None:
                image = _cv2.resize(image, (w, h), interpolation=_cv2.INTER_LINEAR)
            if self.channels_last and image.shape[:2] == (h, w):
                # the region's pixel rows are contiguous R, G, B, R, ... runs in a channels-last buffer, as in
                # the image: normalising whole rows against tiled scale/shift rows vectorises (0.12 against
                # 0.88 ms per 360x480 frame when broadcasting a per-channel (3, 1, 1) over 3-wide pixels)
                rows = buf[0].permute(1, 2, 0)[:h, :w].view(h, w * 3)  # a view (view() never copies)
                assert self._tiled is not None  # set with the buffer
                scale, shift = self._tiled
                rows.copy_(torch.from_numpy(image).view(h, w * 3))
                rows.mul_(scale).add_(shift)
                return buf, h, w
            src = torch.from_numpy(image).permute(2, 0, 1)
            if src.shape[1:] != (h, w):  # no OpenCV: resize with torch
                src = torch.nn.functional.interpolate(
                    src[None].float(), size=(h, w), mode="bilinear", align_corners=False
                )[0]
        else:
            src = torch.from_numpy(image).to(self.device)
            src = src.permute(2, 0, 1)
            if (h, w) != (H, W):
                src = torch.nn.functional.interpolate(
                    src[None].float(), size=(h, w), mode="bilinear", align_corners=False
                )[0]
        region.copy_(src)
        region.mul_(self._scale).add_(self._shift)
        return buf, h, w
