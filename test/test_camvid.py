"""The CamVid (SegNet layout) reader, its training dataset and augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vsseg_ros.data.base import DatasetError, parse_name
from vsseg_ros.data.camvid import CamVid, CamVidTrainDataset
from vsseg_ros.data.transforms import TrainAugment, photometric_jitter, random_crop
from vsseg_ros.training.targets import boundary_targets

SHARED_CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/camvid"


def write_pair(root: Path, split: str, name: str, label: np.ndarray, image: np.ndarray | None = None) -> None:
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    h, w = label.shape[:2]
    if image is None:
        image = np.zeros((h, w, 3), np.uint8)
        image[..., 0] = 10  # RGB (10, 20, 30), written as BGR
        image[..., 1] = 20
        image[..., 2] = 30
    assert cv2.imwrite(str(root / split / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert cv2.imwrite(str(root / f"{split}annot" / f"{name}.png"), label)


def make_set(
    root: Path,
    split: str = "train",
    names=("0016E5_07961", "0001TP_006720", "0016E5_07959", "0006R0_f01440", "0006R0_f00930"),
) -> Path:
    for k, name in enumerate(names):
        lab = np.full((12, 16), k % 11, np.uint8)
        lab[0, :] = 11  # void
        write_pair(root, split, name, lab)
    return root


def test_reads_pairs_sorted_with_void_as_ignore(tmp_path: Path) -> None:
    ds = CamVid(make_set(tmp_path), "train")
    assert len(ds) == 5
    assert [s.name for s in ds.samples] == sorted(s.name for s in ds.samples)
    image, label = ds.load(0)
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    assert tuple(image[5, 5]) == (10, 20, 30)  # RGB order
    assert label.dtype == np.uint8 and label.shape == (12, 16)
    assert (label[0] == 255).all()  # void 11 -> ignore
    k = ["0016E5_07961", "0001TP_006720", "0016E5_07959", "0006R0_f01440", "0006R0_f00930"].index(ds[0].name)
    assert (label[1:] == k).all()
    assert "5 frames" in repr(ds)


def test_sequences_grouped_and_ordered_by_frame(tmp_path: Path) -> None:
    ds = CamVid(make_set(tmp_path), "train")
    seqs = ds.sequences()
    assert list(seqs) == ["0001TP", "0006R0", "0016E5"]
    assert [s.frame for s in seqs["0016E5"]] == [7959, 7961]
    assert [s.frame for s in seqs["0006R0"]] == [930, 1440]
    assert [s.name for s in seqs["0006R0"]] == ["0006R0_f00930", "0006R0_f01440"]
    assert parse_name("0016E5_07959") == ("0016E5", 7959)
    assert parse_name("noframe") == ("noframe", 0)


def test_label_255_is_accepted_as_ignore(tmp_path: Path) -> None:
    lab = np.zeros((4, 4), np.uint8)
    lab[0, 0] = 255
    lab[1, 1] = 10
    write_pair(tmp_path, "val", "a_1", lab)
    _, out = CamVid(tmp_path, "val").load(0)
    assert out[0, 0] == 255 and out[1, 1] == 10


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset root not found.*train/.*trainannot/"):
        CamVid(tmp_path / "nope", "train")


def test_wrong_layout_names_the_expected_one(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError) as e:
        CamVid(tmp_path, "val")
    msg = str(e.value)
    assert "wrong dataset layout" in msg and "val/" in msg and "valannot/" in msg and "images/" in msg
    assert isinstance(e.value, ValueError)


def test_image_without_label(tmp_path: Path) -> None:
    make_set(tmp_path)
    (tmp_path / "trainannot" / "0016E5_07959.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* without a label .*0016E5_07959\.png"):
        CamVid(tmp_path, "train")


def test_label_without_image(tmp_path: Path) -> None:
    make_set(tmp_path)
    (tmp_path / "train" / "0016E5_07959.png").unlink()
    with pytest.raises(DatasetError, match=r"label\(s\) .* without an image .*0016E5_07959\.png"):
        CamVid(tmp_path, "train")


def test_label_ids_out_of_range(tmp_path: Path) -> None:
    lab = np.zeros((4, 4), np.uint8)
    lab[0, 0], lab[0, 1] = 12, 40
    write_pair(tmp_path, "train", "seq_0001", lab)
    ds = CamVid(tmp_path, "train")
    with pytest.raises(DatasetError) as e:
        ds.load(0)
    msg = str(e.value)
    assert "seq_0001.png" in msg and "12, 40" in msg and "out of range" in msg
    with pytest.raises(DatasetError, match="12, 40"):
        ds.validate()


def test_colour_label_is_rejected(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "s_1", np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "trainannot" / "s_1.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="3 channels"):
        CamVid(tmp_path, "train").load(0)


def test_size_mismatch(tmp_path: Path) -> None:
    write_pair(tmp_path, "train", "s_1", np.zeros((4, 6), np.uint8), image=np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"s_1\.png is 6x5 but its label .*s_1\.png is 6x4"):
        CamVid(tmp_path, "train").load(0)


def test_train_dataset_and_augmentation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lab = np.zeros((40, 60), np.uint8)
    lab[:, 30:] = 3
    lab[:5] = 11
    write_pair(tmp_path, "train", "s_1", lab, image=rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    aug = TrainAugment(crop_size=(32, 48), scale_range=(0.5, 2.0))
    ds = CamVidTrainDataset(CamVid(tmp_path, "train"), aug, boundary_radius=2)
    a, b = ds[(0, 123)], ds[(0, 123)]
    assert a["image"].shape == (3, 32, 48) and a["label"].shape == (32, 48) and a["boundary"].shape == (32, 48)
    assert (a["image"] == b["image"]).all() and (a["label"] == b["label"]).all()  # same seed, same draw
    assert set(np.unique(a["label"].numpy())) <= {0, 3, 255}
    # small scales pad: the padding is ignore
    img, out = random_crop(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8), rng, (16, 20))
    assert img.shape == (16, 20, 3) and out.shape == (16, 20) and (out == 255).sum() == 16 * 20 - 100
    jit = photometric_jitter(np.full((8, 8, 3), 128, np.uint8), rng)
    assert jit.dtype == np.uint8 and jit.shape == (8, 8, 3)


def test_boundary_targets() -> None:
    lab = np.zeros((10, 12), np.uint8)
    lab[:, 6:] = 1
    lab[:3, :] = 255
    t = boundary_targets(lab, radius=2)
    assert (t[5, 4:8] == 1).all() and t[5, 3] == 0 and t[5, 8] == 0  # within 2 px of the class edge
    assert (t[0] == 255).all()  # only ignore within the radius: excluded
    assert t[1, 0] == 0  # an ignore pixel next to one valid class: no boundary
    assert t[2, 6] == 1  # an ignore pixel with two valid classes within 2 px: boundary
    assert (boundary_targets(np.full((4, 4), 255, np.uint8)) == 255).all()


@pytest.mark.skipif(
    not SHARED_CAMVID.is_dir(),
    reason=f"CamVid not found at {SHARED_CAMVID} (research licence: it is never copied into the repository)",
)
def test_real_camvid_layout() -> None:
    train, val = CamVid(SHARED_CAMVID, "train"), CamVid(SHARED_CAMVID, "val")
    assert len(train) == 367 and len(val) == 51
    assert list(val.sequences()) == ["0016E5"]
    frames = [s.frame for s in val.sequences()["0016E5"]]
    assert frames[0] == 7959 and frames[-1] == 8059 and all(b - a == 2 for a, b in zip(frames, frames[1:]))
    for ds, idx in ((train, 0), (train, 200), (val, 50)):
        image, label = ds.load(idx)
        assert image.shape == (360, 480, 3) and label.shape == (360, 480)
        ids = set(np.unique(label).tolist())
        assert ids <= set(range(11)) | {255} and len(ids - {255}) >= 3
