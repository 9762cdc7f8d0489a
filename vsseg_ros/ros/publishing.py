"""The segmentation node's outputs: each camera's publishers, which of them have subscribers this frame, and the
per-frame publish path (a result to mask, boundary, confidence, colour overlay, SemanticSegmentation and
camera_info messages, each built only where it goes out, all with the labelled frame's header).

:class:`PublishingMixin` is one part of :class:`vsseg_ros.ros.node.SegmentationNode`: it uses the node's
publishers, parameters, clock, cameras and ``_segmenter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo, Image

from vsseg_ros.core.segmenter import OutputRequest, SegmentationResult, Segmenter
from vsseg_ros.core.visualize import overlay
from vsseg_ros.ros.camera import CameraInput
from vsseg_ros.ros.camera_info import CameraInfoMatcher
from vsseg_ros.ros.convert import class_map_msg, label_info_msg, to_image_msg, to_mono8
from vsseg_ros.ros.qos import latched_qos, qos_profile


@dataclass(frozen=True)
class Wanted:
    """Outputs with at least one subscriber, sampled once per frame."""

    mask: bool
    boundary: bool
    confidence: bool
    color: bool
    segmentation: bool


@dataclass
class Outputs:
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


class PublishingMixin:
    """The publishing side of the segmentation node."""

    def _create_outputs(self, values: dict[str, Any]) -> None:
        """Every camera's publishers and camera_info matcher, and the one /diagnostics publisher."""
        from vsseg_ros.msg import ClassMap as ClassMapMsg, SemanticSegmentation

        self._seg_type = SemanticSegmentation
        label_info_type = _label_info_type()
        qos = qos_profile(values["output_qos"], values["output_qos_depth"])
        slop_ns = int(round(values["camera_info_slop"] * 1e9))
        for cam in self.cameras:
            ns = cam.output_ns
            cam.outputs = Outputs(
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

    def _on_camera_info(self, cam: CameraInput) -> Any:
        def callback(msg: CameraInfo) -> None:
            late = cam.info.on_message(msg)  # the camera_info of a mask that already went out without it
            outputs = cam.outputs
            if late is not None and outputs is not None:
                outputs.camera_info.publish(late)

        return callback

    def _wanted(self, cam: CameraInput) -> Optional["Wanted"]:
        """Which of ``cam``'s outputs have subscribers right now (asked once per frame); None if none has."""

        def subscribed(pub) -> bool:
            return pub is not None and pub.get_subscription_count() > 0

        o = cam.outputs
        w = Wanted(
            mask=subscribed(o.mask),
            boundary=subscribed(o.boundary),
            confidence=subscribed(o.confidence),
            color=subscribed(o.color),
            segmentation=subscribed(o.segmentation),
        )
        return w if (w.mask or w.boundary or w.confidence or w.color or w.segmentation) else None

    def _request(self, wanted: "Wanted") -> OutputRequest:
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


def _label_info_type() -> Any:
    """vision_msgs/LabelInfo where vision_msgs is installed (Nav2's semantic layer reads it), else None."""
    try:
        from vision_msgs.msg import LabelInfo
    except ImportError:
        return None
    return LabelInfo
