"""segmentation_node: camera images in, per-pixel classes, boundary and confidence maps out.

The subscription callback only hands the newest message to a worker thread (never inference in a callback);
the worker decodes, runs the Segmenter and publishes. A frame replaced before the worker took it is dropped
and counted. Outputs nobody subscribes to are neither computed nor serialised.

Every output carries the header of the frame it labels (``result.frame.meta``): with a centered temporal model
that is the previous frame's, published one frame late. Frames a temporal model still holds back are flushed
(labelled and published) when the model is replaced by a parameter change and when the node stops.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from vsseg_ros.core.checkpoint import CheckpointError
from vsseg_ros.core.loading import backend_summary as _backend_summary, load_segmenter
from vsseg_ros.core.temporal_segmenter import TemporalSegmenter
from vsseg_ros.core.mailbox import LatestSlot
from vsseg_ros.core.segmenter import Frame, OutputRequest, Segmenter, SegmentationResult
from vsseg_ros.core.visualize import overlay
from vsseg_ros.imaging.decode import ImageDecodeError, decode_message
from vsseg_ros.ros.convert import class_map_msg, to_image_msg
from vsseg_ros.ros.params import PARAMS, PARAMS_BY_NAME
from vsseg_ros.ros.qos import latched_qos, qos_profile

NODE_NAME = "segmentation_node"


@dataclass
class Counters:
    received: int = 0
    processed: int = 0
    dropped: int = 0  # replaced by a newer frame before the worker took it
    rejected: int = 0  # malformed input (bad encoding, size, corrupt compressed data)
    skipped: int = 0  # nobody subscribed to any output
    failed: int = 0  # the model raised

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _Wanted:
    """Outputs with at least one subscriber, sampled once per frame."""

    mask: bool
    boundary: bool
    confidence: bool
    color: bool
    segmentation: bool


class SegmentationNode(Node):
    """``worker_thread=False``: the caller runs :meth:`run_worker` itself (``main`` does, in the main thread:
    torch called from a second thread was measured 20-50 % slower on 2 cores, each calling thread getting
    its own OpenMP team)."""

    def __init__(self, worker_thread: bool = True, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMS:
            default = spec.default if spec.default is not None else Parameter.Type.DOUBLE_ARRAY
            self.declare_parameter(spec.name, default, spec.descriptor())
        values = self._values()
        for spec in PARAMS:
            reason = spec.validate(values[spec.name])
            if reason:
                raise ValueError(reason)
        if values["worker_threads"] > 0:
            import torch

            torch.set_num_threads(values["worker_threads"])
        self._segmenter: Segmenter = self._build_segmenter(values)
        self._next_segmenter: Optional[Segmenter] = None
        self.get_logger().info(
            f"model {self._segmenter.model_id!r} on {self._segmenter.device}, precision {values['precision']}, "
            f"{self._segmenter.class_map.num_classes} classes{_temporal_summary(self._segmenter)}; "
            f"backend {_backend_summary(self._segmenter)}")
        self.add_on_set_parameters_callback(self._on_set_parameters)

        out_qos = qos_profile(values["output_qos"], values["output_qos_depth"])
        self._pub_mask = self.create_publisher(Image, "semantic/mask", out_qos)
        self._pub_boundary = self.create_publisher(Image, "semantic/boundary_confidence", out_qos)
        self._pub_confidence = (self.create_publisher(Image, "semantic/confidence", out_qos)
                                if values["publish_confidence"] else None)
        self._pub_color = (self.create_publisher(Image, "semantic/color_mask", out_qos)
                           if values["publish_color_mask"] else None)
        from vsseg_ros.msg import ClassMap as ClassMapMsg, SemanticSegmentation

        self._seg_type = SemanticSegmentation
        self._pub_seg = self.create_publisher(SemanticSegmentation, "semantic/segmentation", out_qos)
        self._pub_class_map = self.create_publisher(ClassMapMsg, "semantic/class_map", latched_qos())
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

        in_qos = qos_profile(values["input_qos"], values["input_qos_depth"])
        if values["image_transport"] == "compressed":
            self._input_topic = self.resolve_topic_name("image") + "/compressed"
            self._sub = self.create_subscription(CompressedImage, self._input_topic, self._on_image, in_qos)
        else:
            self._input_topic = self.resolve_topic_name("image")
            self._sub = self.create_subscription(Image, self._input_topic, self._on_image, in_qos)
        self.get_logger().info(f"subscribed to {self._input_topic} ({values['input_qos']}, "
                               f"depth {values['input_qos_depth']}); publishing under "
                               f"{self.resolve_topic_name('semantic')}/")

        self.counters = Counters()
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self._infer_ms: deque[float] = deque(maxlen=512)
        self._latency_ms: deque[float] = deque(maxlen=512)
        self._fused: deque[int] = deque(maxlen=512)
        self._last_stats = (time.monotonic(), Counters())
        self._publish_class_map()
        self._slot: LatestSlot = LatestSlot()
        self._worker: Optional[threading.Thread] = None
        if worker_thread:
            self._worker = threading.Thread(target=self.run_worker, name="vsseg-worker", daemon=True)
            self._worker.start()
        self._stats_timer = self.create_timer(0.5, self._maybe_report_stats)

    # ---- parameters -------------------------------------------------------------------------------
    def _values(self) -> dict[str, Any]:
        # get_parameter_or: an unset parameter (image_mean, image_stddev) reads as None.
        return {spec.name: self.get_parameter_or(spec.name, Parameter(spec.name)).value for spec in PARAMS}

    def _build_segmenter(self, v: dict[str, Any]) -> Segmenter:
        size = (v["network_image_height"], v["network_image_width"])
        if (size[0] == 0) != (size[1] == 0):
            raise ValueError("set network_image_width and network_image_height together (both 0 = the model's own)")
        return load_segmenter(v["model_path"], device=v["device"], precision=v["precision"],
                              input_size=size if size[0] else None,
                              mean=list(v["image_mean"]) if v["image_mean"] is not None else None,
                              std=list(v["image_stddev"]) if v["image_stddev"] is not None else None,
                              temporal_mode=v["temporal_mode"] or None, max_frame_gap_s=v["max_frame_gap"],
                              backend=v["backend"])

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = self._values()
        reload = False
        for p in params:
            spec = PARAMS_BY_NAME.get(p.name)
            if spec is None:
                continue  # parameters rclpy owns (use_sim_time, ...)
            reason = spec.validate(p.value)
            if reason:
                self.get_logger().warning(f"refused {p.name}: {reason}")
                return SetParametersResult(successful=False, reason=reason)
            reload |= spec.reloads_model and p.value != new[p.name]
            new[p.name] = p.value
        if reload:
            try:
                seg = self._build_segmenter(new)
            except (CheckpointError, ValueError, RuntimeError, OSError) as err:
                reason = f"model not changed: {err}"
                self.get_logger().warning(f"refused parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
            self._next_segmenter = seg
            self.get_logger().info(f"model {seg.model_id!r} on {seg.device}{_temporal_summary(seg)}, backend "
                                   f"{_backend_summary(seg)} will run from the next frame")
        return SetParametersResult(successful=True)

    # ---- input ------------------------------------------------------------------------------------
    def _on_image(self, msg: Any) -> None:
        # Never work here: hand over the newest frame and return.
        with self._lock:
            self.counters.received += 1
        if self._slot.put(msg):
            with self._lock:
                self.counters.dropped += 1

    def _reject(self, msg: Any, err: ImageDecodeError) -> None:
        with self._lock:
            self.counters.rejected += 1
        if err.kind not in self._reported:
            self._reported.add(err.kind)
            self.get_logger().error(
                f"rejected a frame on {self._input_topic} (frame_id {msg.header.frame_id!r}): {err} "
                "[reported once; later frames with this problem are only counted as rejected]")

    # ---- worker -----------------------------------------------------------------------------------
    def run_worker(self) -> None:
        """Take the newest frame, segment it, publish; until the node is destroyed or ROS shuts down."""
        while not self._slot.closed and self.context.ok():
            msg = self._slot.take(timeout=0.2)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as err:  # keep the node up whatever one frame does
                if not self.context.ok():
                    return  # shutting down (SIGINT): nothing can be published any more
                with self._lock:
                    self.counters.failed += 1
                key = f"model:{type(err).__name__}"
                if key not in self._reported:
                    self._reported.add(key)
                    self.get_logger().error(f"inference failed: {err!r} [reported once; counted as failed]")

    def _wanted(self) -> Optional["_Wanted"]:
        """Which outputs have subscribers right now (asked once per frame); None if none has."""
        def subscribed(pub) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        w = _Wanted(mask=subscribed(self._pub_mask), boundary=subscribed(self._pub_boundary),
                    confidence=subscribed(self._pub_confidence), color=subscribed(self._pub_color),
                    segmentation=subscribed(self._pub_seg))
        return w if (w.mask or w.boundary or w.confidence or w.color or w.segmentation) else None

    def _swap_segmenter(self) -> None:
        """Run the model a parameter change built; the frames the old one holds back are published first."""
        old, self._segmenter, self._next_segmenter = self._segmenter, self._next_segmenter, None
        self._flush(old)
        self._publish_class_map()

    def _flush(self, segmenter: Segmenter) -> None:
        """Label and publish the frames ``segmenter`` still holds back (centered temporal models)."""
        wanted = self._wanted()
        request = OutputRequest(boundary=wanted.boundary or wanted.segmentation,
                                confidence=wanted.confidence) if wanted is not None else OutputRequest()
        results = segmenter.flush(request)
        if wanted is not None:
            for result in results:
                self._publish(result, wanted, segmenter.model_id)

    def _process(self, msg: Any) -> None:
        if self._next_segmenter is not None:
            self._swap_segmenter()
        max_pixels = self.get_parameter("max_input_pixels").value
        try:
            rgb = decode_message(msg, max_pixels=max_pixels)
        except ImageDecodeError as err:
            self._reject(msg, err)
            return
        wanted = self._wanted()
        if wanted is None:
            with self._lock:
                self.counters.skipped += 1
            return
        header = msg.header
        frame = Frame(image=rgb, stamp_ns=header.stamp.sec * 1_000_000_000 + header.stamp.nanosec,
                      camera_id=header.frame_id, meta=header)
        request = OutputRequest(boundary=wanted.boundary or wanted.segmentation, confidence=wanted.confidence)
        result = self._segmenter.push(frame, request)
        if result is not None:  # None while a centered model holds the frame back
            self._publish(result, wanted, self._segmenter.model_id)

    def _publish(self, result: SegmentationResult, wanted: "_Wanted", model_id: str) -> None:
        header = result.frame.meta  # the labelled frame's header, unchanged (the previous frame's when centered)
        mask = boundary = None
        if wanted.mask or wanted.segmentation:
            mask = to_image_msg(result.labels, header)
            if wanted.mask:
                self._pub_mask.publish(mask)
        if result.boundary is not None:
            boundary = to_image_msg(result.boundary, header)
            if wanted.boundary:
                self._pub_boundary.publish(boundary)
        if wanted.segmentation:
            self._pub_seg.publish(self._seg_type(
                header=header, mask=mask, boundary_confidence=boundary, frames_fused=result.frames_fused,
                inference_time_ms=result.inference_ms, model_id=model_id))
        if wanted.confidence and result.confidence is not None:
            self._pub_confidence.publish(to_image_msg(result.confidence, header))
        if wanted.color:
            alpha = self.get_parameter("overlay_alpha").value
            colors = overlay(result.frame.image, result.labels, self._segmenter.class_map, alpha=1.0 - alpha)
            self._pub_color.publish(to_image_msg(colors, header))
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            self.counters.processed += 1
            self._infer_ms.append(result.inference_ms)
            self._latency_ms.append((now_ns - result.frame.stamp_ns) / 1e6)
            self._fused.append(result.frames_fused)

    def _publish_class_map(self) -> None:
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        self._pub_class_map.publish(class_map_msg(self._segmenter.class_map, self._segmenter.model_id, header))

    # ---- statistics -------------------------------------------------------------------------------
    def _maybe_report_stats(self) -> None:
        period = self.get_parameter("stats_period").value
        t0, c0 = self._last_stats
        now = time.monotonic()
        if period <= 0 or now - t0 < period:
            return
        with self._lock:
            c = Counters(**self.counters.as_dict())
            infer = np.array(self._infer_ms) if self._infer_ms else np.zeros(1)
            latency = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            fused = np.array(self._fused) if self._fused else np.zeros(1)
            self._infer_ms.clear()
            self._latency_ms.clear()
            self._fused.clear()
        self._last_stats = (now, c)
        dt = now - t0
        rate_in, rate_out = (c.received - c0.received) / dt, (c.processed - c0.processed) / dt
        self.get_logger().info(
            f"frames received {c.received}, processed {c.processed}, dropped {c.dropped}, rejected {c.rejected}, "
            f"skipped {c.skipped} (no subscriber), failed {c.failed} | last {dt:.0f} s: in {rate_in:.1f} Hz, "
            f"out {rate_out:.1f} Hz, inference p50 {np.median(infer):.1f} ms, latency p50 "
            f"{np.median(latency):.1f} ms")
        level = DiagnosticStatus.OK
        message = "ok"
        if c.rejected > c0.rejected or c.failed > c0.failed:
            level, message = DiagnosticStatus.WARN, "frames rejected or failed"
        elif c.received > c0.received and c.processed == c0.processed and c.skipped == c0.skipped:
            level, message = DiagnosticStatus.WARN, "frames arrive but none is processed"
        values = {**c.as_dict(), "input_rate_hz": f"{rate_in:.2f}", "output_rate_hz": f"{rate_out:.2f}",
                  "processing_time_ms_p50": f"{np.median(infer):.2f}",
                  "pipeline_latency_ms_p50": f"{np.median(latency):.2f}", "model_id": self._segmenter.model_id,
                  **_temporal_values(self._segmenter, fused)}
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: segmentation",
                                  message=message, hardware_id=str(self._segmenter.device),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        diag = DiagnosticArray(status=[status])
        diag.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(diag)

    def stop_worker(self) -> None:
        """Make :meth:`run_worker` return after the frame it is working on (signal handlers call this)."""
        self._slot.close()

    def destroy_node(self) -> None:
        if not hasattr(self, "_slot"):  # __init__ failed (a parameter or model refused): nothing started yet
            super().destroy_node()
            return
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        if self.context.ok() and (self._worker is None or not self._worker.is_alive()):
            self._flush_before_exit()
        super().destroy_node()

    def _flush_before_exit(self) -> None:
        """Publish the frames the model still holds back, then give reliable subscribers a moment to get them."""
        try:
            with self._lock:
                before = self.counters.processed
            self._flush(self._segmenter)
            with self._lock:
                flushed = self.counters.processed - before
            if flushed:
                self.get_logger().info(f"published {flushed} held-back frame(s) before stopping")
                from rclpy.duration import Duration

                for pub in (self._pub_mask, self._pub_boundary, self._pub_confidence, self._pub_color, self._pub_seg):
                    if pub is not None and pub.get_subscription_count() > 0:
                        pub.wait_for_all_acked(Duration(seconds=1.0))
        except Exception as err:  # stopping must not fail because of the last frame
            self.get_logger().warning(f"could not publish the held-back frames: {err!r}")


def _temporal_summary(segmenter: Segmenter) -> str:
    if not isinstance(segmenter, TemporalSegmenter):
        return ""
    return (f", temporal: {segmenter.mode} window of {segmenter.window_size} frames, "
            f"{segmenter.delay_frames} frame(s) of added delay, max frame gap {segmenter.max_frame_gap_s:g} s")


def _temporal_values(segmenter: Segmenter, fused: np.ndarray) -> dict[str, str]:
    """/diagnostics keys on the frame window: delay, window size and how full it was in the last period."""
    window = segmenter.window_size if isinstance(segmenter, TemporalSegmenter) else 1
    values = {"delay_frames": str(segmenter.delay_frames), "window_frames": str(window),
              "frames_fused_mean": f"{fused.mean():.2f}", "window_fill": f"{fused.mean() / window:.2f}"}
    if isinstance(segmenter, TemporalSegmenter):
        values["temporal_mode"] = segmenter.mode
        values["window_resets"] = ", ".join(f"{k}={v}" for k, v in segmenter.resets.items())
    return values


def _spin(executor: MultiThreadedExecutor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def main(args: Optional[list[str]] = None) -> int:
    # Our own SIGINT/SIGTERM handling: rclpy's would shut the context down at once, and then the frames a
    # temporal model holds back could no longer be published.
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stopping: list[SegmentationNode] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # `ros2 launch` (non-interactive) sends a second SIGINT; it must not interrupt the teardown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not stopping:
            raise KeyboardInterrupt  # still starting: abandon the start
        stopping[0].stop_worker()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        node = SegmentationNode(worker_thread=False)
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    except (CheckpointError, ValueError, RuntimeError, OSError, ParameterException) as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {err}")
        rclpy.try_shutdown()
        return 2
    stopping.append(node)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=_spin, args=(executor,), name="vsseg-executor", daemon=True)
    spinner.start()
    try:
        node.run_worker()  # inference in the main thread; returns once SIGINT/SIGTERM called stop_worker()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        node.get_logger().info(f"stopping; frames {node.counters.as_dict()}")
        # Stop the executor and join its threads before anything is torn down: a thread still waiting inside
        # rclpy when the interpreter exits ends the process with std::terminate (SIGABRT) instead of 0.
        executor.shutdown(timeout_sec=5.0)
        spinner.join(timeout=5.0)
        node.destroy_node()  # publishes held-back frames while ROS is still up (publishing needs no executor)
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
