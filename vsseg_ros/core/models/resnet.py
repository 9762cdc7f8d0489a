"""ResNet-18/50/101 and ResNetV1c-50/101 as dilated dense-prediction backbones.

Two parameter layouts, so that published weights load key for key:

- ``deep_stem=False`` (plain ResNet, "V1b"): a 7x7 stem named as in torchvision (``conv1``, ``bn1``) and
  ImageNet state_dicts in torchvision's layout load with :meth:`ResNet.load_imagenet` (``fc.*`` is skipped).
- ``deep_stem=True`` (ResNetV1c, as in mmsegmentation's PSPNet/FCN "-d8" models): the stem is three 3x3
  convolutions (32, 32, 64 channels, the first with stride 2), each followed by BN and ReLU, held in one
  ``nn.Sequential`` named ``stem`` (so the keys are ``stem.0/1``, ``stem.3/4``, ``stem.6/7``).

Both share the residual stages ``layer1``-``layer4`` (blocks ``layerN.i`` with ``conv1``/``bn1``,
``conv2``/``bn2`` [, ``conv3``/``bn3``] and ``downsample.0`` (1x1 conv) / ``downsample.1`` (BN)). The stride of
a bottleneck sits on its 3x3 convolution ("pytorch" style). Below output stride 32 the last stages trade their
stride for dilation in the way mmsegmentation's "-d8" models and torchvision's
``replace_stride_with_dilation`` both do: output stride 8 uses stage strides 1, 2, 1, 1 and dilations 1, 1, 2, 4,
and the first block of a dilated stage uses half the stage's dilation (mmseg's ``contract_dilation``).
A basic block (ResNet-18) dilates only its first 3x3 convolution, as mmsegmentation's does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.models.state_dict import state_dict_mismatch

#: depth -> (block kind, blocks per stage)
ARCHITECTURES: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
#: output stride -> (stride of each stage's first block, dilation of each stage)
STAGE_LAYOUTS: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}
#: the names of the four stage outputs in ``forward``'s dict
FEATURE_KEYS = ("low", "mid", "aux", "high")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a skip (ResNet-18/34)."""

    expansion = 1
    #: (conv, bn) attribute pairs that :func:`~vsseg_ros.core.models.perframe.fold_batchnorm` may merge
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1, downsample: Optional[nn.Module] = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided, dilated) -> 1x1 expand (x4), with a skip (ResNet-50/101)."""

    expansion = 4
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, dilation: int = 1, downsample: Optional[nn.Module] = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(
    block: type[Union[BasicBlock, Bottleneck]], in_channels: int, planes: int, blocks: int, stride: int, dilation: int
) -> nn.Sequential:
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
        )
    # the first block of a dilated stage keeps half the dilation ("contract_dilation"): it is where the
    # stride used to be, so its receptive field matches the undilated network's
    first_dilation = dilation // 2 if dilation > 1 else 1
    layers = [block(in_channels, planes, stride, first_dilation, downsample)]
    layers += [block(out_channels, planes, 1, dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """``forward(x)`` -> ``{"low": layer1 (stride 4), "mid": layer2 (stride 8), "aux": layer3, "high": layer4}``
    (``aux`` and ``high`` at ``output_stride``; layer3 at 16 when the output stride is 32).

    ``channels`` maps those keys to their widths (ResNet-50/101: 256, 512, 1024, 2048; ResNet-18: 64, 128, 256,
    512, all scaled by ``width / 64``). ``width`` (64 for the published networks) exists for small test models.
    """

    layer1: nn.Sequential  # added by name in __init__, one per stage
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    conv_bn_pairs = (("conv1", "bn1"),)

    def __init__(
        self, depth: int = 50, output_stride: int = 8, deep_stem: bool = False, in_channels: int = 3, width: int = 64
    ) -> None:
        super().__init__()
        if depth not in ARCHITECTURES:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCHITECTURES)}, got {depth!r}")
        if output_stride not in STAGE_LAYOUTS:
            raise ValueError(f"output_stride must be one of {sorted(STAGE_LAYOUTS)}, got {output_stride!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 2 or width % 2:
            raise ValueError(f"width must be an even integer >= 2, got {width!r}")
        self.depth = depth
        self.output_stride = output_stride
        self.deep_stem = deep_stem
        kind, blocks = ARCHITECTURES[depth]
        block = BasicBlock if kind == "basic" else Bottleneck

        if deep_stem:
            half = width // 2
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, half, 3, 2, padding=1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, half, 3, 1, padding=1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                nn.Conv2d(half, width, 3, 1, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        strides, dilations = STAGE_LAYOUTS[output_stride]
        channels = width
        widths = []
        for i, (n, s, d) in enumerate(zip(blocks, strides, dilations), start=1):
            planes = width * 2 ** (i - 1)
            self.add_module(f"layer{i}", _stage(block, channels, planes, n, s, d))
            channels = planes * block.expansion
            widths.append(channels)
        self.channels: dict[str, int] = dict(zip(FEATURE_KEYS, widths))
        self._init_weights()

    @property
    def low_channels(self) -> int:
        return self.channels["low"]

    @property
    def high_channels(self) -> int:
        return self.channels["high"]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x) if self.deep_stem else self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        low = self.layer1(x)
        mid = self.layer2(low)
        aux = self.layer3(mid)
        high = self.layer4(aux)
        return {"low": low, "mid": mid, "aux": aux, "high": high}

    # -- ImageNet weights ---------------------------------------------------------------------------

    def load_imagenet(self, source: Union[str, Path, Mapping[str, Any]]) -> dict[str, list[str]]:
        """Load ImageNet-trained weights into every backbone parameter and buffer.

        ``source`` is a file or a state_dict in this backbone's layout: torchvision's ``resnet{18,50,101}``
        files for ``deep_stem=False``, mmcv's ``resnet{50,101}_v1c`` files for ``deep_stem=True``; a
        ``{"state_dict": ...}`` wrapper is unpacked. ``fc.*`` (the ImageNet classifier) is skipped; every other
        key must fit exactly, otherwise :class:`~vsseg_ros.core.errors.CheckpointError` lists the missing
        and unexpected keys and the shape mismatches. Returns ``{"loaded": [...], "skipped": [...]}``.
        """
        name = "state_dict"
        if isinstance(source, (str, Path)):
            p = Path(source).expanduser()
            if not p.is_file():
                raise CheckpointError(f"ImageNet ResNet weights not found: {p}")
            name = str(p)
            try:
                source = torch.load(p, map_location="cpu", weights_only=True)
            except Exception as e:  # zip, pickle and torch errors alike
                raise CheckpointError(f"{p}: cannot read it as a PyTorch file ({type(e).__name__}: {e})") from None
        if isinstance(source, Mapping) and isinstance(source.get("state_dict"), Mapping):
            source = source["state_dict"]
        if not isinstance(source, Mapping) or not all(isinstance(v, Tensor) for v in source.values()):
            raise CheckpointError(f"{name}: expected a state_dict (names -> tensors), found {type(source).__name__}")
        state = {str(k): v for k, v in source.items()}
        own = self.state_dict()
        problems = state_dict_mismatch(own, state, ignore_prefixes=("fc.",))
        if problems:
            layout = "ResNetV1c (mmseg deep stem)" if self.deep_stem else "torchvision ResNet"
            raise CheckpointError(f"{name} does not hold {layout}-{self.depth} weights for this backbone: {problems}")
        kept = {k: state[k] for k in own}
        self.load_state_dict(kept, strict=True)
        return {"loaded": list(kept), "skipped": [k for k in state if k not in own]}


__all__ = ["ResNet", "BasicBlock", "Bottleneck", "ARCHITECTURES", "STAGE_LAYOUTS", "FEATURE_KEYS"]
