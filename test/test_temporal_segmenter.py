"""TemporalSegmenter: streaming equals the naive window forward with one backbone pass per frame; causal and
centered outputs; window resets; per-camera windows; flush; checkpoint round trip; the shared output steps."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vsseg_ros.core.checkpoint import load_checkpoint, save_checkpoint
from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.frame_input import FramePreparer
from vsseg_ros.core.loading import load_segmenter, segmenter_from_checkpoint
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.models.temporal import TemporalSegNet
from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter
from vsseg_ros.core.segmenter import Frame, OutputRequest, Segmenter
from vsseg_ros.core.temporal_segmenter import STAGES, TemporalResult, TemporalSegmenter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

C = CAMVID.num_classes
NET = (32, 48)  # network input (small: fast)
FRAME = (40, 56)  # frames are resized to NET
SEC = 1_000_000_000
DT = SEC // 10  # 10 Hz


def _config(
    mode: str = "causal", frames: int = 3, mar: bool = True, flow2seg: bool = False, **perframe: Any
) -> ModelConfig:
    temporal: dict[str, Any] = {
        "frames": frames,
        "mode": mode,
        "stf": {"heads": 2, "ffn": 32, "block": 2, "dropout": 0.0, "pe_size": [4, 6]},
        "mar": {"slots_per_class": 2, "dim": 16} if mar else None,
        "flow2seg": {"preset": "ultrafast"} if flow2seg else None,
    }
    base = dict(name="tiny_stf", head_channels=16, input_size=NET, output_stride=16)
    return ModelConfig(**{**base, **perframe, "temporal": temporal})


def _tiny(seed: int = 0, **kwargs: Any) -> TemporalSegNet:
    """A small random temporal model with decisive logits (several classes per frame)."""
    torch.manual_seed(seed)
    model = TemporalSegNet(_config(**kwargs))
    with torch.no_grad():
        model.perframe.head.classifier.weight.normal_(0.0, 1.0)
        model.perframe.boundary_head.out.weight.normal_(0.0, 1.0)
        if model.flow2seg is not None:  # its fusion starts at zero: make the flow count
            model.flow2seg.fusion.conv_out.weight.normal_(0.0, 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def causal_model() -> TemporalSegNet:
    return _tiny(mode="causal")


@pytest.fixture(scope="module")
def centered_model() -> TemporalSegNet:
    return _tiny(mode="centered")


def _image(seed: int, size: tuple[int, int] = FRAME) -> np.ndarray:
    """Blocky content that moves by a few pixels from frame to frame (seed = time)."""
    h, w = size
    rng = np.random.default_rng(12345)
    big = np.repeat(np.repeat(rng.integers(0, 256, (h // 4 + 8, w // 4 + 8, 3), dtype=np.uint8), 4, 0), 4, 1)
    dy, dx = seed % 5, (2 * seed) % 7
    return np.ascontiguousarray(big[dy : dy + h, dx : dx + w])


def _frames(
    n: int, camera: str = "cam", t0: int = 0, dt: int = DT, size: tuple[int, int] = FRAME, first: int = 0
) -> list[Frame]:
    return [Frame(_image(first + i, size), t0 + i * dt, camera, meta=(camera, first + i)) for i in range(n)]


def _segmenter(model: TemporalSegNet, **kwargs: Any) -> TemporalSegmenter:
    kwargs.setdefault("device", "cpu")
    return TemporalSegmenter(model, CAMVID, "test:stf", **kwargs)


def _count_backbone(seg: TemporalSegmenter) -> list[int]:
    """Wrap the segmenter's backbone forward; the returned list grows by one per call."""
    calls: list[int] = []
    backbone = seg.net.perframe.backbone
    forward = backbone.forward

    def counted(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return forward(*args, **kw)

    backbone.forward = counted
    return calls


def _inputs(seg: TemporalSegmenter, frames: list[Frame]) -> torch.Tensor:
    """The frames as the segmenter feeds them: (1, T, 3, hp, wp), prepared independently of its buffer."""
    prep = FramePreparer(seg.input_size, seg.mean, seg.std, torch.device("cpu"), channels_last=False)
    return torch.stack([prep(f.image, *f.image.shape[:2])[0][0].clone() for f in frames])[None]


def _flow_into(seg: TemporalSegmenter, prev: Frame, cur: Frame) -> torch.Tensor:
    """DIS flow from ``prev`` to ``cur`` at the network size, as the flow path's padded input."""
    import cv2

    from vsseg_ros.core.flow import DISFlow, flow_to_tensor, to_gray

    h, w = seg.network_size(*cur.image.shape[:2])
    grays = [cv2.resize(to_gray(f.image), (w, h), interpolation=cv2.INTER_LINEAR) for f in (prev, cur)]
    options = seg.net.temporal.flow2seg  # the DIS preset and scale the model was configured with
    flow = flow_to_tensor(DISFlow(options.preset, options.scale)(*grays))
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    return F.pad(flow, (0, wp - w, 0, hp - h))


def _stream(seg: Segmenter, frames: list[Frame], request: OutputRequest = OutputRequest()) -> list[Any]:
    """Push every frame; the list of what each push returned (None included)."""
    return [seg.push(f, request) for f in frames]


# -- streaming equals the naive forward ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["causal", "centered"])
@pytest.mark.parametrize("variant", ["stf+mar", "stf", "stf+mar+flow2seg"])
def test_streaming_equals_the_naive_window_forward(mode: str, variant: str) -> None:
    model = _tiny(mode=mode, mar="mar" in variant, flow2seg="flow2seg" in variant)
    seg = _segmenter(model, return_logits=True, fold_bn=False, channels_last=False)  # the same arithmetic
    calls = _count_backbone(seg)
    frames = _frames(7)
    by_stamp = {f.stamp_ns: f for f in frames}
    results = [r for r in _stream(seg, frames) if r is not None] + seg.flush()
    assert len(calls) == len(frames), "the backbone must run exactly once per frame"
    assert seg.backbone_calls == len(frames)
    assert [r.frame for r in results] == frames  # every frame labelled once, in order
    for r in results:
        assert isinstance(r, TemporalResult) and r.logits is not None
        window = [by_stamp[s] for s in r.window_stamps]
        assert window[r.target] is r.frame and r.frames_fused == len(window)
        flow = _flow_into(seg, window[r.target - 1], r.frame) if model.flow2seg is not None and r.target > 0 else None
        with torch.inference_mode():
            ref = model(_inputs(seg, window), r.target, flow=flow)["logits"]
        assert r.logits.shape == ref.shape
        torch.testing.assert_close(r.logits, ref, atol=1e-5, rtol=0)
        if flow is not None:  # the flow path really contributes, so a wrong flow would be seen
            with torch.inference_mode():
                without = model(_inputs(seg, window), r.target)["logits"]
            assert (without - ref).abs().max() > 1e-2


@pytest.mark.parametrize("flow2seg", [False, True])
def test_only_the_logit_rows_the_maps_read_are_refined(flow2seg: bool) -> None:
    """A 40-row network input is padded to 64 rows, 8 at stride 8, of which the maps read 6: MAR and the
    classifier run on those 6 (on all 8 where Flow2Seg's convolutions need the whole map), and the maps equal
    those made from the whole logits (as ``return_logits`` keeps them)."""
    model = _tiny(input_size=(40, 48), flow2seg=flow2seg)
    cropped, whole = _segmenter(model), _segmenter(model, return_logits=True)
    seen: list[int] = []
    cropped.net.mar.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[-2]))
    for f in _frames(4):
        a, b = cropped.push(f), whole.push(f)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
        np.testing.assert_allclose(a.boundary, b.boundary, atol=1e-6)
    assert b.logits.shape[-2] == 8 and len(np.unique(a.labels)) >= 2
    assert seen == ([6, 8, 8, 8] if flow2seg else [6, 6, 6, 6])  # the first frame has no flow yet
    with pytest.raises(ValueError, match="rows"):
        model.fuse([torch.zeros(1, 16, 8, 6)], 0, rows=0)


def test_the_windows_of_causal_and_centered(causal_model: TemporalSegNet, centered_model: TemporalSegNet) -> None:
    frames = _frames(5)
    s = [f.stamp_ns for f in frames]
    causal = _segmenter(causal_model)
    assert causal.mode == "causal" and causal.delay_frames == 0 and causal.window_size == 3
    got = _stream(causal, frames)
    assert [r.frame for r in got] == frames  # push(t) labels t
    assert [r.window_stamps for r in got] == [tuple(s[:1]), tuple(s[:2]), tuple(s[:3]), tuple(s[1:4]), tuple(s[2:5])]
    assert [r.frames_fused for r in got] == [1, 2, 3, 3, 3]
    assert causal.flush() == []

    centered = _segmenter(centered_model)
    assert centered.mode == "centered" and centered.delay_frames == 1
    got = _stream(centered, frames)
    assert got[0] is None  # frame 0 waits for frame 1
    assert [r.frame for r in got[1:]] == frames[:4]  # push(t + 1) labels t, with t's Frame (and meta)
    assert [r.frame.meta for r in got[1:]] == [f.meta for f in frames[:4]]
    assert [(r.window_stamps, r.target) for r in got[1:]] == [
        (tuple(s[:2]), 0),
        (tuple(s[:3]), 1),
        (tuple(s[1:4]), 1),
        (tuple(s[2:5]), 1),
    ]
    (last,) = centered.flush()
    assert last.frame is frames[4] and last.window_stamps == tuple(s[3:5]) and last.target == 1
    assert centered.flush() == []
    assert centered.push(_frames(1, t0=s[-1] + DT)[0]) is None  # a new stream after the flush


def test_mode_override_and_model_default(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model, mode="centered")
    assert seg.mode == "centered" and seg.delay_frames == 1
    assert _segmenter(causal_model, mode="").mode == "causal"
    for bad in (
        {"mode": "future"},
        {"max_frame_gap_s": 0},
        {"max_frame_gap_s": -1.0},
        {"max_frame_gap_s": float("nan")},
        {"max_cameras": 0},
    ):
        with pytest.raises(ValueError):
            _segmenter(causal_model, **bad)


def test_only_the_segmenters_own_copy_has_frozen_weights(causal_model: TemporalSegNet) -> None:
    """Its caches skip the per-frame weight checks; the caller's model keeps checking (it may be trained)."""
    seg = _segmenter(causal_model)
    assert seg.net.stf.weights_frozen and seg.net.mar.HEdecoder.weights_frozen
    assert not causal_model.stf.weights_frozen and not causal_model.mar.HEdecoder.weights_frozen


def test_results_are_maps_at_the_frame_size_with_every_stage_timed(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model)
    for r in _stream(seg, _frames(3)):
        assert r.labels.shape == FRAME and r.labels.dtype == np.uint8 and int(r.labels.max()) < C
        assert r.confidence.shape == FRAME and float(r.confidence.min()) >= 1.0 / C - 1e-5
        assert r.boundary.shape == FRAME and 0.0 <= float(r.boundary.min()) <= float(r.boundary.max()) <= 1.0
        assert set(r.timings_ms) == set(STAGES) and all(v >= 0 for v in r.timings_ms.values())
        assert r.timings_ms["backbone"] > 0 and r.timings_ms["fusion"] > 0 and r.timings_ms["mar"] > 0
        assert r.timings_ms["flow"] == 0  # no Flow2Seg path
    assert len(np.unique(r.labels)) >= 2
    bare = seg.push(_frames(1, t0=3 * DT, first=3)[0], OutputRequest(boundary=False, confidence=False))
    assert bare.boundary is None and bare.confidence is None


def test_flow_is_computed_once_per_frame_and_timed() -> None:
    seg = _segmenter(_tiny(mode="centered", flow2seg=True))
    from vsseg_ros.core import flow as flow_module

    dis_calls: list[int] = []
    dis = seg._flow
    seg._flow = lambda a, b: dis_calls.append(1) or dis(a, b)  # count DIS runs
    results = [r for r in _stream(seg, _frames(5)) if r is not None]
    assert len(dis_calls) == 4  # one per frame after the first of the window
    assert all(r.timings_ms["flow"] > 0 for r in results)
    assert flow_module.DISFlow  # the real DIS ran (see the equivalence test for its values)


# -- window resets ---------------------------------------------------------------------------------------------


def test_gap_restarts_the_window(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model, max_frame_gap_s=0.25)
    a = _frames(3)
    b = _frames(2, t0=a[-1].stamp_ns + SEC // 4, first=3)  # exactly the gap: still one window
    c = _frames(2, t0=b[-1].stamp_ns + SEC // 4 + 1, first=5)  # 1 ns more: restarted
    got = _stream(seg, a + b + c)
    assert got[4].window_stamps == tuple(f.stamp_ns for f in a[2:] + b)
    assert got[5].window_stamps == (c[0].stamp_ns,) and got[5].frames_fused == 1
    assert got[6].window_stamps == tuple(f.stamp_ns for f in c)
    assert seg.resets["gap"] == 1 and sum(seg.resets.values()) == 1


def test_stamp_going_backwards_restarts_the_window(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model)
    loop = _frames(3) + _frames(3)  # a bag played twice
    got = _stream(seg, loop)
    assert [r.frames_fused for r in got] == [1, 2, 3, 1, 2, 3]
    assert got[3].window_stamps == (0,)
    assert seg.resets["stamp_backwards"] == 1 and sum(seg.resets.values()) == 1


def test_resolution_change_restarts_the_window(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model)
    small = _frames(2)
    large = _frames(2, t0=2 * DT, size=(48, 64), first=2)
    got = _stream(seg, small + large)
    assert [r.frames_fused for r in got] == [1, 2, 1, 2]
    assert got[3].labels.shape == (48, 64)
    assert seg.resets["resolution"] == 1 and sum(seg.resets.values()) == 1
    native = _segmenter(causal_model, input_size=None)  # features of another size must not meet either
    assert [r.frames_fused for r in _stream(native, small + large)] == [1, 2, 1, 2]


def test_centered_restart_returns_the_held_frame_first(centered_model: TemporalSegNet) -> None:
    seg = _segmenter(centered_model)
    a = _frames(3)
    b = _frames(2, t0=a[-1].stamp_ns + 5 * SEC, first=3)  # after a pause longer than the gap
    got = _stream(seg, a + b)
    assert got[0] is None and [r.frame for r in got[1:3]] == a[:2]
    held = got[3]  # the pause ends window a: its last frame is labelled with what it has; b[0] is held
    assert held.frame is a[2] and held.window_stamps == (a[1].stamp_ns, a[2].stamp_ns)
    assert got[4].frame is b[0] and got[4].window_stamps == (b[0].stamp_ns, b[1].stamp_ns)
    assert seg.resets["gap"] == 1


# -- cameras ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["causal", "centered"])
def test_cameras_never_fuse_with_each_other(causal_model: TemporalSegNet, mode: str) -> None:
    left, right = _frames(4, "left"), _frames(4, "right", t0=DT // 2, first=10)
    interleaved = [f for pair in zip(left, right) for f in pair]
    seg = _segmenter(causal_model, mode=mode, return_logits=True)
    mixed = [r for r in _stream(seg, interleaved) if r is not None] + seg.flush()
    assert sum(seg.resets.values()) == 0 and seg.backbone_calls == 8
    for camera, frames in (("left", left), ("right", right)):
        alone = _segmenter(causal_model, mode=mode, return_logits=True)
        ref = [r for r in _stream(alone, frames) if r is not None] + alone.flush()
        mine = [r for r in mixed if r.frame.camera_id == camera]
        assert [r.frame for r in mine] == [r.frame for r in ref] == frames
        for a, b in zip(mine, ref):
            assert a.window_stamps == b.window_stamps
            torch.testing.assert_close(a.logits, b.logits, atol=1e-6, rtol=0)


def test_a_camera_change_ends_the_silent_cameras_window(centered_model: TemporalSegNet) -> None:
    seg = _segmenter(centered_model, max_frame_gap_s=0.5)
    a = _frames(3, "a")
    b = _frames(2, "b", t0=a[-1].stamp_ns + SEC, first=5)  # the stream moves to camera b
    got = _stream(seg, a + b)
    assert got[3].frame is a[2]  # b's first frame is held; a's held frame comes out in its place
    assert got[4].frame is b[0] and seg.cameras == ["b"]
    assert seg.resets["camera_change"] == 1


def test_camera_windows_are_bounded(centered_model: TemporalSegNet) -> None:
    seg = _segmenter(centered_model, max_cameras=2, max_frame_gap_s=100.0)
    frames = [Frame(_image(i), i * DT, f"cam{i}") for i in range(3)]
    got = _stream(seg, frames)
    assert got[:2] == [None, None]
    assert got[2].frame is frames[0] and got[2].frames_fused == 1  # evicted: labelled, not lost
    assert seg.cameras == ["cam1", "cam2"] and seg.resets["camera_evicted"] == 1
    assert [r.frame for r in seg.flush()] == frames[1:]


def test_reset_forgets_all_windows(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model)
    _stream(seg, _frames(3))
    seg.reset()
    assert seg.window_fill("cam") == 0 and seg.cameras == []
    assert seg.push(_frames(1, t0=10 * DT)[0]).frames_fused == 1


def test_pushes_from_two_threads(causal_model: TemporalSegNet) -> None:
    seg = _segmenter(causal_model)
    out: dict[str, list[int]] = {"x": [], "y": []}

    def run(camera: str) -> None:
        for r in _stream(seg, _frames(4, camera)):
            out[camera].append(r.frames_fused)

    threads = [threading.Thread(target=run, args=(c,)) for c in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == {"x": [1, 2, 3, 3], "y": [1, 2, 3, 3]} and seg.backbone_calls == 8


# -- checkpoints and loading -----------------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, centered_model: TemporalSegNet) -> None:
    path = save_checkpoint(tmp_path / "stf.pt", centered_model, centered_model.config, CAMVID, "tiny:stf")
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt.build_model(), TemporalSegNet)
    loaded = load_segmenter(str(path), device="cpu")
    assert isinstance(loaded, TemporalSegmenter) and loaded.model_id == "tiny:stf"
    assert loaded.mode == "centered" and loaded.max_frame_gap_s == 0.5
    direct = _segmenter(centered_model)
    frames = _frames(4)
    for a, b in zip(_stream(loaded, frames) + loaded.flush(), _stream(direct, frames) + direct.flush()):
        if a is None or b is None:
            assert a is b
            continue
        assert a.frame is b.frame
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.confidence, b.confidence)
        np.testing.assert_array_equal(a.boundary, b.boundary)
    if centered_model.mar is not None:  # the MAR memory travels in the state_dict
        assert any("memory" in k for k in ckpt.state_dict)


def test_load_segmenter_temporal_overrides(tmp_path: Path, causal_model: TemporalSegNet) -> None:
    path = save_checkpoint(tmp_path / "stf.pt", causal_model, causal_model.config, CAMVID, "tiny:stf")
    seg = load_segmenter(str(path), device="cpu", temporal_mode="centered", max_frame_gap_s=2.0)
    assert seg.mode == "centered" and seg.delay_frames == 1 and seg.max_frame_gap_s == 2.0
    seg = segmenter_from_checkpoint(load_checkpoint(path), device="cpu", temporal_mode=None)
    assert seg.mode == "causal"
    for bad in ({"temporal_mode": "sideways"}, {"max_frame_gap_s": 0.0}, {"max_frame_gap_s": "soon"}):
        with pytest.raises(ValueError):
            load_segmenter(str(path), device="cpu", **bad)
    # per-frame models take the same arguments and ignore them
    perframe = PerFrameSegNet(ModelConfig(head_channels=16, input_size=NET))
    p2 = save_checkpoint(tmp_path / "pf.pt", perframe, perframe.config, CAMVID, "tiny:pf")
    assert isinstance(load_segmenter(str(p2), device="cpu", temporal_mode="centered"), PerFrameSegmenter)


# -- the shared output steps use the model's stride ------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_maps_follow_the_models_stride(output_stride: int) -> None:
    """PSP/FCN heads work at their backbone's output stride: upsampling must use ``net.stride``."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet18", head="fcn", output_stride=output_stride, head_channels=16, input_size=None)
    net = PerFrameSegNet(cfg).eval()
    assert net.stride == output_stride
    h, w = 97, 131
    img = _image(0, (h, w))
    r = PerFrameSegmenter(net, CAMVID, "t", device="cpu", input_size=None).push(Frame(img, 0))
    x = (
        torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0 - torch.tensor(cfg.mean).view(1, 3, 1, 1)
    ) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        out = net(F.pad(x, (0, 160 - w, 0, 128 - h)))
    logits = F.interpolate(out["logits"], scale_factor=output_stride, mode="bilinear", align_corners=False)[
        0, :, :h, :w
    ]
    assert (r.labels == logits.argmax(0).numpy()).mean() > 0.999
    np.testing.assert_allclose(r.confidence, logits.softmax(0).amax(0).numpy(), atol=1e-4)


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((0, 8, 3), np.uint8)]
)
def test_bad_frames_are_refused_without_touching_the_window(causal_model: TemporalSegNet, bad: np.ndarray) -> None:
    seg = _segmenter(causal_model)
    seg.push(_frames(1)[0])
    with pytest.raises(ValueError, match="frame.image"):
        seg.push(Frame(bad, DT, "cam"))
    assert seg.window_fill("cam") == 1 and seg.backbone_calls == 1
