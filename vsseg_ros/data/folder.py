"""A generic folder of images and label PNGs.

Layout (``SPLIT/`` only when a split is given)::

    ROOT/images/[SPLIT/]NAME.png|jpg|jpeg|bmp    RGB images
    ROOT/labels/[SPLIT/]NAME.png                 single-channel class ids 0..C-1, 255 = ignore (same size)
    ROOT/classes.txt  or  ROOT/classes.yaml      optional class list (id = position in the list)
    ROOT/frames/[SPLIT/]NAME.png|jpg             optional unlabelled video frames (neighbours of the labelled ones)

Every image needs a label with the same file stem (``NAME``); labels are PNG so the ids stay exact.
``classes.txt``: one class per line (blank lines and ``#`` comments skipped), optionally followed by its RGB
colour as three integers (``traffic light 250 170 30``). ``classes.yaml``: a list (or a mapping with a
``classes`` list) whose entries are names or ``{name: ..., color: [r, g, b]}``. Without a class list the number
of classes is ``num_classes`` if given, else the largest id found in the labels plus one (all labels are read
once to find it). Names ``SEQUENCE_FRAME`` (``drive3_000120``) put the image in sequence ``drive3`` at frame 120,
as for CamVid; :meth:`ImageFolder.neighbours` looks for other frame numbers of the sequence among the labelled
images and in ``frames/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from vsseg_ros.core.classes import IGNORE_ID, ClassMap
from vsseg_ros.data.base import (
    DatasetError,
    LabelledDataset,
    Sample,
    check_root,
    class_id_tables,
    generic_class_map,
    list_images,
    missing_folders_error,
    paired_samples,
    parse_name,
)

CLASS_FILES = ("classes.txt", "classes.yaml", "classes.yml")
MAX_CLASSES = 255  # ids 0..254; 255 is the ignore id


def _parse_color(value: Any, where: str) -> tuple[int, int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise DatasetError(f"{where}: a colour must be three integers 0-255 (R G B), got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def read_class_list(path: Union[str, Path]) -> list[tuple[str, Optional[tuple[int, int, int]]]]:
    """``[(name, colour or None), ...]`` from a ``classes.txt`` or ``classes.yaml`` file (format: module doc)."""
    path = Path(path)
    entries: list[tuple[str, Optional[tuple[int, int, int]]]] = []
    if path.suffix.lower() == ".txt":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            color = None
            if len(parts) >= 4 and all(p.lstrip("-").isdigit() for p in parts[-3:]):
                color = _parse_color([int(p) for p in parts[-3:]], f"{path}:{n}")
                parts = parts[:-3]
            entries.append((" ".join(parts), color))
    else:
        import yaml

        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DatasetError(f"{path}: not valid YAML: {e}") from None
        if isinstance(raw, dict):
            raw = raw.get("classes")
        if not isinstance(raw, list):
            raise DatasetError(
                f"{path}: expected a list of classes (or a mapping with a 'classes' list); each "
                "entry a name or {name: ..., color: [r, g, b]}"
            )
        for k, item in enumerate(raw):
            if isinstance(item, str):
                entries.append((item, None))
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                color = item.get("color", item.get("colour"))
                entries.append((item["name"], None if color is None else _parse_color(color, f"{path}: class {k}")))
            else:
                raise DatasetError(f"{path}: class {k} must be a name or {{name: ..., color: [r, g, b]}}, got {item!r}")
    if not entries:
        raise DatasetError(f"{path}: no classes listed")
    if len(entries) > MAX_CLASSES:
        raise DatasetError(f"{path}: {len(entries)} classes; at most {MAX_CLASSES} (ids 0-254, 255 = ignore)")
    names = [e[0] for e in entries]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"{path}: class name(s) listed twice: {', '.join(dup)}")
    return entries


def class_map_from_list(entries: list[tuple[str, Optional[tuple[int, int, int]]]]) -> ClassMap:
    """Colours not given in the list come from :func:`generic_class_map`."""
    fallback = generic_class_map(len(entries)).colors
    return ClassMap(
        names=tuple(e[0] for e in entries),
        colors=tuple(e[1] if e[1] is not None else fallback[i] for i, e in enumerate(entries)),
    )


class ImageFolder(LabelledDataset):
    """The (image, label) pairs under ``ROOT/images`` and ``ROOT/labels`` (or their ``SPLIT`` subfolders)."""

    def __init__(self, root: Union[str, Path], split: Optional[str] = None, num_classes: Optional[int] = None) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        sub = f"{split}/" if split else ""
        expected = (
            f"expected the image-folder layout: {self.root}/images/{sub}NAME.png|jpg and "
            f"{self.root}/labels/{sub}NAME.png (single-channel class ids, 255 = ignore), optional "
            f"{self.root}/classes.txt or classes.yaml"
        )
        check_root(self.root, expected)
        self.image_dir = self.root / "images" / (split or "")
        self.label_dir = self.root / "labels" / (split or "")
        frames = self.root / "frames" / (split or "")
        self.frames_dir: Optional[Path] = frames if frames.is_dir() else None
        absent = [d for d in (self.image_dir, self.label_dir) if not d.is_dir()]
        if absent:
            raise missing_folders_error(self.root, absent, expected)
        images = list_images(self.image_dir)
        labels = list_images(self.label_dir)
        if not images:
            subdirs = sorted(p.name for p in self.image_dir.iterdir() if p.is_dir())
            hint = (
                f"; {self.image_dir} holds the folder(s) {', '.join(subdirs)}: pass one of them as the split"
                if subdirs and not split
                else ""
            )
            raise DatasetError(f"no images in {self.image_dir} ({expected}){hint}")
        self.samples: list[Sample] = paired_samples(images, labels, self.image_dir, self.label_dir)
        not_png = sorted(n for n in labels if labels[n].suffix.lower() != ".png")
        if not_png:
            raise DatasetError(
                f"label(s) {', '.join(labels[n].name for n in not_png[:5])} in {self.label_dir} are "
                "not PNG; labels must be lossless single-channel PNG files of class ids"
            )

        class_files = [self.root / f for f in CLASS_FILES if (self.root / f).is_file()]
        if len(class_files) > 1:
            raise DatasetError(
                f"{self.root} has both {class_files[0].name} and {class_files[1].name}; keep one class list"
            )
        self.class_file: Optional[Path] = class_files[0] if class_files else None
        if self.class_file is not None:
            class_map = class_map_from_list(read_class_list(self.class_file))
            if num_classes is not None and int(num_classes) != class_map.num_classes:
                raise DatasetError(
                    f"num_classes={num_classes} but {self.class_file} lists {class_map.num_classes} classes"
                )
        elif num_classes is not None:
            if not 1 <= int(num_classes) <= MAX_CLASSES:
                raise DatasetError(f"num_classes must be 1-{MAX_CLASSES}, got {num_classes}")
            class_map = generic_class_map(int(num_classes))
        else:
            class_map = generic_class_map(self._largest_id() + 1)
        self.class_map: ClassMap = class_map
        n = class_map.num_classes
        lut, valid = class_id_tables(n)
        source = f" ({self.class_file.name})" if self.class_file is not None else ""
        self._set_ids(lut, valid, f"0-{n - 1}{source}, {IGNORE_ID} (ignore)")

    def _largest_id(self) -> int:
        """The largest class id in any label (255 = ignore not counted); 0 when all are ignore."""
        self._allowed = f"0-{MAX_CLASSES - 1}, {IGNORE_ID} (ignore)"
        largest = 0
        for s in self.samples:
            ids = np.flatnonzero(np.bincount(self._read_raw_label(s.label_path).ravel(), minlength=256)[:IGNORE_ID])
            if ids.size:
                largest = max(largest, int(ids[-1]))
        return largest

    def frame_path(self, sample: Union[int, Sample], offset: int) -> Optional[Path]:
        """Frame ``FRAME + offset`` of the sample's sequence, from the labelled images or ``frames/``."""
        if self._frame_index is None:
            index = {}
            if self.frames_dir is not None:
                for stem, p in list_images(self.frames_dir).items():
                    index[parse_name(stem)] = p
            index.update({(t.sequence, t.frame): t.image_path for t in self.samples})
            self._frame_index = index
        return super().frame_path(sample, offset)


__all__ = ["CLASS_FILES", "ImageFolder", "class_map_from_list", "read_class_list"]
