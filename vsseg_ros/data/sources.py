"""Frames in stream order, from any source evaluation reads: a labelled dataset split here, a bag in
:mod:`vsseg_ros.bags.reader`. Both hand out :class:`LabelledFrame` s, so the scorer never knows where they came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

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


def dataset_frames(name: str, root: Union[str, Path], split: Optional[str] = None,
                   frame_rate_hz: Optional[float] = None, num_classes: Optional[int] = None
                   ) -> Iterator[LabelledFrame]:
    """The labelled frames of a dataset split, sequence by sequence, each in frame order.

    ``name``: "camvid", "cityscapes" or "folder" (see :func:`vsseg_ros.data.registry.open_dataset`). Stamps are
    the frame number divided by ``frame_rate_hz`` (default: :data:`FRAME_NUMBER_RATE_HZ`), so the gaps between
    frames are real time gaps; ``camera_id`` and ``sequence`` are the sequence name.
    Raises :class:`~vsseg_ros.data.base.DatasetError` (naming the expected layout) before the first frame.
    """
    data = open_labelled(name, root, split, num_classes)
    return frames_of(data, frame_rate_hz or FRAME_NUMBER_RATE_HZ.get(str(name).strip().lower(), 30.0))


def open_labelled(name: str, root: Union[str, Path], split: Optional[str] = None,
                  num_classes: Optional[int] = None):
    """The dataset reader (checked now, so a wrong layout fails before any model work)."""
    from vsseg_ros.data.registry import open_dataset

    options = {} if num_classes is None else {"num_classes": int(num_classes)}
    return open_dataset(name, root, split, **options)


def frames_of(data, frame_rate_hz: float) -> Iterator[LabelledFrame]:
    """:class:`LabelledFrame` s of an opened dataset reader (anything with ``sequences()`` and ``load()``)."""
    if not frame_rate_hz or frame_rate_hz <= 0:
        raise ValueError(f"frame_rate_hz must be > 0, got {frame_rate_hz}")
    period_ns = 1e9 / float(frame_rate_hz)
    for seq, samples in data.sequences().items():
        for s in samples:
            image, label = data.load(s)
            yield LabelledFrame(image=image, label=label, stamp_ns=int(round(s.frame * period_ns)),
                                camera_id=seq, sequence=seq, name=s.name)


__all__ = ["FRAME_NUMBER_RATE_HZ", "LabelledFrame", "dataset_frames", "frames_of", "open_labelled"]
