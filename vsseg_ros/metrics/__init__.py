"""Segmentation metrics."""

from vsseg_ros.metrics.confusion import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
