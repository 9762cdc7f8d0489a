"""The live part of `vsseg-ros replay --bag BAG`: play a bag through the segmentation node over DDS and record what
comes back.

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
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from vsseg_ros.replay.cameras import cameras_of
from vsseg_ros.replay.player import Player, probe_factory


def run_live(args: argparse.Namespace, cams: Sequence[Any], out_dir: Path) -> dict[str, Any]:
    from tqdm import tqdm

    from vsseg_ros.bags.cdr import stamp_of
    from vsseg_ros.bags.raw_writer import RawBagWriter
    from vsseg_ros.metrics.latency import latency_summary
    from vsseg_ros.ros.node_process import apply_local_ros_env

    domain = int(os.environ.get("ROS_DOMAIN_ID") or 0) if args.node_running else None
    env = apply_local_ros_env(domain_id=domain)
    import rclpy

    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    cameras = cameras_of(args, cams)
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
        player = Player(cameras, args.outputs, recorder, args.clock)
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
        if not player.wait_serving({c.topic: probe_factory(c.frames) for c in cameras}, args.startup_timeout, alive):
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
            parse_node_counters(node.log(), cam.topic if multi else None)
            if node is not None
            else (final or {}).get(cam.topic)
        )
        if not counters and not multi:
            counters = player.diagnostics or None
        per_camera[cam.topic] = camera_numbers(player, cam.topic, primary, counters, (baseline or {}).get(cam.topic))
    common = {
        "publish_lag_ms": rounded(latency_summary([max(0.0, x) for x in lags])),
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


def camera_numbers(
    player: Player,
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
        "latency_ms": rounded(latency_summary(latency.values())),
        "input_rate_hz": rate_hz(list(publish.values())),
        "output_rate_hz": rate_hz(list(primary_arrivals.values())),
        "node_counters": node_counters,
    }
    if node_counters and baseline:  # where the drops happened: before the node's callback, or in the node
        out["frames_lost_before_node"] = len(publish) - (node_counters["received"] - baseline["received"])
        out["frames_dropped_by_node"] = node_counters["dropped"] - baseline["dropped"]
    out["_latency_by_stamp"] = latency
    return out


def parse_node_counters(log: str, camera: Optional[str] = None) -> Optional[dict[str, int]]:
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


def rate_hz(times: Sequence[float]) -> Optional[float]:
    times = sorted(times)
    return round((len(times) - 1) / (times[-1] - times[0]), 2) if len(times) > 1 and times[-1] > times[0] else None


def rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}
