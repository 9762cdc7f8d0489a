"""Bilinear resampling by matrix products matches F.interpolate (align_corners=False) and is differentiable."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsseg_ros.core.models.bilinear import bilinear_matrix, resize_channels_last


@pytest.mark.parametrize("size,out", [((16, 20), (48, 60)), ((5, 7), (9, 11)), ((3, 4), (10, 13)),
                                      ((12, 9), (5, 4)), ((1, 6), (4, 6))])
def test_matches_interpolate(size: tuple[int, int], out: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, *size)
    ref = F.interpolate(x, size=out, mode="bilinear", align_corners=False)
    got = resize_channels_last(x.permute(0, 2, 3, 1), *out)
    assert got.shape == (2, *out, 8) and got.is_contiguous()
    # F.interpolate computes source positions in float32 (1/3 is not exact): a few 1e-6 apart at most
    torch.testing.assert_close(got.permute(0, 3, 1, 2), ref, atol=2e-5, rtol=0)


def test_rows_are_convex_weights() -> None:
    m = bilinear_matrix(37, 5)
    assert m.shape == (37, 5) and bool((m >= 0).all())
    torch.testing.assert_close(m.sum(1), torch.ones(37))
    assert int((m > 0).sum(1).max()) <= 2  # two taps per output pixel


def test_unused_columns_are_dropped_and_must_be_unused() -> None:
    full = bilinear_matrix(16, 6, scale=4.0)  # 16 pixels read the first 4 sources (and clamp onto the 4th)
    part = bilinear_matrix(16, 6, scale=4.0, in_used=5)
    assert part.shape == (16, 5) and torch.equal(part, full[:, :5])
    with pytest.raises(AssertionError):
        bilinear_matrix(16, 6, scale=2.0, in_used=5)  # the 6th source carries weight


def test_gradients_match_interpolate() -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 6, 4, 5, dtype=torch.float32, requires_grad=True)
    g = torch.randn(1, 6, 12, 15)
    F.interpolate(x, size=(12, 15), mode="bilinear", align_corners=False).mul(g).sum().backward()
    ref, x.grad = x.grad.clone(), None
    resize_channels_last(x.permute(0, 2, 3, 1), 12, 15).permute(0, 3, 1, 2).mul(g).sum().backward()
    torch.testing.assert_close(x.grad, ref, atol=1e-5, rtol=0)


def test_cached_matrices_work_inside_and_outside_inference_mode() -> None:
    x = torch.randn(1, 3, 4, 2, requires_grad=True)
    with torch.inference_mode():  # fills the cache with this size
        resize_channels_last(torch.randn(1, 3, 4, 2), 7, 9)
    resize_channels_last(x, 7, 9).sum().backward()  # the cached matrix can be saved for backward
    assert x.grad is not None and torch.isfinite(x.grad).all()
