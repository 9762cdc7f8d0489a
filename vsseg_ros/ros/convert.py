"""numpy maps -> sensor_msgs/Image, and our class table -> ClassMap message.

Large payloads go in as ``array.array``: rclpy copies it in ~2 ms for 4 MB, while a numpy array or a
memoryview takes hundreds of ms (measured on this project's machine).
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import Image

from vsseg_ros.core.classes import ClassMap

_ENCODINGS = {(np.dtype(np.uint8), 1): "mono8", (np.dtype(np.uint8), 3): "rgb8", (np.dtype(np.float32), 1): "32FC1"}


def to_image_msg(values: np.ndarray, header) -> Image:
    """HxW uint8 -> mono8, HxWx3 uint8 -> rgb8, HxW float32 -> 32FC1; ``header`` is used as is."""
    channels = 1 if values.ndim == 2 else values.shape[2]
    encoding = _ENCODINGS[(values.dtype, channels)]
    values = np.ascontiguousarray(values)
    data = array.array("B")
    data.frombytes(values.reshape(-1).view(np.uint8).data)  # a flat byte view: one copy
    h, w = values.shape[:2]
    return Image(
        header=header,
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * channels * values.itemsize,
        data=data,
    )


def image_msg_to_array(msg: Image) -> np.ndarray:
    """Inverse of :func:`to_image_msg` for the encodings it writes (mono8, rgb8, 32FC1)."""
    dtype = np.float32 if msg.encoding == "32FC1" else np.uint8
    channels = 3 if msg.encoding == "rgb8" else 1
    flat = np.frombuffer(msg.data, dtype=np.uint8)
    rows = flat.reshape(msg.height, msg.step)[:, : msg.width * channels * np.dtype(dtype).itemsize]
    arr = np.ascontiguousarray(rows).view(dtype)
    return arr.reshape(msg.height, msg.width, channels) if channels > 1 else arr.reshape(msg.height, msg.width)


def class_map_msg(class_map: ClassMap, model_id: str, header):
    from vsseg_ros.msg import ClassMap as ClassMapMsg

    colors = [int(v) for c in class_map.colors for v in c]
    return ClassMapMsg(
        header=header,
        class_ids=list(class_map.ids),
        class_names=list(class_map.names),
        colors=colors,
        ignore_id=class_map.ignore_id,
        model_id=model_id,
    )


def to_mono8(values: np.ndarray) -> np.ndarray:
    """A [0, 1] float map as mono8: round(255 x value), clipped to 0..255 (Nav2's confidence images)."""
    return np.clip(np.rint(values * np.float32(255.0)), 0, 255).astype(np.uint8)


def label_info_msg(class_map: ClassMap, header):
    """``vision_msgs/LabelInfo`` (class ids and names) for consumers that read it; vision_msgs must be installed."""
    from vision_msgs.msg import LabelInfo, VisionClass

    return LabelInfo(
        header=header,
        class_map=[VisionClass(class_id=int(i), class_name=str(n)) for i, n in zip(class_map.ids, class_map.names)],
        threshold=0.0,
    )
