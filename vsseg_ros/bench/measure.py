"""What every `vsseg-ros bench` variant measures, in one place: latency statistics, the model alone
(:class:`ModelStepper`, :func:`bench_model`: ``Segmenter.push`` per stage in this process) and the node end to end
(:func:`bench_node`: a real node in a child process, closed loop then an open-loop phase at a camera rate, and
its peak resident memory). The benchmarks (:mod:`.run`, :mod:`.backends`, :mod:`.temporal`, :mod:`.cameras`)
import it; it imports none of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from vsseg_ros.bench.memory import peak_rss_mb


def latency_stats(values: list[float]) -> dict[str, float]:
    """Median, 95th percentile and mean of ``values`` (ms), rounded to 0.01."""
    arr = np.asarray(values)
    return {
        "p50": round(float(np.median(arr)), 2),
        "p95": round(float(np.percentile(arr, 95)), 2),
        "mean": round(float(arr.mean()), 2),
    }


class ModelStepper:
    """The node's per-frame work on one model, one frame at a time, in this process: decode the bgr8 Image
    message, the Segmenter's own stages (preprocess, network or backbone/fusion/MAR, postprocess) and the
    conversion of the mask into the Image message the node publishes. What the node adds beyond these is DDS
    transport. ``bench --backends`` runs one per backend, each in its own process."""

    def __init__(
        self, frames: list[np.ndarray], size: tuple[int, int], model_path: str, device: str, backend: str = "torch"
    ) -> None:
        from vsseg_ros.core.loading import load_segmenter
        from vsseg_ros.core.segmenter import OutputRequest
        from vsseg_ros.ros.node_client import make_image_msg

        self.seg = load_segmenter(model_path, device=device, input_size=size, backend=backend)
        self.request = OutputRequest(boundary=False, confidence=False)  # what the node computes for a mask subscriber
        self.msgs = [make_image_msg(rgb[:, :, ::-1], "bgr8", i) for i, rgb in enumerate(frames)]

    def step(self, i: int) -> Optional[dict[str, float]]:
        """Frame ``i``: ``push`` (model) and ``network`` ms and every stage's ms; None while a model holds back."""
        from vsseg_ros.core.segmenter import Frame
        from vsseg_ros.imaging.decode import decode_message
        from vsseg_ros.ros.convert import to_image_msg

        msg = self.msgs[i % len(self.msgs)]
        t0 = time.perf_counter()
        image = decode_message(msg)
        t1 = time.perf_counter()
        res = self.seg.push(Frame(image=image, stamp_ns=i), self.request)
        t2 = time.perf_counter()
        if res is None:
            return None
        to_image_msg(res.labels, msg.header)
        t3 = time.perf_counter()
        return {
            "push": (t2 - t1) * 1e3,
            "network": res.timings_ms.get("network", res.timings_ms.get("backbone", float("nan"))),
            "stages": {"decode": (t1 - t0) * 1e3, **res.timings_ms, "publish_conversion": (t3 - t2) * 1e3},
        }


def summarize_steps(steps: list[dict]) -> dict:
    """Medians (and p95, mean) of :meth:`ModelStepper.step` results."""
    stages: dict[str, list[float]] = {}
    for st in steps:
        for k, v in st["stages"].items():
            stages.setdefault(k, []).append(v)
    return {
        "push_ms": latency_stats([st["push"] for st in steps]),
        "network_ms": latency_stats([st["network"] for st in steps]),
        "stages_ms": {k: latency_stats(v)["p50"] for k, v in stages.items()},
    }


def bench_model(
    frames: list[np.ndarray], size: tuple[int, int], warmup: int, model_path: str, device: str, backend: str = "torch"
) -> dict:
    """:class:`ModelStepper` over ``frames`` (the first ``warmup`` untimed)."""
    stepper = ModelStepper(frames, size, model_path, device, backend)
    steps = []
    for i in tqdm(range(len(frames)), desc=f"model {size[0]}x{size[1]}", unit="frame", leave=False):
        st = stepper.step(i)
        if i >= warmup and st is not None:
            steps.append(st)
    return {"model_id": stepper.seg.model_id, "device": str(stepper.seg.device), **summarize_steps(steps)}


def open_loop(client, msgs: list, rate_hz: float, drain_s: float = 2.0) -> dict:
    """Publish ``msgs`` at ``rate_hz`` without waiting for answers; count the masks that come back."""
    start = time.perf_counter()
    keys = []
    for i, msg in enumerate(msgs):
        delay = start + i / rate_hz - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        keys.append(client.publish(msg))
    # wait until the node has caught up: nothing new for drain_s (or 30 s in all)
    end, last_count, last_change = time.monotonic() + 30.0, -1, time.monotonic()
    while time.monotonic() < end:
        n = sum(client.get("mask", k) is not None for k in keys)
        if n != last_count:
            last_count, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > drain_s or n == len(keys):
            break
        time.sleep(0.05)
    arrived = client.arrival_times("mask")
    times = {k: arrived[k] for k in keys if k in arrived}
    lat = [(times[k] - client.publish_times[k]) * 1e3 for k in times]
    span = (max(times.values()) - client.publish_times[keys[0]]) if times else float("nan")
    return {
        "input_hz": rate_hz,
        "published": len(keys),
        "processed": len(times),
        "drop_rate": round(1.0 - len(times) / len(keys), 3),
        "output_hz": round(len(times) / span, 2) if times else 0.0,
        "latency_ms": latency_stats(lat) if lat else None,
    }


def bench_node(
    frames: list[np.ndarray],
    size: tuple[int, int],
    warmup: int,
    model_path: str,
    device: str,
    out_dir: Path,
    rate_hz: float = 30.0,
    open_loop_frames: int = 60,
    node_params: Optional[dict] = None,
) -> dict:
    from vsseg_ros.ros.node_client import SegmentationClient, make_image_msg
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    params = write_params_file(
        {
            "model_path": model_path,
            "device": device,
            "network_image_height": size[0],
            "network_image_width": size[1],
            "stats_period": 0.0,
            **(node_params or {}),
        }
    )
    node = NodeProcess(params_file=params, log_path=out_dir / f"bench_node_{size[0]}x{size[1]}.log")
    client = SegmentationClient(outputs=("mask",), name=f"vsseg_bench_{size[0]}x{size[1]}")
    try:
        if not client.wait_until_serving("mask", frames[0], 120.0, node.alive):
            raise RuntimeError(f"node did not start; log:\n{node.log()[-3000:]}")
        lat = []
        # Encode every frame first so the timed loop is publish -> mask only.
        msgs = [make_image_msg(rgb[:, :, ::-1], "bgr8", 1_000_000_000 + i * 33_000_000) for i, rgb in enumerate(frames)]
        for i, msg in enumerate(tqdm(msgs, desc=f"node  {size[0]}x{size[1]}", unit="frame", leave=False)):
            key = client.publish(msg)
            if client.wait_for("mask", key, timeout=30.0) is None:
                raise RuntimeError(f"no mask for frame {i} within 30 s; node log:\n{node.log()[-2000:]}")
            if i >= warmup:
                lat.append((client.received["mask"].times[key] - client.publish_times[key]) * 1e3)
            time.sleep(0.05)  # let both processes go idle, so each frame is timed alone
        live = []
        if open_loop_frames > 0:
            # distinct stamps (a second stream, 10 s later); the clip repeats if it is short
            live = [
                make_image_msg(frames[i % len(frames)][:, :, ::-1], "bgr8", 20_000_000_000 + i * int(1e9 / rate_hz))
                for i in range(open_loop_frames)
            ]
            time.sleep(0.5)
            loaded = open_loop(client, live, rate_hz)
        else:
            loaded = None
        peak = peak_rss_mb(node.proc.pid)
        memory = None if peak is None else round(peak, 1)
    finally:
        client.close()
        node.stop()
        params.unlink(missing_ok=True)
    return {"end_to_end_ms": latency_stats(lat), "open_loop": loaded, "node_peak_rss_mb": memory}
