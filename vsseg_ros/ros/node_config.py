"""What the node's parameters set up: their values checked together, the camera inputs ``image``/``image_topics``
name, the model the model parameters build, and a parameter change at runtime (a new model from the next frame).

:class:`ParametersMixin` is one part of :class:`vsseg_ros.ros.node.SegmentationNode` (a ``rclpy`` node): it uses
the node's ``get_parameter``, ``resolve_topic_name``, logger, ``_slots`` and ``_segmenter``.
"""

from __future__ import annotations

from typing import Any, Optional

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.loading import backend_summary, load_segmenter
from vsseg_ros.core.segmenter import Segmenter
from vsseg_ros.ros.camera import CameraInput
from vsseg_ros.ros.diagnostics import temporal_summary
from vsseg_ros.ros.params import PARAMS, PARAMS_BY_NAME

#: what loading a model can raise for a bad parameter value or a bad file (all reported with the reason)
MODEL_ERRORS = (CheckpointError, ValueError, RuntimeError, OSError, AssertionError)


class StartupError(RuntimeError):
    """The node cannot start: a parameter value or the model. The message says which and why."""


class ParametersMixin:
    """The parameter side of the segmentation node."""

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
                f"model {seg.model_id!r} on {seg.device}{temporal_summary(seg)}, backend "
                f"{backend_summary(seg)} will run from the next frame"
            )
        return SetParametersResult(successful=True)


def _parent(topic: str) -> str:
    """The namespace a resolved topic is in ("" for a topic at the root)."""
    return topic.rsplit("/", 1)[0]
