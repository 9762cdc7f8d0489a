"""The node's parameters: one table that declares them (with descriptors) and validates new values.

``config/segmentation.yaml`` lists the same names with their defaults; a test keeps the two in step.

Every parameter is declared with a value, so ``ros2 param dump`` lists them all (a parameter declared without
one makes rclpy's get_parameters service fail, and the dump comes out empty). ``image_mean``/``image_stddev``
mean "the model's own" when empty (``""``): ROS parameter files cannot hold an empty list, so they are declared
with dynamic typing, a string ``""`` or three numbers.
"""

from __future__ import annotations

import array
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from vsseg_ros.ros.qos import QOS_PROFILES

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list: ParameterType.PARAMETER_DOUBLE_ARRAY,
}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    int_range: Optional[tuple[int, int]] = None
    float_range: Optional[tuple[float, float]] = None
    read_only: bool = False
    check: Optional[Callable[[Any], Optional[str]]] = field(default=None, compare=False)
    #: changing it rebuilds the model (the node loads the new one before accepting the value)
    reloads_model: bool = False
    #: the value type when ``default`` is a sentinel of another type (``""`` = the model's own normalisation)
    kind: Optional[type] = None
    #: the element type of a list parameter: numbers (float) or strings (str)
    items: type = float

    @property
    def type(self) -> type:
        return self.kind if self.kind is not None else type(self.default)

    @property
    def unset(self) -> bool:
        """The default is the "not given" sentinel (the parameter then takes two types: dynamic typing)."""
        return self.kind is not None and type(self.default) is not self.kind

    def descriptor(self) -> ParameterDescriptor:
        kind = ParameterType.PARAMETER_STRING_ARRAY if self.type is list and self.items is str else _TYPES[self.type]
        d = ParameterDescriptor(
            name=self.name, type=kind, read_only=self.read_only, description=self.description, dynamic_typing=self.unset
        )
        if self.choices:
            d.additional_constraints = "one of: " + self.choice_list()
        if self.int_range:
            d.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)]
        if self.float_range:
            d.floating_point_range = [
                FloatingPointRange(from_value=self.float_range[0], to_value=self.float_range[1], step=0.0)
            ]
        return d

    def choice_list(self) -> str:
        return ", ".join(c if c else '"" (empty)' for c in self.choices)

    def validate(self, value: Any) -> Optional[str]:
        """None if ``value`` is acceptable, else the reason it is refused."""
        if self.unset and (value is None or value == self.default):
            return None
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is list and self.items is str:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
                return (
                    f'{self.name} must be a list of non-empty strings or "" for none, got '
                    f"{type(value).__name__} {value!r}"
                )
            value = list(value)
        elif expected is list:
            numbers_ = as_number_list(value)
            if numbers_ is None:
                own = ' or "" for the model\'s own' if self.unset else ""
                return f"{self.name} must be a list of numbers{own}, got {type(value).__name__} {value!r}"
            value = numbers_
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return f"{self.name} must be of type {expected.__name__}, got {type(value).__name__} {value!r}"
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not accepted; use one of: {self.choice_list()}"
        if self.int_range and not self.int_range[0] <= value <= self.int_range[1]:
            return f"{self.name}={value} is out of range [{self.int_range[0]}, {self.int_range[1]}]"
        if self.float_range and not self.float_range[0] <= value <= self.float_range[1]:
            return f"{self.name}={value} is out of range [{self.float_range[0]}, {self.float_range[1]}]"
        return self.check(value) if self.check else None


def as_number_list(value: Any) -> Optional[list[float]]:
    """A list of floats from a list, tuple or ``array.array`` of numbers (what rclpy hands over for a
    DOUBLE_ARRAY or INTEGER_ARRAY parameter), else None."""
    if not isinstance(value, (list, tuple, array.array)):
        return None
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        return None
    return [float(v) for v in value]


def _check_device(v: str) -> Optional[str]:
    return None if _DEVICE_RE.match(v) else f"device={v!r} is not accepted; use auto, cpu, cuda or cuda:N"


def _check_triple(name: str, positive: bool) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        if len(v) != 3:
            return f'{name} needs 3 values (R, G, B), got {len(v)}; "" means the model\'s own'
        if positive and any(x <= 0 for x in v):
            return f"{name} values must be > 0, got {list(v)}"
        return None

    return check


def _check_positive(name: str) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        return None if v > 0 else f"{name} must be > 0, got {v}"

    return check


def _check_topics(v: list) -> Optional[str]:
    seen: set[str] = set()
    for topic in v:
        if topic in seen:
            return f"image_topics lists {topic!r} twice; list each camera once"
        seen.add(topic)
    return None


def _check_backend(v: str) -> Optional[str]:
    from vsseg_ros.runtimes.backends import check_backend

    try:
        check_backend(v)
    except ValueError as e:
        return str(e)
    return None


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "model_path",
        "",
        "Checkpoint file (.pt) or exported model (a `vsseg-ros export` directory or its "
        ".onnx) to run; empty = the packaged default model.",
        reloads_model=True,
    ),
    ParamSpec(
        "backend",
        "auto",
        "What runs the network: torch, onnxruntime, openvino, tensorrt, or auto (the "
        "fastest installed backend the exported model passed its checks on; torch for a checkpoint; with an "
        "empty model_path the packaged int8 export).",
        check=_check_backend,
        reloads_model=True,
    ),
    ParamSpec(
        "device",
        "auto",
        "Torch device: auto (cuda:0 when present, else cpu), cpu, cuda or cuda:N.",
        check=_check_device,
        reloads_model=True,
    ),
    ParamSpec("precision", "fp32", "Inference precision.", choices=("fp32", "fp16", "bf16"), reloads_model=True),
    ParamSpec(
        "network_image_width",
        0,
        "Network input width in pixels; 0 = the model's own.",
        int_range=(0, 8192),
        reloads_model=True,
    ),
    ParamSpec(
        "network_image_height",
        0,
        "Network input height in pixels; 0 = the model's own.",
        int_range=(0, 8192),
        reloads_model=True,
    ),
    ParamSpec(
        "image_mean",
        "",
        'Normalisation mean (R, G, B) on a 0-1 scale, three numbers; "" = the model\'s own.',
        check=_check_triple("image_mean", positive=False),
        reloads_model=True,
        kind=list,
    ),
    ParamSpec(
        "image_stddev",
        "",
        'Normalisation std (R, G, B) on a 0-1 scale, three numbers > 0; "" = the model\'s own.',
        check=_check_triple("image_stddev", positive=True),
        reloads_model=True,
        kind=list,
    ),
    ParamSpec(
        "temporal_mode",
        "",
        "Temporal models: causal (window t-T+1..t, no added latency) or centered "
        "(t-1, t, t+1: frame t is published when t+1 arrives, one frame late, with frame t's header); "
        "empty = the model's own. Per-frame models ignore it.",
        choices=("", "causal", "centered"),
        reloads_model=True,
    ),
    ParamSpec(
        "max_frame_gap",
        0.5,
        "Temporal models: seconds between two frames of a camera above which its "
        "frame window restarts (as it does when the size changes or the stamp goes backwards).",
        float_range=(0.0, 3600.0),
        check=_check_positive("max_frame_gap"),
        reloads_model=True,
    ),
    ParamSpec(
        "image_topics",
        "",
        "Cameras, one image topic each (e.g. [/cam_front/image_raw, /cam_rear/image_raw]): "
        "one model serves them all, each camera's outputs go under its topic's parent namespace "
        "(/cam_front/semantic/mask ...) and its camera_info comes from there (/cam_front/camera_info); "
        '"" = one camera on `image`, outputs under the node\'s semantic/.',
        read_only=True,
        kind=list,
        items=str,
        check=_check_topics,
    ),
    ParamSpec(
        "max_batch",
        8,
        "Most frames (of different cameras) the model takes in one batch; frames waiting "
        "when the model is free go together, the longest-waiting camera first.",
        int_range=(1, 64),
    ),
    ParamSpec(
        "image_transport",
        "raw",
        "Input transport: raw (sensor_msgs/Image on `image`) or compressed "
        "(sensor_msgs/CompressedImage jpeg/png on `<image>/compressed`).",
        choices=("raw", "compressed"),
        read_only=True,
    ),
    ParamSpec(
        "input_qos",
        "sensor_data",
        "Input QoS profile (best-effort receives reliable cameras too).",
        choices=QOS_PROFILES,
        read_only=True,
    ),
    ParamSpec("input_qos_depth", 1, "Input queue depth.", int_range=(1, 100), read_only=True),
    ParamSpec("output_qos", "reliable", "Output QoS profile.", choices=QOS_PROFILES, read_only=True),
    ParamSpec("output_qos_depth", 1, "Output queue depth.", int_range=(1, 100), read_only=True),
    ParamSpec(
        "confidence_encoding",
        "32FC1",
        "semantic/confidence as 32FC1 (the max class probability) or "
        "mono8 (round(255 x probability), what Nav2's semantic segmentation layer reads).",
        choices=("32FC1", "mono8"),
    ),
    ParamSpec(
        "boundary_encoding",
        "32FC1",
        "semantic/boundary_confidence as 32FC1 or mono8 (round(255 x "
        "probability)); the SemanticSegmentation message keeps 32FC1.",
        choices=("32FC1", "mono8"),
    ),
    ParamSpec(
        "output_resolution",
        "input",
        "Size of the output maps: input (the camera frame's) or network "
        "(the network input's; semantic/camera_info is scaled to match, as image_proc's resize does).",
        choices=("input", "network"),
    ),
    ParamSpec(
        "camera_info_slop",
        0.0,
        "Seconds between a frame's stamp and its camera_info's within which they "
        "are paired; 0 = the stamps must be equal.",
        float_range=(0.0, 10.0),
        read_only=True,
    ),
    ParamSpec("publish_confidence", True, "Create semantic/confidence (32FC1 max class probability).", read_only=True),
    ParamSpec("publish_color_mask", True, "Create semantic/color_mask (rgb8 class colours).", read_only=True),
    ParamSpec(
        "overlay_alpha",
        0.0,
        "Weight of the camera image blended under the class colours in color_mask (0 = class colours only).",
        float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "max_input_pixels",
        3840 * 2160 * 2,
        "Frames with more pixels (width x height) are rejected.",
        int_range=(1, 1 << 30),
    ),
    ParamSpec(
        "max_input_side",
        16384,
        "Frames with a longer width or height are rejected (degenerate frames such "
        "as 1 x 4000000 cost far more than their pixels).",
        int_range=(1, 1 << 20),
    ),
    ParamSpec(
        "worker_threads",
        0,
        "CPU threads torch uses for inference; 0 = all cores. One worker runs the model so frames stay in order.",
        int_range=(0, 256),
        read_only=True,
    ),
    ParamSpec(
        "stats_period", 5.0, "Seconds between counter logs and /diagnostics; 0 = off.", float_range=(0.0, 3600.0)
    ),
    ParamSpec(
        "input_timeout",
        5.0,
        "Seconds without an input frame (while active) after which /diagnostics "
        "reports ERROR; also how long a matched publisher may stay silent before the node warns that its "
        "frames do not get through; 0 = off.",
        float_range=(0.0, 3600.0),
    ),
    ParamSpec(
        "latency_budget_ms",
        500.0,
        "/diagnostics reports WARN when the pipeline latency p95 (now - frame stamp at publish) exceeds this; 0 = off.",
        float_range=(0.0, 3_600_000.0),
    ),
    ParamSpec(
        "expected_rate_hz",
        0.0,
        "The camera's frame rate: /diagnostics reports WARN when the input rate "
        "is more than 10 % below it; 0 = not checked.",
        float_range=(0.0, 1000.0),
    ),
    ParamSpec(
        "max_drop_rate",
        0.5,
        "/diagnostics reports WARN when more than this fraction of the frames "
        "received in a period was dropped (replaced by a newer one before the model took it).",
        float_range=(0.0, 1.0),
    ),
)

PARAMS_BY_NAME = {p.name: p for p in PARAMS}
