"""PerFrameSegmenter and load_segmenter: output maps, ranges, requests, determinism, precisions, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsseg_ros.core import loading
from vsseg_ros.core.checkpoint import save_checkpoint
from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.device import cpu_autocast_supports, resolve_device, resolve_precision
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.loading import UNTRAINED_MODEL_ID, default_model_description, load_segmenter
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.output_maps import _PostBuffers
from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter

C = CAMVID.num_classes
SIZES = [(97, 131), (64, 64), (120, 200), (33, 250)]


@pytest.fixture(scope="module")
def model() -> PerFrameSegNet:
    """The default architecture (small network input for speed) with decisive, varied logits."""
    torch.manual_seed(0)
    net = PerFrameSegNet(ModelConfig(input_size=(96, 128)))
    net.load_imagenet_backbone()
    with torch.no_grad():
        net.head.classifier.weight.normal_(0.0, 1.0)
        net.boundary_head.out.weight.normal_(0.0, 1.0)
    return net.eval()


@pytest.fixture(scope="module")
def seg(model: PerFrameSegNet) -> PerFrameSegmenter:
    return PerFrameSegmenter(model, CAMVID, "test:model", device="cpu")


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # blocky content gives several classes per image
    small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w])


def _check_maps(r: SegmentationResult, h: int, w: int) -> None:
    assert r.labels.shape == (h, w) and r.labels.dtype == np.uint8
    assert int(r.labels.max()) < C
    assert r.confidence is not None and r.confidence.shape == (h, w) and r.confidence.dtype == np.float32
    assert float(r.confidence.min()) >= 1.0 / C - 1e-5 and float(r.confidence.max()) <= 1.0 + 1e-6
    assert r.boundary is not None and r.boundary.shape == (h, w) and r.boundary.dtype == np.float32
    assert float(r.boundary.min()) >= 0.0 and float(r.boundary.max()) <= 1.0
    assert np.isfinite(r.confidence).all() and np.isfinite(r.boundary).all()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("input_size", ["model", None, (48, 80)])
def test_maps_at_the_frames_size(model: PerFrameSegNet, size: tuple[int, int], input_size: object) -> None:
    seg = PerFrameSegmenter(model, CAMVID, "t", device="cpu", input_size=input_size)
    h, w = size
    frame = Frame(_image(h, w), stamp_ns=5, camera_id="cam", meta={"k": 1})
    r = seg.push(frame)
    _check_maps(r, h, w)
    assert r.frame is frame and r.frames_fused == 1
    assert set(r.timings_ms) == {"preprocess", "network", "postprocess"}
    assert all(v >= 0 for v in r.timings_ms.values()) and r.inference_ms > 0
    expected = {"model": (96, 128), None: (h, w), (48, 80): (48, 80)}[input_size]  # type: ignore[index]
    assert seg.network_size(h, w) == expected


def test_segmenter_protocol(seg: PerFrameSegmenter) -> None:
    assert isinstance(seg, Segmenter)
    assert seg.delay_frames == 0 and seg.flush() == [] and seg.device == "cpu"
    assert seg.class_map is CAMVID and seg.model_id == "test:model"
    seg.reset()


def test_several_classes_and_real_confidence(seg: PerFrameSegmenter) -> None:
    r = seg.push(Frame(_image(120, 160), 0))
    assert len(np.unique(r.labels)) >= 2
    assert float(r.confidence.max()) > 1.5 / C


def test_matches_reference_pipeline(model: PerFrameSegNet) -> None:
    """Same maps as the plain pipeline: resize, normalise, pad, network, one bilinear upsampling to HxW."""
    seg = PerFrameSegmenter(model, CAMVID, "t", device="cpu", input_size=None)
    h, w = 97, 131
    img = _image(h, w, seed=3)
    r = seg.push(Frame(img, 0))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(model.config.mean).view(1, 3, 1, 1)) / torch.tensor(model.config.std).view(1, 3, 1, 1)
    x = F.pad(x, (0, 160 - w, 0, 128 - h))
    with torch.inference_mode():
        out = model(x)
    # logits cover the padded 128x160 input: upsample by 8 and crop to the frame
    logits = F.interpolate(out["logits"], scale_factor=8, mode="bilinear", align_corners=False)[0, :, :h, :w]
    edge = F.interpolate(out["boundary"], scale_factor=8, mode="bilinear", align_corners=False)[0, 0, :h, :w]
    assert (r.labels == logits.argmax(0).numpy()).mean() > 0.999
    np.testing.assert_allclose(r.confidence, logits.softmax(0).amax(0).numpy(), atol=1e-4)
    np.testing.assert_allclose(r.boundary, edge.sigmoid().numpy(), atol=1e-4)


def test_bands_give_the_same_maps(model: PerFrameSegNet, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = Frame(_image(97, 131, 8), 0)
    whole = PerFrameSegmenter(model, CAMVID, "t", device="cpu").push(frame)
    monkeypatch.setattr(_PostBuffers, "BAND_ELEMENTS", C * 131 * 10)  # 10 rows per band, last one shorter
    banded = PerFrameSegmenter(model, CAMVID, "t", device="cpu").push(frame)
    np.testing.assert_array_equal(whole.labels, banded.labels)
    np.testing.assert_allclose(whole.confidence, banded.confidence, rtol=1e-6)
    np.testing.assert_array_equal(whole.boundary, banded.boundary)


@pytest.mark.parametrize("stride", [8, 4])
@pytest.mark.parametrize("confidence", [False, True])
@pytest.mark.parametrize("shape", ["landscape", "portrait", "tiny"])
def test_labels_are_the_first_maximal_class_of_the_upsampled_logits(
    confidence: bool, shape: str, stride: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels straight from the output maps against argmax (first maximum) of F.interpolate, with exact
    ties between classes (equal channels, and a constant region), in one band and in several, landscape and
    portrait (columns interpolated first) and a frame enlarged 10x into the network input (less high than
    the logit rows it reads: rows first), from logits at stride 8 and 4; NaN logits give valid labels."""
    torch.manual_seed(0)
    h, w = (50, 70) if shape != "portrait" else (70, 50)  # the frame's region of the network input
    H, W = (h // 10, w // 10) if shape == "tiny" else (h, w)
    hl, wl = -(-h // stride), -(-w // stride)  # the logit grid of the padded input
    logits = torch.randn(1, C, hl, wl)
    logits[0, 5] = logits[0, 2]  # class 2 and 5 tie everywhere: 2 must win where they are the maximum
    logits[0, 2:4, :3, :3] = 9.0  # classes 2 and 3 tie at the top of a region
    scale = (stride * H / h, stride * W / w)
    up = F.interpolate(logits, scale_factor=scale, mode="bilinear", recompute_scale_factor=False)[0, :, :H, :W]
    nan = logits.clone()
    nan[0, :, -1, -1] = float("nan")
    for band_rows in (None, 7):
        if band_rows:
            monkeypatch.setattr(_PostBuffers, "BAND_ELEMENTS", C * W * band_rows)
        maps = _PostBuffers((H, W, h, w, hl, wl), C, stride, torch.device("cpu"))
        assert maps.cols_first == (shape != "tiny")
        with torch.inference_mode():
            torch.testing.assert_close(maps.upsample(logits[0]), up, atol=1e-5, rtol=1e-5)
            labels, conf = maps.labels_and_confidence(logits[0].contiguous(), confidence)
            assert labels.dtype == torch.uint8 and labels.shape == (H, W)
            assert torch.equal(labels.long(), up.argmax(0))
            assert (labels[: H // 2, : W // 2] == 2).any() and not (labels == 5).any()
            if confidence:
                torch.testing.assert_close(conf, up.softmax(0).amax(0), atol=1e-5, rtol=1e-5)
            else:
                assert conf is None
            assert int(maps.labels_and_confidence(nan[0].contiguous(), confidence)[0].max()) < C


@pytest.mark.parametrize("H, W", [(1, 400_000), (400_000, 1), (3, 200_000)])
def test_a_degenerate_frame_costs_what_its_pixels_cost(seg: PerFrameSegmenter, H: int, W: int) -> None:
    """A frame far longer than wide: the interpolation is kept as taps, not as a (side x logit grid) matrix,
    so the output maps' buffers stay proportional to its pixels."""
    import time

    frame = Frame(np.full((H, W, 3), 90, np.uint8), 0)
    t0 = time.perf_counter()
    r = seg.push(frame)
    seconds = time.perf_counter() - t0
    assert r.labels.shape == (H, W) and r.confidence.shape == (H, W) and r.boundary.shape == (H, W)
    pb = seg.output_maps._buffers
    held = sum(t.numel() for t in (pb.tmp, pb.up, pb.max, pb.rank, pb.sum, pb.rx.i0, pb.ry.i0))
    assert held <= (C + 5) * H * W + (1 << 21), held
    uniform = seg.push(Frame(np.full((97, 131, 3), 90, np.uint8), 1))
    assert (r.labels == uniform.labels[0, 0]).mean() > 0.99  # a flat frame: the same class everywhere
    assert seconds < 10.0


def test_output_request(seg: PerFrameSegmenter) -> None:
    frame = Frame(_image(97, 131), 0)
    full = seg.push(frame)
    bare = seg.push(frame, OutputRequest(boundary=False, confidence=False))
    assert bare.confidence is None and bare.boundary is None
    np.testing.assert_array_equal(bare.labels, full.labels)
    only_conf = seg.push(frame, OutputRequest(boundary=False, confidence=True))
    assert only_conf.boundary is None
    np.testing.assert_array_equal(only_conf.confidence, full.confidence)


def test_deterministic_and_results_independent(model: PerFrameSegNet, seg: PerFrameSegmenter) -> None:
    a_img, b_img = _image(97, 131, 1), _image(97, 131, 2)
    first = seg.push(Frame(a_img, 0))
    keep = (first.labels.copy(), first.confidence.copy(), first.boundary.copy())
    seg.push(Frame(b_img, 1))  # reused buffers must not leak into earlier results
    again = seg.push(Frame(a_img, 2))
    for old, arr, new in zip(
        keep, (first.labels, first.confidence, first.boundary), (again.labels, again.confidence, again.boundary)
    ):
        np.testing.assert_array_equal(old, arr)
        np.testing.assert_array_equal(old, new)
    other = PerFrameSegmenter(model, CAMVID, "t2", device="cpu").push(Frame(a_img, 0))
    np.testing.assert_array_equal(other.labels, first.labels)


def test_model_is_not_modified(model: PerFrameSegNet) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    PerFrameSegmenter(model, CAMVID, "t", device="cpu")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_speed_options_do_not_change_results(model: PerFrameSegNet) -> None:
    frame = Frame(_image(97, 131, 4), 0)
    fast = PerFrameSegmenter(model, CAMVID, "t", device="cpu").push(frame)
    plain = PerFrameSegmenter(model, CAMVID, "t", device="cpu", channels_last=False, fold_bn=False).push(frame)
    assert (fast.labels == plain.labels).mean() > 0.999
    np.testing.assert_allclose(fast.confidence, plain.confidence, atol=1e-4)


def test_bf16_runs_on_cpu(model: PerFrameSegNet) -> None:
    seg = PerFrameSegmenter(model, CAMVID, "t", device="cpu", precision="bf16")
    assert seg.precision == "bf16"
    frame = Frame(_image(97, 131, 5), 0)
    r = seg.push(frame)
    _check_maps(r, 97, 131)
    ref = PerFrameSegmenter(model, CAMVID, "t", device="cpu").push(frame)
    assert (r.labels == ref.labels).mean() > 0.8


def test_custom_mean_std_change_input(model: PerFrameSegNet) -> None:
    frame = Frame(_image(64, 64, 6), 0)
    a = PerFrameSegmenter(model, CAMVID, "t", device="cpu").push(frame)
    b = PerFrameSegmenter(model, CAMVID, "t", device="cpu", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).push(frame)
    assert not np.array_equal(a.confidence, b.confidence)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3), np.float32),
        np.zeros((0, 8, 3), np.uint8),
        "img",
    ],
)
def test_bad_frames(seg: PerFrameSegmenter, bad: object) -> None:
    with pytest.raises(ValueError):
        seg.push(Frame(bad, 0))  # type: ignore[arg-type]


@pytest.mark.parametrize("input_size", [None, (64, 96)])
def test_the_network_input_is_the_normalised_frame_zero_padded(input_size: object) -> None:
    """Both buffer layouts (channels-last normalises whole pixel rows) hold (x / 255 - mean) / std in the
    frame's region and 0 in the padding, also after a frame of another size used the preparer."""
    import cv2

    from vsseg_ros.core.frame_input import FramePreparer

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    img = _image(97, 131, 9)
    src = img if input_size is None else cv2.resize(img, (96, 64), interpolation=cv2.INTER_LINEAR)
    h, w = src.shape[:2]
    x = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    expected = F.pad(x, (0, -(-w // 32) * 32 - w, 0, -(-h // 32) * 32 - h))
    for channels_last in (True, False):
        prep = FramePreparer(input_size, mean, std, torch.device("cpu"), channels_last=channels_last)
        for frame in (img, _image(50, 70, 1), img):
            buf, bh, bw = prep(frame, *frame.shape[:2])
        assert (bh, bw) == (h, w)
        assert buf.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.testing.assert_close(buf, expected, atol=1e-6, rtol=0)


def test_non_contiguous_frame(seg: PerFrameSegmenter) -> None:
    img = _image(100, 140)[::-1, ::2]  # negative and doubled strides
    r = seg.push(Frame(img, 0))
    np.testing.assert_array_equal(r.labels, seg.push(Frame(np.ascontiguousarray(img), 0)).labels)


# -- devices and precisions ----------------------------------------------------------------------------------


def test_resolve_device_and_precision() -> None:
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu and resolve_device("CPU") == cpu
    assert resolve_device("auto").type in ("cpu", "cuda")
    for bad in ("gpu", "cuda:x", "auto:1", "cpu:1", "tpu"):
        with pytest.raises(ValueError):
            resolve_device(bad)
    if not torch.cuda.is_available():
        for want in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match="CUDA"):
                resolve_device(want)
    else:
        with pytest.raises(ValueError, match="out of range"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert resolve_precision("fp32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    if cpu_autocast_supports(torch.float16):
        assert resolve_precision("fp16", cpu) == torch.float16
    else:
        with pytest.raises(ValueError, match="fp16"):
            resolve_precision("fp16", cpu)
    with pytest.raises(ValueError):
        resolve_precision("fp8", cpu)


# -- load_segmenter ------------------------------------------------------------------------------------------


@pytest.fixture()
def no_packaged_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS", tmp_path / "absent" / "default.pt")


def test_default_fallback_is_the_untrained_model(no_packaged_default: None) -> None:
    rng_state = torch.random.get_rng_state()
    seg = load_segmenter("", device="cpu", input_size=(64, 96))
    assert torch.equal(rng_state, torch.random.get_rng_state()), "global RNG must be left alone"
    assert seg.model_id == UNTRAINED_MODEL_ID == "mbv2_lite:imagenet-backbone+untrained-heads"
    assert seg.class_map == CAMVID and seg.delay_frames == 0
    frame = Frame(_image(72, 100), 0)
    r = seg.push(frame)
    _check_maps(r, 72, 100)
    again = load_segmenter("", device="cpu", input_size=(64, 96)).push(frame)  # deterministic build
    np.testing.assert_array_equal(r.confidence, again.confidence)
    assert "untrained" in default_model_description().lower()
    assert UNTRAINED_MODEL_ID in default_model_description()


def test_default_model_uses_config_size(no_packaged_default: None) -> None:
    seg = load_segmenter()
    assert isinstance(seg, PerFrameSegmenter) and seg.input_size == (360, 480)
    assert load_segmenter(input_size=(0, 0)).input_size is None


def test_packaged_default_checkpoint_is_preferred(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: PerFrameSegNet
) -> None:
    p = save_checkpoint(tmp_path / "default.pt", model, model.config, CAMVID, "mbv2_lite:camvid-trained")
    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS", p)
    assert load_segmenter("").model_id == "mbv2_lite:camvid-trained"
    assert str(p) in default_model_description()


def test_load_segmenter_from_checkpoint(tmp_path: Path, model: PerFrameSegNet) -> None:
    p = save_checkpoint(tmp_path / "m.pt", model, model.config, CAMVID, "mine:v1", half=True)
    seg = load_segmenter(str(p), device="cpu", mean=[0.4, 0.4, 0.4], std=[0.2, 0.2, 0.2])
    assert seg.model_id == "mine:v1" and seg.input_size == (96, 128)
    assert seg.mean == (0.4, 0.4, 0.4) and seg.std == (0.2, 0.2, 0.2)
    frame = Frame(_image(97, 131, 7), 0)
    ref = PerFrameSegmenter(model, CAMVID, "t", device="cpu", mean=[0.4] * 3, std=[0.2] * 3).push(frame)
    assert (seg.push(frame).labels == ref.labels).mean() > 0.99


@pytest.mark.parametrize(
    "kwargs",
    [
        {"device": "gpu"},
        {"precision": "fp8"},
        {"input_size": (0, 100)},
        {"input_size": (-5, 10)},
        {"input_size": "big"},
        {"mean": (0.5, 0.5)},
        {"std": (0.2, 0.0, 0.2)},
        {"std": "abc"},
    ],
)
def test_load_segmenter_argument_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        load_segmenter("", **kwargs)


def test_load_segmenter_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_segmenter(str(tmp_path / "missing.pt"))
