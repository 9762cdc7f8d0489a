"""Open a labelled dataset by name: ``open_dataset("camvid" | "cityscapes" | "folder", root, split)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

from vsseg_ros.data.base import DatasetError, LabelledDataset


def _camvid(root: Path, split: Optional[str], **kw: Any) -> LabelledDataset:
    from vsseg_ros.data.camvid import CamVid

    return CamVid(root, split or "train", **kw)


def _cityscapes(root: Path, split: Optional[str], **kw: Any) -> LabelledDataset:
    from vsseg_ros.data.cityscapes import Cityscapes

    return Cityscapes(root, split or "train", **kw)


def _folder(root: Path, split: Optional[str], **kw: Any) -> LabelledDataset:
    from vsseg_ros.data.folder import ImageFolder

    return ImageFolder(root, split or None, **kw)


#: name -> opener(root, split, **options); the split defaults to "train" (CamVid, Cityscapes) or to no split
#: subfolder (folder)
DATASETS: dict[str, Callable[..., LabelledDataset]] = {
    "camvid": _camvid,
    "cityscapes": _cityscapes,
    "folder": _folder,
}


def open_dataset(name: str, root: Union[str, Path], split: Optional[str] = None, **options: Any) -> LabelledDataset:
    """The reader for dataset ``name`` over ``root``; ``options`` go to its constructor (e.g. ``num_classes``).

    Raises :class:`DatasetError` for an unknown name (listing the known ones) or data that do not fit the layout.
    """
    key = str(name).strip().lower()
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key](Path(root).expanduser(), split, **options)


__all__ = ["DATASETS", "open_dataset"]
