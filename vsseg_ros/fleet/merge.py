"""The fleet's numbers from its bags' records: every ok record's totals merged and scored once, a row per bag
(worst mIoU first where a table shows them), and the fleet JSON around them.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

from vsseg_ros.fleet.discover import BagTask
from vsseg_ros.fleet.tasks import ScoreSettings


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


def fleet_json(
    args: argparse.Namespace,
    seg: Any,
    settings: ScoreSettings,
    tasks: list[BagTask],
    bags: list[Any],
    records: list[dict[str, Any]],
    merged: Optional[dict[str, Any]],
    found: list[str],
) -> dict[str, Any]:
    """The fleet's JSON (without ``fleet``, the run's timing): the merged numbers, the model, one row per scored
    bag, the failed ones, counts, source and settings."""
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
