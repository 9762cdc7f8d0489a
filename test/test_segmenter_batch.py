"""push_batch: frames of several cameras through the network as one batch give what one-at-a-time pushes give
(labels equal, maps and logits to 1e-5), per-frame and temporal (the backbone pass batched), and maps at the
network's resolution on request."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_temporal_segmenter import DT, _image, _tiny
from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter
from vsseg_ros.core.segmenter import Frame, OutputRequest, Segmenter
from vsseg_ros.core.temporal_segmenter import TemporalSegmenter

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOL = 1e-5
SIZES = [(48, 64), (60, 80), (48, 64), (37, 90)]  # four cameras, two of the same size


@pytest.fixture(scope="module")
def perframe_model() -> PerFrameSegNet:
    torch.manual_seed(0)
    net = PerFrameSegNet(ModelConfig(input_size=(64, 96)))
    with torch.no_grad():
        net.head.classifier.weight.normal_(0.0, 1.0)
        net.boundary_head.out.weight.normal_(0.0, 1.0)
    return net.eval()


def _frames(step: int) -> list[Frame]:
    return [
        Frame(_image(step + 3 * c, size), 1_000 + step * DT, f"cam{c}", meta=(c, step)) for c, size in enumerate(SIZES)
    ]


def _same(a, b) -> None:
    assert a.frame is b.frame or a.frame.meta == b.frame.meta
    assert np.array_equal(a.labels, b.labels)
    for x, y in ((a.confidence, b.confidence), (a.boundary, b.boundary)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=0, atol=TOL)
    assert a.frames_fused == b.frames_fused


@pytest.mark.parametrize("input_size", ["model", None], ids=["network-size", "native-size"])
def test_perframe_batch_equals_one_at_a_time(perframe_model: PerFrameSegNet, input_size) -> None:
    seg = PerFrameSegmenter(perframe_model, CAMVID, "t", input_size=input_size)
    assert seg.batches
    frames = _frames(0)
    batched = seg.push_batch(frames)
    assert len(batched) == len(frames)
    for frame, result in zip(frames, batched):
        assert result is not None and result.frame is frame  # each result keeps its own frame (header)
        _same(result, seg.push(frame))
        assert result.labels.shape == frame.image.shape[:2]
    # the network's logits themselves: the batch's slices equal single-frame passes
    with torch.inference_mode():
        for batch in seg._prepare_batch(frames, [f.image.shape[:2] for f in frames]):
            many = seg.net(batch.x)["logits"]
            for k, i in enumerate(batch.members):
                one, _, _ = seg.prepare(frames[i].image, *frames[i].image.shape[:2])
                torch.testing.assert_close(many[k : k + 1], seg.net(one)["logits"], rtol=0, atol=TOL)


def test_network_resolution_maps(perframe_model: PerFrameSegNet) -> None:
    seg = PerFrameSegmenter(perframe_model, CAMVID, "t")
    request = OutputRequest(resolution="network")
    frames = _frames(1)
    for result, frame in zip(seg.push_batch(frames, request), frames):
        assert result.labels.shape == result.confidence.shape == result.boundary.shape == (64, 96)
        _same(result, seg.push(frame, request))
    with pytest.raises(ValueError, match="resolution"):
        OutputRequest(resolution="half")


@pytest.mark.parametrize("mode", ["causal", "centered"])
def test_temporal_batch_equals_one_at_a_time(mode: str) -> None:
    model = _tiny(mode=mode)
    batched = TemporalSegmenter(model, CAMVID, "t", mode=mode, return_logits=True)
    single = TemporalSegmenter(model, CAMVID, "t", mode=mode, return_logits=True)
    got = 0
    for step in range(5):
        frames = _frames(step)
        a = batched.push_batch(frames)
        b = [single.push(f) for f in frames]
        assert [r is None for r in a] == [r is None for r in b]
        for x, y in zip(a, b):
            if x is not None:
                _same(x, y)
                assert x.window_stamps == y.window_stamps and x.target == y.target
                torch.testing.assert_close(x.logits, y.logits, rtol=0, atol=TOL)
                got += 1
    assert got >= 4 * 4  # every camera labelled (centered: one step late)
    assert batched.backbone_calls == single.backbone_calls == 5 * len(SIZES)
    assert max(r.frames_fused for r in a if r is not None) == 3  # the windows filled, one per camera
    for x, y in zip(batched.flush(), single.flush()):
        _same(x, y)


def test_the_base_interface_pushes_in_order() -> None:
    """A Segmenter without a network (or an exported one, batch 1) takes the batch one frame at a time."""

    class Echo(Segmenter):
        class_map = CAMVID
        model_id = "echo"

        def __init__(self) -> None:
            self.seen: list[int] = []

        def push(self, frame, request=OutputRequest()):
            self.seen.append(frame.stamp_ns)
            return None

    echo = Echo()
    assert echo.push_batch(_frames(0)) == [None] * len(SIZES) and echo.seen == [1_000] * len(SIZES)
