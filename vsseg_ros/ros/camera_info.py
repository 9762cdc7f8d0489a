"""A camera's camera_info beside its masks: matched to each mask by stamp, scaled with the mask, and the
once-per-camera warnings when it is missing, of another resolution, or never matches.

The mask gets the camera_info whose stamp equals the frame's (``camera_info_slop`` 0), or the nearest within
the slop (a driver that stamps them apart). A camera_info that arrives after its frame's mask went out (a
driver publishes the image first) is published when it comes, for the last :data:`PENDING` masks without one.
The lookup is ``message_filters.Cache`` where message_filters is importable (a ROS install), else
:class:`StampCache`, the same lookup with no ROS: the infos of the last :data:`KEEP` stamps, looked up exactly (a
dict) or nearest within the slop. The info published goes out with the mask's header, so ``message_filters``
ExactTime pairs mask and camera_info downstream.
"""

from __future__ import annotations

import bisect
import copy
import threading
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence

#: camera_infos kept per camera for matching (a 30 Hz camera: 2 s of the worker running behind)
KEEP = 64
#: frames published without a matching camera_info before the node says the stamps never match
UNMATCHED_FRAMES = 10
#: masks kept waiting for a camera_info that may still come
PENDING = 8


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class StampCache:
    """Items by stamp (ns): the last ``keep`` stamps, :meth:`match` exact or nearest within ``slop_ns``.
    Thread-safe (a subscription callback adds, the worker looks up)."""

    def __init__(self, slop_ns: int = 0, keep: int = KEEP) -> None:
        self.slop_ns = int(slop_ns)
        self.keep = keep
        self._items: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, stamp: int, item: Any) -> None:
        with self._lock:
            self._items[stamp] = item
            self._items.move_to_end(stamp)
            while len(self._items) > self.keep:
                self._items.popitem(last=False)

    def match(self, stamp: int) -> Optional[Any]:
        with self._lock:
            if stamp in self._items or self.slop_ns <= 0:
                return self._items.get(stamp)
            best = self._nearest(stamp)
            return None if best is None or abs(best - stamp) > self.slop_ns else self._items[best]

    def offset_ns(self, stamp: int) -> Optional[int]:
        """The nearest kept stamp minus ``stamp`` (None when empty): what a "never matches" warning shows."""
        with self._lock:
            best = self._nearest(stamp)
            return None if best is None else best - stamp

    def _nearest(self, stamp: int) -> Optional[int]:
        stamps = sorted(self._items)
        if not stamps:
            return None
        i = bisect.bisect_left(stamps, stamp)
        near = stamps[max(0, i - 1) : i + 1]
        return min(near, key=lambda s: abs(s - stamp))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class MessageFiltersCache:
    """The same lookup on ``message_filters.Cache`` (``getInterval(t - slop, t + slop)``, the nearest)."""

    def __init__(self, slop_ns: int = 0, keep: int = KEEP) -> None:
        import message_filters
        from rclpy.clock import ClockType
        from rclpy.time import Time

        # the cache keeps Time.from_msg(stamp), a ROS_TIME; comparing other clock types raises
        self._time = lambda ns: Time(nanoseconds=ns, clock_type=ClockType.ROS_TIME)
        self.slop_ns = int(slop_ns)
        self._cache = message_filters.Cache(message_filters.SimpleFilter(), cache_size=keep)
        self._lock = threading.Lock()

    def add(self, stamp: int, item: Any) -> None:
        with self._lock:
            self._cache.add(item)

    def _within(self, stamp: int, slop: int) -> list[Any]:
        return self._cache.getInterval(self._time(max(0, stamp - slop)), self._time(stamp + slop))

    def match(self, stamp: int) -> Optional[Any]:
        with self._lock:
            found = self._within(stamp, max(0, self.slop_ns))
        return min(found, key=lambda m: abs(stamp_ns(m.header) - stamp)) if found else None

    def offset_ns(self, stamp: int) -> Optional[int]:
        with self._lock:
            last = self._cache.getLast()
        return None if last is None else stamp_ns(last.header) - stamp

    def __len__(self) -> int:
        return len(self._cache.cache_msgs)


def make_cache(slop_ns: int) -> Any:
    """message_filters' cache where it is importable, else :class:`StampCache`."""
    try:
        return MessageFiltersCache(slop_ns)
    except ImportError:
        return StampCache(slop_ns)


def scaled_intrinsics(k: Sequence[float], p: Sequence[float], sx: float, sy: float) -> tuple[list[float], list[float]]:
    """K (3x3) and P (3x4), row-major, for the image scaled by ``sx`` across and ``sy`` down, as image_proc's
    resize does: fx, cx, and P's Tx term (fx * baseline) by sx; fy, cy by sy."""
    k2, p2 = [float(v) for v in k], [float(v) for v in p]
    for i in (0, 2):
        k2[i] *= sx
    for i in (4, 5):
        k2[i] *= sy
    for i in (0, 2, 3):
        p2[i] *= sx
    for i in (5, 6):
        p2[i] *= sy
    return k2, p2


def scaled_camera_info(info: Any, width: int, height: int) -> Any:
    """A copy of ``info`` for the same camera's image resized to ``width`` x ``height`` (K, P, the size and
    the ROI scaled; D, R and binning unchanged)."""
    out = copy.deepcopy(info)
    if info.width == width and info.height == height:
        return out
    sx, sy = width / info.width, height / info.height
    out.k, out.p = scaled_intrinsics(info.k, info.p, sx, sy)
    out.width, out.height = width, height
    roi = out.roi
    roi.x_offset, roi.width = int(round(roi.x_offset * sx)), int(round(roi.width * sx))
    roi.y_offset, roi.height = int(round(roi.y_offset * sy)), int(round(roi.height * sy))
    return out


class CameraInfoMatcher:
    """One camera's camera_info: kept from its subscription, found for each published mask, with warnings
    once each (via ``warn``) for: no camera_info at all, another resolution than the frames', stamps that
    never match (with the offsets seen)."""

    def __init__(self, topic: str, image_topic: str, slop_ns: int, warn: Callable[[str], None]) -> None:
        self.topic = topic
        self.image_topic = image_topic
        self.cache = make_cache(slop_ns)
        self.received = 0
        self.published = 0
        self._unmatched = 0
        self._offsets: list[float] = []
        self._warned: set[str] = set()
        self._warn = warn
        self._slop_ns = int(slop_ns)
        self._pending: OrderedDict[int, tuple[Any, tuple[int, int], tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def on_message(self, msg: Any) -> Optional[Any]:
        """Subscription callback: keep it; the camera_info to publish now if a mask already went out without
        it (its frame's stamp matches), else None."""
        self.received += 1
        stamp = stamp_ns(msg.header)
        self.cache.add(stamp, msg)
        with self._lock:
            match = next((s for s in self._pending if abs(s - stamp) <= self._slop_ns), None)
            if match is None:
                return None
            header, frame_size, out_size = self._pending.pop(match)
        return self._ready(msg, header, frame_size, out_size)

    def _once(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self._warn(text)

    def for_mask(self, frame_header: Any, frame_size: tuple[int, int], out_size: tuple[int, int]) -> Optional[Any]:
        """The camera_info to publish with a mask of ``out_size`` (H, W) made from a frame of ``frame_size``
        with header ``frame_header`` (it goes out with that header), or None (none matched)."""
        stamp = stamp_ns(frame_header)
        info = self.cache.match(stamp)
        if info is None:
            with self._lock:  # it may still come: published by on_message then
                self._pending[stamp] = (frame_header, frame_size, out_size)
                while len(self._pending) > PENDING:
                    self._pending.popitem(last=False)
            self._unmatched += 1
            if self.received == 0:
                if self._unmatched >= UNMATCHED_FRAMES:
                    self._once(
                        "none",
                        f"no camera_info on {self.topic} for the frames of {self.image_topic}: "
                        "masks are published without semantic/camera_info [reported once]",
                    )
                return None
            offset = self.cache.offset_ns(stamp)
            if offset is not None and len(self._offsets) < 5:
                self._offsets.append(offset / 1e6)
            if self._unmatched >= UNMATCHED_FRAMES and self.published == 0:
                seen = ", ".join(f"{o:+.1f}" for o in self._offsets)
                self._once(
                    "stamps",
                    f"the camera_info stamps on {self.topic} never match the frames of "
                    f"{self.image_topic} (nearest camera_info minus frame stamp, ms: {seen}); "
                    "publish them with the image's stamp, or set camera_info_slop to the "
                    "largest offset to accept [reported once]",
                )
            return None
        return self._ready(info, frame_header, frame_size, out_size)

    def _ready(self, info: Any, frame_header: Any, frame_size: tuple[int, int], out_size: tuple[int, int]) -> Any:
        """``info`` scaled to the mask and sent with the mask's header."""
        H, W = frame_size
        if (info.height, info.width) != (H, W):
            self._once(
                "size",
                f"camera_info on {self.topic} is {info.width}x{info.height} but the frames of "
                f"{self.image_topic} are {W}x{H}; it is published as it came (scaled to the mask "
                "when output_resolution is network) [reported once]",
            )
        self.published += 1
        out = scaled_camera_info(info, out_size[1], out_size[0]) if out_size != (H, W) else copy.deepcopy(info)
        out.header = frame_header
        return out


__all__ = [
    "CameraInfoMatcher",
    "KEEP",
    "MessageFiltersCache",
    "StampCache",
    "make_cache",
    "scaled_camera_info",
    "scaled_intrinsics",
    "stamp_ns",
]
