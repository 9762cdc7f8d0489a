"""What the segmentation node reports about itself: every ``stats_period`` each camera's counter line in the log and
its /diagnostics status (health, rates, latency, the model and its frame window).

:class:`DiagnosticsMixin` is one part of :class:`vsseg_ros.ros.node.SegmentationNode`: it uses the node's
parameters, clock, logger, cameras and ``_segmenter``; the health rules themselves are in :mod:`vsseg_ros.ros.health`.
"""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from vsseg_ros.core.segmenter import Segmenter
from vsseg_ros.core.temporal_segmenter import TemporalSegmenter
from vsseg_ros.ros import health
from vsseg_ros.ros.camera import CameraInput, Counters


class DiagnosticsMixin:
    """The statistics and health side of the segmentation node."""

    def _limits(self) -> health.Limits:
        get = lambda name: float(self.get_parameter(name).value)  # noqa: E731
        return health.Limits(
            input_timeout_s=get("input_timeout"),
            latency_budget_ms=get("latency_budget_ms"),
            expected_rate_hz=get("expected_rate_hz"),
            max_drop_rate=get("max_drop_rate"),
        )

    def _tick(self) -> None:
        """Every 0.5 s while configured: the silent-publisher check, and every stats_period the report."""
        for cam in self.cameras:
            self._check_silent(cam)
        period = self.get_parameter("stats_period").value
        now = time.monotonic()
        if period <= 0 or now - self._last_stats < period:
            return
        self._last_stats = now
        statuses = [self._report(cam, *cam.period(self._active)) for cam in self.cameras]
        diag = DiagnosticArray(status=statuses)
        diag.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(diag)

    def _report(
        self, cam: CameraInput, p: health.Period, c: Counters, samples: dict[str, np.ndarray]
    ) -> DiagnosticStatus:
        """Log ``cam``'s counter line and return its /diagnostics status."""
        level, message = health.assess(p, self._limits())
        infer, latency = samples["infer_ms"], samples["latency_ms"]
        med = lambda a: float(np.median(a)) if a.size else 0.0  # noqa: E731
        rate_in = p.received / p.seconds if p.seconds > 0 else 0.0
        rate_out = p.processed / p.seconds if p.seconds > 0 else 0.0
        where = f"{cam.topic}: " if len(self.cameras) > 1 else ""
        self.get_logger().info(
            f"{where}frames received {c.received}, processed {c.processed}, dropped {c.dropped}, "
            f"rejected {c.rejected}, skipped {c.skipped} (no subscriber), failed {c.failed} | "
            f"last {p.seconds:.0f} s: in {rate_in:.1f} Hz, out {rate_out:.1f} Hz, inference p50 {med(infer):.1f} ms, "
            f"latency p50 {med(latency):.1f} ms | "
            f"health {('OK', 'WARN', 'ERROR')[level]}: {message}"
        )
        seg = self._segmenter
        values = {
            **c.as_dict(),
            "state": "active" if self._active else "inactive",
            "input_topic": cam.topic,
            "camera_info_received": str(cam.info.received),
            "camera_info_published": str(cam.info.published),
            "input_rate_hz": f"{rate_in:.2f}",
            "output_rate_hz": f"{rate_out:.2f}",
            "drop_rate": f"{p.dropped / p.received:.3f}" if p.received else "0.000",
            "processing_time_ms_p50": f"{med(infer):.2f}",
            "pipeline_latency_ms_p50": f"{med(latency):.2f}",
            "pipeline_latency_ms_p95": f"{health.p95(latency):.2f}" if latency.size else "0.00",
            "seconds_since_input": "never" if p.since_input_s is None else f"{p.since_input_s:.1f}",
            "failing_in_a_row": str(p.failing_in_a_row),
            "model_id": seg.model_id,
            "device": str(seg.device),
            **temporal_values(seg, samples["fused"] if samples["fused"].size else np.zeros(1)),
        }
        return DiagnosticStatus(
            level=bytes([level]),
            name=f"{self.get_fully_qualified_name()}: {cam.topic}",
            message=message,
            hardware_id=cam.frame_id or cam.topic,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )


def temporal_summary(segmenter: Segmenter) -> str:
    """The log's words on a temporal model's window ("" for a per-frame model)."""
    if not isinstance(segmenter, TemporalSegmenter):
        return ""
    return (
        f", temporal: {segmenter.mode} window of {segmenter.window_size} frames, "
        f"{segmenter.delay_frames} frame(s) of added delay, max frame gap {segmenter.max_frame_gap_s:g} s"
    )


def temporal_values(segmenter: Segmenter, fused: np.ndarray) -> dict[str, str]:
    """/diagnostics keys on the frame window: delay, window size and how full it was in the last period."""
    window = segmenter.window_size if isinstance(segmenter, TemporalSegmenter) else 1
    values = {
        "delay_frames": str(segmenter.delay_frames),
        "window_frames": str(window),
        "frames_fused_mean": f"{fused.mean():.2f}",
        "window_fill": f"{fused.mean() / window:.2f}",
    }
    if isinstance(segmenter, TemporalSegmenter):
        values["temporal_mode"] = segmenter.mode
        values["window_resets"] = ", ".join(f"{k}={v}" for k, v in segmenter.resets.items())
    return values
