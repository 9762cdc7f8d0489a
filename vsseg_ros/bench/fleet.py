"""What `vsseg-ros bench-fleet` measures: how fleet evaluation scales, as ratios from one run (docs/fleet.md).

On the same bags (``--bags``, or ``--make N`` bags of CamVid val made here), in this order, each a full
``vsseg-ros eval --bags`` run (:func:`vsseg_ros.fleet.run.run_fleet`, no results folder):

- ``sequential``: one process, one torch thread (the path without Ray);
- ``ray_1``: a local Ray instance started for the run, 1 worker of 1 CPU / 1 thread;
- ``ray_N`` for each ``--workers`` N > 1: N workers of 1 CPU / 1 thread each.

Per run: frames/s over the whole run (model load, Ray start-up and worker start-up included) and over the
scoring phase (from the first task sent to the last record back), and the per-worker rate (frames / the seconds
the workers spent in their tasks). Ratios: ``ray_N`` / ``ray_1`` (scaling), ``sequential`` / ``ray_1`` - 1 (the
Ray path's overhead), and the workers a fleet of ``--fleet-hours`` at ``--fleet-rate`` Hz needs to be scored in
``--deadline-hours``. ``--json`` keeps everything, ``--chart`` draws frames/s per run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence


def make_bags(root: Path, out: Path, count: int, frames: int) -> list[Path]:
    """``count`` bags of the CamVid val clip's first ``frames`` frames, each its own sequence."""
    from vsseg_ros.bags.writer import write_bag
    from vsseg_ros.data.sources import dataset_frames

    clip = list(dataset_frames("camvid", root, "val"))[:frames]
    out.mkdir(parents=True, exist_ok=True)
    bags = []
    for i in range(count):
        path = out / f"camvid_val_{i:02d}"
        if path.exists():
            shutil.rmtree(path)
        write_bag(
            path,
            [replace(f, sequence=f"{f.sequence}_{i:02d}") for f in clip],
            None,
            "mcap",
            start_ns=1_700_000_000 * 10**9,
            class_names=None,
        )
        bags.append(path)
    return bags


def _foreign_cpu_s() -> Optional[float]:
    """CPU seconds used so far by the live processes of other sessions (other people's jobs on a shared machine):
    the difference over a run says how much of the machine was not the benchmark's. None off Linux."""
    import os

    sid, tick, total = os.getsid(0), os.sysconf("SC_CLK_TCK"), 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) != sid:  # field 6 of stat: the session id
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / tick


def _one_run(patterns: Sequence[str], extra: Sequence[str], ray_workers: Optional[int]) -> dict[str, Any]:
    from vsseg_ros.commands.eval import add_arguments as eval_arguments
    from vsseg_ros.fleet.run import run_fleet

    p = argparse.ArgumentParser()
    eval_arguments(p)
    argv = ["--bags", *patterns, "--threads", "1", "--quiet", *extra]
    if ray_workers:
        argv += ["--ray", "local", "--workers", str(ray_workers)]
    args = p.parse_args(argv)
    foreign0, t0 = _foreign_cpu_s(), time.perf_counter()
    out = run_fleet(args)
    wall = time.perf_counter() - t0
    foreign1 = _foreign_cpu_s()
    f = out["fleet"]
    frames = f["frames_scored_now"]
    return {
        "mode": f["mode"],
        "workers": f["workers"],
        "frames": frames,
        "bags": out["counts"]["scored"],
        "wall_s": round(wall, 3),
        "scoring_s": f["scoring_s"],
        "frames_per_s": round(frames / wall, 3),
        "frames_per_s_scoring": f["frames_per_s"],
        "frames_per_worker_s": f["frames_per_worker_s"],
        "miou": out["miou"],
        "tc": out["tc"],
        # other sessions' processes' CPU share of the machine during the run (0 = it ran alone)
        "other_cpu_share": (
            None if foreign0 is None or foreign1 is None else round(max(0.0, foreign1 - foreign0) / (wall * _cpus()), 3)
        ),
    }


def _cpus() -> int:
    from vsseg_ros.fleet.discover import cpu_count

    return cpu_count()


def bench_fleet(
    patterns: Sequence[str],
    workers: Sequence[int],
    extra: Sequence[str] = (),
    sequential: bool = True,
    fleet_hours: float = 1000.0,
    fleet_rate: float = 10.0,
    deadline_hours: float = 8.0,
) -> dict[str, Any]:
    from vsseg_ros.fleet.discover import cpu_count
    from vsseg_ros.fleet.run import workers_needed

    runs: dict[str, dict[str, Any]] = {}
    plan = ([("sequential", None)] if sequential else []) + [("ray_1", 1)] + [(f"ray_{n}", n) for n in workers if n > 1]
    for name, n in plan:
        print(f"bench-fleet: {name} ...", file=sys.stderr, flush=True)
        runs[name] = _one_run(patterns, extra, n)
        r = runs[name]
        print(
            f"bench-fleet: {name}: {r['frames']} frames in {r['wall_s']:.1f} s = {r['frames_per_s']:.2f} frames/s "
            f"({r['frames_per_s_scoring']:.2f} while scoring; other jobs took {r['other_cpu_share']} of the CPUs)",
            file=sys.stderr,
            flush=True,
        )
    base = runs["ray_1"]
    ratios: dict[str, Any] = {}
    for name, r in runs.items():
        if name.startswith("ray_") and name != "ray_1":
            ratios[f"{name}_over_ray_1"] = round(r["frames_per_s"] / base["frames_per_s"], 3)
            ratios[f"{name}_over_ray_1_scoring"] = round(r["frames_per_s_scoring"] / base["frames_per_s_scoring"], 3)
    if "sequential" in runs:
        seq = runs["sequential"]
        ratios["ray_1_overhead"] = round(seq["frames_per_s"] / base["frames_per_s"] - 1, 4)
        ratios["ray_1_overhead_scoring"] = round(seq["frames_per_s_scoring"] / base["frames_per_s_scoring"] - 1, 4)
    rate = base["frames_per_worker_s"] or base["frames_per_s"]
    sizing = {
        "fleet_hours": fleet_hours,
        "fleet_rate_hz": fleet_rate,
        "deadline_hours": deadline_hours,
        "frames": int(fleet_hours * 3600 * fleet_rate),
        "per_worker_frames_per_s": rate,
        "workers_needed": workers_needed(fleet_hours, fleet_rate, deadline_hours, rate),
    }
    widest = max(runs.values(), key=lambda r: r["workers"])
    if widest["workers"] > 1:
        per = widest["frames_per_s_scoring"] / widest["workers"]
        sizing[f"per_worker_frames_per_s_at_{widest['workers']}"] = round(per, 3)
        sizing[f"workers_needed_at_{widest['workers']}_per_machine_rate"] = workers_needed(
            fleet_hours, fleet_rate, deadline_hours, per
        )
    return {"runs": runs, "ratios": ratios, "sizing": sizing, "cpus": cpu_count(), "eval_args": list(extra)}


__all__ = ["bench_fleet", "make_bags"]
