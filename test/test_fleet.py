"""`vsseg-ros eval --bags` without Ray: 8 bags and a corrupt one scored one after the other, the fleet result equal
to one stream over the same frames, per-bag records, the report's bag table, resuming after the driver is killed,
chunks of a long bag, and what bad input does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetutil import GOOD, HEADLINE, SMALL, fleet, one_stream_reference, run_eval as _run, synthetic  # noqa: F401 - fleet is a fixture
from vsseg_ros.bags.writer import write_bag

RECORD_KEYS = {"key", "bag", "task", "chunk", "worker", "status", "seconds", "warnings"}
OK_KEYS = RECORD_KEYS | {"result", "totals", "ground_truth", "image_topic", "gt_topic", "gt_report", "class_map"}


@pytest.fixture(scope="module")
def sequential(fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    code = _run(
        ["--bags", fleet["dir"], "--results", out / "results", "--json", out / "fleet.json", "--report", out / "report"]
        + SMALL
    )
    return {"code": code, "json": json.loads((out / "fleet.json").read_text()), "dir": out}


def test_fleet_result_equals_one_stream_over_the_same_frames(fleet, sequential):
    out = sequential["json"]
    assert sequential["code"] == 1  # every good bag scored, one failed
    assert out["counts"] == {
        "bags": GOOD + 1,
        "tasks": GOOD + 1,
        "scored": GOOD,
        "failed": 1,
        "without_ground_truth": 1,
        "frames_without_ground_truth": 6,
    }
    (failed,) = out["failed"]
    assert failed["bag"].endswith("z_corrupt") and failed["error"].startswith("BagError")
    assert failed["error_kind"] == "bag"
    reference = one_stream_reference(fleet["good"])
    for key in HEADLINE:
        assert out[key] == reference[key], key  # to the last digit
    assert out["latency_ms"]["count"] == reference["latency_ms"]["count"] == out["frames"]
    assert out["mvc_windows"]["8"] == 0 or out["mvc8"] is not None
    assert out["sequences"] == GOOD and out["fleet"]["scored_now"] == GOOD + 1 and out["fleet"]["resumed"] == 0
    rows = {Path(r["bag"]).name: r for r in out["bags"]}
    assert sorted(rows) == [p.name for p in fleet["good"]] and sum(r["frames"] for r in rows.values()) == out["frames"]
    no_gt = rows["h_no_gt"]
    assert no_gt["ground_truth"] is False and no_gt["miou"] is None and no_gt["tc"] is not None
    assert any("no ground truth" in n and "TC and latency only" in n for n in out["notes"])


def test_results_folder_holds_one_record_per_bag_and_the_report_a_bag_table(fleet, sequential):
    results = sequential["dir"] / "results"
    records = [json.loads(p.read_text()) for p in sorted((results / "bags").glob("*.json"))]
    assert len(records) == GOOD + 1 and len({r["key"] for r in records}) == GOOD + 1
    for r in records:
        assert (OK_KEYS if r["status"] == "ok" else RECORD_KEYS | {"error", "error_kind"}) <= set(r), r["bag"]
    assert json.loads((results / "fleet.json").read_text())["miou"] == sequential["json"]["miou"]
    assert json.loads((results / "run.json").read_text())["model_sha256"]
    for report in (results / "report", sequential["dir"] / "report"):
        page = (report / "index.md").read_text()
        assert (report / "bags.png").is_file() and (report / "iou.png").is_file()
        assert "## Bags (8 scored, worst mIoU first)" in page and "## Bags that failed (1)" in page
        mious = [
            float(ln.split("|")[4])
            for ln in page.splitlines()
            if ln.startswith("| ") and ln.split("|")[1].strip().isdigit() and ln.split("|")[4].strip() != "n/a"
        ]
        assert len(mious) == GOOD - 1 and mious == sorted(mious)  # worst first; the bag without ground truth last
        assert "z_corrupt" in page and "(no ground truth)" in page


def test_a_rerun_skips_what_is_done_and_retries_failed_bags_only_when_asked(fleet, sequential, capsys):
    results = sequential["dir"] / "results"
    again = sequential["dir"] / "again.json"
    assert _run(["--bags", fleet["dir"], "--results", results, "--json", again] + SMALL) == 1
    out = json.loads(again.read_text())
    assert out["fleet"]["resumed"] == GOOD + 1 and out["fleet"]["scored_now"] == 0
    assert {k: out[k] for k in HEADLINE} == {k: sequential["json"][k] for k in HEADLINE}
    assert _run(["--bags", fleet["dir"], "--results", results, "--json", again, "--retry-failed"] + SMALL) == 1
    assert json.loads(again.read_text())["fleet"]["scored_now"] == 1
    capsys.readouterr()
    assert _run(["--bags", fleet["dir"], "--results", results, "--boundary-tolerance", "3"] + SMALL) == 2
    assert "holds results of another model or settings" in capsys.readouterr().err


def test_a_killed_driver_resumes_and_scores_the_rest_only(fleet, sequential, tmp_path):
    results = tmp_path / "results"
    argv = [
        sys.executable,
        "-m",
        "vsseg_ros.commands.eval",
        "--bags",
        str(fleet["dir"]),
        "--results",
        str(results),
    ] + SMALL
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "driver.log", "w"),
        start_new_session=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any((results / "bags").glob("*.json")):
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done = len(list((results / "bags").glob("*.json")))
    assert 1 <= done < GOOD + 1, (tmp_path / "driver.log").read_text()[-2000:]
    assert _run(["--bags", fleet["dir"], "--results", results, "--json", tmp_path / "f.json"] + SMALL) == 1
    out = json.loads((tmp_path / "f.json").read_text())
    assert out["fleet"]["resumed"] == done and out["fleet"]["scored_now"] == GOOD + 1 - done
    assert len(list((results / "bags").glob("*.json"))) == GOOD + 1  # one record per bag, never two
    assert {k: out[k] for k in HEADLINE} == {k: sequential["json"][k] for k in HEADLINE}


def test_chunks_cut_at_sequence_starts_score_exactly_as_the_whole_bag(tmp_path):
    frames = [f for i in range(4) for f in synthetic(f"clip{i}", 5, 4 * i)]
    write_bag(tmp_path / "long", frames, None, "mcap", start_ns=1_700_000_000 * 10**9)
    listing = tmp_path / "fleet.txt"
    listing.write_text("# one long bag\nlong\n")
    assert _run(["--bags", listing, "--chunk-frames", "8", "--json", tmp_path / "chunked.json"] + SMALL) == 0
    assert _run(["--bags", tmp_path / "long", "--json", tmp_path / "whole.json"] + SMALL) == 0
    assert _run(["--bag", tmp_path / "long", "--json", tmp_path / "eval.json"] + SMALL) == 0
    chunked, whole, single = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("chunked", "whole", "eval"))
    assert [r["chunk"] for r in chunked["bags"]] == [[1, 2], [2, 2]]
    assert [r["frames"] for r in chunked["bags"]] == [10, 10]
    assert chunked["counts"]["tasks"] == 2 and whole["counts"]["tasks"] == 1
    for key in HEADLINE:
        assert chunked[key] == whole[key] == single[key], key


def test_no_matching_bag_lists_what_was_searched(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.yaml").write_text("a: 1\n")
    assert _run(["--bags", tmp_path / "nothing*", tmp_path / "empty", tmp_path / "notes.yaml"] + SMALL) == 2
    err = capsys.readouterr().err
    assert "no bag matches" in err and "no path matches this pattern" in err
    assert "a folder with no bag in it" in err and "not a bag" in err


def test_fleet_arguments_that_do_not_fit_are_errors(fleet, tmp_path, capsys):
    assert _run(["--bags", fleet["dir"], "--workers", "2"] + SMALL) == 2
    assert "needs --ray" in capsys.readouterr().err
    assert _run(["--bags", fleet["dir"], "--bag", fleet["good"][0]] + SMALL) == 2
    assert "does not go with --bags" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "something.txt").write_text("x")
    assert _run(["--bags", fleet["dir"], "--results", tmp_path / "used"] + SMALL) == 2
    assert "not a fleet results folder" in capsys.readouterr().err


def test_a_ray_address_that_does_not_answer_is_a_clear_error_within_the_timeout(fleet, capsys):
    with socket.socket() as s:  # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    assert _run(["--bags", fleet["good"][4], "--ray", f"127.0.0.1:{port}", "--ray-timeout", "3"] + SMALL) == 2
    assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} does not answer" in err and "ray start --head" in err


def test_fleet_sizing_and_the_bench_chart():
    from vsseg_ros import charts
    from vsseg_ros.fleet.run import workers_needed

    # 1,000 h at 10 Hz in 8 h is 1,250 frames/s: 126 workers of 9.98 frames/s, 125 of exactly 10
    assert workers_needed(1000, 10, 8, 9.98) == 126 and workers_needed(1000, 10, 8, 10.0) == 125
    run = {"mode": "m", "workers": 1, "frames": 408, "bags": 8, "frames_per_s": 8.0, "frames_per_s_scoring": 9.0}
    fig = charts.fleet_bench(
        {
            "runs": {"sequential": run, "ray_1": run, "ray_2": {**run, "workers": 2, "frames_per_s": 14.5}},
            "ratios": {"ray_2_over_ray_1": 1.8},
            "cpus": 2,
        }
    )
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sequential", "Ray, 1 worker", "Ray, 2 workers"]
    whole, scoring = ax.containers  # whole run and scoring phase, one bar per run each
    assert [b.get_width() for b in whole] == [8.0, 8.0, 14.5] and [b.get_width() for b in scoring] == [9.0] * 3
    chart = charts.to_rgb(fig)
    assert chart.shape[0] > 3 * 60 and chart.dtype.name == "uint8" and (chart < 255).any()


def test_an_exported_model_runs_on_its_engine_in_the_fleet_as_in_one_eval(fleet, tmp_path):
    """`--model DIR` (an exported model) and `--backend` reach the fleet's per-bag segmenter: the fleet over one
    bag equals `eval --bag` on the same engine, and both say which engine ran."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    from vsseg_ros.core.loading import DEFAULT_WEIGHTS

    exported = DEFAULT_WEIGHTS.parent / "default_int8"
    bag = fleet["good"][0]
    one = tmp_path / "one.json"
    assert _run(["--bag", bag, "--model", exported, "--backend", "openvino", "--json", one] + SMALL) == 0
    many = tmp_path / "many.json"
    assert (
        _run(
            [
                "--bags",
                bag,
                "--model",
                exported,
                "--backend",
                "openvino",
                "--results",
                tmp_path / "results",
                "--json",
                many,
            ]
            + SMALL
        )
        == 0
    )
    one_out, many_out = json.loads(one.read_text()), json.loads(many.read_text())
    assert many_out["miou"] == one_out["miou"] and many_out["frames"] == one_out["frames"]
    assert many_out["backend"].startswith("openvino") and one_out["backend"] == many_out["backend"]
    torch_out = tmp_path / "torch.json"
    assert _run(["--bags", bag, "--results", tmp_path / "torch_results", "--json", torch_out] + SMALL) == 0
    assert json.loads(torch_out.read_text())["backend"] == "torch"
