"""`vsseg-ros soak`: a one-minute run against a real node over DDS, and the stamp check on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

from rosutil import needs_ros

KEYS = {
    "minutes",
    "rate_hz",
    "size",
    "frames_sent",
    "frames_out",
    "rss_mb_start",
    "rss_mb_end",
    "rss_growth_mb",
    "latency_ms",
    "wrong_stamps",
}


def test_wrong_stamps_and_frame_ids_are_found():
    from vsseg_ros.bench.soak import wrong_outputs

    sent = {(1, 0): "cam_a", (1, 5): "cam_b"}
    got = {
        (1, 0): SimpleNamespace(frame_id="cam_a"),
        (1, 5): SimpleNamespace(frame_id="cam_a"),
        (2, 0): SimpleNamespace(frame_id="cam_a"),
    }
    wrong = wrong_outputs(sent, got)
    assert len(wrong) == 2 and any("frame_id 'cam_a', sent 'cam_b'" in w for w in wrong)
    assert any("matches no frame sent" in w for w in wrong)
    assert wrong_outputs(sent, {(1, 0): SimpleNamespace(frame_id="cam_a")}) == []


@needs_ros
def test_a_one_minute_soak(tmp_path):
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable,
        "-m",
        "vsseg_ros.cli",
        "soak",
        "--minutes",
        "1",
        "--rate",
        "10",
        "--size",
        "96x128",
        "--warmup-minutes",
        "0.5",
        "--json",
        str(out),
        "--plot",
        str(tmp_path / "soak.png"),
        "--out",
        str(tmp_path),
        "--node-param",
        "worker_threads=1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert KEYS <= set(result) and {"p50", "p99"} <= set(result["latency_ms"])
    assert result["wrong_stamps"] == 0 and result["passed"] and result["node_exit_code"] == 0
    assert 550 <= result["frames_sent"] <= 610 and result["frames_out"] > 60
    assert result["rss_growth_mb"] < 50 and result["latency_ms"]["p50"] > 0
    assert len(result["series"]) >= 10 and (tmp_path / "soak.png").stat().st_size > 10_000
