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

This module holds the states, the input and the worker; the node's other parts are mixins beside it:
``node_config`` (parameters, cameras, the model they build), ``publishing`` (outputs and the publish path),
``diagnostics`` (the counter line and /diagnostics). Why it is still a little over 400 lines: the states, the
worker and its stop are one class whose locks (``_transition``, ``_busy``) must be read together.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any, Callable, NamedTuple, Optional

from rclpy.lifecycle import LifecycleNodeMixin, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from vsseg_ros.core.loading import backend_summary as _backend_summary
from vsseg_ros.core.mailbox import SlotGroup
from vsseg_ros.core.segmenter import Frame, OutputRequest, Segmenter
from vsseg_ros.imaging.decode import ImageDecodeError, decode_message
from vsseg_ros.ros.camera import CameraInput
from vsseg_ros.ros.diagnostics import DiagnosticsMixin, temporal_summary
from vsseg_ros.ros.fastdds import FASTDDS_PROFILE
from vsseg_ros.ros.node_config import MODEL_ERRORS, ParametersMixin, StartupError
from vsseg_ros.ros.params import PARAMS
from vsseg_ros.ros.publishing import Outputs, PublishingMixin
from vsseg_ros.ros.qos import qos_profile

__all__ = ["NODE_NAME", "SegmentationLifecycleNode", "SegmentationNode"]

NODE_NAME = "segmentation_node"


class _Tag(NamedTuple):
    """``Frame.meta`` of a frame in the model: its camera and its message header (used unchanged)."""

    camera: CameraInput
    header: Any


class SegmentationNode(ParametersMixin, PublishingMixin, DiagnosticsMixin, Node):
    """``worker_thread=False``: the caller runs :meth:`run_worker` itself (``main`` does, in the main thread:
    torch called from a second thread was measured 20-50 % slower on 2 cores, each calling thread getting
    its own OpenMP team). ``autostart=False`` leaves the node unconfigured (the lifecycle node's start)."""

    def __init__(
        self,
        worker_thread: bool = True,
        autostart: bool = True,
        on_up: Optional[Callable[["SegmentationNode"], None]] = None,
        **kwargs: Any,
    ) -> None:
        # State every method relies on, set before anything can fail, so that tearing down a node whose
        # construction failed (rclpy destroys it at shutdown) never meets a missing attribute.
        self.cameras: list[CameraInput] = []
        self._slots: SlotGroup = SlotGroup()
        self._diagnostics: Any = None
        self._segmenter: Optional[Segmenter] = None
        self._next_segmenter: Optional[Segmenter] = None
        self._out: Optional[Outputs] = None
        self._stats_timer: Any = None
        self._last_stats = time.monotonic()
        self._active = False
        self._reported: set[tuple[str, str]] = set()
        self._transition = threading.RLock()  # one state change at a time
        self._busy = threading.Lock()  # held by the worker while it processes a frame
        self._stopping = threading.Event()
        self._frames_finished = False  # finish_frames ran: the held-back frames went out once
        self._worker: Optional[threading.Thread] = None
        # Called once the node is up, just before its first output (the latched class map) goes out: from then
        # on a SIGINT must stop it cleanly rather than count as "during start-up" (main's signal handler).
        self._on_up = on_up
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
                f"{segmenter.class_map.num_classes} classes{temporal_summary(segmenter)}; "
                f"backend {_backend_summary(segmenter)}"
            )
            if self._on_up is not None:
                self._on_up(self)
            self._publish_class_map()
            self._last_stats = time.monotonic()
            for camera in self.cameras:
                camera.period(active=False)  # the first reporting period starts now
            self._stats_timer = self.create_timer(0.5, self._tick)
            return None

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

    def _swap_segmenter(self) -> None:
        """Run the model a parameter change built; the frames the old one holds back are published first."""
        old, self._segmenter, self._next_segmenter = self._segmenter, self._next_segmenter, None
        self._flush(old)
        self._publish_class_map()

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

    # ---- stopping ---------------------------------------------------------------------------------
    def stop_worker(self) -> None:
        """Make :meth:`run_worker` return after the frame it is working on (signal handlers call this)."""
        self._stopping.set()
        self._slots.close()

    def finish_frames(self) -> None:
        """Stop the worker and publish the frames the model still holds back (once; destroy_node calls it)."""
        self.stop_worker()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        if self._frames_finished:
            return
        self._frames_finished = True
        if self.context.ok() and self._active and (self._worker is None or not self._worker.is_alive()):
            self._flush_before_exit()

    def destroy_node(self) -> None:
        self.finish_frames()
        super().destroy_node()


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
