"""The interface every model is used through: frames go in, in order; segmentations come out.

The node, the demo, evaluation and benchmarks all talk to a :class:`Segmenter`, so a temporal model
(which keeps a window of past frames and may label a frame only when a later one arrives) plugs in
without changing them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

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


#: ``OutputRequest.resolution`` values: the maps at the frame's own size, or at the network input's
RESOLUTIONS = ("input", "network")


@dataclass(frozen=True)
class OutputRequest:
    """Which optional maps to compute; an output nobody wants costs nothing. ``resolution``: ``input`` (maps at
    the frame's size) or ``network`` (at the size the frame was resized to for the network, unpadded)."""

    boundary: bool = True
    confidence: bool = True
    resolution: str = "input"

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution {self.resolution!r} is not known; use {' or '.join(RESOLUTIONS)}")

    def union(self, other: "OutputRequest") -> "OutputRequest":
        """A request for what either asks (one batch serves cameras whose subscribers differ)."""
        if other.resolution != self.resolution:
            raise ValueError("one batch has one output resolution")
        return OutputRequest(
            boundary=self.boundary or other.boundary,
            confidence=self.confidence or other.confidence,
            resolution=self.resolution,
        )


@dataclass
class SegmentationResult:
    """The segmentation of ``frame`` (the frame it labels, which for a delayed window is not the newest).

    All maps are at the frame's input resolution (the network's when the request asked for ``network``).
    ``labels``: HxW uint8 class ids (never the ignore id).
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

    def push_batch(
        self, frames: Sequence[Frame], request: OutputRequest = OutputRequest()
    ) -> list[Optional[SegmentationResult]]:
        """:meth:`push` each frame, in order (one result or None per frame). Network segmenters run the frames
        through the network as one batch where their network takes several frames; the results equal
        one-at-a-time pushes."""
        return [self.push(frame, request) for frame in frames]

    def flush(self, request: OutputRequest = OutputRequest()) -> list[SegmentationResult]:
        """Label the frames still held back (end of a stream); per-frame models hold none."""
        return []

    def reset(self) -> None:  # noqa: B027 - a no-op by default on purpose: a per-frame model holds no state
        """Forget all temporal state (a new stream starts)."""

    @property
    def device(self) -> str:
        return "cpu"
