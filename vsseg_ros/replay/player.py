"""The rclpy node of a replay: publishes the bag's serialized messages as recorded and records the node's outputs
as they arrive, per camera, with the times that give latency and drops."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Optional, Sequence

from vsseg_ros.replay.cameras import Camera

#: frame_id of the probe frames that wait for the node to serve (never recorded)
PROBE_FRAME_ID = "vsseg_replay_probe"
#: node output -> message type (the node publishes them under <namespace>/semantic/)
OUTPUT_TYPES = {
    "mask": "sensor_msgs/msg/Image",
    "segmentation": "vsseg_ros/msg/SemanticSegmentation",
    "boundary_confidence": "sensor_msgs/msg/Image",
    "confidence": "sensor_msgs/msg/Image",
    "color_mask": "sensor_msgs/msg/Image",
}


class Player:
    """An rclpy node that publishes the bag's serialized messages and records the node's outputs, per camera."""

    def __init__(self, cameras: Sequence[Camera], outputs: Sequence[str], recorder: Any, clock: bool) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo

        from vsseg_ros.ros.qos import latched_qos, qos_profile

        self._rclpy = rclpy
        self.node = Node("vsseg_replay")
        self.recorder = recorder
        self.lock = threading.Lock()
        self.image_pubs = {
            c.topic: self.node.create_publisher(msg_class(c.frames.image_type), c.topic, qos_profile("reliable", 10))
            for c in cameras
        }
        self.info_pubs = {
            c.info_topic: self.node.create_publisher(CameraInfo, c.info_topic, qos_profile("reliable", 10))
            for c in cameras
            if c.info_topic
        }
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self._clock_type = Clock
            self.clock_pub = self.node.create_publisher(Clock, "/clock", qos_profile("reliable", 1))
        # per camera (its image topic in the bag): stamp -> perf_counter() of our publish / of each output's arrival
        self.publish_times: dict[str, dict[int, float]] = {c.topic: {} for c in cameras}
        self.arrivals: dict[str, dict[str, dict[int, float]]] = {c.topic: {o: {} for o in outputs} for c in cameras}
        self.probes: dict[str, dict[str, set[int]]] = {c.topic: {o: set() for o in outputs} for c in cameras}
        self.unreadable = 0
        self.callback_errors: list[str] = []
        self.class_map: Any = None
        self.diagnostics: dict[str, str] = {}  # the newest per-camera status (the only one with one camera)
        self.diagnostics_by_name: dict[str, dict[str, str]] = {}  # status name (ends with ": <image topic>") -> it
        self.diagnostics_time = 0.0  # perf_counter() when the last one arrived
        self.topics = {c.topic: {o: f"{c.prefix}/{o}" for o in outputs} for c in cameras}
        from diagnostic_msgs.msg import DiagnosticArray

        from vsseg_ros.msg import ClassMap

        for cam in cameras:
            for out in outputs:
                topic = self.topics[cam.topic][out]
                recorder.add_topic(topic, OUTPUT_TYPES[out])
                self.node.create_subscription(
                    msg_class(OUTPUT_TYPES[out]),
                    topic,
                    self._guard(self._on_output(cam.topic, out)),
                    qos_profile("reliable", 10),
                    raw=True,
                )
            recorder.add_topic(f"{cam.prefix}/class_map", "vsseg_ros/msg/ClassMap", transient_local=True, depth=1)
            self.node.create_subscription(
                ClassMap,
                f"{cam.prefix}/class_map",
                self._guard(self._on_class_map(f"{cam.prefix}/class_map")),
                latched_qos(),
                raw=True,
            )
        recorder.add_topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self._guard(self._on_diagnostics), qos_profile("reliable", 10), raw=True
        )
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name="vsseg-replay-executor")
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception as err:  # shutdown while spinning, or worse: say so in the result
            if self._rclpy.ok():
                self.callback_errors.append(f"executor stopped: {err!r}")

    def _guard(self, callback: Any) -> Any:
        """An exception in one callback must not stop the executor (and with it all recording)."""

        def guarded(raw: bytes) -> None:
            try:
                callback(raw)
            except Exception as err:
                if len(self.callback_errors) < 20:
                    self.callback_errors.append(repr(err))

        return guarded

    def _on_output(self, camera: str, out: str):
        from vsseg_ros.bags.cdr import CdrError, header_of

        topic = self.topics[camera][out]

        def callback(raw: bytes) -> None:
            t = time.perf_counter()
            try:
                stamp, frame_id = header_of(raw)
            except CdrError:
                self.unreadable += 1
                return
            if frame_id == PROBE_FRAME_ID:
                with self.lock:
                    self.probes[camera][out].add(stamp)
                return
            self.recorder.write(topic, time.time_ns(), raw)
            with self.lock:
                self.arrivals[camera][out].setdefault(stamp, t)

        return callback

    def _on_class_map(self, topic: str):
        from rclpy.serialization import deserialize_message

        from vsseg_ros.msg import ClassMap

        def callback(raw: bytes) -> None:
            self.recorder.write(topic, time.time_ns(), raw)
            self.class_map = deserialize_message(raw, ClassMap)

        return callback

    def _on_diagnostics(self, raw: bytes) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.serialization import deserialize_message

        self.recorder.write("/diagnostics", time.time_ns(), raw)
        for status in deserialize_message(raw, DiagnosticArray).status:
            if any(kv.key == "model_id" for kv in status.values):  # the node's per-camera status
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics_by_name[status.name] = self.diagnostics
                self.diagnostics_time = time.perf_counter()

    def publish_clock(self, t_ns: int) -> None:
        if self.clock_pub is not None:
            msg = self._clock_type()
            msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
            self.clock_pub.publish(msg)

    def publish_image(self, camera: str, raw: bytes, stamp: int) -> None:
        t = time.perf_counter()
        self.image_pubs[camera].publish(raw)
        self.publish_times[camera].setdefault(stamp, t)

    def publish_info(self, topic: str, raw: bytes) -> None:
        self.info_pubs[topic].publish(raw)

    def _serving(self, camera: str) -> bool:
        with self.lock:
            return all(self.probes[camera].values())

    def wait_serving(self, make_probes: dict[str, Any], timeout: float, alive: Any) -> bool:
        """Publish a probe frame (stamped in 1970, frame_id PROBE_FRAME_ID, never recorded) every second on each
        camera until every recorded output of every camera answered one: then the node has matched our
        publishers and our subscriptions. ``make_probes``: camera -> stamp ns -> serialized probe."""
        end = time.monotonic() + timeout
        n = 0
        while time.monotonic() < end and alive():
            n += 1
            for camera, make in make_probes.items():
                if not self._serving(camera):
                    self.image_pubs[camera].publish(make(n * 1_000_000))
            step_end = time.monotonic() + 1.0
            while time.monotonic() < step_end:
                if all(self._serving(c) for c in make_probes):
                    return True
                time.sleep(0.01)
        return False

    def fresh_counters(self, timeout: float) -> Optional[dict[str, Optional[dict[str, int]]]]:
        """Per camera, the node's counters from a /diagnostics message that arrives from now on (None if none
        within ``timeout`` s): a baseline that no longer moves once we stop sending."""
        since = time.perf_counter()
        end = since + timeout
        while time.perf_counter() < end:
            if self.diagnostics_time > since:
                if len(self.publish_times) == 1:
                    return {c: counters(self.diagnostics) for c in self.publish_times}
                return {
                    c: next((counters(v) for k, v in self.diagnostics_by_name.items() if k.endswith(f": {c}")), None)
                    for c in self.publish_times
                }
            time.sleep(0.02)
        return None

    def unanswered(self, out: str) -> bool:
        with self.lock:
            return any(len(self.arrivals[c][out]) < len(p) for c, p in self.publish_times.items())

    def last_arrival(self) -> float:
        with self.lock:
            return max((t for cam in self.arrivals.values() for a in cam.values() for t in a.values()), default=0.0)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


def msg_class(msgtype: str) -> Any:
    import importlib

    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def probe_factory(frames: Any) -> Any:
    """stamp ns -> serialized probe message: the bag's first image with a 1970 stamp and the probe frame_id."""
    first = frames.first_image_message()

    def make(stamp_ns: int) -> bytes:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        stamp = dataclasses.replace(first.header.stamp, sec=sec, nanosec=nanosec)
        header = dataclasses.replace(first.header, stamp=stamp, frame_id=PROBE_FRAME_ID)
        return frames.serialize(dataclasses.replace(first, header=header))

    return make


def counters(values: dict[str, str]) -> Optional[dict[str, int]]:
    keys = ("received", "processed", "dropped", "rejected", "skipped", "failed")
    try:
        return {k: int(values[k]) for k in keys}
    except (KeyError, ValueError):
        return None
