"""`vsseg-ros eval --bags PATTERN...`: score a fleet of bags, one after the other in this process or as Ray tasks,
and merge their results exactly.

The steps: find the bags (:mod:`~vsseg_ros.fleet.discover`), reuse what ``--results DIR`` already holds
(:mod:`~vsseg_ros.fleet.results`), score the rest with :func:`~vsseg_ros.fleet.tasks.score_task` (in this
process, or through :mod:`~vsseg_ros.fleet.ray_backend` with ``--ray``), storing each record as it arrives, then
merge every bag's :class:`~vsseg_ros.metrics.mergeable.StreamTotals` into the fleet's numbers and write the JSON
and the report (with a per-bag table, worst mIoU first). Ray is imported only on the ``--ray`` path.
The options are :mod:`~vsseg_ros.fleet.options`, the merge and the JSON :mod:`~vsseg_ros.fleet.merge`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from vsseg_ros.fleet.discover import BagTask, FleetError, find_bags, plan_tasks
from vsseg_ros.fleet.merge import fleet_json, merge_records, worst_first
from vsseg_ros.fleet.options import check_args, settings_from
from vsseg_ros.fleet.results import FLEET_FILE, REPORT_DIR, ResultsDir, write_json_atomic
from vsseg_ros.fleet.tasks import BAG_ERROR, score_task, segmenter_for


def _reusable(record: Optional[dict[str, Any]], retry_failed: bool) -> bool:
    if record is None:
        return False
    if record.get("status") == "ok":
        return True
    return record.get("error_kind") == BAG_ERROR and not retry_failed


def run_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """Score the fleet ``args`` names and write its outputs; returns the JSON (with ``bags`` and ``failed``)."""
    from tqdm import tqdm

    check_args(args)
    t_start = time.perf_counter()
    settings = settings_from(args)
    seg = segmenter_for(settings)  # the model must load here before any work is sent out
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        bags = find_bags(args.bags)
        tasks = plan_tasks(bags, args.image_topic, args.gt_topic, args.chunk_frames)
    found_warnings = [str(w.message) for w in rec]
    for line in found_warnings:
        print(f"warning: {line}", file=sys.stderr)

    results = None
    if args.results is not None:
        results = ResultsDir(args.results, {"model_id": seg.model_id, **settings.identity()}).open()
    records: dict[str, dict[str, Any]] = {}
    for t in tasks:
        stored = results.load(t.key) if results is not None else None
        if _reusable(stored, args.retry_failed):
            records[t.key] = stored
    pending = [t for t in tasks if t.key not in records]
    resumed = len(records)
    failed_now = 0
    quiet = getattr(args, "quiet", False)
    bar = tqdm(total=sum(t.frames for t in pending) or None, desc="fleet", unit="frame", disable=quiet)

    def store(task: BagTask, record: dict[str, Any]) -> None:
        nonlocal failed_now
        records[task.key] = record
        if results is not None:
            results.write(record)
        if record.get("status") != "ok":
            failed_now += 1
            tqdm.write(f"failed: {task.label}: {record.get('error')}", file=sys.stderr)
        bar.set_postfix(bags=f"{len(records) - resumed}/{len(pending)}", failed=failed_now, refresh=False)

    mode = "sequential (this process)"
    workers = 1
    t_scoring = time.perf_counter()
    try:
        if args.ray and pending:
            from vsseg_ros.fleet.ray_backend import RayPool

            ship = None
            if settings.model and not args.no_ship_model and Path(settings.model).is_file():
                # a checkpoint travels in Ray's object store; an exported directory must be visible to the workers
                ship = Path(settings.model).read_bytes()
            with RayPool(args.ray, args.workers, args.cpus_per_worker, args.ray_timeout) as pool:
                mode, workers = pool.description, pool.capacity()
                t_scoring = time.perf_counter()
                for task, record in pool.run(pending, settings, ship, progress=bar.update):
                    store(task, record)
        else:
            for task in pending:
                store(task, score_task(task, settings, progress=bar.update))
    finally:
        bar.close()
    scoring_s = time.perf_counter() - t_scoring

    ordered = [records[t.key] for t in tasks if t.key in records]
    merged = merge_records(ordered)
    out = fleet_json(args, seg, settings, tasks, bags, ordered, merged, found_warnings)
    now = [records[t.key] for t in pending if t.key in records]
    frames_now = sum((r.get("result") or {}).get("frames", 0) for r in now)
    busy_s = sum(r.get("seconds") or 0.0 for r in now)
    out["fleet"] = {
        "mode": mode,
        "workers": workers,
        "resumed": resumed,
        "scored_now": len(now),
        "frames_scored_now": frames_now,
        "scoring_s": round(scoring_s, 3),
        "wall_s": round(time.perf_counter() - t_start, 3),
        "frames_per_s": round(frames_now / scoring_s, 3) if frames_now and scoring_s > 0 else None,
        "frames_per_worker_s": round(frames_now / busy_s, 3) if frames_now and busy_s > 0 else None,
    }
    _write_outputs(args, out, merged, seg, results)
    return out


def _write_outputs(
    args: argparse.Namespace,
    out: dict[str, Any],
    merged: Optional[dict[str, Any]],
    seg: Any,
    results: Optional[ResultsDir],
) -> None:
    if args.json:
        write_json_atomic(args.json, out)
    if results is not None:
        write_json_atomic(results.root / FLEET_FILE, out)
    if merged is None:
        return
    for folder in [args.report] + ([results.root / REPORT_DIR] if results is not None else []):
        if folder is not None:
            write_fleet_report(Path(folder), out, merged["totals"], seg.class_map)


def write_fleet_report(folder: Path, out: dict[str, Any], totals: Any, class_map: Any) -> dict[str, Path]:
    """The eval report of the merged result plus the per-bag table (worst mIoU first) and chart."""
    from vsseg_ros.evaluation.report import write_report

    n = out["counts"]
    source = (
        f"fleet of {n['bags']} bags ({n['scored']} scored, {n['failed']} failed, "
        f"{n['without_ground_truth']} without ground truth)"
    )
    return write_report(
        folder,
        [out],
        [out["model"]],
        [totals.confusion],
        [totals.latency.sample()],
        class_map,
        (),
        source,
        bags=worst_first(out["bags"]),
        failed=out["failed"],
    )


def print_fleet_summary(out: dict[str, Any], worst: int = 5) -> None:
    from vsseg_ros.evaluation.inputs import print_summary

    if out.get("frames"):
        print_summary(out)
    f, n = out["fleet"], out["counts"]
    rate = f"{f['frames_per_s']:.2f} frames/s" if f["frames_per_s"] else "no frames scored now"
    print(
        f"fleet: {n['bags']} bags, {n['scored']} scored ({f['resumed']} from --results, {f['scored_now']} now), "
        f"{n['failed']} failed, {n['without_ground_truth']} without ground truth; {f['mode']}, "
        f"{f['workers']} worker(s), {rate}"
    )
    rows = [r for r in worst_first(out["bags"]) if r["miou"] is not None][:worst]
    for r in rows:
        chunk = f" [chunk {r['chunk'][0]}/{r['chunk'][1]}]" if r.get("chunk") else ""
        print(f"  worst: mIoU {100 * r['miou']:.2f}  {r['bag']}{chunk} ({r['frames']} frames)")
    for r in out["failed"]:
        print(f"  failed: {r['bag']}: {r['error']}")


def run_fleet_command(args: argparse.Namespace) -> int:
    """0: every bag scored; 1: some bags failed (listed); 2: bad input or no bag could be scored."""
    from vsseg_ros.core.errors import CheckpointError

    try:
        out = run_fleet(args)
    except (FleetError, ValueError, CheckpointError, FileNotFoundError, OSError) as err:
        print(f"vsseg-ros eval: error: {err}", file=sys.stderr)
        return 2
    print_fleet_summary(out)
    if not out["counts"]["scored"]:
        print("vsseg-ros eval: error: no bag could be scored", file=sys.stderr)
        return 2
    return 1 if out["counts"]["failed"] else 0


def workers_needed(fleet_hours: float, rate_hz: float, deadline_hours: float, frames_per_s_per_worker: float) -> int:
    """Workers that score ``fleet_hours`` of video at ``rate_hz`` within ``deadline_hours``."""
    frames = fleet_hours * 3600.0 * rate_hz
    return int(math.ceil(frames / (deadline_hours * 3600.0) / frames_per_s_per_worker))


__all__ = ["print_fleet_summary", "run_fleet", "run_fleet_command", "workers_needed", "write_fleet_report"]
