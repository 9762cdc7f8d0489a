"""Health of one camera's pipeline, as diagnostic levels: what /diagnostics says besides the counters.

Plain numbers in, a level and a message out (no ROS types), so the rules are tested without a node:

* ERROR: the model keeps failing (:data:`FAILING_FRAMES` frames in a row raised), no frame arrived for
  ``input_timeout`` s while active, or inference stalled (one frame in the model for more than
  ``input_timeout`` s).
* WARN: frames were rejected or failed in the period, more than ``max_drop_rate`` of the frames received were
  dropped, the pipeline latency p95 exceeds ``latency_budget_ms``, the input rate is more than 10 % below
  ``expected_rate_hz`` (when set), or frames arrive and none is processed.
* OK otherwise, and while the node is not active (lifecycle: inactive).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
#: frames in a row that raised in the model before the level is ERROR
FAILING_FRAMES = 3
#: fraction of expected_rate_hz below which the input rate warns (a 30 Hz camera measures 29.x Hz)
RATE_TOLERANCE = 0.9
#: frames a period needs before its drop rate means anything
MIN_FRAMES_FOR_DROP_RATE = 5


@dataclass(frozen=True)
class Limits:
    input_timeout_s: float = 5.0
    latency_budget_ms: float = 500.0
    expected_rate_hz: float = 0.0
    max_drop_rate: float = 0.5


@dataclass(frozen=True)
class Period:
    """What one camera's pipeline did in the last reporting period."""

    seconds: float
    received: int
    processed: int
    dropped: int
    rejected: int
    failed: int
    skipped: int
    latency_ms: Sequence[float] = ()
    since_input_s: Optional[float] = None  # None: no frame since activation
    active_for_s: float = 0.0  # how long the input has been active
    in_model_s: float = 0.0  # how long the frame now in the model has been there (0 = none)
    failing_in_a_row: int = 0
    last_failure: str = ""
    active: bool = True


def p95(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), 95)) if len(values) else float("nan")


def assess(period: Period, limits: Limits) -> tuple[int, str]:
    """``(level, message)``; the message lists every problem found, worst first."""
    if not period.active:
        return OK, "inactive (not processing)"
    errors: list[str] = []
    warnings: list[str] = []
    if period.failing_in_a_row >= FAILING_FRAMES:
        errors.append(f"model failing: the last {period.failing_in_a_row} frames raised ({period.last_failure})")
    timeout = limits.input_timeout_s
    if timeout > 0:
        silent = period.since_input_s if period.since_input_s is not None else period.active_for_s
        if silent > timeout:
            errors.append(f"no input for {silent:.1f} s (input_timeout {timeout:g} s)")
        if period.in_model_s > timeout:
            errors.append(f"inference stalled: one frame in the model for {period.in_model_s:.1f} s")
    if period.rejected:
        warnings.append(f"{period.rejected} frame(s) rejected")
    if period.failed and period.failing_in_a_row < FAILING_FRAMES:
        warnings.append(f"{period.failed} frame(s) failed in the model")
    if period.received >= MIN_FRAMES_FOR_DROP_RATE and period.dropped / period.received > limits.max_drop_rate:
        warnings.append(f"drop rate {period.dropped / period.received:.0%} over {limits.max_drop_rate:.0%}")
    latency = p95(period.latency_ms)
    if limits.latency_budget_ms > 0 and latency > limits.latency_budget_ms:
        warnings.append(f"latency p95 {latency:.0f} ms over the {limits.latency_budget_ms:g} ms budget")
    rate = period.received / period.seconds if period.seconds > 0 else 0.0
    if limits.expected_rate_hz > 0 and rate < RATE_TOLERANCE * limits.expected_rate_hz:
        warnings.append(f"input rate {rate:.1f} Hz below the expected {limits.expected_rate_hz:g} Hz")
    if (
        period.received
        and not period.processed
        and not period.skipped
        and not period.rejected
        and not period.failed
        and not errors
    ):
        warnings.append("frames arrive but none is processed")
    if errors:
        return ERROR, "; ".join(errors + warnings)
    if warnings:
        return WARN, "; ".join(warnings)
    return OK, "ok"


__all__ = ["ERROR", "FAILING_FRAMES", "Limits", "OK", "Period", "WARN", "assess", "p95"]
