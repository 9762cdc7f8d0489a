"""`vsseg-ros eval --output-bag`: the predicted masks (+ boundary confidence and the class map) as a new bag."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

#: topics under each model's prefix
MASK_TOPIC = "semantic/mask"
BOUNDARY_TOPIC = "semantic/boundary_confidence"
CLASS_MAP_TOPIC = "semantic/class_map"


class OutputBag:
    """The segmenters' outputs as a bag (H6's :class:`~vsseg_ros.bags.raw_writer.RawBagWriter`): per model the mono8
    mask, the 32FC1 boundary confidence (when the model has a boundary head) and the latched class map, each
    with the input frame's stamp and frame_id, under ``/<prefix>semantic/...``."""

    def __init__(self, path: Path, storage: str, prefixes: list[str], segmenters: list[Any]) -> None:
        from vsseg_ros.bags.raw_writer import RawBagWriter

        self.writer = RawBagWriter(path, storage=storage, custom_data={"vsseg_ros.source": "vsseg-ros eval"})
        self.ts = self.writer.typestore
        self.prefixes = prefixes
        self.segmenters = segmenters
        self.class_map_written = [False] * len(prefixes)
        for prefix in prefixes:
            self.writer.add_topic(f"{prefix}/{MASK_TOPIC}", "sensor_msgs/msg/Image")
            self.writer.add_topic(
                f"{prefix}/{CLASS_MAP_TOPIC}", "vsseg_ros/msg/ClassMap", transient_local=True, depth=1
            )
        self.boundary_topics: set[str] = set()

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        t = self.ts.types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
        )

    def _image(self, values: Any, header: Any) -> bytes:
        import numpy as np

        values = np.ascontiguousarray(values)
        encoding = "mono8" if values.dtype == np.uint8 else "32FC1"
        data = values.astype(np.uint8 if encoding == "mono8" else np.float32, copy=False).reshape(-1).view(np.uint8)
        msg = self.ts.types["sensor_msgs/msg/Image"](
            header=header,
            height=values.shape[0],
            width=values.shape[1],
            encoding=encoding,
            is_bigendian=0,
            step=values.shape[1] * values.itemsize,
            data=data,
        )
        return bytes(self.ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))

    def write(self, model: int, stamp_ns: int, frame_id: str, result: Any) -> None:
        import numpy as np

        prefix = self.prefixes[model]
        header = self._header(stamp_ns, frame_id)
        if not self.class_map_written[model]:
            seg = self.segmenters[model]
            cm = seg.class_map
            msg = self.ts.types["vsseg_ros/msg/ClassMap"](
                header=header,
                class_ids=np.asarray(cm.ids, np.uint8),
                class_names=list(cm.names),
                colors=np.asarray([v for c in cm.colors for v in c], np.uint8),
                ignore_id=cm.ignore_id,
                model_id=seg.model_id,
            )
            self.writer.write(
                f"{prefix}/{CLASS_MAP_TOPIC}", stamp_ns, bytes(self.ts.serialize_cdr(msg, "vsseg_ros/msg/ClassMap"))
            )
            self.class_map_written[model] = True
        self.writer.write(f"{prefix}/{MASK_TOPIC}", stamp_ns, self._image(result.labels, header))
        if result.boundary is not None:
            topic = f"{prefix}/{BOUNDARY_TOPIC}"
            if topic not in self.boundary_topics:
                self.writer.add_topic(topic, "sensor_msgs/msg/Image")
                self.boundary_topics.add(topic)
            self.writer.write(topic, stamp_ns, self._image(result.boundary.astype(np.float32), header))

    def close(self) -> dict[str, int]:
        return self.writer.close()


def output_bag_path(args: argparse.Namespace, model_ids: list[str]) -> Optional[Path]:
    """Where ``--output-bag`` writes (None: nowhere); ``auto`` = beside the input bag, ``BAG_eval`` (then
    ``BAG_eval2``, ...: an earlier run's bag stays)."""
    if not args.output_bag:
        return None
    if args.output_bag != "auto":
        return Path(args.output_bag)
    if args.bag is None:
        raise ValueError("--output-bag auto needs --bag (it writes beside the input bag); give a path instead")
    from vsseg_ros.bags.bagfile import resolve_bag_path

    base = resolve_bag_path(args.bag)
    folder = base if base.is_dir() else base.parent
    out = folder.parent / f"{folder.name}_eval"
    n = 2
    while out.exists():
        out = folder.parent / f"{folder.name}_eval{n}"
        n += 1
    return out
