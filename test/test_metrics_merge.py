"""Mergeable scores: two streams' totals merged give exactly the scores of one scorer fed both, in any order;
exact sums, latency histograms and the JSON form."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from vsseg_ros.metrics.mergeable import StreamTotals
from vsseg_ros.metrics.scorer import StreamScorer
from vsseg_ros.metrics.sums import ExactSum, LatencyHistogram

NAMES = ["sky", "road", "car", "tree"]


def _stream(seed: int, n: int, sequence: str, labelled_every: int = 1):
    """Frames of a drifting scene with noisy predictions (H, W small): (image, pred, gt or None, latency)."""
    rng = np.random.default_rng(seed)
    h, w = 20, 28
    out = []
    for t in range(n):
        gt = np.zeros((h, w), np.uint8)
        gt[h // 2 :] = 1
        gt[h // 2 - 3 : h // 2 + 3, (2 * t) % w : (2 * t) % w + 6] = 2
        gt[:3, :4] = 255
        pred = gt.copy()
        pred[gt == 255] = 3
        flip = rng.random((h, w)) < 0.15
        pred[flip] = rng.integers(0, 4, int(flip.sum()))
        image = np.repeat((gt * 60 + rng.integers(0, 20, (h, w))).astype(np.uint8)[..., None], 3, axis=2)
        out.append((image, pred, gt if t % labelled_every == 0 else None, float(rng.uniform(5, 50)), sequence))
    return out


def _scorer(frames) -> StreamScorer:
    s = StreamScorer(NAMES, flow_consistency=True, dis_preset="ultrafast")
    for image, pred, gt, ms, seq in frames:
        s.add(image, pred, gt, ms, sequence=seq)
    return s


def test_merged_totals_equal_one_scorer_over_both_streams_to_the_last_digit():
    a = _stream(0, 19, "drive_a")
    b = _stream(1, 23, "drive_b", labelled_every=1)
    c = _stream(2, 9, "drive_c", labelled_every=3)  # unlabelled frames break the mVC runs
    whole = _scorer(a + b + c).result()
    parts = [_scorer(x).totals() for x in (a, b, c)]
    for order in ([0, 1, 2], [2, 0, 1]):
        merged = StreamTotals.merged(parts[i] for i in order).result()
        for key in whole:
            if key != "latency_ms":
                assert merged[key] == whole[key], key  # exact, not approximate
    assert whole["mvc_windows"]["8"] > 0 and whole["mvc_windows"]["16"] > 0 and whole["tc_pairs"] == 18 + 22 + 8
    lat, exact = merged["latency_ms"], whole["latency_ms"]
    assert lat["count"] == exact["count"] and lat["max"] == exact["max"]
    assert lat["mean"] == pytest.approx(exact["mean"], rel=1e-12)
    for p in ("p50", "p95", "p99"):
        assert lat[p] == pytest.approx(exact[p], rel=0.006)  # half a 1 % bin


def test_totals_survive_json_and_refuse_other_settings():
    t = _scorer(_stream(3, 10, "x")).totals()
    back = StreamTotals.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back.result() == t.result()
    other = StreamScorer(NAMES, boundary_tolerance_px=3, flow_consistency=False).totals()
    with pytest.raises(ValueError, match="boundary tolerance.*flow consistency"):
        StreamTotals.merged([t, other])
    bad = t.to_dict()
    bad["confusion"] = bad["confusion"][:2]
    with pytest.raises(ValueError, match="4x4"):
        StreamTotals.from_dict(bad)


def test_exact_sum_is_order_independent_and_equals_fsum():
    rng = random.Random(0)
    values = [rng.uniform(0, 1) * 10 ** rng.randint(-8, 8) for _ in range(2000)]
    halves = ExactSum(values[:700]), ExactSum(values[700:])
    halves[1].merge(halves[0])
    assert halves[1].value == math.fsum(values) == ExactSum(reversed(values)).value
    with pytest.raises(ValueError):
        ExactSum([float("nan")])


def test_latency_histogram_percentiles_stay_within_half_a_bin():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(3.0, 0.4, 3000), rng.uniform(0, 0.0005, 5), [400.0]])
    h = LatencyHistogram.of(values[:1500])
    h.merge(LatencyHistogram.of(values[1500:]))
    for p in (1, 50, 95, 99, 100):
        assert h.percentile(p) == pytest.approx(np.percentile(values, p), rel=0.006, abs=1e-3)
    s = h.summary()
    assert s["count"] == values.size and s["max"] == 400.0 and s["mean"] == pytest.approx(values.mean())
    assert LatencyHistogram.from_dict(json.loads(json.dumps(h.to_dict()))).summary() == s
    assert LatencyHistogram().summary()["p50"] is None
    with pytest.raises(ValueError, match=">= 0"):
        h.add(-1.0)
