"""Dataset readers (Cityscapes, image folder, registry) on small layouts made in tmp_path, bad data included."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vsseg_ros.core.classes import CAMVID, CITYSCAPES
from vsseg_ros.data.base import DatasetError, DecodedPairs
from vsseg_ros.data.camvid import CamVid
from vsseg_ros.data.cityscapes import LABEL_TO_TRAIN_ID, Cityscapes
from vsseg_ros.data.folder import ImageFolder, read_class_list
from vsseg_ros.data.registry import DATASETS, open_dataset


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), label)


def _rgb(h: int, w: int, value: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = value, 20, 30
    return img


# -- Cityscapes ---------------------------------------------------------------------------------------

CS_LABEL = np.array([[7, 8, 11, 0], [26, 33, 9, 24], [1, 23, 31, 4]], np.uint8)  # 3x4 label ids


def make_cityscapes(root: Path, split: str = "train", sequence: bool = True) -> Path:
    for city, seq in (("aachen", 0), ("aachen", 1), ("bremen", 5)):
        name = f"{city}_{seq:06d}_000019"
        _write_rgb(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", _rgb(3, 4, 10 + seq))
        _write_label(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", CS_LABEL)
        # the other gtFine files are present in the real release and must be ignored
        _write_rgb(root / "gtFine" / split / city / f"{name}_gtFine_color.png", _rgb(3, 4, 0))
        (root / "gtFine" / split / city / f"{name}_gtFine_polygons.json").write_text("{}")
        if sequence and city == "aachen":
            for frame in (17, 18, 19, 20):
                name = f"{city}_{seq:06d}_{frame:06d}_leftImg8bit.png"
                _write_rgb(root / "leftImg8bit_sequence" / split / city / name, _rgb(3, 4, 100 + frame))
    return root


def test_cityscapes_table_is_the_official_one() -> None:
    assert len(LABEL_TO_TRAIN_ID) == 19 and sorted(LABEL_TO_TRAIN_ID.values()) == list(range(19))
    by_train = {t: i for i, t in LABEL_TO_TRAIN_ID.items()}
    assert [by_train[t] for t in range(19)] == [
        7,
        8,
        11,
        12,
        13,
        17,
        19,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        31,
        32,
        33,
    ]
    assert CITYSCAPES.num_classes == 19 and CITYSCAPES.names[11] == "person" and CITYSCAPES.names[18] == "bicycle"
    assert CITYSCAPES.colors[0] == (128, 64, 128) and CITYSCAPES.colors[13] == (0, 0, 142)


def test_cityscapes_reads_and_maps_to_train_ids(tmp_path: Path) -> None:
    ds = Cityscapes(make_cityscapes(tmp_path), "train")
    assert len(ds) == 3 and ds.num_classes == 19 and ds.class_map is CITYSCAPES
    assert [s.name for s in ds.samples] == ["aachen_000000_000019", "aachen_000001_000019", "bremen_000005_000019"]
    image, label = ds.load(0)
    assert image.shape == (3, 4, 3) and tuple(image[0, 0]) == (10, 20, 30)
    expected = np.array([[0, 1, 2, 255], [13, 18, 255, 11], [255, 10, 16, 255]], np.uint8)
    np.testing.assert_array_equal(label, expected)
    assert list(ds.sequences()) == ["aachen_000000", "aachen_000001", "bremen_000005"]
    assert ds[0].frame == 19 and ds[0].sequence == "aachen_000000"


def test_cityscapes_neighbours_from_the_sequence_folder(tmp_path: Path) -> None:
    ds = Cityscapes(make_cityscapes(tmp_path), "train")
    frames = ds.neighbours(0, [-2, -1, 0, 1])
    assert [int(f[0, 0, 0]) for f in frames] == [117, 118, 10, 120]  # offset 0 is the labelled image itself
    assert ds.has_neighbours(0, [-2, -1, 0]) and not ds.has_neighbours(0, [-3, 0])
    assert not ds.has_neighbours(2, [-1, 0])  # bremen has no sequence frames
    with pytest.raises(DatasetError, match=r"no frame at offset -3 from aachen_000000_000019"):
        ds.neighbours(0, [-3, 0])


def test_cityscapes_wrong_root_says_which_layout(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"dataset root not found.*Cityscapes layout.*leftImg8bit/train.*gtFine/train"
    ):
        Cityscapes(tmp_path / "nope", "train")
    (tmp_path / "train").mkdir()  # a CamVid layout is not a Cityscapes one
    (tmp_path / "trainannot").mkdir()
    with pytest.raises(DatasetError) as e:
        Cityscapes(tmp_path, "train")
    msg = str(e.value)
    assert "wrong dataset layout" in msg and "leftImg8bit/train" in msg and "gtFine/train" in msg
    assert "trainannot/" in msg  # what was found


def test_cityscapes_unknown_split_lists_the_splits(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, "val")
    with pytest.raises(DatasetError, match=r"splits found in leftImg8bit/: val"):
        Cityscapes(tmp_path, "train")


def test_cityscapes_missing_label(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    (tmp_path / "gtFine/train/bremen/bremen_000005_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(
        DatasetError,
        match=r"1 image\(s\) .* without a \*_gtFine_labelIds.png label .*"
        r"bremen_000005_000019_leftImg8bit\.png",
    ):
        Cityscapes(tmp_path, "train")


def test_cityscapes_label_without_image(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    (tmp_path / "leftImg8bit/train/bremen/bremen_000005_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=r"label\(s\) .* without an image .*bremen_000005_000019"):
        Cityscapes(tmp_path, "train")


def test_cityscapes_ids_out_of_range(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    bad = CS_LABEL.copy()
    bad[0, 0], bad[1, 1] = 34, 200
    _write_label(tmp_path / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png", bad)
    ds = Cityscapes(tmp_path, "train")
    ds.load(0)
    with pytest.raises(DatasetError) as e:
        ds.load(1)
    msg = str(e.value)
    assert "aachen_000001_000019_gtFine_labelIds.png" in msg and "34, 200" in msg and "out of range" in msg
    assert "0-33" in msg
    with pytest.raises(DatasetError, match="34, 200"):
        ds.validate()


def test_cityscapes_size_mismatch(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    _write_rgb(tmp_path / "leftImg8bit/train/bremen/bremen_000005_000019_leftImg8bit.png", _rgb(5, 4, 0))
    with pytest.raises(DatasetError, match=r"bremen_000005_000019_leftImg8bit\.png is 4x5 but its label .* is 4x3"):
        Cityscapes(tmp_path, "train").load(2)


def test_cityscapes_bad_file_name(tmp_path: Path) -> None:
    _write_rgb(tmp_path / "leftImg8bit/train/x/frame_leftImg8bit.png", _rgb(3, 4, 0))
    _write_label(tmp_path / "gtFine/train/x/frame_gtFine_labelIds.png", CS_LABEL)
    with pytest.raises(DatasetError, match="CITY_SEQ_FRAME"):
        Cityscapes(tmp_path, "train")


# -- image folder -------------------------------------------------------------------------------------


def make_folder(
    root: Path,
    split: str | None = None,
    classes: str | None = "road 128 64 128\n# comment\n\ntraffic light 250 170 30\nsky\n",
    names=("drive_000010", "drive_000011", "park_000003"),
    image_ext: str = ".png",
) -> Path:
    sub = Path(split) if split else Path()
    for k, name in enumerate(names):
        label = np.full((6, 8), k % 3, np.uint8)
        label[0] = 255
        _write_rgb(root / "images" / sub / f"{name}{image_ext}", _rgb(6, 8, 40 + k))
        _write_label(root / "labels" / sub / f"{name}.png", label)
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def test_folder_reads_classes_txt_and_sequences(tmp_path: Path) -> None:
    ds = ImageFolder(make_folder(tmp_path))
    assert len(ds) == 3 and ds.num_classes == 3
    assert ds.class_map.names == ("road", "traffic light", "sky")
    assert ds.class_map.colors[0] == (128, 64, 128) and ds.class_map.colors[1] == (250, 170, 30)
    assert len(set(ds.class_map.colors)) == 3  # "sky" got a generated colour
    image, label = ds.load(1)
    assert tuple(image[3, 3]) == (41, 20, 30) and (label[0] == 255).all() and (label[1:] == 1).all()
    seqs = ds.sequences()
    assert list(seqs) == ["drive", "park"] and [s.frame for s in seqs["drive"]] == [10, 11]
    assert "3 frames" in repr(ds)


def test_decoded_pairs_read_once_when_kept(tmp_path: Path) -> None:
    ds = ImageFolder(make_folder(tmp_path))
    kept, fresh = DecodedPairs(ds, keep=True), DecodedPairs(ds, keep=False)
    assert len(kept) == 3 and kept.kept() == []
    first = kept[1]
    assert kept[1] is first and len(kept.kept()) == 1  # kept: the same arrays, not decoded again
    assert fresh[1] is not fresh[1] and fresh.kept() == []
    np.testing.assert_array_equal(fresh[1][0], first[0])
    np.testing.assert_array_equal(fresh[1][1], first[1])
    kept.preload()
    assert len(kept.kept()) == 3


def test_folder_with_split_jpg_images_and_yaml_classes(tmp_path: Path) -> None:
    make_folder(tmp_path, split="val", classes=None, image_ext=".jpg")
    (tmp_path / "classes.yaml").write_text("classes:\n  - road\n  - {name: car, color: [0, 0, 142]}\n  - sky\n")
    ds = ImageFolder(tmp_path, "val")
    assert ds.class_map.names == ("road", "car", "sky") and ds.class_map.colors[1] == (0, 0, 142)
    assert ds.load(2)[0].shape == (6, 8, 3)
    with pytest.raises(DatasetError, match=r"wrong dataset layout .*: missing .*images/train"):
        ImageFolder(tmp_path, "train")
    with pytest.raises(DatasetError, match=r"holds the folder\(s\) val: pass one of them as the split"):
        ImageFolder(tmp_path)


def test_folder_infers_the_class_count_without_a_list(tmp_path: Path) -> None:
    make_folder(tmp_path, classes=None)
    ds = ImageFolder(tmp_path)
    assert ds.num_classes == 3 and ds.class_map.names == ("class_0", "class_1", "class_2")
    assert ImageFolder(tmp_path, num_classes=7).num_classes == 7


def test_folder_class_list_errors(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / "classes.yaml").write_text("[a, b, c]\n")
    with pytest.raises(DatasetError, match="both classes.txt and classes.yaml"):
        ImageFolder(tmp_path)
    (tmp_path / "classes.yaml").unlink()
    with pytest.raises(DatasetError, match="num_classes=4 but .*classes.txt lists 3"):
        ImageFolder(tmp_path, num_classes=4)
    bad = tmp_path / "bad.txt"
    bad.write_text("road\nroad\n")
    with pytest.raises(DatasetError, match="listed twice: road"):
        read_class_list(bad)
    bad.write_text("road 1 2 300\n")
    with pytest.raises(DatasetError, match="three integers 0-255"):
        read_class_list(bad)


def test_folder_wrong_root_says_which_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset root not found.*image-folder layout.*images/.*labels/"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError) as e:
        ImageFolder(tmp_path)
    msg = str(e.value)
    assert "wrong dataset layout" in msg and "images" in msg and "labels" in msg and "train/" in msg


def test_folder_missing_label(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / "labels" / "park_000003.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* without a label .*park_000003\.png"):
        ImageFolder(tmp_path)


def test_folder_label_must_be_png(tmp_path: Path) -> None:
    make_folder(tmp_path)
    (tmp_path / "labels" / "park_000003.png").rename(tmp_path / "labels" / "park_000003.bmp")
    with pytest.raises(DatasetError, match=r"park_000003\.bmp .* not PNG"):
        ImageFolder(tmp_path)


def test_folder_ids_out_of_range(tmp_path: Path) -> None:
    make_folder(tmp_path)
    bad = np.zeros((6, 8), np.uint8)
    bad[1, 1], bad[2, 2] = 3, 17
    _write_label(tmp_path / "labels" / "drive_000011.png", bad)
    ds = ImageFolder(tmp_path)
    with pytest.raises(DatasetError) as e:
        ds.load(1)
    msg = str(e.value)
    assert "drive_000011.png" in msg and "3, 17" in msg and "out of range" in msg and "0-2 (classes.txt)" in msg


def test_folder_size_mismatch(tmp_path: Path) -> None:
    make_folder(tmp_path)
    _write_rgb(tmp_path / "images" / "park_000003.png", _rgb(7, 8, 0))
    with pytest.raises(DatasetError, match=r"park_000003\.png is 8x7 but its label .*park_000003\.png is 8x6"):
        ImageFolder(tmp_path).load(2)


def test_folder_neighbours_from_labelled_and_unlabelled_frames(tmp_path: Path) -> None:
    make_folder(tmp_path)
    _write_rgb(tmp_path / "frames" / "drive_000009.jpg", _rgb(6, 8, 90))
    ds = ImageFolder(tmp_path)
    frames = ds.neighbours(1, [-2, -1, 0])  # drive_000011: frames 9 (frames/), 10 (labelled), 11
    assert [int(f[0, 0, 0]) for f in frames] == pytest.approx([90, 40, 41], abs=2)
    assert not ds.has_neighbours(2, [-1, 0])


# -- registry and CamVid through the shared base ------------------------------------------------------


def test_open_dataset_by_name(tmp_path: Path) -> None:
    make_cityscapes(tmp_path / "cs")
    make_folder(tmp_path / "folder")
    for split in ("train", "val"):
        lab = np.zeros((4, 4), np.uint8)
        _write_rgb(tmp_path / "camvid" / split / "0016E5_07959.png", _rgb(4, 4, 0))
        _write_label(tmp_path / "camvid" / f"{split}annot" / "0016E5_07959.png", lab)
    cam = open_dataset("camvid", tmp_path / "camvid", "val")
    assert isinstance(cam, CamVid) and cam.split == "val" and cam.class_map is CAMVID and cam.num_classes == 11
    assert open_dataset("CamVid", tmp_path / "camvid").split == "train"
    assert isinstance(open_dataset("cityscapes", tmp_path / "cs", "train"), Cityscapes)
    folder = open_dataset("folder", tmp_path / "folder")
    assert isinstance(folder, ImageFolder) and folder.num_classes == 3
    assert set(DATASETS) == {"camvid", "cityscapes", "folder"}
    with pytest.raises(DatasetError, match=r"unknown dataset 'kitti'; known: camvid, cityscapes, folder"):
        open_dataset("kitti", tmp_path)
    with pytest.raises(DatasetError, match="SegNet CamVid layout"):  # a Cityscapes root opened as CamVid
        open_dataset("camvid", tmp_path / "cs", "train")


def test_camvid_neighbours_among_its_labelled_frames(tmp_path: Path) -> None:
    for frame in (7959, 7961, 7963):
        _write_rgb(tmp_path / "val" / f"0016E5_{frame:05d}.png", _rgb(4, 4, frame - 7900))
        _write_label(tmp_path / "valannot" / f"0016E5_{frame:05d}.png", np.zeros((4, 4), np.uint8))
    ds = CamVid(tmp_path, "val")
    assert ds.has_neighbours(2, [-4, -2, 0]) and not ds.has_neighbours(2, [-1, 0])
    assert [int(f[0, 0, 0]) for f in ds.neighbours(2, [-4, -2, 0])] == [59, 61, 63]
