"""Flow2Seg (Li et al., ICANN 2019): a second path that segments from optical flow, fused residually.

:class:`FlowSegNet` maps a flow field (N, 2, H, W) (see :func:`vsseg_ros.core.flow.flow_to_tensor`) to class logits
with a dilated ResNet-18 and a shallow FCN head: things that move differently from their surroundings (cars,
pedestrians, cyclists against the ego-motion of the road) are visible in the flow even where their appearance
is ambiguous. :class:`ResidualFusion` adds a correction, computed from both paths' logits, to the image logits;
:class:`Flow2SegPath` holds both and is what a temporal model attaches to its per-frame network.
:func:`flow2seg_loss` is the paper's ``L_image + L_fusion + alpha * L_flow + beta * L_aux``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.models.heads import ConvBNReLU, init_conv_bn
from vsseg_ros.core.models.heads_mmseg import FCNHead
from vsseg_ros.core.models.resnet import ResNet

#: default loss weights: the flow path and the auxiliary head are side branches (0.4, mmsegmentation's usual
#: auxiliary weight); the paper does not publish its values
DEFAULT_ALPHA = 0.4
DEFAULT_BETA = 0.4


class FlowSegNet(nn.Module):
    """Flow (N, 2, H, W) -> logits (N, C, ceil(H / s), ceil(W / s)) with ``s = output_stride``.

    Backbone: ResNet-18 with two input channels (u, v), dilated to ``output_stride`` (8, 16 or 32); head: a
    shallow FCN (one 3x3 conv + BN + ReLU of ``head_channels``, dropout, 1x1 ``conv_seg``) on the last stage.
    ``width`` is the ResNet's base width (64 for the real network; smaller only for quick tests).
    """

    def __init__(self, num_classes: int, output_stride: int = 8, head_channels: int = 128, width: int = 64) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.stride = int(output_stride)
        self.backbone = ResNet(18, output_stride=self.stride, deep_stem=False, in_channels=2, width=width)
        self.head = FCNHead(
            self.backbone.channels["high"],
            head_channels,
            self.num_classes,
            num_convs=1,
            concat_input=False,
            in_key="high",
        )

    def forward(self, flow: Tensor) -> Tensor:
        _check_flow(flow)
        return self.head(self.backbone(flow))


class ResidualFusion(nn.Module):
    """``image_logits + conv1x1(2 x (conv3x3 + BN + ReLU)(cat(image_logits, flow_logits)))``.

    Both inputs are (N, C, h, w) of the same size. The flow path alone is much weaker than the image path, so
    its logits are not averaged in: the fusion learns a correction to the image logits where motion tells more.
    """

    def __init__(self, num_classes: int, channels: int = 64) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.convs = nn.Sequential(ConvBNReLU(2 * self.num_classes, channels, 3), ConvBNReLU(channels, channels, 3))
        self.conv_out = nn.Conv2d(channels, self.num_classes, 1)
        init_conv_bn(self)
        # Zero-initialised last layer: the fused model starts exactly as the image model (the correction is 0),
        # so attaching the path to a trained image network does not lose its accuracy, and the random flow
        # path of the first steps cannot disturb the image logits; the correction grows as it proves useful.
        nn.init.zeros_(self.conv_out.weight)
        if self.conv_out.bias is not None:  # built with one
            nn.init.zeros_(self.conv_out.bias)

    def forward(self, image_logits: Tensor, flow_logits: Tensor) -> Tensor:
        if image_logits.shape != flow_logits.shape:
            raise ValueError(
                f"ResidualFusion needs image and flow logits of one shape, got "
                f"{tuple(image_logits.shape)} and {tuple(flow_logits.shape)}"
            )
        if image_logits.dim() != 4 or image_logits.shape[1] != self.num_classes:
            raise ValueError(
                f"ResidualFusion expects (N, {self.num_classes}, h, w) logits, got {tuple(image_logits.shape)}"
            )
        return image_logits + self.conv_out(self.convs(torch.cat([image_logits, flow_logits], dim=1)))


class Flow2SegPath(nn.Module):
    """The flow path of Flow2Seg: :class:`FlowSegNet` + :class:`ResidualFusion`.

    ``forward(image_logits (N, C, h, w), flow (N, 2, H, W))`` -> ``{"logits": fused (N, C, h, w),
    "flow_logits": (N, C, h, w)}``; the flow logits are resized (bilinear) to the image logits' size when the two
    paths' strides or input sizes differ.
    """

    def __init__(
        self,
        num_classes: int,
        output_stride: int = 8,
        fusion_channels: int = 64,
        head_channels: int = 128,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.flow_net = FlowSegNet(num_classes, output_stride, head_channels=head_channels, width=width)
        self.fusion = ResidualFusion(num_classes, fusion_channels)

    @property
    def num_classes(self) -> int:
        return self.flow_net.num_classes

    def forward(self, image_logits: Tensor, flow: Tensor) -> dict[str, Tensor]:
        _check_flow(flow)
        if image_logits.dim() != 4 or image_logits.shape[1] != self.num_classes:
            raise ValueError(
                f"Flow2SegPath expects image logits (N, {self.num_classes}, h, w), got {tuple(image_logits.shape)}"
            )
        if flow.shape[0] != image_logits.shape[0]:
            raise ValueError(f"flow has batch size {flow.shape[0]} but the image logits {image_logits.shape[0]}")
        flow_logits = self.flow_net(flow)
        if flow_logits.shape[-2:] != image_logits.shape[-2:]:
            flow_logits = F.interpolate(flow_logits, size=image_logits.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": self.fusion(image_logits, flow_logits), "flow_logits": flow_logits}


def _check_flow(flow: Tensor) -> None:
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow must be a (N, 2, H, W) tensor (see flow_to_tensor), got shape {tuple(flow.shape)}")


def _segmentation_ce(logits: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """Cross-entropy of logits upsampled (bilinear) to the label size; 0 (with a graph) if every pixel is ignored."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if not bool((target != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def flow2seg_loss(
    image_logits: Tensor,
    fused_logits: Tensor,
    flow_logits: Tensor,
    aux_logits: Optional[Tensor],
    target: Tensor,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    ignore_index: int = 255,
) -> Tensor:
    """``L_image + L_fusion + alpha * L_flow + beta * L_aux`` (the last term only when ``aux_logits`` is given).

    Each term is the pixel cross-entropy of that output's logits, upsampled bilinearly to the label size
    ``target`` (N, H, W) (class ids, ``ignore_index`` excluded).
    """
    if target.dim() != 3:
        raise ValueError(f"target must be (N, H, W) class ids, got shape {tuple(target.shape)}")
    target = target.long()
    outputs = {"image_logits": image_logits, "fused_logits": fused_logits, "flow_logits": flow_logits}
    if aux_logits is not None:
        outputs["aux_logits"] = aux_logits
    for name, logits in outputs.items():
        if logits.dim() != 4 or logits.shape[0] != target.shape[0]:
            raise ValueError(
                f"{name} must be (N, C, h, w) with N = {target.shape[0]} (the target's batch), got "
                f"{tuple(logits.shape)}"
            )
    loss = (
        _segmentation_ce(image_logits, target, ignore_index)
        + _segmentation_ce(fused_logits, target, ignore_index)
        + alpha * _segmentation_ce(flow_logits, target, ignore_index)
    )
    if aux_logits is not None:
        loss = loss + beta * _segmentation_ce(aux_logits, target, ignore_index)
    return loss


__all__ = ["DEFAULT_ALPHA", "DEFAULT_BETA", "FlowSegNet", "Flow2SegPath", "ResidualFusion", "flow2seg_loss"]
