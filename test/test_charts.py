"""The charts (vsseg_ros.charts, matplotlib): each draws the numbers it is given where a reader looks for them
(bar lengths, cells, marks, labels), and a chart is written whole or not at all."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from matplotlib.colors import to_hex

from vsseg_ros import charts


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_save_png_writes_a_picture_or_says_why_not(tmp_path):
    fig = charts.training_curve([(10, 0.5), (20, 0.6)])
    path = charts.save_png(fig, tmp_path / "curve.png")
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (500, 800, 3) and (img < 128).any()
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]  # no temporary file left behind
    with pytest.raises(OSError, match="could not write .*no_such_dir"):
        charts.save_png(fig, tmp_path / "no_such_dir" / "curve.png")
    assert np.array_equal(charts.to_rgb(fig), cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def test_iou_bars_are_as_long_as_the_iou_and_say_na_for_a_class_without_one():
    per_class = {"Sky": 0.9, "Pole": None, "Road": 0.25}
    fig = charts.iou_bars([per_class], ["m"], class_colors=[(0, 0, 255), (255, 0, 0), (0, 128, 0)])
    ax = fig.axes[0]
    (bars,) = ax.containers
    assert [b.get_width() for b in bars] == pytest.approx([90.0, 0.0, 25.0])
    assert [to_hex(b.get_facecolor()) for b in bars] == ["#0000ff", "#ff0000", "#008000"]  # the class colours
    assert _texts(ax) == ["90.0", "n/a", "25.0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Sky", "Pole", "Road"]
    two = charts.iou_bars([per_class, {"Sky": 0.5, "Pole": 0.1, "Road": 0.0}], ["A", "B"]).axes[0]
    assert len(two.containers) == 2 and [t.get_text() for t in two.get_legend().get_texts()] == ["A", "B"]


def test_confusion_cells_are_the_row_percentages_and_an_empty_row_is_grey():
    m = np.array([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    fig = charts.confusion_matrices([m], ["a", "b", "c"], ["confusion matrix: x"])
    cells = fig.axes[0].images[0].get_array()
    assert cells[0].tolist() == pytest.approx([80.0, 20.0, 0.0]) and cells[2].tolist() == pytest.approx([25, 25, 50])
    assert cells.mask[1].all() and not cells.mask[0].any()  # no ground truth of class b: masked (grey)
    assert sorted(_texts(fig.axes[0])) == sorted(["80", "20", "25", "25", "50"])


def test_latency_histogram_counts_every_frame_and_marks_the_percentiles():
    lat = [10.0] * 50 + [20.0] * 45 + [30.0] * 4 + [1000.0]
    fig = charts.latency_histogram([lat], ["m"], [{"p50": 10.0, "p95": 20.0, "p99": 30.0, "count": 100}])
    ax = fig.axes[0]
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [10.0, 20.0, 30.0]
    assert "counted in the last bin" in ax.get_xlabel()  # the 1000 ms frame is beyond the 99.5th percentile
    assert "p50 10.0, p95 20.0, p99 30.0 ms (n=100)" in ax.get_legend().get_texts()[0].get_text()
    empty = charts.latency_histogram([[]], ["m"], [{}])
    assert _texts(empty.axes[0]) == ["no latencies were measured"]


def test_training_curve_draws_the_points_in_percent_and_marks_the_best():
    ax = charts.training_curve([(100, 0.5), (200, 0.7), (300, 0.65)], title="t").axes[0]
    assert ax.lines[0].get_xdata().tolist() == [100, 200, 300]
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([50.0, 70.0, 65.0])
    assert ax.lines[1].get_xdata().tolist() == [200] and "best 70.0 %" in ax.get_title()
    assert "no points yet" in charts.training_curve([]).axes[0].get_title()


def test_headroom_bars_are_the_gains_in_points():
    def metrics(v):
        return {"miou": v, "mvc8": v, "gain": {"miou": v - 0.5 if v is not None else None, "mvc8": 0.01}}

    out = {
        "model": "m",
        "window": 3,
        "dis_preset": "medium",
        "frames": 8,
        "labelled_frames": 8,
        "baselines": {"per_frame": metrics(0.5), "mean": metrics(0.48), "oracle": metrics(None)},
    }
    ax = charts.temporal_headroom(out, [("miou", "mIoU"), ("mvc8", "mVC8")], {"mean": "causal mean"}).axes[0]
    mean, oracle = ax.containers
    assert [b.get_height() for b in mean] == pytest.approx([-2.0, 1.0])
    assert _texts(ax)[:2] == ["-2.00", "+1.00"] and _texts(ax)[2] == "n/a"
    assert ax.get_xticklabels()[0].get_text() == "mIoU\nper-frame 50.00 %"


def test_soak_chart_has_a_gap_where_a_window_had_no_output():
    series = [
        {
            "t_s": 60.0 * i,
            "rss_mb": 100.0 + i,
            "in_rate_hz": 30.0,
            "out_rate_hz": 15.0,
            "latency_p50_ms": None if i == 1 else 50.0,
            "latency_p99_ms": 80.0,
        }
        for i in range(4)
    ]
    result = {
        "series": series,
        "warmup_s": 60.0,
        "size": "96x128",
        "encoding": "bgr8",
        "rate_hz": 30.0,
        "minutes": 3.0,
        "rss_growth_mb": 2.0,
        "wrong_stamps": 0,
    }
    fig = charts.soak(result)
    p50 = fig.axes[2].lines[0].get_ydata()
    assert np.isnan(p50[1]) and p50[0] == 50.0 and len(fig.axes[1].lines[0].get_xdata()) == 3  # drain left out
    assert fig.axes[0].get_ylabel() == "node RSS (MB)" and "RSS growth 2.0 MB" in fig.texts[0].get_text()
