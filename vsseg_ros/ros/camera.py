"""One camera input of the node: its topic, mailbox, counters, timing window and health, in one object.

The node creates and destroys the subscription (lifecycle activate/deactivate); everything that describes the
stream lives here, so a node with several cameras holds several of these.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np

from vsseg_ros.core.mailbox import LatestSlot
from vsseg_ros.ros.health import Period


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    dropped: int = 0  # replaced by a newer frame before the worker took it
    rejected: int = 0  # malformed input (bad encoding, size, corrupt compressed data)
    skipped: int = 0  # nobody subscribed to any output
    failed: int = 0  # the model raised

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def minus(self, other: "Counters") -> "Counters":
        return Counters(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


#: samples of inference time / latency kept per period (a 30 Hz camera over a 5 s period needs 150)
WINDOW = 512


class CameraInput:
    """The state of one input stream. Thread-safe: the subscription callback, the worker and the statistics
    timer each touch it from their own thread."""

    def __init__(
        self,
        topic: str,
        slot: Optional[LatestSlot] = None,
        output_ns: str = "semantic",
        info_topic: str = "",
        window_prefix: str = "",
    ) -> None:
        """``output_ns``: where this camera's outputs go (``semantic``, relative: the node's; or the camera's
        ``/cam_front/semantic``); ``info_topic``: its camera_info; ``window_prefix``: what keeps its temporal
        windows apart from other cameras' with the same frame_id (empty for a single camera)."""
        self.topic = topic
        self.slot: LatestSlot = slot if slot is not None else LatestSlot()
        self.output_ns = output_ns
        self.info_topic = info_topic
        self.window_prefix = window_prefix
        self.outputs: Any = None  # the node's publishers for this camera, from configure to cleanup
        self.info: Any = None  # its CameraInfoMatcher, from configure to cleanup
        self.info_subscription: Any = None
        self.counters = Counters()
        self.subscription: Any = None  # the node's rclpy subscription while active
        self.frame_id = ""  # of the last frame received (the camera's hardware id in /diagnostics)
        self.lock = threading.Lock()
        self.infer_ms: deque[float] = deque(maxlen=WINDOW)
        self.latency_ms: deque[float] = deque(maxlen=WINDOW)
        self.fused: deque[int] = deque(maxlen=WINDOW)
        self.failing_in_a_row = 0
        self.last_failure = ""
        self.activated_at = time.monotonic()
        self.last_input: Optional[float] = None  # monotonic time of the last frame since activation
        self.frame_started: Optional[float] = None  # when the frame now in the model went in
        self.silent_since: Optional[float] = None  # a publisher matched, no frame yet
        self.warned_silent = False
        self._period = (time.monotonic(), Counters())

    def window_id(self, frame_id: str) -> str:
        """The temporal window key (``Frame.camera_id``) of a frame of this camera."""
        return self.window_prefix + frame_id

    # ---- the three writers ------------------------------------------------------------------------
    def on_message(self, msg: Any) -> None:
        """Subscription callback: count and hand over; never work here."""
        with self.lock:
            self.counters.received += 1
            self.last_input = time.monotonic()
            self.frame_id = str(msg.header.frame_id)
        if self.slot.put(msg):
            with self.lock:
                self.counters.dropped += 1

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def processed(self, inference_ms: float, latency_ms: float, frames_fused: int) -> None:
        with self.lock:
            self.counters.processed += 1
            self.failing_in_a_row = 0
            self.infer_ms.append(inference_ms)
            self.latency_ms.append(latency_ms)
            self.fused.append(frames_fused)

    def failed(self, what: str) -> None:
        with self.lock:
            self.counters.failed += 1
            self.failing_in_a_row += 1
            self.last_failure = what

    # ---- lifecycle ---------------------------------------------------------------------------------
    def activated(self) -> None:
        with self.lock:
            self.activated_at = time.monotonic()
            self.last_input = None
            self.silent_since = None

    def deactivated(self) -> None:
        self.slot.take(timeout=0)  # a frame that arrived before the subscription went is not processed

    # ---- the statistics timer ----------------------------------------------------------------------
    def period(self, active: bool) -> tuple[Period, Counters, dict[str, np.ndarray]]:
        """The period since the last call (and resets it): health inputs, the counters so far, and the
        period's samples (``infer_ms``, ``latency_ms``, ``fused``)."""
        now = time.monotonic()
        with self.lock:
            t0, c0 = self._period
            total = Counters(**self.counters.as_dict())
            samples = {
                "infer_ms": np.array(self.infer_ms, dtype=float),
                "latency_ms": np.array(self.latency_ms, dtype=float),
                "fused": np.array(self.fused, dtype=float),
            }
            self.infer_ms.clear()
            self.latency_ms.clear()
            self.fused.clear()
            self._period = (now, total)
            d = total.minus(c0)
            period = Period(
                seconds=now - t0,
                received=d.received,
                processed=d.processed,
                dropped=d.dropped,
                rejected=d.rejected,
                failed=d.failed,
                skipped=d.skipped,
                latency_ms=tuple(samples["latency_ms"]),
                since_input_s=None if self.last_input is None else now - self.last_input,
                active_for_s=now - self.activated_at,
                in_model_s=0.0 if self.frame_started is None else now - self.frame_started,
                failing_in_a_row=self.failing_in_a_row,
                last_failure=self.last_failure,
                active=active,
            )
        return period, total, samples

    def silent_publisher(self, publishers: int, wait_s: float) -> bool:
        """True once (the first time): a publisher has been matched for ``wait_s`` and no frame came."""
        now = time.monotonic()
        with self.lock:
            if self.warned_silent or self.last_input is not None or publishers == 0:
                self.silent_since = None if publishers == 0 else self.silent_since
                return False
            if self.silent_since is None:
                self.silent_since = now
            if now - self.silent_since < wait_s:
                return False
            self.warned_silent = True
            return True


__all__ = ["CameraInput", "Counters", "WINDOW"]
