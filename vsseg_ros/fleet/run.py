"""`vsseg-ros eval --bags PATTERN...`: score a fleet of bags, one after the other in this process or as Ray tasks,
and merge their results exactly.

The steps: find the bags (:mod:`~vsseg_ros.fleet.discover`), reuse what ``--results DIR`` already holds
(:mod:`~vsseg_ros.fleet.results`), score the rest with :func:`~vsseg_ros.fleet.tasks.score_task` (in this
process, or through :mod:`~vsseg_ros.fleet.ray_backend` with ``--ray``), storing each record as it arrives, then
merge every bag's :class:`~vsseg_ros.metrics.mergeable.StreamTotals` into the fleet's numbers and write the JSON
and the report (with a per-bag table, worst mIoU first). Ray is imported only on the ``--ray`` path.
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
from vsseg_ros.fleet.results import FLEET_FILE, REPORT_DIR, ResultsDir, write_json_atomic
from vsseg_ros.fleet.tasks import BAG_ERROR, ScoreSettings, file_sha256, model_file, score_task, segmenter_for

#: eval options that name one input or one model's outputs, which a fleet run does not take
_SINGLE_INPUT_ONLY = (
    ("bag", "--bag (give it to --bags)"),
    ("dataset", "--dataset"),
    ("compare", "--compare"),
    ("output_bag", "--output-bag"),
    ("max_frames", "--max-frames"),
)


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    """The fleet options of ``vsseg-ros eval`` (used together with the model and metric options)."""
    f = p.add_argument_group("fleet: many bags, in this process or on Ray (docs/fleet.md)")
    f.add_argument(
        "--bags",
        nargs="+",
        metavar="PATTERN",
        help="score many bags: globs (quote them; ** recurses), folders (searched for bags) or text files "
        "listing bags, folders or globs one per line; the results merge exactly",
    )
    f.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="MODE",
        help="run each bag as a Ray task: 'local' (a private instance on this machine), 'auto' (default "
        "when given alone: RAY_ADDRESS or a `ray start` cluster here, else local) or HOST:PORT / "
        "ray://HOST:PORT of a cluster. Without --ray the bags run one after the other here",
    )
    f.add_argument(
        "--workers",
        type=int,
        default=None,
        help="tasks running at once (default: the CPUs Ray has / --cpus-per-worker)",
    )
    f.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="CPUs each Ray task reserves, and its torch threads unless --threads (default 1)",
    )
    f.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="keep one JSON per finished bag, the merged JSON and the report here; a rerun skips the "
        "bags already scored",
    )
    f.add_argument(
        "--chunk-frames",
        type=int,
        default=0,
        metavar="N",
        help="cut a bag of more than N frames into tasks of about N frames at its sequence starts "
        "(make-bag bags of several sequences); 0 = whole bags (default)",
    )
    f.add_argument(
        "--retry-failed", action="store_true", help="score again the bags a previous run recorded as unreadable"
    )
    f.add_argument("--ray-timeout", type=float, default=10.0, help="seconds a Ray address has to answer (default 10)")
    f.add_argument(
        "--no-ship-model",
        action="store_true",
        help="workers read --model from its path (shared storage) instead of receiving it from this "
        "process through Ray's object store",
    )


def _check_args(args: argparse.Namespace) -> None:
    for attr, flag in _SINGLE_INPUT_ONLY:
        if getattr(args, attr, None):
            raise FleetError(f"{flag} scores one input; it does not go with --bags")
    if any(getattr(args, "context", (0, 0)) or ()):
        raise FleetError("--context applies to --dataset, not to --bags")
    if args.workers is not None and args.workers < 1:
        raise FleetError(f"--workers must be >= 1, got {args.workers}")
    if args.workers and args.workers > 1 and not args.ray:
        raise FleetError(
            f"--workers {args.workers} needs --ray (local, auto or a cluster's address): without it the "
            "bags run one after the other in this process"
        )
    if not args.cpus_per_worker > 0:
        raise FleetError(f"--cpus-per-worker must be > 0, got {args.cpus_per_worker}")
    if args.chunk_frames < 0:
        raise FleetError(f"--chunk-frames must be >= 0, got {args.chunk_frames}")
    if not args.ray_timeout > 0:
        raise FleetError(f"--ray-timeout must be > 0 seconds, got {args.ray_timeout}")


def settings_from(args: argparse.Namespace) -> ScoreSettings:
    threads = args.threads
    if args.ray and not threads:
        threads = max(1, int(args.cpus_per_worker))  # one process per worker: no oversubscription
    path = model_file(ScoreSettings(model=str(args.model or "")))
    if not (path.is_file() or path.is_dir()):
        raise FileNotFoundError(f"--model {path} does not exist")
    return ScoreSettings(
        model=str(args.model or ""),
        model_sha256=file_sha256(path),
        device=args.device,
        backend=getattr(args, "backend", "torch"),
        precision=args.precision,
        input_size=args.input_size,
        temporal_mode=args.temporal_mode,
        max_frame_gap=args.max_frame_gap,
        threads=threads,
        warmup=args.warmup,
        boundary_tolerance=args.boundary_tolerance,
        tc=not args.no_tc,
        dis_preset=args.dis_preset,
        image_topic=args.image_topic,
        gt_topic=args.gt_topic,
    )


def _reusable(record: Optional[dict[str, Any]], retry_failed: bool) -> bool:
    if record is None:
        return False
    if record.get("status") == "ok":
        return True
    return record.get("error_kind") == BAG_ERROR and not retry_failed


def bag_row(record: dict[str, Any]) -> dict[str, Any]:
    """A finished task's line in ``bags``: its headline numbers, frames and time."""
    r = record.get("result") or {}
    frames, seconds = r.get("frames"), record.get("seconds")
    return {
        "bag": record["bag"],
        "chunk": record.get("chunk"),
        "key": record["key"],
        "ground_truth": record.get("ground_truth"),
        "frames": frames,
        "labelled_frames": r.get("labelled_frames"),
        "miou": r.get("miou"),
        "pixel_accuracy": r.get("pixel_accuracy"),
        "boundary_f": r.get("boundary_f"),
        "mvc8": r.get("mvc8"),
        "mvc16": r.get("mvc16"),
        "tc": r.get("tc"),
        "latency_ms_p50": (r.get("latency_ms") or {}).get("p50"),
        "seconds": seconds,
        "frames_per_s": round(frames / seconds, 3) if frames and seconds else None,
        "worker": record.get("worker"),
        "warnings": record.get("warnings", []),
    }


def worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by mIoU, lowest first; rows without an mIoU (no ground truth) last, in their order."""
    return sorted(rows, key=lambda r: (r.get("miou") is None, r.get("miou") or 0.0))


def merge_records(records: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The fleet's numbers from the ok records (in task order): their totals merged, then scored once."""
    from vsseg_ros.metrics.mergeable import StreamTotals

    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return None
    totals = StreamTotals.merged(StreamTotals.from_dict(r["totals"]) for r in ok)
    return {"result": totals.result(), "totals": totals}


def run_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """Score the fleet ``args`` names and write its outputs; returns the JSON (with ``bags`` and ``failed``)."""
    from tqdm import tqdm

    _check_args(args)
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
    out = _fleet_json(args, seg, settings, tasks, bags, ordered, merged, found_warnings)
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


def _fleet_json(
    args: argparse.Namespace,
    seg: Any,
    settings: ScoreSettings,
    tasks: list[BagTask],
    bags: list[Any],
    records: list[dict[str, Any]],
    merged: Optional[dict[str, Any]],
    found: list[str],
) -> dict[str, Any]:
    from vsseg_ros.core.loading import backend_summary
    from vsseg_ros.evaluation.inputs import DEFAULT_MODEL

    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    no_gt = [r for r in ok if not r.get("ground_truth")]
    if merged is not None:
        out: dict[str, Any] = dict(merged["result"])
    else:
        out = {"miou": None, "frames": 0, "labelled_frames": 0, "notes": ["no bag could be scored: see failed"]}
    if no_gt and len(no_gt) < len(ok):
        out.setdefault("notes", []).append(
            f"{len(no_gt)} of {len(ok)} scored bags have no ground truth: they count for TC and latency only"
        )
    out.update(
        {
            "model": seg.model_id,
            "model_path": settings.model or DEFAULT_MODEL,
            "backend": backend_summary(seg),
            "delay_frames": int(getattr(seg, "delay_frames", 0)),
            "frames_without_result": sum(r["result"].get("frames_without_result", 0) for r in ok),
            "sequences": sum(r["result"].get("sequences", 0) for r in ok),
            "bags": [bag_row(r) for r in ok],
            "failed": [
                {"bag": r["bag"], "chunk": r.get("chunk"), "error": r.get("error"), "error_kind": r.get("error_kind")}
                for r in failed
            ],
            "counts": {
                "bags": len(bags),
                "tasks": len(tasks),
                "scored": len(ok),
                "failed": len(failed),
                "without_ground_truth": len(no_gt),
                "frames_without_ground_truth": sum(r["result"]["frames"] for r in no_gt),
            },
            "source": {
                "kind": "fleet",
                "patterns": [str(p) for p in args.bags],
                "bags": len(bags),
                "chunk_frames": args.chunk_frames,
            },
            "settings": {
                "boundary_tolerance_px": settings.boundary_tolerance,
                "tc": settings.tc,
                "dis_preset": settings.dis_preset,
                "device": settings.device,
                "precision": settings.precision,
                "input_size": settings.input_size,
                "temporal_mode": settings.temporal_mode,
                "max_frame_gap_s": settings.max_frame_gap,
                "threads": settings.threads,
                "model_sha256": settings.model_sha256,
            },
            "warnings": found,
        }
    )
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
    from vsseg_ros.core.checkpoint import CheckpointError

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


__all__ = [
    "add_fleet_arguments",
    "bag_row",
    "merge_records",
    "print_fleet_summary",
    "run_fleet",
    "run_fleet_command",
    "workers_needed",
    "worst_first",
    "write_fleet_report",
]
