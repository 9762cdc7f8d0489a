"""Accuracy of a Segmenter over a labelled split, streamed frame by frame exactly as the node runs it."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from vsseg_ros.core.segmenter import Frame, OutputRequest, Segmenter
from vsseg_ros.data.camvid import CamVid
from vsseg_ros.metrics.confusion import ConfusionMatrix


def evaluate_split(segmenter: Segmenter, data: CamVid, progress: bool = True) -> dict[str, Any]:
    """mIoU, per-class IoU and pixel accuracy over ``data`` (frames in sequence order, 255 ignored).

    The segmenter is reset whenever the sequence changes, so a temporal model never fuses across clips."""
    cm = ConfusionMatrix(segmenter.class_map.num_classes)
    request = OutputRequest(boundary=False, confidence=False)
    labels_by_stamp: dict[int, Any] = {}
    sequence = None

    def score(result) -> None:
        cm.update(result.labels, labels_by_stamp.pop(result.frame.stamp_ns))

    samples = sorted(data.samples, key=lambda s: (s.sequence, s.frame))
    for i, sample in enumerate(tqdm(samples, desc=f"eval {data.split}", unit="frame", disable=not progress)):
        if sample.sequence != sequence:
            for r in segmenter.flush(request):
                score(r)
            segmenter.reset()
            sequence = sample.sequence
        image, label = data.load(sample)
        labels_by_stamp[i] = label
        result = segmenter.push(Frame(image=image, stamp_ns=i, camera_id=sample.sequence), request)
        if result is not None:
            score(result)
    for r in segmenter.flush(request):
        score(r)
    return {"frames": len(samples), **cm.summary(segmenter.class_map.names)}
