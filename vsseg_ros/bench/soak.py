"""What `vsseg-ros soak` does: run the real node (started for you) for minutes under a camera-rate stream of generated
frames over DDS, and record over time its memory, output rate, drops, latency and every output whose stamp or
frame_id does not match a frame that was sent.

Pass/fail (exit 1): the node's RSS grows more than ``--max-rss-growth-mb`` from the end of the warm-up
(``--warmup-minutes``, default 2, or half a shorter run) to the end, any output's stamp or frame_id is wrong, no
output came, or the node died. Both processes use the shipped Fast DDS profile (camera-sized frames over shared
memory) and stay on loopback.
"""

from __future__ import annotations

import array
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

from vsseg_ros.bench.memory import rss_mb

#: distinct generated frames, cycled (each with its own frame_id, so a header copied from the wrong frame shows)
VARIANTS = 8


def _frames(size: tuple[int, int], encoding: str) -> list[tuple[array.array, int]]:
    """``VARIANTS`` moving-gradient frames, encoded once: (data, step)."""
    from vsseg_ros.imaging.encode import encode_image

    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    out = []
    for k in range(VARIANTS):
        rgb = np.stack([(x + 16 * k) % 256, (y + 8 * k) % 256, ((x + y) // 2 + 32 * k) % 256], -1).astype(np.uint8)
        data, step = encode_image(rgb, encoding)
        buf = array.array("B")
        buf.frombytes(data)
        out.append((buf, step))
    return out


def _rss(pid: int) -> float:
    rss = rss_mb(pid)
    return float("nan") if rss is None else rss  # the node gone: the sample shows it, the growth check fails


def wrong_outputs(sent: dict[tuple[int, int], str], received: dict[tuple[int, int], Any]) -> list[str]:
    """Outputs whose stamp matches no frame sent, or whose frame_id is not that frame's."""
    wrong = []
    for key, header in received.items():
        if key not in sent:
            wrong.append(f"stamp {key[0]}.{key[1]:09d} matches no frame sent")
        elif header.frame_id != sent[key]:
            wrong.append(f"stamp {key[0]}.{key[1]:09d}: frame_id {header.frame_id!r}, sent {sent[key]!r}")
    return wrong


def _pct(values: list[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if values else None


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    frames_sent: int
    frames_out: int
    out_rate_hz: float
    in_rate_hz: float
    dropped: int  # sent in the window without an output (so far)
    latency_p50_ms: Optional[float]
    latency_p99_ms: Optional[float]
    wrong_stamps: int


@dataclass
class SoakResult:
    summary: dict[str, Any]
    series: list[Sample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.summary, "series": [s.__dict__ for s in self.series]}


def soak(
    minutes: float,
    rate_hz: float,
    size: tuple[int, int],
    encoding: str = "bgr8",
    model_path: str = "",
    device: str = "auto",
    node_params: Optional[dict[str, Any]] = None,
    out_dir: Path = Path("out/soak"),
    max_rss_growth_mb: float = 50.0,
    warmup_minutes: Optional[float] = None,
    sample_seconds: Optional[float] = None,
) -> SoakResult:
    from vsseg_ros.ros.node_process import apply_local_ros_env

    env = apply_local_ros_env()  # before rclpy.init: loopback, own domain, the shipped Fast DDS profile
    import rclpy
    from sensor_msgs.msg import Image

    from vsseg_ros.ros.node_client import SegmentationClient, stamp_key
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    warmup_s = 60.0 * (warmup_minutes if warmup_minutes is not None else min(2.0, minutes / 2))
    duration_s = 60.0 * minutes
    step_s = sample_seconds or min(10.0, max(2.0, duration_s / 60))
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"model_path": model_path, "device": device, "stats_period": 5.0, **(node_params or {})}
    node = NodeProcess(
        params_file=write_params_file(params, path=out_dir / "node_params.yaml"), env=env, log_path=out_dir / "node.log"
    )
    rclpy.init()
    client = SegmentationClient(outputs=("mask",), name="vsseg_soak", keep_messages=False)
    try:
        if client.wait_for_class_map(300.0, node.alive) is None or not client.wait_until_serving(
            "mask", np.zeros((*size, 3), np.uint8), 120.0, node.alive
        ):
            raise RuntimeError(f"the node did not start serving:\n{node.log()[-3000:]}")
        time.sleep(1.5)  # late answers to the start-up probes, then forget them: every later output must match
        with client._lock:
            client.received["mask"].msgs.clear()
            client.received["mask"].times.clear()
        client.publish_times.clear()
        frames = _frames(size, encoding)
        msgs = [
            Image(height=size[0], width=size[1], encoding=encoding, is_bigendian=0, step=step, data=data)
            for data, step in frames
        ]
        sent: dict[tuple[int, int], str] = {}
        series: list[Sample] = []
        checked: set[tuple[int, int]] = set()
        wrong: list[str] = []
        rss_start = _rss(node.proc.pid)
        t0 = time.perf_counter()
        next_t, next_sample, n = t0, t0 + step_s, 0
        window_start = (t0, 0, 0)
        stamp0 = time.time_ns()
        bar = tqdm(total=int(duration_s), desc="soak", unit="s")
        while time.perf_counter() - t0 < duration_s and node.alive():
            now = time.perf_counter()
            if now < next_t:
                time.sleep(min(next_t - now, 0.005))
                continue
            msg = msgs[n % VARIANTS]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp0 + int((now - t0) * 1e9), 1_000_000_000)
            msg.header.frame_id = f"soak_cam_{n % VARIANTS}"
            sent[stamp_key(msg.header)] = msg.header.frame_id
            client.publish(msg)
            n += 1
            next_t += 1.0 / rate_hz
            if now >= next_sample:
                series.append(_sample(client, node.proc.pid, now - t0, n, window_start, sent, checked, wrong))
                window_start = (now, n, series[-1].frames_out)
                next_sample += step_s
                bar.update(int(now - t0) - bar.n)
        bar.close()
        time.sleep(2.0)  # the last frames' outputs
        end = time.perf_counter()
        alive = node.alive()
        final = _sample(client, node.proc.pid, end - t0, n, window_start, sent, checked, wrong) if alive else None
        if final is not None:
            series.append(final)
    finally:
        client.close()
        rc = node.stop()
        rclpy.try_shutdown()
    lat = {
        k: (client.received["mask"].times[k] - client.publish_times[k]) * 1e3
        for k in client.received["mask"].times
        if k in client.publish_times
    }
    after = [v for k, v in lat.items() if (k[0] * 1e9 + k[1] - stamp0) / 1e9 >= warmup_s]
    baseline = next((s for s in series if s.t_s >= warmup_s), series[-1] if series else None)
    rss_end = series[-1].rss_mb if series else float("nan")
    growth = rss_end - baseline.rss_mb if baseline else float("nan")
    frames_out = len(client.received["mask"].msgs)
    failures = []
    if not alive:
        failures.append("the node died")
    if growth > max_rss_growth_mb:
        failures.append(f"RSS grew {growth:.1f} MB after the warm-up (limit {max_rss_growth_mb:g})")
    if wrong:
        failures.append(f"{len(wrong)} output(s) with a wrong stamp or frame_id")
    if frames_out == 0:
        failures.append("no output")
    p50, p99 = _pct(after, 50), _pct(after, 99)
    summary = {
        "minutes": minutes,
        "rate_hz": rate_hz,
        "size": f"{size[0]}x{size[1]}",
        "encoding": encoding,
        "frames_sent": n,
        "frames_out": frames_out,
        "drop_fraction": 1.0 - frames_out / n if n else None,
        "rss_mb_start": rss_start,
        "rss_mb_warmup": baseline.rss_mb if baseline else None,
        "rss_mb_end": rss_end,
        "rss_mb_max_after_warmup": max((s.rss_mb for s in series if s.t_s >= warmup_s), default=None),
        "rss_growth_mb": growth,
        "max_rss_growth_mb": max_rss_growth_mb,
        "warmup_s": warmup_s,
        "latency_ms": {
            "p50": p50,
            "p99": p99,
            "p99_over_p50": p99 / p50 if p50 else None,
            "frames": len(after),
            "after_warmup": True,
        },
        "latency_ms_all": {"p50": _pct(list(lat.values()), 50), "p99": _pct(list(lat.values()), 99)},
        "output_rate_hz": frames_out / (end - t0),
        "wrong_stamps": len(wrong),
        "wrong_examples": wrong[:10],
        "node_exit_code": rc,
        "fastdds_profile": env.get("FASTDDS_DEFAULT_PROFILES_FILE", ""),
        "node_params": params,
        "passed": not failures,
        "failures": failures,
    }
    return SoakResult(summary, series)


def _sample(
    client, pid: int, t: float, n: int, window_start: tuple[float, int, int], sent: dict, checked: set, wrong: list
) -> Sample:
    """One point of the time series; checks the outputs that came since the last point."""
    with client._lock:
        headers = dict(client.received["mask"].msgs)
        times = dict(client.received["mask"].times)
    new = {k: h for k, h in headers.items() if k not in checked}
    wrong.extend(wrong_outputs(sent, new))
    checked.update(new)
    t_start, n_start, out_start = window_start
    now = time.perf_counter()
    dt = max(now - t_start, 1e-6)
    recent = [
        (times[k] - client.publish_times[k]) * 1e3 for k in times if k in client.publish_times and times[k] >= t_start
    ]
    out = len(headers)
    return Sample(
        t_s=t,
        rss_mb=_rss(pid),
        frames_sent=n,
        frames_out=out,
        out_rate_hz=(out - out_start) / dt,
        in_rate_hz=(n - n_start) / dt,
        dropped=n - out,
        latency_p50_ms=_pct(recent, 50),
        latency_p99_ms=_pct(recent, 99),
        wrong_stamps=len(wrong),
    )


def plot(result: SoakResult, path: Path) -> Path:
    """RSS, input/output rate and latency p50/p99 over time, one panel each."""
    from vsseg_ros import charts

    path.parent.mkdir(parents=True, exist_ok=True)
    charts.save_png(charts.soak(result.to_json()), path)
    return path


__all__ = ["SoakResult", "plot", "soak", "wrong_outputs"]
