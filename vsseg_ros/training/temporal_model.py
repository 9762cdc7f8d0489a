"""The temporal model as stages 2-3 train it: built on a trained per-frame network (frozen), MAR left out while
STF trains, the fusion step DDP wraps, and the segmenter validation streams it through."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from vsseg_ros.core.config import ModelConfig
from vsseg_ros.training.stream import normalise
from vsseg_ros.training.validation import stream_scores


def build_from_init(config: ModelConfig, init: Path) -> nn.Module:
    """A TemporalSegNet whose per-frame network carries the stage-1 weights of ``init`` (a per-frame checkpoint
    of the same backbone/head); the temporal modules start from their own initialisation."""
    from vsseg_ros.core.checkpoint import load_checkpoint, load_state_dict_checked
    from vsseg_ros.core.errors import CheckpointError
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


def stf_trainable(model: nn.Module) -> list[nn.Parameter]:
    """Stage 2: STF's parameters, set to train (MAR frozen); what its optimiser steps."""
    freeze(model.mar)
    model.stf.train()
    params = list(model.stf.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def mar_trainable(model: nn.Module, classifier_lr_mult: float) -> list[dict[str, Any]]:
    """Stage 3: MAR's parameters and the classifier's, set to train (STF frozen), as optimiser groups with their
    ``lr_mult``. MAR changes the feature the classifier reads (LayerNorm): the classifier, trained on the head's
    (ReLU) feature, must re-learn along with it."""
    freeze(model.stf)
    model.mar.train()
    head = model.perframe.head
    classifier = getattr(head, "classifier", None) or head.conv_seg
    mar_params, cls_params = list(model.mar.parameters()), list(classifier.parameters())
    for p in mar_params + cls_params:
        p.requires_grad_(True)
    return [{"params": mar_params, "lr_mult": 1.0}, {"params": cls_params, "lr_mult": classifier_lr_mult}]


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


def window_features(model: nn.Module, frames: Tensor, mean: Sequence[float], std: Sequence[float]) -> list[Tensor]:
    """The frozen per-frame network's features of each frame of a batch of windows ``(b, t, 3, h, w)`` (uint8)."""
    x = normalise(frames, mean, std)
    with torch.no_grad():
        return [model.frame_features(x[:, i]) for i in range(x.shape[1])]


def memory_batches(model: nn.Module, clips: Iterator[Any], n: int, config: ModelConfig) -> Iterator[Any]:
    """``(fused feature, logits, label)`` of ``n`` batches of ``clips`` with the STF-fused features of the target
    frame, unrefined: what MAR's memory is built from."""
    target = model.target_index(model.frames)
    for _ in range(n):
        b = next(clips)
        feats = window_features(model, b["frames"], config.mean, config.std)
        with torch.no_grad():
            fused = model.fuse(feats, target, boundary=False, refine=False)
        yield fused["feature"], fused["logits"], b["label"].long()


def segmenter_of(model: nn.Module, class_map: Any, model_id: str) -> Any:
    """A TemporalSegmenter (on the CPU) of ``model``, as the node and ``vsseg-ros eval`` run it."""
    from vsseg_ros.core.temporal_segmenter import TemporalSegmenter

    return TemporalSegmenter(model, class_map, model_id, device="cpu")  # it takes its own copy


def perframe_baseline(init: Path, val_data: Any, class_names: Sequence[str], dataset: str) -> dict[str, Any]:
    """The stream scores of the per-frame checkpoint ``init`` itself: the bar a temporal model has to beat."""
    from vsseg_ros.core.loading import load_segmenter

    return stream_scores(load_segmenter(str(init), device="cpu"), val_data, class_names, dataset)
