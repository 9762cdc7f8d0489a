"""The ``temporal`` section of a :class:`ModelConfig`: which temporal modules a model has and how they are sized.

::

    temporal:
      frames: 3            # T, the window (1..8; 1: the labelled frame alone, MAR only)
      mode: causal         # causal: frames t-T+1..t label t; centered: t-1, t, t+1 label t (one frame late)
      stf:                 # spatial-temporal fusion (null: none)
        heads: 2
        ffn: 256           # hidden width of the feed-forward blocks
        block: 16          # interlaced sparse attention block side, in feature pixels
        dropout: 0.1
        pe_size: [128, 256]  # learned positional encodings (T, pe_h, pe_w), resized to the feature grid
        dim: null          # attention width; null = the feature width (the reference); else 1x1 in/out
                           # projections and a residual around STF (the light default)
        pool: 1            # attend on features average-pooled by this factor (1 = full resolution)
      mar:                 # memory-augmented refinement (null: none)
        slots_per_class: 10
        dim: 256           # width of the q/k/v projections
        ffn: 256
        dropout: 0.1
      flow2seg:            # optical-flow path, fused residually with the image logits (null: none)
        preset: medium     # DIS preset: ultrafast, fast, medium
        scale: 0.5         # DIS runs at this fraction of the network input size (0.5: within 10 ms at 360x480)
        fusion_channels: 64
        alpha: 0.5         # loss weights: L_image + L_fusion + alpha L_flow + beta L_aux
        beta: 0.4
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from vsseg_ros.core.config import ConfigError

MODES = ("causal", "centered")
MIN_FRAMES, MAX_FRAMES = 1, 8
DIS_PRESETS = ("ultrafast", "fast", "medium")


def _int(where: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _float(where: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
        raise ConfigError(f"{where} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _fill(cls: type, where: str, d: Any) -> Any:
    """``cls(**d)`` after checking ``d`` is a mapping of known fields."""
    if d is None:
        return None
    if d is True:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping or null, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise ConfigError(f"unknown field(s) in {where}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**d)


@dataclass
class STFConfig:
    heads: int = 2
    ffn: int = 256
    block: int = 16
    dropout: float = 0.1
    pe_size: tuple[int, int] = (128, 256)
    dim: Optional[int] = None
    pool: int = 1

    def __post_init__(self) -> None:
        self.heads = _int("temporal.stf.heads", self.heads, 1, 64)
        self.ffn = _int("temporal.stf.ffn", self.ffn, 1, 65536)
        self.block = _int("temporal.stf.block", self.block, 1, 256)
        self.dropout = _float("temporal.stf.dropout", self.dropout, 0.0, 0.9)
        pe = self.pe_size
        if isinstance(pe, (str, bytes)) or not hasattr(pe, "__len__") or len(pe) != 2:
            raise ConfigError(f"temporal.stf.pe_size must be [height, width], got {pe!r}")
        self.pe_size = (
            _int("temporal.stf.pe_size[0]", pe[0], 1, 4096),
            _int("temporal.stf.pe_size[1]", pe[1], 1, 4096),
        )
        if self.dim is not None:
            self.dim = _int("temporal.stf.dim", self.dim, 1, 65536)
            if self.dim % self.heads:
                raise ConfigError(f"temporal.stf.dim={self.dim} must be divisible by heads={self.heads}")
        self.pool = _int("temporal.stf.pool", self.pool, 1, 16)


@dataclass
class MARConfig:
    slots_per_class: int = 10
    dim: int = 256
    ffn: int = 256
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.slots_per_class = _int("temporal.mar.slots_per_class", self.slots_per_class, 1, 4096)
        self.dim = _int("temporal.mar.dim", self.dim, 1, 65536)
        self.ffn = _int("temporal.mar.ffn", self.ffn, 1, 65536)
        self.dropout = _float("temporal.mar.dropout", self.dropout, 0.0, 0.9)


@dataclass
class Flow2SegConfig:
    preset: str = "medium"
    scale: float = 0.5  # medium at half size: more accurate than fast at full size and within 10 ms at 360x480
    fusion_channels: int = 64
    alpha: float = 0.5
    beta: float = 0.4

    def __post_init__(self) -> None:
        if self.preset not in DIS_PRESETS:
            raise ConfigError(f"temporal.flow2seg.preset must be one of {', '.join(DIS_PRESETS)}, got {self.preset!r}")
        self.scale = _float("temporal.flow2seg.scale", self.scale, 0.05, 1.0)
        self.fusion_channels = _int("temporal.flow2seg.fusion_channels", self.fusion_channels, 1, 4096)
        self.alpha = _float("temporal.flow2seg.alpha", self.alpha, 0.0, 100.0)
        self.beta = _float("temporal.flow2seg.beta", self.beta, 0.0, 100.0)


@dataclass
class TemporalConfig:
    frames: int = 3
    mode: str = "causal"
    stf: Optional[STFConfig] = field(default_factory=STFConfig)
    mar: Optional[MARConfig] = None
    flow2seg: Optional[Flow2SegConfig] = None

    def __post_init__(self) -> None:
        self.frames = _int("temporal.frames", self.frames, MIN_FRAMES, MAX_FRAMES)
        if self.mode not in MODES:
            raise ConfigError(f"temporal.mode must be causal or centered, got {self.mode!r}")
        if self.stf is None and self.mar is None and self.flow2seg is None:
            raise ConfigError(
                "temporal: give at least one of stf, mar, flow2seg (or set temporal to null for a per-frame model)"
            )
        # A window of one frame has nothing to fuse over time: only MAR (an inner-frame refinement) applies.
        if self.frames == 1 and (self.stf is not None or self.flow2seg is not None or self.mode != "causal"):
            raise ConfigError(
                "temporal.frames=1 (the labelled frame alone) takes MAR only: set stf and flow2seg "
                "to null and mode to causal, or use frames >= 2"
            )

    @classmethod
    def from_dict(cls, d: Any) -> "TemporalConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"temporal must be a mapping, got {type(d).__name__}")
        known = {"frames", "mode", "stf", "mar", "flow2seg"}
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ConfigError(f"unknown field(s) in temporal: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        # an absent section takes the dataclass default (STF on, MAR and Flow2Seg off); null switches it off
        return cls(
            frames=d.get("frames", 3),
            mode=d.get("mode", "causal"),
            stf=_fill(STFConfig, "temporal.stf", d.get("stf", True)),
            mar=_fill(MARConfig, "temporal.mar", d.get("mar")),
            flow2seg=_fill(Flow2SegConfig, "temporal.flow2seg", d.get("flow2seg")),
        )

    def to_dict(self) -> dict[str, Any]:
        def plain(x: Any) -> Any:
            if x is None:
                return None
            out = dataclasses.asdict(x)
            return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()}

        return {
            "frames": self.frames,
            "mode": self.mode,
            "stf": plain(self.stf),
            "mar": plain(self.mar),
            "flow2seg": plain(self.flow2seg),
        }


__all__ = ["TemporalConfig", "STFConfig", "MARConfig", "Flow2SegConfig", "MODES"]
