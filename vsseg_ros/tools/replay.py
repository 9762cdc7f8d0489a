"""`vsseg-ros replay --bag BAG`: play a bag live through the segmentation node over DDS and score what comes back.

What ``ros2 bag play`` + ``ros2 bag record`` would do, without rosbag2 (which no package registry offers):
the bag's image (and camera_info) messages are published as recorded (the serialized bytes, headers untouched)
at the recorded timing divided by ``--rate``, optionally with ``/clock`` for a node on ``use_sim_time``. The node
is started for the run (or one already running is used, ``--node-running``); its outputs are recorded as they
arrive into an output bag, then scored against the input bag like ``eval`` does, plus what only a live run shows:
frames dropped, end-to-end latency (our publish to the output's arrival, wall clock), output rate.

DDS stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) with the shared-memory Fast DDS profile for
camera-sized frames (:mod:`vsseg_ros.ros.node_process`); a node we start gets a fresh ROS_DOMAIN_ID.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from vsseg_ros.bags.writer import STORAGES

PROBE_FRAME_ID = "vsseg_replay_probe"
#: node output -> message type (the node publishes them under <namespace>/semantic/)
OUTPUT_TYPES = {
    "mask": "sensor_msgs/msg/Image",
    "segmentation": "vsseg_ros/msg/SemanticSegmentation",
    "boundary_confidence": "sensor_msgs/msg/Image",
    "confidence": "sensor_msgs/msg/Image",
    "color_mask": "sensor_msgs/msg/Image",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bag", type=Path, required=True, help="input bag (vsseg-ros make-bag, ros2 bag record, ...)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (1 = recorded timing)")
    p.add_argument(
        "--clock", action="store_true", help="publish /clock with the bag's time (and start the node with use_sim_time)"
    )
    p.add_argument(
        "--image-topic",
        action="append",
        default=None,
        help="image topic in the bag; give it several times for several cameras into one node (default: "
        "every image topic ending in image_raw(/compressed) when there are several, else "
        "/camera/image_raw or the bag's only image topic)",
    )
    p.add_argument(
        "--gt-topic",
        default=None,
        help="ground-truth topic (default /camera/semantic_gt when present; "
        "several cameras: each camera's <parent>/semantic_gt)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for outputs/ (recorded output bag), replay.json, node.log (default out/replay/<bag>)",
    )
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="storage of the output bag")
    p.add_argument(
        "--outputs",
        nargs="+",
        choices=tuple(OUTPUT_TYPES),
        default=["mask", "segmentation"],
        help="node outputs to subscribe to and record (default: mask segmentation); the first one "
        "gives latency and drops",
    )
    p.add_argument(
        "--node-running",
        action="store_true",
        help="use a node that is already running (same ROS_DOMAIN_ID) instead of starting one",
    )
    p.add_argument("--namespace", default="", help="the node's namespace (its outputs are <ns>/semantic/...)")
    p.add_argument("--params-file", type=Path, help="node parameters YAML to start from (started node only)")
    p.add_argument("--model", default="", help="checkpoint for the started node (default: the packaged model)")
    p.add_argument("--device", default="auto", help="device for the started node: auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--backend",
        default="",
        help="backend for the started node: torch, onnxruntime, openvino, "
        "tensorrt, auto (default: the node's own, auto)",
    )
    p.add_argument("--max-frames", type=int, default=None, help="publish at most this many images")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the node to serve")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="after the last frame, stop waiting once no output arrived for this many seconds",
    )
    p.add_argument("--no-tc", action="store_true", help="skip the optical-flow temporal consistency (TC) metric")
    p.add_argument(
        "--score-recorded",
        type=Path,
        default=None,
        metavar="OUTPUT_BAG",
        help="run nothing: score an output bag recorded elsewhere (e.g. ros2 bag record of the node's "
        "/semantic/mask while ros2 bag play played --bag); no latency",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")


# ---- the live part ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Camera:
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


class _Player:
    """An rclpy node that publishes the bag's serialized messages and records the node's outputs, per camera."""

    def __init__(self, cameras: Sequence[_Camera], outputs: Sequence[str], recorder: Any, clock: bool) -> None:
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
            c.topic: self.node.create_publisher(_msg_class(c.frames.image_type), c.topic, qos_profile("reliable", 10))
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
                    _msg_class(OUTPUT_TYPES[out]),
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
                    return {c: _counters(self.diagnostics) for c in self.publish_times}
                return {
                    c: next((_counters(v) for k, v in self.diagnostics_by_name.items() if k.endswith(f": {c}")), None)
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


def _msg_class(msgtype: str) -> Any:
    import importlib

    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _probe_factory(frames: Any) -> Any:
    """stamp ns -> serialized probe message: the bag's first image with a 1970 stamp and the probe frame_id."""
    first = frames.first_image_message()

    def make(stamp_ns: int) -> bytes:
        sec, nanosec = divmod(stamp_ns, 1_000_000_000)
        stamp = dataclasses.replace(first.header.stamp, sec=sec, nanosec=nanosec)
        header = dataclasses.replace(first.header, stamp=stamp, frame_id=PROBE_FRAME_ID)
        return frames.serialize(dataclasses.replace(first, header=header))

    return make


def _counters(values: dict[str, str]) -> Optional[dict[str, int]]:
    keys = ("received", "processed", "dropped", "rejected", "skipped", "failed")
    try:
        return {k: int(values[k]) for k in keys}
    except (KeyError, ValueError):
        return None


def _parse_node_counters(log: str, camera: Optional[str] = None) -> Optional[dict[str, int]]:
    """The counters the node logs when it stops (``stopping; frames {...}``); a node with several cameras logs
    ``{image topic: {...}, ...}``, of which ``camera`` picks one."""
    import ast

    matches = list(re.finditer(r"stopping; frames (\{.*\})\s*$", log, re.MULTILINE))
    m = matches[-1] if matches else None  # the last stop the log holds
    if m is None:
        return None
    try:
        found = ast.literal_eval(m.group(1))
        if camera is not None and all(isinstance(v, dict) for v in found.values()):
            found = found.get(camera)
        return {k: int(v) for k, v in found.items()}
    except (ValueError, SyntaxError, AttributeError, TypeError):
        return None


def _rate(times: Sequence[float]) -> Optional[float]:
    times = sorted(times)
    return round((len(times) - 1) / (times[-1] - times[0]), 2) if len(times) > 1 and times[-1] > times[0] else None


def _cameras(args: argparse.Namespace, cams: Sequence[Any]) -> list[_Camera]:
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
        out.append(_Camera(frames, info_topic, prefix))
    return out


def _live(args: argparse.Namespace, cams: Sequence[Any], out_dir: Path) -> dict[str, Any]:
    from tqdm import tqdm

    from vsseg_ros.bags.cdr import stamp_of
    from vsseg_ros.bags.writer import RawBagWriter
    from vsseg_ros.metrics.latency import latency_summary
    from vsseg_ros.ros.node_process import apply_local_ros_env

    domain = int(os.environ.get("ROS_DOMAIN_ID") or 0) if args.node_running else None
    env = apply_local_ros_env(domain_id=domain)
    import rclpy

    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    cameras = _cameras(args, cams)
    multi = len(cameras) > 1
    frames = cameras[0].frames  # one bag: any camera's reader plays all topics
    ns = args.namespace.rstrip("/")
    node = None
    if not args.node_running:
        params: dict[str, Any] = {"stats_period": 1.0}
        if multi:
            params["image_topics"] = [c.base_topic for c in cameras]
        if args.model:
            params["model_path"] = str(args.model)
        if args.device:
            params["device"] = args.device
        if args.backend:
            params["backend"] = args.backend
        if frames.compressed:
            params["image_transport"] = "compressed"
        if args.clock:
            params["use_sim_time"] = True
        pf = write_params_file(params, path=out_dir / "node_params.yaml", base=args.params_file)
        extra = ("--namespace", ns) if ns else ()
        node = NodeProcess(
            params_file=pf, image_topic=cameras[0].base_topic, env=env, log_path=out_dir / "node.log", extra_args=extra
        )
    outputs_bag = out_dir / "outputs"
    if outputs_bag.exists():
        shutil.rmtree(outputs_bag)  # this folder belongs to the tool: the previous run's recording
    recorder = RawBagWriter(
        outputs_bag,
        storage=args.storage,
        custom_data={"vsseg_ros.replay_of": str(frames.path), "vsseg_ros.rate": str(args.rate)},
    )
    rclpy.init()
    player = None
    result: dict[str, Any] = {
        "bag": str(frames.path),
        "image_topic": frames.image_topic,
        "rate": args.rate,
        "ros_domain_id": env["ROS_DOMAIN_ID"],
        "node": "running" if node is None else "started",
    }
    if multi:
        result["image_topic"] = [c.topic for c in cameras]
    image_topics = [c.topic for c in cameras]
    try:
        player = _Player(cameras, args.outputs, recorder, args.clock)
        alive = node.alive if node is not None else (lambda: True)
        first_log = None
        for _, log_ns, _ in frames.raw_messages(image_topics):
            first_log = log_ns
            break
        player.publish_clock(first_log)
        for cam in cameras:
            print(f"replay: {cam.frames.describe()}")
        served = [t for c in player.topics.values() for t in c.values()]
        print(
            f"replay: waiting for the node to serve {', '.join(served)} "
            f"(ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, DDS on loopback)"
        )
        if not player.wait_serving({c.topic: _probe_factory(c.frames) for c in cameras}, args.startup_timeout, alive):
            why = (
                f"the node exited; its log ({node.log_path}):\n{node.log()[-3000:]}"
                if node is not None and not node.alive()
                else f"no answer on {', '.join(served)} within {args.startup_timeout:.0f} s"
            )
            raise RuntimeError(f"the node did not come up: {why}")
        if player.class_map is not None:
            result["model_id"] = player.class_map.model_id
        # The node's counters include the probes; a baseline taken now (no probe in flight any more) separates
        # the bag's frames from them. The node we start reports every second.
        baseline = player.fresh_counters(2.5)
        topics = image_topics + [c.info_topic for c in cameras if c.info_topic]
        per_camera_total = {
            c.topic: min(len(c.frames), args.max_frames) if args.max_frames else len(c.frames) for c in cameras
        }
        lags: list[float] = []
        sent = {t: 0 for t in image_topics}
        t0: Optional[float] = None
        with tqdm(total=sum(per_camera_total.values()), desc="replay", unit="frame") as bar:
            for topic, log_ns, raw in frames.raw_messages(topics):
                if t0 is None:  # the schedule starts with the first message read, not with opening the bag
                    t0 = time.perf_counter() - (log_ns - first_log) / 1e9 / args.rate
                target = t0 + (log_ns - first_log) / 1e9 / args.rate
                while (now := time.perf_counter()) < target:
                    time.sleep(min(0.005, target - now))
                lags.append((time.perf_counter() - target) * 1e3)
                player.publish_clock(log_ns)
                if topic in sent:
                    if args.max_frames and sent[topic] >= args.max_frames:
                        if all(n >= args.max_frames for n in sent.values()):
                            break
                        continue
                    player.publish_image(topic, bytes(raw), stamp_of(raw))
                    sent[topic] += 1
                    bar.update(1)
                else:
                    player.publish_info(topic, bytes(raw))
        primary = args.outputs[0]
        # Drain: wait for the outputs still in flight, until every frame is answered or nothing came for a while.
        end_publish = time.perf_counter()
        while player.unanswered(primary) and alive():
            idle = time.perf_counter() - max(end_publish, player.last_arrival())
            if idle > args.drain_timeout:
                break
            time.sleep(0.05)
        final = player.fresh_counters(2.5) if node is None else None  # a running node: its next report
    finally:
        node_rc = node.stop() if node is not None else None  # a temporal node publishes held-back frames now
        if player is not None:
            deadline = time.perf_counter() + 1.0
            while time.perf_counter() < deadline:
                time.sleep(0.05)
            player.close()
        rclpy.try_shutdown()
        counts = recorder.close()
    per_camera = {}
    for cam in cameras:
        counters = (
            _parse_node_counters(node.log(), cam.topic if multi else None)
            if node is not None
            else (final or {}).get(cam.topic)
        )
        if not counters and not multi:
            counters = player.diagnostics or None
        per_camera[cam.topic] = _camera_numbers(player, cam.topic, primary, counters, (baseline or {}).get(cam.topic))
    common = {
        "publish_lag_ms": _rounded(latency_summary([max(0.0, x) for x in lags])),
        "recording_errors": player.callback_errors,
        "node_exit_code": node_rc,
        "output_bag": str(outputs_bag),
        "output_bag_messages": counts,
    }
    if not multi:
        result.update(per_camera[frames.image_topic])
        result.update(common)
        return result
    result["cameras"] = per_camera
    totals = {k: sum(c[k] for c in per_camera.values()) for k in ("frames_published", "frames_dropped")}
    result.update(totals)
    result["frames_received"] = {o: sum(c["frames_received"][o] for c in per_camera.values()) for o in args.outputs}
    result["outputs_with_unknown_stamp"] = {
        o: sum(c["outputs_with_unknown_stamp"][o] for c in per_camera.values()) for o in args.outputs
    }
    result["node_counters"] = {c: v["node_counters"] for c, v in per_camera.items()}
    result.update(common)
    return result


def _camera_numbers(
    player: _Player,
    camera: str,
    primary: str,
    node_counters: Optional[dict[str, int]],
    baseline: Optional[dict[str, int]],
) -> dict[str, Any]:
    """One camera's live numbers: what we published, what came back (by stamp), latency, rates, counters."""
    from vsseg_ros.metrics.latency import latency_summary

    publish = player.publish_times[camera]
    arrivals = player.arrivals[camera]
    primary_arrivals = arrivals[primary]
    latency = {s: (t - publish[s]) * 1e3 for s, t in primary_arrivals.items() if s in publish}
    out: dict[str, Any] = {
        "frames_published": len(publish),
        "frames_received": {o: sum(1 for s in a if s in publish) for o, a in arrivals.items()},
        "frames_dropped": len(publish) - sum(1 for s in primary_arrivals if s in publish),
        "outputs_with_unknown_stamp": {o: sum(1 for s in a if s not in publish) for o, a in arrivals.items()},
        "latency_ms": _rounded(latency_summary(latency.values())),
        "input_rate_hz": _rate(list(publish.values())),
        "output_rate_hz": _rate(list(primary_arrivals.values())),
        "node_counters": node_counters,
    }
    if node_counters and baseline:  # where the drops happened: before the node's callback, or in the node
        out["frames_lost_before_node"] = len(publish) - (node_counters["received"] - baseline["received"])
        out["frames_dropped_by_node"] = node_counters["dropped"] - baseline["dropped"]
    out["_latency_by_stamp"] = latency
    return out


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}


def _camera_topics(path: Path) -> list[str]:
    """The bag's camera topics when no --image-topic is given: every image topic ending in image_raw or
    image_raw/compressed."""
    from vsseg_ros.bags.reader import IMAGE_TYPES, bag_topics

    return [
        t.name
        for t in bag_topics(path).values()
        if t.msgtype in IMAGE_TYPES and t.name.endswith(("image_raw", "image_raw/compressed"))
    ]


def _open_cameras(args: argparse.Namespace) -> list[Any]:
    """BagFrames per camera: one as ever (``--image-topic`` once or not at all, and the bag has at most one
    ``image_raw`` topic), else one per topic, each with its own ``<parent>/semantic_gt`` when the bag has it."""
    from vsseg_ros.bags.reader import BagError, BagFrames

    wanted = list(args.image_topic or [])
    topics = wanted if len(wanted) > 1 else ([] if wanted else _camera_topics(args.bag))
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


# ---- the command -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    import warnings

    from vsseg_ros.bags.reader import BagError, BagMasks, BagWarning
    from vsseg_ros.bags.score import score_outputs

    if not args.rate > 0:
        print(f"vsseg-ros replay: --rate must be > 0, got {args.rate}", file=sys.stderr)
        return 2
    if args.max_frames is not None and args.max_frames <= 0:
        print("vsseg-ros replay: --max-frames must be > 0", file=sys.stderr)
        return 2
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", BagWarning)
        try:
            cams = _open_cameras(args)
            for frames in cams:
                _ = frames.gt_report  # pairs ground truth with images now: errors before the node starts
        except BagError as err:
            print(f"vsseg-ros replay: {err}", file=sys.stderr)
            return 2
        caught += [str(w.message) for w in seen if issubclass(w.category, BagWarning)]
    for text in dict.fromkeys(caught):  # a bag opened once per camera warns once
        print(f"vsseg-ros replay: warning: {text}", file=sys.stderr)
    frames = cams[0]
    multi = len(cams) > 1
    out_dir = args.out or Path("out/replay") / frames.path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.score_recorded is not None:
            result: dict[str, Any] = {"bag": str(frames.path), "output_bag": str(args.score_recorded)}
            if multi:
                result["cameras"] = {c.image_topic: {} for c in cams}
            output_bag = args.score_recorded
        else:
            result = _live(args, cams, out_dir)
            output_bag = Path(result["output_bag"])
        cameras = _cameras(args, cams)
        scores = {}
        for cam in cameras:
            live = result["cameras"][cam.topic] if multi else result
            latency = live.pop("_latency_by_stamp", None)
            stamps = (
                None
                if not args.max_frames or args.score_recorded is not None
                else _published_stamps(cam.frames, args.max_frames)
            )
            masks = BagMasks(output_bag, topic=_mask_topic(output_bag, cam.prefix) if multi else None)
            scores[cam.topic] = score_outputs(
                cam.frames, masks, stamps=stamps, latency_ms=latency, flow_consistency=not args.no_tc
            )
            if multi:
                live["score"] = scores[cam.topic]
                if cam.frames.gt_report is not None:
                    live["ground_truth"] = cam.frames.gt_report.as_dict()
    except BagError as err:
        print(f"vsseg-ros replay: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"vsseg-ros replay: {err}", file=sys.stderr)
        return 1
    result["score"] = _total_score(list(scores.values())) if multi else scores[frames.image_topic]
    if not multi and frames.gt_report is not None:
        result["ground_truth"] = frames.gt_report.as_dict()
    (out_dir / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
    if multi:
        for topic, cam in result["cameras"].items():
            _print_summary(cam, f"replay [{topic}]: ")
        _print_summary({"score": result["score"]}, "replay [all cameras]: ")
    else:
        _print_summary(result)
    print(
        f"replay: wrote {out_dir / 'replay.json'}"
        + (f", output bag {result['output_bag']}" if "output_bag" in result else "")
    )
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result["score"]["frames_received"] else 1


def _mask_topic(output_bag: Path, prefix: str) -> str:
    """A camera's mask topic in an output bag: ``<prefix>/mask``, else ``<prefix>/segmentation``."""
    from vsseg_ros.bags.reader import bag_topics

    topics = bag_topics(output_bag)
    return next((t for t in (f"{prefix}/mask", f"{prefix}/segmentation") if t in topics), f"{prefix}/mask")


def _total_score(scores: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cameras' counts added up (accuracy stays per camera: each camera's stream is scored on its own)."""
    keys = (
        "frames_published",
        "frames_received",
        "frames_dropped",
        "outputs_with_unknown_stamp",
        "duplicate_outputs",
        "labelled_frames",
        "labelled_frames_scored",
    )
    total: dict[str, Any] = {k: sum(s[k] for s in scores) for k in keys}
    total["drop_rate"] = (
        round(1 - total["frames_received"] / total["frames_published"], 4) if total["frames_published"] else None
    )
    total["notes"] = []
    return total


def _published_stamps(frames: Any, n: int) -> set[int]:
    from vsseg_ros.bags.cdr import stamp_of

    stamps = []
    for _, _, raw in frames.raw_messages([frames.image_topic]):
        if len(stamps) >= n:
            break
        stamps.append(stamp_of(raw))
    return set(stamps)


def _print_summary(r: dict[str, Any], lead: str = "replay: ") -> None:
    s = r["score"]
    print(
        f"{lead}{s['frames_published']} frames published, {s['frames_received']} received, "
        f"{s['frames_dropped']} dropped ({100 * (s['drop_rate'] or 0):.1f} %), "
        f"{s['outputs_with_unknown_stamp']} outputs with a stamp the input does not have"
    )
    if "latency_ms" in r:
        lat = r["latency_ms"]
        print(
            f"{lead}end-to-end latency p50 {lat['p50']} ms, p95 {lat['p95']} ms (max {lat['max']}); input "
            f"{r['input_rate_hz']} Hz, output {r['output_rate_hz']} Hz; node counters {r.get('node_counters')}"
        )
        if "frames_lost_before_node" in r:
            print(
                f"{lead}of the drops, {r['frames_dropped_by_node']} were replaced by a newer frame while the node "
                f"was busy and {r['frames_lost_before_node']} never reached its callback (overwritten in its "
                "depth-1 input queue, or lost on the way)"
            )
    acc = s.get("accuracy")
    if acc:

        def pct(v: Optional[float]) -> str:
            return "-" if v is None else f"{100 * v:.1f} %"

        print(
            f"{lead}mIoU {pct(acc['miou'])} over {s['labelled_frames_scored']} of {s['labelled_frames']} labelled "
            f"frames, boundary F {pct(acc['boundary_f'])}, mVC8 {pct(acc['mvc8'])}, TC {pct(acc['tc'])}"
        )
    for note in s.get("notes", []):
        print(f"{lead}note: {note}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros replay")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
