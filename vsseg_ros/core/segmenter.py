"""The interface every model is used through: frames go in, in order; segmentations come out.

The node, the demo, evaluation and benchmarks all talk to a :class:`Segmenter`, so a temporal model
(which keeps a window of past frames and may label a frame only when a later one arrives) plugs in
without changing them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from vsseg_ros.core.classes import ClassMap


@dataclass(frozen=True)
class Frame:
    """One camera frame. ``image`` is HxWx3 uint8 RGB; ``meta`` travels untouched to the result
    (the ROS layer keeps the message header there)."""

    image: np.ndarray
    stamp_ns: int
    camera_id: str = ""
    meta: Any = None


@dataclass(frozen=True)
class OutputRequest:
    """Which optional maps to compute; an output nobody wants costs nothing."""

    boundary: bool = True
    confidence: bool = True


@dataclass
class SegmentationResult:
    """The segmentation of ``frame`` (the frame it labels, which for a delayed window is not the newest).

    All maps are at the frame's input resolution. ``labels``: HxW uint8 class ids (never the ignore id).
    ``boundary``: HxW float32 in [0, 1], the probability that a class boundary passes through the pixel.
    ``confidence``: HxW float32, the largest class probability. Maps not requested are ``None``.
    """

    frame: Frame
    labels: np.ndarray
    boundary: Optional[np.ndarray]
    confidence: Optional[np.ndarray]
    frames_fused: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def inference_ms(self) -> float:
        return float(sum(self.timings_ms.values()))


class Segmenter(abc.ABC):
    """Takes frames in order and returns, for the frame it labels, the class map and the confidence maps."""

    class_map: ClassMap
    model_id: str
    #: frames of added latency: 0 when push(frame) labels that frame, 1 for a centred window.
    delay_frames: int = 0

    @abc.abstractmethod
    def push(self, frame: Frame, request: OutputRequest = OutputRequest()) -> Optional[SegmentationResult]:
        """Add the next frame; return the segmentation of the frame this step labels, if any."""

    def flush(self, request: OutputRequest = OutputRequest()) -> list[SegmentationResult]:
        """Label the frames still held back (end of a stream); per-frame models hold none."""
        return []

    def reset(self) -> None:  # noqa: B027 - a no-op by default on purpose: a per-frame model holds no state
        """Forget all temporal state (a new stream starts)."""

    @property
    def device(self) -> str:
        return "cpu"
