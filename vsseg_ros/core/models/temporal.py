"""The temporal network: a per-frame network whose features are fused over a window of frames.

``TemporalSegNet(config)`` with ``config.temporal`` set (see :mod:`vsseg_ros.core.temporal_config`):

- ``frame_features(x)``: the once-per-frame work (backbone + head feature), which a streaming segmenter keeps
  per frame in a ring buffer;
- ``fuse(features, target, flow)``: STF over the window (target frame as query), then MAR, then the per-frame
  classifier (and the boundary head on the fused, pre-MAR feature); with a Flow2Seg path the flow logits are
  fused residually with the image logits;
- ``forward(frames, target)``: the naive way, both steps at once (training and the streaming-equivalence test).
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.core.models.mar import MAR
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.models.stf import STF
from vsseg_ros.core.temporal_config import TemporalConfig


class TemporalSegNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.temporal is None:
            raise ValueError("TemporalSegNet needs a config with a temporal section; use PerFrameSegNet otherwise")
        self.config = config
        self.temporal = TemporalConfig.from_dict(config.temporal)
        self.perframe = PerFrameSegNet(config.replace(temporal=None))
        D, K = self.perframe.feature_channels, self.perframe.num_classes
        t = self.temporal
        self.stf: Optional[STF] = None
        if t.stf is not None:
            s = t.stf
            if s.dim is None and D % s.heads:
                raise ConfigError(
                    f"temporal.stf.heads={s.heads} must divide the feature width {D} "
                    "(head_channels) when temporal.stf.dim is null"
                )
            self.stf = STF(
                D,
                t.frames,
                heads=s.heads,
                ffn=s.ffn,
                block=s.block,
                dropout=s.dropout,
                pe_size=s.pe_size,
                dim=s.dim,
                pool=s.pool,
            )
        self.mar: Optional[MAR] = None
        if t.mar is not None:
            m = t.mar
            self.mar = MAR(D, K, slots_per_class=m.slots_per_class, dim=m.dim, ffn=m.ffn, dropout=m.dropout)
        self.flow2seg: Optional[nn.Module] = None
        if t.flow2seg is not None:
            from vsseg_ros.core.models.flow2seg import Flow2SegPath

            self.flow2seg = Flow2SegPath(K, output_stride=8, fusion_channels=t.flow2seg.fusion_channels)

    # -- properties ---------------------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        return self.temporal.frames

    @property
    def mode(self) -> str:
        return self.temporal.mode

    @property
    def num_classes(self) -> int:
        return self.perframe.num_classes

    @property
    def stride(self) -> int:
        return self.perframe.stride

    def target_index(self, n: int) -> int:
        """Which of ``n`` window frames (oldest first) is labelled: the newest (causal) or the one before it
        (centered: the window reaches one frame into the future)."""
        if n < 1:
            raise ValueError("a window has at least one frame")
        return n - 1 if self.mode == "causal" or n < 2 else n - 2

    # -- the two steps -------------------------------------------------------------------------------------

    def frame_features(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) normalised frames -> (N, D, h, w) per-frame features."""
        return self.perframe.forward_features(x)

    def fuse(
        self,
        features: Sequence[Tensor],
        target: int,
        flow: Optional[Tensor] = None,
        boundary: bool = True,
        refine: bool = True,
        rows: Optional[int] = None,
    ) -> dict[str, Optional[Tensor]]:
        """Outputs for ``features[target]`` fused with the rest of the window (n <= T frames, oldest first).

        ``flow``: (N, 2, H, W) flow into the target frame for a Flow2Seg path (None: image logits only).
        ``refine=False`` skips MAR (building its memory needs the features MAR sees).
        ``rows``: refine and classify only the first ``rows`` rows of the grid, so the logits have that many
        (a segmenter passes the rows its output maps read; the rest cover only the input's padding). MAR and
        the classifier work pixel by pixel, so those rows are exactly the full map's. Ignored with a flow:
        Flow2Seg's 3x3 convolutions need the whole map. ``feature`` and ``boundary`` stay full size.
        """
        n = len(features)
        if not 1 <= n <= self.frames:
            raise ValueError(f"fuse() takes 1..{self.frames} frames, got {n}")
        if not 0 <= target < n:
            raise ValueError(f"target {target} is not among the {n} frames")
        if rows is not None and rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        x = features[target]
        if self.stf is not None:
            nominal = self.target_index(self.frames)
            x = self.stf(features, target, self.stf.positions(n, target, nominal))
        fused = x
        if rows is not None and (self.flow2seg is None or flow is None):
            x = x[:, :, :rows]  # a view; contiguous in the channels-last layout the segmenters use
        if self.mar is not None and refine:
            x = self.mar(x)
        logits = self.perframe.classify(x)
        out: dict[str, Optional[Tensor]] = {
            "logits": logits,
            "feature": fused,
            "boundary": self.perframe.boundary(fused) if boundary else None,
        }
        if self.flow2seg is not None and flow is not None:
            f = self.flow2seg(logits, flow)
            out["image_logits"], out["flow_logits"], out["logits"] = logits, f["flow_logits"], f["logits"]
        return out

    def forward(
        self, frames: Tensor, target: int, flow: Optional[Tensor] = None, boundary: bool = True
    ) -> dict[str, Optional[Tensor]]:
        """The naive way: per-frame features of all (N, T', 3, H, W) frames, then the fusion."""
        if frames.dim() != 5:
            raise ValueError(f"frames must be (N, T, 3, H, W), got {tuple(frames.shape)}")
        feats = [self.frame_features(frames[:, i]) for i in range(frames.shape[1])]
        return self.fuse(feats, target, flow=flow, boundary=boundary)


__all__ = ["TemporalSegNet"]
