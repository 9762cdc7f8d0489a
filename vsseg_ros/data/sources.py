"""Frames in stream order, from any source evaluation reads: a labelled dataset split here, a bag in
:mod:`vsseg_ros.bags.reader`. Both hand out :class:`LabelledFrame` s, so the scorer never knows where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from vsseg_ros.data.base import LabelledDataset

#: frame rate that a dataset's frame numbers count in (stamps are frame number / rate): CamVid numbers its
#: frames at 30 Hz (the val split is every second one, 15 Hz), Cityscapes sequences run at 17 Hz
FRAME_NUMBER_RATE_HZ = {"camvid": 30.0, "cityscapes": 17.0, "folder": 30.0}


@dataclass(frozen=True)
class LabelledFrame:
    """One frame of a stream with its ground truth, if it has any.

    ``image``: HxWx3 uint8 RGB. ``label``: HxW uint8 class ids with 255 = ignore, or None (unlabelled frame).
    ``stamp_ns``: capture time. ``camera_id``: the stream it belongs to (a segmenter's state is per camera).
    ``sequence``: the clip it belongs to (metrics over consecutive frames never cross a sequence change).
    ``name``: a human-readable id (file stem, or bag topic + index).
    """

    image: np.ndarray
    label: Optional[np.ndarray]
    stamp_ns: int
    camera_id: str = ""
    sequence: str = ""
    name: str = ""


def dataset_frames(
    name: str,
    root: Union[str, Path],
    split: Optional[str] = None,
    frame_rate_hz: Optional[float] = None,
    num_classes: Optional[int] = None,
    context: tuple[int, int] = (0, 0),
) -> Iterator[LabelledFrame]:
    """The labelled frames of a dataset split, sequence by sequence, each in frame order.

    ``name``: "camvid", "cityscapes" or "folder" (see :func:`vsseg_ros.data.registry.open_dataset`). Stamps are
    the frame number divided by ``frame_rate_hz`` (default: :data:`FRAME_NUMBER_RATE_HZ`), so the gaps between
    frames are real time gaps; ``camera_id`` and ``sequence`` are the sequence name. ``context``: see
    :func:`frames_of`. Raises :class:`~vsseg_ros.data.base.DatasetError` (naming the expected layout) before the
    first frame.
    """
    data = open_labelled(name, root, split, num_classes)
    return frames_of(data, frame_rate_hz or FRAME_NUMBER_RATE_HZ.get(str(name).strip().lower(), 30.0), context)


def open_labelled(
    name: str, root: Union[str, Path], split: Optional[str] = None, num_classes: Optional[int] = None
) -> LabelledDataset:
    """The dataset reader (checked now, so a wrong layout fails before any model work)."""
    from vsseg_ros.data.registry import open_dataset

    options = {} if num_classes is None else {"num_classes": int(num_classes)}
    return open_dataset(name, root, split, **options)


def frames_of(
    data: LabelledDataset, frame_rate_hz: float, context: tuple[int, int] = (0, 0)
) -> Iterator[LabelledFrame]:
    """:class:`LabelledFrame` s of an opened dataset reader (anything with ``sequences()``, ``load()``,
    ``frame_path()`` and ``read_rgb()``), in the order of :func:`plan_frames`.

    ``context`` = (before, after): also stream up to that many unlabelled video frames (``label=None``) before and
    after each labelled one, where the dataset has them (Cityscapes ``leftImg8bit_sequence``, a folder's
    ``frames/``), so a temporal model sees the frames it fuses; the labelled frame of a Cityscapes snippet is its
    20th. A context frame that is itself labelled is streamed once, with its label.
    """
    if not frame_rate_hz or frame_rate_hz <= 0:
        raise ValueError(f"frame_rate_hz must be > 0, got {frame_rate_hz}")
    return _stream(data, plan_frames(data, context), 1e9 / float(frame_rate_hz))


def plan_frames(data: LabelledDataset, context: tuple[int, int] = (0, 0)) -> list[tuple[str, int, Any]]:
    """``(sequence, frame number, Sample or image Path)`` of every frame :func:`frames_of` streams: sequences in
    name order, frames in number order; a :class:`~vsseg_ros.data.base.Sample` is labelled, a Path is a context
    frame. Cheap (no image is read), so its length is the stream's."""
    before, after = (int(c) for c in context)
    if before < 0 or after < 0:
        raise ValueError(f"context frames must be >= 0, got {tuple(context)}")
    offsets = list(range(-before, 0)) + list(range(1, after + 1))
    plan: list[tuple[str, int, Any]] = []
    for seq, samples in data.sequences().items():
        entries: dict[int, Any] = {s.frame: s for s in samples}
        for s in samples:
            for offset in offsets:
                if s.frame + offset not in entries:
                    path = data.frame_path(s, offset)
                    if path is not None:
                        entries[s.frame + offset] = path
        plan += [(seq, number, entries[number]) for number in sorted(entries)]
    return plan


def _stream(data: LabelledDataset, plan: list[tuple[str, int, Any]], period_ns: float) -> Iterator[LabelledFrame]:
    for seq, number, entry in plan:
        stamp = int(round(number * period_ns))
        if isinstance(entry, Path):
            yield LabelledFrame(
                image=data.read_rgb(entry), label=None, stamp_ns=stamp, camera_id=seq, sequence=seq, name=entry.stem
            )
        else:
            image, label = data.load(entry)
            yield LabelledFrame(image=image, label=label, stamp_ns=stamp, camera_id=seq, sequence=seq, name=entry.name)


__all__ = ["FRAME_NUMBER_RATE_HZ", "LabelledFrame", "dataset_frames", "frames_of", "open_labelled", "plan_frames"]
