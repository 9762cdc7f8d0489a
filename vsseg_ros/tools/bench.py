"""`vsseg-ros bench`: the model alone vs the node end to end, measured in one run, reported as ratios.

Model alone: ``Segmenter.push`` on decoded RGB frames in this process (preprocess + network + postprocess at
input resolution), and its network-only share. Node: a real node in a child process; this process publishes a
bgr8 frame, waits for /semantic/mask, then publishes the next (closed loop: nothing is dropped), and times
publish -> mask received. The network runs at the input size in both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from vsseg_ros.imaging.video import default_video, read_frames
from vsseg_ros.tools.rosenv import apply_local_ros_env


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {"p50": round(float(np.median(arr)), 2), "p95": round(float(np.percentile(arr, 95)), 2),
            "mean": round(float(arr.mean()), 2)}


def bench_model(frames: list[np.ndarray], size: tuple[int, int], warmup: int, model_path: str,
                device: str) -> dict:
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.segmenter import Frame, OutputRequest

    seg = load_segmenter(model_path, device=device, input_size=size)
    request = OutputRequest(boundary=False, confidence=False)  # what the node computes for a mask subscriber
    total, network = [], []
    for i, rgb in enumerate(tqdm(frames, desc=f"model {size[0]}x{size[1]}", unit="frame", leave=False)):
        t = time.perf_counter()
        res = seg.push(Frame(image=rgb, stamp_ns=i), request)
        dt = (time.perf_counter() - t) * 1e3
        if i >= warmup:
            total.append(dt)
            network.append(res.timings_ms.get("network", float("nan")))
    return {"model_id": seg.model_id, "device": str(seg.device), "push_ms": _stats(total),
            "network_ms": _stats(network)}


def bench_node(frames: list[np.ndarray], size: tuple[int, int], warmup: int, model_path: str,
               device: str, out_dir: Path) -> dict:
    from vsseg_ros.tools.client import SegmentationClient, make_image_msg
    from vsseg_ros.tools.nodeproc import NodeProcess, write_params_file

    params = write_params_file({"model_path": model_path, "device": device, "network_image_height": size[0],
                                "network_image_width": size[1], "stats_period": 0.0})
    node = NodeProcess(params_file=params, log_path=out_dir / f"bench_node_{size[0]}x{size[1]}.log")
    client = SegmentationClient(outputs=("mask",), name=f"vsseg_bench_{size[0]}x{size[1]}")
    try:
        if not client.wait_until_serving("mask", frames[0], 120.0, node.alive):
            raise RuntimeError(f"node did not start; log:\n{node.log()[-3000:]}")
        lat = []
        # Encode every frame first so the timed loop is publish -> mask only.
        msgs = [make_image_msg(rgb[:, :, ::-1], "bgr8", 1_000_000_000 + i * 33_000_000)
                for i, rgb in enumerate(frames)]
        for i, msg in enumerate(tqdm(msgs, desc=f"node  {size[0]}x{size[1]}", unit="frame", leave=False)):
            key = client.publish(msg)
            if client.wait_for("mask", key, timeout=30.0) is None:
                raise RuntimeError(f"no mask for frame {i} within 30 s; node log:\n{node.log()[-2000:]}")
            if i >= warmup:
                lat.append((client.received["mask"].times[key] - client.publish_times[key]) * 1e3)
            time.sleep(0.05)  # let both processes go idle, so each frame is timed alone
    finally:
        client.close()
        node.stop()
        params.unlink(missing_ok=True)
    return {"end_to_end_ms": _stats(lat)}


def run_bench(sizes: list[tuple[int, int]], frames: int = 30, warmup: int = 5,
              json_path: Optional[Path] = None, device: str = "auto", model_path: str = "",
              video: Optional[Path] = None) -> int:
    apply_local_ros_env()
    import rclpy

    out_dir = Path("out/bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    rclpy.init()
    results = []
    try:
        for size in sizes:
            clip = list(read_frames(video or default_video(), max_frames=frames + warmup, size=size))
            model = bench_model(clip, size, warmup, model_path, device)
            node = bench_node(clip, size, warmup, model_path, device, out_dir)
            results.append({"size": f"{size[0]}x{size[1]}", **model, **node,
                            "node_over_model": round(node["end_to_end_ms"]["p50"] / model["push_ms"]["p50"], 3),
                            "node_over_network": round(node["end_to_end_ms"]["p50"] / model["network_ms"]["p50"],
                                                       3)})
    finally:
        rclpy.try_shutdown()

    print(f"\nvsseg-ros bench ({frames} timed frames each, median ms; model {results[0]['model_id']!r} on "
          f"{results[0]['device']})")
    print(f"{'input':>10} {'network':>9} {'model':>9} {'node e2e':>9} {'node/model':>11} {'node/network':>13}")
    for r in results:
        print(f"{r['size']:>10} {r['network_ms']['p50']:>9.1f} {r['push_ms']['p50']:>9.1f} "
              f"{r['end_to_end_ms']['p50']:>9.1f} {r['node_over_model']:>11.3f} {r['node_over_network']:>13.3f}")
    print("model = Segmenter.push (preprocess + network + postprocess at input size); node e2e = publish bgr8 "
          "Image -> /semantic/mask received, over Fast DDS on loopback.")
    if json_path:
        Path(json_path).write_text(json.dumps({"frames": frames, "warmup": warmup, "results": results},
                                              indent=2) + "\n")
    return 0
