"""Scoring one bag (or one chunk of one) of a fleet: the function both the sequential path and each Ray task run.

:func:`score_task` streams the bag's frames through the same :class:`~vsseg_ros.core.segmenter.Segmenter` and
:class:`~vsseg_ros.metrics.scorer.StreamScorer` as ``vsseg-ros eval --bag`` (:func:`evaluate_stream`), and returns
a JSON-ready record: the bag's own result, its mergeable totals (:class:`~vsseg_ros.metrics.mergeable.StreamTotals`)
and, for a bag that cannot be scored, its error. It never raises for a bad bag: the error is the record, so one
corrupt bag costs nothing else. The model is loaded once per process (:func:`segmenter_for`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from vsseg_ros.fleet.discover import BagTask

#: error kinds in a failed record: "bag" = the bag itself (same bag, same error: kept on a rerun), "error" =
#: anything else (a crash, a full disk: scored again on a rerun)
BAG_ERROR, OTHER_ERROR = "bag", "error"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ScoreSettings:
    """How every bag is scored (the eval options that apply per bag)."""

    model: str = ""  # checkpoint path ("" = the packaged default model)
    model_sha256: str = ""
    device: str = "cpu"
    backend: str = "torch"  # as eval's --backend (an exported model runs on its engine)
    precision: str = "fp32"
    input_size: Any = None
    temporal_mode: Optional[str] = None
    max_frame_gap: float = 0.5
    threads: Optional[int] = None
    warmup: int = 1
    boundary_tolerance: int = 2
    tc: bool = True
    dis_preset: str = "medium"
    image_topic: Optional[str] = None
    gt_topic: Optional[str] = None

    def identity(self) -> dict[str, Any]:
        """What the scores depend on (not where the model file lies, nor threads or warm-up)."""
        d = asdict(self)
        for k in ("model", "threads", "warmup"):
            d.pop(k)
        d["input_size"] = list(self.input_size) if isinstance(self.input_size, tuple) else self.input_size
        return d


def file_sha256(path: Path) -> str:
    """The content hash of a checkpoint file, or of an exported model directory's manifest (which records its
    graphs' hashes)."""
    from vsseg_ros.runtimes.manifest import MANIFEST, sha256_file

    return sha256_file(path / MANIFEST if path.is_dir() else path)


def model_file(settings: ScoreSettings) -> Path:
    """The checkpoint file the settings name (the packaged one for "")."""
    from vsseg_ros.core.loading import DEFAULT_WEIGHTS

    return Path(settings.model) if settings.model else DEFAULT_WEIGHTS


_SEGMENTERS: dict[str, Any] = {}


def _shipped_copy(data: bytes, sha256: str) -> Path:
    """A model received from the driver (Ray's object store), kept as a file this process can load."""
    folder = Path(tempfile.gettempdir()) / "vsseg-fleet-models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha256}.pt"
    if not path.is_file() or path.stat().st_size != len(data):
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path


def segmenter_for(settings: ScoreSettings, model_bytes: Optional[bytes] = None) -> Any:
    """The Segmenter for ``settings``, loaded once per process (a Ray worker scores many bags with it).
    ``model_bytes``: the checkpoint's content, shipped by the driver, instead of reading ``settings.model``."""
    import torch

    from vsseg_ros.core.loading import load_segmenter

    key = repr(sorted(settings.identity().items()))
    seg = _SEGMENTERS.get(key)
    if seg is None:
        path: Any = settings.model
        if model_bytes is not None:
            path = _shipped_copy(model_bytes, settings.model_sha256 or hashlib.sha256(model_bytes).hexdigest())
        from vsseg_ros.evaluation.inputs import backend_for

        seg = load_segmenter(
            path,
            device=settings.device,
            backend=backend_for(str(path), settings.backend),
            precision=settings.precision,
            input_size=settings.input_size,
            temporal_mode=settings.temporal_mode or None,
            max_frame_gap_s=settings.max_frame_gap,
        )
        _SEGMENTERS.clear()  # one model per process
        _SEGMENTERS[key] = seg
    if settings.threads:  # a worker keeps to its CPUs: torch's threads and OpenCV's (DIS flow, remap, dilation)
        import cv2

        torch.set_num_threads(int(settings.threads))
        cv2.setNumThreads(int(settings.threads))
    return seg


def _counted(frames: Iterable[Any], progress: Optional[Progress]) -> Iterator[Any]:
    for f in frames:
        yield f
        if progress is not None:
            progress(1)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def score_task(
    task: BagTask, settings: ScoreSettings, model_bytes: Optional[bytes] = None, progress: Optional[Progress] = None
) -> dict[str, Any]:
    """Score one task; returns its record (``status`` "ok" with ``result`` and ``totals``, or "failed" with
    ``error`` and ``error_kind``). ``progress(n)`` is called as frames are read."""
    from vsseg_ros.bags.bagfile import BagError
    from vsseg_ros.bags.reader import BagFrames
    from vsseg_ros.evaluation.inputs import EvalSource, check_classes
    from vsseg_ros.metrics.evaluate import evaluate_stream
    from vsseg_ros.metrics.scorer import StreamScorer

    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "key": task.key,
        "bag": task.bag.path,
        "task": task.to_dict(),
        "chunk": None if task.chunks == 1 else [task.index + 1, task.chunks],
        "worker": worker_name(),
    }
    caught: list[str] = []
    try:
        seg = segmenter_for(settings, model_bytes)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                frames = BagFrames(task.bag.path, image_topic=settings.image_topic, gt_topic=settings.gt_topic)
                gt_report = frames.gt_report  # pairs ground truth with images now: raises if none matches
                names = list(frames.class_names) if frames.class_names else None
                source = EvalSource(
                    frames, len(frames), frames.describe(), {}, names, len(names) if names else None, False
                )
                notes = check_classes(source, [seg])
                cm = seg.class_map
                scorer = StreamScorer(
                    cm.names,
                    ignore_id=cm.ignore_id,
                    boundary_tolerance_px=settings.boundary_tolerance,
                    flow_consistency=settings.tc,
                    dis_preset=settings.dis_preset,
                )
                stats = evaluate_stream(
                    [seg],
                    _counted(frames.between(task.start_ns, task.stop_ns), progress),
                    [scorer],
                    warmup=settings.warmup,
                )
            finally:
                caught = [f"{w.category.__name__}: {w.message}" for w in rec]
        if stats.frames == 0:
            raise BagError(f"{task.label}: no image in it to score")
        result = scorer.result()
        result.update(
            model=seg.model_id,
            delay_frames=int(getattr(seg, "delay_frames", 0)),
            frames_without_result=stats.unlabelled_by_model[0],
            sequences=len(stats.sequences),
        )
        record.update(
            status="ok",
            result=result,
            totals=scorer.totals().to_dict(),
            ground_truth=frames.gt_topic is not None,
            image_topic=frames.image_topic,
            gt_topic=frames.gt_topic,
            gt_report=None if gt_report is None else gt_report.as_dict(),
            class_map=cm.to_dict(),
            warnings=caught + notes,
        )
    except (BagError, ValueError) as err:  # the bag (or its ground truth) is not usable as it is
        record.update(status="failed", error_kind=BAG_ERROR, error=f"{type(err).__name__}: {err}", warnings=caught)
    except Exception as err:  # noqa: BLE001 - recorded, the other bags go on; a rerun tries this one again
        record.update(status="failed", error_kind=OTHER_ERROR, error=f"{type(err).__name__}: {err}", warnings=caught)
    record["seconds"] = round(time.perf_counter() - t0, 4)
    return record


__all__ = [
    "BAG_ERROR",
    "OTHER_ERROR",
    "ScoreSettings",
    "file_sha256",
    "model_file",
    "score_task",
    "segmenter_for",
    "worker_name",
]
