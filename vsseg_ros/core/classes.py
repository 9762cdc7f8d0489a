"""Class tables: ids, names, display colours and the ignore id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

IGNORE_ID = 255


def rgb_tuple(color: Iterable[Any]) -> tuple[int, int, int]:
    """A colour (three numbers) as an ``(r, g, b)`` tuple of ints; ValueError unless it has three."""
    r, g, b = (int(v) for v in color)
    return r, g, b


@dataclass(frozen=True)
class ClassMap:
    """The classes a model predicts; id ``i`` is ``names[i]`` drawn in ``colors[i]`` (RGB)."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_id: int = IGNORE_ID
    ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise ValueError(f"{len(self.names)} class names but {len(self.colors)} colours")
        if not self.ids:
            object.__setattr__(self, "ids", tuple(range(len(self.names))))
        if len(self.ids) != len(self.names):
            raise ValueError(f"{len(self.ids)} class ids but {len(self.names)} names")
        if self.ignore_id in self.ids:
            raise ValueError(f"ignore id {self.ignore_id} is also a class id")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """A 256x3 uint8 lookup table: class id -> RGB; the ignore id and unused ids are black."""
        lut = np.zeros((256, 3), np.uint8)
        for i, c in zip(self.ids, self.colors):
            lut[i] = c
        return lut

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "colors": [list(c) for c in self.colors],
            "ignore_id": self.ignore_id,
            "ids": list(self.ids),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClassMap":
        return cls(
            names=tuple(d["names"]),
            colors=tuple(rgb_tuple(c) for c in d["colors"]),
            ignore_id=int(d.get("ignore_id", IGNORE_ID)),
            ids=tuple(d.get("ids", ())),
        )


# CamVid as released with SegNet: 11 classes, id 11 (void) is mapped to the ignore id.
CAMVID = ClassMap(
    names=(
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    ),
    colors=(
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ),
)

# Cityscapes: the 19 training classes (train ids 0-18) with the benchmark's official colours; every other
# label id is mapped to the ignore id (see vsseg_ros.data.cityscapes.LABEL_TO_TRAIN_ID).
CITYSCAPES = ClassMap(
    names=(
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    ),
    colors=(
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ),
)
