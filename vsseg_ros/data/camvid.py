"""CamVid in the SegNet release layout.

``root/{split}/NAME.png`` (RGB stills) and ``root/{split}annot/NAME.png`` (single-channel class ids 0-10,
11 = void). Void becomes the ignore id 255 on reading; a label that already uses 255 is accepted as ignore.
File names are ``SEQUENCE_FRAME.png`` (``0016E5_07959.png``, ``0006R0_f01440.png``): :meth:`CamVid.sequences`
groups frames by the part before the last ``_`` and orders them by the number after it.

The data are under a research-only licence: they are read from where they lie, never copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from vsseg_ros.core.classes import CAMVID, IGNORE_ID, ClassMap
from vsseg_ros.data.base import (
    DatasetError,
    DecodedPairs,
    LabelledDataset,
    Sample,
    check_root,
    class_id_tables,
    generic_class_map,
    list_images,
    missing_folders_error,
    paired_samples,
)
from vsseg_ros.data.copy_paste import ClassCopyPaste

#: class id used for "void" in the SegNet release
VOID_ID = 11


class CamVid(LabelledDataset):
    """The (image, label) pairs of one split, sorted by file name.

    ``CamVid(root, "train")``; ``len()``, indexing gives :class:`Sample`; :meth:`load` reads one pair as
    (HxWx3 uint8 RGB, HxW uint8 labels with 0..num_classes-1 and 255 = ignore).
    """

    def __init__(
        self,
        root: Union[str, Path],
        split: str = "train",
        num_classes: int = CAMVID.num_classes,
        void_id: Optional[int] = VOID_ID,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.void_id = void_id
        self.class_map: ClassMap = (
            CAMVID if int(num_classes) == CAMVID.num_classes else generic_class_map(int(num_classes))
        )
        expected = (
            f"expected the SegNet CamVid layout: {self.root}/{split}/ (RGB images) and "
            f"{self.root}/{split}annot/ (label images with the same file names)"
        )
        check_root(self.root, expected)
        self.image_dir = self.root / split
        self.label_dir = self.root / f"{split}annot"
        absent = [d for d in (self.image_dir, self.label_dir) if not d.is_dir()]
        if absent:
            raise missing_folders_error(self.root, absent, expected)
        images = list_images(self.image_dir)
        labels = list_images(self.label_dir)
        if not images:
            raise DatasetError(f"no images in {self.image_dir} ({expected})")
        self.samples: list[Sample] = paired_samples(images, labels, self.image_dir, self.label_dir)
        # stored id -> training id: 0..C-1 kept, void and 255 -> 255, everything else invalid
        n = self.num_classes
        lut, valid = class_id_tables(n)
        allowed = f"0-{n - 1}"
        if void_id is not None:
            valid[void_id] = True
            allowed += f", {void_id} (void)"
        self._set_ids(lut, valid, f"{allowed}, {IGNORE_ID} (ignore)")

    def __repr__(self) -> str:
        return f"CamVid(root={str(self.root)!r}, split={self.split!r}, {len(self)} frames)"


class CamVidTrainDataset:
    """A ``torch.utils.data.Dataset`` of augmented training crops.

    ``dataset[key]`` with ``key`` an index or ``(index, seed)``: the seed makes the augmentation of that draw
    reproducible (the trainer's sampler hands out seeds so a resumed run sees the same stream).
    Returns ``{"image": (3, H, W) float32 normalised, "label": (H, W) int64 with 255 = ignore,
    "boundary": (H, W) uint8 with 0/1 and 255 = excluded}`` (``boundary`` only with ``boundary_radius``).
    With ``cache`` the decoded images are kept in memory (CamVid train: about 190 MB). ``copy_paste`` pastes
    thin classes from another frame before ``transform`` (see :mod:`vsseg_ros.data.copy_paste`).
    """

    def __init__(
        self,
        data: CamVid,
        transform: Optional[
            Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
        ] = None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        boundary_radius: Optional[int] = 2,
        cache: bool = True,
        copy_paste: Optional[ClassCopyPaste] = None,
    ) -> None:
        self.data = data
        self.copy_paste = copy_paste
        self.transform = transform
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1) * 255.0
        self.inv_std = 1.0 / (np.asarray(std, np.float32).reshape(3, 1, 1) * 255.0)
        self.boundary_radius = boundary_radius
        self.pairs = DecodedPairs(data, keep=cache)

    def __len__(self) -> int:
        return len(self.data)

    def preload(self) -> None:
        self.pairs.preload()

    def __getitem__(self, key: Any) -> dict[str, Any]:
        import torch

        from vsseg_ros.training.targets import boundary_targets

        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), int(key)
        image, label = self.pairs[index]
        rng = np.random.default_rng(seed)  # without copy-paste the transform's draws are what they always were
        if self.copy_paste is not None:
            image, label = self.copy_paste.draw(image, label, index, self.pairs, rng)
        if self.transform is not None:
            image, label = self.transform(image, label, rng)
        x = (np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) - self.mean) * self.inv_std
        out = {"image": torch.from_numpy(x), "label": torch.from_numpy(label.astype(np.int64))}
        if self.boundary_radius:
            out["boundary"] = torch.from_numpy(
                boundary_targets(label, self.boundary_radius, num_classes=self.data.num_classes)
            )
        return out


__all__ = ["CamVid", "CamVidTrainDataset", "VOID_ID"]
