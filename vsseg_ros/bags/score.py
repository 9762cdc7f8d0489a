"""Score the masks a node published (a recorded output bag) against the bag it was fed.

Input frames and output masks are joined by header stamp (the node copies the input header), both streamed in
time order so memory stays bounded on long bags. A frame without a mask was dropped: it is not scored, and the
stream is split there, so temporal metrics (mVC, TC) only ever compare frames that were consecutive in both the
input and the output. No ROS import.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

from vsseg_ros.bags.masks import BagMasks
from vsseg_ros.bags.reader import BagFrames


def score_outputs(
    frames: BagFrames,
    masks: BagMasks,
    *,
    stamps: Optional[Iterable[int]] = None,
    latency_ms: Optional[Mapping[int, float]] = None,
    class_names: Optional[Sequence[str]] = None,
    flow_consistency: bool = True,
) -> dict[str, Any]:
    """Counts (published/received/dropped, stamps the input never had) and, when the input has ground truth and
    the class names are known (``class_names``, else the output bag's class map), StreamScorer's metrics over
    the frames that got a mask. ``stamps``: the input stamps that were published (default: every image);
    ``latency_ms``: per stamp, passed on to the scorer."""
    published = set(stamps) if stamps is not None else None
    names = list(class_names or masks.class_names or [])
    scorer = None
    notes: list[str] = []
    if frames.gt_topic is not None and names:
        from vsseg_ros.metrics.scorer import StreamScorer

        scorer = StreamScorer(names, flow_consistency=flow_consistency)
    elif frames.gt_topic is not None:
        notes.append("accuracy not scored: the class names are unknown (no class map in the output bag)")
    else:
        notes.append("accuracy not scored: the input bag has no ground truth")

    outputs = iter(masks)
    buffer: dict[int, Any] = {}
    newest = -1
    exhausted = False
    count = dict(published=0, received=0, labelled=0, labelled_scored=0, unexpected=0, duplicates=0)
    segment = 0
    previous_received = True
    for frame in frames:
        if published is not None and frame.stamp_ns not in published:
            continue
        count["published"] += 1
        count["labelled"] += frame.label is not None
        while not exhausted and newest < frame.stamp_ns:
            try:
                stamp, _, _, mask = next(outputs)
            except StopIteration:
                exhausted = True
                break
            count["duplicates"] += stamp in buffer
            buffer[stamp] = mask
            newest = max(newest, stamp)
        for old in [s for s in buffer if s < frame.stamp_ns]:  # masks for stamps the input does not have
            del buffer[old]
            count["unexpected"] += 1
        mask = buffer.pop(frame.stamp_ns, None)
        if mask is None:
            previous_received = False
            continue
        if not previous_received:
            segment += 1  # a drop: temporal metrics must not pair the frames on either side of it
        previous_received = True
        count["received"] += 1
        if scorer is not None:
            if mask.shape != frame.image.shape[:2]:
                raise ValueError(
                    f"the mask for {frame.name} is {mask.shape[1]}x{mask.shape[0]} but the frame is "
                    f"{frame.image.shape[1]}x{frame.image.shape[0]}"
                )
            scorer.add(
                frame.image,
                mask,
                frame.label,
                latency_ms.get(frame.stamp_ns) if latency_ms else None,
                sequence=f"{frame.sequence}#{segment}",
                name=frame.name,
            )
            count["labelled_scored"] += frame.label is not None
    if not exhausted:  # masks stamped after the last input frame
        for stamp, _, _, _ in outputs:
            buffer[stamp] = None
    count["unexpected"] += len(buffer)
    result: dict[str, Any] = {
        "frames_published": count["published"],
        "frames_received": count["received"],
        "frames_dropped": count["published"] - count["received"],
        "drop_rate": round(1 - count["received"] / count["published"], 4) if count["published"] else None,
        "outputs_with_unknown_stamp": count["unexpected"],
        "duplicate_outputs": count["duplicates"],
        "labelled_frames": count["labelled"],
        "labelled_frames_scored": count["labelled_scored"],
        "drop_segments": segment + 1 if count["received"] else 0,
        "mask_topic": masks.topic,
        "model_id": masks.model_id,
    }
    if scorer is not None:
        if count["labelled"] and not count["labelled_scored"]:
            notes.append(f"none of the {count['labelled']} labelled frames got a mask: nothing to score")
        elif count["labelled_scored"] < count["labelled"]:
            notes.append(
                f"{count['labelled'] - count['labelled_scored']} of {count['labelled']} labelled frames "
                "were dropped and are not scored"
            )
        result["accuracy"] = scorer.result() if count["labelled_scored"] else None
    result["notes"] = notes
    return result


__all__ = ["score_outputs"]
