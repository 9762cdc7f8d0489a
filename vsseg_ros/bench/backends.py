"""`vsseg-ros bench --backends torch,onnxruntime,openvino,onnxruntime-int8,...`: backends side by side, one run.

Per size, the model phase runs each backend in its own process (as the node does: one backend per process;
two engines' thread pools in one process slow each other down, measured: torch 31 -> 1048 ms beside an
ONNX Runtime session) and interleaves them frame by frame, the order rotated every frame, so each sees the same
machine: network ms, model ms (``Segmenter.push``) and the stages. Then each backend's node is benchmarked as
``vsseg-ros bench`` does (closed loop end to end, then a 30 Hz open loop: output rate and drops), one after the
other, the order reversed for every other size.

``NAME-int8`` runs the int8 export (``--int8-model``, default the packaged ``default_int8``) on backend NAME;
plain names run ``--model`` (a checkpoint, exported on the fly for the exported backends, or an exported dir).
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from vsseg_ros.bench.measure import ModelStepper, bench_node, summarize_steps
from vsseg_ros.ros.node_process import apply_local_ros_env


def parse_backends(text: str) -> list[str]:
    """``a,b,c`` -> names, each a backend (torch, onnxruntime, openvino, tensorrt) optionally with ``-int8``."""
    from vsseg_ros.runtimes.backends import BACKENDS

    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        base = n[:-5] if n.endswith("-int8") else n
        if base not in BACKENDS or n == "torch-int8":
            raise ValueError(
                f"--backends: {n!r} is not known; use {', '.join(BACKENDS)}, optionally with -int8 (not torch)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"--backends lists a name twice: {text}")
    return names


def resolve(name: str, model_path: str, int8_model: str) -> tuple[str, str]:
    """(backend, model path) for a ``--backends`` entry."""
    if name.endswith("-int8"):
        if not int8_model:
            from vsseg_ros.core.loading import DEFAULT_EXPORT

            int8_model = str(DEFAULT_EXPORT)
        return name[:-5], int8_model
    return name, model_path


def _worker(
    conn: Any,
    name: str,
    size: tuple[int, int],
    frames: int,
    video: Optional[str],
    model_path: str,
    int8_model: str,
    device: str,
    threads: int,
) -> None:
    """One backend's model phase, in a child process: answers frame indices with step timings."""
    import torch

    from vsseg_ros.imaging.video import default_video, read_frames

    torch.set_num_threads(threads)
    try:
        backend, path = resolve(name, model_path, int8_model)
        clip = list(read_frames(Path(video) if video else default_video(), max_frames=frames, size=size))
        stepper = ModelStepper(clip, size, path, device, backend)
        seg = stepper.seg
        conn.send(
            {
                "ready": True,
                "model_id": seg.model_id,
                "backend": seg.backend,
                "precision": getattr(getattr(seg.net, "model", None), "precision", seg.precision),
                "describe": seg.describe(),
            }
        )
    except Exception as e:  # reported by the parent, which stops the run
        conn.send({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return
    while True:
        i = conn.recv()
        if i is None:
            return
        conn.send(stepper.step(i))


def bench_models(
    names: list[str],
    size: tuple[int, int],
    frames: int,
    warmup: int,
    video: Optional[Path],
    model_path: str,
    int8_model: str,
    device: str,
    threads: int,
) -> dict[str, dict]:
    """The model phase of every backend, interleaved frame by frame (see the module doc)."""
    ctx = mp.get_context("spawn")  # a fresh interpreter per backend: no thread pool inherited
    workers = {}
    try:
        for n in names:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker,
                args=(
                    child,
                    n,
                    size,
                    frames + warmup,
                    str(video) if video else None,
                    model_path,
                    int8_model,
                    device,
                    threads,
                ),
                daemon=True,
            )
            proc.start()
            workers[n] = (proc, parent)
        info = {}
        for n, (_proc, conn) in workers.items():
            msg = conn.recv()
            if not msg.get("ready"):
                raise RuntimeError(f"backend {n}: {msg.get('error')}")
            info[n] = msg
        steps: dict[str, list[dict]] = {n: [] for n in names}
        for i in tqdm(range(frames + warmup), desc=f"models {size[0]}x{size[1]}", unit="frame", leave=False):
            k = i % len(names)
            for n in names[k:] + names[:k]:  # rotated: nobody always runs right after the same backend
                conn = workers[n][1]
                conn.send(i)
                st = conn.recv()
                if i >= warmup and st is not None:
                    steps[n].append(st)
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
    return {n: {**info[n], **summarize_steps(steps[n])} for n in names}


def run_backends(
    names: list[str],
    sizes: list[tuple[int, int]],
    frames: int,
    warmup: int,
    device: str,
    model_path: str,
    int8_model: str,
    video: Optional[Path],
    rate_hz: float,
    open_loop_frames: int,
    node: bool,
    node_params: Optional[dict],
    threads: int = 0,
) -> list[dict]:
    """Every backend at every size: model phase interleaved, then each node. Returns the ``backends`` rows."""
    import torch

    from vsseg_ros.imaging.video import default_video, read_frames

    threads = threads or torch.get_num_threads()
    rows = []
    out_dir = Path("out/bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    rclpy = None
    if node:
        apply_local_ros_env()
        import rclpy

        rclpy.init()
    try:
        for s_i, size in enumerate(sizes):
            models = bench_models(names, size, frames, warmup, video, model_path, int8_model, device, threads)
            nodes: dict[str, dict] = {}
            if node:
                clip = list(read_frames(video or default_video(), max_frames=frames + warmup, size=size))
                order = names if s_i % 2 == 0 else names[::-1]
                for n in order:
                    backend, path = resolve(n, model_path, int8_model)
                    nodes[n] = bench_node(
                        clip,
                        size,
                        warmup,
                        path,
                        device,
                        out_dir,
                        rate_hz=rate_hz,
                        open_loop_frames=open_loop_frames,
                        node_params={**(node_params or {}), "backend": backend},
                    )
            torch_net = models.get("torch", {}).get("network_ms", {}).get("p50")
            for n in names:
                m, nd = models[n], nodes.get(n, {})
                loop = nd.get("open_loop") or {}
                row = {
                    "backend": n,
                    "engine": m["backend"],
                    "precision": m["precision"],
                    "size": f"{size[0]}x{size[1]}",
                    "model_id": m["model_id"],
                    "runs_on": m["describe"],
                    "network_ms_p50": m["network_ms"]["p50"],
                    "model_ms_p50": m["push_ms"]["p50"],
                    "node_e2e_ms_p50": nd.get("end_to_end_ms", {}).get("p50"),
                    "out_fps_at_30hz": loop.get("output_hz"),
                    "dropped_at_30hz": loop.get("drop_rate"),
                    "network_speedup_vs_torch": (round(torch_net / m["network_ms"]["p50"], 3) if torch_net else None),
                    "network_ms": m["network_ms"],
                    "model_ms": m["push_ms"],
                    "stages_ms": m["stages_ms"],
                    "node": nd or None,
                }
                rows.append(row)
    finally:
        if rclpy is not None:
            rclpy.try_shutdown()
    print_rows(rows, frames, threads)
    return rows


def print_rows(rows: list[dict], frames: int, threads: int) -> None:
    print(
        f"\nvsseg-ros bench --backends ({frames} timed frames per backend, interleaved; median ms; {threads} thread(s))"
    )
    print(
        f"{'backend':>18} {'prec':>5} {'input':>9} {'network':>8} {'vs torch':>8} {'model':>7} {'node e2e':>9} "
        f"{'out Hz@30':>9} {'dropped':>8}"
    )
    for r in rows:
        e2e = "-" if r["node_e2e_ms_p50"] is None else f"{r['node_e2e_ms_p50']:.1f}"
        hz = "-" if r["out_fps_at_30hz"] is None else f"{r['out_fps_at_30hz']:.1f}"
        drop = "-" if r["dropped_at_30hz"] is None else f"{r['dropped_at_30hz']:.0%}"
        vs = "-" if r["network_speedup_vs_torch"] is None else f"{r['network_speedup_vs_torch']:.2f}x"
        print(
            f"{r['backend']:>18} {r['precision']:>5} {r['size']:>9} {r['network_ms_p50']:>8.1f} {vs:>8} "
            f"{r['model_ms_p50']:>7.1f} {e2e:>9} {hz:>9} {drop:>8}"
        )
    for r in rows:
        print(f"  {r['backend']} {r['size']}: {r['runs_on']}")


def summary_ratios(rows: list[dict]) -> dict[str, Any]:
    """The issue's targets from one run's rows (None where a backend was not run)."""

    def get(backend: str, size: str) -> Optional[dict]:
        return next((r for r in rows if r["backend"] == backend and r["size"] == size), None)

    out: dict[str, Any] = {}
    for size in sorted({r["size"] for r in rows}):
        t = get("torch", size)
        if t is None:
            continue
        out[size] = {
            r["backend"]: round(t["network_ms_p50"] / r["network_ms_p50"], 3) for r in rows if r["size"] == size
        }
    return out


__all__ = ["parse_backends", "run_backends", "bench_models", "summary_ratios", "resolve"]
