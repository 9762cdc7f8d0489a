"""Training clips: synthesised from stills (StillClipDataset) and from real neighbouring frames (RealClipDataset)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsseg_ros.data.base import DatasetError
from vsseg_ros.data.camvid import CamVid
from vsseg_ros.data.clip_base import target_index
from vsseg_ros.data.clip_synthesis import StillClipDataset
from vsseg_ros.data.clips import RealClipDataset, make_clips, save_clip_preview
from vsseg_ros.data.folder import ImageFolder

SHARED_CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/camvid"
H, W = 72, 96
COLOURS = np.array([(200, 200, 220), (90, 60, 100), (40, 140, 30), (220, 40, 40)], np.uint8)
STILL = dict(noise=0.0, blur=0.0, drift=0.0, occluders=0.0)  # motion only


def _texture(seed: int) -> np.ndarray:
    """A smooth random RGB texture (differences grow steadily with small shifts)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)


def _label(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros((H, W), np.uint8)
    lab[H // 2 + int(rng.integers(-5, 5)) :] = 1
    x, y = int(rng.integers(5, W - 30)), int(rng.integers(5, H - 30))
    lab[y : y + 20, x : x + 25] = 2
    cv2.circle(lab, (int(rng.integers(10, W - 10)), int(rng.integers(10, H - 10))), 9, 3, -1)
    lab[:3] = 255
    return lab


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)


def make_data(root: Path, coded: bool = False, n: int = 3) -> ImageFolder:
    """``n`` stills; ``coded``: every pixel has its class's colour (flat regions), else a smooth texture."""
    for k in range(n):
        lab = _label(k)
        img = COLOURS[np.where(lab == 255, 0, lab)] if coded else _texture(k)
        _write(root / "images" / f"s{k}_{k:04d}.png", img)
        _write(root / "labels" / f"s{k}_{k:04d}.png", lab)
    (root / "classes.txt").write_text("sky\nroad\ntree\ncar\n")
    return ImageFolder(root)


def _mad(a: torch.Tensor, b: torch.Tensor, border: int = 8) -> float:
    """Mean absolute difference away from the borders (where reflected content enters)."""
    return float((a.float() - b.float())[:, border:-border, border:-border].abs().mean())


def test_shapes_targets_and_batching(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    for frames, target, expect in ((3, "last", 2), (5, "center", 2), (4, 1, 1), (1, "last", 0)):
        clips = StillClipDataset(data, frames=frames, target=target, size=(48, 64), seed=0)
        item = clips[0]
        assert item["frames"].shape == (frames, 3, 48, 64) and item["frames"].dtype == torch.uint8
        assert item["label"].shape == (48, 64) and item["label"].dtype == torch.int64
        assert item["target"] == expect == clips.target and item["index"] == 0
        assert set(item) == {"frames", "label", "target", "index"}  # one label: the target frame's
    assert len(clips) == 3
    batch = next(iter(torch.utils.data.DataLoader(StillClipDataset(data, 3, size=(48, 64)), batch_size=2)))
    assert batch["frames"].shape == (2, 3, 3, 48, 64) and batch["label"].shape == (2, 48, 64)
    assert batch["target"].tolist() == [2, 2]
    assert target_index(5, "centre") == 2


def test_deterministic_given_index_and_seed(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    a, b = StillClipDataset(data, 3, size=(48, 64), seed=4), StillClipDataset(data, 3, size=(48, 64), seed=4)
    for key in (1, (1, 12345)):
        x, y = a[key], b[key]
        assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["label"], y["label"])
        assert torch.equal(a[key]["frames"], x["frames"])  # a second draw of the same key
    assert not torch.equal(a[(1, 12345)]["frames"], a[(1, 12346)]["frames"])
    assert not torch.equal(StillClipDataset(data, 3, size=(48, 64), seed=5)[1]["frames"], a[1]["frames"])
    before = a[1]["frames"]
    a.set_epoch(1)
    assert not torch.equal(a[1]["frames"], before)
    a.set_epoch(0)
    assert torch.equal(a[1]["frames"], before)
    with pytest.raises(IndexError):
        a[3]


def test_target_frame_is_the_still(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    clips = StillClipDataset(data, 3, "last", size=(48, 64), seed=1, occluders=0.0)  # scale, flip, jitter on
    for key in [(i, s) for i in range(3) for s in range(4)]:
        item = clips[key]
        image, label = clips.still(key)
        np.testing.assert_array_equal(item["frames"][2].numpy().transpose(1, 2, 0), image)
        np.testing.assert_array_equal(item["label"].numpy(), label)
        assert not torch.equal(item["frames"][0], item["frames"][2])  # the context frames moved
    # no augmentation, full size: the target frame is the file itself
    plain = StillClipDataset(data, 3, "center", size=(H, W), scale_range=(1, 1), hflip=0, jitter=0, occluders=0)
    item = plain[2]
    original, original_label = data.load(2)
    np.testing.assert_array_equal(item["frames"][1].numpy().transpose(1, 2, 0), original)
    np.testing.assert_array_equal(item["label"].numpy(), original_label)


def test_label_belongs_to_the_target_frame_only(tmp_path: Path) -> None:
    data = make_data(tmp_path, coded=True)
    clips = StillClipDataset(data, 3, "last", size=(56, 80), scale_range=(1, 1), jitter=0, shift=0.05, **STILL)
    for key in range(3):
        item = clips[key]
        label = item["label"].numpy()
        known = label != 255
        for k, expect_match in ((2, True), (0, False)):
            colours = item["frames"][k].numpy().transpose(1, 2, 0)
            wrong = (colours[known] != COLOURS[label[known]]).any(axis=1).mean()
            if expect_match:
                assert wrong == 0.0  # every labelled pixel of the target has its class's colour
            else:
                assert wrong > 0.01  # the moved frame does not line up with that label


def test_occluders_are_ignored_in_the_label(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    clips = StillClipDataset(data, 3, "last", size=(48, 64), seed=2, occluders=1.0, max_occluders=2)
    hidden = 0
    for key in range(3):
        item = clips[key]
        image, label = clips.still(key)
        changed = (item["frames"][2].numpy().transpose(1, 2, 0) != image).any(axis=2)
        out = item["label"].numpy()
        assert (out[changed] == 255).all()  # pixels an occluder covers carry no label
        assert (out[~changed & (out != 255)] == label[~changed & (out != 255)]).all()
        hidden += int(((out == 255) & (label != 255)).sum())
    assert hidden > 0


def test_consecutive_frames_differ_smoothly(tmp_path: Path) -> None:
    data = make_data(tmp_path)
    # constant velocity, nothing but motion: every step changes the picture by about the same amount
    steady = StillClipDataset(data, 5, "center", size=(56, 80), scale_range=(1, 1), accel=0.0, **STILL)
    for key in [(i, s) for i in range(3) for s in range(3)]:
        f = steady[key]["frames"]
        steps = [_mad(f[k], f[k + 1]) for k in range(4)]
        assert min(steps) > 0.3, steps
        assert max(steps) / min(steps) < 1.25, steps
        assert _mad(f[0], f[4]) > max(steps), steps
    # with everything on (acceleration, colour drift, blur, noise, occluders) steps stay small and alike,
    # far below the difference between two unrelated stills
    full = StillClipDataset(data, 5, "center", size=(56, 80), scale_range=(1, 1), seed=3, occluders=0.5)
    unrelated = _mad(
        torch.from_numpy(data.load(0)[0]).permute(2, 0, 1), torch.from_numpy(data.load(1)[0]).permute(2, 0, 1)
    )
    ratios = []
    for key in [(i, s) for i in range(3) for s in range(4)]:
        f = full[key]["frames"]
        steps = [_mad(f[k], f[k + 1]) for k in range(4)]
        assert max(steps) < 0.5 * unrelated, (steps, unrelated)
        ratios.append(max(steps) / max(min(steps), 1e-6))
    assert max(ratios) < 3.0 and float(np.median(ratios)) < 1.6, ratios


def _sequence_folder(root: Path) -> ImageFolder:
    """Labelled frames seq_000012 and lone_000005; seq frames 10 and 11 only in frames/; frame f is brighter by
    20 per frame."""
    base = _texture(7) // 2
    for f in (10, 11, 12):
        folder = "images" if f == 12 else "frames"
        _write(root / folder / f"seq_{f:06d}.png", base + 20 * (f - 10))
    _write(root / "labels" / "seq_000012.png", _label(7))
    _write(root / "images" / "lone_000005.png", base)
    _write(root / "labels" / "lone_000005.png", _label(8))
    return ImageFolder(root, num_classes=4)


def test_real_clips_use_the_real_neighbours(tmp_path: Path) -> None:
    data = _sequence_folder(tmp_path)
    with pytest.raises(DatasetError, match=r"1 of 2 samples lack a frame at offsets \[-2, -1, 0\]: lone_000005"):
        RealClipDataset(data, 3, "last", size=(48, 64))
    clips = RealClipDataset(data, 3, "last", size=(48, 64), missing="skip", scale_range=(1, 1), jitter=0)
    assert len(clips) == 1
    item = clips[(0, 3)]
    f = item["frames"].int()
    assert torch.equal(f[1] - f[0], torch.full_like(f[0], 20)) and torch.equal(f[2] - f[1], f[1] - f[0])
    image, label = data.load(data.samples.index(next(s for s in data.samples if s.name == "seq_000012")))
    assert item["label"].shape == (48, 64) and set(item["label"].unique().tolist()) <= set(np.unique(label).tolist())
    # with scale, flip and colour jitter, every frame gets the same crop and colours
    aug = RealClipDataset(data, 3, "last", size=(48, 64), missing="skip", seed=9)
    g = aug[(0, 5)]["frames"].int()
    assert (g[2] - g[1]).float().mean() > 5 and (g[1] - g[0]).float().mean() > 5
    # samples without neighbours become synthetic clips
    both = RealClipDataset(data, 3, "last", size=(48, 64), missing="synthesize", synth={"occluders": 0.0})
    assert len(both) == 2 and both[0]["frames"].shape == (3, 3, 48, 64)
    assert isinstance(make_clips(data, 3, size=(48, 64)), RealClipDataset)
    with pytest.raises(DatasetError, match="no sample"):
        RealClipDataset(data, 5, "last", size=(48, 64), missing="skip")


def test_make_clips_synthesises_without_neighbours(tmp_path: Path) -> None:
    clips = make_clips(make_data(tmp_path), 3, "last", size=(48, 64), seed=0, occluders=0.0, hflip=0.0)
    assert isinstance(clips, StillClipDataset) and clips.occluders == 0.0 and clips.hflip == 0.0


def test_preview_contact_sheet(tmp_path: Path) -> None:
    clips = StillClipDataset(make_data(tmp_path), 3, size=(48, 64))
    path = save_clip_preview(clips, tmp_path / "out" / "preview.png", n=2)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (2 * 48 + 4, 4 * 64 + 3 * 4, 3)


def test_bad_options(tmp_path: Path) -> None:
    data = make_data(tmp_path, n=1)
    for kwargs, msg in (
        ({"target": "middle"}, "target must be"),
        ({"target": 3}, "outside a clip of 3"),
        ({"size": (0, 4)}, "size must be"),
        ({"blur": 2.0}, "probability"),
        ({"shift": -1.0}, "shift must be"),
        ({"scale_range": (2, 1)}, "scale_range"),
    ):
        with pytest.raises(ValueError, match=msg):
            StillClipDataset(data, 3, **kwargs)
    with pytest.raises(ValueError, match="missing must be"):
        RealClipDataset(data, 3, missing="ignore")


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason=f"CamVid not found at {SHARED_CAMVID}")
def test_camvid_clips() -> None:
    train = CamVid(SHARED_CAMVID, "train")
    clips = make_clips(train, 3, "last", size=(288, 384), seed=0)
    assert isinstance(clips, StillClipDataset)  # 1 Hz stills: no labelled neighbours
    item = clips[(100, 1)]
    assert item["frames"].shape == (3, 3, 288, 384)
    val = make_clips(CamVid(SHARED_CAMVID, "val"), 3, "last", size=(288, 384), frame_step=2)
    assert isinstance(val, RealClipDataset) and sum(val.real) == len(val) - 2  # the first two lack t-2


def test_degraded_targets_and_transient_blotches_keep_the_label(tmp_path: Path) -> None:
    """The options that give temporal fusion something to learn: the target frame is degraded too (blur, noise,
    blotches) while its label stays the still's, unignored."""
    data = make_data(tmp_path)
    clips = StillClipDataset(
        data, 3, "last", size=(48, 64), seed=3, occluders=0.0, target_degrade=1.0, transient=1.0, noise=8.0
    )
    for key in range(3):
        item = clips[key]
        image, label = clips.still(key)
        target = item["frames"][2].numpy().transpose(1, 2, 0)
        assert (target != image).any(axis=2).mean() > 0.2  # noise everywhere, blotches somewhere
        np.testing.assert_array_equal(item["label"].numpy(), label)
    clean = StillClipDataset(data, 3, "last", size=(48, 64), seed=3, occluders=0.0)
    image, _ = clean.still(0)
    np.testing.assert_array_equal(clean[0]["frames"][2].numpy().transpose(1, 2, 0), image)
    with pytest.raises(ValueError, match="probabilities"):
        StillClipDataset(data, 3, "last", size=(48, 64), target_degrade=1.5)
