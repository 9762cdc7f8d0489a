"""`vsseg-ros bench --cameras N`: one node serving N cameras against one node serving one.

Node phase: a real node in a child process with ``image_topics`` /cam_0/image_raw .. /cam_{N-1}/image_raw;
this process publishes every camera at ``--rate`` Hz (open loop, the cameras' phases spread over a period) for
``seconds`` and counts the masks each camera gets back. Reported: each camera's output rate, the node's total,
fairness = the slowest camera's rate / an equal share of the total (1.0 = perfectly even), and the node's RSS
at the end (VmRSS, and the peak VmHWM) against the same run of a one-camera node: one model in memory for all
cameras, where N separate nodes would be N times one.

Model phase (this process): the frames of N cameras pushed one at a time against ``push_batch`` (one network
batch), on the node's backend and on torch, as frames per second and their ratio. Exported graphs have a batch
of 1, so there push_batch runs them one at a time and the ratio is about 1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vsseg_ros.bench.memory import peak_rss_mb, rss_mb
from vsseg_ros.ros.node_process import apply_local_ros_env


def _memory(pid: int) -> dict[str, Optional[float]]:
    now, peak = rss_mb(pid), peak_rss_mb(pid)
    return {"rss_mb": None if now is None else round(now, 1), "peak_rss_mb": None if peak is None else round(peak, 1)}


def _stream(clients: list[Any], frames: list[np.ndarray], rate_hz: float, seconds: float) -> dict[str, Any]:
    """Publish every camera at ``rate_hz`` for ``seconds``, phases spread; per-camera masks received."""
    from vsseg_ros.ros.node_client import make_image_msg

    n = len(clients)
    msgs = [make_image_msg(frames[i % len(frames)][:, :, ::-1], "bgr8", 0, frame_id=f"cam_{i}") for i in range(n)]
    period = 1.0 / rate_hz
    keys: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < seconds:
        for i in range(n):
            due = start + k * period + i * period / n
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            stamp = 30_000_000_000 + int((due - start) * 1e9)
            msgs[i].header.stamp.sec, msgs[i].header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            keys[i].append(clients[i].publish(msgs[i]))
        k += 1
    duration = time.perf_counter() - start
    time.sleep(1.5)  # the frames in flight come back
    got = [sum(c.get("mask", key) is not None for key in ks) for c, ks in zip(clients, keys)]
    rates = [g / (len(ks) * period) for g, ks in zip(got, keys)]  # over each camera's own publishing span
    total = sum(rates)
    share = total / n if n else 0.0
    return {
        "seconds": round(duration, 2),
        "input_hz_per_camera": rate_hz,
        "published": [len(ks) for ks in keys],
        "received": got,
        "output_hz": [round(r, 2) for r in rates],
        "total_output_hz": round(total, 2),
        "fairness": round(min(rates) / share, 3) if share > 0 else 0.0,
    }


def _node_run(
    cameras: int,
    frames: list[np.ndarray],
    size: tuple[int, int],
    rate_hz: float,
    seconds: float,
    params: dict[str, Any],
    out_dir: Path,
) -> dict[str, Any]:
    from vsseg_ros.ros.node_client import SegmentationClient
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    topics = [f"/cam_{i}/image_raw" for i in range(cameras)]
    values = {"stats_period": 0.0, **params}
    if cameras > 1:
        values["image_topics"] = topics
    pf = write_params_file(values)
    node = NodeProcess(params_file=pf, image_topic=topics[0], log_path=out_dir / f"bench_cameras_{cameras}.log")
    clients = [
        SegmentationClient(
            image_topic=t,
            namespace=(t.rsplit("/", 1)[0] if cameras > 1 else ""),
            outputs=("mask",),
            name=f"bench_cam_{cameras}_{i}",
            keep_messages=False,
        )
        for i, t in enumerate(topics)
    ]
    try:
        for c in clients:
            if not c.wait_until_serving("mask", frames[0], 180.0, node.alive):
                raise RuntimeError(f"node did not serve; log:\n{node.log()[-3000:]}")
        _stream(clients, frames, rate_hz, 3.0)  # warm-up: buffers, sessions, allocator
        result = _stream(clients, frames, rate_hz, seconds)
        result.update(_memory(node.proc.pid))
    finally:
        for c in clients:
            c.close()
        node.stop()
        pf.unlink(missing_ok=True)
    return result


def batched_vs_single(
    frames: list[np.ndarray],
    cameras: int,
    size: tuple[int, int],
    model_path: str,
    device: str,
    backend: str,
    rounds: int = 20,
    warmup: int = 3,
) -> dict[str, Any]:
    """Frames per second of ``cameras`` frames pushed one at a time and as one ``push_batch``, this process."""
    from vsseg_ros.core.loading import backend_summary, load_segmenter
    from vsseg_ros.core.segmenter import Frame, OutputRequest

    seg = load_segmenter(model_path, device=device, input_size=size, backend=backend)
    request = OutputRequest(boundary=False, confidence=False)  # what a mask subscriber costs
    stamp = [0]

    def batch() -> list[Frame]:
        stamp[0] += 100_000_000
        return [
            Frame(frames[(stamp[0] // 100_000_000 + i) % len(frames)], stamp[0], f"cam_{i}") for i in range(cameras)
        ]

    def one_at_a_time(fs: list[Frame]) -> None:
        for f in fs:
            seg.push(f, request)

    def together(fs: list[Frame]) -> None:
        seg.push_batch(fs, request)

    runs = (one_at_a_time, together)
    spent = [0.0, 0.0]
    for i in range(warmup + rounds):  # interleaved, so a change in the machine's load hits both alike
        for k, run in enumerate(runs):
            t0 = time.perf_counter()
            run(batch())
            if i >= warmup:
                spent[k] += time.perf_counter() - t0
    single, batched = (rounds * cameras / t for t in spent)
    return {
        "backend": backend_summary(seg),
        "batches": bool(getattr(seg, "batches", False)),
        "one_at_a_time_fps": round(single, 2),
        "batched_fps": round(batched, 2),
        "ratio": round(batched / single, 3),
    }


def run_cameras(
    cameras: int,
    size: tuple[int, int],
    rate_hz: float = 7.5,
    seconds: float = 20.0,
    model_path: str = "",
    device: str = "auto",
    node_params: Optional[dict] = None,
    json_path: Optional[Path] = None,
    node: bool = True,
) -> int:
    from vsseg_ros.imaging.video import default_video, read_frames

    frames = list(read_frames(default_video(), max_frames=max(8, cameras), size=size))
    report: dict[str, Any] = {"cameras": cameras, "size": f"{size[0]}x{size[1]}", "rate_hz": rate_hz}
    params = {
        "model_path": model_path,
        "device": device,
        "network_image_height": size[0],
        "network_image_width": size[1],
        **(node_params or {}),
    }
    if node:
        apply_local_ros_env()
        import rclpy

        out_dir = Path("out/bench")
        out_dir.mkdir(parents=True, exist_ok=True)
        rclpy.init()
        try:
            report["one_camera"] = _node_run(1, frames, size, rate_hz, seconds, params, out_dir)
            report["n_cameras"] = _node_run(cameras, frames, size, rate_hz, seconds, params, out_dir)
        finally:
            rclpy.try_shutdown()
        one, many = report["one_camera"], report["n_cameras"]
        if one["rss_mb"] and many["rss_mb"]:
            report["rss_ratio"] = round(many["rss_mb"] / one["rss_mb"], 3)
    backend = str(params.get("backend", "auto"))
    report["batched_vs_one_at_a_time"] = [
        batched_vs_single(frames, cameras, size, model_path, device, b) for b in dict.fromkeys([backend, "torch"])
    ]
    _print(report)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print(r: dict[str, Any]) -> None:
    print(f"\nvsseg-ros bench --cameras {r['cameras']} ({r['size']}, {r['rate_hz']:g} Hz per camera)")
    if "n_cameras" in r:
        m, o = r["n_cameras"], r["one_camera"]
        print(
            f"  {r['cameras']} cameras, one node: output Hz per camera {m['output_hz']} (total "
            f"{m['total_output_hz']}), fairness (min / equal share) {m['fairness']:.3f}"
        )
        print(
            f"  RSS {m['rss_mb']} MiB (peak {m['peak_rss_mb']}) vs one camera {o['rss_mb']} MiB (peak "
            f"{o['peak_rss_mb']}, {o['total_output_hz']} Hz out): ratio {r.get('rss_ratio')}"
        )
    for b in r["batched_vs_one_at_a_time"]:
        print(
            f"  {b['backend']}: one at a time {b['one_at_a_time_fps']} fps, batched {b['batched_fps']} fps "
            f"(ratio {b['ratio']}{'' if b['batches'] else '; batch-1 graphs: frames go one at a time'})"
        )


__all__ = ["batched_vs_single", "run_cameras"]
