"""`vsseg-ros bench --temporal`: the variants it times label alike, its ratios come from its medians, and its
chart is drawn (a tiny random model at a small size: fast, and the numbers are not what is tested)."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from vsseg_ros import charts
from vsseg_ros.bench.temporal import (
    NaiveTemporal,
    bench_temporal,
    load_temporal_model,
    paired_share,
    paired_share_after,
    print_temporal,
    write_chart,
)
from vsseg_ros.core.segmenter import Frame, OutputRequest
from vsseg_ros.core.temporal_segmenter import STAGES, TemporalSegmenter
from vsseg_ros.imaging.video import default_video, read_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = """name: tiny_bench
backbone: mobilenetv2
output_stride: 16
head: lite
head_channels: 16
num_classes: 11
input_size: [48, 64]
temporal:
  frames: 3
  mode: causal
  stf: {heads: 2, ffn: 16, block: 2, dropout: 0.0, pe_size: [3, 4], dim: 8, pool: 2}
  mar: {slots_per_class: 2, dim: 8, ffn: 8, dropout: 0.0}
  flow2seg: null
"""
SIZE = (48, 64)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_ratios_stages_and_chart(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = bench_temporal(tiny, [SIZE], frames=3, warmup=1, dis_presets=("ultrafast",))
    assert len(results) == 1
    r = results[0]
    assert r["size"] == "48x64" and r["window"] == 3 and r["frames"] == 3 and "random weights" in r["model_id"]
    p50 = {k: v["p50"] for k, v in r["ms"].items()}
    assert set(p50) == {"perframe", "streaming", "streaming_no_mar", "naive"} and min(p50.values()) > 0
    assert r["streaming_over_perframe"] == round(p50["streaming"] / p50["perframe"], 3)
    assert r["naive_over_streaming"] == round(p50["naive"] / p50["streaming"], 3)
    frame_ms = r["frame_ms"]
    assert {k: len(v) for k, v in frame_ms.items()} == {k: 3 for k in p50}  # the timed frames, warm-up excluded
    assert p50["streaming"] == round(float(np.median(frame_ms["streaming"])), 2)  # latency_stats' rounding
    ratios = np.asarray(frame_ms["streaming"]) / np.asarray(frame_ms["streaming_no_mar"])
    assert r["mar_share_whole_frame"] == round(float(np.median(ratios)) - 1.0, 3)
    backbone = r["backbone_frame_ms"]
    assert {k: len(v) for k, v in backbone.items()} == {"streaming": 3, "streaming_no_mar": 3}
    assert r["mar_share"] == paired_share_after(
        frame_ms["streaming"], frame_ms["streaming_no_mar"], backbone["streaming"], backbone["streaming_no_mar"]
    )
    assert r["mar_backbone_ms"] == round(
        float(np.median(np.subtract(backbone["streaming"], backbone["streaming_no_mar"]))), 2
    )
    assert set(r["streaming_stages_ms"]) == set(STAGES) and r["streaming_stages_ms"]["backbone"] > 0
    assert r["mar_stage_share"] == round(r["streaming_stages_ms"]["mar"] / p50["streaming"], 3)
    assert 0 < r["mar_stage_share"] < 1 and r["streaming_stages_ms"]["flow"] == 0
    assert set(r["dis_ms"]) == {"ultrafast@1", "ultrafast@0.5"}

    print_temporal(results)
    out = capsys.readouterr().out
    assert "naive/stream" in out and "MAR stage" in out and "48x64" in out and "after the backbone" in out

    png = tmp_path / "chart.png"
    write_chart(png, results)
    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] == 960 and img.shape[0] > 150
    # the streaming bar is the stages stacked, each as long as its median, one after the other
    ax = charts.temporal_bench(results).axes[0]
    stacked = [p for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - 1) < 1e-9]
    drawn = [(to_hex(p.get_facecolor()), p.get_x(), p.get_width()) for p in stacked]
    stages = [(charts.STAGE_COLORS[k], v) for k, v in r["streaming_stages_ms"].items() if v > 0]
    assert [c for c, _, _ in drawn] == [c for c, _ in stages] and len(stages) >= 3
    assert [w for _, _, w in drawn] == pytest.approx([v for _, v in stages])
    assert [x for _, x, _ in drawn] == pytest.approx(np.cumsum([0] + [v for _, v in stages[:-1]]))
    with pytest.raises(OSError, match="could not write"):
        write_chart(tmp_path / "no_such_dir" / "chart.png", results)


def test_naive_variant_labels_as_streaming(tiny: Path) -> None:
    """The naive way (every window frame through the backbone again) is the same model: the same labels."""
    model, cmap, model_id = load_temporal_model(tiny)
    clip = list(read_frames(default_video(), max_frames=5, size=SIZE))
    # a random network's features are nearly constant: BatchNorm statistics from the clip make them O(1), and
    # random classifier weights then give several classes per frame
    x = torch.from_numpy(np.stack(clip)).permute(0, 3, 1, 2).float().div(255.0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: one pass sets the statistics of that batch
    with torch.no_grad():
        model.train().frame_features(x)
        model.eval().perframe.head.classifier.weight.normal_(0.0, 1.0)
    streaming = TemporalSegmenter(model, cmap, model_id, input_size=SIZE, mode="causal")
    naive = NaiveTemporal(TemporalSegmenter(model, cmap, model_id, input_size=SIZE, mode="causal"))
    request = OutputRequest(boundary=False, confidence=False)
    classes = set()
    for i, rgb in enumerate(clip):
        a = streaming.push(Frame(image=rgb, stamp_ns=i * 33_333_333, camera_id="c"), request).labels
        b = naive.push(rgb, request)
        assert a.shape == b.shape == SIZE and (a == b).mean() > 0.999
        classes |= set(np.unique(a).tolist())
    assert len(classes) >= 2


def test_rejects_a_per_frame_config(tmp_path: Path) -> None:
    path = tmp_path / "perframe.yaml"
    path.write_text(TINY.split("temporal:")[0])
    with pytest.raises(ValueError, match="not a temporal model config"):
        load_temporal_model(path)


def test_chart_needs_temporal(capsys: pytest.CaptureFixture) -> None:
    from vsseg_ros.commands.bench import run as _cmd_bench

    args = argparse.Namespace(chart=Path("chart.png"), temporal=None)
    assert _cmd_bench(args) == 2
    assert "--chart" in capsys.readouterr().err


def test_paired_share_is_the_median_of_the_per_frame_ratios() -> None:
    without = [10.0, 20.0, 40.0, 10.0, 30.0]  # the machine's speed changes from frame to frame
    with_it = [11.0, 22.0, 44.0, 12.0, 30.0]  # +10 % in three pairs
    assert paired_share(with_it, without) == 0.1
    with pytest.raises(ValueError, match="paired"):
        paired_share([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="paired"):
        paired_share([], [])


def test_paired_share_after_leaves_the_shared_stages_noise_out() -> None:
    """The backbone's time jumps from frame to frame (and differs inside a pair); MAR's 1 ms after it does not."""
    backbone_with = [44.0, 45.0, 47.0, 50.0, 41.0]  # slower than its pair in four frames of five
    backbone_without = [40.0, 39.0, 44.0, 40.0, 41.0]
    rest_without = [10.0, 10.5, 9.5, 10.0, 10.0]
    with_it = [b + r + 1.0 for b, r in zip(backbone_with, rest_without)]
    without = [b + r for b, r in zip(backbone_without, rest_without)]
    assert paired_share_after(with_it, without, backbone_with, backbone_without) == 0.02  # 1 ms / median 50
    assert paired_share(with_it, without) > 0.09  # whole frames: the backbone's jumps count as MAR's
    with pytest.raises(ValueError, match="paired"):
        paired_share_after(with_it, without, backbone_with, backbone_without[:4])
    with pytest.raises(ValueError, match="paired"):
        paired_share_after([], [], [], [])
