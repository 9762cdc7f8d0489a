"""Dense optical flow between consecutive frames (OpenCV's DIS) and its conversion to a network input.

:class:`DISFlow` wraps ``cv2.DISOpticalFlow``: Dense Inverse Search, a CPU flow method fast enough to run once per
camera frame. ``DISFlow(preset)(prev_gray, gray)`` returns the flow from ``prev_gray`` to ``gray`` in pixels,
defined on the grid of ``prev_gray`` (``prev_gray[y, x]`` ~ ``gray[y + v, x + u]`` with ``(u, v) = flow[y, x]``),
OpenCV's convention. With ``scale < 1`` the flow is computed on downscaled images and brought back to the input
size (vectors multiplied by ``1 / scale``): much cheaper, and the flow path sees it at stride 8 anyway.

:func:`flow_to_tensor` turns one or more flows into the flow path's input: resized to the network input size with
the vectors multiplied by the resize factors (so they are displacements in network-input pixels), then divided
by :data:`FLOW_NORM`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: DIS presets by name (OpenCV's constants): finer pyramid levels / more iterations from left to right
PRESETS = ("ultrafast", "fast", "medium")

#: flow_to_tensor divides displacements (in network-input pixels) by this: one unit = one stride-8 cell of the
#: segmentation network's output, so the flow path sees motions of a few cells as values of order 1.
FLOW_NORM = 8.0


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """An RGB ``uint8`` image (H, W, 3) -> its grey image (H, W) ``uint8`` (what DIS works on).

    A grey image (H, W) or (H, W, 1) ``uint8`` is returned as (H, W) unchanged.
    """
    import cv2

    image = np.asarray(rgb)
    if image.dtype != np.uint8:
        raise ValueError(f"to_gray needs a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"to_gray needs an (H, W, 3) RGB or (H, W) grey image, got shape {image.shape}")


class DISFlow:
    """Optical flow from one grey ``uint8`` frame to the next with OpenCV's DIS.

    ``preset``: "ultrafast", "fast" or "medium" (OpenCV's presets; see the README for their cost and quality).
    ``scale``: in (0, 1]; the images are resized by this factor (area interpolation) before DIS runs and the
    flow is resized back to the input size, its vectors divided by ``scale``.

    One instance holds one OpenCV object: do not call it from two threads at once.
    """

    def __init__(self, preset: str = "medium", scale: float = 1.0) -> None:
        import cv2

        name = str(preset).lower()
        if name not in PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; accepted: {', '.join(PRESETS)}")
        scale = float(scale)
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"DIS scale must be in (0, 1], got {scale}")
        self.preset = name
        self.scale = scale
        self._dis = cv2.DISOpticalFlow.create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{name.upper()}"))

    def _calc(self, prev_gray: np.ndarray, gray: np.ndarray) -> np.ndarray:
        # flow=None: OpenCV allocates the output; its stubs declare the argument as an array
        flow: np.ndarray = self._dis.calc(prev_gray, gray, None)  # type: ignore[call-overload]
        return flow

    def __repr__(self) -> str:
        return f"DISFlow(preset={self.preset!r}, scale={self.scale})"

    def __call__(self, prev_gray: np.ndarray, gray: np.ndarray) -> np.ndarray:
        """Flow (H, W, 2) ``float32`` from ``prev_gray`` to ``gray``, in pixels of the input (u = x, v = y)."""
        import cv2

        prev_gray = _check_gray(prev_gray, "prev_gray")
        gray = _check_gray(gray, "gray")
        if prev_gray.shape != gray.shape:
            raise ValueError(f"DIS needs two images of the same size, got {prev_gray.shape} and {gray.shape}")
        h, w = gray.shape
        if self.scale == 1.0:
            return self._calc(prev_gray, gray)
        sw, sh = max(1, round(w * self.scale)), max(1, round(h * self.scale))
        small = self._calc(
            cv2.resize(prev_gray, (sw, sh), interpolation=cv2.INTER_AREA),
            cv2.resize(gray, (sw, sh), interpolation=cv2.INTER_AREA),
        )
        flow: np.ndarray = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= w / sw
        flow[..., 1] *= h / sh
        return flow


def _check_gray(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"DIS needs uint8 grey images; {name} has dtype {image.dtype} (use to_gray on RGB uint8)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2:
        raise ValueError(f"DIS needs (H, W) grey images; {name} has shape {image.shape} (use to_gray on RGB)")
    if min(image.shape) < 2:
        raise ValueError(f"{name} is too small for optical flow: {image.shape}")
    return np.ascontiguousarray(image)


def flow_to_tensor(flow: Union[np.ndarray, Sequence[np.ndarray]], size: Optional[tuple[int, int]] = None) -> Tensor:
    """One flow (H, W, 2), a batch (N, H, W, 2) or a list of equally sized (H, W, 2) flows -> the flow path's
    input, a ``float32`` tensor (N, 2, h, w).

    ``size``: the network input size (h, w); None keeps (H, W). The field is resized bilinearly and the x / y
    components are multiplied by w / W and h / H (a displacement of d input pixels is d * w / W network pixels),
    then everything is divided by :data:`FLOW_NORM`.
    """
    if isinstance(flow, np.ndarray):
        batch = flow[None] if flow.ndim == 3 else flow
    else:
        flows = [np.asarray(f) for f in flow]
        if not flows:
            raise ValueError("flow_to_tensor got an empty list of flows")
        shapes = {f.shape for f in flows}
        if len(shapes) != 1:
            raise ValueError(f"flow_to_tensor needs flows of one size, got {sorted(shapes)}")
        batch = np.stack(flows)
    if batch.ndim != 4 or batch.shape[-1] != 2:
        raise ValueError(f"a flow must be (H, W, 2) or (N, H, W, 2) (u, v per pixel), got shape {batch.shape}")
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
    in_h, in_w = x.shape[-2:]
    if size is not None:
        h, w = int(size[0]), int(size[1])
        if h < 1 or w < 1:
            raise ValueError(f"flow_to_tensor size must be (h, w) with positive values, got {size}")
        if (h, w) != (in_h, in_w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            factors = torch.tensor([w / in_w, h / in_h], dtype=x.dtype).view(1, 2, 1, 1)
            x = x * factors
    return (x / FLOW_NORM).contiguous()


__all__ = ["DISFlow", "FLOW_NORM", "PRESETS", "flow_to_tensor", "to_gray"]
