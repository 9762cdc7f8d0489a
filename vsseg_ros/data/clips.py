"""Training clips of T frames with the label on one (target) frame.

CamVid's training stills are 1 Hz with no labelled neighbours, so :class:`StillClipDataset` makes a clip from
one still: the target frame *is* the still (after the usual scale / crop / flip / colour augmentation, shared by
every frame), so its label is exact; the other frames look at the same scene through a camera that moves
smoothly (a homography per frame whose translation, rotation, zoom and perspective follow a constant velocity
plus a small acceleration, so consecutive frames differ by about the same amount), with colour that drifts
smoothly away from the target's, motion blur along the camera motion, sensor noise, and polygon occluders that
move across the clip. Occluders are drawn on the target frame too; the label under them is ignore (255).

Where real neighbours exist (Cityscapes ``leftImg8bit_sequence``, a folder's ``frames/``, CamVid val's
consecutive labelled frames) :class:`RealClipDataset` reads them and applies only the shared augmentation.

Both return ``{"frames": (T, 3, h, w) uint8 RGB, "label": (h, w) int64 (255 = ignore), "target": int,
"index": int}`` and are deterministic given ``(index, seed)``: ``dataset[i]`` draws from ``(seed, epoch, i)``
(:meth:`set_epoch` changes the draw per epoch), ``dataset[(i, s)]`` from ``(seed, s)`` (the per-draw seeds the
trainer's ``SeedStream`` hands out).

What both share is :mod:`vsseg_ros.data.clip_base`; the synthesis of clips from stills is
:mod:`vsseg_ros.data.clip_synthesis`; :class:`StillClipDataset` is re-exported here because docs/datasets.md
imports it from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from vsseg_ros.data.base import DatasetError, LabelledDataset
from vsseg_ros.data.clip_base import ClipDataset, Key, target_index
from vsseg_ros.data.clip_synthesis import StillClipDataset


class RealClipDataset(ClipDataset):
    """T-frame clips of real consecutive frames around each labelled one (``data.neighbours``), with the shared
    augmentation (scale, crop, flip, colour jitter) applied identically to every frame.

    ``frame_step``: frames between clip frames in the dataset's numbering (CamVid val, every second frame
    labelled: 2). ``missing``: what to do with samples that lack a neighbour: ``"error"``
    (:class:`DatasetError` at construction, naming them), ``"skip"`` (leave them out) or ``"synthesize"``
    (a :class:`StillClipDataset` clip of them, with ``synth`` as its extra options).
    """

    def __init__(
        self,
        data: LabelledDataset,
        frames: int = 3,
        target: Union[str, int] = "last",
        size: Sequence[int] = (288, 384),
        seed: int = 0,
        *,
        frame_step: int = 1,
        missing: str = "error",
        synth: Optional[dict[str, Any]] = None,
        **augment: Any,
    ) -> None:
        super().__init__(data, frames, target, size, seed, **augment)
        if int(frame_step) < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        if missing not in ("error", "skip", "synthesize"):
            raise ValueError(f"missing must be 'error', 'skip' or 'synthesize', got {missing!r}")
        if not hasattr(data, "neighbours"):
            raise DatasetError(f"{type(data).__name__} has no neighbouring frames; use StillClipDataset")
        self.frame_step = int(frame_step)
        self.missing = missing
        steps = [o * self.frame_step for o in self.offsets]
        self.real = [data.has_neighbours(i, steps) for i in range(len(data))]
        lacking = [data[i].name for i, ok in enumerate(self.real) if not ok]
        if lacking and missing == "error":
            shown = ", ".join(lacking[:5]) + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
            raise DatasetError(
                f"{len(lacking)} of {len(data)} samples lack a frame at offsets {steps}: {shown} "
                "(missing='skip' leaves them out, missing='synthesize' makes clips from the stills)"
            )
        self.indices = [i for i, ok in enumerate(self.real) if ok or missing == "synthesize"]
        if not self.indices:
            raise DatasetError(f"no sample of {data!r} has frames at offsets {steps}")
        self._synth: Optional[StillClipDataset] = None
        if lacking and missing == "synthesize":
            self._synth = StillClipDataset(data, frames, self.target, size, seed, **augment, **dict(synth or {}))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        index, rng = self._rng(key)
        sample = self.indices[index]
        if not self.real[sample]:
            assert self._synth is not None
            inner = (sample, int(key[1])) if isinstance(key, (tuple, list)) else sample
            self._synth.set_epoch(self.epoch)
            return {**self._synth[inner], "index": index}
        images = self.data.neighbours(sample, [o * self.frame_step for o in self.offsets])
        label = self.data.read_label(sample)
        for o, img in zip(self.offsets, images):
            if img.shape[:2] != label.shape[:2]:
                raise DatasetError(
                    f"frame at offset {o * self.frame_step:+d} from {self.data[sample].name} is "
                    f"{img.shape[1]}x{img.shape[0]} but its label is {label.shape[1]}x"
                    f"{label.shape[0]} (width x height); they must be the same size"
                )
        scale, flip, t = self._geometry(label.shape[:2], rng)
        jseed = self._jitter_seed(rng)
        frames = [self._warp(self._apply_jitter(self._resize(img, scale, flip), jseed), t) for img in images]
        label = self._warp(self._resize(label, scale, flip, nearest=True), t, label=True)
        return self._pack(frames, label, index)


def make_clips(
    data: LabelledDataset,
    frames: int = 3,
    target: Union[str, int] = "last",
    size: Sequence[int] = (288, 384),
    seed: int = 0,
    frame_step: int = 1,
    **options: Any,
) -> ClipDataset:
    """Real clips where the data have neighbours (synthesised ones for the samples that lack them), else clips
    synthesised from the stills. ``options``: :class:`StillClipDataset` options (the shared augmentation ones
    apply to real clips too)."""
    shared = {
        k: options.pop(k)
        for k in ("scale_range", "hflip", "jitter", "brightness", "contrast", "saturation", "hue")
        if k in options
    }
    steps = [(t - target_index(frames, target)) * frame_step for t in range(frames)]
    if hasattr(data, "has_neighbours") and any(data.has_neighbours(i, steps) for i in range(len(data))):
        return RealClipDataset(
            data, frames, target, size, seed, frame_step=frame_step, missing="synthesize", synth=options, **shared
        )
    return StillClipDataset(data, frames, target, size, seed, **shared, **options)


def save_clip_preview(
    dataset: ClipDataset, path: Union[str, Path], n: int = 4, seed: int = 0, max_width: int = 1600
) -> Path:
    """A contact sheet PNG: one row per clip (``n`` clips spread over the dataset, draw seeds from ``seed``),
    its frames left to right (target outlined in green) and the target's label in class colours on the right."""
    import cv2

    from vsseg_ros.core.visualize import write_png

    path = Path(path)
    if len(dataset) == 0:
        raise ValueError("empty dataset: nothing to preview")
    n = max(1, min(int(n), len(dataset)))
    picks = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    palette = dataset.data.class_map.palette()
    rows = []
    for r, i in enumerate(picks):
        item = dataset[(int(i), seed + r)]
        frames = item["frames"].numpy().transpose(0, 2, 3, 1)
        tiles = []
        for k, f in enumerate(frames):
            tile = np.ascontiguousarray(f)
            if k == item["target"]:
                cv2.rectangle(tile, (1, 1), (tile.shape[1] - 2, tile.shape[0] - 2), (40, 220, 40), 3)
            off = k - item["target"]
            cv2.putText(
                tile,
                "t" if off == 0 else f"t{off:+d}",
                (8, 24),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.7,
                (255, 255, 255),
                2,
                cv2.LINE_AA,
            )
            tiles.append(tile)
        tiles.append(palette[item["label"].numpy().astype(np.uint8)])
        gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
        row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
        rows.append(row)
        rows.append(np.full((4, row.shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows[:-1], axis=0)
    if sheet.shape[1] > max_width:
        f = max_width / sheet.shape[1]
        sheet = cv2.resize(sheet, (max_width, int(round(sheet.shape[0] * f))), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_png(path, sheet)


__all__ = ["RealClipDataset", "StillClipDataset", "make_clips", "save_clip_preview"]
