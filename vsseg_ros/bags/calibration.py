"""A camera's calibration as ``sensor_msgs/CameraInfo`` carries it, read from a ROS calibration YAML file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from vsseg_ros.bags.writing import BagWriteError


@dataclass(frozen=True)
class CameraCalibration:
    """What goes into ``sensor_msgs/CameraInfo``. ``uncalibrated`` (the default) is all zeros, as
    camera_info_manager publishes for a camera without calibration."""

    width: int
    height: int
    k: tuple[float, ...] = (0.0,) * 9
    d: tuple[float, ...] = ()
    r: tuple[float, ...] = (0.0,) * 9
    p: tuple[float, ...] = (0.0,) * 12
    distortion_model: str = "plumb_bob"

    @classmethod
    def from_yaml(cls, path: Union[str, Path]) -> "CameraCalibration":
        """A ROS camera calibration file (camera_calibration / camera_info_manager YAML: ``image_width``,
        ``image_height``, ``camera_matrix.data``, ``distortion_model``, ``distortion_coefficients.data``,
        ``rectification_matrix.data``, ``projection_matrix.data``)."""
        import yaml

        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as err:
            raise BagWriteError(f"cannot read camera calibration {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise BagWriteError(f"camera calibration {path} is not valid YAML: {err}") from None
        expected = (
            "expected the ROS calibration format with image_width, image_height, camera_matrix, "
            "distortion_model, distortion_coefficients, rectification_matrix, projection_matrix"
        )
        if not isinstance(doc, dict):
            raise BagWriteError(f"camera calibration {path}: {expected}")

        def matrix(key: str, n: Optional[int]) -> tuple[float, ...]:
            entry = doc.get(key)
            values = entry.get("data") if isinstance(entry, dict) else None
            if not isinstance(values, list) or (n is not None and len(values) != n):
                size = f"{n} values" if n is not None else "a list"
                raise BagWriteError(f"camera calibration {path}: {key}.data must be {size}; {expected}")
            return tuple(float(v) for v in values)

        try:
            width, height = int(doc["image_width"]), int(doc["image_height"])
        except (KeyError, TypeError, ValueError):
            raise BagWriteError(f"camera calibration {path}: image_width/image_height missing; {expected}") from None
        return cls(
            width=width,
            height=height,
            k=matrix("camera_matrix", 9),
            d=matrix("distortion_coefficients", None),
            r=matrix("rectification_matrix", 9),
            p=matrix("projection_matrix", 12),
            distortion_model=str(doc.get("distortion_model", "plumb_bob")),
        )
