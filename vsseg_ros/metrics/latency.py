"""Per-frame latency statistics (milliseconds): percentiles p50 / p95 / p99, mean and max."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np

PERCENTILES = (50, 95, 99)


def latency_summary(values_ms: Iterable[Optional[float]]) -> dict[str, Any]:
    """``{"p50", "p95", "p99", "mean", "max", "count"}`` over the values given (None skipped).

    Percentiles interpolate linearly between samples (numpy's default). With no values every statistic is None
    and ``count`` is 0."""
    v = np.asarray([float(x) for x in values_ms if x is not None], np.float64)
    if v.size and not np.isfinite(v).all():
        raise ValueError("latencies must be finite numbers of milliseconds")
    if v.size and (v < 0).any():
        raise ValueError(f"latencies must be >= 0 ms, got {float(v.min())}")
    out: dict[str, Any] = {f"p{p}": (float(np.percentile(v, p)) if v.size else None) for p in PERCENTILES}
    out["mean"] = float(v.mean()) if v.size else None
    out["max"] = float(v.max()) if v.size else None
    out["count"] = int(v.size)
    return out


__all__ = ["PERCENTILES", "latency_summary"]
