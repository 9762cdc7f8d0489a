"""The per-frame network: a backbone (MobileNetV2 or a dilated ResNet) + a head (LiteHead, PSP or FCN)
(+ BoundaryHead, + a stride-4 detail classifier, + mmseg's auxiliary FCN head on layer3 for training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.models.heads import BoundaryHead, LiteHead
from vsseg_ros.core.models.heads_mmseg import FCNHead, PSPHead
from vsseg_ros.core.models.mobilenetv2 import FINE_CHANNELS, MobileNetV2Backbone
from vsseg_ros.core.models.resnet import ResNet

#: spatial stride of the lite head's outputs (and the class-level default of ``PerFrameSegNet.stride``)
OUTPUT_FEATURE_STRIDE = 8
#: spatial stride of the logits and boundary map of a model with ``detail_head``
DETAIL_STRIDE = 4
#: backbone name -> (ResNet depth, deep stem)
RESNETS = {
    "resnet18": (18, False),
    "resnet50": (50, False),
    "resnet101": (101, False),
    "resnetv1c50": (50, True),
    "resnetv1c101": (101, True),
}
#: width of mmseg's auxiliary FCN head
AUX_CHANNELS = 256


def build_backbone(config: ModelConfig) -> Union[MobileNetV2Backbone, ResNet]:
    if config.backbone == "mobilenetv2":
        return MobileNetV2Backbone(output_stride=config.output_stride)
    if config.backbone in RESNETS:
        depth, deep_stem = RESNETS[config.backbone]
        return ResNet(depth, output_stride=config.output_stride, deep_stem=deep_stem)
    raise ValueError(f"backbone {config.backbone!r} is not implemented")  # ModelConfig validates the names


def build_head(config: ModelConfig, backbone: Union[MobileNetV2Backbone, ResNet]) -> Union[LiteHead, PSPHead, FCNHead]:
    high = backbone.high_channels
    if config.head == "lite":
        # the lite head merges a stride-8 low-level feature: MobileNetV2's "low", a ResNet's layer2 ("mid")
        if isinstance(backbone, ResNet):
            return LiteHead(high, backbone.channels["mid"], config.head_channels, config.num_classes, low_key="mid")
        return LiteHead(high, backbone.low_channels, config.head_channels, config.num_classes)
    if config.head == "psp":
        return PSPHead(high, config.head_channels, config.num_classes)
    if config.head == "fcn":
        return FCNHead(high, config.head_channels, config.num_classes, num_convs=2, concat_input=True)
    raise ValueError(f"head {config.head!r} is not implemented")


class PerFrameSegNet(nn.Module):
    """``forward(x)`` -> ``{"logits": (N, C, h, w), "boundary": (N, 1, h, w) or None, "feature": (N, D, h, w)}``
    (+ ``"aux"``: the auxiliary head's logits at layer3's size, in training mode when there is one)
    with ``h, w = ceil(H / stride), ceil(W / stride)``; the caller upsamples. ``D`` is ``config.head_channels``.
    ``stride`` is 8 for the lite head (4 with ``detail_head``) and the backbone's output stride for ``psp``/``fcn``;
    ``feature_stride`` is the feature's (the same, except 8 with ``detail_head``).
    """

    #: class-level default (the lite head's); every instance sets its own
    stride = OUTPUT_FEATURE_STRIDE

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.backbone = build_backbone(config)
        self.head = build_head(config, self.backbone)
        self.aux_head: Optional[FCNHead] = None
        if config.aux_head:  # ModelConfig allows it for ResNet backbones only
            if not isinstance(self.backbone, ResNet):
                raise ValueError(f"aux_head needs a ResNet backbone, not {config.backbone}")
            self.aux_head = FCNHead(
                self.backbone.channels["aux"],
                AUX_CHANNELS,
                config.num_classes,
                num_convs=1,
                concat_input=False,
                in_key="aux",
            )
        self.boundary_head: Optional[BoundaryHead] = (
            BoundaryHead(config.head_channels) if config.boundary_head else None
        )
        #: spatial stride of ``feature``
        self.feature_stride = OUTPUT_FEATURE_STRIDE if config.head == "lite" else config.output_stride
        #: spatial stride of ``logits`` and ``boundary``
        self.stride = self.feature_stride
        self.detail: Optional[nn.Conv2d] = None
        if config.detail_head:  # ModelConfig allows it for MobileNetV2 + lite only
            detail = nn.Conv2d(FINE_CHANNELS, config.num_classes, 1)
            # zero: a model warm-started from one without it starts with that model's logits, upsampled
            for p in detail.parameters():
                nn.init.zeros_(p)
            self.detail = detail
            self.stride = DETAIL_STRIDE

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def feature_channels(self) -> int:
        return self.config.head_channels

    def forward_features(self, x: Tensor) -> Tensor:
        """The per-frame feature (``feature_stride``, ``head_channels`` wide) that temporal models fuse; for PSP the
        bottleneck output before dropout and ``conv_seg``."""
        return self.head.forward_features(self.backbone(x))

    def classify(self, feature: Tensor) -> Tensor:
        """Logits ``(N, num_classes, h, w)`` from a :meth:`forward_features` map (same spatial size; without the
        detail classifier, which needs the backbone's stride-4 feature: :meth:`forward` adds it)."""
        return self.head.classify(feature)

    def boundary(self, feature: Tensor) -> Optional[Tensor]:
        """The boundary logit map ``(N, 1, h, w)`` from a feature map, or None without a boundary head."""
        return self.boundary_head(feature) if self.boundary_head is not None else None

    def forward(self, x: Tensor, boundary: bool = True) -> dict[str, Optional[Tensor]]:
        """``boundary=False`` skips the boundary head (its output is then None)."""
        feats = self.backbone(x)
        feature = self.head.forward_features(feats)
        logits = self.classify(feature)
        edge = self.boundary(feature) if boundary else None
        if self.detail is not None:
            fine = feats["fine"]
            logits = self._up(logits, fine) + self.detail(fine)
            edge = None if edge is None else self._up(edge, fine)
        out = {"logits": logits, "boundary": edge, "feature": feature}
        if self.training and self.aux_head is not None:
            out["aux"] = self.aux_head(feats)
        return out

    @staticmethod
    def _up(x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def load_imagenet_backbone(self, path: Union[str, Path, Mapping[str, Any], None] = None) -> dict[str, list[str]]:
        """Load ImageNet weights into the backbone (heads untouched). MobileNetV2: ``path`` defaults to the
        packaged file (see :meth:`MobileNetV2Backbone.load_imagenet`); ResNets need a file or state_dict in
        torchvision's layout (ResNetV1c: mmcv's ``resnet*_v1c``), see :meth:`ResNet.load_imagenet`."""
        if isinstance(self.backbone, ResNet):
            if path is None:
                raise ValueError(f"{self.config.backbone}: give the ImageNet weights file (none is packaged)")
            return self.backbone.load_imagenet(path)
        if not (path is None or isinstance(path, (str, Path))):
            raise TypeError(
                f"{self.config.backbone} loads its ImageNet weights from a file, not a {type(path).__name__}"
            )
        return self.backbone.load_imagenet(path)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None  # _foldable checked
    scale = bn.weight / torch.sqrt(var + bn.eps)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    new_bias = bn.bias + (bias - mean) * scale
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)


def _foldable(conv: Optional[nn.Module], bn: Optional[nn.Module]) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.affine
        and bn.running_mean is not None
        and bn.running_var is not None
    )


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d into that convolution (inference only: uses the
    running statistics) and replace it by ``nn.Identity``. Returns how many were folded. The outputs stay the
    same up to float rounding; the module must be in eval mode.

    Pairs are found in two places: consecutive children of an ``nn.Sequential``, and the ``(conv, bn)`` child
    names listed in a module's ``conv_bn_pairs`` (ResNet blocks, mmseg's ConvModule), whose forward applies
    the BN straight after the convolution.
    """
    if module.training:
        raise RuntimeError("fold_batchnorm needs a module in eval mode (it bakes in the running statistics)")
    folded = 0
    for m in list(module.modules()):
        if isinstance(m, nn.Sequential):
            names = list(m._modules)
            pairs = list(zip(names, names[1:]))
        else:
            pairs = list(getattr(type(m), "conv_bn_pairs", ()))
        for a, b in pairs:
            conv, bn = m._modules.get(a), m._modules.get(b)
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and _foldable(conv, bn)):
                continue
            _fold_into(conv, bn)
            m._modules[b] = nn.Identity()
            folded += 1
    return folded
