"""The cameras of a replay: which image topics of the bag are played, with their camera_info and ground truth, and
where the node publishes each camera's outputs."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera of a replay: its frames in the bag (keyed by its image topic there), the camera_info topic
    that goes with it, and the prefix of the node's outputs for it."""

    frames: Any  # BagFrames
    info_topic: Optional[str]
    prefix: str

    @property
    def topic(self) -> str:
        return self.frames.image_topic

    @property
    def base_topic(self) -> str:
        """The topic the node is given (the transport adds /compressed)."""
        t = self.frames.image_topic
        return t[: -len("/compressed")] if self.frames.compressed else t


def camera_topics(path: Path) -> list[str]:
    """The bag's camera topics when no --image-topic is given: every image topic ending in image_raw or
    image_raw/compressed."""
    from vsseg_ros.bags.bagfile import bag_topics
    from vsseg_ros.bags.reader import IMAGE_TYPES

    return [
        t.name
        for t in bag_topics(path).values()
        if t.msgtype in IMAGE_TYPES and t.name.endswith(("image_raw", "image_raw/compressed"))
    ]


def open_cameras(args: argparse.Namespace) -> list[Any]:
    """BagFrames per camera: one as ever (``--image-topic`` once or not at all, and the bag has at most one
    ``image_raw`` topic), else one per topic, each with its own ``<parent>/semantic_gt`` when the bag has it."""
    from vsseg_ros.bags.bagfile import BagError
    from vsseg_ros.bags.reader import BagFrames

    wanted = list(args.image_topic or [])
    topics = wanted if len(wanted) > 1 else ([] if wanted else camera_topics(args.bag))
    if len(topics) < 2:
        return [BagFrames(args.bag, image_topic=wanted[0] if wanted else None, gt_topic=args.gt_topic)]
    if len(set(topics)) < len(topics):
        raise BagError(f"--image-topic names a topic twice ({', '.join(topics)}); each camera once")
    if args.gt_topic is not None:
        raise BagError(
            "--gt-topic names one camera's ground truth; with several cameras each camera's is "
            "<parent namespace>/semantic_gt (e.g. /cam_front/semantic_gt for /cam_front/image_raw)"
        )
    if args.namespace:
        raise BagError(
            "--namespace is for one camera; with several cameras the node publishes each camera's "
            "outputs under its image topic's parent namespace"
        )
    cams = []
    for topic in topics:
        probe = BagFrames(args.bag, image_topic=topic, gt_topic="")
        base = probe.image_topic[: -len("/compressed")] if probe.compressed else probe.image_topic
        gt = base.rsplit("/", 1)[0] + "/semantic_gt"
        cams.append(BagFrames(args.bag, image_topic=topic, gt_topic=gt) if gt in probe.topics else probe)
    if len({c.image_topic for c in cams}) < len(cams):
        raise BagError(f"--image-topic names the same camera twice ({', '.join(topics)}); each camera once")
    if len({c.compressed for c in cams}) > 1:
        raise BagError(
            "the cameras mix Image and CompressedImage topics ("
            f"{', '.join(c.image_topic for c in cams)}); one node takes one image transport: choose "
            "cameras of one kind (--image-topic)"
        )
    return cams


def cameras_of(args: argparse.Namespace, cams: Sequence[Any]) -> list[Camera]:
    """The cameras of a replay: one (outputs under --namespace, as ever) or several (each camera's outputs
    under its image topic's parent namespace, as the node publishes them with ``image_topics``)."""
    from vsseg_ros.bags.writer import CAMERA_INFO, camera_info_topic_for

    ns = args.namespace.rstrip("/")
    out = []
    for frames in cams:
        base = frames.image_topic[: -len("/compressed")] if frames.compressed else frames.image_topic
        info_topic = camera_info_topic_for(base)
        if frames.topics.get(info_topic) is None or frames.topics[info_topic].msgtype != CAMERA_INFO:
            info_topic = None
        if len(cams) == 1:
            prefix = f"{ns}/semantic" if ns else "/semantic"
        else:
            prefix = base.rsplit("/", 1)[0] + "/semantic"
        out.append(Camera(frames, info_topic, prefix))
    return out
