"""The frames `vsseg-ros make-bag` writes (:func:`open_bag_source`): a dataset sequence, a folder or a video file.

Frames go on ``/camera/image_raw`` (sensor_msgs/Image, or CompressedImage on ``.../compressed`` for jpeg/png),
``/camera/camera_info`` beside it, and ground truth (mono8, 255 = ignore) on ``/camera/semantic_gt`` for the
frames that have a label; all three carry the same header. Stamps follow the source's own timing (dataset frame
numbers, the video's frame rate) unless ``--rate`` stamps the frames evenly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence


class _OnlySequences:
    """A dataset reader that shows only some of its sequences (everything else is the reader's own)."""

    def __init__(self, data: Any, names: Sequence[str]) -> None:
        self._data = data
        self._names = set(names)

    def sequences(self) -> dict[str, list[Any]]:
        return {k: v for k, v in self._data.sequences().items() if k in self._names}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)


def _dataset_stream(
    data: Any, sequences: Optional[Sequence[str]], before: int, after: int, numbering_hz: float
) -> tuple[int, Iterator[Any]]:
    """(frame count, LabelledFrames) of the chosen sequences, streamed as :func:`vsseg_ros.data.sources.frames_of`
    streams them (stamps = frame number / ``numbering_hz``; unlabelled neighbours with ``before``/``after``)."""
    from vsseg_ros.data.base import DatasetError
    from vsseg_ros.data.sources import frames_of, plan_frames

    if sequences:
        available = data.sequences()
        unknown = [s for s in sequences if s not in available]
        if unknown:
            raise DatasetError(f"no sequence {', '.join(unknown)} in {data!r}; it has: {', '.join(available)}")
        data = _OnlySequences(data, sequences)
    return len(plan_frames(data, (before, after))), frames_of(data, numbering_hz, (before, after))


def _video_stream(path: Path, max_frames: Optional[int]) -> tuple[float, Optional[int], Iterator[Any]]:
    import cv2

    from vsseg_ros.data.sources import LabelledFrame
    from vsseg_ros.imaging.video import read_frames, video_fps

    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    fps = video_fps(path)
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    cap.release()
    if total and max_frames:
        total = min(total, max_frames)

    def frames() -> Iterator[Any]:
        for i, rgb in enumerate(read_frames(path, max_frames=max_frames)):
            yield LabelledFrame(
                image=rgb,
                label=None,
                stamp_ns=int(round(i * 1e9 / fps)),
                camera_id="camera",
                sequence=path.stem,
                name=f"{path.stem}_{i:06d}",
            )

    return fps, total, frames()


def _limit(frames: Iterator[Any], n: Optional[int]) -> Iterator[Any]:
    for i, f in enumerate(frames):
        if n is not None and i >= n:
            return
        yield f


@dataclass
class BagSource:
    """What a bag is made from: its frames (at most ``max_frames``), their count when known, the playback rate
    (None: the source's own stamps), the label that names the default output, a description and the class names."""

    frames: Iterator[Any]
    total: Optional[int]
    rate: Optional[float]
    label: str
    description: str
    class_names: Optional[list[str]]


def open_bag_source(
    dataset: Optional[str],
    root: Optional[Path],
    split: str,
    sequences: Optional[Sequence[str]],
    before: int,
    after: int,
    video: Optional[Path],
    max_frames: Optional[int],
    rate: Optional[float],
) -> BagSource:
    """A dataset split (``dataset``, ``root``, ``split``, optionally only some ``sequences`` with ``before`` /
    ``after`` unlabelled neighbours) or a ``video`` file, as the frames of a bag; raises DatasetError,
    FileNotFoundError or ValueError saying what was wrong."""
    from vsseg_ros.data.sources import FRAME_NUMBER_RATE_HZ, open_labelled

    class_names = None
    if dataset is not None:
        data = open_labelled(dataset, root, split)
        total, frames = _dataset_stream(data, sequences, before, after, FRAME_NUMBER_RATE_HZ.get(dataset, 30.0))
        class_names = list(data.class_map.names)
        seqs = "+".join(sequences) if sequences else ""
        split = getattr(data, "split", None) or ""
        label = "_".join(x for x in (dataset, split, seqs) if x)
        source = f"{dataset} {split} {seqs or 'all sequences'} from {Path(root).resolve()}".replace("  ", " ")
    else:
        assert video is not None
        fps, total, frames = _video_stream(video, max_frames)
        label, source = video.stem, f"video {video.resolve()}"
        rate = rate or fps
    if max_frames is not None and total is not None:
        total = min(total, max_frames)
    return BagSource(_limit(frames, max_frames), total, rate, label, source, class_names)
