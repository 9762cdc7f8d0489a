"""The shipped default model: it loads by default and reproduces the mIoU recorded in it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter
from vsseg_ros.data.camvid import CamVid
from vsseg_ros.metrics.evaluate import evaluate_split

CAMVID_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


class _Oracle(Segmenter):
    """Returns a fixed answer per stamp: lets the evaluation be checked by hand."""

    class_map = CAMVID
    model_id = "oracle"

    def __init__(self, answers: dict[int, np.ndarray]) -> None:
        self.answers = answers
        self.resets = 0

    def push(self, frame: Frame, request: OutputRequest = OutputRequest()) -> Optional[SegmentationResult]:
        return SegmentationResult(frame=frame, labels=self.answers[frame.stamp_ns], boundary=None, confidence=None)

    def reset(self) -> None:
        self.resets += 1


def _tiny_camvid(root: Path) -> list[np.ndarray]:
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    labels = []
    for name, cls in [("A_001", 3), ("A_002", 3), ("B_001", 8)]:
        label = np.full((8, 10), cls, np.uint8)
        label[:, :5] = 0
        label[0, 0] = 11  # void -> ignored
        cv2.imwrite(str(root / "val" / f"{name}.png"), np.zeros((8, 10, 3), np.uint8))
        cv2.imwrite(str(root / "valannot" / f"{name}.png"), label)
        labels.append(np.where(label == 11, 255, label).astype(np.uint8))
    return labels


def test_evaluate_split_scores_against_the_labels_and_resets_per_sequence(tmp_path):
    labels = _tiny_camvid(tmp_path)
    data = CamVid(tmp_path, "val")
    perfect = _Oracle({i: np.where(lab == 255, 0, lab).astype(np.uint8) for i, lab in enumerate(labels)})
    res = evaluate_split(perfect, data, progress=False)
    assert res["miou"] == pytest.approx(1.0) and res["frames"] == 3
    assert perfect.resets == 2  # sequence A, then sequence B
    # Predict Sky (0) everywhere: Sky IoU = 59/(59+...) and the others 0.
    sky = _Oracle({i: np.zeros_like(lab) for i, lab in enumerate(labels)})
    res = evaluate_split(sky, data, progress=False)
    valid = sum(int((lab != 255).sum()) for lab in labels)
    sky_px = sum(int((lab == 0).sum()) for lab in labels)
    iou = res["iou"]
    assert iou["Sky"] == pytest.approx(sky_px / valid)
    assert iou["Road"] == 0.0 and iou["Car"] == 0.0
    assert iou["Tree"] is None  # in neither labels nor predictions: not counted
    assert res["miou"] == pytest.approx(sky_px / valid / 3)


def test_default_model_is_the_trained_one_and_reproduces_its_recorded_miou():
    from vsseg_ros.core.checkpoint import load_checkpoint
    from vsseg_ros.core.loading import UNTRAINED_MODEL_ID, default_weights_path, load_segmenter

    path = default_weights_path()
    if path is None:
        pytest.skip("no trained default model ships in vsseg_ros/weights/")
    ckpt = load_checkpoint(path)
    assert ckpt.storage == "fp16" and path.stat().st_size <= 25 * 1024 * 1024
    recorded = ckpt.meta["packaged_eval"]
    seg = load_segmenter("", device="cpu")
    assert seg.model_id == ckpt.model_id != UNTRAINED_MODEL_ID
    if not (CAMVID_ROOT / "val").is_dir():
        pytest.skip(f"CamVid is not at {CAMVID_ROOT} (research licence: it is never in the repository)")
    res = evaluate_split(seg, CamVid(CAMVID_ROOT, recorded["split"]), progress=False)
    assert res["frames"] == recorded["frames"]
    assert res["miou"] == pytest.approx(recorded["miou"], abs=2e-3)
    assert res["miou"] >= 0.60
