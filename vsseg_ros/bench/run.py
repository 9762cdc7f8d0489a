"""What `vsseg-ros bench` runs: the model alone vs the node end to end, measured in one run, reported as ratios.

Model alone: ``Segmenter.push`` on decoded RGB frames in this process (preprocess + network + postprocess at
input resolution), and its network-only share. Node: a real node in a child process; this process publishes a
bgr8 frame, waits for /semantic/mask, then publishes the next (closed loop: nothing is dropped), and times
publish -> mask received. The network runs at the input size in both. Then an open-loop phase: frames are
published at a fixed rate (30 Hz by default, like a camera) without waiting, and what comes back gives the
throughput, the share of frames dropped and the latency under load. The node process's peak resident memory
(VmHWM) is read before it stops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from vsseg_ros.bench.measure import bench_model, bench_node
from vsseg_ros.imaging.video import default_video, read_frames
from vsseg_ros.ros.node_process import apply_local_ros_env


def run_bench(
    sizes: list[tuple[int, int]],
    frames: int = 30,
    warmup: int = 5,
    json_path: Optional[Path] = None,
    device: str = "auto",
    model_path: str = "",
    video: Optional[Path] = None,
    rate_hz: float = 30.0,
    open_loop_frames: int = 60,
    temporal: Optional[str] = None,
    node: bool = True,
    node_params: Optional[dict] = None,
    chart_path: Optional[Path] = None,
    backends: Optional[list[str]] = None,
    int8_model: str = "",
) -> int:
    report: dict = {"frames": frames, "warmup": warmup}
    if backends:
        from vsseg_ros.bench.backends import run_backends, summary_ratios

        report["backends"] = run_backends(
            backends,
            sizes,
            frames,
            warmup,
            device,
            model_path,
            int8_model,
            video,
            rate_hz,
            open_loop_frames,
            node,
            node_params,
        )
        report["network_speedup_vs_torch"] = summary_ratios(report["backends"])
        node = False  # the backends' rows hold the node runs
    if temporal:
        from vsseg_ros.bench.temporal import bench_temporal, print_temporal, write_chart

        report["temporal"] = bench_temporal(temporal, sizes, frames=frames, warmup=warmup, video=video)
        print_temporal(report["temporal"])
        if chart_path:
            write_chart(chart_path, report["temporal"])
            print(f"chart: {chart_path}")
    if node:
        report["results"] = _bench_node_and_model(
            sizes, frames, warmup, device, model_path, video, rate_hz, open_loop_frames, node_params
        )
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _bench_node_and_model(
    sizes: list[tuple[int, int]],
    frames: int,
    warmup: int,
    device: str,
    model_path: str,
    video: Optional[Path],
    rate_hz: float,
    open_loop_frames: int,
    node_params: Optional[dict] = None,
) -> list[dict]:
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
            node = bench_node(
                clip,
                size,
                warmup,
                model_path,
                device,
                out_dir,
                rate_hz=rate_hz,
                open_loop_frames=open_loop_frames,
                node_params=node_params,
            )
            results.append(
                {
                    "size": f"{size[0]}x{size[1]}",
                    **model,
                    **node,
                    "node_over_model": round(node["end_to_end_ms"]["p50"] / model["push_ms"]["p50"], 3),
                    "node_over_network": round(node["end_to_end_ms"]["p50"] / model["network_ms"]["p50"], 3),
                }
            )
    finally:
        rclpy.try_shutdown()

    print(
        f"\nvsseg-ros bench ({frames} timed frames each, median ms; model {results[0]['model_id']!r} on "
        f"{results[0]['device']})"
    )
    print(f"{'input':>10} {'network':>9} {'model':>9} {'node e2e':>9} {'node/model':>11} {'node/network':>13}")
    for r in results:
        print(
            f"{r['size']:>10} {r['network_ms']['p50']:>9.1f} {r['push_ms']['p50']:>9.1f} "
            f"{r['end_to_end_ms']['p50']:>9.1f} {r['node_over_model']:>11.3f} {r['node_over_network']:>13.3f}"
        )
    print(
        "model = Segmenter.push (preprocess + network + postprocess at input size); node e2e = publish bgr8 "
        "Image -> /semantic/mask received, over Fast DDS on loopback."
    )
    for r in results:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.get("stages_ms", {}).items())
        print(f"{r['size']:>10} per stage (median ms, this process): {stages}")
    loaded = [r for r in results if r.get("open_loop")]
    if loaded:
        print("\nopen loop (frames published at a fixed rate without waiting):")
        print(
            f"{'input':>10} {'in Hz':>6} {'out Hz':>7} {'dropped':>8} {'latency p50':>12} {'p95':>7} "
            f"{'node peak RSS':>14}"
        )
        for r in loaded:
            o = r["open_loop"]
            lat = o["latency_ms"] or {"p50": float("nan"), "p95": float("nan")}
            print(
                f"{r['size']:>10} {o['input_hz']:>6.1f} {o['output_hz']:>7.2f} {o['drop_rate']:>8.1%} "
                f"{lat['p50']:>12.1f} {lat['p95']:>7.1f} {str(r['node_peak_rss_mb']) + ' MiB':>14}"
            )
    return results
