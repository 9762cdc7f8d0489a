"""Segmentation metrics: confusion matrix (mIoU), boundary F-score, video / flow-warp consistency, latency, and
:class:`StreamScorer`, which keeps all of them over a stream of frames."""

from vsseg_ros.metrics.confusion import ConfusionMatrix
from vsseg_ros.metrics.scorer import StreamScorer

__all__ = ["ConfusionMatrix", "StreamScorer"]
