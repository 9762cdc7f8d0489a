"""A stream's scores as a value that adds: the totals behind every metric of :class:`StreamScorer`, so that the
scores of many bags (or many chunks of one) combine exactly into the scores of all of them.

What adds: the confusion matrix (mIoU, per-class IoU, pixel accuracy), the boundary match counts (boundary F),
the flow-warp pairs' confusion matrix (TC), the mVC windows (their count and the exact sum of their values, see
:class:`ExactSum`), frame counts, and a latency histogram (:class:`LatencyHistogram`; its percentiles are within
half a bin, 0.5 %, of the exact ones). Windows and pairs are counted inside each stream, never across two.

:meth:`StreamTotals.result` is the one place a scorer's numbers are computed: :meth:`StreamScorer.result` calls it
on its own totals, so one bag scored alone and a fleet merged from its bags go through the same arithmetic, and
the merged mIoU equals the one-process mIoU to the last digit. The two adding values are in
:mod:`vsseg_ros.metrics.sums`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import numpy as np

from vsseg_ros.metrics.boundary import BoundaryScore
from vsseg_ros.metrics.confusion import ConfusionMatrix
from vsseg_ros.metrics.latency import latency_summary
from vsseg_ros.metrics.sums import ExactSum, LatencyHistogram

if TYPE_CHECKING:
    from vsseg_ros.metrics.scorer import StreamScorer


@dataclass
class WindowTotals:
    """mVC_k's windows: how many were scored, the exact sum of their values, how many had nothing to score."""

    windows: int = 0
    total: ExactSum = field(default_factory=ExactSum)
    empty: int = 0

    def merge(self, other: "WindowTotals") -> None:
        self.windows += other.windows
        self.total.merge(other.total)
        self.empty += other.empty

    @property
    def mean(self) -> Optional[float]:
        return self.total.value / self.windows if self.windows else None


def _matrix(c: int) -> np.ndarray:
    return np.zeros((c, c), np.int64)


@dataclass
class StreamTotals:
    """Everything a stream's scores are computed from; ``a.merge(b)`` gives the totals of both streams."""

    class_names: list[str]
    ignore_id: int = 255
    boundary_tolerance_px: int = 2
    # None: zeros of the class count, made by __post_init__ (so the fields are never None after it)
    confusion: np.ndarray = field(default=None)  # type: ignore[arg-type]
    invalid_pred: np.ndarray = field(default=None)  # type: ignore[arg-type]
    boundary: dict[str, int] = field(
        default_factory=lambda: dict(pred_total=0, pred_matched=0, gt_total=0, gt_matched=0, frames=0)
    )
    mvc: dict[int, WindowTotals] = field(default_factory=dict)
    #: None: flow consistency was not computed
    tc_confusion: Optional[np.ndarray] = None
    tc_invalid: Optional[np.ndarray] = None
    tc_pairs: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    frames: int = 0
    labelled_frames: int = 0
    empty_gt_frames: int = 0

    def __post_init__(self) -> None:
        c = len(self.class_names)
        if not c:
            raise ValueError("StreamTotals needs at least one class name")
        if self.confusion is None:
            self.confusion = _matrix(c)
        if self.invalid_pred is None:
            self.invalid_pred = np.zeros(c, np.int64)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def flow_consistency(self) -> bool:
        return self.tc_confusion is not None

    def _tc(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """``(tc_confusion, tc_invalid)``, or None without flow consistency (the two are set together)."""
        if self.tc_confusion is None or self.tc_invalid is None:
            return None
        return self.tc_confusion, self.tc_invalid

    @classmethod
    def empty(
        cls,
        class_names: Sequence[str],
        ignore_id: int = 255,
        boundary_tolerance_px: int = 2,
        mvc_windows: Sequence[int] = (8, 16),
        flow_consistency: bool = True,
    ) -> "StreamTotals":
        c = len(class_names)
        return cls(
            list(class_names),
            int(ignore_id),
            int(boundary_tolerance_px),
            mvc={int(k): WindowTotals() for k in mvc_windows},
            tc_confusion=_matrix(c) if flow_consistency else None,
            tc_invalid=np.zeros(c, np.int64) if flow_consistency else None,
        )

    @classmethod
    def of(cls, scorer: "StreamScorer") -> "StreamTotals":
        """The totals of what ``scorer`` has been fed so far (a copy: the scorer goes on by itself)."""
        b = scorer.boundary
        v = scorer.video
        mvc = {k: WindowTotals(len(v.values[k]), ExactSum(v.values[k]), v.empty_windows[k]) for k in v.windows}
        flow = scorer.flow
        return cls(
            list(scorer.class_names),
            scorer.ignore_id,
            b.tolerance_px,
            confusion=scorer.confusion.matrix.copy(),
            invalid_pred=scorer.confusion.invalid_pred.copy(),
            boundary=dict(
                pred_total=b.pred_total,
                pred_matched=b.pred_matched,
                gt_total=b.gt_total,
                gt_matched=b.gt_matched,
                frames=b.frames,
            ),
            mvc=mvc,
            tc_confusion=None if flow is None else flow.confusion.matrix.copy(),
            tc_invalid=None if flow is None else flow.confusion.invalid_pred.copy(),
            tc_pairs=0 if flow is None else flow.pairs,
            latency=LatencyHistogram.of(scorer.latencies),
            frames=scorer.frames,
            labelled_frames=scorer.labelled_frames,
            empty_gt_frames=scorer.empty_gt_frames,
        )

    def _check_compatible(self, other: "StreamTotals") -> None:
        differs = [
            what
            for what, a, b in (
                ("class names", [n.lower() for n in self.class_names], [n.lower() for n in other.class_names]),
                ("ignore id", self.ignore_id, other.ignore_id),
                ("boundary tolerance", self.boundary_tolerance_px, other.boundary_tolerance_px),
                ("mVC windows", sorted(self.mvc), sorted(other.mvc)),
                ("flow consistency (TC on/off)", self.flow_consistency, other.flow_consistency),
            )
            if a != b
        ]
        if differs:
            raise ValueError(f"scores of different settings cannot be merged: they differ in {', '.join(differs)}")

    def merge(self, other: "StreamTotals") -> "StreamTotals":
        """Add ``other``'s totals into these (in place); returns self."""
        self._check_compatible(other)
        self.confusion += other.confusion
        self.invalid_pred += other.invalid_pred
        for k in self.boundary:
            self.boundary[k] += other.boundary[k]
        for size, w in other.mvc.items():
            self.mvc[size].merge(w)
        mine, theirs = self._tc(), other._tc()
        if mine is not None and theirs is not None:  # both or neither: checked above
            tc_confusion, tc_invalid = mine  # the arrays themselves: added in place
            tc_confusion += theirs[0]
            tc_invalid += theirs[1]
        self.tc_pairs += other.tc_pairs
        self.latency.merge(other.latency)
        self.frames += other.frames
        self.labelled_frames += other.labelled_frames
        self.empty_gt_frames += other.empty_gt_frames
        return self

    @classmethod
    def merged(cls, parts: Iterable["StreamTotals"]) -> "StreamTotals":
        """The totals of all ``parts`` (at least one), as a new value."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge")
        out = cls.from_dict(parts[0].to_dict())
        for p in parts[1:]:
            out.merge(p)
        return out

    # ---- the numbers -----------------------------------------------------------------------------
    def _confusion(self, matrix: np.ndarray, invalid: np.ndarray, ignore: int) -> ConfusionMatrix:
        cm = ConfusionMatrix(self.num_classes, ignore_index=ignore)
        cm.matrix, cm.invalid_pred = matrix.copy(), invalid.copy()
        return cm

    def result(self, latencies: Optional[Sequence[float]] = None) -> dict[str, Any]:
        """Plain-Python numbers (JSON-ready): miou, per_class_iou, boundary_f, mvc8, mvc16, tc, latency_ms,
        frames, plus details (pixel accuracy, boundary precision/recall, window and pair counts, notes).
        ``latencies``: the raw values, when they are at hand (one stream), for exact percentiles; otherwise the
        histogram's."""
        notes: list[str] = []
        confusion = self._confusion(self.confusion, self.invalid_pred, self.ignore_id)
        scored = confusion.total
        miou = None if not scored else _num(confusion.miou())
        if self.labelled_frames == 0:
            notes.append("no frame had ground truth: mIoU, per-class IoU, boundary F and mVC are undefined")
        elif scored == 0:
            notes.append(
                f"all {self.labelled_frames} labelled frames are entirely ignore ({self.ignore_id}): mIoU is undefined"
            )
        if self.empty_gt_frames and scored:
            notes.append(f"{self.empty_gt_frames} labelled frame(s) were entirely ignore and add no pixels")
        bs = BoundaryScore(self.boundary_tolerance_px, ignore_id=self.ignore_id)
        bs.pred_total, bs.pred_matched = self.boundary["pred_total"], self.boundary["pred_matched"]
        bs.gt_total, bs.gt_matched, bs.frames = (
            self.boundary["gt_total"],
            self.boundary["gt_matched"],
            self.boundary["frames"],
        )
        boundary = bs.summary()
        if self.labelled_frames and boundary["f"] is None:
            notes.append(
                "boundary F undefined: "
                + (
                    "the ground truth has no class boundary"
                    if not boundary["gt_pixels"]
                    else "the predictions have no scored boundary pixel"
                )
            )
        mvc = {k: w.mean for k, w in sorted(self.mvc.items())}
        for k, value in mvc.items():
            if self.labelled_frames and value is None:
                notes.append(
                    f"mVC{k} undefined: no run of {k} consecutive labelled frames of one sequence "
                    "with a pixel whose label stays the same"
                )
        tc = pairs = None
        tc_totals = self._tc()
        if tc_totals is not None:
            pairs = self.tc_pairs
            if pairs:
                v = self._confusion(*tc_totals, 255).miou()
                tc = None if np.isnan(v) else float(v)
            if tc is None:
                notes.append("TC undefined: no two consecutive frames of one sequence")
        else:
            notes.append("TC not computed (flow consistency switched off)")
        latency = latency_summary(latencies) if latencies is not None else self.latency.summary()
        per_class = (
            {n: _num(v) for n, v in zip(self.class_names, confusion.iou())}
            if scored
            else {n: None for n in self.class_names}
        )
        out: dict[str, Any] = {
            "miou": miou,
            "per_class_iou": per_class,
            "pixel_accuracy": _num(confusion.pixel_accuracy()) if scored else None,
            "boundary_f": boundary["f"],
            "boundary": {k: boundary[k] for k in ("precision", "recall", "tolerance_px")},
        }
        out.update({f"mvc{k}": v for k, v in mvc.items()})
        out.update(
            {
                "mvc_windows": {str(k): w.windows for k, w in sorted(self.mvc.items())},
                "tc": tc,
                "tc_pairs": pairs,
                "latency_ms": latency,
                "frames": self.frames,
                "labelled_frames": self.labelled_frames,
                "scored_pixels": scored,
                "notes": notes,
            }
        )
        return out

    # ---- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        tc_totals = self._tc()
        return {
            "class_names": list(self.class_names),
            "ignore_id": self.ignore_id,
            "boundary_tolerance_px": self.boundary_tolerance_px,
            "confusion": self.confusion.tolist(),
            "invalid_pred": self.invalid_pred.tolist(),
            "boundary": dict(self.boundary),
            "mvc": {
                str(k): {"windows": w.windows, "sum": w.total.to_list(), "empty": w.empty}
                for k, w in sorted(self.mvc.items())
            },
            "tc": None
            if tc_totals is None
            else {"confusion": tc_totals[0].tolist(), "invalid_pred": tc_totals[1].tolist(), "pairs": self.tc_pairs},
            "latency": self.latency.to_dict(),
            "frames": self.frames,
            "labelled_frames": self.labelled_frames,
            "empty_gt_frames": self.empty_gt_frames,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StreamTotals":
        names = list(d["class_names"])
        c = len(names)

        def square(x: Any, what: str) -> np.ndarray:
            a = np.asarray(x, np.int64)
            if a.shape != (c, c) or (a < 0).any():
                raise ValueError(f"{what} must be a {c}x{c} matrix of counts >= 0, got shape {a.shape}")
            return a

        def row(x: Any, what: str) -> np.ndarray:
            a = np.asarray(x, np.int64)
            if a.shape != (c,) or (a < 0).any():
                raise ValueError(f"{what} must be {c} counts >= 0, got shape {a.shape}")
            return a

        tc = d.get("tc")
        return cls(
            names,
            int(d["ignore_id"]),
            int(d["boundary_tolerance_px"]),
            confusion=square(d["confusion"], "confusion"),
            invalid_pred=row(d["invalid_pred"], "invalid_pred"),
            boundary={
                k: int(d["boundary"][k]) for k in ("pred_total", "pred_matched", "gt_total", "gt_matched", "frames")
            },
            mvc={
                int(k): WindowTotals(int(w["windows"]), ExactSum.from_list(w["sum"]), int(w["empty"]))
                for k, w in d["mvc"].items()
            },
            tc_confusion=None if tc is None else square(tc["confusion"], "TC confusion"),
            tc_invalid=None if tc is None else row(tc["invalid_pred"], "TC invalid_pred"),
            tc_pairs=0 if tc is None else int(tc["pairs"]),
            latency=LatencyHistogram.from_dict(d["latency"]),
            frames=int(d["frames"]),
            labelled_frames=int(d["labelled_frames"]),
            empty_gt_frames=int(d["empty_gt_frames"]),
        )


def _num(v: float) -> Optional[float]:
    return None if np.isnan(v) else float(v)


__all__ = ["StreamTotals", "WindowTotals"]
