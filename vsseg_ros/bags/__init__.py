"""ROS 2 bags without a ROS install (rosbags): datasets and videos to bags, bags to labelled frames.

- :mod:`~vsseg_ros.bags.writer`: :func:`write_bag` (frames + camera_info + ground truth); built on
  :mod:`~vsseg_ros.bags.writing` (what both writers share) and :mod:`~vsseg_ros.bags.calibration`.
- :mod:`~vsseg_ros.bags.raw_writer`: :class:`RawBagWriter` (serialized messages as received, e.g. a node's
  outputs).
- :mod:`~vsseg_ros.bags.reader`: :class:`BagFrames` (LabelledFrames in time order), :class:`BagMasks` (a node's
  recorded masks), :class:`BagError`; built on :mod:`~vsseg_ros.bags.bagfile` (opening a bag),
  :mod:`~vsseg_ros.bags.decoding` (its messages) and :mod:`~vsseg_ros.bags.masks` (a node's recorded masks).
- :mod:`~vsseg_ros.bags.typestore`: which distro's message definitions read or write a bag.

The names below are re-exported here as the public API docs/bags.md documents (``vsseg_ros.bags``).
"""

from vsseg_ros.bags.bagfile import BagError, BagWarning, bag_topics
from vsseg_ros.bags.calibration import CameraCalibration
from vsseg_ros.bags.masks import BagMasks
from vsseg_ros.bags.raw_writer import RawBagWriter
from vsseg_ros.bags.reader import BagFrames
from vsseg_ros.bags.writer import DEFAULT_GT_TOPIC, DEFAULT_IMAGE_TOPIC, write_bag
from vsseg_ros.bags.writing import BagWriteError

__all__ = [
    "BagError",
    "BagFrames",
    "BagMasks",
    "BagWarning",
    "BagWriteError",
    "CameraCalibration",
    "DEFAULT_GT_TOPIC",
    "DEFAULT_IMAGE_TOPIC",
    "RawBagWriter",
    "bag_topics",
    "write_bag",
]
