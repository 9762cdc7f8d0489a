"""What every labelled dataset reader shares: samples, sequences, reading and checking (image, label) pairs.

A reader (:class:`~vsseg_ros.data.camvid.CamVid`, :class:`~vsseg_ros.data.cityscapes.Cityscapes`,
:class:`~vsseg_ros.data.folder.ImageFolder`) lists its :class:`Sample` s and sets a 256-entry lookup table from
the ids stored in the label files to training ids (``0..num_classes-1``, 255 = ignore) plus the set of stored
ids it accepts. Everything else (reading, id checks, size checks, sequences, neighbouring frames) lives here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from vsseg_ros.core.classes import IGNORE_ID, ClassMap, rgb_tuple

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_NAME_RE = re.compile(r"^(?P<seq>.+)_(?P<prefix>\D*)(?P<frame>\d+)$")


class DatasetError(ValueError):
    """Data that cannot be used as given; the message names the file or folder and what was expected."""


@dataclass(frozen=True)
class Sample:
    """One labelled still: its files, the sequence it belongs to and its frame number in that sequence."""

    name: str
    image_path: Path
    label_path: Path
    sequence: str
    frame: int


def parse_name(stem: str) -> tuple[str, int]:
    """``"0016E5_07959"`` -> ``("0016E5", 7959)``; ``"0006R0_f01440"`` -> ``("0006R0", 1440)``. A name
    without a ``_NUMBER`` tail is a sequence of its own, frame 0."""
    m = _NAME_RE.match(stem)
    if m is None:
        return stem, 0
    return m.group("seq"), int(m.group("frame"))


def list_images(folder: Path) -> dict[str, Path]:
    """File stem -> path of the image files directly in ``folder`` (hidden files skipped)."""
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    }


def check_root(root: Path, expected: str) -> None:
    """Raise :class:`DatasetError` naming the ``expected`` layout when ``root`` is missing or not a folder."""
    if not root.exists():
        raise DatasetError(f"dataset root not found: {root} ({expected})")
    if not root.is_dir():
        raise DatasetError(f"dataset root is not a folder: {root} ({expected})")


def missing_folders_error(root: Path, absent: Sequence[Path], expected: str) -> DatasetError:
    present = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
    return DatasetError(
        f"wrong dataset layout in {root}: missing {', '.join(map(str, absent))}; {expected}; "
        f"found folders: {', '.join(present) if present else 'none'}"
    )


def unpaired_error(names: Sequence[str], paths: dict[str, Path], where: Path, what: str, other: str) -> DatasetError:
    """``N image(s) in DIR without a label in DIR: a.png, b.png and 3 more``."""
    shown = ", ".join(paths[n].name for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return DatasetError(f"{len(names)} {what} in {where} without {other}: {shown}{more}")


def check_pairs(
    images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path, label: str = "a label"
) -> None:
    """Every image has a label of the same name and the other way round; DatasetError naming the strays
    (``label``: how the message names a label, e.g. ``a *_gtFine_labelIds.png label``)."""
    no_label = sorted(set(images) - set(labels))
    if no_label:
        raise unpaired_error(no_label, images, image_dir, "image(s)", f"{label} in {label_dir}")
    no_image = sorted(set(labels) - set(images))
    if no_image:
        raise unpaired_error(no_image, labels, label_dir, "label(s)", f"an image in {image_dir}")


def paired_samples(images: dict[str, Path], labels: dict[str, Path], image_dir: Path, label_dir: Path) -> list[Sample]:
    """:func:`check_pairs`, then one :class:`Sample` per name in name order, its sequence and frame from
    :func:`parse_name`."""
    check_pairs(images, labels, image_dir, label_dir)
    return [Sample(name, images[name], labels[name], *parse_name(name)) for name in sorted(images)]


def class_id_tables(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lut, valid)`` for labels stored as training ids (see :meth:`LabelledDataset._set_ids`): 0..C-1 kept,
    255 = ignore, every other id invalid."""
    valid = np.zeros(256, bool)
    valid[:num_classes] = True
    valid[IGNORE_ID] = True
    lut = np.full(256, IGNORE_ID, np.uint8)
    lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
    return lut, valid


def generic_class_map(num_classes: int) -> ClassMap:
    """``class_0 .. class_{C-1}`` with distinct, deterministic colours (for data without a class table)."""
    import cv2

    hues = ((np.arange(num_classes) * 0.618034) % 1.0 * 180).astype(np.uint8)  # golden-ratio hue steps
    hsv = np.stack(
        [hues, np.full_like(hues, 200), np.where(np.arange(num_classes) % 2, 160, 230).astype(np.uint8)], axis=-1
    )[None]
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    return ClassMap(names=tuple(f"class_{i}" for i in range(num_classes)), colors=tuple(rgb_tuple(c) for c in rgb))


class DecodedPairs:
    """The decoded (image, label) pairs of a :class:`LabelledDataset` by index, read on first use and, with
    ``keep``, kept in memory (a training set is then decoded once per run, not once per epoch)."""

    def __init__(self, data: "LabelledDataset", keep: bool = True) -> None:
        self.data, self.keep = data, keep
        self._kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self._kept.get(index)
        if pair is None:
            pair = self.data.load(index)
            if self.keep:
                self._kept[index] = pair
        return pair

    def preload(self) -> None:
        """Decode every pair now (before forking data-loader workers, so that they share the pages)."""
        for i in range(len(self.data)):
            self[i]

    def kept(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The pairs decoded and kept so far."""
        return list(self._kept.values())


class LabelledDataset:
    """Base of the dataset readers. Subclasses fill ``samples``, ``class_map`` and call :meth:`_set_ids`.

    ``len()``, indexing gives :class:`Sample`; :meth:`load` reads one pair as (HxWx3 uint8 RGB, HxW uint8 training
    ids with 255 = ignore) and checks both are the same size.
    """

    root: Path
    split: Optional[str]
    samples: list[Sample]
    class_map: ClassMap
    _lut: np.ndarray
    _valid: np.ndarray
    _allowed: str
    _frame_index: Optional[dict[tuple[str, int], Path]] = None  # (sequence, frame) -> image, built on first use

    @property
    def num_classes(self) -> int:
        return self.class_map.num_classes

    def _set_ids(self, lut: np.ndarray, valid: np.ndarray, allowed: str) -> None:
        """``lut[stored id]`` -> training id (255 = ignore); ``valid[stored id]`` says whether the id may occur;
        ``allowed`` describes the valid ids for error messages."""
        self._lut = np.asarray(lut, np.uint8)
        self._valid = np.asarray(valid, bool)
        self._allowed = allowed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} frames)"

    def _sample(self, sample: Union[int, Sample]) -> Sample:
        return self.samples[sample] if isinstance(sample, (int, np.integer)) else sample

    def sequences(self) -> dict[str, list[Sample]]:
        """Sequence name -> its samples ordered by frame number (sequences in name order)."""
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.sequence, []).append(s)
        return {k: sorted(v, key=lambda s: (s.frame, s.name)) for k, v in sorted(out.items())}

    # -- reading ------------------------------------------------------------------------------------

    @staticmethod
    def read_rgb(path: Path) -> np.ndarray:
        """An image file as HxWx3 uint8 RGB (:class:`DatasetError` if it cannot be decoded)."""
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read image {path} (not an image file, or damaged)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_image(self, sample: Union[int, Sample]) -> np.ndarray:
        return self.read_rgb(self._sample(sample).image_path)

    def read_label(self, sample: Union[int, Sample]) -> np.ndarray:
        """HxW uint8 training ids: 0..num_classes-1, 255 = ignore."""
        s = self._sample(sample)
        raw = self._read_raw_label(s.label_path)
        present = np.bincount(raw.ravel(), minlength=256)
        bad = np.flatnonzero((present > 0) & ~self._valid)
        if bad.size:
            raise DatasetError(self._bad_ids_message(s.label_path, bad))
        ids: np.ndarray = self._lut[raw]
        return ids

    def _read_raw_label(self, path: Path) -> np.ndarray:
        """The ids stored in a label file as HxW uint8 (single channel; ids above 255 are out of range)."""
        import cv2

        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read label {path} (not an image file, or damaged)")
        if raw.ndim == 3:
            if raw.shape[2] == 1:
                raw = raw[:, :, 0]
            else:
                raise DatasetError(
                    f"label {path} has {raw.shape[2]} channels; expected a single-channel "
                    f"image of class ids ({self._allowed}), not a colour-coded label"
                )
        if raw.dtype != np.uint8:
            if raw.size and (int(raw.max()) > 255 or int(raw.min()) < 0):
                raise DatasetError(self._bad_ids_message(path, np.unique(raw[(raw > 255) | (raw < 0)])))
            raw = raw.astype(np.uint8)
        return raw

    def _bad_ids_message(self, path: Path, bad: Iterable[int]) -> str:
        ids = [int(b) for b in bad]
        shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
        return f"label {path} has class id(s) out of range: {shown}; allowed: {self._allowed}"

    def load(self, sample: Union[int, Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB image, HxW uint8 label with 255 = ignore); sizes are checked to match."""
        s = self._sample(sample)
        image = self.read_image(s)
        label = self.read_label(s)
        if image.shape[:2] != label.shape[:2]:
            raise DatasetError(
                f"image {s.image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                f"{s.label_path} is {label.shape[1]}x{label.shape[0]} (width x height); "
                "they must be the same size"
            )
        return image, label

    def validate(self) -> None:
        """Read every pair once (raises :class:`DatasetError` on the first bad one)."""
        for s in self.samples:
            self.load(s)

    def class_pixel_counts(self) -> np.ndarray:
        """Pixels per class over the split (ignore not counted)."""
        counts = np.zeros(self.num_classes, np.int64)
        for s in self.samples:
            lab = self.read_label(s)
            counts += np.bincount(lab.ravel(), minlength=256)[: self.num_classes]
        return counts

    # -- neighbouring frames --------------------------------------------------------------------------

    def frame_path(self, sample: Union[int, Sample], offset: int) -> Optional[Path]:
        """The image file ``offset`` frames (in the sequence's frame numbering) from ``sample``, or None.

        The base class knows only the labelled frames of the split; readers with unlabelled video frames
        (Cityscapes ``leftImg8bit_sequence``, a folder's ``frames/``) look there as well."""
        s = self._sample(sample)
        if offset == 0:
            return s.image_path
        if self._frame_index is None:
            self._frame_index = {(t.sequence, t.frame): t.image_path for t in self.samples}
        return self._frame_index.get((s.sequence, s.frame + int(offset)))

    def has_neighbours(self, sample: Union[int, Sample], offsets: Sequence[int]) -> bool:
        return all(self.frame_path(sample, o) is not None for o in offsets)

    def neighbours(self, sample: Union[int, Sample], offsets: Sequence[int]) -> list[np.ndarray]:
        """RGB frames at ``offsets`` (frame numbers relative to ``sample``; 0 is the labelled frame itself).
        :class:`DatasetError` names the first offset that has no frame."""
        s = self._sample(sample)
        out = []
        for o in offsets:
            p = self.frame_path(s, o)
            if p is None:
                raise DatasetError(
                    f"{type(self).__name__}: no frame at offset {o:+d} from {s.name} "
                    f"(sequence {s.sequence}, frame {s.frame}) in {self.root}"
                )
            out.append(self.read_rgb(p))
        return out


__all__ = [
    "DatasetError",
    "DecodedPairs",
    "IMAGE_SUFFIXES",
    "LabelledDataset",
    "Sample",
    "check_pairs",
    "check_root",
    "class_id_tables",
    "generic_class_map",
    "list_images",
    "missing_folders_error",
    "paired_samples",
    "parse_name",
    "unpaired_error",
]
