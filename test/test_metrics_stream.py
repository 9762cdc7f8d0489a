"""Stream metrics against hand-computed cases: mIoU (absent classes, all-ignore frames), boundary F, mVC windows at
clip edges, flow-warp TC, latency percentiles; the streaming runner's frame matching; cross-checks against
independent computations (torchmetrics where it is installed, brute-force distances for boundary matching)."""

from __future__ import annotations

import json
import warnings
from typing import Optional

import numpy as np
import pytest

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter
from vsseg_ros.data.sources import LabelledFrame
from vsseg_ros.metrics.boundary import BoundaryScore, boundary_map
from vsseg_ros.metrics.consistency import FlowConsistency, VideoConsistency, warp_back
from vsseg_ros.metrics.evaluate import EvaluationWarning, evaluate_stream
from vsseg_ros.metrics.latency import latency_summary
from vsseg_ros.metrics.scorer import StreamScorer

NAMES = ["a", "b", "c"]


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _scorer(**kw) -> StreamScorer:
    kw.setdefault("flow_consistency", False)
    return StreamScorer(NAMES, **kw)


# ---- mIoU -------------------------------------------------------------------------------------------


def test_miou_by_hand_with_a_class_absent_from_ground_truth_and_one_absent_everywhere():
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1]], np.uint8)
    s = StreamScorer(["a", "b", "c", "d"], flow_consistency=False)
    s.add(_image(1, 4), pred, gt)
    # a: TP 1, FN 1 -> 1/2; b: TP 2, FP 1 -> 2/3; c, d: in neither -> None, not in the mean
    r = s.result()
    assert r["per_class_iou"] == {"a": pytest.approx(0.5), "b": pytest.approx(2 / 3), "c": None, "d": None}
    assert r["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    # now predict a class that the ground truth never has: its IoU is 0 and it counts
    s.add(_image(1, 4), np.array([[2, 2, 1, 1]], np.uint8), gt)
    r = s.result()
    # a: TP 1, FN 3 -> 1/4; b: TP 4, FP 1 -> 4/5; c: TP 0, FP 2 -> 0
    assert r["per_class_iou"]["c"] == 0.0
    assert r["miou"] == pytest.approx((0.25 + 0.8 + 0.0) / 3)
    assert r["pixel_accuracy"] == pytest.approx(5 / 8)


def test_all_ignore_frames_add_nothing_and_alone_give_undefined_not_zero():
    s = _scorer()
    ignore = np.full((4, 4), 255, np.uint8)
    s.add(_image(4, 4), np.zeros((4, 4), np.uint8), ignore)
    r = s.result()
    assert r["miou"] is None and r["pixel_accuracy"] is None and r["boundary_f"] is None
    assert all(v is None for v in r["per_class_iou"].values())
    assert r["labelled_frames"] == 1 and any("entirely ignore" in n for n in r["notes"])
    gt = np.zeros((4, 4), np.uint8)
    s.add(_image(4, 4), np.zeros((4, 4), np.uint8), gt)
    r = s.result()
    assert r["miou"] == 1.0 and r["scored_pixels"] == 16
    assert any("1 labelled frame(s) were entirely ignore" in n for n in r["notes"])


def test_no_ground_truth_leaves_accuracy_undefined_but_scores_latency():
    s = _scorer()
    for i in range(3):
        s.add(_image(4, 4, i), np.zeros((4, 4), np.uint8), None, latency_ms=10.0 * (i + 1))
    r = s.result()
    assert r["miou"] is None and r["mvc8"] is None and r["boundary_f"] is None
    assert r["frames"] == 3 and r["labelled_frames"] == 0
    assert r["latency_ms"]["p50"] == 20.0 and r["latency_ms"]["max"] == 30.0
    assert any("no frame had ground truth" in n for n in r["notes"])
    json.dumps(r)  # plain Python throughout


def test_prediction_ids_outside_the_model_are_rejected():
    s = _scorer()
    with pytest.raises(ValueError, match="class id 7"):
        s.add(_image(2, 2), np.full((2, 2), 7, np.uint8), None)
    with pytest.raises(ValueError, match="differ in size"):
        s.add(_image(2, 2), np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


def test_per_class_iou_agrees_with_torchmetrics():
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip(
        "torchmetrics.classification",
        reason="torchmetrics is not installed (pip install torchmetrics for this cross-check)",
    )
    rng = np.random.default_rng(3)
    c = 5
    s = StreamScorer([f"k{i}" for i in range(c)], flow_consistency=False)
    metric = tm.MulticlassJaccardIndex(num_classes=c, average=None, ignore_index=255)
    for i in range(4):
        gt = rng.integers(0, c - 1, (20, 30)).astype(np.uint8)  # class 4 never in the ground truth
        gt[rng.random((20, 30)) < 0.2] = 255
        pred = np.where(rng.random((20, 30)) < 0.6, gt, rng.integers(0, c, (20, 30))).astype(np.uint8)
        pred[pred == 255] = 0
        s.add(_image(20, 30, i), pred, gt)
        metric.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(gt.astype(np.int64)))
    theirs = metric.compute().numpy()
    ours = s.result()["per_class_iou"]
    assert [ours[f"k{i}"] for i in range(c)] == pytest.approx(theirs.tolist(), abs=1e-6)
    assert ours["k4"] == 0.0  # predicted, never in the ground truth


# ---- boundary F -------------------------------------------------------------------------------------


def test_boundary_map_is_one_pixel_thin_and_skips_ignore_transitions():
    lab = np.zeros((4, 6), np.uint8)
    lab[:, 3:] = 1
    assert np.array_equal(np.flatnonzero(boundary_map(lab).any(axis=0)), [2])
    assert boundary_map(lab)[:, 2].all()
    lab[:, 4:] = 255
    b = boundary_map(lab, ignore_id=255)
    assert b[:, 2].all() and not b[:, 3].any()  # 1 -> ignore is no boundary


def test_boundary_f_by_hand_one_pixel_shift_and_tolerance():
    gt = np.zeros((5, 8), np.uint8)
    gt[:, 4:] = 1  # GT boundary: column 3 (5 pixels)
    pred = np.zeros((5, 8), np.uint8)
    pred[:, 5:] = 1  # predicted boundary: column 4, one pixel off
    exact = BoundaryScore(0)
    exact.update(pred, gt)
    assert (exact.precision(), exact.recall(), exact.f_score()) == (0.0, 0.0, 0.0)  # a real zero, not undefined
    tol = BoundaryScore(1)
    tol.update(pred, gt)
    assert tol.f_score() == 1.0
    # half the predicted boundary is wrong (an extra vertical edge far away): P = 5/10, R = 1
    pred2 = pred.copy()
    pred2[:, 7] = 2  # boundary at column 6 as well
    s = BoundaryScore(1)
    s.update(pred2, gt)
    assert s.precision() == pytest.approx(0.5) and s.recall() == 1.0
    assert s.f_score() == pytest.approx(2 * 0.5 / 1.5)


def test_boundary_predictions_next_to_ignored_pixels_are_not_false_positives():
    gt = np.zeros((6, 10), np.uint8)
    gt[:, 7:] = 255
    pred = np.zeros((6, 10), np.uint8)
    pred[:, 8:] = 1  # a boundary inside / beside the ignored band: nobody can say it is wrong
    s = BoundaryScore(2)
    s.update(pred, gt)
    assert s.pred_total == 0 and s.gt_total == 0 and s.f_score() is None


def test_boundary_matching_agrees_with_brute_force_distances():
    rng = np.random.default_rng(1)
    for tol in (0, 1, 2, 3):
        for _trial in range(3):
            gt = (rng.random((12, 14)) < 0.3).astype(np.uint8)
            pred = (rng.random((12, 14)) < 0.3).astype(np.uint8)
            s = BoundaryScore(tol)
            s.update(pred, gt)
            pb, gb = np.argwhere(boundary_map(pred)), np.argwhere(boundary_map(gt))
            d = np.sqrt(((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1))
            assert s.pred_matched == int((d.min(axis=1) <= tol).sum())
            assert s.gt_matched == int((d.min(axis=0) <= tol).sum())
            assert s.pred_total == len(pb) and s.gt_total == len(gb)


# ---- mVC --------------------------------------------------------------------------------------------


def test_mvc_counts_every_window_including_the_last_and_not_across_clips():
    vc = VideoConsistency((8, 16))
    gt = np.zeros((2, 2), np.uint8)
    # clip A: 10 frames; the prediction of pixel (0, 0) flips at frame 9 only
    for t in range(10):
        pred = np.zeros((2, 2), np.uint8)
        if t == 9:
            pred[0, 0] = 1
        vc.add(pred, gt, "A")
    # windows of 8: starts 0, 1, 2 (T - k + 1 = 3); the last one (frames 2..9) sees the flip: VC = 3/4
    assert vc.values[8] == [1.0, 1.0, 0.75]
    assert vc.mvc(8) == pytest.approx((1 + 1 + 0.75) / 3)
    assert vc.mvc(16) is None
    # clip B: 7 frames: shorter than any window, adds nothing (and nothing straddles A and B)
    for _ in range(7):
        vc.add(np.zeros((2, 2), np.uint8), gt, "B")
    assert len(vc.values[8]) == 3


def test_mvc_ground_truth_that_changes_or_is_ignored_is_not_counted():
    vc = VideoConsistency((2,))
    g0 = np.array([[0, 1, 255, 2]], np.uint8)
    g1 = np.array([[0, 2, 255, 2]], np.uint8)  # pixel 1 changes class: not in A; pixel 2 ignored: not in A
    p0 = np.array([[1, 1, 1, 1]], np.uint8)
    p1 = np.array([[1, 0, 0, 2]], np.uint8)  # A = {0, 3}; prediction stable at 0 only -> VC = 1/2
    vc.add(p0, g0, "s")
    vc.add(p1, g1, "s")
    assert vc.values[2] == [0.5]
    # a window whose A is empty is skipped, not scored 0
    vc2 = VideoConsistency((2,))
    vc2.add(p0, np.full((1, 4), 255, np.uint8), "s")
    vc2.add(p1, np.full((1, 4), 255, np.uint8), "s")
    assert vc2.mvc(2) is None and vc2.empty_windows[2] == 1


def test_an_unlabelled_frame_breaks_the_mvc_run():
    vc = VideoConsistency((3,))
    z = np.zeros((2, 2), np.uint8)
    for gt in (z, z, None, z, z, z):
        vc.add(z, gt, "s")
    assert len(vc.values[3]) == 1  # only frames 3, 4, 5


# ---- TC ---------------------------------------------------------------------------------------------


def test_warp_back_follows_the_flow_and_drops_pixels_leaving_the_image():
    nxt = np.array([[0, 1, 2, 3]], np.uint8)
    flow = np.zeros((1, 4, 2), np.float32)
    flow[..., 0] = 1.0  # every pixel moved one to the right
    assert warp_back(nxt, flow).tolist() == [[1, 2, 3, 255]]


def test_tc_by_hand_with_a_known_flow():
    zero_flow = lambda a, b: np.zeros(a.shape + (2,), np.float32)  # noqa: E731
    gray = lambda rgb: rgb[..., 0]  # noqa: E731
    fc = FlowConsistency(2, flow_fn=zero_flow, to_gray=gray)
    p0 = np.zeros((2, 4), np.uint8)
    p0[:, 2:] = 1
    fc.add(_image(2, 4), p0, "s")
    fc.add(_image(2, 4), np.zeros((2, 4), np.uint8), "s")
    # reference half 0 / half 1, warped all 0: IoU(0) = 4 / 8, IoU(1) = 0 -> TC = 0.25
    assert fc.tc() == pytest.approx(0.25) and fc.pairs == 1
    # a prediction that moves with the flow is perfectly consistent; the column that leaves is not counted
    shift = lambda a, b: np.dstack([np.full(a.shape, 1.0, np.float32), np.zeros(a.shape, np.float32)])  # noqa: E731
    fc2 = FlowConsistency(2, flow_fn=shift, to_gray=gray)
    q0 = np.array([[0, 1, 1, 0]], np.uint8)
    fc2.add(_image(1, 4), q0, "s")
    fc2.add(_image(1, 4), np.array([[9, 0, 1, 1]], np.uint8) % 2, "s")  # q0 moved right by one
    assert fc2.tc() == 1.0 and fc2.confusion.total == 3
    # a new sequence starts without a pair
    fc2.add(_image(1, 4), q0, "t")
    assert fc2.pairs == 1


def test_tc_with_dis_on_a_translating_scene():
    rng = np.random.default_rng(0)
    base = (rng.random((80, 120)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 2.0)
    labels = (cv2.GaussianBlur(rng.random((80, 140)).astype(np.float32), (0, 0), 6) > 0.5).astype(np.uint8)
    world = np.pad(base, ((0, 0), (0, 20)), mode="reflect")
    moving, still = StreamScorer(["x", "y"], flow_consistency=True), StreamScorer(["x", "y"], flow_consistency=True)
    for t in range(4):
        img = np.repeat(world[:, 3 * t : 3 * t + 120, None], 3, axis=2)
        moving.add(img, labels[:, 3 * t : 3 * t + 120], None, sequence="s")
        still.add(img, labels[:, :120], None, sequence="s")  # prediction stuck while the scene moves
    assert moving.result()["tc"] > 0.95
    assert still.result()["tc"] < moving.result()["tc"] - 0.03
    assert moving.result()["tc_pairs"] == 3


# ---- latency ----------------------------------------------------------------------------------------


def test_latency_percentiles_by_hand():
    s = latency_summary(range(1, 101))
    assert s["p50"] == pytest.approx(50.5) and s["p95"] == pytest.approx(95.05) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5) and s["max"] == 100.0 and s["count"] == 100
    empty = latency_summary([None])
    assert empty["p50"] is None and empty["count"] == 0
    with pytest.raises(ValueError):
        latency_summary([1.0, float("nan")])


# ---- the streaming runner ---------------------------------------------------------------------------


class _Delayed(Segmenter):
    """Labels frame t when frame t+1 arrives (a centred window), predicting the class stored in the image's
    first pixel; ``drop`` frames (by stamp) never get a result."""

    class_map = ClassMap(names=tuple(NAMES), colors=((0, 0, 0), (1, 1, 1), (2, 2, 2)))
    model_id = "delayed"
    delay_frames = 1

    def __init__(self, drop: tuple[int, ...] = ()) -> None:
        self.held: Optional[Frame] = None
        self.drop = drop
        self.resets = 0

    def _result(self, f: Frame) -> SegmentationResult:
        return SegmentationResult(
            frame=f, labels=np.full(f.image.shape[:2], f.image[0, 0, 0] % 3, np.uint8), boundary=None, confidence=None
        )

    def push(self, frame: Frame, request: OutputRequest = OutputRequest()) -> Optional[SegmentationResult]:
        out = None if self.held is None or self.held.stamp_ns in self.drop else self._result(self.held)
        self.held = frame
        return out

    def flush(self, request: OutputRequest = OutputRequest()) -> list[SegmentationResult]:
        out = [] if self.held is None else [self._result(self.held)]
        self.held = None
        return out

    def reset(self) -> None:
        self.held = None
        self.resets += 1


def _frames(classes: list[int], sequences: list[str]) -> list[LabelledFrame]:
    out = []
    for i, (c, seq) in enumerate(zip(classes, sequences)):
        img = np.full((3, 4, 3), c, np.uint8)
        out.append(
            LabelledFrame(
                image=img, label=np.full((3, 4), c, np.uint8), stamp_ns=i, camera_id=seq, sequence=seq, name=f"f{i}"
            )
        )
    return out


def test_runner_matches_delayed_results_to_their_own_frames_and_resets_per_sequence():
    frames = _frames([0, 1, 2, 0, 1], ["A", "A", "A", "B", "B"])
    seg = _Delayed()
    scorer = _scorer()
    seen = []
    stats = evaluate_stream(
        [seg], frames, [scorer], warmup=0, on_result=lambda m, i, lf, r, ms: seen.append((i, lf.name))
    )
    assert seen == [(i, f"f{i}") for i in range(5)]  # every frame scored, in order, with its own label
    r = scorer.result()
    assert r["miou"] == 1.0 and r["frames"] == 5 and stats.sequences == ["A", "B"]
    assert seg.resets == 2 and stats.unlabelled_by_model == [0]


def test_runner_warns_when_a_model_leaves_frames_without_a_result():
    frames = _frames([0, 1, 2, 0], ["A"] * 4)
    scorer = _scorer()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        stats = evaluate_stream([_Delayed(drop=(1,))], frames, [scorer], warmup=0)
    assert stats.unlabelled_by_model == [1] and scorer.frames == 3
    assert any(issubclass(w.category, EvaluationWarning) and "1 of 4 frames" in str(w.message) for w in rec)


def test_runner_gives_two_models_the_same_frames():
    frames = _frames([0, 1, 2, 1], ["A"] * 4)
    a, b = _scorer(), _scorer()
    evaluate_stream([_Delayed(), _Delayed()], frames, [a, b], warmup=2)
    assert a.result()["per_class_iou"] == b.result()["per_class_iou"]
    assert a.frames == b.frames == 4 and len(a.latencies) == 4
