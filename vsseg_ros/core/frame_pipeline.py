"""The steps every network-backed :class:`Segmenter` shares: the frame in, the maps out.

In: check the frame, resize it to the network size, normalise it into a reused zero-padded input buffer
(:class:`FramePreparer`). Out: bilinear upsampling of the low-resolution logits straight to the frame's own
size, argmax labels and, only if asked, max-softmax confidence and boundary probability (:class:`OutputMaps`).
:class:`NetworkSegmenter` holds what the per-frame and the temporal segmenter have in common (device,
precision, the inference copy of the model, the lock); they differ only in what runs between the two ends.

Large intermediate buffers are kept between frames of the same size; the arrays handed out are always fresh.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import parse_input_size
from vsseg_ros.core.device import PRECISION_NAMES, resolve_device, resolve_precision
from vsseg_ros.core.models.cache_keys import freeze_weights
from vsseg_ros.core.models.perframe import fold_batchnorm
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter

#: the network input is zero-padded (after normalisation) to a multiple of this
PAD_MULTIPLE = 32
#: ``input_size`` value meaning "the size in the model's config"
MODEL_INPUT_SIZE = "model"

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


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Any:
    """Torch's intra-op thread count set to ``n`` for the block (None: as it is), restored after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def extent_read(size: int, stride: int, grid: int) -> int:
    """How many of a map's ``grid`` rows (or columns) at ``stride`` the output maps of an image region
    ``size`` pixels high (wide) read: bilinear upsampling reaches one past the region's last; the rest of
    the map covers only the input's padding."""
    return min(grid, math.ceil(size / stride) + 1)


class _Interp:
    """Bilinear weights (align_corners=False) from ``in_size`` source pixels to ``out_size`` output pixels along
    one axis, at ``scale`` output pixels per source pixel; sources past ``in_used`` carry no weight (they only
    cover the input's padding) and are left out. Sources beyond the edge are clamped, as ``F.interpolate`` does.

    Kept as a dense ``(out_size, in_used)`` matrix, applied as a matrix product (fast on a CPU), while that
    matrix has at most :attr:`DENSE_ELEMENTS` elements; past that (a degenerate frame: a side far longer than
    the logit grid is across, such as 1 x 4,000,000) as its two taps per output pixel, applied as two gathers
    and a lerp, so its memory grows with the output, never with a side times the logit grid.
    """

    #: largest dense interpolation matrix kept (4 MB of float32); normal frames stay far below
    DENSE_ELEMENTS = 1 << 20

    def __init__(self, out_size: int, in_size: int, in_used: int, scale: float, device: torch.device) -> None:
        src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) / scale - 0.5).clamp_(min=0.0)
        i0 = src.floor().long().clamp_(max=in_size - 1)
        lam = src - i0
        i1 = (i0 + 1).clamp_(max=in_size - 1)
        # i0 always lies inside the used sources, i1 only past them where its weight is 0
        assert int(i0.max()) < in_used and not lam[i1 >= in_used].any()
        self.dense: Optional[Tensor] = None  # (out_size, in_used)
        self.dense_t: Optional[Tensor] = None  # (in_used, out_size), for products along the last axis
        if out_size * in_used <= self.DENSE_ELEMENTS:
            m = torch.zeros(out_size, in_used, dtype=torch.float64)
            rows = torch.arange(out_size)
            m.index_put_((rows, i0), 1.0 - lam, accumulate=True)
            m.index_put_((rows, i1.clamp(max=in_used - 1)), lam, accumulate=True)
            self.dense = m.float().to(device)
            self.dense_t = self.dense.t().contiguous()
        else:
            self.i0 = i0.to(device)
            self.i1 = i1.clamp_(max=in_used - 1).to(device)
            self.lam = lam.float().to(device)

    def rows(self, x: Tensor, r0: int, r1: int, out: Tensor) -> None:
        """Output rows r0..r1 along axis 1 of ``x`` (K, in_used, L) into ``out`` (K, r1 - r0, L)."""
        if self.dense is not None:
            torch.matmul(self.dense[r0:r1], x, out=out)
            return
        torch.index_select(x, 1, self.i0[r0:r1], out=out)
        out.lerp_(torch.index_select(x, 1, self.i1[r0:r1]), self.lam[r0:r1].view(1, -1, 1))

    def last(self, x: Tensor, out: Tensor) -> None:
        """Along the last axis: ``x`` (M, in_used) into ``out`` (M, out_size)."""
        if self.dense_t is not None:
            torch.mm(x, self.dense_t, out=out)
            return
        torch.index_select(x, 1, self.i0, out=out)
        out.lerp_(torch.index_select(x, 1, self.i1), self.lam.view(1, -1))


class _PostBuffers:
    """Interpolation matrices and scratch tensors for one (frame size, network size, logit size) pair.

    Upsampling is separable bilinear interpolation done as two matrix products (exactly
    ``F.interpolate(mode="bilinear", align_corners=False)`` with the frame/logit scale, but faster on CPU; a
    degenerate frame's long side uses gathers instead, see :class:`_Interp`),
    processed in bands of rows so the scratch memory stays bounded for large frames. The product over the
    shorter logit side runs at full output size, so it goes second: for a landscape frame the columns are
    interpolated first (once, at logit height), then each band's rows (at 360x480, 102 instead of 127
    million multiply-adds per frame for 11 classes).
    """

    #: upper bound on the elements of one band of upsampled logits (16 MB of float32)
    BAND_ELEMENTS = 1 << 22

    def __init__(self, key: tuple[int, ...], num_classes: int, stride: int, device: torch.device) -> None:
        H, W, h, w, hl, wl = key
        C = num_classes
        self.H, self.W, self.C = H, W, C
        # logit rows/cols that any output pixel reads (the rest only cover the padding)
        self.rows = extent_read(h, stride, hl)
        self.cols = extent_read(w, stride, wl)
        self.ry = _Interp(H, hl, self.rows, stride * H / h, device)  # rows: (rows,) -> (H,)
        self.rx = _Interp(W, wl, self.cols, stride * W / w, device)  # columns: (cols,) -> (W,)
        self.band = max(1, min(H, self.BAND_ELEMENTS // (C * W)))
        n = self.band
        rows, cols = self.rows, self.cols
        self.cols_first = rows * cols * W + H * rows * W < H * rows * cols + H * cols * W  # fewer products
        # columns first: the whole (C, rows, W) intermediate; rows first: one band's (C, n, cols)
        self.tmp = torch.empty(C * (rows * W if self.cols_first else n * cols), device=device)
        self.up = torch.empty(C * n * W, device=device)
        self.hit: Optional[Tensor] = None  # a second band, only when confidence is asked for
        self.max = torch.empty(n * W, device=device)
        self.rank = torch.empty(H, W, device=device)
        self.sum = torch.empty(H, W, device=device)
        # class c scores C - c where it attains the maximum: the largest score is the first maximal class
        self.scores = torch.arange(C, 0, -1, dtype=torch.float32, device=device).view(-1, 1, 1)

    def _prepared(self, x: Tensor, tmp: Optional[Tensor] = None) -> Tensor:
        """The used part of (K, hl, wl) logits; when columns go first, column-interpolated (K, rows, W), into
        ``tmp`` if given."""
        x = x[:, : self.rows, : self.cols].contiguous()
        if not self.cols_first:
            return x
        K = x.shape[0]
        out = (
            torch.empty(K, self.rows, self.W, device=x.device)
            if tmp is None
            else tmp[: K * self.rows * self.W].view(K, self.rows, self.W)
        )
        self.rx.last(x.view(K * self.rows, self.cols), out.view(K * self.rows, self.W))
        return out

    def _rows(self, x: Tensor, r0: int, r1: int, out: Tensor) -> None:
        """Output rows r0..r1 of a :meth:`_prepared` ``x`` into ``out`` (K, r1 - r0, W)."""
        if self.cols_first:
            self.ry.rows(x, r0, r1, out)
            return
        K, n = x.shape[0], r1 - r0
        size = K * n * self.cols  # rows first: self.tmp is the band's scratch
        t = (self.tmp[:size] if size <= self.tmp.numel() else torch.empty(size, device=x.device)).view(K, n, -1)
        self.ry.rows(x, r0, r1, t)
        self.rx.last(t.view(K * n, self.cols), out.view(K * n, self.W))

    def upsample(self, x: Tensor) -> Tensor:
        """(K, hl, wl) -> a new (K, H, W) tensor."""
        out = torch.empty(x.shape[0], self.H, self.W, device=x.device)
        self._rows(self._prepared(x), 0, self.H, out)
        return out

    def labels_and_confidence(self, logits: Tensor, confidence: bool) -> tuple[Tensor, Optional[Tensor]]:
        """Labels (first class with the largest upsampled logit, uint8) and, if asked, the max softmax,
        both as new (H, W) tensors. (``torch.max(dim)`` with indices is several times slower on CPU.)"""
        C, W = self.C, self.W
        x = self._prepared(logits, self.tmp)
        for r0 in range(0, self.H, self.band):
            r1 = min(self.H, r0 + self.band)
            n = r1 - r0
            up = self.up[: C * n * W].view(C, n, W)
            self._rows(x, r0, r1, up)
            mx = self.max[: n * W].view(n, W)
            torch.amax(up, 0, out=mx)
            # hit: 1.0 where a class attains the maximum, as float (a CPU writes a float compare several times
            # faster than a bool one: 0.45 vs 1.2 ms for 11x360x480); in place when up is not needed after
            if confidence:
                if self.hit is None:
                    self.hit = torch.empty_like(self.up)
                hit = torch.eq(up, mx, out=self.hit[: C * n * W].view(C, n, W))
                # max softmax = 1 / sum_c exp(l_c - max_c l), in place on the band; the clamp keeps exp()
                # out of denormals (slow on CPU) and changes the result by < 1e-34
                up.sub_(mx).clamp_(min=-80.0).exp_()
                torch.sum(up, 0, out=self.sum[r0:r1])
            else:
                hit = torch.eq(up, mx, out=up)
            torch.amax(hit.mul_(self.scores), 0, out=self.rank[r0:r1])
        # rank 0 only where no class equals the maximum (NaN logits): the clamp keeps labels valid
        labels = (C - self.rank).clamp_(max=C - 1).to(torch.uint8)
        return labels, (torch.reciprocal(self.sum) if confidence else None)


Maps = tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]


class OutputMaps:
    """Low-resolution network outputs -> (labels, confidence, boundary) arrays at the frame's size.

    ``stride``: the spatial stride of the logits relative to the padded network input (``net.stride``).
    Buffers are kept for the last (frame size, network size, logit size) seen.
    """

    def __init__(self, num_classes: int, stride: int, device: torch.device) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        self.num_classes = num_classes
        self.stride = stride
        self.device = device
        self._key: Optional[tuple[int, ...]] = None
        self._buffers: Optional[_PostBuffers] = None

    def _post_buffers(self, key: tuple[int, ...]) -> _PostBuffers:
        if self._key != key or self._buffers is None:
            self._buffers = None  # free the old buffers first
            self._buffers = _PostBuffers(key, self.num_classes, self.stride, self.device)
            self._key = key
        return self._buffers

    def _for(self, logits: Tensor, H: int, W: int, h: int, w: int) -> tuple[Tensor, _PostBuffers]:
        """``logits`` (1, C, hl, wl) as a contiguous fp32 (C, hl, wl), and the buffers for its sizes."""
        logits = logits[0].float().contiguous()
        return logits, self._post_buffers((H, W, h, w, *logits.shape[-2:]))

    def upsampled_logits(self, logits: Tensor, H: int, W: int, h: int, w: int) -> Tensor:
        """``logits`` (1, C, hl, wl) of an ``h x w`` region of a frame ``H x W`` -> a new (C, H, W) fp32 tensor,
        upsampled exactly as the label map is (for tools that need the class scores, e.g. softmax maps)."""
        logits, pb = self._for(logits, H, W, h, w)
        return pb.upsample(logits)

    def __call__(
        self, logits: Tensor, boundary: Optional[Tensor], H: int, W: int, h: int, w: int, request: OutputRequest
    ) -> Maps:
        """``logits`` (1, C, hl, wl) and ``boundary`` logits (1, 1, hl, wl) or None, computed from an ``h x w``
        image region of the padded input of a frame ``H x W``."""
        logits, pb = self._for(logits, H, W, h, w)
        labels, confidence = pb.labels_and_confidence(logits, bool(request.confidence))
        edge = None
        if request.boundary and boundary is not None:
            edge = pb.upsample(boundary[0].float())[0].sigmoid_()
        return (
            to_numpy(labels),
            None if confidence is None else to_numpy(confidence),
            None if edge is None else to_numpy(edge),
        )


def to_numpy(t: Tensor) -> np.ndarray:
    return t.cpu().numpy() if t.device.type != "cpu" else t.numpy()


def inference_copy(model: nn.Module, device: torch.device, channels_last: bool, fold_bn: bool) -> nn.Module:
    """A frozen eval-mode copy of ``model`` on ``device`` (the caller's module is left as it was)."""
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(net)
    net = net.to(device)
    if channels_last:  # the convolutional part only (attention modules hold 5-d positional encodings)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                # Module.to takes memory_format (torch's docs); its typed overloads leave it out
                m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    freeze_weights(net)  # nothing changes this copy's weights: caches need not check them every frame
    return net


@dataclass
class _Batch:
    """Frames of one network input size, prepared as one tensor: their indices, the input, the region size and
    the preprocessing time of the whole group."""

    members: list[int]
    x: Tensor
    h: int
    w: int
    prepare_ms: float


class NetworkSegmenter(Segmenter):
    """What the network segmenters share: argument checks, device and precision, the inference copy of the
    model (``self.net``: a torch module, or an exported network on ONNX Runtime / OpenVINO that answers the
    same calls), the frame preparer and output maps, and a lock so one frame runs at a time.

    ``input_size``: ``(height, width)`` frames are resized to; ``"model"`` (default) takes the model
    config's; None, 0 or (0, 0) keeps each frame's own size. ``mean``/``std`` (0-1 scale) default to the
    config's. ``precision`` fp16/bf16 runs the network under autocast. ``channels_last`` (default: on the
    CPU) and ``fold_bn`` (fold BatchNorm into the convolutions) only change speed. Subclasses implement
    :meth:`_push` (called under the lock with a checked frame).
    """

    def __init__(
        self,
        model: nn.Module,
        config: Any,
        num_classes: int,
        stride: int,
        class_map: ClassMap,
        model_id: str,
        device: Union[str, torch.device] = "cpu",
        precision: Union[str, torch.dtype] = "fp32",
        input_size: Any = MODEL_INPUT_SIZE,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        channels_last: Optional[bool] = None,
        fold_bn: bool = True,
    ) -> None:
        if class_map.num_classes != num_classes:
            raise ValueError(f"class map has {class_map.num_classes} classes but the model predicts {num_classes}")
        self.class_map = class_map
        self.model_id = model_id
        self._device = resolve_device(device)
        self._dtype = resolve_precision(precision, self._device)
        self.input_size: Optional[tuple[int, int]] = (
            config.input_size
            if isinstance(input_size, str) and input_size == MODEL_INPUT_SIZE
            else parse_input_size(input_size)
        )
        self.mean = tuple(float(v) for v in (config.mean if mean is None else mean))
        self.std = tuple(float(v) for v in (config.std if std is None else std))
        if len(self.mean) != 3 or len(self.std) != 3 or any(not s > 0 for s in self.std):
            raise ValueError(
                f"mean and std need 3 values each (R, G, B) and std > 0; got mean={self.mean}, std={self.std}"
            )
        self.channels_last = (self._device.type == "cpu") if channels_last is None else bool(channels_last)
        self.num_classes = num_classes
        # an exported network (vsseg_ros.runtimes.exported_net) runs as it is, on its own engine; pre- and
        # post-processing stay here, so every backend shares them
        self.net = (
            inference_copy(model, self._device, self.channels_last, fold_bn) if isinstance(model, nn.Module) else model
        )
        #: what runs the network: "torch", or the exported engine and its provider
        self.backend: str = getattr(self.net, "backend", "torch")
        #: torch threads for pre- and post-processing while an engine runs the network (None: torch's own)
        self.host_threads: Optional[int] = getattr(self.net, "host_threads", None)
        self.prepare = FramePreparer(self.input_size, self.mean, self.std, self._device, self.channels_last)
        self.output_maps = OutputMaps(num_classes, int(stride), self._device)
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def precision(self) -> str:
        return PRECISION_NAMES[self._dtype]

    def network_size(self, H: int, W: int) -> tuple[int, int]:
        """The (height, width) a frame of size HxW is resized to before padding."""
        return self.prepare.network_size(H, W)

    def push(self, frame: Frame, request: OutputRequest = OutputRequest()) -> Optional[SegmentationResult]:
        H, W = check_image(frame.image)
        with self._lock, torch_threads(self.host_threads):
            return self._push(frame, H, W, request)

    @abc.abstractmethod
    def _push(self, frame: Frame, H: int, W: int, request: OutputRequest) -> Optional[SegmentationResult]:
        """Segment a checked frame (the lock is held)."""

    @property
    def batches(self) -> bool:
        """Whether the network takes several frames in one call: torch modules do; exported graphs are exported
        with a batch of 1, so their frames go one at a time (an engine that batches sets ``net.batches``)."""
        return isinstance(self.net, nn.Module) or bool(getattr(self.net, "batches", False))

    def push_batch(
        self, frames: Sequence[Frame], request: OutputRequest = OutputRequest()
    ) -> list[Optional[SegmentationResult]]:
        sizes = [check_image(frame.image) for frame in frames]  # every frame checked before any runs
        with self._lock, torch_threads(self.host_threads):
            if len(frames) < 2 or not self.batches:
                return [self._push(frame, H, W, request) for frame, (H, W) in zip(frames, sizes)]
            return self._push_batch(list(frames), sizes, request)

    def _push_batch(
        self, frames: list[Frame], sizes: list[tuple[int, int]], request: OutputRequest
    ) -> list[Optional[SegmentationResult]]:
        """Segment checked frames as batches (the lock is held); one-at-a-time unless a subclass batches."""
        return [self._push(frame, H, W, request) for frame, (H, W) in zip(frames, sizes)]

    def _prepare_batch(self, frames: Sequence[Frame], sizes: Sequence[tuple[int, int]]) -> list[_Batch]:
        """The frames grouped by network input size, each group normalised into one ``(n, 3, hp, wp)`` tensor
        (the preparer's buffer is reused per frame, so each is copied out), with the time it took."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (H, W) in enumerate(sizes):
            groups.setdefault(self.network_size(H, W), []).append(i)
        batches = []
        for (h, w), members in groups.items():
            t0 = time.perf_counter()
            x = torch.empty(len(members), 3, *padded_size(h, w), device=self._device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for k, i in enumerate(members):
                one, _, _ = self.prepare(frames[i].image, *sizes[i])
                x[k].copy_(one[0])
            self._sync()
            batches.append(_Batch(members, x, h, w, (time.perf_counter() - t0) * 1e3))
        return batches

    @staticmethod
    def output_size(H: int, W: int, h: int, w: int, request: OutputRequest) -> tuple[int, int]:
        """The size of the output maps: the frame's, or the network input region's (``resolution`` network)."""
        return (h, w) if request.resolution == "network" else (H, W)

    def _sync(self) -> None:
        """Wait for queued GPU work, so stage timings are real."""
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _autocast(self) -> Any:
        if self._dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self._device.type, dtype=self._dtype)

    def describe(self) -> str:
        size = "native" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        runs = (
            f"on {self.device} ({self.precision})"
            if self.backend == "torch"
            else f"on {getattr(self.net, 'description', self.backend)}"
        )
        return f"{self.model_id} {runs}, input {size}, {self.num_classes} classes"


__all__ = [
    "PAD_MULTIPLE",
    "MODEL_INPUT_SIZE",
    "FramePreparer",
    "OutputMaps",
    "NetworkSegmenter",
    "check_image",
    "extent_read",
    "inference_copy",
    "padded_size",
    "to_numpy",
    "torch_threads",
]
