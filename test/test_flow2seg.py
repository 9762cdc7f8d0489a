"""Flow2Seg: DIS optical flow, its conversion to a network input, the flow path, the residual fusion and the loss.

The last test is the issue's learning test: on synthetic clips in which one class looks exactly like the background
and differs from it only in how it moves, image model + Flow2Seg path beats the image model alone by a clear mIoU
margin after a short CPU training.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vsseg_ros.core.flow import FLOW_NORM, DISFlow, flow_to_tensor, to_gray
from vsseg_ros.core.models.flow2seg import Flow2SegPath, FlowSegNet, ResidualFusion, flow2seg_loss
from vsseg_ros.metrics.confusion import ConfusionMatrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _texture(rng: np.random.Generator, h: int, w: int, sigma: float = 1.5) -> np.ndarray:
    """Blurred noise, contrast-normalised to grey values around 128 (trackable by DIS at every pyramid level)."""
    import cv2

    g = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), sigma)
    g = (g - g.mean()) / (g.std() + 1e-6)
    return np.clip(128 + 50 * g, 0, 255)


# -- grey conversion and DIS ---------------------------------------------------------------------------


def test_to_gray_accepts_rgb_and_grey_and_rejects_others():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255
    gray = to_gray(rgb)
    assert gray.shape == (4, 5) and gray.dtype == np.uint8
    assert 70 <= int(gray[0, 0]) <= 80  # ITU-R 601 weight of red: 0.299
    assert to_gray(gray) is gray
    assert to_gray(gray[..., None]).shape == (4, 5)
    with pytest.raises(ValueError, match="uint8"):
        to_gray(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="RGB"):
        to_gray(np.zeros((4, 5, 4), np.uint8))


def test_dis_rejects_bad_presets_and_inputs():
    with pytest.raises(ValueError, match="ultrafast, fast, medium"):
        DISFlow("slow")
    with pytest.raises(ValueError, match="scale"):
        DISFlow("fast", scale=0.0)
    dis = DISFlow("FAST")  # names are case-insensitive
    a = np.zeros((32, 48), np.uint8)
    with pytest.raises(ValueError, match="same size"):
        dis(a, np.zeros((32, 40), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dis(a, a.astype(np.float32))
    with pytest.raises(ValueError, match="grey"):
        dis(a, np.zeros((32, 48, 3), np.uint8))


@pytest.mark.parametrize("preset,scale", [("ultrafast", 1.0), ("fast", 1.0), ("medium", 1.0), ("medium", 0.5)])
def test_dis_recovers_a_translation(preset, scale):
    rng = np.random.default_rng(3)
    canvas = _texture(rng, 140, 180, sigma=2.0).astype(np.uint8)
    dx, dy = 3, -2  # the content moves 3 px right and 2 px up from prev to cur
    prev = canvas[10:130, 10:170]
    cur = canvas[10 - dy : 130 - dy, 10 - dx : 170 - dx]
    assert np.array_equal(cur[5:-5, 5:-5], prev[5 - dy : -5 - dy, 5 - dx : -5 - dx])  # cur(x) == prev(x - d)
    flow = DISFlow(preset, scale=scale)(prev, cur)
    assert flow.shape == (120, 160, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    u, v = np.median(inner, axis=0)
    assert abs(u - dx) < 0.3 and abs(v - dy) < 0.3, (u, v)
    assert np.mean(np.linalg.norm(inner - [dx, dy], axis=1) < 0.5) > 0.9


# -- flow_to_tensor ------------------------------------------------------------------------------------


def test_flow_to_tensor_scales_vectors_with_the_resize():
    flow = np.zeros((100, 200, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    t = flow_to_tensor(flow, size=(50, 50))
    assert t.shape == (1, 2, 50, 50) and t.dtype == torch.float32
    # x: 200 -> 50 px (factor 1/4): 4 px -> 1 px; y: 100 -> 50 px (factor 1/2): -2 px -> -1 px
    assert torch.allclose(t[0, 0], torch.full((50, 50), 1.0 / FLOW_NORM))
    assert torch.allclose(t[0, 1], torch.full((50, 50), -1.0 / FLOW_NORM))
    same = flow_to_tensor(flow)
    assert same.shape == (1, 2, 100, 200) and torch.allclose(same[0, 0], torch.full((100, 200), 4.0 / FLOW_NORM))
    # a list of flows and an (N, H, W, 2) array give the same batch
    other = np.random.default_rng(0).normal(size=(100, 200, 2)).astype(np.float32)
    batch = flow_to_tensor([flow, other], size=(20, 40))
    assert batch.shape == (2, 2, 20, 40)
    assert torch.allclose(batch, flow_to_tensor(np.stack([flow, other]), size=(20, 40)))
    # upsampling scales up: a 1 px motion at 100x200 is 2 px at 200x400
    up = flow_to_tensor(np.ones((100, 200, 2), np.float32), size=(200, 400))
    assert torch.allclose(up, torch.full_like(up, 2.0 / FLOW_NORM))


def test_flow_to_tensor_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        flow_to_tensor(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="one size"):
        flow_to_tensor([np.zeros((10, 10, 2), np.float32), np.zeros((10, 12, 2), np.float32)])
    with pytest.raises(ValueError, match="empty"):
        flow_to_tensor([])
    with pytest.raises(ValueError, match="size"):
        flow_to_tensor(np.zeros((10, 10, 2), np.float32), size=(0, 5))


# -- networks ------------------------------------------------------------------------------------------


def test_flowsegnet_shapes_strides_and_gradients():
    torch.manual_seed(0)
    net = FlowSegNet(5)  # the real network: ResNet-18 (width 64), OS8
    assert net.backbone.conv1.in_channels == 2 and net.stride == 8
    flow = torch.randn(2, 2, 65, 97)
    logits = net(flow)
    assert logits.shape == (2, 5, 9, 13)  # ceil(65 / 8), ceil(97 / 8)
    logits.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.backbone.conv1.weight.grad.abs().sum() > 0
    assert FlowSegNet(3, output_stride=16, width=16)(torch.randn(1, 2, 64, 96)).shape == (1, 3, 4, 6)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        net(torch.randn(1, 3, 64, 96))


def test_residual_fusion_starts_as_the_image_model_and_learns():
    torch.manual_seed(0)
    fusion = ResidualFusion(4, channels=16)
    image = torch.randn(2, 4, 6, 8, requires_grad=True)
    flow = torch.randn(2, 4, 6, 8, requires_grad=True)
    out = fusion(image, flow)
    assert out.shape == image.shape and torch.equal(out, image)  # zero-initialised last layer
    target = torch.randint(0, 4, (2, 6, 8))
    F.cross_entropy(out, target).backward()
    assert fusion.conv_out.weight.grad.abs().sum() > 0  # the correction gets a gradient from the first step
    torch.optim.SGD(fusion.parameters(), lr=0.5).step()
    fusion.zero_grad()
    flow.grad = None
    out = fusion(image, flow)
    assert not torch.equal(out, image)
    F.cross_entropy(out, target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())
    assert flow.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one shape"):
        fusion(image, flow[:, :, :5])


def test_flow2seg_path_resizes_flow_logits_and_passes_gradients():
    torch.manual_seed(0)
    path = Flow2SegPath(3, output_stride=8, width=16, head_channels=32)
    flow = torch.randn(2, 2, 64, 96)
    image = torch.randn(2, 3, 16, 24, requires_grad=True)  # image path at stride 4
    out = path(image, flow)
    assert set(out) == {"logits", "flow_logits"}
    assert out["logits"].shape == out["flow_logits"].shape == (2, 3, 16, 24)
    assert torch.equal(out["logits"], image)  # before training, the fused model is the image model
    same = path(torch.randn(2, 3, 8, 12), flow)
    assert same["flow_logits"].shape == (2, 3, 8, 12)
    target = torch.randint(0, 3, (2, 64, 96))
    flow2seg_loss(image, out["logits"], out["flow_logits"], None, target).backward()
    assert image.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in path.flow_net.parameters())
    with pytest.raises(ValueError, match="batch"):
        path(image[:1], flow)
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        path(torch.randn(2, 4, 8, 12), flow)
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        path(image, flow[:, :1])


def test_flow2seg_loss_is_the_weighted_sum_of_upsampled_cross_entropies():
    torch.manual_seed(0)
    n, c, h, w = 2, 4, 16, 24
    image, fused, flow, aux = (torch.randn(n, c, h // 8, w // 8, requires_grad=True) for _ in range(4))
    target = torch.randint(0, c, (n, h, w))
    target[:, :2] = 255

    def ce(x):
        return F.cross_entropy(
            F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False), target, ignore_index=255
        )

    loss = flow2seg_loss(image, fused, flow, aux, target, alpha=0.3, beta=0.7)
    assert torch.allclose(loss, ce(image) + ce(fused) + 0.3 * ce(flow) + 0.7 * ce(aux))
    no_aux = flow2seg_loss(image, fused, flow, None, target, alpha=0.3, beta=0.7)
    assert torch.allclose(no_aux, ce(image) + ce(fused) + 0.3 * ce(flow))
    loss.backward()
    assert all(t.grad.abs().sum() > 0 for t in (image, fused, flow, aux))
    ignored = flow2seg_loss(image, fused, flow, aux, torch.full((n, h, w), 255), alpha=0.3, beta=0.7)
    assert torch.isfinite(ignored) and ignored.item() == 0.0 and ignored.requires_grad
    with pytest.raises(ValueError, match="target"):
        flow2seg_loss(image, fused, flow, aux, target[0])
    with pytest.raises(ValueError, match="flow_logits"):
        flow2seg_loss(image, fused, flow[:1], aux, target)


# -- learning test: a class that only motion reveals ---------------------------------------------------

H, W = 64, 96
MARGIN = 16  # canvas border so that shifted crops stay inside
BACKGROUND, PANEL, MOVER = 0, 1, 2


def _synthetic_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two consecutive RGB frames and the label of the second.

    Class MOVER is an ellipse whose texture comes from the same noise process as the background's: in one frame
    it cannot be told from the background (the texture is blurred after compositing, so not even its outline
    shows). It moves 2-3 px per frame relative to the background, which itself pans by up to 1 px (a moving
    camera). Class PANEL is a rectangle of the background tinted blue, moving with the background: the image
    path can learn it from colour. The panel never meets the mover (an occlusion would reveal the mover).
    """
    import cv2

    v_bg = rng.integers(-1, 2, size=2)
    while True:
        v_obj = v_bg + rng.integers(-3, 4, size=2)
        if np.abs(v_obj - v_bg).max() >= 2:
            break
    bg_noise = rng.random((H + 2 * MARGIN, W + 2 * MARGIN), dtype=np.float32)
    obj_noise = rng.random((H + 2 * MARGIN, W + 2 * MARGIN), dtype=np.float32)
    oh, ow = rng.integers(24, 41, size=2)
    oy, ox = rng.integers(0, H - oh), rng.integers(0, W - ow)
    ph, pw = rng.integers(14, 30), rng.integers(20, 50)
    yy, xx = np.mgrid[0:H, 0:W]

    def mover_box(t):
        return oy + t * v_obj[1], ox + t * v_obj[0]

    for _ in range(200):
        py, px = rng.integers(0, H - ph), rng.integers(0, W - pw)
        if all(
            not (py - 2 < y + oh and y < py + ph + 2 and px - 2 < x + ow and x < px + pw + 2)
            for y, x in map(mover_box, (0, 1))
        ):
            break
    else:
        ph = pw = 0  # no room: no panel in this clip
    frames, label = [], None
    for t in (0, 1):
        y, x = mover_box(t)
        mover = ((yy - y - oh / 2) / (oh / 2)) ** 2 + ((xx - x - ow / 2) / (ow / 2)) ** 2 <= 1
        by, bx = MARGIN - t * v_bg[1], MARGIN - t * v_bg[0]
        my, mx = MARGIN - t * v_obj[1], MARGIN - t * v_obj[0]
        raw = bg_noise[by : by + H, bx : bx + W].copy()
        raw[mover] = obj_noise[my : my + H, mx : mx + W][mover]
        g = cv2.GaussianBlur(raw, (0, 0), 1.5)
        g = np.clip(128 + 50 * (g - g.mean()) / (g.std() + 1e-6), 0, 255)
        panel = (
            (yy >= py + t * v_bg[1])
            & (yy < py + ph + t * v_bg[1])
            & (xx >= px + t * v_bg[0])
            & (xx < px + pw + t * v_bg[0])
        )
        rgb = np.repeat(g[..., None], 3, axis=2)
        rgb[panel] = np.stack([0.6 * g[panel], 0.6 * g[panel], 0.6 * g[panel] + 90], axis=-1)
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
        label = np.where(mover, MOVER, np.where(panel, PANEL, BACKGROUND)).astype(np.uint8)
    return frames[0], frames[1], label


def _batch(rng: np.random.Generator, n: int, dis: DISFlow) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, flows, labels = [], [], []
    for _ in range(n):
        prev, cur, label = _synthetic_pair(rng)
        images.append(torch.from_numpy(cur).permute(2, 0, 1).float() / 127.5 - 1.0)
        flows.append(dis(to_gray(prev), to_gray(cur)))
        labels.append(torch.from_numpy(label).long())
    return torch.stack(images), flow_to_tensor(flows), torch.stack(labels)


def _tiny_image_net(num_classes: int = 3) -> nn.Module:
    """A small per-frame network: logits at stride 8 like the real image path."""

    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return nn.Sequential(
        block(3, 16, 2), block(16, 32, 2), block(32, 32, 2), block(32, 32, 1), nn.Conv2d(32, num_classes, 1)
    )


def _upsampled_ce(logits, target):
    return F.cross_entropy(F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False), target)


def _iou(predict, images, flows, labels) -> np.ndarray:
    cm = ConfusionMatrix(3)
    with torch.no_grad():
        logits = F.interpolate(predict(images, flows), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    cm.update(logits.argmax(1), labels)
    return cm.iou()


def train_and_compare(
    seed: int, pre_steps: int = 60, steps: int = 100, batch: int = 8, lr: float = 5e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU on held-out clips of (image-only, image + Flow2Seg), trained on the same frames.

    Both start from the same image network, trained ``pre_steps`` alone (Flow2Seg attaches its path to a trained
    image model; thanks to the zero-initialised fusion the fused model starts exactly as that model). Then each
    trains ``steps`` more on the same fresh batches: the image model with cross-entropy, the fused model with
    ``flow2seg_loss``. The flow path is the real FlowSegNet (ResNet-18, OS8, FCN head) at width 16 instead of 64,
    to keep the test short.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dis = DISFlow("medium")
    image_net = _tiny_image_net()
    opt = torch.optim.Adam(image_net.parameters(), lr)
    for _ in range(pre_steps):
        x, _, y = _batch(rng, batch, dis)
        opt.zero_grad()
        _upsampled_ce(image_net(x), y).backward()
        opt.step()
    fused_image_net = _tiny_image_net()
    fused_image_net.load_state_dict(image_net.state_dict())
    path = Flow2SegPath(3, output_stride=8, width=16, head_channels=64)
    fused_opt = torch.optim.Adam([*fused_image_net.parameters(), *path.parameters()], lr)
    for _ in range(steps):
        x, f, y = _batch(rng, batch, dis)
        opt.zero_grad()
        _upsampled_ce(image_net(x), y).backward()
        opt.step()
        fused_opt.zero_grad()
        image_logits = fused_image_net(x)
        out = path(image_logits, f)
        flow2seg_loss(image_logits, out["logits"], out["flow_logits"], None, y).backward()
        fused_opt.step()
    for m in (image_net, fused_image_net, path):
        m.eval()
    test = _batch(np.random.default_rng(10_000 + seed), 32, dis)
    image_iou = _iou(lambda x, f: image_net(x), *test)
    fused_iou = _iou(lambda x, f: path(fused_image_net(x), f)["logits"], *test)
    return image_iou, fused_iou


def test_synthetic_mover_is_invisible_in_one_frame_but_visible_in_the_flow():
    rng = np.random.default_rng(1)
    prev, cur, label = _synthetic_pair(rng)
    gray = to_gray(cur).astype(np.float32)
    mover, background = label == MOVER, label == BACKGROUND
    assert mover.mean() > 0.05
    # same grey-level statistics inside and outside the mover
    assert abs(gray[mover].mean() - gray[background].mean()) < 15
    assert abs(gray[mover].std() / gray[background].std() - 1) < 0.3
    # ... but a clearly different motion
    flow = DISFlow("medium")(to_gray(prev), to_gray(cur))
    relative = np.linalg.norm(np.median(flow[mover], axis=0) - np.median(flow[background], axis=0))
    assert relative > 1.0


def test_fused_model_beats_image_only_model_on_a_class_that_only_motion_reveals():
    start = time.perf_counter()
    image_iou, fused_iou = train_and_compare(seed=0)
    image_miou, fused_miou = float(np.nanmean(image_iou)), float(np.nanmean(fused_iou))
    report = (
        f"image-only mIoU {100 * image_miou:.1f} (per class {np.round(100 * image_iou, 1)}), fused "
        f"{100 * fused_miou:.1f} ({np.round(100 * fused_iou, 1)}), {time.perf_counter() - start:.1f} s"
    )
    print(report)
    assert image_iou[MOVER] < 0.15, report  # the mover cannot be seen in one frame ...
    assert fused_iou[MOVER] > 0.5, report  # ... but the flow path finds it
    assert fused_miou - image_miou >= 0.15, report
