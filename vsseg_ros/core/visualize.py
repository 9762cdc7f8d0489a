"""Pictures people look at: colour masks, overlays, boundary heat maps, contact sheets, and writing them."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np

from vsseg_ros.core.classes import ClassMap


def color_mask(labels: np.ndarray, class_map: ClassMap) -> np.ndarray:
    """HxW class ids -> HxWx3 uint8 RGB in the class colours (ignore -> black)."""
    colors: np.ndarray = class_map.palette()[labels]
    return colors


def overlay(image_rgb: np.ndarray, labels: np.ndarray, class_map: ClassMap, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour mask over the image; alpha is the mask's weight."""
    if alpha <= 0.0:
        return image_rgb
    colors = color_mask(labels, class_map)
    if alpha >= 1.0:
        return colors
    return cv2.addWeighted(colors, alpha, image_rgb, 1.0 - alpha, 0.0)


def heatmap(values: np.ndarray) -> np.ndarray:
    """HxW float in [0, 1] -> HxWx3 uint8 RGB (inferno colour map)."""
    v = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(v, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def legend(class_map: ClassMap, width: int, row_height: int = 18) -> np.ndarray:
    """A strip naming each class next to its colour, ``width`` pixels wide."""
    per_row = max(1, width // 150)
    rows = (class_map.num_classes + per_row - 1) // per_row
    img = np.full((rows * row_height + 4, width, 3), 255, np.uint8)
    for i, (name, color) in enumerate(zip(class_map.names, class_map.colors)):
        x, y = (i % per_row) * 150 + 4, (i // per_row) * row_height + 2
        cv2.rectangle(img, (x, y + 2), (x + 14, y + row_height - 4), tuple(int(c) for c in color), -1)
        cv2.putText(img, name, (x + 18, y + row_height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def label(img: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner on a dark band (returns a copy)."""
    out = img.copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 9 * len(text) + 8), 20), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str] = (), gap: int = 4, footer: np.ndarray | None = None
) -> np.ndarray:
    """Tile equally sized RGB images row by row (e.g. input | mask | boundary), with column titles."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    sheet_w = ncol * w + (ncol + 1) * gap
    parts = []
    if titles:
        head = np.full((22, sheet_w, 3), 255, np.uint8)
        for j, t in enumerate(titles):
            cv2.putText(
                head, t, (gap + j * (w + gap) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA
            )
        parts.append(head)
    for r in rows:
        line = np.full((h + gap, sheet_w, 3), 255, np.uint8)
        for j, img in enumerate(r):
            img = img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)
            line[gap : gap + h, gap + j * (w + gap) : gap + j * (w + gap) + w] = img
        parts.append(line)
    if footer is not None:
        parts.append(cv2.resize(footer, (sheet_w, footer.shape[0])) if footer.shape[1] != sheet_w else footer)
    return np.concatenate(parts, axis=0)


def write_png(path: Union[str, Path], image: np.ndarray, rgb: bool = True) -> Path:
    """Write an HxWx3 uint8 picture (RGB, or OpenCV's BGR with ``rgb=False``) as an image file at ``path``;
    OSError when it cannot be written (a missing folder, no permission)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb else image
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write {path}")
    return Path(path)
