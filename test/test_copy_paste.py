"""Class copy-paste (``data.copy_paste``): what is pasted where, what is left alone, the training dataset's draws
with and without it, and the recipe's checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from vsseg_ros.data.camvid import CamVid, CamVidTrainDataset
from vsseg_ros.data.copy_paste import ClassCopyPaste, shift_columns
from vsseg_ros.data.transforms import TrainAugment
from vsseg_ros.training.recipe import TrainConfigError, load_recipe

POLE, SIGN, ROAD, BUILDING = 2, 6, 3, 1
H, W = 24, 40


def _frame(pole_x: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.full((H, W), BUILDING, np.uint8)
    label[H // 2 :] = ROAD
    if pole_x is not None:
        label[2:, pole_x : pole_x + 2] = POLE
    image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    return image, label


def test_shift_columns_moves_and_fills_with_zeros() -> None:
    a = np.arange(1, 13).reshape(2, 6)
    assert shift_columns(a, 2).tolist() == [[0, 0, 1, 2, 3, 4], [0, 0, 7, 8, 9, 10]]
    assert shift_columns(a, -4).tolist() == [[5, 6, 0, 0, 0, 0], [11, 12, 0, 0, 0, 0]]
    assert np.array_equal(shift_columns(a, 0), a) and not shift_columns(a, 6).any()


def test_paste_puts_exactly_the_source_class_pixels_at_the_offset_and_nothing_else() -> None:
    image, label = _frame(None, 0)
    src_image, src_label = _frame(19, 1)  # a pole mid-frame: shifts of up to 10 columns keep it whole
    before = image.copy(), label.copy()
    paste = ClassCopyPaste([POLE], p=1.0, max_shift=0.25)
    seen = set()
    for seed in range(30):
        out_image, out_label = paste(image, label, src_image, src_label, np.random.default_rng(seed))
        assert np.array_equal(image, before[0]) and np.array_equal(label, before[1])  # inputs untouched
        # the one paste that explains the output: the source flipped or not, then shifted
        matches = []
        for flip in (False, True):
            si, sl = (src_image[:, ::-1], src_label[:, ::-1]) if flip else (src_image, src_label)
            for shift in range(-10, 11):
                m = shift_columns(sl == POLE, shift)
                want_image, want_label = image.copy(), label.copy()
                want_image[m] = shift_columns(si, shift)[m]
                want_label[m] = POLE
                if np.array_equal(out_image, want_image) and np.array_equal(out_label, want_label):
                    matches.append((flip, shift))
        assert matches, seed
        seen.add(matches[0][0])
        assert (out_label == POLE).sum() == 2 * (H - 2)  # the whole pole (offsets here keep it in the frame)
    assert seen == {False, True}  # both orientations are drawn


def test_no_paste_when_off_from_a_frame_of_another_size_or_without_the_class() -> None:
    image, label = _frame(None, 0)
    rng = np.random.default_rng(0)
    src = _frame(10, 1)
    assert ClassCopyPaste([POLE], p=0.0).draw(image, label, 0, [src], rng)[1] is label
    other = (np.zeros((H + 1, W, 3), np.uint8), np.full((H + 1, W), POLE, np.uint8))
    assert ClassCopyPaste([POLE], p=1.0)(image, label, *other, rng)[1] is label
    assert ClassCopyPaste([SIGN], p=1.0)(image, label, *src, rng)[1] is label
    # the only frame with the class is the frame itself: nothing to paste
    assert ClassCopyPaste([POLE], p=1.0).draw(*src, 0, [src, (image, label)], rng)[1] is src[1]
    for bad in ({"class_ids": []}, {"class_ids": [2, 2]}, {"p": 1.5}, {"max_shift": -0.1}):
        with pytest.raises(ValueError):
            ClassCopyPaste(**{"class_ids": [POLE], "p": 0.5, **bad})


def test_a_frame_never_pastes_its_own_pixels() -> None:
    """Frame 0's pole at columns 4-5 would land at 34-35 when flipped; frame 1's at 19-20 lands on 19-20 either
    way (no shift): with p=1 every draw for frame 0 brings frame 1's pole and never its own flipped copy."""
    pairs = [_frame(4, 0), _frame(19, 1)]
    paste = ClassCopyPaste([POLE], p=1.0, max_shift=0.0)
    for seed in range(20):
        _, out_label = paste.draw(*pairs[0], 0, pairs, np.random.default_rng(seed))
        cols = set(np.flatnonzero((out_label == POLE).any(0)).tolist())
        assert cols == {4, 5, 19, 20}, (seed, cols)


def _folder(root: Path) -> CamVid:
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for k in range(4):
            image, label = _frame(8 * k + 4 if k % 2 else None, k)  # poles in frames 1 and 3 only
            cv2.imwrite(str(root / split / f"f{k}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / f"{split}annot" / f"f{k}.png"), label)
    return CamVid(root, "train")


def test_dataset_draws_are_unchanged_without_it_and_reproducible_with_it(tmp_path: Path) -> None:
    data = _folder(tmp_path / "camvid")
    augment = TrainAugment(crop_size=(16, 24), scale_range=(0.75, 1.25))
    plain = CamVidTrainDataset(data, augment, boundary_radius=None)
    image, label = plain.pairs[0]
    want = augment(image, label, np.random.default_rng(7))[1]
    assert np.array_equal(plain[(0, 7)]["label"].numpy(), want)  # the stream of recipes without copy-paste
    pasting = CamVidTrainDataset(data, None, boundary_radius=None, copy_paste=ClassCopyPaste([POLE], p=1.0))
    got = [pasting[(0, seed)]["label"].numpy() for seed in range(12)]
    assert sum((g == POLE).any() for g in got) >= 6  # frame 0 has no pole; the pastes bring one
    assert np.array_equal(pasting[(0, 3)]["label"].numpy(), got[3])  # same seed, same draw
    assert pasting.copy_paste is not None and pasting.copy_paste.sources(pasting.pairs) == [1, 3]


@pytest.mark.parametrize(
    "copy_paste, words",
    [
        ({"p": 1.5}, "data.copy_paste.p"),
        ({"p": True}, "data.copy_paste.p"),
        ({"max_shift": "half"}, "data.copy_paste.max_shift"),
        ({"classes": ["Lamppost"]}, "data.copy_paste.classes"),
        ({"classes": []}, "data.copy_paste.classes"),
        ({"classes": ["Pole", "Pole"]}, "data.copy_paste.classes"),
    ],
)
def test_recipe_checks_copy_paste(tmp_path: Path, copy_paste: dict, words: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"data": {"copy_paste": copy_paste}}))
    with pytest.raises(TrainConfigError, match=words.replace(".", r"\.")):
        load_recipe(path)
