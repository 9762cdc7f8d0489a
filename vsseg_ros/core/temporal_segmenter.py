"""A streaming :class:`Segmenter` for temporal models (:class:`TemporalSegNet`: STF, MAR, Flow2Seg).

Why one module over 400 lines: the window rules below and the per-stage push path that applies them are one
state machine per camera; split in two, following one push would need both files open.

Each frame's per-frame features (backbone + head, ``TemporalSegNet.frame_features``) are computed once, when
the frame arrives, and kept in a ring buffer of at most T frames per camera; producing an output costs the
fusion over the buffered features, not T backbone passes. For a model with a Flow2Seg path the buffer also
keeps each frame's grey image, so the flow into a frame (DIS, from the previous frame) is computed once too.

Modes (``mode``; None = the model's own):

- ``causal``: the window is frames t-T+1 .. t and ``push(t)`` labels frame t (``delay_frames`` 0).
- ``centered``: the window is t-T+2 .. t+1 (t-1, t, t+1 for T = 3); ``push(t+1)`` returns frame t's result,
  which carries frame t's :class:`Frame` (and so its header); ``delay_frames`` 1. ``flush()`` labels each
  camera's held-back newest frame with the frames it has (t-T+2 .. t) and ends the streams.

A camera's window restarts (``resets[reason]`` counts it) when the frame size changes (``"resolution"``),
the stamp goes backwards (``"stamp_backwards"``: a looping bag) or the gap to the camera's previous frame is
larger than ``max_frame_gap_s`` (``"gap"``). Every ``camera_id`` has its own window: frames of one camera
never fuse with another's. A camera silent for more than ``max_frame_gap_s`` while another streams has its
window ended (``"camera_change"``); at most ``max_cameras`` windows are kept, the least recently seen
camera's is dropped for a new one (``"camera_evicted"``). Until a window fills, the model runs on the frames
it has.

``push`` returns at most one result. In centered mode, when a window ends, its held-back frame is labelled
(as ``flush`` would) and returned by the push that ended it: a restart holds the new frame back instead, so
that push has no result of its own; an evicted or silent camera's frame is returned by a push that starts a
new window (one that has no result of its own), or by ``flush``.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.frame_input import padded_size
from vsseg_ros.core.frame_pipeline import MODEL_INPUT_SIZE, NetworkSegmenter, torch_threads
from vsseg_ros.core.output_maps import extent_read
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult

if TYPE_CHECKING:
    from vsseg_ros.core.models.temporal import TemporalSegNet

CAUSAL, CENTERED = "causal", "centered"
MODES = (CAUSAL, CENTERED)
#: the stages reported in ``timings_ms`` (every result has all of them; 0 where a stage did not run)
STAGES = ("preprocess", "backbone", "flow", "fusion", "mar", "postprocess")
RESET_REASONS = ("resolution", "stamp_backwards", "gap", "camera_change", "camera_evicted")
DEFAULT_MAX_FRAME_GAP_S = 0.5
DEFAULT_MAX_CAMERAS = 8


def check_mode(mode: Optional[str]) -> Optional[str]:
    """None (or "") = the model's own mode; otherwise ``causal`` or ``centered``. ValueError otherwise."""
    if mode is None or mode == "":
        return None
    if mode not in MODES:
        raise ValueError(f"temporal mode {mode!r} is not known; use causal, centered, or empty for the model's own")
    return mode


def check_max_frame_gap(seconds: Any) -> float:
    """A finite number of seconds > 0; ValueError otherwise."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"max_frame_gap must be a number of seconds > 0, got {seconds!r}") from None
    if isinstance(seconds, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"max_frame_gap must be a finite number of seconds > 0, got {seconds!r}")
    return value


def fusion_calls(frames: int) -> list[tuple[int, int]]:
    """Every ``(window frames, labelled index)`` a :class:`TemporalSegmenter` of a ``frames``-frame model asks
    ``fuse`` for, in either mode: causal ``(n, n-1)`` for n = 1..T (centered's held-back frames are labelled
    the same way), centered ``(n, n-2)`` for n = 2..T. An exported temporal model has one fusion graph each."""
    causal = [(n, n - 1) for n in range(1, frames + 1)]
    centered = [(n, n - 2) for n in range(2, frames + 1)]
    return sorted(set(causal + centered))


@dataclass
class TemporalResult(SegmentationResult):
    """A :class:`SegmentationResult` that also says which frames were fused: ``window_stamps`` (stamps of the
    window, oldest first) and ``target`` (the labelled frame's index in it). ``logits`` (1, C, h, w), the
    fused low-resolution logits, only when the segmenter was built with ``return_logits=True`` (debugging)."""

    window_stamps: tuple[int, ...] = ()
    target: int = 0
    logits: Optional[Tensor] = None


@dataclass
class _Entry:
    """One buffered frame: what later outputs need of it."""

    frame: Frame
    size: tuple[int, int, int, int]  # H, W (frame) and h, w (network input region)
    feature: Tensor  # (1, D, hf, wf)
    gray: Optional[np.ndarray] = None  # network-size grey image (flow models only)
    flow: Optional[Tensor] = None  # flow from the previous frame of the window to this one (1, 2, hp, wp)


@dataclass
class _Window:
    """One camera's ring buffer of at most T frames."""

    entries: deque[_Entry] = field(default_factory=deque)
    last_stamp_ns: Optional[int] = None

    def restart_reason(self, frame: Frame, H: int, W: int, max_gap_ns: float) -> Optional[str]:
        if not self.entries:
            return None
        if self.entries[-1].size[:2] != (H, W):
            return "resolution"
        assert self.last_stamp_ns is not None
        if frame.stamp_ns < self.last_stamp_ns:
            return "stamp_backwards"
        if frame.stamp_ns - self.last_stamp_ns > max_gap_ns:
            return "gap"
        return None


@dataclass
class _Encoded:
    """A frame's per-frame features (1, D, hf, wf), its network input region and the time its share of the
    preprocessing and backbone pass took."""

    feature: Tensor
    h: int
    w: int
    prepare_ms: float
    backbone_ms: float


#: a labelled frame: its buffer entry and the result fields (maps, window) computed for it
_Labelled = tuple[_Entry, dict[str, Any]]


class TemporalSegmenter(NetworkSegmenter):
    """Streams frames through a :class:`TemporalSegNet` (see the module doc for modes and window rules).

    ``input_size``, ``mean``, ``std``, ``precision``, ``channels_last`` and ``fold_bn`` as for
    :class:`PerFrameSegmenter`. ``mode``: causal, centered or None (the model's). ``max_frame_gap_s``: a larger
    gap between two frames of a camera restarts its window. ``max_cameras``: windows kept at most.
    ``return_logits``: results carry the fused low-resolution logits (for tests and debugging).

    Counters: ``backbone_calls`` (per-frame feature passes), ``resets`` (reason -> count).
    """

    net: TemporalSegNet  # or an exported network with the same calls (vsseg_ros.runtimes.exported_net)

    def __init__(
        self,
        model: "TemporalSegNet",
        class_map: ClassMap,
        model_id: str,
        device: Union[str, torch.device] = "cpu",
        precision: Union[str, torch.dtype] = "fp32",
        input_size: Any = MODEL_INPUT_SIZE,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        mode: Optional[str] = None,
        max_frame_gap_s: float = DEFAULT_MAX_FRAME_GAP_S,
        max_cameras: int = DEFAULT_MAX_CAMERAS,
        channels_last: Optional[bool] = None,
        fold_bn: bool = True,
        return_logits: bool = False,
    ) -> None:
        mode = check_mode(mode) or model.mode
        if mode not in MODES:
            raise ValueError(f"the model's temporal mode {mode!r} is not known; use causal or centered")
        self.max_frame_gap_s = check_max_frame_gap(max_frame_gap_s)
        self._max_gap_ns = self.max_frame_gap_s * 1e9
        if isinstance(max_cameras, bool) or not isinstance(max_cameras, int) or max_cameras < 1:
            raise ValueError(f"max_cameras must be an integer >= 1, got {max_cameras!r}")
        super().__init__(
            model,
            model.config,
            model.num_classes,
            model.stride,
            class_map,
            model_id,
            device=device,
            precision=precision,
            input_size=input_size,
            mean=mean,
            std=std,
            channels_last=channels_last,
            fold_bn=fold_bn,
        )
        self.mode = mode
        self.delay_frames = 1 if mode == CENTERED else 0
        self.window_size = int(model.frames)
        self.max_cameras = max_cameras
        self.return_logits = bool(return_logits)
        self.has_boundary = bool(model.config.boundary_head)
        self.backbone_calls = 0
        self.resets: dict[str, int] = dict.fromkeys(RESET_REASONS, 0)
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._flow = self._make_flow(model)
        self._mar_ms = 0.0
        mar = getattr(self.net, "mar", None)  # an exported network has none
        if mar is not None:  # MAR runs inside fuse(): time it with hooks
            mar.register_forward_pre_hook(self._mar_start)
            mar.register_forward_hook(self._mar_stop)

    @staticmethod
    def _make_flow(model: "TemporalSegNet") -> Any:
        options = model.temporal.flow2seg  # the DIS settings the flow path was trained with
        if getattr(model, "flow2seg", None) is None or options is None:
            return None
        from vsseg_ros.core.flow import DISFlow

        return DISFlow(options.preset, options.scale)

    def _mar_start(self, *_: Any) -> None:
        self._sync()
        self._mar_t0 = time.perf_counter()

    def _mar_stop(self, *_: Any) -> None:
        self._sync()
        self._mar_ms += (time.perf_counter() - self._mar_t0) * 1e3

    # -- Segmenter ------------------------------------------------------------------------------------

    def _push(
        self, frame: Frame, H: int, W: int, request: OutputRequest, encoded: Optional[_Encoded] = None
    ) -> Optional[TemporalResult]:
        """``encoded``: the frame's features from a batched backbone pass (None: computed here)."""
        timings = dict.fromkeys(STAGES, 0.0)
        camera = frame.camera_id
        window = self._windows.get(camera)
        labelled: Optional[_Labelled] = None
        if window is None:
            window = self._windows[camera] = _Window()
            if len(self._windows) > self.max_cameras:
                _, evicted = self._windows.popitem(last=False)
                self.resets["camera_evicted"] += 1
                labelled = self._label_held(evicted, request, timings)
        else:
            self._windows.move_to_end(camera)
            reason = window.restart_reason(frame, H, W, self._max_gap_ns)
            if reason is not None:
                self.resets[reason] += 1
                labelled = self._label_held(window, request, timings)  # centered: the old window's last frame
                window.entries.clear()

        with torch.inference_mode():
            entry = self._encode(frame, H, W, window, timings, encoded)
        window.entries.append(entry)
        while len(window.entries) > self.window_size:
            window.entries.popleft()
        window.last_stamp_ns = frame.stamp_ns

        if labelled is None:
            n = len(window.entries)
            if self.mode == CAUSAL:
                labelled = self._label(list(window.entries), n - 1, request, timings)
            elif n >= 2:
                labelled = self._label(list(window.entries), n - 2, request, timings)
        stale = self._end_stale_windows(frame, request, timings, may_label=labelled is None)
        labelled = labelled or stale
        return None if labelled is None else self._result(*labelled, timings)

    def _push_batch(
        self, frames: list[Frame], sizes: list[tuple[int, int]], request: OutputRequest
    ) -> list[Optional[SegmentationResult]]:
        """The per-frame backbone pass as one batch per network input size, then each frame's window step in
        order (fusion and flow are per window); the results equal one-at-a-time pushes."""
        encoded: list[Optional[_Encoded]] = [None] * len(frames)
        with torch.inference_mode():
            for batch in self._prepare_batch(frames, sizes):
                t1 = time.perf_counter()
                with self._autocast():
                    features = self.net.frame_features(batch.x)
                self._sync()
                n = len(batch.members)
                self.backbone_calls += n
                backbone_ms = (time.perf_counter() - t1) * 1e3
                for k, i in enumerate(batch.members):
                    # a copy: a window keeps a frame's features for T frames, the batch's must not stay alive
                    encoded[i] = _Encoded(
                        features[k : k + 1].clone(), batch.h, batch.w, batch.prepare_ms / n, backbone_ms / n
                    )
        return [self._push(frame, H, W, request, encoded[i]) for i, (frame, (H, W)) in enumerate(zip(frames, sizes))]

    def _end_stale_windows(
        self, frame: Frame, request: OutputRequest, timings: dict[str, float], may_label: bool
    ) -> Optional[_Labelled]:
        """End the windows of other cameras silent for more than the gap (the stream moved to this camera):
        their next frame would restart them anyway. A window holding a frame back (centered) ends only when
        this push has no result of its own to return, so its frame can be returned instead (else later)."""
        labelled: Optional[_Labelled] = None
        for camera, window in list(self._windows.items()):
            if camera == frame.camera_id or window.last_stamp_ns is None:
                continue
            if frame.stamp_ns - window.last_stamp_ns <= self._max_gap_ns:
                continue
            held = self.mode == CENTERED and bool(window.entries)
            if held:
                if not may_label or labelled is not None:
                    continue
                labelled = self._label_held(window, request, timings)
            del self._windows[camera]
            self.resets["camera_change"] += 1
        return labelled

    def flush(self, request: OutputRequest = OutputRequest()) -> list[SegmentationResult]:
        """Label every camera's held-back frame (centered mode) with the frames it has and end all windows
        (the next frame starts a new one). Causal mode holds nothing back: returns []."""
        with self._lock, torch_threads(self.host_threads):
            results: list[SegmentationResult] = []
            for window in self._windows.values():
                timings = dict.fromkeys(STAGES, 0.0)
                labelled = self._label_held(window, request, timings)
                if labelled is not None:
                    results.append(self._result(*labelled, timings))
            self._windows.clear()
            return results

    def reset(self) -> None:
        """Forget every window (held-back frames are dropped unlabelled: call flush() first to keep them)."""
        with self._lock:
            self._windows.clear()

    # -- steps ----------------------------------------------------------------------------------------

    def _encode(
        self,
        frame: Frame,
        H: int,
        W: int,
        window: _Window,
        timings: dict[str, float],
        encoded: Optional[_Encoded] = None,
    ) -> _Entry:
        """The once-per-frame work: preprocess, per-frame features (unless a batched pass computed them) and
        (flow models) the flow into it."""
        if encoded is None:
            t0 = time.perf_counter()
            x, h, w = self.prepare(frame.image, H, W)
            self._sync()
            t1 = time.perf_counter()
            with self._autocast():
                feature = self.net.frame_features(x)
            self.backbone_calls += 1
            self._sync()
            encoded = _Encoded(feature, h, w, (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3)
        feature, h, w = encoded.feature, encoded.h, encoded.w
        t2 = time.perf_counter()
        timings["preprocess"] += encoded.prepare_ms
        timings["backbone"] += encoded.backbone_ms
        entry = _Entry(frame=frame, size=(H, W, h, w), feature=feature)
        if self._flow is not None:
            entry.gray, entry.flow = self._flow_into(frame.image, h, w, padded_size(h, w), window)
            self._sync()
            timings["flow"] += (time.perf_counter() - t2) * 1e3
        return entry

    def _flow_into(
        self, image: np.ndarray, h: int, w: int, padded: Sequence[int], window: _Window
    ) -> tuple[np.ndarray, Optional[Tensor]]:
        """The frame's grey image at the network size, and the DIS flow from the window's previous frame to
        it as the flow path's input (zero in the padding), or None for a window's first frame."""
        import cv2

        from vsseg_ros.core.flow import flow_to_tensor, to_gray

        gray = to_gray(image)
        if gray.shape != (h, w):
            gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_LINEAR)
        if not window.entries:
            return gray, None
        flow = flow_to_tensor(self._flow(window.entries[-1].gray, gray))  # (1, 2, h, w), network pixels
        hp, wp = int(padded[0]), int(padded[1])
        flow = torch.nn.functional.pad(flow, (0, wp - w, 0, hp - h))
        return gray, flow.to(self._device)

    def _label_held(self, window: _Window, request: OutputRequest, timings: dict[str, float]) -> Optional[_Labelled]:
        """Centered mode: the window's newest (held-back) frame fused with the T-2 frames before it."""
        if self.mode != CENTERED or not window.entries:
            return None
        entries = list(window.entries)[-max(1, self.window_size - 1) :]
        return self._label(entries, len(entries) - 1, request, timings)

    def _label(
        self, entries: list[_Entry], target: int, request: OutputRequest, timings: dict[str, float]
    ) -> _Labelled:
        """Fuse ``entries`` with ``entries[target]`` as the labelled frame; its maps at the frame's size."""
        entry = entries[target]
        boundary = bool(request.boundary and self.has_boundary)
        self._mar_ms = 0.0
        H, W, h, w = entry.size
        rows = self.logit_rows(h, entry.feature)
        t0 = time.perf_counter()
        with torch.inference_mode():
            with self._autocast():
                out = self.net.fuse([e.feature for e in entries], target, flow=entry.flow, boundary=boundary, rows=rows)
            logits = out["logits"]
            assert logits is not None  # fuse() always returns logits (only boundary may be None)
            self._sync()
            t1 = time.perf_counter()
            labels, confidence, edge = self.output_maps(
                logits, out.get("boundary"), *self.output_size(H, W, h, w, request), h, w, request
            )
            self._sync()
        t2 = time.perf_counter()
        timings["fusion"] += (t1 - t0) * 1e3 - self._mar_ms
        timings["mar"] += self._mar_ms
        timings["postprocess"] += (t2 - t1) * 1e3
        info = {
            "labels": labels,
            "confidence": confidence,
            "boundary": edge,
            "frames_fused": len(entries),
            "window_stamps": tuple(e.frame.stamp_ns for e in entries),
            "target": target,
            "logits": logits.float().clone() if self.return_logits else None,
        }
        return entry, info

    def logit_rows(self, h: int, feature: Tensor) -> Optional[int]:
        """The ``rows`` to ask :meth:`TemporalSegNet.fuse` for: the rows of ``feature``'s grid that the output
        maps of an ``h``-row image region read; None (all) when results carry the logits (tests compare whole
        maps)."""
        return None if self.return_logits else extent_read(h, self.net.stride, feature.shape[-2])

    @staticmethod
    def _result(entry: _Entry, info: dict[str, Any], timings: dict[str, float]) -> TemporalResult:
        return TemporalResult(frame=entry.frame, timings_ms=dict(timings), **info)

    # -- introspection ----------------------------------------------------------------------------------

    @property
    def cameras(self) -> list[str]:
        """camera_ids with a window, least recently seen first."""
        with self._lock:
            return list(self._windows)

    def window_fill(self, camera_id: str = "") -> int:
        """Frames buffered for ``camera_id`` (0 when it has no window)."""
        with self._lock:
            window = self._windows.get(camera_id)
            return len(window.entries) if window is not None else 0

    def describe(self) -> str:
        return (
            f"{super().describe()}, {self.mode} window of {self.window_size} frames "
            f"(delay {self.delay_frames}), max frame gap {self.max_frame_gap_s:g} s"
        )


__all__ = [
    "TemporalSegmenter",
    "TemporalResult",
    "fusion_calls",
    "CAUSAL",
    "CENTERED",
    "MODES",
    "STAGES",
    "RESET_REASONS",
    "check_mode",
    "check_max_frame_gap",
]
