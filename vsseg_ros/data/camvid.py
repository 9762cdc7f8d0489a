"""CamVid in the SegNet release layout.

``root/{split}/NAME.png`` (RGB stills) and ``root/{split}annot/NAME.png`` (single-channel class ids 0-10,
11 = void). Void becomes the ignore id 255 on reading; a label that already uses 255 is accepted as ignore.
File names are ``SEQUENCE_FRAME.png`` (``0016E5_07959.png``, ``0006R0_f01440.png``): :meth:`CamVid.sequences`
groups frames by the part before the last ``_`` and orders them by the number after it.

The data are under a research-only licence: they are read from where they lie, never copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from vsseg_ros.core.classes import CAMVID, IGNORE_ID

#: class id used for "void" in the SegNet release
VOID_ID = 11
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


def _list_images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


class CamVid:
    """The (image, label) pairs of one split, sorted by file name.

    ``CamVid(root, "train")``; ``len()``, indexing gives :class:`Sample`; :meth:`load` reads one pair as
    (HxWx3 uint8 RGB, HxW uint8 labels with 0..num_classes-1 and 255 = ignore).
    """

    def __init__(self, root: Union[str, Path], split: str = "train", num_classes: int = CAMVID.num_classes,
                 void_id: Optional[int] = VOID_ID) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.num_classes = int(num_classes)
        self.void_id = void_id
        expected = (f"expected the SegNet CamVid layout: {self.root}/{split}/ (RGB images) and "
                    f"{self.root}/{split}annot/ (label images with the same file names)")
        if not self.root.exists():
            raise DatasetError(f"dataset root not found: {self.root} ({expected})")
        if not self.root.is_dir():
            raise DatasetError(f"dataset root is not a folder: {self.root} ({expected})")
        self.image_dir = self.root / split
        self.label_dir = self.root / f"{split}annot"
        absent = [str(d) for d in (self.image_dir, self.label_dir) if not d.is_dir()]
        if absent:
            present = sorted(p.name + "/" for p in self.root.iterdir() if p.is_dir())
            raise DatasetError(f"wrong dataset layout in {self.root}: missing {', '.join(absent)}; {expected}; "
                               f"found folders: {', '.join(present) if present else 'none'}")
        images = _list_images(self.image_dir)
        labels = _list_images(self.label_dir)
        if not images:
            raise DatasetError(f"no images in {self.image_dir} ({expected})")
        no_label = sorted(set(images) - set(labels))
        if no_label:
            shown = ", ".join(images[n].name for n in no_label[:5])
            more = f" and {len(no_label) - 5} more" if len(no_label) > 5 else ""
            raise DatasetError(f"{len(no_label)} image(s) in {self.image_dir} without a label in "
                               f"{self.label_dir}: {shown}{more}")
        no_image = sorted(set(labels) - set(images))
        if no_image:
            shown = ", ".join(labels[n].name for n in no_image[:5])
            more = f" and {len(no_image) - 5} more" if len(no_image) > 5 else ""
            raise DatasetError(f"{len(no_image)} label(s) in {self.label_dir} without an image in "
                               f"{self.image_dir}: {shown}{more}")
        self.samples: list[Sample] = []
        for name in sorted(images):
            seq, frame = parse_name(name)
            self.samples.append(Sample(name, images[name], labels[name], seq, frame))
        # class id -> training id lookup: 0..C-1 kept, void and 255 -> 255, everything else invalid
        self._valid = np.zeros(256, bool)
        self._valid[: self.num_classes] = True
        self._valid[IGNORE_ID] = True
        self._lut = np.full(256, IGNORE_ID, np.uint8)
        self._lut[: self.num_classes] = np.arange(self.num_classes, dtype=np.uint8)
        if void_id is not None:
            self._valid[void_id] = True

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __repr__(self) -> str:
        return f"CamVid(root={str(self.root)!r}, split={self.split!r}, {len(self)} frames)"

    def sequences(self) -> dict[str, list[Sample]]:
        """Sequence name -> its samples ordered by frame number (sequences in name order)."""
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.sequence, []).append(s)
        return {k: sorted(v, key=lambda s: (s.frame, s.name)) for k, v in sorted(out.items())}

    # -- reading ------------------------------------------------------------------------------------

    def read_image(self, sample: Union[int, Sample]) -> np.ndarray:
        import cv2

        s = self.samples[sample] if isinstance(sample, int) else sample
        bgr = cv2.imread(str(s.image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot read image {s.image_path} (not an image file, or damaged)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_label(self, sample: Union[int, Sample]) -> np.ndarray:
        """HxW uint8 training ids: 0..num_classes-1, 255 = ignore (void)."""
        import cv2

        s = self.samples[sample] if isinstance(sample, int) else sample
        raw = cv2.imread(str(s.label_path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read label {s.label_path} (not an image file, or damaged)")
        if raw.ndim == 3:
            if raw.shape[2] == 1:
                raw = raw[:, :, 0]
            else:
                raise DatasetError(f"label {s.label_path} has {raw.shape[2]} channels; expected a single-channel "
                                   f"image of class ids (0-{self.num_classes - 1}, {self.void_id} = void), "
                                   "not a colour-coded label")
        if raw.dtype != np.uint8:
            if raw.size and int(raw.max()) > 255:
                bad = np.unique(raw[raw > 255])
                raise DatasetError(self._bad_ids_message(s.label_path, bad))
            raw = raw.astype(np.uint8)
        present = np.bincount(raw.ravel(), minlength=256)
        bad = np.flatnonzero((present > 0) & ~self._valid)
        if bad.size:
            raise DatasetError(self._bad_ids_message(s.label_path, bad))
        return self._lut[raw]

    def _bad_ids_message(self, path: Path, bad: Iterable[int]) -> str:
        ids = [int(b) for b in bad]
        shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
        allowed = f"0-{self.num_classes - 1}"
        if self.void_id is not None:
            allowed += f", {self.void_id} (void)"
        return f"label {path} has class id(s) out of range: {shown}; allowed: {allowed}, {IGNORE_ID} (ignore)"

    def load(self, sample: Union[int, Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 uint8 RGB image, HxW uint8 label with 255 = ignore); sizes are checked to match."""
        s = self.samples[sample] if isinstance(sample, int) else sample
        image = self.read_image(s)
        label = self.read_label(s)
        if image.shape[:2] != label.shape[:2]:
            raise DatasetError(f"image {s.image_path} is {image.shape[1]}x{image.shape[0]} but its label "
                               f"{s.label_path} is {label.shape[1]}x{label.shape[0]} (width x height); "
                               "they must be the same size")
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


class CamVidTrainDataset:
    """A ``torch.utils.data.Dataset`` of augmented training crops.

    ``dataset[key]`` with ``key`` an index or ``(index, seed)``: the seed makes the augmentation of that draw
    reproducible (the trainer's sampler hands out seeds so a resumed run sees the same stream).
    Returns ``{"image": (3, H, W) float32 normalised, "label": (H, W) int64 with 255 = ignore,
    "boundary": (H, W) uint8 with 0/1 and 255 = excluded}`` (``boundary`` only with ``boundary_radius``).
    With ``cache`` the decoded images are kept in memory (CamVid train: about 190 MB).
    """

    def __init__(self, data: CamVid, transform: Optional[Callable[[np.ndarray, np.ndarray, np.random.Generator],
                                                                tuple[np.ndarray, np.ndarray]]] = None,
                 mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                 boundary_radius: Optional[int] = 2, cache: bool = True) -> None:
        self.data = data
        self.transform = transform
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1) * 255.0
        self.inv_std = 1.0 / (np.asarray(std, np.float32).reshape(3, 1, 1) * 255.0)
        self.boundary_radius = boundary_radius
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.data)

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index in self._cache:
            return self._cache[index]
        pair = self.data.load(index)
        if self.cache:
            self._cache[index] = pair
        return pair

    def preload(self) -> None:
        for i in range(len(self.data)):
            self._pair(i)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        import torch

        from vsseg_ros.training.targets import boundary_targets

        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), int(key)
        image, label = self._pair(index)
        if self.transform is not None:
            image, label = self.transform(image, label, np.random.default_rng(seed))
        x = (np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) - self.mean) * self.inv_std
        out = {"image": torch.from_numpy(x), "label": torch.from_numpy(label.astype(np.int64))}
        if self.boundary_radius:
            out["boundary"] = torch.from_numpy(boundary_targets(label, self.boundary_radius,
                                                                num_classes=self.data.num_classes))
        return out


__all__ = ["CamVid", "CamVidTrainDataset", "DatasetError", "Sample", "parse_name", "VOID_ID"]
