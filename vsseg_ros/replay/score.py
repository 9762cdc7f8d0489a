"""The outputs of a replay scored against the input bag, per camera and added up over the cameras."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from vsseg_ros.replay.cameras import cameras_of
from vsseg_ros.replay.live import run_live


def replay(args: argparse.Namespace, cams: Sequence[Any], out_dir: Path) -> dict[str, Any]:
    """Play the bag's cameras ``cams`` live through the node (or, with ``--score-recorded``, take a bag recorded
    elsewhere) and score the outputs against the input bag; returns the result ``replay.json`` holds. Raises
    BagError for a bag that cannot be scored, RuntimeError when the node did not serve."""
    from vsseg_ros.bags.masks import BagMasks
    from vsseg_ros.bags.score import score_outputs

    frames = cams[0]
    multi = len(cams) > 1
    if args.score_recorded is not None:
        result: dict[str, Any] = {"bag": str(frames.path), "output_bag": str(args.score_recorded)}
        if multi:
            result["cameras"] = {c.image_topic: {} for c in cams}
        output_bag = args.score_recorded
    else:
        result = run_live(args, cams, out_dir)
        output_bag = Path(result["output_bag"])
    cameras = cameras_of(args, cams)
    scores = {}
    for cam in cameras:
        live = result["cameras"][cam.topic] if multi else result
        latency = live.pop("_latency_by_stamp", None)
        stamps = (
            None
            if not args.max_frames or args.score_recorded is not None
            else published_stamps(cam.frames, args.max_frames)
        )
        masks = BagMasks(output_bag, topic=mask_topic(output_bag, cam.prefix) if multi else None)
        scores[cam.topic] = score_outputs(
            cam.frames, masks, stamps=stamps, latency_ms=latency, flow_consistency=not args.no_tc
        )
        if multi:
            live["score"] = scores[cam.topic]
            if cam.frames.gt_report is not None:
                live["ground_truth"] = cam.frames.gt_report.as_dict()
    result["score"] = total_score(list(scores.values())) if multi else scores[frames.image_topic]
    if not multi and frames.gt_report is not None:
        result["ground_truth"] = frames.gt_report.as_dict()
    return result


def mask_topic(output_bag: Path, prefix: str) -> str:
    """A camera's mask topic in an output bag: ``<prefix>/mask``, else ``<prefix>/segmentation``."""
    from vsseg_ros.bags.bagfile import bag_topics

    topics = bag_topics(output_bag)
    return next((t for t in (f"{prefix}/mask", f"{prefix}/segmentation") if t in topics), f"{prefix}/mask")


def total_score(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cameras' counts added up (accuracy stays per camera: each camera's stream is scored on its own)."""
    keys = (
        "frames_published",
        "frames_received",
        "frames_dropped",
        "outputs_with_unknown_stamp",
        "duplicate_outputs",
        "labelled_frames",
        "labelled_frames_scored",
    )
    total: dict[str, Any] = {k: sum(s[k] for s in scores) for k in keys}
    total["drop_rate"] = (
        round(1 - total["frames_received"] / total["frames_published"], 4) if total["frames_published"] else None
    )
    total["notes"] = []
    return total


def published_stamps(frames: Any, n: int) -> set[int]:
    from vsseg_ros.bags.cdr import stamp_of

    stamps = []
    for _, _, raw in frames.raw_messages([frames.image_topic]):
        if len(stamps) >= n:
            break
        stamps.append(stamp_of(raw))
    return set(stamps)
