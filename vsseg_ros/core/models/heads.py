"""Light segmentation heads on top of a two-level backbone (stride-8 low-level + deep high-level feature).

:class:`LiteHead` follows the idea of LR-ASPP: a 1x1 conv branch on the deep feature, re-weighted per channel
by a global-pool sigmoid gate, brought up to stride 8 and merged with a projection of the low-level feature.
The merged map (``forward_features``) is the per-frame feature that temporal modules fuse; a separate 1x1
``classifier`` turns it into logits. :class:`BoundaryHead` predicts, from the same feature, the logit that a
class boundary passes through a pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 + BN, then pointwise 1x1 + BN + ReLU: a cheap 3x3 context at stride 8."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            ConvBNReLU(in_channels, out_channels, 1),
        )


def pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv`` (1x1, stride 1, no groups) applied to ``x``. On a channels-last ``x`` (inference) it runs as a
    matrix product over the channels, which the CPU does faster than the convolution call for a
    classifier's few output channels (117 vs 175 us at 128 -> 11 on 48x60 features, 2 threads); the result
    is then channels-last too. Otherwise, and for any other convolution, the convolution itself."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
    ):
        return F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias).permute(0, 3, 1, 2)
    return conv(x)


def init_conv_bn(module: nn.Module) -> None:
    """He-normal convolutions (zero bias) and unit BatchNorms: the start every head here uses."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class LiteHead(nn.Module):
    """LR-ASPP-style head producing a ``channels``-wide feature at the low-level stride (8)."""

    def __init__(
        self, high_channels: int, low_channels: int, channels: int, num_classes: int, low_key: str = "low"
    ) -> None:
        super().__init__()
        #: which backbone output is the stride-8 low-level feature ("low" for MobileNetV2, "mid" for ResNets)
        self.low_key = low_key
        self.channels = channels
        self.num_classes = num_classes
        self.high_branch = ConvBNReLU(high_channels, channels, 1)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, channels, 1),
            nn.Sigmoid(),
        )
        self.low_proj = nn.Sequential(
            nn.Conv2d(low_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.refine = SeparableConvBNReLU(channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        init_conv_bn(self)
        nn.init.normal_(self.classifier.weight, std=0.01)
        if self.classifier.bias is not None:  # built with one
            nn.init.zeros_(self.classifier.bias)

    def forward_features(self, feats: dict[str, Tensor]) -> Tensor:
        """The per-frame feature map: ``channels`` wide, at the spatial size of ``feats["low"]``."""
        high, low = feats["high"], feats[self.low_key]
        x = self.high_branch(high) * self.gate(high)
        if x.shape[-2:] != low.shape[-2:]:
            x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = F.relu(x + self.low_proj(low), inplace=True)
        return self.refine(x)

    def classify(self, feature: Tensor) -> Tensor:
        return pointwise(self.classifier, feature)

    def forward(self, feats: dict[str, Tensor]) -> Tensor:
        return self.classify(self.forward_features(feats))


class BoundaryHead(nn.Module):
    """From the head feature to one channel: the logit that a class boundary passes through the pixel."""

    def __init__(self, in_channels: int, mid_channels: int = 32, prior: float = 0.1) -> None:
        super().__init__()
        self.block = SeparableConvBNReLU(in_channels, mid_channels)
        self.out = nn.Conv2d(mid_channels, 1, 1)
        init_conv_bn(self)
        nn.init.normal_(self.out.weight, std=0.01)
        # boundaries are rare: start near their prior probability, not at 0.5
        if self.out.bias is not None:  # built with one
            nn.init.constant_(self.out.bias, math.log(prior / (1.0 - prior)))

    def forward(self, feature: Tensor) -> Tensor:
        return self.out(self.block(feature))
