"""mmsegmentation PSPNet (and FCN) checkpoints -> :class:`PerFrameSegNet` state_dicts.

mmsegmentation stores an ``EncoderDecoder`` as ``backbone.*`` (ResNetV1c: ``stem.{0,1,3,4,6,7}``,
``layerN.i.conv1/bn1/.../downsample.{0,1}``), ``decode_head.*`` (PSPHead: ``psp_modules.{i}.1.conv/bn``,
``bottleneck.conv/bn``, ``conv_seg``) and ``auxiliary_head.*`` (FCNHead: ``convs.0.conv/bn``, ``conv_seg``),
usually wrapped as ``{"state_dict": ..., "meta": ...}``. Our modules carry the same names below
``backbone``, ``head`` and ``aux_head``, so the conversion is a renaming of the three prefixes plus a strict
check of every key and shape against the network the checkpoint describes.

Example::

    state = torch.load("pspnet_r50-d8_512x1024_80k_cityscapes.pth", map_location="cpu", weights_only=True)
    config, weights = mmseg_to_ours(state)          # or: mmseg_pspnet_to_ours(state) with a config you built
    model = PerFrameSegNet(config); model.load_state_dict(weights)
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from vsseg_ros.core.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.models.state_dict import listing, state_dict_mismatch

#: mmseg top-level module -> ours
PREFIXES = {"backbone.": "backbone.", "decode_head.": "head.", "auxiliary_head.": "aux_head."}
#: number of blocks in layer3 -> ResNet depth
LAYER3_BLOCKS_TO_DEPTH = {2: 18, 6: 50, 23: 101}
#: mmseg's Cityscapes models are evaluated on whole 1024x2048 frames
CITYSCAPES_SIZE = (1024, 2048)


def unwrap_state_dict(obj: Any, source: str = "state") -> dict[str, Tensor]:
    """The ``state_dict`` inside an mmseg/mmengine checkpoint dict, or ``obj`` itself if it already is one."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{source}: expected a state_dict or an mmseg checkpoint dict with a 'state_dict' "
            f"entry, found {type(obj).__name__}{' (empty)' if isinstance(obj, Mapping) else ''}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not named tensors: {listing(bad)}")
    return dict(obj)


def _rename(state: Mapping[str, Tensor], prefix: str, source: str) -> dict[str, Tensor]:
    """Strip ``prefix`` and map mmseg's top-level names onto ours. With a prefix, keys outside it belong to
    something else (e.g. a temporal model around the PSPNet) and are left out; without one, every key must be
    a backbone or head key."""
    out: dict[str, Tensor] = {}
    foreign: list[str] = []
    for key, value in state.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :]
        for theirs, ours in PREFIXES.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs) :]] = value
                break
        else:
            foreign.append(prefix + key)
    if foreign:
        raise CheckpointError(
            f"{source}: unexpected key(s) outside backbone./decode_head./auxiliary_head.: {listing(foreign)}"
        )
    if not out:
        where = f"under prefix {prefix!r}" if prefix else "at all"
        some = listing(list(state)[:5])
        raise CheckpointError(f"{source}: no mmseg backbone./decode_head. keys {where} (first keys: {some})")
    return out


def infer_mmseg_config(
    state: Mapping[str, Tensor],
    prefix: str = "",
    name: Optional[str] = None,
    input_size: Optional[tuple[int, int]] = CITYSCAPES_SIZE,
) -> ModelConfig:
    """The :class:`ModelConfig` an mmseg ResNet(V1c) + PSP/FCN state_dict describes (output stride 8, as in
    mmseg's "-d8" models; the stride is not visible in the weights)."""
    ours = _rename(unwrap_state_dict(state), prefix, "state")
    return _infer(ours, "state", name, input_size)


def _infer(
    ours: Mapping[str, Tensor], source: str, name: Optional[str], input_size: Optional[tuple[int, int]]
) -> ModelConfig:
    blocks = {int(m.group(1)) for k in ours if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    depth = LAYER3_BLOCKS_TO_DEPTH.get(max(blocks) + 1) if blocks else None
    if depth is None:
        raise CheckpointError(
            f"{source}: cannot tell the ResNet depth: backbone.layer3 has "
            f"{max(blocks) + 1 if blocks else 0} blocks (expected 2, 6 or 23 for ResNet-18/50/101)"
        )
    deep_stem = any(k.startswith("backbone.stem.") for k in ours)
    backbone = f"resnetv1c{depth}" if deep_stem else f"resnet{depth}"
    if any(k.startswith("head.psp_modules.") for k in ours):
        head, width_key = "psp", "head.bottleneck.conv.weight"
    elif any(k.startswith("head.convs.") for k in ours):
        head, width_key = "fcn", "head.convs.0.conv.weight"
    else:
        raise CheckpointError(f"{source}: decode_head is neither a PSPHead (psp_modules.*) nor an FCNHead (convs.*)")
    seg, width = ours.get("head.conv_seg.weight"), ours.get(width_key)
    for key, w in (("head.conv_seg.weight", seg), (width_key, width)):
        if w is None or w.dim() != 4:
            raise CheckpointError(f"{source}: decode_{key} is missing or not a conv weight")
    assert seg is not None and width is not None  # checked just above
    # the head's width from its main conv (so a wrong-sized conv_seg shows up as a shape mismatch)
    num_classes, channels = int(seg.shape[0]), int(width.shape[0])
    # mmseg's names: "r50" is ResNetV1c-50, "r50b" the 7x7-stem ResNet-50
    default_name = f"{'pspnet' if head == 'psp' else 'fcn'}_r{depth}{'' if deep_stem else 'b'}_d8"
    return ModelConfig(
        name=name or default_name,
        backbone=backbone,
        output_stride=8,
        head=head,
        head_channels=channels,
        num_classes=num_classes,
        boundary_head=False,
        aux_head=any(k.startswith("aux_head.") for k in ours),
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _check_against(config: ModelConfig, ours: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    from vsseg_ros.core.models.perframe import PerFrameSegNet

    with torch.device("meta"):  # names and shapes only: no memory, no initialisation cost
        expected = PerFrameSegNet(config).state_dict()
    # checkpoints from before BatchNorm counted its batches lack these; they do not affect inference
    for k, v in expected.items():
        if k.endswith(".num_batches_tracked") and k not in ours:
            ours[k] = torch.zeros((), dtype=v.dtype)
    problems = state_dict_mismatch(expected, ours)
    if problems:
        raise CheckpointError(
            f"{source}: the weights do not fit {config.backbone} + {config.head} head "
            f"({config.num_classes} classes{', aux head' if config.aux_head else ''}) "
            f"in mmseg's layout: {problems}"
        )
    return {k: ours[k] for k in expected}


def mmseg_to_ours(
    state: Any, prefix: str = "", name: Optional[str] = None, input_size: Optional[tuple[int, int]] = CITYSCAPES_SIZE
) -> tuple[ModelConfig, dict[str, Tensor]]:
    """Convert an mmseg ResNet(V1c) + PSPHead/FCNHead (+ auxiliary FCNHead) checkpoint; returns the config it
    describes and the state_dict for ``PerFrameSegNet(config)``. Raises CheckpointError on any mismatch."""
    ours = _rename(unwrap_state_dict(state), prefix, "mmseg state_dict")
    config = _infer(ours, "mmseg state_dict", name, input_size)
    return config, _check_against(config, ours, "mmseg state_dict")


def mmseg_pspnet_to_ours(state: Any, prefix: str = "", config: Optional[ModelConfig] = None) -> dict[str, Tensor]:
    """An mmsegmentation PSPNet-R50/R101-d8 state_dict (keys ``backbone.*``, ``decode_head.*``,
    ``auxiliary_head.*``, all under ``prefix`` such as ``"pspnet."``; an ``{"state_dict": ...}`` wrapper is
    unpacked) as :class:`PerFrameSegNet` keys (``backbone.*``, ``head.*``, ``aux_head.*``).

    The network is inferred from the weights unless ``config`` is given; every key and shape is checked and
    :class:`CheckpointError` lists the missing and unexpected keys and shape mismatches. Missing BatchNorm
    ``num_batches_tracked`` counters (irrelevant at inference) are filled with 0.
    """
    ours = _rename(unwrap_state_dict(state), prefix, "mmseg state_dict")
    if config is None:
        config = _infer(ours, "mmseg state_dict", None, CITYSCAPES_SIZE)
    if config.head != "psp":
        raise CheckpointError(
            f"mmseg state_dict: not a PSPNet: the decode head is {config.head!r} "
            "(use mmseg_to_ours for FCN checkpoints)"
        )
    return _check_against(config, ours, "mmseg state_dict")


def config_for_mmseg_pspnet(
    depth: int,
    num_classes: int = 19,
    aux_head: bool = True,
    boundary_head: bool = False,
    input_size: Optional[tuple[int, int]] = CITYSCAPES_SIZE,
    name: Optional[str] = None,
) -> ModelConfig:
    """The config of mmseg's PSPNet-R{depth}-d8: ResNetV1c (deep stem), output stride 8, PSP head 512 wide,
    auxiliary FCN head on layer3, ImageNet mean/std on RGB in 0-1 (mmseg's 123.675/58.395... on 0-255)."""
    if depth not in (50, 101):
        raise ValueError(f"mmseg's PSPNet-d8 models use ResNetV1c-50 or -101, got depth {depth!r}")
    return ModelConfig(
        name=name or f"pspnet_r{depth}_d8",
        backbone=f"resnetv1c{depth}",
        output_stride=8,
        head="psp",
        head_channels=512,
        num_classes=num_classes,
        boundary_head=boundary_head,
        aux_head=aux_head,
        input_size=input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


__all__ = [
    "mmseg_pspnet_to_ours",
    "mmseg_to_ours",
    "config_for_mmseg_pspnet",
    "infer_mmseg_config",
    "unwrap_state_dict",
]
