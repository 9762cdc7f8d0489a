"""ST_Memory (Zhuang et al., github jfzhuang/ST_Memory) checkpoints -> :class:`TemporalSegNet` state_dicts.

The reference saves ``net.module.state_dict()`` of its ``SegRefine``: a flat dict with

- ``pspnet.backbone.*`` / ``pspnet.decode_head.*`` / ``pspnet.auxiliary_head.*``: mmsegmentation's
  PSPNet-R50-d8 (ResNetV1c-50, PSP head 2048 -> 512, FCN auxiliary head),
- ``STF.*``: ``pe_enc`` (1, 512, 3, 128, 256), ``pe_dec`` (1, 512, 1, 128, 256),
  ``encoder.layers.0.{self_attn.self_attn_{long,short}.*, linear1, linear2, norm1, norm2}``,
  ``decoder.layers.0.{self_attn,multihead_attn}.self_attn_{long,short}.*``, ``linear1``, ``linear2``,
  ``norm1-3``,
- ``MAR.*`` (the MAR stage's checkpoints only): ``memory_key``/``memory_value`` (1, 190, 512),
  ``HEdecoder.attn.to_{q,k,v}.{0,1,2}.weight``, ``HEdecoder.attn.to_out.0.*``,
  ``HEdecoder.{norm1,linear1,linear2,norm2}.*``.

Our modules use the same names below ``perframe`` (through
:func:`vsseg_ros.core.models.import_mmseg.mmseg_pspnet_to_ours`), ``stf`` and ``mar``, so the conversion is a
renaming of the prefixes plus a strict check of every key and shape against the network the checkpoint
describes. Example::

    state = torch.load("best.pth", map_location="cpu", weights_only=True)
    config = st_memory_config(state)                  # PSPNet-R50 + STF (+ MAR), 19 classes, centered T=3
    model = TemporalSegNet(config)
    model.load_state_dict(st_memory_to_ours(state, config))
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.models.import_mmseg import LAYER3_BLOCKS_TO_DEPTH, mmseg_pspnet_to_ours, unwrap_state_dict
from vsseg_ros.core.models.state_dict import listing, state_dict_mismatch

#: reference top-level module -> ours (the PSPNet part goes through the mmseg importer)
PSPNET_PREFIX = "pspnet."
PREFIXES = {"STF.": "stf.", "MAR.": "mar."}
#: the reference's fixed settings that its weights do not show
REFERENCE_HEADS = 2
REFERENCE_BLOCK = 16
REFERENCE_DROPOUT = 0.1
REFERENCE_INPUT_SIZE = (1024, 2048)


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Keys saved from an ``nn.DataParallel`` wrapper start with ``module.``; the reference strips them too."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _load_state(state: Any) -> dict[str, Tensor]:
    return _strip_module(unwrap_state_dict(state, "ST_Memory state_dict"))


def config_for_st_memory(
    num_classes: int = 19,
    depth: int = 50,
    mar: bool = True,
    frames: int = 3,
    pe_size: tuple[int, int] = (128, 256),
    stf_ffn: int = 256,
    mar_dim: int = 256,
    mar_ffn: int = 256,
    slots_per_class: int = 10,
    aux_head: bool = True,
    input_size: Optional[tuple[int, int]] = REFERENCE_INPUT_SIZE,
    name: Optional[str] = None,
) -> ModelConfig:
    """The reference setup: mmseg's PSPNet-R{depth}-d8 (features 512 wide at stride 8), STF at the feature
    width (2 heads, FFN 256, 16x16 blocks, dropout 0.1, positional encodings 128x256), MAR (10 slots per class,
    q/k/v width 256, FFN 256), frames t-1, t, t+1 around the labelled one (``centered``)."""
    from vsseg_ros.core.models.import_mmseg import config_for_mmseg_pspnet

    base = config_for_mmseg_pspnet(depth, num_classes=num_classes, aux_head=aux_head, input_size=input_size)
    temporal: dict[str, Any] = {
        "frames": frames,
        "mode": "centered",
        "stf": {
            "heads": REFERENCE_HEADS,
            "ffn": stf_ffn,
            "block": REFERENCE_BLOCK,
            "dropout": REFERENCE_DROPOUT,
            "pe_size": list(pe_size),
        },
        "mar": (
            {"slots_per_class": slots_per_class, "dim": mar_dim, "ffn": mar_ffn, "dropout": REFERENCE_DROPOUT}
            if mar
            else None
        ),
    }
    return base.replace(name=name or f"pspnet_r{depth}_stf{'_mar' if mar else ''}", temporal=temporal)


def _shape(state: Mapping[str, Tensor], key: str, dims: int) -> tuple[int, ...]:
    t = state.get(key)
    if t is None:
        raise CheckpointError(f"ST_Memory state_dict: {key} is missing; cannot tell the model's size")
    if t.dim() != dims:
        raise CheckpointError(f"ST_Memory state_dict: {key} has shape {tuple(t.shape)}, expected {dims} dims")
    return tuple(t.shape)


def st_memory_config(
    state: Any, input_size: Optional[tuple[int, int]] = REFERENCE_INPUT_SIZE, name: Optional[str] = None
) -> ModelConfig:
    """The :class:`ModelConfig` an ST_Memory state_dict describes: depth and classes from the PSPNet weights,
    T and the positional-encoding size from ``STF.pe_enc``, the FFN widths and MAR sizes from their linears.
    Heads (2), block (16) and dropout (0.1) are not visible in the weights: the reference's values are used."""
    sd = _load_state(state)
    blocks = {int(k.split(".")[3]) for k in sd if k.startswith(PSPNET_PREFIX + "backbone.layer3.")}
    depth = LAYER3_BLOCKS_TO_DEPTH.get(max(blocks) + 1) if blocks else None
    if depth not in (50, 101):
        raise CheckpointError(
            f"ST_Memory state_dict: pspnet.backbone.layer3 has {max(blocks) + 1 if blocks else 0} "
            "blocks; expected a ResNetV1c-50 (6) or -101 (23)"
        )
    num_classes = _shape(sd, PSPNET_PREFIX + "decode_head.conv_seg.weight", 4)[0]
    _, _, frames, ph, pw = _shape(sd, "STF.pe_enc", 5)
    stf_ffn = _shape(sd, "STF.encoder.layers.0.linear1.weight", 2)[0]
    has_mar = any(k.startswith("MAR.") for k in sd)
    mar_kw: dict[str, int] = {}
    if has_mar:
        slots = _shape(sd, "MAR.memory_key", 3)[1]
        if slots % num_classes:
            raise CheckpointError(
                f"ST_Memory state_dict: MAR.memory_key has {slots} slots, not a multiple of the {num_classes} classes"
            )
        mar_kw = {
            "slots_per_class": slots // num_classes,
            "mar_dim": _shape(sd, "MAR.HEdecoder.attn.to_q.1.weight", 2)[0],
            "mar_ffn": _shape(sd, "MAR.HEdecoder.linear1.weight", 2)[0],
        }
    return config_for_st_memory(
        num_classes=num_classes,
        depth=depth,
        mar=has_mar,
        frames=frames,
        pe_size=(ph, pw),
        stf_ffn=stf_ffn,
        aux_head=any(k.startswith(PSPNET_PREFIX + "auxiliary_head.") for k in sd),
        input_size=input_size,
        name=name,
        **mar_kw,
    )


def st_memory_to_ours(state: Any, config: Optional[ModelConfig] = None) -> dict[str, Tensor]:
    """An ST_Memory ``SegRefine`` state_dict (flat, ``module.``-prefixed or wrapped in ``{"state_dict": ...}``)
    as :class:`TemporalSegNet` keys. ``config`` defaults to :func:`st_memory_config` of the same state.
    Raises :class:`CheckpointError` listing missing and unexpected keys and shape mismatches."""
    sd = _load_state(state)
    if config is None:
        config = st_memory_config(sd)
    if config.temporal is None:
        raise CheckpointError("ST_Memory import needs a temporal config (see config_for_st_memory)")
    perframe_cfg = config.replace(temporal=None)
    pspnet = {k: v for k, v in sd.items() if k.startswith(PSPNET_PREFIX)}
    if not pspnet:
        raise CheckpointError(f"ST_Memory state_dict: no {PSPNET_PREFIX}* keys (first keys: {listing(list(sd)[:5])})")
    out = {
        "perframe." + k: v for k, v in mmseg_pspnet_to_ours(pspnet, prefix=PSPNET_PREFIX, config=perframe_cfg).items()
    }
    foreign: list[str] = []
    for key, value in sd.items():
        if key.startswith(PSPNET_PREFIX):
            continue
        for theirs, ours in PREFIXES.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs) :]] = value
                break
        else:
            foreign.append(key)
    from vsseg_ros.core.models.temporal import TemporalSegNet

    with torch.device("meta"):  # names and shapes only
        expected = TemporalSegNet(config).state_dict()
    problems = state_dict_mismatch(expected, out)
    if foreign:
        extra = f"{len(foreign)} key(s) outside pspnet./STF./MAR.: {listing(foreign)}"
        problems = f"{problems}; {extra}" if problems else extra
    if problems:
        raise CheckpointError(
            f"ST_Memory state_dict does not fit {config.name} "
            f"({config.backbone} + PSP, STF{' + MAR' if config.temporal.get('mar') else ''}, "
            f"{config.num_classes} classes): {problems}"
        )
    return {k: out[k].contiguous() for k in expected}


__all__ = ["st_memory_to_ours", "st_memory_config", "config_for_st_memory"]
