"""segmentation_node: camera images in, per-pixel classes, boundary and confidence maps out.

The subscription callback only hands the newest message to a worker (never inference in a callback); the
worker decodes, runs the Segmenter and publishes. A frame replaced before the worker took it is dropped and
counted. Outputs nobody subscribes to are neither computed nor serialised.

One class, :class:`SegmentationNode`, in the states of a ROS 2 managed node: :meth:`configure` loads the model
and creates the publishers (the slow part), :meth:`activate` creates the subscription, :meth:`deactivate`
destroys it and stops publishing with the model kept warm, :meth:`cleanup` frees the model. Started plainly it
configures and activates itself in its constructor; :class:`SegmentationLifecycleNode` (``rclpy.lifecycle``)
maps the lifecycle transitions onto the same methods.

With ``image_topics`` the node serves several cameras with one model: one subscription, keep-newest slot,
counters and /diagnostics status per camera, each camera's outputs under its image topic's parent namespace.
The worker takes the frames waiting when it is free (up to ``max_batch``, the longest-waiting camera first, so
a camera that floods cannot starve the others) and runs them through the network as one batch.

Every output carries the header of the frame it labels: with a centered temporal model that is the previous
frame's, published one frame late. ``semantic/camera_info`` is the camera's camera_info of the same stamp,
sent with that header. Frames a temporal model still holds back are flushed
(labelled and published) when the model is replaced by a parameter change, on deactivation and when the node
stops.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vsseg_ros.core.checkpoint import CheckpointError
from vsseg_ros.core.loading import backend_summary as _backend_summary, load_segmenter
from vsseg_ros.core.mailbox import SlotGroup
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter
from vsseg_ros.core.temporal_segmenter import TemporalSegmenter
from vsseg_ros.core.visualize import overlay
from vsseg_ros.imaging.decode import ImageDecodeError, decode_message
from vsseg_ros.ros import health
from vsseg_ros.ros.camera import CameraInput, Counters
from vsseg_ros.ros.camera_info import CameraInfoMatcher
from vsseg_ros.ros.convert import class_map_msg, label_info_msg, to_image_msg, to_mono8
from vsseg_ros.ros.fastdds import FASTDDS_PROFILE
from vsseg_ros.ros.params import PARAMS, PARAMS_BY_NAME
from vsseg_ros.ros.qos import latched_qos, qos_profile

NODE_NAME = "segmentation_node"
#: what loading a model can raise for a bad parameter value or a bad file (all reported with the reason)
MODEL_ERRORS = (CheckpointError, ValueError, RuntimeError, OSError, AssertionError)


class StartupError(RuntimeError):
    """The node cannot start: a parameter value or the model. The message says which and why."""


@dataclass(frozen=True)
class _Wanted:
    """Outputs with at least one subscriber, sampled once per frame."""

    mask: bool
    boundary: bool
    confidence: bool
    color: bool
    segmentation: bool


@dataclass
class _Outputs:
    """One camera's publishers, from configure to cleanup."""

    mask: Any
    boundary: Any
    confidence: Any  # None unless publish_confidence
    color: Any  # None unless publish_color_mask
    segmentation: Any
    class_map: Any
    camera_info: Any
    label_info: Any  # None where vision_msgs is not importable

    def maps(self) -> tuple[Any, ...]:
        return self.mask, self.boundary, self.confidence, self.color, self.segmentation

    def all(self) -> tuple[Any, ...]:
        return (*self.maps(), self.class_map, self.camera_info, self.label_info)


class _Tag(NamedTuple):
    """``Frame.meta`` of a frame in the model: its camera and its message header (used unchanged)."""

    camera: CameraInput
    header: Any


class SegmentationNode(Node):
    """``worker_thread=False``: the caller runs :meth:`run_worker` itself (``main`` does, in the main thread:
    torch called from a second thread was measured 20-50 % slower on 2 cores, each calling thread getting
    its own OpenMP team). ``autostart=False`` leaves the node unconfigured (the lifecycle node's start)."""

    def __init__(self, worker_thread: bool = True, autostart: bool = True, **kwargs: Any) -> None:
        # State every method relies on, set before anything can fail, so that tearing down a node whose
        # construction failed (rclpy destroys it at shutdown) never meets a missing attribute.
        self.cameras: list[CameraInput] = []
        self._slots: SlotGroup = SlotGroup()
        self._diagnostics: Any = None
        self._segmenter: Optional[Segmenter] = None
        self._next_segmenter: Optional[Segmenter] = None
        self._out: Optional[_Outputs] = None
        self._stats_timer: Any = None
        self._last_stats = time.monotonic()
        self._active = False
        self._reported: set[tuple[str, str]] = set()
        self._transition = threading.RLock()  # one state change at a time
        self._busy = threading.Lock()  # held by the worker while it processes a frame
        self._stopping = threading.Event()
        self._worker: Optional[threading.Thread] = None
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, spec.descriptor())
        values = self._values()
        reason = self._invalid(values)
        if reason:
            raise StartupError(reason)
        self.cameras = self._make_cameras(values)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if autostart:
            reason = self.configure()
            if reason:
                raise StartupError(reason)
            self.activate()
        if worker_thread:
            self._worker = threading.Thread(target=self.run_worker, name="vsseg-worker", daemon=True)
            self._worker.start()

    @property
    def camera(self) -> Optional[CameraInput]:
        """The first (with one camera, the only) camera input."""
        return self.cameras[0] if self.cameras else None

    def _make_cameras(self, values: dict[str, Any]) -> list[CameraInput]:
        """One input per camera; the outputs beside each image topic (image_transport's rule for camera_info:
        /ns/image_raw -> /ns/camera_info), or, with no image_topics, today's `image` and `semantic/`."""
        suffix = "/compressed" if values["image_transport"] == "compressed" else ""
        topics = list(values["image_topics"] or [])
        if not topics:
            image = self.resolve_topic_name("image")
            return [CameraInput(image + suffix, self._slots.slot(), "semantic", _parent(image) + "/camera_info")]
        cameras: list[CameraInput] = []
        seen: dict[str, str] = {}
        for given in topics:
            try:
                image = self.resolve_topic_name(given)
            except Exception as err:
                raise StartupError(f"image_topics: {given!r} is not a valid topic name: {err}") from None
            parent = _parent(image)
            for key, what in ((image, "image topic"), (parent, "namespace")):
                if key in seen:
                    raise StartupError(
                        f"image_topics: {given!r} and {seen[key]!r} have the same {what} "
                        f"({key or '/'}), so their outputs would mix; list each camera once, each in "
                        "its own namespace"
                    )
                seen[key] = given
            cameras.append(
                CameraInput(
                    image + suffix,
                    self._slots.slot(),
                    parent + "/semantic",
                    parent + "/camera_info",
                    window_prefix=image + "#",
                )
            )
        return cameras

    # ---- parameters -------------------------------------------------------------------------------
    def _values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMS}

    @staticmethod
    def _invalid(values: dict[str, Any]) -> Optional[str]:
        for spec in PARAMS:
            reason = spec.validate(values[spec.name])
            if reason:
                return reason
        if (values["network_image_height"] == 0) != (values["network_image_width"] == 0):
            return "set network_image_width and network_image_height together (both 0 = the model's own)"
        return None

    def _build_segmenter(self, v: dict[str, Any]) -> Segmenter:
        size = (v["network_image_height"], v["network_image_width"])
        own = PARAMS_BY_NAME["image_mean"].default
        return load_segmenter(
            v["model_path"],
            device=v["device"],
            precision=v["precision"],
            input_size=size if size[0] else None,
            mean=None if v["image_mean"] == own else [float(x) for x in v["image_mean"]],
            std=None if v["image_stddev"] == own else [float(x) for x in v["image_stddev"]],
            temporal_mode=v["temporal_mode"] or None,
            max_frame_gap_s=v["max_frame_gap"],
            backend=v["backend"],
        )

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
        reason = self._invalid(new)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if reload and self._segmenter is not None:  # unconfigured: the model loads at configure
            try:
                seg = self._build_segmenter(new)
            except MODEL_ERRORS as err:
                reason = f"model not changed: {err}"
                self.get_logger().warning(f"refused parameter change: {reason}")
                return SetParametersResult(successful=False, reason=reason)
            self._next_segmenter = seg
            self.get_logger().info(
                f"model {seg.model_id!r} on {seg.device}{_temporal_summary(seg)}, backend "
                f"{_backend_summary(seg)} will run from the next frame"
            )
        return SetParametersResult(successful=True)

    # ---- states -----------------------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        return self._segmenter is not None

    @property
    def active(self) -> bool:
        return self._active

    def configure(self) -> Optional[str]:
        """Load the model and create the publishers; None on success, else the reason (nothing is kept)."""
        with self._transition:
            values = self._values()
            reason = self._invalid(values)
            if reason:
                return reason
            if values["worker_threads"] > 0:
                import torch

                torch.set_num_threads(values["worker_threads"])
            self.get_logger().info(
                f"loading the model ({values['model_path'] or 'the packaged default'}) on {values['device']}"
            )
            try:
                segmenter = self._build_segmenter(values)
            except MODEL_ERRORS as err:
                return f"cannot load the model: {err}"
            self._segmenter = segmenter
            self._create_outputs(values)
            self.get_logger().info(
                f"model {segmenter.model_id!r} on {segmenter.device}, precision {values['precision']}, "
                f"{segmenter.class_map.num_classes} classes{_temporal_summary(segmenter)}; "
                f"backend {_backend_summary(segmenter)}"
            )
            self._publish_class_map()
            self._last_stats = time.monotonic()
            for camera in self.cameras:
                camera.period(active=False)  # the first reporting period starts now
            self._stats_timer = self.create_timer(0.5, self._tick)
            return None

    def _create_outputs(self, values: dict[str, Any]) -> None:
        """Every camera's publishers and camera_info matcher, and the one /diagnostics publisher."""
        from vsseg_ros.msg import ClassMap as ClassMapMsg, SemanticSegmentation

        self._seg_type = SemanticSegmentation
        label_info_type = _label_info_type()
        qos = qos_profile(values["output_qos"], values["output_qos_depth"])
        slop_ns = int(round(values["camera_info_slop"] * 1e9))
        for cam in self.cameras:
            ns = cam.output_ns
            cam.outputs = _Outputs(
                mask=self.create_publisher(Image, f"{ns}/mask", qos),
                boundary=self.create_publisher(Image, f"{ns}/boundary_confidence", qos),
                confidence=(
                    self.create_publisher(Image, f"{ns}/confidence", qos) if values["publish_confidence"] else None
                ),
                color=self.create_publisher(Image, f"{ns}/color_mask", qos) if values["publish_color_mask"] else None,
                segmentation=self.create_publisher(SemanticSegmentation, f"{ns}/segmentation", qos),
                class_map=self.create_publisher(ClassMapMsg, f"{ns}/class_map", latched_qos()),
                camera_info=self.create_publisher(CameraInfo, f"{ns}/camera_info", qos),
                label_info=(
                    self.create_publisher(label_info_type, f"{ns}/label_info", latched_qos())
                    if label_info_type is not None
                    else None
                ),
            )
            cam.info = CameraInfoMatcher(cam.info_topic, cam.topic, slop_ns, self.get_logger().warning)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._out = self.camera.outputs if self.camera is not None else None

    def activate(self) -> None:
        """Subscribe to the camera and process what comes."""
        with self._transition:
            values = self._values()
            qos = qos_profile(values["input_qos"], values["input_qos_depth"])
            msg_type = CompressedImage if values["image_transport"] == "compressed" else Image
            # camera_info: best-effort (matches reliable drivers too), a few deep (it may come just before)
            info_qos = qos_profile("sensor_data", 10)
            for cam in self.cameras:
                cam.activated()
                cam.subscription = self.create_subscription(msg_type, cam.topic, cam.on_message, qos)
                cam.info_subscription = self.create_subscription(
                    CameraInfo, cam.info_topic, self._on_camera_info(cam), info_qos
                )
                self.get_logger().info(
                    f"subscribed to {cam.topic} ({values['input_qos']}, depth "
                    f"{values['input_qos_depth']}) and {cam.info_topic}; publishing under "
                    f"{self.resolve_topic_name(cam.output_ns)}/"
                )
            self._active = True

    def _on_camera_info(self, cam: CameraInput) -> Any:
        def callback(msg: CameraInfo) -> None:
            late = cam.info.on_message(msg)  # the camera_info of a mask that already went out without it
            outputs = cam.outputs
            if late is not None and outputs is not None:
                outputs.camera_info.publish(late)

        return callback

    def deactivate(self) -> None:
        """Stop processing and publishing (the subscription goes); the model stays loaded."""
        with self._transition:
            for cam in self.cameras:
                for sub in (cam.subscription, cam.info_subscription):
                    if sub is not None:
                        self.destroy_subscription(sub)
                cam.subscription = cam.info_subscription = None
            with self._busy:  # the frames in the model, if any, are finished first
                if self._active and self._segmenter is not None:
                    self._flush(self._segmenter)
                self._active = False
                for cam in self.cameras:
                    cam.deactivated()

    def cleanup(self) -> None:
        """Destroy the publishers and free the model."""
        with self._transition:
            if self._stats_timer is not None:
                self.destroy_timer(self._stats_timer)
                self._stats_timer = None
            for cam in self.cameras:
                if cam.outputs is not None:
                    for pub in cam.outputs.all():
                        if pub is not None:
                            self.destroy_publisher(pub)
                cam.outputs = cam.info = None
            if self._diagnostics is not None:
                self.destroy_publisher(self._diagnostics)
                self._diagnostics = None
            self._out = None
            with self._busy:
                device = getattr(self._segmenter, "device", "cpu")
                self._segmenter = self._next_segmenter = None
            gc.collect()
            if str(device).startswith("cuda"):
                import torch

                torch.cuda.empty_cache()

    def unconfigure(self) -> None:
        """From any state back to unconfigured: deactivate and clean up what is there."""
        with self._transition:
            if self._active:
                self.deactivate()
            if self.configured:
                self.cleanup()

    def shutdown(self) -> None:
        """From any state: :meth:`unconfigure`, and let :meth:`run_worker` return."""
        self.unconfigure()
        self.stop_worker()

    # ---- input ------------------------------------------------------------------------------------
    def _reject(self, cam: CameraInput, msg: Any, err: ImageDecodeError) -> None:
        cam.count("rejected")
        self._report_once(
            cam,
            err.kind,
            f"rejected a frame on {cam.topic} (frame_id {msg.header.frame_id!r}): "
            f"{err} [reported once; later frames with this kind of problem are only counted as "
            "rejected]",
        )

    def _report_once(self, cam: Optional[CameraInput], kind: str, text: str, warning: bool = False) -> None:
        """Log ``text`` the first time ``kind`` happens on ``cam`` (None: on any camera)."""
        key = (cam.topic if cam is not None else "", kind)
        if key in self._reported:
            return
        self._reported.add(key)
        (self.get_logger().warning if warning else self.get_logger().error)(text)

    # ---- worker -----------------------------------------------------------------------------------
    def run_worker(self) -> None:
        """Take the newest frame of each camera that has one (up to max_batch, longest-waiting first), segment
        them, publish; until :meth:`stop_worker`, shutdown or ROS stops."""
        while not self._stopping.is_set() and self.context.ok():
            if not self.cameras:
                time.sleep(0.2)
                continue
            taken = self._slots.take(self.get_parameter("max_batch").value, timeout=0.2)
            if not taken:
                continue
            with self._busy:
                if self._active:
                    self._handle([(self.cameras[i], msg) for i, msg in taken])

    def _handle(self, batch: list[tuple[CameraInput, Any]]) -> None:
        in_model: list[CameraInput] = []
        try:
            self._process(batch, in_model)
        except Exception as err:  # keep the node up whatever one frame does
            if not self.context.ok():
                return  # shutting down (SIGINT): nothing can be published any more
            for cam in in_model:  # one batch, one failure: each of its cameras counts it
                cam.failed(f"{type(err).__name__}: {err}")
            self._report_once(
                None,
                f"model:{type(err).__name__}",
                f"inference failed: {err!r} [reported once per kind of error; later frames that fail "
                "are counted as failed and the node goes on with the next frame]",
            )
        finally:
            for cam, _ in batch:
                cam.frame_started = None

    def _wanted(self, cam: CameraInput) -> Optional["_Wanted"]:
        """Which of ``cam``'s outputs have subscribers right now (asked once per frame); None if none has."""

        def subscribed(pub) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        o = cam.outputs
        w = _Wanted(
            mask=subscribed(o.mask),
            boundary=subscribed(o.boundary),
            confidence=subscribed(o.confidence),
            color=subscribed(o.color),
            segmentation=subscribed(o.segmentation),
        )
        return w if (w.mask or w.boundary or w.confidence or w.color or w.segmentation) else None

    def _swap_segmenter(self) -> None:
        """Run the model a parameter change built; the frames the old one holds back are published first."""
        old, self._segmenter, self._next_segmenter = self._segmenter, self._next_segmenter, None
        self._flush(old)
        self._publish_class_map()

    def _request(self, wanted: "_Wanted") -> OutputRequest:
        return OutputRequest(
            boundary=wanted.boundary or wanted.segmentation,
            confidence=wanted.confidence,
            resolution=self.get_parameter("output_resolution").value,
        )

    def _flush(self, segmenter: Segmenter) -> None:
        """Label and publish the frames ``segmenter`` still holds back (centered temporal models)."""
        wanted = [w for w in (self._wanted(cam) for cam in self.cameras) if w is not None]
        request = (
            self._request(wanted[0])
            if wanted
            else OutputRequest(resolution=self.get_parameter("output_resolution").value)
        )
        for w in wanted[1:]:
            request = request.union(self._request(w))
        for result in segmenter.flush(request):
            self._publish(result, segmenter.model_id)

    def _process(self, batch: list[tuple[CameraInput, Any]], in_model: list[CameraInput]) -> None:
        """Decode each camera's frame, then run those with a subscriber through the model together."""
        if self._next_segmenter is not None:
            self._swap_segmenter()
        limits = self.get_parameter("max_input_pixels").value, self.get_parameter("max_input_side").value
        frames: list[Frame] = []
        request: Optional[OutputRequest] = None
        for cam, msg in batch:
            damage: list[str] = []
            try:
                rgb = decode_message(msg, max_pixels=limits[0], max_side=limits[1], warnings=damage)
            except ImageDecodeError as err:
                self._reject(cam, msg, err)
                continue
            if damage:
                self._report_once(
                    cam,
                    "decoder_warning",
                    f"a compressed frame on {cam.topic} decoded although "
                    f"the image library reported damage ({'; '.join(damage)[:300]}); such frames are "
                    "processed [reported once]",
                    warning=True,
                )
            wanted = self._wanted(cam)
            if wanted is None:
                cam.count("skipped")
                continue
            header = msg.header
            frames.append(
                Frame(
                    image=rgb,
                    stamp_ns=header.stamp.sec * 1_000_000_000 + header.stamp.nanosec,
                    camera_id=cam.window_id(header.frame_id),
                    meta=_Tag(cam, header),
                )
            )
            request = self._request(wanted) if request is None else request.union(self._request(wanted))
            in_model.append(cam)
        if not frames or request is None:
            return
        started = time.monotonic()
        for cam in in_model:
            cam.frame_started = started
        seg = self._segmenter
        # one frame: push (what a single camera always does); several: one batch through the network
        results = [seg.push(frames[0], request)] if len(frames) == 1 else seg.push_batch(frames, request)
        for result in results:
            if result is not None:  # None while a centered model holds the frame back
                self._publish(result, seg.model_id)

    def _publish(self, result: SegmentationResult, model_id: str) -> None:
        # the labelled frame's camera and header, unchanged (the previous frame's when centered)
        cam, header = result.frame.meta
        wanted = self._wanted(cam)
        if wanted is None:
            return
        o = cam.outputs
        mask = boundary = None
        if wanted.mask or wanted.segmentation:
            mask = to_image_msg(result.labels, header)
            if wanted.mask:
                o.mask.publish(mask)
        if result.boundary is not None:
            float_topic = self.get_parameter("boundary_encoding").value == "32FC1"
            # the 32FC1 message only where it goes out (the topic in 32FC1, or SemanticSegmentation)
            if wanted.segmentation or (wanted.boundary and float_topic):
                boundary = to_image_msg(result.boundary, header)
            if wanted.boundary:
                o.boundary.publish(boundary if float_topic else to_image_msg(to_mono8(result.boundary), header))
        if wanted.segmentation:
            o.segmentation.publish(
                self._seg_type(
                    header=header,
                    mask=mask,
                    boundary_confidence=boundary,
                    frames_fused=result.frames_fused,
                    inference_time_ms=result.inference_ms,
                    model_id=model_id,
                )
            )
        if wanted.confidence and result.confidence is not None:
            conf = result.confidence
            o.confidence.publish(
                to_image_msg(
                    conf if self.get_parameter("confidence_encoding").value == "32FC1" else to_mono8(conf), header
                )
            )
        if wanted.color:
            alpha = self.get_parameter("overlay_alpha").value
            image = result.frame.image
            if image.shape[:2] != result.labels.shape:  # maps at the network's resolution
                import cv2

                image = cv2.resize(image, result.labels.shape[::-1], interpolation=cv2.INTER_AREA)
            colors = overlay(image, result.labels, self._segmenter.class_map, alpha=1.0 - alpha)
            o.color.publish(to_image_msg(colors, header))
        info = cam.info.for_mask(header, result.frame.image.shape[:2], result.labels.shape)
        if info is not None:
            o.camera_info.publish(info)
        now_ns = self.get_clock().now().nanoseconds
        cam.processed(result.inference_ms, (now_ns - result.frame.stamp_ns) / 1e6, result.frames_fused)

    def _publish_class_map(self) -> None:
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        seg = self._segmenter
        for cam in self.cameras:
            cam.outputs.class_map.publish(class_map_msg(seg.class_map, seg.model_id, header))
            if cam.outputs.label_info is not None:
                cam.outputs.label_info.publish(label_info_msg(seg.class_map, header))

    # ---- statistics and health --------------------------------------------------------------------
    def _limits(self) -> health.Limits:
        get = lambda name: float(self.get_parameter(name).value)  # noqa: E731
        return health.Limits(
            input_timeout_s=get("input_timeout"),
            latency_budget_ms=get("latency_budget_ms"),
            expected_rate_hz=get("expected_rate_hz"),
            max_drop_rate=get("max_drop_rate"),
        )

    def _tick(self) -> None:
        """Every 0.5 s while configured: the silent-publisher check, and every stats_period the report."""
        for cam in self.cameras:
            self._check_silent(cam)
        period = self.get_parameter("stats_period").value
        now = time.monotonic()
        if period <= 0 or now - self._last_stats < period:
            return
        self._last_stats = now
        statuses = [self._report(cam, *cam.period(self._active)) for cam in self.cameras]
        diag = DiagnosticArray(status=statuses)
        diag.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(diag)

    def _check_silent(self, cam: CameraInput) -> None:
        timeout = self.get_parameter("input_timeout").value
        sub = cam.subscription
        if (
            self._active
            and sub is not None
            and cam.silent_publisher(sub.get_publisher_count(), timeout if timeout > 0 else 5.0)
        ):
            self.get_logger().warning(
                f"a publisher is matched on {cam.topic} but no frame has arrived for "
                f"{timeout if timeout > 0 else 5.0:g} s. If the camera is publishing, its frames are lost in "
                "transport: large frames (over about 0.5 MB) from or to a best-effort endpoint are dropped by Fast "
                "DDS's default transports. Fix: give the camera driver and this node the shipped Fast DDS profile "
                f"(FASTDDS_DEFAULT_PROFILES_FILE={FASTDDS_PROFILE}; `ros2 launch vsseg_ros segmentation.launch.py "
                "fastdds_profile:=true` sets it for the node), or set input_qos: reliable for a reliable camera "
                "[reported once]"
            )

    def _report(
        self, cam: CameraInput, p: health.Period, c: Counters, samples: dict[str, np.ndarray]
    ) -> DiagnosticStatus:
        """Log ``cam``'s counter line and return its /diagnostics status."""
        level, message = health.assess(p, self._limits())
        infer, latency = samples["infer_ms"], samples["latency_ms"]
        med = lambda a: float(np.median(a)) if a.size else 0.0  # noqa: E731
        rate_in = p.received / p.seconds if p.seconds > 0 else 0.0
        rate_out = p.processed / p.seconds if p.seconds > 0 else 0.0
        where = f"{cam.topic}: " if len(self.cameras) > 1 else ""
        self.get_logger().info(
            f"{where}frames received {c.received}, processed {c.processed}, dropped {c.dropped}, "
            f"rejected {c.rejected}, skipped {c.skipped} (no subscriber), failed {c.failed} | "
            f"last {p.seconds:.0f} s: in {rate_in:.1f} Hz, out {rate_out:.1f} Hz, inference p50 {med(infer):.1f} ms, "
            f"latency p50 {med(latency):.1f} ms | "
            f"health {('OK', 'WARN', 'ERROR')[level]}: {message}"
        )
        seg = self._segmenter
        values = {
            **c.as_dict(),
            "state": "active" if self._active else "inactive",
            "input_topic": cam.topic,
            "camera_info_received": str(cam.info.received),
            "camera_info_published": str(cam.info.published),
            "input_rate_hz": f"{rate_in:.2f}",
            "output_rate_hz": f"{rate_out:.2f}",
            "drop_rate": f"{p.dropped / p.received:.3f}" if p.received else "0.000",
            "processing_time_ms_p50": f"{med(infer):.2f}",
            "pipeline_latency_ms_p50": f"{med(latency):.2f}",
            "pipeline_latency_ms_p95": f"{health.p95(latency):.2f}" if latency.size else "0.00",
            "seconds_since_input": "never" if p.since_input_s is None else f"{p.since_input_s:.1f}",
            "failing_in_a_row": str(p.failing_in_a_row),
            "model_id": seg.model_id,
            "device": str(seg.device),
            **_temporal_values(seg, samples["fused"] if samples["fused"].size else np.zeros(1)),
        }
        return DiagnosticStatus(
            level=bytes([level]),
            name=f"{self.get_fully_qualified_name()}: {cam.topic}",
            message=message,
            hardware_id=cam.frame_id or cam.topic,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )

    # ---- stopping ---------------------------------------------------------------------------------
    def stop_worker(self) -> None:
        """Make :meth:`run_worker` return after the frame it is working on (signal handlers call this)."""
        self._stopping.set()
        self._slots.close()

    def destroy_node(self) -> None:
        self.stop_worker()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        if self.context.ok() and self._active and (self._worker is None or not self._worker.is_alive()):
            self._flush_before_exit()
        super().destroy_node()

    def _flush_before_exit(self) -> None:
        """Publish the frames the model still holds back, then give reliable subscribers a moment to get them."""
        try:
            before = self._processed()
            self._flush(self._segmenter)
            flushed = self._processed() - before
            if flushed:
                self.get_logger().info(f"published {flushed} held-back frame(s) before stopping")
                from rclpy.duration import Duration

                for cam in self.cameras:
                    for pub in cam.outputs.maps():
                        if pub is not None and pub.get_subscription_count() > 0:
                            pub.wait_for_all_acked(Duration(seconds=1.0))
        except Exception as err:  # stopping must not fail because of the last frame
            self.get_logger().warning(f"could not publish the held-back frames: {err!r}")

    def _processed(self) -> int:
        total = 0
        for cam in self.cameras:
            with cam.lock:
                total += cam.counters.processed
        return total


class SegmentationLifecycleNode(LifecycleNodeMixin, SegmentationNode):
    """The same node as a ROS 2 managed node (``rclpy.lifecycle``): the standard lifecycle services
    (``~/change_state``, ``~/get_state``, ...) and ``~/transition_event``, so a lifecycle manager (Nav2's,
    Autoware's) drives it. Each transition runs the node's own method; a model that does not load fails
    ``configure`` (the node stays unconfigured, with the reason logged and configurable again)."""

    def __init__(self, worker_thread: bool = True, **kwargs: Any) -> None:
        SegmentationNode.__init__(self, worker_thread=worker_thread, autostart=False, **kwargs)
        LifecycleNodeMixin.__init__(self, enable_communication_interface=True)
        self.get_logger().info("managed node: unconfigured; `configure` loads the model, `activate` subscribes")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        reason = self.configure()
        if reason:
            self.get_logger().error(f"configure failed, still unconfigured: {reason}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.activate()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition raised in state {state.label!r}; cleaning up to unconfigured")
        try:
            self.unconfigure()
        except Exception as err:
            self.get_logger().error(f"cleaning up after the error failed: {err!r}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS


def _parent(topic: str) -> str:
    """The namespace a resolved topic is in ("" for a topic at the root)."""
    return topic.rsplit("/", 1)[0]


def _label_info_type() -> Any:
    """vision_msgs/LabelInfo where vision_msgs is installed (Nav2's semantic layer reads it), else None."""
    try:
        from vision_msgs.msg import LabelInfo
    except ImportError:
        return None
    return LabelInfo


def _temporal_summary(segmenter: Segmenter) -> str:
    if not isinstance(segmenter, TemporalSegmenter):
        return ""
    return (
        f", temporal: {segmenter.mode} window of {segmenter.window_size} frames, "
        f"{segmenter.delay_frames} frame(s) of added delay, max frame gap {segmenter.max_frame_gap_s:g} s"
    )


def _temporal_values(segmenter: Segmenter, fused: np.ndarray) -> dict[str, str]:
    """/diagnostics keys on the frame window: delay, window size and how full it was in the last period."""
    window = segmenter.window_size if isinstance(segmenter, TemporalSegmenter) else 1
    values = {
        "delay_frames": str(segmenter.delay_frames),
        "window_frames": str(window),
        "frames_fused_mean": f"{fused.mean():.2f}",
        "window_fill": f"{fused.mean() / window:.2f}",
    }
    if isinstance(segmenter, TemporalSegmenter):
        values["temporal_mode"] = segmenter.mode
        values["window_resets"] = ", ".join(f"{k}={v}" for k, v in segmenter.resets.items())
    return values
