"""The temporal model as stages 2-3 train it: built on a trained per-frame network (frozen), MAR left out while
STF trains, the fusion step DDP wraps, and the segmenter validation streams it through."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional, Sequence

from torch import Tensor, nn

from vsseg_ros.core.config import ModelConfig
from vsseg_ros.training.validation import stream_scores


def build_from_init(config: ModelConfig, init: Path) -> nn.Module:
    """A TemporalSegNet whose per-frame network carries the stage-1 weights of ``init`` (a per-frame checkpoint
    of the same backbone/head); the temporal modules start from their own initialisation."""
    from vsseg_ros.core.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked
    from vsseg_ros.core.models.temporal import TemporalSegNet

    ckpt = load_checkpoint(init)
    if ckpt.config.temporal is not None:
        raise CheckpointError(f"{init}: init must be a per-frame checkpoint (stage 1), this one is temporal")
    model = TemporalSegNet(config)
    load_state_dict_checked(model.perframe, ckpt.state_dict, source=str(init))
    return model


def freeze(module: Optional[nn.Module]) -> None:
    """No gradients and eval mode (BatchNorm statistics and dropout fixed) for ``module``."""
    if module is None:
        return
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


def without_mar(model: nn.Module, config: ModelConfig) -> tuple[nn.Module, ModelConfig]:
    """A copy of ``model`` and its config with MAR removed (the STF stage runs and is saved without it: an
    unbuilt memory would only disturb the features)."""
    m = copy.deepcopy(model)
    m.mar = None
    temporal = dict(config.temporal or {})
    temporal["mar"] = None
    return m, config.replace(temporal=temporal)


class FusionStep(nn.Module):
    """The trained part of a step as one module (what DistributedDataParallel wraps, so the gradients of STF,
    MAR and the classifier are averaged over the processes): the fusion of a window's per-frame features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: list[Tensor], target: int, refine: bool) -> dict[str, Optional[Tensor]]:
        return self.model.fuse(features, target, boundary=False, refine=refine)


def segmenter_of(model: nn.Module, class_map: Any, model_id: str) -> Any:
    """A TemporalSegmenter (on the CPU) of ``model``, as the node and ``vsseg-ros eval`` run it."""
    from vsseg_ros.core.temporal_segmenter import TemporalSegmenter

    return TemporalSegmenter(model, class_map, model_id, device="cpu")  # it takes its own copy


def perframe_baseline(init: Path, val_data: Any, class_names: Sequence[str], dataset: str) -> dict[str, Any]:
    """The stream scores of the per-frame checkpoint ``init`` itself: the bar a temporal model has to beat."""
    from vsseg_ros.core.loading import load_segmenter

    return stream_scores(load_segmenter(str(init), device="cpu"), val_data, class_names, dataset)
