"""Two values that add exactly, so per-bag totals merge into the one-process numbers: :class:`ExactSum` (a float
sum independent of the order of its terms) and :class:`LatencyHistogram` (latencies in 1 % bins with exact
count, sum, min and max; percentiles within half a bin).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

from vsseg_ros.metrics.latency import PERCENTILES


class ExactSum:
    """A sum of floats kept exactly, as non-overlapping partials (Shewchuk's algorithm, the one behind
    :func:`math.fsum`): :attr:`value` is the exact sum rounded once, so it does not depend on the order in which
    values or other sums were added. That is what lets per-bag mVC sums merge into the one-process value."""

    def __init__(self, values: Iterable[float] = ()) -> None:
        self.partials: list[float] = []
        for v in values:
            self.add(v)

    def add(self, value: float) -> None:
        x = float(value)
        if not math.isfinite(x):
            raise ValueError(f"ExactSum adds finite numbers only, got {value!r}")
        kept: list[float] = []
        for y in self.partials:
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            lo = y - (hi - x)  # the rounding error of hi, exactly
            if lo:
                kept.append(lo)
            x = hi
        kept.append(x)
        self.partials = kept

    def merge(self, other: "ExactSum") -> None:
        for p in other.partials:
            self.add(p)

    @property
    def value(self) -> float:
        return math.fsum(self.partials)

    def to_list(self) -> list[float]:
        return list(self.partials)

    @classmethod
    def from_list(cls, partials: Sequence[float]) -> "ExactSum":
        return cls(partials)


class LatencyHistogram:
    """Latencies (ms) in logarithmic bins ``RATIO`` wide (1 %), with the exact count, sum, min and max.

    Histograms add; a percentile is read at its rank (linear interpolation between neighbouring samples, as
    numpy does) from the bins' geometric centres, clamped to [min, max]: within 0.5 % of the exact value. Values
    below ``FLOOR_MS`` share one bin."""

    RATIO = 1.01
    FLOOR_MS = 1e-3

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0
        self.total = ExactSum()
        self.min: Optional[float] = None
        self.max: Optional[float] = None

    def _bin(self, ms: float) -> int:
        return -1 if ms < self.FLOOR_MS else int(math.floor(math.log(ms / self.FLOOR_MS) / math.log(self.RATIO)))

    def _centre(self, b: int) -> float:
        return self.FLOOR_MS / 2 if b < 0 else self.FLOOR_MS * self.RATIO ** (b + 0.5)

    def add(self, ms: float) -> None:
        v = float(ms)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"latencies must be finite numbers of milliseconds >= 0, got {ms!r}")
        b = self._bin(v)
        self.bins[b] = self.bins.get(b, 0) + 1
        self.count += 1
        self.total.add(v)
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)

    def merge(self, other: "LatencyHistogram") -> None:
        for b, n in other.bins.items():
            self.bins[b] = self.bins.get(b, 0) + n
        self.count += other.count
        self.total.merge(other.total)
        for v in (other.min, other.max):
            if v is not None:
                self.min = v if self.min is None else min(self.min, v)
                self.max = v if self.max is None else max(self.max, v)

    def _value_at(self, rank: int, order: list[tuple[int, int]]) -> float:
        seen = 0
        for b, n in order:
            seen += n
            if rank < seen:
                return min(max(self._centre(b), self.min or 0.0), self.max or 0.0)
        return float(self.max or 0.0)

    def percentile(self, p: float) -> Optional[float]:
        if not self.count:
            return None
        order = sorted(self.bins.items())
        rank = p / 100.0 * (self.count - 1)
        lo, hi = int(math.floor(rank)), int(math.ceil(rank))
        a, b = self._value_at(lo, order), self._value_at(hi, order)
        return a + (rank - lo) * (b - a)

    def summary(self) -> dict[str, Any]:
        """The keys of :func:`~vsseg_ros.metrics.latency.latency_summary`, read from the histogram."""
        out: dict[str, Any] = {f"p{p}": self.percentile(p) for p in PERCENTILES}
        out["mean"] = self.total.value / self.count if self.count else None
        out["max"] = self.max
        out["count"] = self.count
        out["from_histogram"] = True
        return out

    def sample(self, n: int = 20000) -> list[float]:
        """``n`` evenly spaced quantiles: a stand-in for the values, for drawing the distribution."""
        if not self.count:
            return []
        n = min(int(n), self.count)
        return [v for i in range(n) if (v := self.percentile(100.0 * i / max(1, n - 1))) is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratio": self.RATIO,
            "floor_ms": self.FLOOR_MS,
            "bins": sorted([b, n] for b, n in self.bins.items()),
            "count": self.count,
            "sum": self.total.to_list(),
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LatencyHistogram":
        h = cls()
        if d.get("ratio") != cls.RATIO or d.get("floor_ms") != cls.FLOOR_MS:
            raise ValueError(
                f"latency histogram with bins {d.get('ratio')}/{d.get('floor_ms')} ms cannot merge with "
                f"{cls.RATIO}/{cls.FLOOR_MS} ms bins"
            )
        h.bins = {int(b): int(n) for b, n in d["bins"]}
        h.count = int(d["count"])
        h.total = ExactSum.from_list(d["sum"])
        h.min, h.max = d.get("min"), d.get("max")
        if sum(h.bins.values()) != h.count:
            raise ValueError("latency histogram: bin counts do not add up to its count")
        return h

    @classmethod
    def of(cls, values_ms: Iterable[float]) -> "LatencyHistogram":
        h = cls()
        for v in values_ms:
            h.add(v)
        return h
