"""TemporalSegNet and its config: validation errors that name the field, frame_features/fuse/forward, short
windows, optional modules, the shipped model configs, and `vsseg-ros build-memory` on a tiny image folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from vsseg_ros.core.checkpoint import load_checkpoint, save_checkpoint
from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.core.models.temporal import TemporalSegNet
from vsseg_ros.core.temporal_config import TemporalConfig

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SIZE = (64, 96)


def _config(classes: int = 4, **temporal) -> ModelConfig:
    t = {
        "frames": 3,
        "mode": "causal",
        "stf": {"heads": 2, "ffn": 32, "block": 4, "dropout": 0.0, "pe_size": [8, 12], "dim": 16, "pool": 1},
        "mar": {"slots_per_class": 2, "dim": 16, "ffn": 32, "dropout": 0.0},
        **temporal,
    }
    return ModelConfig(name="tiny_temporal", num_classes=classes, input_size=SIZE, temporal=t)


# -- config -------------------------------------------------------------------------------------------------


def test_config_round_trip_and_defaults() -> None:
    t = TemporalConfig.from_dict({"frames": 4, "mode": "centered", "mar": {"slots_per_class": 5}})
    assert t.frames == 4 and t.mode == "centered"
    assert t.stf is not None and t.stf.block == 16 and t.stf.pe_size == (128, 256)  # absent = default STF
    assert t.mar is not None and t.mar.slots_per_class == 5 and t.mar.dim == 256
    assert t.flow2seg is None
    again = TemporalConfig.from_dict(t.to_dict())
    assert again == t and again.to_dict()["stf"]["pe_size"] == [128, 256]
    assert TemporalConfig.from_dict({"stf": None, "mar": {}}).stf is None


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"frames": 1}, "temporal.frames"),
        ({"frames": 9}, "temporal.frames"),
        ({"frames": "3"}, "temporal.frames"),
        ({"frames": True}, "temporal.frames"),
        ({"mode": "future"}, "temporal.mode"),
        ({"stf": {"heads": 0}}, "temporal.stf.heads"),
        ({"stf": {"block": 0}}, "temporal.stf.block"),
        ({"stf": {"dropout": 1.5}}, "temporal.stf.dropout"),
        ({"stf": {"pe_size": [16]}}, "temporal.stf.pe_size"),
        ({"stf": {"dim": 10, "heads": 3}}, "temporal.stf.dim"),
        ({"stf": {"window": 3}}, "temporal.stf"),
        ({"mar": {"slots_per_class": 0}}, "temporal.mar.slots_per_class"),
        ({"mar": [1]}, "temporal.mar"),
        ({"flow2seg": {"preset": "slow"}}, "temporal.flow2seg.preset"),
        ({"frame": 3}, "temporal"),
        ({"stf": None, "mar": None, "flow2seg": None}, "temporal"),
    ],
)
def test_config_errors_name_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        TemporalConfig.from_dict(bad)


def test_heads_must_divide_the_feature_width() -> None:
    cfg = _config(stf={"heads": 3, "dim": None, "block": 4, "pe_size": [8, 8]})
    with pytest.raises(ConfigError, match=r"temporal\.stf\.heads=3"):
        TemporalSegNet(cfg)


@pytest.mark.parametrize("name", ["mbv2_lite_stf_mar", "pspnet_r50_stf_mar"])
def test_shipped_model_configs_build(name: str) -> None:
    cfg = ModelConfig.from_yaml(REPO / "config" / "models" / f"{name}.yaml")
    with torch.device("meta"):  # the PSPNet-R50 is large: names and shapes only
        model = TemporalSegNet(cfg)
    assert model.stf is not None and model.mar is not None
    if name.startswith("pspnet"):
        assert model.mode == "centered" and model.frames == 3 and model.stf.dim == 512
        assert tuple(model.mar.memory_key.shape) == (1, 190, 512)
    else:
        assert model.mode == "causal" and model.frames == 3


# -- the model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> TemporalSegNet:
    torch.manual_seed(0)
    m = TemporalSegNet(_config())
    with torch.no_grad():  # a non-trivial STF output projection and memory
        m.stf.proj_out.weight.normal_(0, 0.1)
        m.mar.set_memory(torch.randn(8, 128), torch.randn(8, 128))
    return m.eval()


def test_target_index(model: TemporalSegNet) -> None:
    assert [model.target_index(n) for n in (1, 2, 3)] == [0, 1, 2]
    centered = TemporalSegNet(_config(mode="centered"))
    assert [centered.target_index(n) for n in (1, 2, 3)] == [0, 0, 1]
    with pytest.raises(ValueError):
        model.target_index(0)


def test_forward_is_frame_features_then_fuse(model: TemporalSegNet) -> None:
    x = torch.randn(2, 3, 3, *SIZE)
    with torch.no_grad():
        out = model(x, target=2)
        feats = [model.frame_features(x[:, i]) for i in range(3)]
        fused = model.fuse(feats, 2)
    h, w = SIZE[0] // 8, SIZE[1] // 8
    assert out["logits"].shape == (2, 4, h, w) and out["boundary"].shape == (2, 1, h, w)
    assert out["feature"].shape == (2, 128, h, w) and feats[0].shape == (2, 128, h, w)
    assert torch.allclose(out["logits"], fused["logits"], atol=1e-5)
    # the boundary head reads the fused (STF) feature, the classifier the MAR-refined one
    assert torch.allclose(out["boundary"], model.perframe.boundary(out["feature"]), atol=1e-6)
    assert torch.allclose(out["logits"], model.perframe.classify(model.mar(out["feature"])), atol=1e-5)
    assert model.fuse(feats, 2, boundary=False)["boundary"] is None


def test_windows_still_filling(model: TemporalSegNet) -> None:
    x = torch.randn(1, 3, 3, *SIZE)
    with torch.no_grad():
        feats = [model.frame_features(x[:, i]) for i in range(3)]
        for n in (1, 2):
            out = model.fuse(feats[3 - n :], model.target_index(n))
            assert out["logits"].shape == (1, 4, 8, 12) and torch.isfinite(out["logits"]).all()
    with pytest.raises(ValueError, match="1..3 frames"):
        model.fuse(feats + feats[:1], 3)
    with pytest.raises(ValueError, match="target"):
        model.fuse(feats, 5)


def test_untrained_stf_without_mar_is_the_per_frame_model() -> None:
    torch.manual_seed(1)
    m = TemporalSegNet(_config(mar=None)).eval()
    x = torch.randn(1, 3, 3, *SIZE)
    with torch.no_grad():
        out = m(x, target=2)
        single = m.perframe(x[:, 2])
    assert torch.allclose(out["logits"], single["logits"], atol=1e-6)


def test_gradients_reach_stf_and_mar(model: TemporalSegNet) -> None:
    m = TemporalSegNet(_config()).train()
    m.load_state_dict(model.state_dict())
    for p in m.perframe.parameters():
        p.requires_grad_(False)
    out = m(torch.randn(2, 3, 3, *SIZE), target=2)
    torch.nn.functional.cross_entropy(out["logits"], torch.randint(0, 4, (2, 8, 12))).backward()
    for name, p in list(m.stf.named_parameters()) + list(m.mar.HEdecoder.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.stf.pe_enc.grad.abs().sum() > 0


def test_optional_modules_mar_only_and_flow2seg() -> None:
    torch.manual_seed(2)
    mar_only = TemporalSegNet(_config(stf=None)).eval()
    assert mar_only.stf is None and mar_only.mar is not None
    x = torch.randn(1, 2, 3, *SIZE)
    with torch.no_grad():
        out = mar_only(x, target=1)
        f = mar_only.frame_features(x[:, 1])
        assert torch.allclose(out["feature"], f) and out["logits"].shape == (1, 4, 8, 12)
    flow = TemporalSegNet(_config(stf=None, mar=None, flow2seg={"preset": "fast"})).eval()
    assert flow.flow2seg is not None
    with torch.no_grad():
        plain = flow(x, target=1)
        fused = flow(x, target=1, flow=torch.randn(1, 2, *SIZE))
    assert set(fused) >= {"logits", "image_logits", "flow_logits"}
    assert torch.allclose(fused["image_logits"], plain["logits"])
    assert fused["flow_logits"].shape == fused["logits"].shape == (1, 4, 8, 12)


# -- vsseg-ros build-memory -----------------------------------------------------------------------------------


def _tiny_folder(root: Path) -> None:
    """Four 64x96 frames of one sequence: left half class 0 (dark), right half class 1 (bright), a 255 band."""
    import cv2

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("dark\nbright\nred\nblue\n")
    rng = np.random.default_rng(0)
    for i in range(4):
        img = np.zeros((*SIZE, 3), np.uint8)
        img[:, 48:] = 200
        img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        lab = np.zeros(SIZE, np.uint8)
        lab[:, 48:] = 1
        lab[:4] = 255
        cv2.imwrite(str(root / "images" / f"seq_{i:06d}.png"), img[..., ::-1])
        cv2.imwrite(str(root / "labels" / f"seq_{i:06d}.png"), lab)


def test_build_memory_tool_writes_a_checkpoint_with_the_memory(tmp_path: Path, model: TemporalSegNet) -> None:
    from vsseg_ros.commands import build_memory
    from vsseg_ros.core.memory_bank import MemoryBuilder

    _tiny_folder(tmp_path / "data")
    classes = ClassMap(
        names=("dark", "bright", "red", "blue"), colors=((0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255))
    )
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():  # predict class 0 everywhere: the dark half is right, the bright half wrong
        model.perframe.head.classifier.weight.zero_()
        model.perframe.head.classifier.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    src = save_checkpoint(tmp_path / "in.pt", model, model.config, classes, "tiny", meta={"origin": "test"})
    p = argparse.ArgumentParser()
    build_memory.add_arguments(p)
    args = p.parse_args(
        [
            "--model",
            str(src),
            "--dataset",
            "folder",
            "--root",
            str(tmp_path / "data"),
            "--split",
            "",
            "--out",
            str(tmp_path / "out.pt"),
            "--quiet",
            "--window",
            "auto",
        ]
    )
    before = model.mar.memory_key.clone()
    assert build_memory.run(args) == 0
    ck = load_checkpoint(tmp_path / "out.pt")
    rec = ck.meta["mar_memory"]
    assert ck.meta["origin"] == "test" and rec["frames"] == 4 and rec["windows_real"] == 2
    assert rec["windows_repeated"] == 2 and rec["pixels"] == 4 * 7 * 12
    assert rec["correct_per_class"][1:] == [0, 0, 0] and rec["correct_per_class"][0] > 0
    assert rec["empty_classes"] == [1, 2, 3]
    key = ck.state_dict["mar.memory_key"]
    assert key.shape == (1, 8, 128) and not torch.equal(key, before)
    # the same memory by hand: the windows the tool used, through MemoryBuilder
    from vsseg_ros.core.frame_input import FramePreparer
    from vsseg_ros.data.registry import open_dataset

    data = open_dataset("folder", tmp_path / "data", None)
    prep = FramePreparer(SIZE, model.config.mean, model.config.std, torch.device("cpu"), channels_last=False)
    b = MemoryBuilder(4, 2)
    with torch.no_grad():
        for i in range(4):
            idx = [j for j in (i - 2, i - 1, i) if j >= 0] if i >= 2 else [i, i, i]
            feats = [model.frame_features(prep(data.read_image(j), *SIZE)[0]) for j in idx]
            out = model.fuse(feats, 2, boundary=False, refine=False)
            b.add(out["feature"], out["logits"], torch.from_numpy(data.read_label(i))[None])
    k, v = b.memory()
    assert torch.allclose(key[0], k, atol=1e-5) and torch.allclose(ck.state_dict["mar.memory_value"][0], v, atol=1e-5)
    # a per-frame checkpoint is refused with a reason
    per = save_checkpoint(tmp_path / "per.pt", model.perframe, model.config.replace(temporal=None), classes, "p")
    args.model = per
    assert build_memory.run(args) == 2


def test_precisions_and_autocast_share_the_inference_caches_safely(model: TemporalSegNet) -> None:
    """Models converted inside inference mode (parameters without version counters), autocast, then plain fp32
    again: the cached encodings, tokens and memory projections never leak between them."""
    import copy

    x = torch.randn(1, 3, 3, *SIZE)
    with torch.inference_mode():
        ref = model(x, 2)["logits"]
        for dtype, tol in ((torch.bfloat16, 0.05), (torch.float16, 0.01)):
            low = copy.deepcopy(model).to(dtype)
            out = low(x.to(dtype), 2)["logits"].float()
            assert torch.allclose(out, ref, atol=tol * ref.abs().max().item()), dtype
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x, 2)
        again = model(x, 2)["logits"]
    assert again.dtype == torch.float32 and torch.equal(again, ref)
