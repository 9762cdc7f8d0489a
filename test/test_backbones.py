"""ResNet backbones, mmseg-style PSP/FCN heads, the mmseg PSPNet importer and the named model configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.config import BACKBONES, HEADS, ConfigError, ModelConfig
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.models.heads_mmseg import FCNHead, PSPHead
from vsseg_ros.core.models.import_mmseg import (
    config_for_mmseg_pspnet,
    infer_mmseg_config,
    mmseg_pspnet_to_ours,
    mmseg_to_ours,
)
from vsseg_ros.core.models.perframe import PerFrameSegNet, count_parameters
from vsseg_ros.core.models.resnet import ResNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{n}" for n in BN]


def torchvision_resnet_keys(depth: int) -> list[str]:
    """The state_dict names of torchvision's resnet{depth}, written out from its architecture."""
    keys = ["conv1.weight", *_bn("bn1")]
    return keys + _stage_keys(depth) + ["fc.weight", "fc.bias"]


def mmseg_v1c_keys(depth: int) -> list[str]:
    """mmsegmentation's ResNetV1c backbone names: a 3-conv stem in one Sequential (ReLUs at 2, 5, 8)."""
    keys = []
    for conv, bn in ((0, 1), (3, 4), (6, 7)):
        keys += [f"stem.{conv}.weight", *_bn(f"stem.{bn}")]
    return keys + _stage_keys(depth)


def _stage_keys(depth: int) -> list[str]:
    convs = 2 if depth == 18 else 3
    keys = []
    for i, n in enumerate(BLOCKS[depth], start=1):
        for j in range(n):
            p = f"layer{i}.{j}"
            for c in range(1, convs + 1):
                keys += [f"{p}.conv{c}.weight", *_bn(f"{p}.bn{c}")]
            if j == 0 and (depth != 18 or i > 1):
                keys += [f"{p}.downsample.0.weight", *_bn(f"{p}.downsample.1")]
    return keys


def _random_state(module: nn.Module, seed: int = 0) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in module.state_dict().items():
        if k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.is_floating_point():
            out[k] = torch.randn(v.shape, generator=g) * 0.1
        else:
            out[k] = v.clone()
    return out


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)


# -- ResNet shapes and dilation -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth, deep_stem", [(18, False), (50, False), (101, False), (50, True), (101, True)])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_resnet_feature_shapes(depth: int, deep_stem: bool, output_stride: int) -> None:
    net = ResNet(depth, output_stride=output_stride, deep_stem=deep_stem).eval()
    h, w = 67, 97
    with torch.inference_mode():
        feats = net(torch.randn(1, 3, h, w))
    widths = (64, 128, 256, 512) if depth == 18 else (256, 512, 1024, 2048)
    strides = (4, 8, min(16, output_stride), output_stride)
    assert list(feats) == ["low", "mid", "aux", "high"]
    for (key, f), c, s in zip(feats.items(), widths, strides):
        assert net.channels[key] == c
        assert f.shape == (1, c, math.ceil(h / s), math.ceil(w / s)), (key, s)


@pytest.mark.parametrize("depth", [18, 50])
def test_dilation_layout_is_mmseg_d8(depth: int) -> None:
    """OS8: stage strides 1,2,1,1, dilations 1,1,2,4, the first block of a dilated stage at half dilation;
    bottlenecks stride and dilate their 3x3 conv2, basic blocks dilate only conv1."""
    net = ResNet(depth, output_stride=8)
    dilated = "conv2" if depth == 50 else "conv1"
    for stage, (stride, dilation) in enumerate(zip((1, 2, 1, 1), (1, 1, 2, 4)), start=1):
        layer = getattr(net, f"layer{stage}")
        for j, block in enumerate(layer):
            conv = getattr(block, dilated)
            want = (dilation // 2 if dilation > 1 else 1) if j == 0 else dilation
            assert conv.dilation == (want, want) and conv.padding == (want, want), (stage, j)
            assert conv.stride == ((stride, stride) if j == 0 else (1, 1)), (stage, j)
            if depth == 18:
                assert block.conv2.dilation == (1, 1) and block.conv2.stride == (1, 1)
            else:
                assert block.conv1.stride == (1, 1) and block.conv3.stride == (1, 1)


def test_resnet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="depth"):
        ResNet(34)
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(18, output_stride=4)


# -- key layouts and ImageNet loading -----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_torchvision_layout(depth: int) -> None:
    net = ResNet(depth)
    expected = torchvision_resnet_keys(depth)
    assert len(expected) == {18: 122, 50: 320, 101: 626}[depth]  # torchvision's own state_dict sizes
    assert list(net.state_dict()) == [k for k in expected if not k.startswith("fc.")]
    assert net.state_dict()["conv1.weight"].shape == (64, 3, 7, 7)


@pytest.mark.parametrize("depth", [50, 101])
def test_mmseg_v1c_layout(depth: int) -> None:
    net = ResNet(depth, deep_stem=True)
    own = net.state_dict()
    assert list(own) == mmseg_v1c_keys(depth)
    assert own["stem.0.weight"].shape == (32, 3, 3, 3)
    assert own["stem.3.weight"].shape == (32, 32, 3, 3)
    assert own["stem.6.weight"].shape == (64, 32, 3, 3)
    assert own["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert own["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


def test_imagenet_state_dict_loads_strictly_and_reports_mismatches(tmp_path: Path) -> None:
    net = ResNet(18).eval()
    state = _random_state(net)
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    p = tmp_path / "resnet18.pth"
    torch.save(state, p)
    info = net.load_imagenet(p)
    assert sorted(info["skipped"]) == ["fc.bias", "fc.weight"] and len(info["loaded"]) == 120
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    # an mmcv-style wrapper around a deep-stem state_dict
    v1c = ResNet(50, deep_stem=True)
    v1c.load_imagenet({"state_dict": _random_state(v1c), "meta": {}})

    bad = dict(state)
    bad.pop("layer2.0.downsample.1.running_var")
    bad["layer1.0.bn3.weight"] = torch.ones(64)
    bad["layer3.1.conv1.weight"] = torch.zeros(256, 256, 1, 1)
    with pytest.raises(CheckpointError) as e:
        ResNet(18).load_imagenet(bad)
    msg = str(e.value)
    assert "layer2.0.downsample.1.running_var" in msg and "layer1.0.bn3.weight" in msg
    assert "layer3.1.conv1.weight" in msg and "torchvision ResNet-18" in msg
    with pytest.raises(CheckpointError, match="ResNetV1c"):  # a torchvision file into a deep-stem ResNet
        ResNet(18, deep_stem=True).load_imagenet(state)
    with pytest.raises(CheckpointError, match="not found"):
        ResNet(18).load_imagenet(tmp_path / "missing.pth")


# -- heads ----------------------------------------------------------------------------------------------------


def _adaptive_avg_pool(x: Tensor, s: int) -> Tensor:
    """Adaptive average pooling written out: bin i covers [floor(i*H/s), ceil((i+1)*H/s))."""
    n, c, h, w = x.shape
    out = torch.empty(n, c, s, s)
    for i in range(s):
        y0, y1 = (i * h) // s, -((-(i + 1) * h) // s)
        for j in range(s):
            x0, x1 = (j * w) // s, -((-(j + 1) * w) // s)
            out[:, :, i, j] = x[:, :, y0:y1, x0:x1].mean(dim=(2, 3))
    return out


def _conv_bn_relu(x: Tensor, module: nn.Module, padding: int) -> Tensor:
    conv, bn = module.conv, module.bn
    y = F.conv2d(x, conv.weight, None, padding=padding)
    y = (y - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    return torch.relu(y * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))


def test_psp_head_matches_independent_computation() -> None:
    torch.manual_seed(0)
    head = PSPHead(in_channels=12, channels=8, num_classes=5).eval()
    _randomise_bn(head)
    x = torch.randn(2, 12, 13, 19)
    with torch.inference_mode():
        feature = head.forward_features({"high": x})
        logits = head.classify(feature)
        branches = [x]
        for s, module in zip((1, 2, 3, 6), head.psp_modules):
            pooled = _conv_bn_relu(_adaptive_avg_pool(x, s), module[1], padding=0)
            branches.append(F.interpolate(pooled, size=(13, 19), mode="bilinear", align_corners=False))
        ref = _conv_bn_relu(torch.cat(branches, 1), head.bottleneck, padding=1)
        ref_logits = F.conv2d(ref, head.conv_seg.weight, head.conv_seg.bias)
    assert feature.shape == (2, 8, 13, 19)
    assert torch.allclose(feature, ref, atol=1e-5), (feature - ref).abs().max()
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    assert head.bottleneck.conv.weight.shape == (8, 12 + 4 * 8, 3, 3)
    assert isinstance(head.dropout, nn.Dropout2d) and head.dropout.p == 0.1


def test_fcn_head_matches_independent_computation() -> None:
    torch.manual_seed(0)
    head = FCNHead(in_channels=6, channels=4, num_classes=3, num_convs=2, concat_input=True).eval()
    _randomise_bn(head)
    x = torch.randn(1, 6, 9, 11)
    with torch.inference_mode():
        out = head({"high": x})
        y = _conv_bn_relu(_conv_bn_relu(x, head.convs[0], 1), head.convs[1], 1)
        y = _conv_bn_relu(torch.cat([x, y], 1), head.conv_cat, 1)
        ref = F.conv2d(y, head.conv_seg.weight, head.conv_seg.bias)
    assert torch.allclose(out, ref, atol=1e-5)
    aux = FCNHead(6, 4, 3, num_convs=1, concat_input=False, in_key="aux")
    assert sorted(k for k in aux.state_dict() if k.endswith("weight")) == [
        "conv_seg.weight",
        "convs.0.bn.weight",
        "convs.0.conv.weight",
    ]


# -- the per-frame network with every backbone and head -----------------------------------------------------


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("head", HEADS)
def test_perframe_every_backbone_and_head(backbone: str, head: str) -> None:
    output_stride = 16 if backbone == "mobilenetv2" else 8
    cfg = ModelConfig(
        backbone=backbone,
        head=head,
        output_stride=output_stride,
        head_channels=16,
        num_classes=4,
        aux_head=backbone != "mobilenetv2",
    )
    net = PerFrameSegNet(cfg).eval()
    stride = 8 if head == "lite" else output_stride
    assert net.stride == stride and PerFrameSegNet.stride == 8
    h, w = 64, 80
    with torch.inference_mode():
        out = net(torch.randn(1, 3, h, w))
    hs, ws = math.ceil(h / stride), math.ceil(w / stride)
    assert out["logits"].shape == (1, 4, hs, ws)
    assert out["feature"].shape == (1, 16, hs, ws) and net.feature_channels == 16
    assert out["boundary"].shape == (1, 1, hs, ws)
    assert "aux" not in out  # the auxiliary head only runs in training


@pytest.mark.parametrize("head, output_stride", [("psp", 16), ("fcn", 32)])
def test_stride_follows_output_stride(head: str, output_stride: int) -> None:
    net = PerFrameSegNet(
        ModelConfig(backbone="resnet18", head=head, output_stride=output_stride, head_channels=16, num_classes=3)
    ).eval()
    assert net.stride == output_stride
    with torch.inference_mode():
        feature = net.forward_features(torch.randn(1, 3, 64, 96))
        assert feature.shape == (1, 16, 64 // output_stride, 96 // output_stride)
        assert net.classify(feature).shape == (1, 3, 64 // output_stride, 96 // output_stride)
        assert net.boundary(feature).shape == (1, 1, 64 // output_stride, 96 // output_stride)


@pytest.mark.parametrize("backbone, head", [("resnet18", "psp"), ("resnetv1c50", "fcn"), ("resnet50", "lite")])
def test_gradients_reach_every_parameter(backbone: str, head: str) -> None:
    torch.manual_seed(0)
    net = PerFrameSegNet(
        ModelConfig(backbone=backbone, head=head, output_stride=8, head_channels=16, num_classes=3, aux_head=True)
    ).train()
    out = net(torch.randn(2, 3, 48, 48))
    assert out["aux"].shape == (2, 3, 6, 6)
    loss = out["logits"].square().mean() + out["aux"].square().mean() + out["boundary"].square().mean()
    loss.backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, dead


def test_aux_head_needs_a_resnet() -> None:
    with pytest.raises(ConfigError, match="aux_head"):
        ModelConfig(backbone="mobilenetv2", aux_head=True)
    with pytest.raises(ConfigError, match="aux_head"):
        ModelConfig(aux_head="yes")


# -- mmseg PSPNet import ------------------------------------------------------------------------------------


def _as_mmseg(state: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    names = {"backbone.": "backbone.", "head.": "decode_head.", "aux_head.": "auxiliary_head."}
    out = {}
    for k, v in state.items():
        top = next(t for t in names if k.startswith(t))
        out[prefix + names[top] + k[len(top) :]] = v
    return out


def _meta_state(config: ModelConfig) -> dict[str, Tensor]:
    with torch.device("meta"):
        return PerFrameSegNet(config).state_dict()


@pytest.mark.parametrize("depth", [50, 101])
def test_mmseg_pspnet_layout(depth: int) -> None:
    cfg = config_for_mmseg_pspnet(depth, 19)
    assert (cfg.backbone, cfg.output_stride, cfg.head, cfg.head_channels, cfg.aux_head) == (
        f"resnetv1c{depth}",
        8,
        "psp",
        512,
        True,
    )
    theirs = _as_mmseg(_meta_state(cfg))
    backbone = ["backbone." + k for k in mmseg_v1c_keys(depth)]
    assert [k for k in theirs if k.startswith("backbone.")] == backbone
    shapes = {
        "decode_head.psp_modules.0.1.conv.weight": (512, 2048, 1, 1),
        "decode_head.psp_modules.3.1.bn.running_var": (512,),
        "decode_head.bottleneck.conv.weight": (512, 2048 + 4 * 512, 3, 3),
        "decode_head.bottleneck.bn.num_batches_tracked": (),
        "decode_head.conv_seg.weight": (19, 512, 1, 1),
        "decode_head.conv_seg.bias": (19,),
        "auxiliary_head.convs.0.conv.weight": (256, 1024, 3, 3),
        "auxiliary_head.convs.0.bn.bias": (256,),
        "auxiliary_head.conv_seg.weight": (19, 256, 1, 1),
    }
    heads = [k for k in theirs if not k.startswith("backbone.")]
    assert len(heads) == 4 * 6 + 6 + 2 + 6 + 2  # 4 pool branches, bottleneck, conv_seg, aux conv, aux conv_seg
    for k, shape in shapes.items():
        assert tuple(theirs[k].shape) == shape, k
    assert infer_mmseg_config(theirs) == cfg


def test_mmseg_import_loads_a_small_pspnet_exactly() -> None:
    """Small widths are not expressible in the config, so the numbers are checked on a ResNet-18 PSPNet:
    weights renamed to mmseg's layout, under a prefix and a checkpoint wrapper, come back to the same outputs."""
    cfg = ModelConfig(
        backbone="resnet18",
        head="psp",
        output_stride=8,
        head_channels=16,
        num_classes=4,
        boundary_head=False,
        aux_head=True,
    )
    torch.manual_seed(0)
    src = PerFrameSegNet(cfg).eval()
    _randomise_bn(src)
    wrapped = {
        "state_dict": {**_as_mmseg(src.state_dict(), "pspnet."), "STF.pe_enc": torch.zeros(3)},
        "meta": {"CLASSES": ["a", "b", "c", "d"]},
    }
    weights = mmseg_pspnet_to_ours(wrapped, prefix="pspnet.", config=cfg)
    dst = PerFrameSegNet(cfg).eval()
    dst.load_state_dict(weights, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(src(x)["logits"], dst(x)["logits"])
    config, weights2 = mmseg_to_ours(wrapped, prefix="pspnet.")
    assert (config.backbone, config.head, config.head_channels, config.num_classes, config.aux_head) == (
        "resnet18",
        "psp",
        16,
        4,
        True,
    )
    assert weights2.keys() == weights.keys()


def test_mmseg_import_reports_mismatches() -> None:
    cfg = config_for_mmseg_pspnet(50, 19)
    good = _as_mmseg(_meta_state(cfg))
    bad = dict(good)
    bad.pop("backbone.layer2.1.bn2.running_mean")
    bad["decode_head.conv_seg.weight"] = torch.empty(19, 256, 1, 1, device="meta")
    bad["decode_head.extra.weight"] = torch.empty(1, device="meta")
    with pytest.raises(CheckpointError) as e:
        mmseg_pspnet_to_ours(bad)
    msg = str(e.value)
    assert "backbone.layer2.1.bn2.running_mean" in msg and "head.extra.weight" in msg
    assert "head.conv_seg.weight" in msg and "(19, 256, 1, 1)" in msg
    with pytest.raises(CheckpointError, match="outside backbone"):
        mmseg_pspnet_to_ours({**good, "neck.conv.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="prefix 'pspnet.'"):
        mmseg_pspnet_to_ours(good, prefix="pspnet.")
    with pytest.raises(CheckpointError, match="depth"):
        mmseg_pspnet_to_ours({k: v for k, v in good.items() if not k.startswith("backbone.layer3.")})
    with pytest.raises(CheckpointError, match="state_dict"):
        mmseg_pspnet_to_ours([1, 2])
    # without the counters (older BatchNorm) the import still works: they are filled with 0
    no_counters = {k: v for k, v in good.items() if not k.endswith("num_batches_tracked")}
    assert mmseg_pspnet_to_ours(no_counters).keys() == _meta_state(cfg).keys()


# -- named configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, depth", [("pspnet_r50_d8", 50), ("pspnet_r101_d8", 101)])
def test_named_pspnet_configs(name: str, depth: int) -> None:
    cfg = ModelConfig.from_yaml(REPO / "config" / "models" / f"{name}.yaml")
    assert cfg == config_for_mmseg_pspnet(depth, 19)
    with torch.device("meta"):
        net = PerFrameSegNet(cfg)
    # mmseg's PSPNet-R50/R101-d8 sizes (with the auxiliary head), as in docs/backbones.md
    assert count_parameters(net) == {50: 48_975_494, 101: 67_967_622}[depth]
    assert count_parameters(net.backbone) == {50: 23_527_264, 101: 42_519_392}[depth]


def test_fcn_camvid_config_builds() -> None:
    cfg = ModelConfig.from_yaml(REPO / "config" / "models" / "fcn_r18_d8_camvid.yaml")
    net = PerFrameSegNet(cfg)
    assert net.stride == 8 and net.num_classes == 11 and isinstance(net.head, FCNHead)
    assert count_parameters(net) > 11_000_000


def test_old_configs_without_new_fields_still_load() -> None:
    old = ModelConfig().to_dict()
    old.pop("aux_head")
    cfg = ModelConfig.from_dict(old)
    assert cfg.aux_head is False and cfg == ModelConfig()
