"""ConfusionMatrix: hand-computed IoU, mIoU and pixel accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vsseg_ros.metrics.confusion import ConfusionMatrix


def test_hand_computed_iou() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 2]])
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    # class 0: TP 3, FN 1 (pred 1), FP 1 (gt 1 -> pred 0) -> 3/5
    # class 1: TP 2, FN 1, FP 1 -> 2/4
    # class 2: only predicted on an ignored pixel -> not counted -> absent -> NaN
    # class 3: absent from gt and predictions -> NaN
    iou = cm.iou()
    assert iou[0] == pytest.approx(3 / 5) and iou[1] == pytest.approx(2 / 4)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert cm.miou() == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    assert cm.total == 7
    assert cm.matrix.tolist() == [[3, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_class_only_predicted_counts_as_zero() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 2, 0]), np.array([0, 0, 0]))
    iou = cm.iou()
    assert iou[0] == pytest.approx(2 / 3) and iou[2] == 0.0 and math.isnan(iou[1])
    assert cm.miou() == pytest.approx((2 / 3 + 0.0) / 2)


def test_all_ignore_frame_changes_nothing() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1, 2]), np.array([0, 1, 1]))
    before = cm.matrix.copy()
    cm.update(np.array([[0, 1], [2, 2]]), np.full((2, 2), 255))
    assert (cm.matrix == before).all()
    empty = ConfusionMatrix(3)
    empty.update(np.zeros((3, 3), np.int64), np.full((3, 3), 255))
    assert np.isnan(empty.iou()).all() and math.isnan(empty.miou()) and math.isnan(empty.pixel_accuracy())


def test_accumulates_and_accepts_tensors() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    cm.update(np.array([1, 1], np.uint8), np.array([0, 1], np.uint8))
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]
    assert cm.iou().tolist() == pytest.approx([1 / 2, 2 / 3])
    other = ConfusionMatrix(2)
    other.update(np.array([0]), np.array([0]))
    cm += other
    assert cm.matrix[0, 0] == 2
    s = cm.summary(["a", "b"])
    assert s["iou"]["a"] == pytest.approx(2 / 3) and s["pixels"] == 5


def test_invalid_prediction_is_a_miss() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([255, 1]), np.array([0, 1]))
    assert cm.iou()[0] == 0.0 and cm.iou()[1] == 1.0 and cm.pixel_accuracy() == 0.5


def test_errors() -> None:
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError, match="ground truth has ids outside"):
        cm.update(np.array([0]), np.array([5]))
    with pytest.raises(ValueError, match="prediction has 2 values"):
        cm.update(np.array([0, 1]), np.array([0]))
