"""The network's low-resolution outputs to maps at the frame's size (:class:`OutputMaps`): bilinear upsampling of
the logits straight to the frame's own size, separably (two taps per output pixel along each axis) in bands of
rows, argmax labels and, only if asked, max-softmax confidence and boundary probability. Large intermediate
buffers are kept between frames of the same size; the arrays handed out are always fresh.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from vsseg_ros.core.segmenter import OutputRequest


def extent_read(size: int, stride: int, grid: int) -> int:
    """How many of a map's ``grid`` rows (or columns) at ``stride`` the output maps of an image region
    ``size`` pixels high (wide) read: bilinear upsampling reaches one past the region's last; the rest of
    the map covers only the input's padding."""
    return min(grid, math.ceil(size / stride) + 1)


class _Interp:
    """Bilinear taps (align_corners=False) from ``in_size`` source pixels to ``out_size`` output pixels along
    one axis, at ``scale`` output pixels per source pixel: each output pixel lerps between two sources. Sources
    past ``in_used`` carry no weight (they only cover the input's padding) and are never read. Sources beyond
    the edge are clamped, as ``F.interpolate`` does.

    Two gathers and a lerp per output pixel, whatever the logit grid. On one CPU thread, 11 classes' labels at
    360x480 take 1.8-2.5 ms with them and took 3.1-3.5 ms as dense matrix products (at 1280x720: 12 against
    32 ms; from a stride-4 grid, 2.2-3.6 against 6.3-6.5 ms, since a matrix product's cost grows with the
    grid); and the memory grows with the output, never with a side times the grid (a dense 4,000,000 x 31
    matrix once took 9 s and 2.9 GB for a 1 x 4,000,000 frame).
    """

    def __init__(self, out_size: int, in_size: int, in_used: int, scale: float, device: torch.device) -> None:
        src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) / scale - 0.5).clamp_(min=0.0)
        i0 = src.floor().long().clamp_(max=in_size - 1)
        lam = src - i0
        i1 = (i0 + 1).clamp_(max=in_size - 1)
        # i0 always lies inside the used sources, i1 only past them where its weight is 0
        assert int(i0.max()) < in_used and not lam[i1 >= in_used].any()
        self.i0 = i0.to(device)
        self.i1 = i1.clamp_(max=in_used - 1).to(device)
        self.lam = lam.float().to(device)

    def rows(self, x: Tensor, r0: int, r1: int, out: Tensor) -> None:
        """Output rows r0..r1 along axis 1 of ``x`` (K, in_used, L) into ``out`` (K, r1 - r0, L)."""
        torch.index_select(x, 1, self.i0[r0:r1], out=out)
        out.lerp_(torch.index_select(x, 1, self.i1[r0:r1]), self.lam[r0:r1].view(1, -1, 1))

    def last(self, x: Tensor, out: Tensor) -> None:
        """Along the last axis: ``x`` (M, in_used) into ``out`` (M, out_size)."""
        torch.index_select(x, 1, self.i0, out=out)
        out.lerp_(torch.index_select(x, 1, self.i1), self.lam.view(1, -1))


class _PostBuffers:
    """Interpolation taps and scratch tensors for one (frame size, network size, logit size) pair.

    Upsampling is separable bilinear interpolation (exactly ``F.interpolate(mode="bilinear",
    align_corners=False)`` with the frame/logit scale, but faster on CPU), in bands of rows so the scratch
    memory stays bounded for large frames. The gather along the last axis is the slower of the two passes
    (the one along rows copies whole rows), so it runs on the smaller array: the columns first, once, at logit
    height, then each band's rows (5-10 % faster than the other order at 360x480 and at 480x360); only a frame
    less high than the logit rows it reads (a degenerate 1 x 400,000 one) goes rows first, where the column
    pass at logit height would be the larger array.
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
        self.cols_first = self.rows <= H
        # columns first: the whole (C, rows, W) intermediate; rows first: one band's (C, n, cols)
        self.tmp = torch.empty(C * (self.rows * W if self.cols_first else n * self.cols), device=device)
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
    """A tensor as a numpy array (a copy off the GPU, shared memory on the CPU)."""
    return t.cpu().numpy() if t.device.type != "cpu" else t.numpy()
