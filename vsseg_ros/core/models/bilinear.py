"""Bilinear resampling as matrix products (``F.interpolate(mode="bilinear", align_corners=False)``'s weights).

On the CPU, two small matrix products beat ``F.interpolate`` several times over, and they work on channels-last
tensors directly (no layout change before or after). Used for the output maps and STF's pooled residual.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def bilinear_matrix(out_size: int, in_size: int, scale: float | None = None, in_used: int | None = None) -> Tensor:
    """``(out_size, in_used)`` float32 weights sampling ``in_size`` source pixels at ``scale`` output pixels per
    source pixel (default ``out_size / in_size``, what ``F.interpolate(size=...)`` uses). Sources beyond the edge
    are clamped to the last pixel, as ``F.interpolate`` does; columns past ``in_used`` (default all) must carry
    no weight and are dropped."""
    scale = out_size / in_size if scale is None else scale
    in_used = in_size if in_used is None else in_used
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) / scale - 0.5).clamp_(min=0.0)
    i0 = src.floor().long().clamp_(max=in_size - 1)
    lam = src - i0
    i1 = (i0 + 1).clamp_(max=in_size - 1)
    m = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    m.index_put_((rows, i0), 1.0 - lam, accumulate=True)
    m.index_put_((rows, i1), lam, accumulate=True)
    assert not m[:, in_used:].any()
    return m[:, :in_used].float()


@functools.lru_cache(maxsize=32)
def _cached_matrix(out_size: int, in_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):  # a normal tensor: usable with and without autograd
        return bilinear_matrix(out_size, in_size).to(device=device, dtype=dtype)


def resize_channels_last(x: Tensor, height: int, width: int) -> Tensor:
    """(N, h, w, C) -> a new contiguous (N, height, width, C): the bilinear resize (align_corners=False) of
    the (N, C, h, w) tensor ``x.permute(0, 3, 1, 2)``, rows first, then columns. Differentiable."""
    N, h, w, C = x.shape
    my = _cached_matrix(height, h, x.device, x.dtype)  # (height, h)
    mx = _cached_matrix(width, w, x.device, x.dtype)  # (width, w)
    t = torch.matmul(my, x.reshape(N, h, w * C))  # (N, height, w * C)
    return torch.matmul(mx, t.view(N * height, w, C)).view(N, height, width, C)


__all__ = ["bilinear_matrix", "resize_channels_last"]
