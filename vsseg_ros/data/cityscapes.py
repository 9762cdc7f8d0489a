"""Cityscapes (fine annotations) with the 19 training classes.

Layout (as the benchmark distributes it; only the parts read here)::

    ROOT/leftImg8bit/SPLIT/CITY/CITY_SEQ_FRAME_leftImg8bit.png             RGB, 2048x1024
    ROOT/gtFine/SPLIT/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png              label ids 0-33
    ROOT/leftImg8bit_sequence/SPLIT/CITY/CITY_SEQ_FRAME_leftImg8bit.png    optional: the 30-frame snippets

``SEQ`` and ``FRAME`` are 6-digit numbers (``aachen_000000_000019``). Label ids are mapped to the 19 train ids
with :data:`LABEL_TO_TRAIN_ID`; every other id (unlabeled, ego vehicle, parking, guard rail, caravan, ...) becomes
the ignore id 255. A sample's sequence is ``CITY_SEQ`` and its frame number ``FRAME``, so
:meth:`Cityscapes.neighbours` finds frame ``FRAME + k`` of the same snippet in ``leftImg8bit_sequence`` (the
labelled frame is the 20th of its snippet, so offsets -19..+10 exist there).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vsseg_ros.core.classes import CITYSCAPES, IGNORE_ID, ClassMap
from vsseg_ros.data.base import DatasetError, LabelledDataset, Sample, check_pairs, check_root, missing_folders_error

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"
#: the largest label id in gtFine labelIds images (id 34, "license plate" has id -1 and is not drawn there)
MAX_LABEL_ID = 33

#: official Cityscapes label id -> train id (ids not listed map to 255)
LABEL_TO_TRAIN_ID: dict[int, int] = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
_NAME_RE = re.compile(r"^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)$")


def label_lut() -> np.ndarray:
    """A 256-entry table: stored label id -> train id (255 for every id that is not one of the 19 classes)."""
    lut = np.full(256, IGNORE_ID, np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    """``CITY_SEQ_FRAME`` -> path for the files ending in ``suffix`` in the city folders under ``folder``."""
    out: dict[str, Path] = {}
    for city in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(city.iterdir()):
            if f.is_file() and f.name.endswith(suffix) and not f.name.startswith("."):
                out[f.name[: -len(suffix)]] = f
    return out


class Cityscapes(LabelledDataset):
    """The fine-annotated (image, label) pairs of one split (``train``, ``val`` or ``test``), sorted by name."""

    def __init__(self, root: Union[str, Path], split: str = "train") -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.class_map: ClassMap = CITYSCAPES
        expected = (
            f"expected the Cityscapes layout: {self.root}/leftImg8bit/{split}/CITY/*{IMAGE_SUFFIX} and "
            f"{self.root}/gtFine/{split}/CITY/*{LABEL_SUFFIX} (optional: "
            f"{self.root}/leftImg8bit_sequence/{split}/CITY/ for neighbouring frames)"
        )
        check_root(self.root, expected)
        self.image_dir = self.root / "leftImg8bit" / split
        self.label_dir = self.root / "gtFine" / split
        self.sequence_dir: Optional[Path] = self.root / "leftImg8bit_sequence" / split
        if not self.sequence_dir.is_dir():
            self.sequence_dir = None
        absent = [d for d in (self.image_dir, self.label_dir) if not d.is_dir()]
        if absent:
            splits = (
                sorted(p.name for p in (self.root / "leftImg8bit").iterdir() if p.is_dir())
                if (self.root / "leftImg8bit").is_dir()
                else []
            )
            hint = f" (splits found in leftImg8bit/: {', '.join(splits)})" if splits else ""
            raise missing_folders_error(self.root, absent, expected + hint)
        images = _files(self.image_dir, IMAGE_SUFFIX)
        labels = _files(self.label_dir, LABEL_SUFFIX)
        if not images:
            raise DatasetError(f"no *{IMAGE_SUFFIX} images in the city folders of {self.image_dir} ({expected})")
        check_pairs(images, labels, self.image_dir, self.label_dir, label=f"a *{LABEL_SUFFIX} label")
        self.samples: list[Sample] = []
        for name in sorted(images):
            m = _NAME_RE.match(name)
            if m is None:
                raise DatasetError(
                    f"{images[name]}: expected a name CITY_SEQ_FRAME{IMAGE_SUFFIX} with numbers "
                    "SEQ and FRAME (e.g. aachen_000000_000019_leftImg8bit.png)"
                )
            self.samples.append(Sample(name, images[name], labels[name], f"{m['city']}_{m['seq']}", int(m["frame"])))
        valid = np.zeros(256, bool)
        valid[: MAX_LABEL_ID + 1] = True
        self._set_ids(label_lut(), valid, f"Cityscapes label ids 0-{MAX_LABEL_ID} (gtFine *_labelIds.png)")

    def frame_path(self, sample: Union[int, Sample], offset: int) -> Optional[Path]:
        """Frame ``FRAME + offset`` of the sample's snippet from ``leftImg8bit_sequence`` (or the labelled
        frames of the split when that folder is absent)."""
        s = self._sample(sample)
        if offset == 0:
            return s.image_path
        if self.sequence_dir is not None:
            frame = s.frame + int(offset)
            if frame >= 0:
                city = s.image_path.parent.name
                p = self.sequence_dir / city / f"{s.sequence}_{frame:06d}{IMAGE_SUFFIX}"
                if p.is_file():
                    return p
        return super().frame_path(s, offset)


__all__ = ["Cityscapes", "LABEL_TO_TRAIN_ID", "MAX_LABEL_ID", "label_lut"]
