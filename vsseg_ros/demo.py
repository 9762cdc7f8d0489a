"""What `vsseg-ros demo` does: a real clip through the real node over DDS, at the clip's own rate.

The node runs in a child process; this process publishes the frames as sensor_msgs/Image (bgr8, as a camera
driver would), collects /semantic/segmentation, and writes out/demo/{overlay.mp4, contact_sheet.png, stats.json}.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.imaging.video import VideoWriter, default_video, read_frames, video_fps
from vsseg_ros.ros.node_process import apply_local_ros_env


def _percentile(values: list[float], q: float) -> Optional[float]:
    return round(float(np.percentile(values, q)), 2) if values else None


def run_demo(
    video: Optional[Path] = None,
    out_dir: Path = Path("out/demo"),
    params_file: Optional[Path] = None,
    device: str = "auto",
    model_path: str = "",
    max_frames: Optional[int] = None,
    backend: str = "",
    rate: float = 1.0,
) -> int:
    env = apply_local_ros_env()
    import rclpy

    from vsseg_ros.core import visualize as viz
    from vsseg_ros.ros.convert import image_msg_to_array
    from vsseg_ros.ros.node_client import SegmentationClient, make_image_msg
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    video = Path(video) if video else default_video()
    fps = video_fps(video) * rate
    frames = list(read_frames(video, max_frames=max_frames))
    out_dir.mkdir(parents=True, exist_ok=True)
    params = write_params_file(
        {"model_path": model_path, "device": device, "stats_period": 2.0, **({"backend": backend} if backend else {})},
        path=out_dir / "node_params.yaml",
        base=params_file,
    )
    print(
        f"demo: {video.name}, {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} at {fps:.1f} Hz; "
        f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, DDS on loopback"
    )
    node = NodeProcess(params_file=params, env=env, log_path=out_dir / "node.log")
    rclpy.init()
    client = SegmentationClient(outputs=("segmentation",))
    try:
        class_map_msg = client.wait_for_class_map(timeout=120.0, alive=node.alive)
        if class_map_msg is None or not client.wait_until_serving("segmentation", frames[0], 60.0, node.alive):
            print(f"demo: the node did not come up; its log ({node.log_path}):\n{node.log()[-3000:]}")
            return 1
        model_id = class_map_msg.model_id
        print(f"demo: node ready, model {model_id!r}")
        t0 = time.perf_counter()
        base_ns = time.time_ns()
        keys = []
        for i, rgb in enumerate(tqdm(frames, desc="publishing", unit="frame")):
            target = t0 + i / fps
            while (now := time.perf_counter()) < target:
                time.sleep(min(0.005, target - now))
            msg = make_image_msg(rgb[:, :, ::-1], "bgr8", base_ns + int(i * 1e9 / fps), frame_id="camera")
            keys.append(client.publish(msg))
        # Give the last frame time to come back.
        client.wait_for("segmentation", keys[-1], timeout=10.0)
        time.sleep(0.5)
    finally:
        client.close()
        node_rc = node.stop()
        rclpy.try_shutdown()

    seg_msgs = client.received["segmentation"].msgs
    class_map = ClassMap(
        names=tuple(class_map_msg.class_names),
        colors=tuple(tuple(class_map_msg.colors[i : i + 3]) for i in range(0, len(class_map_msg.colors), 3)),
        ignore_id=class_map_msg.ignore_id,
        ids=tuple(class_map_msg.class_ids),
    )
    latencies = client.latency_ms("segmentation")
    processed = [i for i, k in enumerate(keys) if k in seg_msgs]
    inference = [seg_msgs[keys[i]].inference_time_ms for i in processed]

    # Overlay video: every input frame at the input rate, with the newest mask a consumer had at that time.
    writer = VideoWriter(out_dir / "overlay.mp4", video_fps(video), frames[0].shape[:2])
    last: Optional[tuple[int, np.ndarray]] = None
    for i, rgb in enumerate(tqdm(frames, desc="overlay.mp4", unit="frame")):
        if keys[i] in seg_msgs:
            last = (i, image_msg_to_array(seg_msgs[keys[i]].mask))
        if last is None:
            writer.write(viz.label(rgb, "waiting for the first mask"))
            continue
        img = viz.overlay(rgb, last[1], class_map, alpha=0.5)
        note = f"frame {i}" if last[0] == i else f"frame {i}, mask of frame {last[0]} (frame {i} dropped)"
        writer.write(viz.label(img, note))
    writer.close()

    # Contact sheet: input | mask | boundary confidence for a few processed frames.
    rows = []
    for i in [processed[j] for j in np.linspace(0, len(processed) - 1, min(4, len(processed))).astype(int)]:
        m = seg_msgs[keys[i]]
        rows.append(
            [
                viz.label(frames[i], f"frame {i}"),
                viz.color_mask(image_msg_to_array(m.mask), class_map),
                viz.heatmap(image_msg_to_array(m.boundary_confidence)),
            ]
        )
    if rows:
        import cv2

        sheet = viz.contact_sheet(
            rows,
            titles=("input", "class mask", "boundary confidence"),
            footer=viz.legend(class_map, width=3 * frames[0].shape[1] + 16),
        )
        title = viz.label(np.full((22, sheet.shape[1], 3), 255, np.uint8), f"model: {model_id}")
        cv2.imwrite(str(out_dir / "contact_sheet.png"), cv2.cvtColor(np.concatenate([title, sheet]), cv2.COLOR_RGB2BGR))

    stats = {
        "video": str(video),
        "frames_sent": len(keys),
        "frames_received": len(processed),
        "frames_dropped": len(keys) - len(processed),
        "input_rate_hz": round(fps, 2),
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "inference_ms": {"p50": _percentile(inference, 50), "p95": _percentile(inference, 95)},
        "model_id": model_id,
        "device": _device_from_log(node.log()),
        "node_exit_code": node_rc,
        "frames_fused": int(seg_msgs[keys[processed[0]]].frames_fused) if processed else None,
    }
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    if "untrained" in model_id:
        print(
            "demo: NOTE the weights are an ImageNet backbone with untrained segmentation heads: the masks are "
            "not meaningful classes yet (a trained default model comes with training)."
        )
    print(f"demo: wrote {out_dir}/overlay.mp4, contact_sheet.png, stats.json (node log: {node.log_path})")
    return 0 if processed else 1


def _device_from_log(log: str) -> str:
    for line in log.splitlines():
        if " on " in line and "model '" in line:
            return line.split(" on ", 1)[1].split(",")[0].strip()
    return "unknown"
