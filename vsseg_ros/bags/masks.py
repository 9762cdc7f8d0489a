"""Reading the masks a segmentation node published from a recorded bag (``.../semantic/mask`` mono8 images or
``SemanticSegmentation`` messages), with the class names of a recorded ``ClassMap``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from vsseg_ros.bags.bagfile import BagError, OpenBag, describe_topics
from vsseg_ros.bags.decoding import decoder, deserialize, fmt_stamp, mono8_array, stamp_of
from vsseg_ros.bags.writer import IMAGE

SEGMENTATION = "vsseg_ros/msg/SemanticSegmentation"
CLASS_MAP = "vsseg_ros/msg/ClassMap"


class BagMasks:
    """Masks a node published, from a recorded bag: ``(stamp_ns, frame_id, log_ns, mask HxW uint8)`` in log order.

    ``topic``: None picks ``.../semantic/mask`` (sensor_msgs/Image mono8), else a ``SemanticSegmentation``
    topic (its ``mask`` field). ``class_names``: from a recorded ``ClassMap`` message, when there is one.
    """

    def __init__(self, path: Union[str, Path], topic: Optional[str] = None) -> None:
        bag = OpenBag(path)
        try:
            self.path, self.topics = bag.path, bag.topics
            self.topic = self._pick(topic)
            self.msgtype = self.topics[self.topic].msgtype
            types = [self.msgtype] + [t.msgtype for t in self.topics.values() if t.msgtype == CLASS_MAP]
            self._store = decoder(bag.distro, types, with_package=True)
            self.class_names: Optional[list[str]] = None
            self.model_id: Optional[str] = None
            for t in self.topics.values():
                if t.msgtype == CLASS_MAP:
                    for _, _, raw in bag.messages([t.name]):
                        cm = deserialize(self._store, raw, CLASS_MAP, t.name, "class map")
                        self.class_names, self.model_id = list(cm.class_names), cm.model_id
        finally:
            bag.close()

    def _pick(self, wanted: Optional[str]) -> str:
        if wanted:
            if wanted not in self.topics:
                raise BagError(f"bag {self.path} has no topic {wanted}; {describe_topics(self.topics)}")
            if self.topics[wanted].msgtype not in (IMAGE, SEGMENTATION):
                raise BagError(
                    f"topic {wanted} has type {self.topics[wanted].msgtype}; a mask topic is {IMAGE} "
                    f"(mono8) or {SEGMENTATION}"
                )
            return wanted
        for suffix, msgtype in (("semantic/mask", IMAGE), ("semantic/segmentation", SEGMENTATION)):
            found = [t.name for t in self.topics.values() if t.name.endswith(suffix) and t.msgtype == msgtype]
            if len(found) == 1:
                return found[0]
        raise BagError(
            f"bag {self.path} has no mask topic (.../semantic/mask {IMAGE} or .../semantic/segmentation "
            f"{SEGMENTATION}); {describe_topics(self.topics)}"
        )

    def __len__(self) -> int:
        return self.topics[self.topic].count

    def __iter__(self) -> Iterator[tuple[int, str, int, np.ndarray]]:
        bag = OpenBag(self.path)
        try:
            for topic, log_ns, raw in bag.messages([self.topic]):
                stamp, frame_id = stamp_of(raw, topic)
                what = f"mask {fmt_stamp(stamp)} on {topic}"
                msg = deserialize(self._store, raw, self.msgtype, topic, what)
                yield stamp, frame_id, log_ns, mono8_array(msg if self.msgtype == IMAGE else msg.mask, what)
        finally:
            bag.close()
