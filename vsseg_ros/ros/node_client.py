"""The other side of the node: publishes camera frames and collects what the node publishes.

Used by the demo, the benchmarks, soak and the tests, with the node in a
:class:`~vsseg_ros.ros.node_process.NodeProcess`; each received message is kept with its arrival time, keyed by
the stamp it carries (the node copies the input header unchanged).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vsseg_ros.imaging.encode import encode_image
from vsseg_ros.ros.qos import latched_qos, qos_profile

OUTPUT_TYPES = {
    "mask": Image,
    "boundary_confidence": Image,
    "confidence": Image,
    "color_mask": Image,
    "camera_info": CameraInfo,
}


def make_camera_info(width: int, height: int, stamp_ns: int, frame_id: str, fx: float = 100.0) -> CameraInfo:
    """A pinhole camera_info (principal point at the centre, a stereo Tx term) for tests and benchmarks."""
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    info.k = [fx, 0.0, cx, 0.0, fx * 1.1, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, -fx * 0.12, 0.0, fx * 1.1, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.header.stamp.sec, info.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    info.header.frame_id = frame_id
    return info


def stamp_key(header: Any) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


def make_image_msg(rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera") -> Image:
    """An Image message in ``encoding`` from an RGB array (data passed at construction: fast in rclpy)."""
    import array

    data, step = encode_image(rgb, encoding)
    buf = array.array("B")
    buf.frombytes(data)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0, step=step, data=buf)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


@dataclass
class Received:
    msgs: dict[tuple[int, int], Any] = field(default_factory=dict)
    times: dict[tuple[int, int], float] = field(default_factory=dict)


class SegmentationClient:
    """A camera publisher plus subscribers to the node's outputs, spun in a background thread."""

    def __init__(
        self,
        image_topic: str = "/camera/image_raw",
        namespace: str = "",
        outputs: Sequence[str] = ("segmentation",),
        image_qos: str = "reliable",
        output_qos: Optional[QoSProfile] = None,
        compressed: bool = False,
        name: str = "vsseg_client",
        keep_messages: bool = True,
    ) -> None:
        """``keep_messages=False`` keeps only each output's header (long runs: a soak receives thousands of
        camera-sized masks)."""
        from vsseg_ros.msg import ClassMap, SemanticSegmentation

        if not rclpy.ok():
            rclpy.init()
        self.node = Node(name)
        prefix = f"{namespace.rstrip('/')}/semantic" if namespace else "/semantic"
        self.publish_times: dict[tuple[int, int], float] = {}
        self._compressed = compressed
        self._keep = keep_messages
        msg_type = CompressedImage if compressed else Image
        topic = image_topic + "/compressed" if compressed else image_topic
        self.image_pub = self.node.create_publisher(msg_type, topic, qos_profile(image_qos, 10))
        # the camera's camera_info beside its image (image_transport's rule)
        self.camera_info_topic = image_topic.rsplit("/", 1)[0] + "/camera_info"
        self._info_pub = self.node.create_publisher(CameraInfo, self.camera_info_topic, qos_profile(image_qos, 10))
        self.received: dict[str, Received] = {}
        out_qos = output_qos or qos_profile("reliable", 10)
        self._lock = threading.Lock()
        for out in outputs:
            typ = SemanticSegmentation if out == "segmentation" else OUTPUT_TYPES[out]
            self.received[out] = Received()
            self.node.create_subscription(typ, f"{prefix}/{out}", self._collector(out), out_qos)
        self.class_maps: list[Any] = []
        self.node.create_subscription(ClassMap, f"{prefix}/class_map", self.class_maps.append, latched_qos())
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def _collector(self, out: str):
        def on_msg(msg: Any) -> None:
            t = time.perf_counter()
            key = stamp_key(msg.header)
            with self._lock:
                self.received[out].msgs[key] = msg if self._keep else msg.header
                self.received[out].times[key] = t

        return on_msg

    def publish(self, msg: Any) -> tuple[int, int]:
        key = stamp_key(msg.header)
        self.publish_times[key] = time.perf_counter()
        self.image_pub.publish(msg)
        return key

    def publish_camera_info(self, msg: Any) -> None:
        self._info_pub.publish(msg)

    def keys(self, out: str) -> set[tuple[int, int]]:
        """The stamps received on ``out``."""
        with self._lock:
            return set(self.received[out].msgs)

    def count(self, out: str) -> int:
        with self._lock:
            return len(self.received[out].msgs)

    def get(self, out: str, key: tuple[int, int]) -> Optional[Any]:
        with self._lock:
            return self.received[out].msgs.get(key)

    def wait_for(self, out: str, key: tuple[int, int], timeout: float) -> Optional[Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.get(out, key)
            if msg is not None:
                return msg
            time.sleep(0.002)
        return self.get(out, key)

    def wait_for_class_map(self, timeout: float, alive: Callable[[], bool] = lambda: True) -> Optional[Any]:
        """The node's class map (its sign that the model is loaded); gives up early once ``alive()`` is False."""
        end = time.monotonic() + timeout
        while not self.class_maps and time.monotonic() < end and alive():
            time.sleep(0.02)
        return self.class_maps[-1] if self.class_maps else None

    def wait_until_serving(
        self, out: str, probe: np.ndarray, timeout: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        """Publish a probe frame every second until the node answers on ``out``.

        Matching is not symmetric in time: our publisher may see the node before the node sees our output
        subscription, and the node skips frames nobody subscribes to. Probes are stamped in 1970, far from
        any real frame, and are forgotten afterwards."""
        end = time.monotonic() + timeout
        n = 0
        while time.monotonic() < end and alive():
            n += 1
            key = self.publish(self._probe_msg(probe, n * 1_000_000))
            if self.wait_for(out, key, 1.0) is not None:
                with self._lock:
                    for rec in self.received.values():
                        for k in [k for k in rec.msgs if k[0] == 0]:
                            rec.msgs.pop(k), rec.times.pop(k, None)
                self.publish_times = {k: v for k, v in self.publish_times.items() if k[0] != 0}
                return True
        return False

    def _probe_msg(self, rgb: np.ndarray, stamp_ns: int) -> Any:
        if not self._compressed:
            return make_image_msg(rgb, "rgb8", stamp_ns, frame_id="probe")
        from vsseg_ros.imaging.encode import encode_compressed

        msg = CompressedImage(format="png", data=encode_compressed(rgb, "png"))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = "probe"
        return msg

    def arrival_times(self, out: str) -> dict[tuple[int, int], float]:
        """A copy of ``{stamp key: perf_counter() at arrival}`` for one output."""
        with self._lock:
            return dict(self.received[out].times)

    def latency_ms(self, out: str) -> list[float]:
        with self._lock:
            times = dict(self.received[out].times)
        return [(t - self.publish_times[k]) * 1e3 for k, t in times.items() if k in self.publish_times]

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
