"""`vsseg-ros replay --bag BAG`: play a bag live through the segmentation node over DDS and score what comes back.

What ``ros2 bag play`` + ``ros2 bag record`` would do, without rosbag2 (which no package registry offers):
the bag's image (and camera_info) messages are published as recorded (the serialized bytes, headers untouched)
at the recorded timing divided by ``--rate``, optionally with ``/clock`` for a node on ``use_sim_time``. The node
is started for the run (or one already running is used, ``--node-running``); its outputs are recorded as they
arrive into an output bag, then scored against the input bag like ``eval`` does, plus what only a live run shows:
frames dropped, end-to-end latency (our publish to the output's arrival, wall clock), output rate.

DDS stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) with the shared-memory Fast DDS profile for
camera-sized frames (:mod:`vsseg_ros.tools.rosenv`); a node we start gets a fresh ROS_DOMAIN_ID.
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
        default=None,
        help="image topic in the bag (default: /camera/image_raw or the bag's only image topic)",
    )
    p.add_argument("--gt-topic", default=None, help="ground-truth topic (default /camera/semantic_gt when present)")
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
class _Player:
    """An rclpy node that publishes the bag's serialized messages and records the node's outputs."""

    def __init__(
        self,
        image_topic: str,
        image_type: Any,
        info_topic: Optional[str],
        prefix: str,
        outputs: Sequence[str],
        recorder: Any,
        clock: bool,
    ) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import CameraInfo

        from vsseg_ros.ros.qos import latched_qos, qos_profile

        self._rclpy = rclpy
        self.node = Node("vsseg_replay")
        self.recorder = recorder
        self.lock = threading.Lock()
        self.image_pub = self.node.create_publisher(image_type, image_topic, qos_profile("reliable", 10))
        self.info_pub = (
            self.node.create_publisher(CameraInfo, info_topic, qos_profile("reliable", 10)) if info_topic else None
        )
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self._clock_type = Clock
            self.clock_pub = self.node.create_publisher(Clock, "/clock", qos_profile("reliable", 1))
        self.publish_times: dict[int, float] = {}
        self.arrivals: dict[str, dict[int, float]] = {o: {} for o in outputs}
        self.probes: dict[str, set[int]] = {o: set() for o in outputs}
        self.unreadable = 0
        self.callback_errors: list[str] = []
        self.class_map: Any = None
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_time = 0.0  # perf_counter() when the last one arrived
        self.topics = {o: f"{prefix}/{o}" for o in outputs}
        for out in outputs:
            recorder.add_topic(self.topics[out], OUTPUT_TYPES[out])
            self.node.create_subscription(
                _msg_class(OUTPUT_TYPES[out]),
                self.topics[out],
                self._guard(self._on_output(out)),
                qos_profile("reliable", 10),
                raw=True,
            )
        from diagnostic_msgs.msg import DiagnosticArray

        from vsseg_ros.msg import ClassMap

        recorder.add_topic(f"{prefix}/class_map", "vsseg_ros/msg/ClassMap", transient_local=True, depth=1)
        self.node.create_subscription(
            ClassMap,
            f"{prefix}/class_map",
            self._guard(self._on_class_map(f"{prefix}/class_map")),
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

    def _on_output(self, out: str):
        from vsseg_ros.bags.cdr import CdrError, header_of

        topic = self.topics[out]

        def callback(raw: bytes) -> None:
            t = time.perf_counter()
            try:
                stamp, frame_id = header_of(raw)
            except CdrError:
                self.unreadable += 1
                return
            if frame_id == PROBE_FRAME_ID:
                with self.lock:
                    self.probes[out].add(stamp)
                return
            self.recorder.write(topic, time.time_ns(), raw)
            with self.lock:
                self.arrivals[out].setdefault(stamp, t)

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
                self.diagnostics_time = time.perf_counter()

    def publish_clock(self, t_ns: int) -> None:
        if self.clock_pub is not None:
            msg = self._clock_type()
            msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
            self.clock_pub.publish(msg)

    def publish_image(self, raw: bytes, stamp: int) -> None:
        t = time.perf_counter()
        self.image_pub.publish(raw)
        self.publish_times.setdefault(stamp, t)

    def wait_serving(self, make_probe: Any, timeout: float, alive: Any) -> bool:
        """Publish a probe frame (stamped in 1970, frame_id PROBE_FRAME_ID, never recorded) every second until
        every recorded output answered one: then the node has matched our publisher and our subscriptions."""
        end = time.monotonic() + timeout
        n = 0
        while time.monotonic() < end and alive():
            n += 1
            stamp = n * 1_000_000
            self.image_pub.publish(make_probe(stamp))
            step_end = time.monotonic() + 1.0
            while time.monotonic() < step_end:
                with self.lock:
                    if all(self.probes[o] for o in self.probes):
                        return True
                time.sleep(0.01)
        return False

    def fresh_counters(self, timeout: float) -> Optional[dict[str, int]]:
        """The node's counters from a /diagnostics message that arrives from now on (None if none within
        ``timeout`` s): a baseline that no longer moves once we stop sending."""
        since = time.perf_counter()
        end = since + timeout
        while time.perf_counter() < end:
            if self.diagnostics_time > since:
                return _counters(self.diagnostics)
            time.sleep(0.02)
        return None

    def received(self, out: str) -> int:
        with self.lock:
            return len(self.arrivals[out])

    def last_arrival(self) -> float:
        with self.lock:
            return max((t for a in self.arrivals.values() for t in a.values()), default=0.0)

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


def _parse_node_counters(log: str) -> Optional[dict[str, int]]:
    """The counters the node logs when it stops (``stopping; frames {...}``)."""
    matches = list(re.finditer(r"stopping; frames (\{[^}]*\})", log))
    m = matches[-1] if matches else None  # the last stop the log holds
    if m is None:
        return None
    try:
        return {k: int(v) for k, v in json.loads(m.group(1).replace("'", '"')).items()}
    except (ValueError, AttributeError):
        return None


def _rate(times: Sequence[float]) -> Optional[float]:
    times = sorted(times)
    return round((len(times) - 1) / (times[-1] - times[0]), 2) if len(times) > 1 and times[-1] > times[0] else None


def _live(args: argparse.Namespace, frames: Any, out_dir: Path) -> dict[str, Any]:
    from tqdm import tqdm

    from vsseg_ros.bags.cdr import stamp_of
    from vsseg_ros.bags.writer import CAMERA_INFO, RawBagWriter, camera_info_topic_for
    from vsseg_ros.metrics.latency import latency_summary
    from vsseg_ros.tools.rosenv import apply_local_ros_env

    domain = int(os.environ.get("ROS_DOMAIN_ID") or 0) if args.node_running else None
    env = apply_local_ros_env(domain_id=domain)
    import rclpy
    from sensor_msgs.msg import CompressedImage, Image

    from vsseg_ros.tools.nodeproc import NodeProcess, write_params_file

    base_topic = frames.image_topic[: -len("/compressed")] if frames.compressed else frames.image_topic
    info_topic = camera_info_topic_for(base_topic)
    if frames.topics.get(info_topic) is None or frames.topics[info_topic].msgtype != CAMERA_INFO:
        info_topic = None
    ns = args.namespace.rstrip("/")
    prefix = f"{ns}/semantic" if ns else "/semantic"
    node = None
    if not args.node_running:
        params = {"stats_period": 1.0}
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
            params_file=pf, image_topic=base_topic, env=env, log_path=out_dir / "node.log", extra_args=extra
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
    try:
        player = _Player(
            frames.image_topic,
            CompressedImage if frames.compressed else Image,
            info_topic,
            prefix,
            args.outputs,
            recorder,
            args.clock,
        )
        alive = node.alive if node is not None else (lambda: True)
        first_log = None
        for _, log_ns, _ in frames.raw_messages([frames.image_topic]):
            first_log = log_ns
            break
        player.publish_clock(first_log)
        print(f"replay: {frames.describe()}")
        print(
            f"replay: waiting for the node to serve {', '.join(player.topics.values())} "
            f"(ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, DDS on loopback)"
        )
        if not player.wait_serving(_probe_factory(frames), args.startup_timeout, alive):
            why = (
                f"the node exited; its log ({node.log_path}):\n{node.log()[-3000:]}"
                if node is not None and not node.alive()
                else f"no answer on {', '.join(player.topics.values())} within {args.startup_timeout:.0f} s"
            )
            raise RuntimeError(f"the node did not come up: {why}")
        if player.class_map is not None:
            result["model_id"] = player.class_map.model_id
        # The node's counters include the probes; a baseline taken now (no probe in flight any more) separates
        # the bag's frames from them. The node we start reports every second.
        baseline = player.fresh_counters(2.5)
        topics = [frames.image_topic] + ([info_topic] if info_topic else [])
        total = min(len(frames), args.max_frames) if args.max_frames else len(frames)
        lags: list[float] = []
        sent = 0
        t0: Optional[float] = None
        with tqdm(total=total, desc="replay", unit="frame") as bar:
            for topic, log_ns, raw in frames.raw_messages(topics):
                if t0 is None:  # the schedule starts with the first message read, not with opening the bag
                    t0 = time.perf_counter() - (log_ns - first_log) / 1e9 / args.rate
                target = t0 + (log_ns - first_log) / 1e9 / args.rate
                while (now := time.perf_counter()) < target:
                    time.sleep(min(0.005, target - now))
                lags.append((time.perf_counter() - target) * 1e3)
                player.publish_clock(log_ns)
                if topic == frames.image_topic:
                    if args.max_frames and sent >= args.max_frames:
                        break
                    player.publish_image(bytes(raw), stamp_of(raw))
                    sent += 1
                    bar.update(1)
                else:
                    player.info_pub.publish(bytes(raw))
        primary = args.outputs[0]
        # Drain: wait for the outputs still in flight, until every frame is answered or nothing came for a while.
        end_publish = time.perf_counter()
        while player.received(primary) < len(player.publish_times) and alive():
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
    publish = player.publish_times
    arrivals = {o: {s: t for s, t in a.items()} for o, a in player.arrivals.items()}
    primary_arrivals = arrivals[primary]
    latency = {s: (t - publish[s]) * 1e3 for s, t in primary_arrivals.items() if s in publish}
    node_counters = _parse_node_counters(node.log()) if node is not None else final
    result.update(
        {
            "frames_published": len(publish),
            "frames_received": {o: sum(1 for s in a if s in publish) for o, a in arrivals.items()},
            "frames_dropped": len(publish) - sum(1 for s in primary_arrivals if s in publish),
            "outputs_with_unknown_stamp": {o: sum(1 for s in a if s not in publish) for o, a in arrivals.items()},
            "latency_ms": _rounded(latency_summary(latency.values())),
            "input_rate_hz": _rate(list(publish.values())),
            "output_rate_hz": _rate(list(primary_arrivals.values())),
            "publish_lag_ms": _rounded(latency_summary([max(0.0, x) for x in lags])),
            "node_counters": node_counters or player.diagnostics or None,
            "recording_errors": player.callback_errors,
            "node_exit_code": node_rc,
            "output_bag": str(outputs_bag),
            "output_bag_messages": counts,
        }
    )
    if node_counters and baseline:  # where the drops happened: before the node's callback, or in the node
        result["frames_lost_before_node"] = len(publish) - (node_counters["received"] - baseline["received"])
        result["frames_dropped_by_node"] = node_counters["dropped"] - baseline["dropped"]
    result["_latency_by_stamp"] = latency
    return result


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}


# ---- the command -----------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    import warnings

    from vsseg_ros.bags.reader import BagError, BagFrames, BagMasks, BagWarning
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
            frames = BagFrames(args.bag, image_topic=args.image_topic, gt_topic=args.gt_topic)
            _ = frames.gt_report  # pairs ground truth with images now: errors before the node starts
        except BagError as err:
            print(f"vsseg-ros replay: {err}", file=sys.stderr)
            return 2
        caught += [str(w.message) for w in seen if issubclass(w.category, BagWarning)]
    for text in caught:
        print(f"vsseg-ros replay: warning: {text}", file=sys.stderr)
    out_dir = args.out or Path("out/replay") / frames.path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.score_recorded is not None:
            result: dict[str, Any] = {"bag": str(frames.path), "output_bag": str(args.score_recorded)}
            latency: Optional[dict[int, float]] = None
            output_bag = args.score_recorded
            stamps = None
        else:
            result = _live(args, frames, out_dir)
            latency = result.pop("_latency_by_stamp")
            output_bag = Path(result["output_bag"])
            stamps = None if not args.max_frames else _published_stamps(frames, args.max_frames)
        masks = BagMasks(output_bag, topic=None)
        score = score_outputs(frames, masks, stamps=stamps, latency_ms=latency, flow_consistency=not args.no_tc)
    except BagError as err:
        print(f"vsseg-ros replay: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"vsseg-ros replay: {err}", file=sys.stderr)
        return 1
    result["score"] = score
    if frames.gt_report is not None:
        result["ground_truth"] = frames.gt_report.as_dict()
    (out_dir / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
    _print_summary(result, out_dir)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if score["frames_received"] else 1


def _published_stamps(frames: Any, n: int) -> set[int]:
    from vsseg_ros.bags.cdr import stamp_of

    stamps = []
    for _, _, raw in frames.raw_messages([frames.image_topic]):
        if len(stamps) >= n:
            break
        stamps.append(stamp_of(raw))
    return set(stamps)


def _print_summary(r: dict[str, Any], out_dir: Path) -> None:
    s = r["score"]
    print(
        f"replay: {s['frames_published']} frames published, {s['frames_received']} received, "
        f"{s['frames_dropped']} dropped ({100 * (s['drop_rate'] or 0):.1f} %), "
        f"{s['outputs_with_unknown_stamp']} outputs with a stamp the input does not have"
    )
    if "latency_ms" in r:
        lat = r["latency_ms"]
        print(
            f"replay: end-to-end latency p50 {lat['p50']} ms, p95 {lat['p95']} ms (max {lat['max']}); input "
            f"{r['input_rate_hz']} Hz, output {r['output_rate_hz']} Hz; node counters {r.get('node_counters')}"
        )
        if "frames_lost_before_node" in r:
            print(
                f"replay: of the drops, {r['frames_dropped_by_node']} were replaced by a newer frame while the node "
                f"was busy and {r['frames_lost_before_node']} never reached its callback (overwritten in its "
                "depth-1 input queue, or lost on the way)"
            )
    acc = s.get("accuracy")
    if acc:

        def pct(v: Optional[float]) -> str:
            return "-" if v is None else f"{100 * v:.1f} %"

        print(
            f"replay: mIoU {pct(acc['miou'])} over {s['labelled_frames_scored']} of {s['labelled_frames']} labelled "
            f"frames, boundary F {pct(acc['boundary_f'])}, mVC8 {pct(acc['mvc8'])}, TC {pct(acc['tc'])}"
        )
    for note in s.get("notes", []):
        print(f"replay: note: {note}")
    print(f"replay: wrote {out_dir / 'replay.json'}" + (f", output bag {r['output_bag']}" if "output_bag" in r else ""))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros replay")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
