"""Checkpoint files: round trips (fp32 and fp16 storage) and every way a file can be unusable."""

from __future__ import annotations

import fractions
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vsseg_ros.core.checkpoint import FORMAT, VERSION, Checkpoint, load_checkpoint, save_checkpoint
from vsseg_ros.core.classes import CAMVID, ClassMap
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.loading import load_segmenter
from vsseg_ros.core.models.perframe import PerFrameSegNet

SMALL = ModelConfig(name="tiny", head_channels=16, num_classes=3, input_size=(64, 96))
THREE = ClassMap(names=("a", "b", "c"), colors=((1, 2, 3), (4, 5, 6), (7, 8, 9)))


@pytest.fixture(scope="module")
def model() -> PerFrameSegNet:
    torch.manual_seed(0)
    net = PerFrameSegNet(SMALL)
    for m in net.modules():  # non-default BN statistics must survive the round trip
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)
    return net.eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))


@pytest.fixture()
def saved(tmp_path: Path, model: PerFrameSegNet) -> Path:
    return save_checkpoint(tmp_path / "m.pt", model, SMALL, THREE, "tiny:test")


def _outputs(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return net.eval()(x)


def test_round_trip_fp32(tmp_path: Path, model: PerFrameSegNet, x: torch.Tensor) -> None:
    meta = {"epochs": 3, "miou": np.float32(0.5), "per_class": np.array([0.1, 0.2]), "note": ("a", 1)}
    p = save_checkpoint(
        tmp_path / "sub" / "m.pt", model, SMALL, THREE, "tiny:fp32", meta=meta, memory={"bank": torch.zeros(2)}
    )
    ck = load_checkpoint(p)
    assert isinstance(ck, Checkpoint)
    assert (ck.model_id, ck.config, ck.class_map) == ("tiny:fp32", SMALL, THREE)
    assert (ck.version, ck.storage) == (VERSION, "fp32")
    assert ck.meta["epochs"] == 3 and ck.meta["miou"] == pytest.approx(0.5) and ck.meta["note"] == ["a", 1]
    assert torch.allclose(ck.meta["per_class"].double(), torch.tensor([0.1, 0.2], dtype=torch.float64))
    assert torch.equal(ck.memory["bank"], torch.zeros(2))
    rebuilt = ck.build_model()
    ref, out = _outputs(model, x), _outputs(rebuilt, x)
    for k in ref:
        assert torch.equal(ref[k], out[k]), k
    raw = torch.load(p, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == 1
    assert not list(tmp_path.joinpath("sub").glob("*.tmp")), "temporary file left behind"


def test_round_trip_fp16_storage(tmp_path: Path, model: PerFrameSegNet, x: torch.Tensor) -> None:
    p32 = save_checkpoint(tmp_path / "a.pt", model, SMALL, THREE, "tiny:a")
    p16 = save_checkpoint(tmp_path / "b.pt", model, SMALL, THREE, "tiny:b", half=True)
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    raw = torch.load(p16, weights_only=True)
    assert raw["state_dict"]["head.classifier.weight"].dtype == torch.float16
    assert raw["state_dict"]["backbone.features.0.1.num_batches_tracked"].dtype == torch.int64
    ck = load_checkpoint(p16)
    assert ck.storage == "fp16"
    assert all(v.dtype == torch.float32 for v in ck.state_dict.values() if v.is_floating_point())
    ref, out = _outputs(model, x), _outputs(ck.build_model(), x)
    for k in ref:
        scale = ref[k].abs().max().item()
        assert torch.allclose(ref[k], out[k], atol=1e-2 * scale + 1e-3), k


def test_save_rejects_bad_input(tmp_path: Path, model: PerFrameSegNet) -> None:
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "m.pt", model, SMALL, CAMVID, "x")  # 11 classes vs 3
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "m.pt", model, SMALL, THREE, "")
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "m.pt", model, SMALL, THREE, "x", meta={"f": object()})
    assert not list(tmp_path.iterdir())


# -- unusable files ----------------------------------------------------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    return str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.pt")
    assert "not a file" in _error(tmp_path)


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "noise.pt"
    p.write_bytes(os.urandom(4096))
    msg = _error(p)
    assert "not a PyTorch checkpoint" in msg
    p.write_bytes(b"PK\x03\x04" + os.urandom(4096))  # looks like a zip at first sight
    msg = _error(p)
    assert "cannot read" in msg and "corrupt" in msg


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    assert "not a PyTorch checkpoint" in _error(p)


def test_truncated_file(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    msg = _error(saved)
    assert "truncated" in msg


def test_plain_dict_without_our_keys(tmp_path: Path) -> None:
    p = tmp_path / "plain.pt"
    torch.save({"epoch": 3, "weights": [1, 2]}, p)
    msg = _error(p)
    for key in ("format", "version", "model_id", "config", "class_map", "state_dict"):
        assert key in msg
    assert "epoch" in msg  # what was found


def test_bare_state_dict_gets_a_hint(tmp_path: Path, model: PerFrameSegNet) -> None:
    p = tmp_path / "bare.pt"
    torch.save(model.state_dict(), p)
    assert "bare state_dict" in _error(p)


def test_not_a_dict(tmp_path: Path) -> None:
    p = tmp_path / "list.pt"
    torch.save([1, 2, 3], p)
    assert "list" in _error(p)


def test_python_objects_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.pt"
    torch.save({"format": FORMAT, "ratio": fractions.Fraction(1, 3)}, p)
    msg = _error(p)
    assert "refusing" in msg and "fractions.Fraction" in msg


def _rewrite(path: Path, **changes: object) -> None:
    obj = torch.load(path, weights_only=True)
    obj.update(changes)
    torch.save(obj, path)


def test_wrong_format_and_version(saved: Path) -> None:
    _rewrite(saved, version=2)
    msg = _error(saved)
    assert "version 2" in msg and "version 1" in msg
    _rewrite(saved, version=1, format="someone.else")
    assert "someone.else" in _error(saved)


def test_invalid_config_and_class_map(saved: Path) -> None:
    obj = torch.load(saved, weights_only=True)
    cfg = dict(obj["config"], output_stride=12)
    _rewrite(saved, config=cfg)
    assert "output_stride" in _error(saved)
    _rewrite(saved, config=obj["config"], class_map=CAMVID.to_dict())
    assert "classes" in _error(saved)


def test_nonfinite_weights(saved: Path) -> None:
    obj = torch.load(saved, weights_only=True)
    sd = obj["state_dict"]
    sd["head.classifier.bias"] = torch.full_like(sd["head.classifier.bias"], float("nan"))
    _rewrite(saved, state_dict=sd)
    assert "head.classifier.bias" in _error(saved)


def test_state_dict_that_does_not_fit(saved: Path) -> None:
    obj = torch.load(saved, weights_only=True)
    sd = obj["state_dict"]
    del sd["head.gate.1.weight"]
    sd["head.extra.weight"] = torch.zeros(3)
    sd["head.classifier.weight"] = torch.zeros(5, 16, 1, 1)
    _rewrite(saved, state_dict=sd)
    ck = load_checkpoint(saved)  # the file itself is well-formed
    with pytest.raises(CheckpointError) as e:
        ck.build_model()
    msg = str(e.value)
    assert str(saved) in msg
    assert "missing" in msg and "head.gate.1.weight" in msg
    assert "unexpected" in msg and "head.extra.weight" in msg
    assert "shape" in msg and "head.classifier.weight" in msg and "(5, 16, 1, 1)" in msg and "(3, 16, 1, 1)" in msg
    with pytest.raises(CheckpointError):
        load_segmenter(str(saved), device="cpu")


def test_long_key_lists_are_cut(saved: Path) -> None:
    obj = torch.load(saved, weights_only=True)
    sd = {k: v for k, v in obj["state_dict"].items() if not k.startswith("backbone.")}
    _rewrite(saved, state_dict=sd)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(saved).build_model()
    assert "more)" in str(e.value) and len(str(e.value)) < 3000


def test_a_temporal_section_that_cannot_be_built_is_refused_clearly(tmp_path: Path, model: PerFrameSegNet) -> None:
    # unknown keys in `temporal` (a file from another tool or a typo): the error names them and the known ones
    cfg = ModelConfig.from_dict(dict(SMALL.to_dict(), temporal={"type": "stf", "window": 3}))
    p = save_checkpoint(tmp_path / "t.pt", model, cfg, THREE, "tiny:stf")
    assert load_checkpoint(p).config.temporal == {"type": "stf", "window": 3}
    with pytest.raises((CheckpointError, ValueError)) as e:
        load_segmenter(str(p), device="cpu")
    assert "temporal" in str(e.value) and "window" in str(e.value)
