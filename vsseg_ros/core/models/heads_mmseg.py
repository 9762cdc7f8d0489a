"""Decode heads with mmsegmentation's module names, so its PSPNet/FCN checkpoints load key for key.

- :class:`ConvModule`: conv (no bias) -> ``bn`` -> ReLU, children ``conv``, ``bn``, ``activate`` as in mmcv.
- :class:`PSPHead` (PSPNet's pyramid pooling): the input ``x`` and, for each pool scale s, ``x`` average-pooled
  to s x s, projected by a 1x1 ConvModule and bilinearly resized back (``align_corners=False``) are concatenated
  (``[x, p1, p2, p3, p6]``) and fused by a 3x3 ConvModule ``bottleneck``. The bottleneck output is the per-frame
  feature (:meth:`forward_features`); :meth:`classify` applies dropout (2-D, p=0.1) and the 1x1 ``conv_seg``.
- :class:`FCNHead`: ``num_convs`` 3x3 ConvModules ``convs.i``; with ``concat_input`` a 3x3 ``conv_cat`` fuses
  the input with their output. Used as a decode head (2 convs + concat, mmseg's FCN) and as the auxiliary head on
  layer3 (1 conv, no concat, 256 channels, mmseg's PSPNet).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.models.heads import init_conv_bn, pointwise

PSP_POOL_SCALES = (1, 2, 3, 6)
DROPOUT = 0.1


class ConvModule(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU with mmcv's child names ``conv``, ``bn``, ``activate``."""

    conv_bn_pairs = (("conv", "bn"),)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


def _init_head(head: nn.Module, classifier: nn.Conv2d) -> None:
    init_conv_bn(head)
    nn.init.normal_(classifier.weight, std=0.01)
    if classifier.bias is not None:  # built with one
        nn.init.zeros_(classifier.bias)


class _DecodeHead(nn.Module):
    """What every decode head shares: which backbone output it reads, dropout and the 1x1 ``conv_seg``.
    Subclasses define ``forward_features(feats) -> feature``."""

    def __init__(self, in_key: str, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.in_key = in_key
        self.channels = channels
        self.num_classes = num_classes
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward_features(self, feats: dict[str, Tensor]) -> Tensor:  # each head its own
        raise NotImplementedError

    def classify(self, feature: Tensor) -> Tensor:
        """Logits from a :meth:`forward_features` map: dropout (training only), then the 1x1 ``conv_seg``."""
        return pointwise(self.conv_seg, self.dropout(feature))

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        return self.classify(self.forward_features(feats))


class PSPHead(_DecodeHead):
    """Pyramid pooling on ``feats[in_key]`` (default ``"high"``); feature ``channels`` wide at its stride."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        pool_scales: Sequence[int] = PSP_POOL_SCALES,
        dropout: float = DROPOUT,
        in_key: str = "high",
    ) -> None:
        super().__init__(in_key, channels, num_classes, dropout)
        self.pool_scales = tuple(int(s) for s in pool_scales)
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1)) for s in self.pool_scales
        )
        self.bottleneck = ConvModule(in_channels + len(self.pool_scales) * channels, channels, 3, padding=1)
        _init_head(self, self.conv_seg)

    def forward_features(self, feats: dict[str, Tensor]) -> Tensor:
        x = feats[self.in_key]
        size = x.shape[-2:]
        pooled = [F.interpolate(m(x), size=size, mode="bilinear", align_corners=False) for m in self.psp_modules]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class FCNHead(_DecodeHead):
    """``num_convs`` 3x3 ConvModules on ``feats[in_key]`` (+ ``conv_cat`` of input and output)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        num_convs: int = 2,
        concat_input: bool = True,
        kernel_size: int = 3,
        dropout: float = DROPOUT,
        in_key: str = "high",
    ) -> None:
        super().__init__(in_key, channels, num_classes, dropout)
        if num_convs < 1:
            raise ValueError(f"num_convs must be >= 1, got {num_convs}")
        pad = kernel_size // 2
        self.convs = nn.Sequential(
            *[ConvModule(in_channels if i == 0 else channels, channels, kernel_size, pad) for i in range(num_convs)]
        )
        self.concat_input = concat_input
        self.conv_cat = ConvModule(in_channels + channels, channels, kernel_size, pad) if concat_input else None
        _init_head(self, self.conv_seg)

    def forward_features(self, feats: dict[str, Tensor]) -> Tensor:
        x = feats[self.in_key]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return out


__all__ = ["ConvModule", "PSPHead", "FCNHead", "PSP_POOL_SCALES"]
