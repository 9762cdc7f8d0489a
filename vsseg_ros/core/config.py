"""Model configuration: what network to build and how frames are prepared for it.

A :class:`ModelConfig` travels inside every checkpoint (``to_dict``), so a checkpoint alone is enough to
rebuild its network. ``config/models/*.yaml`` hold named configurations for training.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

BACKBONES = ("mobilenetv2", "resnet18", "resnet50", "resnet101", "resnetv1c50", "resnetv1c101")
#: backbones that have a layer3 ("aux") output for the auxiliary FCN head
RESNET_BACKBONES = BACKBONES[1:]
HEADS = ("lite", "psp", "fcn")
OUTPUT_STRIDES = (8, 16, 32)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: labels are stored as uint8 and 255 is the ignore id
MAX_CLASSES = 255


class ConfigError(ValueError):
    """A model configuration that cannot be built; the message says which field and why."""


def _triple(name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ConfigError(f"{name} must be 3 numbers (R, G, B) on a 0-1 scale, got {value!r}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ConfigError(f"{name} must be 3 finite numbers (R, G, B), got {list(value)!r}")
        if positive and v <= 0:
            raise ConfigError(f"{name} values must be > 0, got {list(value)!r}")
        out.append(float(v))
    return tuple(out)  # type: ignore[return-value]


def _int(name: str, value: Any, minimum: int, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def parse_input_size(value: Any, name: str = "input_size") -> Optional[tuple[int, int]]:
    """``(height, width)`` of the network input, or None for "the frame's own size".

    Accepts None, 0, ``(0, 0)`` (all meaning native size) or two positive integers.
    """
    if value is None or (not isinstance(value, bool) and isinstance(value, int) and value == 0):
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must be (height, width), 0 or None, got {value!r}")
    h, w = value
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{name} must be two non-negative integers (height, width), got {list(value)!r}")
    if h == 0 and w == 0:
        return None
    if h == 0 or w == 0:
        raise ConfigError(f"{name}={list(value)!r}: give both height and width, or (0, 0) for the frame's size")
    if h > 8192 or w > 8192:
        raise ConfigError(f"{name}={list(value)!r} is larger than 8192 pixels on a side")
    return int(h), int(w)


@dataclass
class ModelConfig:
    """Everything needed to build a network and feed it.

    ``input_size`` is ``(height, width)`` of the network input (frames are resized to it), None to run at
    the frame's own size. ``mean``/``std`` normalise RGB on a 0-1 scale. ``temporal`` is reserved for the
    temporal models (None: a per-frame model).

    ``head`` is ``lite`` (LR-ASPP-like, stride 8), ``psp`` or ``fcn`` (mmsegmentation's heads, at the output
    stride); ``head_channels`` is the width of the head's feature (mmseg's PSP/FCN: 512). ``aux_head`` adds
    mmseg's auxiliary FCN head (256 channels) on the ResNet's layer3, used in training only.

    ``detail_head`` (MobileNetV2 + lite head, per-frame only) adds a 1x1 classifier on the backbone's stride-4
    feature to the stride-8 logits upsampled 2x, so the logits and the boundary map come at stride 4 (thin
    classes such as poles are a fraction of a stride-8 cell); the feature temporal models fuse stays at stride 8.
    """

    name: str = "mbv2_lite"
    backbone: str = "mobilenetv2"
    output_stride: int = 16
    head: str = "lite"
    head_channels: int = 128
    num_classes: int = 11
    boundary_head: bool = True
    aux_head: bool = False
    detail_head: bool = False
    input_size: Optional[tuple[int, int]] = (360, 480)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    temporal: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check and normalise every field (lists become tuples); raise :class:`ConfigError` if wrong."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"backbone={self.backbone!r} is not known; use one of: {', '.join(BACKBONES)}")
        if self.head not in HEADS:
            raise ConfigError(f"head={self.head!r} is not known; use one of: {', '.join(HEADS)}")
        if isinstance(self.output_stride, bool) or self.output_stride not in OUTPUT_STRIDES:
            raise ConfigError(
                f"output_stride={self.output_stride!r} is not supported; use one of: "
                f"{', '.join(map(str, OUTPUT_STRIDES))}"
            )
        self.head_channels = _int("head_channels", self.head_channels, 8, 4096)
        self.num_classes = _int("num_classes", self.num_classes, 1, MAX_CLASSES)
        if not isinstance(self.boundary_head, bool):
            raise ConfigError(f"boundary_head must be true or false, got {self.boundary_head!r}")
        if not isinstance(self.aux_head, bool):
            raise ConfigError(f"aux_head must be true or false, got {self.aux_head!r}")
        if self.aux_head and self.backbone not in RESNET_BACKBONES:
            raise ConfigError(
                f"aux_head needs a ResNet backbone (its layer3 output); backbone={self.backbone!r} "
                f"has none; use one of: {', '.join(RESNET_BACKBONES)}"
            )
        if not isinstance(self.detail_head, bool):
            raise ConfigError(f"detail_head must be true or false, got {self.detail_head!r}")
        if self.detail_head and (self.backbone != "mobilenetv2" or self.head != "lite"):
            raise ConfigError(
                f"detail_head needs backbone mobilenetv2 and head lite (their stride-4 feature and stride-8 "
                f"logits), not backbone={self.backbone!r}, head={self.head!r}"
            )
        self.input_size = parse_input_size(self.input_size)
        self.mean = _triple("mean", self.mean, positive=False)
        self.std = _triple("std", self.std, positive=True)
        if self.temporal is not None and not isinstance(self.temporal, dict):
            raise ConfigError(f"temporal must be a mapping or null, got {type(self.temporal).__name__}")
        if self.temporal is not None and self.detail_head:
            # temporal models classify the fused stride-8 feature; the detail classifier has no place there
            raise ConfigError("detail_head is for per-frame models; a temporal model (temporal: ...) has none")

    # -- conversion -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values only (lists, not tuples), safe for YAML and ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["input_size"] = None if self.input_size is None else list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if not self.detail_head:  # left out when off: such files stay readable by 0.3.0 and earlier
            del d["detail_head"]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ConfigError(
                f"unknown model config field(s): {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "ModelConfig":
        """Read a config file; the mapping may sit at the top level or under a ``model:`` key."""
        import yaml

        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"model config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if isinstance(data, dict) and set(data) == {"model"}:
            data = data["model"]
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None

    def replace(self, **changes: Any) -> "ModelConfig":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def default_config() -> ModelConfig:
    """The default model: MobileNetV2 (output stride 16) + LiteHead, CamVid's 11 classes at 360x480."""
    return ModelConfig()


__all__ = [
    "ModelConfig",
    "ConfigError",
    "default_config",
    "parse_input_size",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BACKBONES",
    "RESNET_BACKBONES",
    "HEADS",
    "OUTPUT_STRIDES",
]
