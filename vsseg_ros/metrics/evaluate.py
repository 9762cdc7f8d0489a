"""Accuracy of Segmenters over a stream of labelled frames, run frame by frame exactly as the node runs them.

:func:`evaluate_stream` pushes every :class:`~vsseg_ros.data.sources.LabelledFrame` (in stream order) into one
or more Segmenters (a side-by-side comparison sees the same frames), matches each result to its frame through
``result.frame`` (a temporal model may return a frame's result one push later, or at ``flush()``), times the
call that produced it, and feeds a :class:`~vsseg_ros.metrics.scorer.StreamScorer` per model. At every new
sequence the segmenters are flushed and reset, so no model fuses across clips.

:func:`evaluate_split` is the mIoU-only shortcut over a dataset split (training and model packaging use it).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Optional, Sequence

from tqdm import tqdm

from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter
from vsseg_ros.data.sources import LabelledFrame, frames_of
from vsseg_ros.metrics.scorer import StreamScorer

#: called for every scored result: (model index, stream index, frame, result, latency in ms)
ResultHook = Callable[[int, int, LabelledFrame, SegmentationResult, float], None]


class EvaluationWarning(UserWarning):
    """Something about the stream that makes the scores cover less than the input (frames left unlabelled)."""


@dataclass
class StreamStats:
    """What :func:`evaluate_stream` saw: frames read, sequences, and per model the frames it never labelled."""

    frames: int = 0
    sequences: list[str] = field(default_factory=list)
    unlabelled_by_model: list[int] = field(default_factory=list)


class _Lane:
    """One model's pass over the stream: its segmenter, scorer and the frames waiting for their result."""

    def __init__(self, index: int, segmenter: Segmenter, scorer: StreamScorer, hook: Optional[ResultHook]) -> None:
        self.index = index
        self.segmenter = segmenter
        self.scorer = scorer
        self.hook = hook
        self.pending: dict[int, LabelledFrame] = {}
        self.next_index = 0  # stream index of the oldest frame not yet scored
        self.missed = 0

    def take(self, result: Optional[SegmentationResult], latency_ms: float) -> None:
        if result is None:
            return
        key = result.frame.meta
        if key not in self.pending:
            raise RuntimeError(
                f"segmenter {self.segmenter.model_id!r} returned a result for a frame it was not "
                f"given or that was already scored (meta={key!r})"
            )
        # frames older than this result that never got one are lost to the model (a window restart may drop
        # one): they break the runs of consecutive frames instead of being scored
        for old in sorted(k for k in self.pending if k < key):
            del self.pending[old]
            self.missed += 1
            self.scorer.video.break_run()
            if self.scorer.flow is not None:
                self.scorer.flow.break_run()
        lf = self.pending.pop(key)
        self.scorer.add(lf.image, result.labels, lf.label, latency_ms, lf.sequence, lf.name)
        if self.hook is not None:
            self.hook(self.index, key, lf, result, latency_ms)

    def push(self, index: int, lf: LabelledFrame, request: OutputRequest) -> None:
        self.pending[index] = lf
        frame = Frame(image=lf.image, stamp_ns=int(lf.stamp_ns), camera_id=lf.camera_id, meta=index)
        t0 = time.perf_counter()
        result = self.segmenter.push(frame, request)
        self.take(result, (time.perf_counter() - t0) * 1e3)

    def flush(self, request: OutputRequest) -> None:
        t0 = time.perf_counter()
        results = self.segmenter.flush(request)
        ms = (time.perf_counter() - t0) * 1e3
        for r in results:
            self.take(r, ms / max(1, len(results)))
        if self.pending:
            self.missed += len(self.pending)
            self.pending.clear()
            self.scorer.video.break_run()
            if self.scorer.flow is not None:
                self.scorer.flow.break_run()


def evaluate_stream(
    segmenters: Sequence[Segmenter],
    frames: Iterable[LabelledFrame],
    scorers: Sequence[StreamScorer],
    request: OutputRequest = OutputRequest(boundary=False, confidence=False),
    on_result: Optional[ResultHook] = None,
    warmup: int = 1,
    max_frames: Optional[int] = None,
    progress: bool = False,
    total: Optional[int] = None,
) -> StreamStats:
    """Run every segmenter over ``frames`` and score its results with the matching scorer.

    ``warmup``: pushes of the first frame before timing starts (then ``reset()``), so one-off costs (allocation,
    kernel selection) do not land in the latency statistics; the scores are unaffected. ``max_frames``: stop after
    that many frames. Latency of a result = wall time of the ``push`` (or share of the ``flush``) that returned it.
    Warns (:class:`EvaluationWarning`) when a model left frames without a result.
    """
    if len(segmenters) != len(scorers) or not segmenters:
        raise ValueError(f"need one scorer per segmenter, got {len(segmenters)} segmenters and {len(scorers)} scorers")
    lanes = [_Lane(i, s, sc, on_result) for i, (s, sc) in enumerate(zip(segmenters, scorers))]
    stats = StreamStats()
    sequence: Optional[str] = None
    bar = tqdm(total=total, desc="eval", unit="frame", disable=not progress)
    try:
        for index, lf in enumerate(frames):
            if max_frames is not None and index >= max_frames:
                break
            if index == 0 and warmup > 0:
                for lane in lanes:
                    for w in range(int(warmup)):
                        lane.segmenter.push(
                            Frame(image=lf.image, stamp_ns=int(lf.stamp_ns) + w, camera_id=lf.camera_id, meta=None),
                            request,
                        )
                    lane.segmenter.flush(request)
            if lf.sequence != sequence or index == 0:
                for lane in lanes:
                    lane.flush(request)
                    lane.segmenter.reset()
                sequence = lf.sequence
                stats.sequences.append(lf.sequence)
            for lane in lanes:
                lane.push(index, lf, request)
            stats.frames += 1
            bar.update(1)
        for lane in lanes:
            lane.flush(request)
    finally:
        bar.close()
    stats.unlabelled_by_model = [lane.missed for lane in lanes]
    for lane in lanes:
        if lane.missed:
            warnings.warn(
                f"model {lane.segmenter.model_id!r} returned no result for {lane.missed} of "
                f"{stats.frames} frames; they are not scored",
                EvaluationWarning,
                stacklevel=2,
            )
    return stats


def evaluate_split(segmenter: Segmenter, data: Any, progress: bool = True) -> dict[str, Any]:
    """mIoU, per-class IoU (``iou``) and pixel accuracy over a dataset split (frames in sequence order, 255
    ignored), streamed through ``segmenter``; the segmenter is reset at every sequence. Frames are stamped with
    their stream index (in ns), as this function always has; :func:`evaluate_stream` over
    :func:`~vsseg_ros.data.sources.dataset_frames` uses real time stamps."""
    scorer = StreamScorer(segmenter.class_map.names, flow_consistency=False)
    frames = (replace(lf, stamp_ns=i) for i, lf in enumerate(frames_of(data, 30.0)))
    stats = evaluate_stream([segmenter], frames, [scorer], warmup=0, progress=progress, total=len(data))
    summary = scorer.confusion.summary(segmenter.class_map.names)
    return {"frames": stats.frames, **summary}


__all__ = ["EvaluationWarning", "ResultHook", "StreamStats", "evaluate_split", "evaluate_stream"]
