"""Writing ROS 2 bags with rosbags: camera frames (+ camera_info + ground truth) and raw recorded messages.

:func:`write_bag` turns :class:`~vsseg_ros.data.sources.LabelledFrame` s into a bag a camera driver could have
recorded: ``sensor_msgs/Image`` (or ``CompressedImage`` on ``<image>/compressed``) frames, the sibling
``camera_info``, and ground truth as ``mono8`` (class ids, 255 = ignore) on ``/camera/semantic_gt`` for the
frames that have a label. The three messages of a frame share one header (stamp and frame_id), which is how
readers pair them, and are logged at the frame's stamp.

:class:`RawBagWriter` records already serialized messages (what ``replay`` receives from the node over DDS).
No ROS import here: rosbags serializes. :class:`RawBagWriter` is :mod:`vsseg_ros.bags.raw_writer`, the camera
calibration :mod:`vsseg_ros.bags.calibration`, what both writers share :mod:`vsseg_ros.bags.writing`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from vsseg_ros.bags.calibration import CameraCalibration
from vsseg_ros.bags.typestore import DEFAULT_DISTRO, check_distro, typestore_for
from vsseg_ros.bags.writing import BagWriteError, bag_size, offered_qos, open_writer, set_metadata_version

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_GT_TOPIC = "/camera/semantic_gt"
COMPRESSED_FORMATS = ("jpeg", "png")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"

#: custom_data keys (rosbag2 metadata v6+) this package writes and reads back
KEY_SOURCE = "vsseg_ros.source"
KEY_SEQUENCES = "vsseg_ros.sequences"  # JSON [[sequence, first stamp ns], ...] in bag order
KEY_FRAME_NAMES = "vsseg_ros.frame_names"  # JSON {stamp ns: frame name}
KEY_CLASSES = "vsseg_ros.class_names"  # JSON [name, ...] of the ground truth's class ids


def camera_info_topic_for(image_topic: str) -> str:
    """image_transport's rule: ``camera_info`` beside the image, ``/camera/image_raw`` -> ``/camera/camera_info``."""
    parent = image_topic.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/camera_info"


@dataclass
class BagSummary:
    """What :func:`write_bag` wrote."""

    path: Path
    storage: str
    frames: int = 0
    labelled: int = 0
    sequences: list[str] = field(default_factory=list)
    first_stamp_ns: int = 0
    last_stamp_ns: int = 0
    image_size: Optional[tuple[int, int]] = None  # (height, width) of the first frame
    topics: dict[str, int] = field(default_factory=dict)  # topic -> messages
    bytes: int = 0

    @property
    def duration_s(self) -> float:
        return (self.last_stamp_ns - self.first_stamp_ns) / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "storage": self.storage,
            "frames": self.frames,
            "labelled": self.labelled,
            "sequences": self.sequences,
            "duration_s": round(self.duration_s, 3),
            "image_size": list(self.image_size) if self.image_size else None,
            "topics": self.topics,
            "bytes": self.bytes,
        }


class _Stamper:
    """Bag stamps for a stream of frames: a fixed rate, or the source's own spacing; a new sequence starts
    ``gap_s`` after the previous frame (longer than a temporal model's max_frame_gap, so its window restarts)."""

    def __init__(self, rate_hz: Optional[float], start_ns: int, gap_s: float) -> None:
        if rate_hz is not None and not rate_hz > 0:
            raise BagWriteError(f"rate must be > 0 Hz, got {rate_hz}")
        self.period_ns = int(round(1e9 / rate_hz)) if rate_hz else None
        self.gap_ns = int(round(gap_s * 1e9))
        self.next_ns = start_ns
        self.last: Optional[tuple[str, int, int]] = None  # (sequence, source stamp, bag stamp)

    def __call__(self, frame: Any) -> int:
        if self.last is None:
            stamp = self.next_ns
        elif frame.sequence != self.last[0]:
            stamp = self.last[2] + self.gap_ns + (self.period_ns or 0)
        elif self.period_ns is not None:
            stamp = self.last[2] + self.period_ns
        else:
            step = int(frame.stamp_ns) - self.last[1]
            if step <= 0:
                raise BagWriteError(
                    f"frame {frame.name!r} (sequence {frame.sequence!r}) has stamp {frame.stamp_ns} ns,"
                    f" not after the previous frame's {self.last[1]} ns; give a rate (--rate HZ) "
                    "to stamp the frames evenly instead"
                )
            stamp = self.last[2] + step
        self.last = (frame.sequence, int(frame.stamp_ns), stamp)
        return stamp


class _Messages:
    """rosbags message objects for one frame's image, camera_info and ground truth."""

    def __init__(self, typestore: Any, encoding: str, jpeg_quality: int) -> None:
        self.ts = typestore
        self.encoding = encoding
        self.jpeg_quality = jpeg_quality
        self.compressed = encoding in COMPRESSED_FORMATS

    def header(self, stamp_ns: int, frame_id: str) -> Any:
        t = self.ts.types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
        )

    def image(self, rgb: np.ndarray, header: Any) -> bytes:
        if self.compressed:
            from vsseg_ros.imaging.encode import encode_compressed

            data = np.frombuffer(encode_compressed(rgb, self.encoding, quality=self.jpeg_quality), np.uint8)
            # image_transport's format string: the raw encoding, then what the bytes hold
            msg = self.ts.types[COMPRESSED_IMAGE](
                header=header, format=f"rgb8; {self.encoding} compressed bgr8", data=data
            )
            return bytes(self.ts.serialize_cdr(msg, COMPRESSED_IMAGE))
        from vsseg_ros.imaging.encode import encode_image

        data, step = encode_image(rgb, self.encoding)
        msg = self.ts.types[IMAGE](
            header=header,
            height=rgb.shape[0],
            width=rgb.shape[1],
            encoding=self.encoding,
            is_bigendian=0,
            step=step,
            data=np.frombuffer(data, np.uint8),
        )
        return bytes(self.ts.serialize_cdr(msg, IMAGE))

    def label(self, label: np.ndarray, header: Any) -> bytes:
        label = np.ascontiguousarray(label, dtype=np.uint8)
        msg = self.ts.types[IMAGE](
            header=header,
            height=label.shape[0],
            width=label.shape[1],
            encoding="mono8",
            is_bigendian=0,
            step=label.shape[1],
            data=label.reshape(-1),
        )
        return bytes(self.ts.serialize_cdr(msg, IMAGE))

    def camera_info(self, calib: CameraCalibration, header: Any) -> bytes:
        t = self.ts.types
        roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        msg = t[CAMERA_INFO](
            header=header,
            height=calib.height,
            width=calib.width,
            distortion_model=calib.distortion_model,
            d=np.array(calib.d, np.float64),
            k=np.array(calib.k, np.float64),
            r=np.array(calib.r, np.float64),
            p=np.array(calib.p, np.float64),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )
        return bytes(self.ts.serialize_cdr(msg, CAMERA_INFO))


def write_bag(
    path: Union[str, Path],
    frames: Iterable[Any],
    rate_hz: Optional[float] = None,
    storage: str = "mcap",
    *,
    image_topic: str = DEFAULT_IMAGE_TOPIC,
    gt_topic: str = DEFAULT_GT_TOPIC,
    camera_info_topic: Optional[str] = None,
    encoding: str = "rgb8",
    jpeg_quality: int = 95,
    calibration: Optional[CameraCalibration] = None,
    frame_id: Optional[str] = None,
    start_ns: Optional[int] = None,
    sequence_gap_s: float = 1.0,
    distro: str = DEFAULT_DISTRO,
    source: str = "",
    class_names: Optional[Sequence[str]] = None,
    progress: Optional[Any] = None,
    camera_topics: Optional[Mapping[str, str]] = None,
) -> BagSummary:
    """Write ``frames`` (LabelledFrame: RGB image, optional label, stamp_ns, camera_id, sequence, name) as a bag.

    ``rate_hz``: stamp the frames evenly at this rate; None keeps the spacing of the frames' own ``stamp_ns``.
    Either way the first frame is stamped ``start_ns`` (default: now, whole seconds) and each new sequence
    starts ``sequence_gap_s`` after the previous one. ``encoding``: an ``Image`` encoding (rgb8, bgr8, mono8,
    ... as :func:`vsseg_ros.imaging.encode.encode_image` writes them) or ``jpeg``/``png`` for ``CompressedImage``
    on ``<image_topic>/compressed``. ``frame_id``: the header's frame_id (default: each frame's ``camera_id``).
    ``distro`` picks the typestore whose definitions are embedded and the metadata version (see
    :mod:`vsseg_ros.bags.typestore`). ``progress``: a tqdm-like object whose ``update(1)`` is called per frame.
    ``camera_topics``: several cameras in one bag, ``{frame.camera_id: image topic}``: each frame goes to its
    camera's image topic, with ``camera_info`` beside it and ground truth on ``<parent>/semantic_gt``
    (``/cam_front/image_raw`` -> ``/cam_front/camera_info``, ``/cam_front/semantic_gt``); the frames are one
    stream in the order given (stamped by one clock, so no two share a stamp). A failure removes the partly
    written bag.
    """
    from vsseg_ros.imaging.decode import SUPPORTED_ENCODINGS

    path = Path(path)
    distro = check_distro(distro)
    if encoding not in SUPPORTED_ENCODINGS and encoding not in COMPRESSED_FORMATS:
        raise BagWriteError(
            f"unknown image encoding {encoding!r}; accepted: {', '.join(SUPPORTED_ENCODINGS + COMPRESSED_FORMATS)}"
        )
    typestore = typestore_for(distro)
    msgs = _Messages(typestore, encoding, jpeg_quality)
    stamper = _Stamper(
        rate_hz, int(start_ns) if start_ns is not None else int(time.time()) * 1_000_000_000, sequence_gap_s
    )
    info_topic = camera_info_topic or camera_info_topic_for(image_topic)

    def topics_of(frame: Any) -> tuple[str, str, str]:
        """(image topic as written, camera_info topic, ground-truth topic) of a frame's camera."""
        if camera_topics is None:
            image, info, gt = image_topic, info_topic, gt_topic
        elif frame.camera_id in camera_topics:
            image = camera_topics[frame.camera_id]
            image, info, gt = image, camera_info_topic_for(image), image.rstrip("/").rsplit("/", 1)[0] + "/semantic_gt"
        else:
            raise BagWriteError(
                f"frame {frame.name!r} has camera_id {frame.camera_id!r}, which camera_topics does not "
                f"name (it names {', '.join(map(repr, camera_topics))})"
            )
        return (image + "/compressed" if msgs.compressed else image), info, gt

    summary = BagSummary(path=path, storage=storage)
    writer = open_writer(path, storage, distro)
    names: dict[str, str] = {}
    sequences: list[list[Any]] = []
    try:
        with writer:
            conns: dict[str, Any] = {}  # topic -> connection, added when a camera's first frame comes

            def conn(topic: str, msgtype: str) -> Any:
                if topic not in conns:
                    conns[topic] = writer.add_connection(
                        topic, msgtype, typestore=typestore, offered_qos_profiles=[offered_qos()]
                    )
                return conns[topic]

            for frame in frames:
                image_out, info_out, gt_out = topics_of(frame)
                conn_image = conn(image_out, COMPRESSED_IMAGE if msgs.compressed else IMAGE)
                conn_info = conn(info_out, CAMERA_INFO)
                stamp = stamper(frame)
                rgb = np.asarray(frame.image)
                if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                    raise BagWriteError(
                        f"frame {frame.name!r}: expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}"
                    )
                if summary.image_size is None:
                    summary.image_size = rgb.shape[:2]
                    summary.first_stamp_ns = stamp
                calib = calibration or CameraCalibration(width=rgb.shape[1], height=rgb.shape[0])
                if (calib.height, calib.width) != rgb.shape[:2]:
                    raise BagWriteError(
                        f"the camera calibration is for {calib.width}x{calib.height} images but frame "
                        f"{frame.name!r} is {rgb.shape[1]}x{rgb.shape[0]}"
                    )
                header = msgs.header(stamp, frame_id if frame_id is not None else (frame.camera_id or "camera"))
                writer.write(conn_info, stamp, msgs.camera_info(calib, header))
                writer.write(conn_image, stamp, msgs.image(rgb, header))
                if frame.label is not None:
                    label = np.asarray(frame.label)
                    if label.shape != rgb.shape[:2] or label.dtype != np.uint8:
                        raise BagWriteError(
                            f"frame {frame.name!r}: the label must be HxW uint8 of the image's size "
                            f"{rgb.shape[:2]}, got {label.dtype} {label.shape}"
                        )
                    writer.write(conn(gt_out, IMAGE), stamp, msgs.label(label, header))
                    summary.labelled += 1
                if not sequences or sequences[-1][0] != frame.sequence:
                    sequences.append([frame.sequence, stamp])
                names[str(stamp)] = frame.name
                summary.frames += 1
                summary.last_stamp_ns = stamp
                if progress is not None:
                    progress.update(1)
            if summary.frames == 0:
                raise BagWriteError("no frames to write (the source gave none)")
            writer.set_custom_data(KEY_SOURCE, source or "vsseg_ros")
            writer.set_custom_data(KEY_SEQUENCES, json.dumps(sequences))
            writer.set_custom_data(KEY_FRAME_NAMES, json.dumps(names))
            if class_names:
                writer.set_custom_data(KEY_CLASSES, json.dumps(list(class_names)))
            summary.topics = {c.topic: writer.counts[c.id] for c in writer.connections}
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # a half-written bag would only mislead
        raise
    set_metadata_version(path, distro)
    summary.sequences = [s for s, _ in sequences]
    summary.bytes = bag_size(path)
    return summary


__all__ = [
    "BagSummary",
    "COMPRESSED_FORMATS",
    "DEFAULT_GT_TOPIC",
    "DEFAULT_IMAGE_TOPIC",
    "camera_info_topic_for",
    "write_bag",
]
