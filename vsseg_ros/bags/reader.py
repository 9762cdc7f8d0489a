"""Reading ROS 2 bags (mcap or sqlite3, metadata versions 4-9: Foxy/Humble to Kilted) as labelled frames.

:class:`BagFrames` yields :class:`~vsseg_ros.data.sources.LabelledFrame` s in time order: the RGB image of every
message on the image topic (``sensor_msgs/Image`` in any encoding :mod:`vsseg_ros.imaging.decode` knows, or
``CompressedImage`` jpeg/png), with the ground truth (``mono8``, 255 = ignore) whose header stamp equals the
image's, when the bag has a ground-truth topic. :class:`BagMasks` reads the masks a node published (a recorded
output bag). Everything that is wrong with a bag raises :class:`BagError` saying what and what is accepted:
a missing or unreadable path, a truncated or corrupt file, a missing topic (the message lists the topics the
bag has), a type that is not an image. Ground truth that matches no image stamp is counted: a warning
(:class:`BagWarning`) with the counts when some does not match, an error when none does.

No ROS import: rosbags reads and deserializes. Frames are matched by the stamp in the header, read straight
from the serialized bytes (:mod:`vsseg_ros.bags.cdr`) so that only the messages yielded are decoded. Opening a
bag is :mod:`vsseg_ros.bags.bagfile`, decoding its messages :mod:`vsseg_ros.bags.decoding`, a node's recorded
masks :mod:`vsseg_ros.bags.masks`.
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from vsseg_ros.bags.bagfile import (
    BagError,
    BagWarning,
    OpenBag,
    describe_topics,
)
from vsseg_ros.bags.decoding import decoder, deserialize, fmt_stamp, mono8_array, stamp_of, stamp_span
from vsseg_ros.bags.writer import (
    COMPRESSED_IMAGE,
    DEFAULT_GT_TOPIC,
    DEFAULT_IMAGE_TOPIC,
    IMAGE,
    KEY_CLASSES,
    KEY_FRAME_NAMES,
    KEY_SEQUENCES,
    KEY_SOURCE,
)
from vsseg_ros.data.sources import LabelledFrame

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)


@dataclass
class GroundTruthReport:
    """How the ground truth of a bag pairs with its images (by header stamp)."""

    images: int = 0
    gt: int = 0
    matched: int = 0  # ground-truth messages whose stamp is that of an image
    unmatched: int = 0  # ground-truth messages whose stamp is that of no image: left out
    unmatched_examples: list[int] = field(default_factory=list)
    duplicate_image_stamps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "gt": self.gt,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "duplicate_image_stamps": self.duplicate_image_stamps,
        }


class BagFrames:
    """The frames of a bag's image topic, with their ground truth, as LabelledFrames in time order.

    ``image_topic``: None picks ``/camera/image_raw`` (or its ``/compressed``), else the bag's only image topic;
    giving ``/x/image`` also finds ``/x/image/compressed``. ``gt_topic``: None picks ``/camera/semantic_gt`` or
    the only topic ending in ``semantic_gt`` (none: frames have ``label=None``); ``""`` ignores ground truth.
    Iterable more than once; ``len()`` is the number of image messages.
    """

    def __init__(
        self, path: Union[str, Path], image_topic: Optional[str] = None, gt_topic: Optional[str] = None
    ) -> None:
        bag = OpenBag(path)
        try:
            self.path = bag.path
            self.topics = bag.topics
            self.version, self.storage, self.distro = bag.version, bag.storage, bag.distro
            self.custom_data = bag.custom
            self.gt_topic = self._pick_gt(gt_topic)
            self.image_topic = self._pick_image(image_topic)
            self.image_type = self.topics[self.image_topic].msgtype
            self.compressed = self.image_type == COMPRESSED_IMAGE
            if self.gt_topic is not None and self.topics[self.gt_topic].msgtype != IMAGE:
                raise BagError(
                    f"ground-truth topic {self.gt_topic} has type {self.topics[self.gt_topic].msgtype}; "
                    f"expected {IMAGE} (mono8 class ids, 255 = ignore)"
                )
            self._store = decoder(bag.distro, [self.image_type])
        finally:
            bag.close()
        if self.topics[self.image_topic].count == 0:
            raise BagError(f"image topic {self.image_topic} of {self.path} has no messages")
        self._sequences = self._custom_json(KEY_SEQUENCES, [])
        self._names = self._custom_json(KEY_FRAME_NAMES, {})
        self.class_names: Optional[list[str]] = self._custom_json(KEY_CLASSES, None)
        self.source: str = self.custom_data.get(KEY_SOURCE, "")
        self._report: Optional[GroundTruthReport] = None
        self._image_stamps: set[int] = set()
        self._gt_stamps: set[int] = set()

    # ---- topic choice ---------------------------------------------------------------------------
    def _pick_image(self, wanted: Optional[str]) -> str:
        images = [t for t in self.topics.values() if t.msgtype in IMAGE_TYPES and t.name != self.gt_topic]
        if wanted:
            for name in (wanted, wanted.rstrip("/") + "/compressed"):
                if name in self.topics:
                    if self.topics[name].msgtype not in IMAGE_TYPES:
                        raise BagError(
                            f"topic {name} has message type {self.topics[name].msgtype}, which is not an "
                            f"image; accepted: {', '.join(IMAGE_TYPES)}. {describe_topics(self.topics)}"
                        )
                    return name
            raise BagError(f"bag {self.path} has no topic {wanted}; {describe_topics(self.topics)}")
        for name in (DEFAULT_IMAGE_TOPIC, DEFAULT_IMAGE_TOPIC + "/compressed"):
            if name in self.topics and self.topics[name].msgtype in IMAGE_TYPES:
                return name
        inputs = [t for t in images if "semantic" not in t.name and "gt" not in t.name.rsplit("/", 1)[-1]]
        if len(inputs) == 1:
            return inputs[0].name
        if not inputs:
            raise BagError(
                f"bag {self.path} has no image topic ({', '.join(IMAGE_TYPES)}); {describe_topics(self.topics)}"
            )
        raise BagError(
            f"bag {self.path} has several image topics ({', '.join(t.name for t in inputs)}); choose one "
            "(--image-topic)"
        )

    def _pick_gt(self, wanted: Optional[str]) -> Optional[str]:
        if wanted == "":
            return None
        if wanted:
            if wanted not in self.topics:
                raise BagError(f"bag {self.path} has no ground-truth topic {wanted}; {describe_topics(self.topics)}")
            return wanted
        if DEFAULT_GT_TOPIC in self.topics:
            return DEFAULT_GT_TOPIC
        found = [t.name for t in self.topics.values() if t.name.endswith("semantic_gt") and t.msgtype == IMAGE]
        return found[0] if len(found) == 1 else None

    def _custom_json(self, key: str, default: Any) -> Any:
        try:
            return json.loads(self.custom_data[key]) if key in self.custom_data else default
        except (TypeError, ValueError):
            warnings.warn(f"{self.path}: custom_data {key} is not valid JSON; ignored", BagWarning, stacklevel=3)
            return default

    # ---- ground truth pairing ---------------------------------------------------------------------
    @property
    def gt_report(self) -> Optional[GroundTruthReport]:
        """How ground truth pairs with images (None without a ground-truth topic); scans the stamps once."""
        if self.gt_topic is None:
            return None
        if self._report is None:
            self._scan()
        return self._report

    def _scan(self) -> None:
        bag = OpenBag(self.path)
        images: list[int] = []
        gts: list[int] = []
        try:
            for topic, _, raw in bag.messages([self.image_topic, self.gt_topic]):
                (images if topic == self.image_topic else gts).append(stamp_of(raw, topic)[0])
        finally:
            bag.close()
        self._image_stamps, self._gt_stamps = set(images), set(gts)
        unmatched = sorted(s for s in gts if s not in self._image_stamps)
        report = GroundTruthReport(
            images=len(images),
            gt=len(gts),
            matched=len(gts) - len(unmatched),
            unmatched=len(unmatched),
            unmatched_examples=unmatched[:5],
            duplicate_image_stamps=len(images) - len(self._image_stamps),
        )
        if gts and report.matched == 0:
            raise BagError(
                f"none of the {len(gts)} ground-truth messages on {self.gt_topic} has the header stamp of an image on "
                f"{self.image_topic} (image stamps {stamp_span(images)}, ground truth {stamp_span(gts)}); "
                "ground truth must carry the stamp of the frame it labels. Nothing could be scored."
            )
        if unmatched:
            warnings.warn(
                f"{self.path}: {len(unmatched)} of {len(gts)} ground-truth messages on {self.gt_topic} "
                f"match no image stamp on {self.image_topic} and are left out (first: "
                f"{', '.join(fmt_stamp(s) for s in unmatched[:3])})",
                BagWarning,
                stacklevel=3,
            )
        self._report = report

    # ---- iteration ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.topics[self.image_topic].count

    def sequence_of(self, stamp_ns: int) -> str:
        """The sequence a stamp belongs to (from the bag's custom_data), else the bag's name."""
        name = ""
        for seq, first in self._sequences:
            if int(first) <= stamp_ns:
                name = str(seq)
        return name or self.path.stem

    def sequence_spans(self) -> list[tuple[str, int, Optional[int]]]:
        """``(sequence, first stamp ns, frames)`` of each sequence the bag's custom data lists (make-bag writes
        them), in bag order; frames is None where the bag does not name its frames. [] for a recorded bag (one
        stream, named after the bag). Read from the metadata only: no message is read."""
        starts = sorted((int(first), str(seq)) for seq, first in self._sequences)
        stamps = sorted(int(k) for k in self._names) if self._names else None
        spans = []
        for i, (first, seq) in enumerate(starts):
            stop = starts[i + 1][0] if i + 1 < len(starts) else None
            count = None if stamps is None else sum(1 for t in stamps if t >= first and (stop is None or t < stop))
            spans.append((seq, first, count))
        return spans

    def __iter__(self) -> Iterator[LabelledFrame]:
        return self.between()

    def between(self, start_ns: Optional[int] = None, stop_ns: Optional[int] = None) -> Iterator[LabelledFrame]:
        """The frames whose header stamp is in [``start_ns``, ``stop_ns``) (None: open), in time order, as
        iterating the bag yields them; messages outside are skipped before they are decoded."""

        def inside(stamp: int) -> bool:
            return (start_ns is None or stamp >= start_ns) and (stop_ns is None or stamp < stop_ns)

        if self.gt_topic is not None:
            _ = self.gt_report  # pairs stamps first (and warns or raises)
        topics = [self.image_topic] + ([self.gt_topic] if self.gt_topic else [])
        pending: deque[list[Any]] = deque()  # [stamp, frame_id, raw image, label or None, waiting for its gt]
        early_gt: dict[int, np.ndarray] = {}
        bag = OpenBag(self.path)
        index = 0
        try:
            for topic, _, raw in bag.messages(topics):
                stamp, frame_id = stamp_of(raw, topic)
                if not inside(stamp):
                    continue
                if topic == self.gt_topic:
                    if stamp not in self._image_stamps:
                        continue  # counted in gt_report
                    label = self._decode_gt(raw, stamp)
                    waiting = next((e for e in pending if e[0] == stamp and e[4]), None)
                    if waiting is not None:
                        waiting[3], waiting[4] = label, False
                    else:
                        early_gt[stamp] = label
                else:
                    label = early_gt.pop(stamp, None)
                    pending.append([stamp, frame_id, raw, label, label is None and stamp in self._gt_stamps])
                while pending and not pending[0][4]:
                    yield self._frame(pending.popleft(), index)
                    index += 1
            while pending:  # only if a ground-truth message vanished between the scan and now
                yield self._frame(pending.popleft(), index)
                index += 1
        finally:
            bag.close()

    def _frame(self, entry: list[Any], index: int) -> LabelledFrame:
        from vsseg_ros.imaging.decode import ImageDecodeError, decode_message

        stamp, frame_id, raw, label, _ = entry
        msg = deserialize(self._store, raw, self.image_type, self.image_topic, f"image {index} ({fmt_stamp(stamp)})")
        try:
            image = decode_message(msg)
        except ImageDecodeError as err:
            raise BagError(
                f"image {index} on {self.image_topic} ({fmt_stamp(stamp)}) cannot be decoded: {err}"
            ) from err
        if not image.flags.writeable:
            image = image.copy()
        if label is not None and label.shape != image.shape[:2]:
            raise BagError(
                f"ground truth for {fmt_stamp(stamp)} is {label.shape[1]}x{label.shape[0]} but its image "
                f"is {image.shape[1]}x{image.shape[0]}; they must be the same size"
            )
        sequence = self.sequence_of(stamp)
        name = self._names.get(str(stamp)) or f"{sequence}_{index:06d}"
        return LabelledFrame(image=image, label=label, stamp_ns=stamp, camera_id=frame_id, sequence=sequence, name=name)

    def _decode_gt(self, raw: bytes, stamp: int) -> np.ndarray:
        what = f"ground truth {fmt_stamp(stamp)} on {self.gt_topic}"
        return mono8_array(deserialize(self._store, raw, IMAGE, self.gt_topic, what), what)

    # ---- raw access (replay) ----------------------------------------------------------------------
    def raw_messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log time ns, serialized message) of ``topics`` in log-time order, as recorded."""
        missing = [t for t in topics if t not in self.topics]
        if missing:
            raise BagError(f"bag {self.path} has no topic {', '.join(missing)}; {describe_topics(self.topics)}")
        bag = OpenBag(self.path)
        try:
            yield from bag.messages(topics)
        finally:
            bag.close()

    def first_image_message(self) -> Any:
        """The first image message, deserialized (rosbags object), e.g. to build a probe frame from."""
        for topic, _, raw in self.raw_messages([self.image_topic]):
            return deserialize(self._store, raw, self.image_type, topic, "the first image")
        raise BagError(f"image topic {self.image_topic} of {self.path} has no messages")

    def serialize(self, msg: Any) -> bytes:
        return bytes(self._store.serialize_cdr(msg, self.image_type))

    def describe(self) -> str:
        gt = f", ground truth {self.gt_topic}" if self.gt_topic else ", no ground truth"
        version = f"v{self.version}" if self.version else "no metadata.yaml"
        return (
            f"{self.path} ({self.storage}, metadata {version}): {len(self)} frames on {self.image_topic} "
            f"({self.image_type}){gt}"
        )


__all__ = ["BagFrames", "GroundTruthReport", "IMAGE_TYPES"]
