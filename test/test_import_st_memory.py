"""ST_Memory checkpoint import: a state_dict laid out as the reference's SegRefine saves it (key names written
out here from its code: pspnet.* in mmseg's layout, STF.*, MAR.*) maps onto TemporalSegNet; problems are
listed by key. Tensors are on the meta device (names and shapes), except where values are checked."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.models.import_st_memory import config_for_st_memory, st_memory_config, st_memory_to_ours
from vsseg_ros.core.models.perframe import PerFrameSegNet

torch.set_num_threads(1)
D, FFN, MAR_DIM, CLASSES, SLOTS = 512, 256, 256, 19, 10


def _mha(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
    out = {}
    for step in ("long", "short"):
        p = f"{prefix}.self_attn_{step}."
        out.update(
            {
                p + "in_proj_weight": (3 * d, d),
                p + "in_proj_bias": (3 * d,),
                p + "out_proj.weight": (d, d),
                p + "out_proj.bias": (d,),
            }
        )
    return out


def _linear(prefix: str, o: int, i: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (o, i), **({f"{prefix}.bias": (o,)} if bias else {})}


def _norm(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (d,), f"{prefix}.bias": (d,)}


def reference_stf_mar_shapes(mar: bool = True, frames: int = 3) -> dict[str, tuple[int, ...]]:
    """STF.* and MAR.* names and shapes of the reference (lib/net/transformer*.py, dim 512, mlp 256, 19 x 10)."""
    s: dict[str, tuple[int, ...]] = {"STF.pe_enc": (1, D, frames, 128, 256), "STF.pe_dec": (1, D, 1, 128, 256)}
    e, dec = "STF.encoder.layers.0", "STF.decoder.layers.0"
    s.update(_mha(f"{e}.self_attn", D))
    s.update(
        {
            **_linear(f"{e}.linear1", FFN, D),
            **_linear(f"{e}.linear2", D, FFN),
            **_norm(f"{e}.norm1", D),
            **_norm(f"{e}.norm2", D),
        }
    )
    s.update({**_mha(f"{dec}.self_attn", D), **_mha(f"{dec}.multihead_attn", D)})
    s.update({**_linear(f"{dec}.linear1", FFN, D), **_linear(f"{dec}.linear2", D, FFN)})
    for i in (1, 2, 3):
        s.update(_norm(f"{dec}.norm{i}", D))
    if mar:
        s.update({"MAR.memory_key": (1, CLASSES * SLOTS, D), "MAR.memory_value": (1, CLASSES * SLOTS, D)})
        a = "MAR.HEdecoder.attn"
        for name in ("to_q", "to_k", "to_v"):
            s.update(
                {
                    **_linear(f"{a}.{name}.0", D, D, False),
                    **_linear(f"{a}.{name}.1", MAR_DIM, D, False),
                    **_linear(f"{a}.{name}.2", MAR_DIM, MAR_DIM, False),
                }
            )
        s.update(
            {
                **_linear(f"{a}.to_out.0", D, MAR_DIM),
                **_norm("MAR.HEdecoder.norm1", D),
                **_linear("MAR.HEdecoder.linear1", MAR_DIM, D),
                **_linear("MAR.HEdecoder.linear2", D, MAR_DIM),
                **_norm("MAR.HEdecoder.norm2", D),
            }
        )
    return s


@pytest.fixture(scope="module")
def pspnet_state() -> dict[str, torch.Tensor]:
    """mmseg's PSPNet-R50-d8 layout under pspnet. (ours renamed back: backbone, decode_head, auxiliary_head)."""
    cfg = config_for_st_memory().replace(temporal=None)
    with torch.device("meta"):
        ours = PerFrameSegNet(cfg).state_dict()
    back = {"backbone.": "pspnet.backbone.", "head.": "pspnet.decode_head.", "aux_head.": "pspnet.auxiliary_head."}
    out = {}
    for k, v in ours.items():
        for a, b in back.items():
            if k.startswith(a):
                out[b + k[len(a) :]] = v
    assert any(k.startswith("pspnet.backbone.stem.") for k in out)  # ResNetV1c deep stem
    return out


def reference_state(pspnet_state, mar: bool = True) -> dict[str, torch.Tensor]:
    state = dict(pspnet_state)
    state.update({k: torch.empty(shape, device="meta") for k, shape in reference_stf_mar_shapes(mar).items()})
    return state


def test_config_is_read_from_the_weights(pspnet_state) -> None:
    cfg = st_memory_config(reference_state(pspnet_state))
    assert (cfg.backbone, cfg.head, cfg.head_channels, cfg.num_classes, cfg.output_stride) == (
        "resnetv1c50",
        "psp",
        512,
        19,
        8,
    )
    t = cfg.temporal
    assert t["frames"] == 3 and t["mode"] == "centered"
    assert t["stf"]["pe_size"] == [128, 256] and t["stf"]["ffn"] == 256 and t["stf"]["heads"] == 2
    assert t["stf"]["block"] == 16 and t["stf"].get("dim") is None
    assert t["mar"] == {"slots_per_class": 10, "dim": 256, "ffn": 256, "dropout": 0.1}
    assert cfg == config_for_st_memory()
    stf_only = st_memory_config(reference_state(pspnet_state, mar=False))
    assert stf_only.temporal["mar"] is None


def test_every_reference_key_lands_on_ours(pspnet_state) -> None:
    state = reference_state(pspnet_state)
    mapped = st_memory_to_ours(state)
    assert mapped["stf.pe_enc"] is state["STF.pe_enc"]
    assert (
        mapped["stf.decoder.layers.0.multihead_attn.self_attn_long.in_proj_weight"]
        is state["STF.decoder.layers.0.multihead_attn.self_attn_long.in_proj_weight"]
    )
    assert mapped["mar.HEdecoder.attn.to_q.2.weight"] is state["MAR.HEdecoder.attn.to_q.2.weight"]
    assert mapped["mar.memory_key"] is state["MAR.memory_key"]
    assert mapped["perframe.head.bottleneck.conv.weight"] is state["pspnet.decode_head.bottleneck.conv.weight"]
    assert mapped["perframe.aux_head.conv_seg.weight"] is state["pspnet.auxiliary_head.conv_seg.weight"]
    # the wrappers the reference and mmseg use
    assert set(st_memory_to_ours({f"module.{k}": v for k, v in state.items()})) == set(mapped)
    assert set(st_memory_to_ours({"state_dict": state})) == set(mapped)


def test_values_survive_into_a_model(pspnet_state) -> None:
    """A reference-shaped STF + MAR with real values (small PSPNet stand-in on meta is replaced by real zeros)."""
    from vsseg_ros.core.models.temporal import TemporalSegNet

    g = torch.Generator().manual_seed(0)
    state = {
        k: torch.zeros(v.shape) if not k.endswith("num_batches_tracked") else torch.zeros((), dtype=torch.long)
        for k, v in pspnet_state.items()
    }
    state.update({k: torch.randn(shape, generator=g) for k, shape in reference_stf_mar_shapes().items()})
    mapped = st_memory_to_ours(state)
    model = TemporalSegNet(config_for_st_memory())
    model.load_state_dict(mapped)
    assert torch.equal(model.stf.encoder.layers[0].norm2.bias, state["STF.encoder.layers.0.norm2.bias"])
    assert torch.equal(model.mar.memory_value, state["MAR.memory_value"])


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda s: s.pop("STF.decoder.layers.0.norm3.weight"), "missing key(s): stf.decoder.layers.0.norm3.weight"),
        (lambda s: s.__setitem__("STF.extra.weight", torch.empty(1, device="meta")), "unexpected key(s): stf.extra"),
        (lambda s: s.__setitem__("TMA.weight", torch.empty(1, device="meta")), "outside pspnet./STF./MAR.: TMA.weight"),
        (
            lambda s: s.__setitem__("MAR.HEdecoder.linear1.weight", torch.empty(128, 512, device="meta")),
            "shape mismatch",
        ),
        (lambda s: s.pop("pspnet.decode_head.bottleneck.conv.weight"), "bottleneck"),
    ],
)
def test_problems_are_listed(pspnet_state, change, needle) -> None:
    state = reference_state(pspnet_state)
    config = config_for_st_memory()
    change(state)
    with pytest.raises(CheckpointError, match=needle.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        st_memory_to_ours(state, config)


def test_unreadable_states_are_refused(pspnet_state) -> None:
    with pytest.raises(CheckpointError, match="no pspnet"):
        st_memory_to_ours(
            {k: v for k, v in reference_state(pspnet_state).items() if not k.startswith("pspnet.")},
            config_for_st_memory(),
        )
    with pytest.raises(CheckpointError, match="STF.pe_enc is missing"):
        st_memory_config(dict(pspnet_state))
    with pytest.raises(CheckpointError):
        st_memory_to_ours({})


def test_bench_reference_explains_a_missing_checkout(tmp_path: Path, capsys) -> None:
    from vsseg_ros.commands import bench_reference as reference_compare

    p = argparse.ArgumentParser()
    reference_compare.add_arguments(p)
    assert reference_compare.run(p.parse_args(["--reference-dir", str(tmp_path)])) == 2
    assert "not a checkout of jfzhuang/ST_Memory" in capsys.readouterr().err
    assert reference_compare.run(p.parse_args(["--reference-dir", str(tmp_path), "--size", "100", "200"])) == 2
