"""The per-frame network: MobileNetV2 backbone + LiteHead (+ BoundaryHead), all outputs at stride 8."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.models.heads import BoundaryHead, LiteHead
from vsseg_ros.core.models.mobilenetv2 import MobileNetV2Backbone

#: spatial stride of every output of :class:`PerFrameSegNet`
OUTPUT_FEATURE_STRIDE = 8


def build_backbone(config: ModelConfig) -> MobileNetV2Backbone:
    if config.backbone != "mobilenetv2":  # ModelConfig validates; this guards new names added there
        raise ValueError(f"backbone {config.backbone!r} is not implemented")
    return MobileNetV2Backbone(output_stride=config.output_stride)


class PerFrameSegNet(nn.Module):
    """``forward(x)`` -> ``{"logits": (N, C, h, w), "boundary": (N, 1, h, w) or None, "feature": (N, D, h, w)}``
    with ``h, w = ceil(H / 8), ceil(W / 8)``; the caller upsamples. ``D`` is ``config.head_channels``.
    """

    stride = OUTPUT_FEATURE_STRIDE

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = build_backbone(config)
        if config.head != "lite":
            raise ValueError(f"head {config.head!r} is not implemented")
        self.head = LiteHead(self.backbone.high_channels, self.backbone.low_channels, config.head_channels,
                             config.num_classes)
        self.boundary_head: Optional[BoundaryHead] = (BoundaryHead(config.head_channels)
                                                      if config.boundary_head else None)
        #: spatial stride of ``feature``, ``logits`` and ``boundary`` (the lite head works at stride 8)
        self.stride = OUTPUT_FEATURE_STRIDE

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def feature_channels(self) -> int:
        return self.config.head_channels

    def forward_features(self, x: Tensor) -> Tensor:
        """The per-frame feature (stride 8, ``head_channels`` wide) that temporal models fuse."""
        return self.head.forward_features(self.backbone(x))

    def classify(self, feature: Tensor) -> Tensor:
        """Logits ``(N, num_classes, h, w)`` from a :meth:`forward_features` map (same spatial size)."""
        return self.head.classifier(feature)

    def boundary(self, feature: Tensor) -> Optional[Tensor]:
        """The boundary logit map ``(N, 1, h, w)`` from a feature map, or None without a boundary head."""
        return self.boundary_head(feature) if self.boundary_head is not None else None

    def forward(self, x: Tensor, boundary: bool = True) -> dict[str, Optional[Tensor]]:
        """``boundary=False`` skips the boundary head (its output is then None)."""
        feature = self.forward_features(x)
        logits = self.classify(feature)
        edge = self.boundary(feature) if boundary else None
        return {"logits": logits, "boundary": edge, "feature": feature}

    def load_imagenet_backbone(self, path: Union[str, Path, None] = None) -> dict[str, list[str]]:
        """Load ImageNet MobileNetV2 weights into the backbone (heads untouched); see
        :meth:`MobileNetV2Backbone.load_imagenet`."""
        return self.backbone.load_imagenet(path)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential`` into that convolution
    (inference only: uses the running statistics) and replace it by ``nn.Identity``. Returns how many were
    folded. The outputs stay the same up to float rounding; the module must be in eval mode.
    """
    if module.training:
        raise RuntimeError("fold_batchnorm needs a module in eval mode (it bakes in the running statistics)")
    folded = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if bn.running_mean is None or bn.running_var is None or not bn.affine:
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = bn.bias + (bias - bn.running_mean) * scale
            conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)
            seq._modules[b] = nn.Identity()
            folded += 1
    return folded
