"""What ``launch/segmentation.launch.py`` starts, from its arguments: a plain function (no launch import), so
the argument handling is tested where launch is not installed.

The rules: the parameters file comes first and a launch argument overrides it only when it is given
(``device`` and ``use_sim_time`` default to "" = the file's value); ``lifecycle:=true`` starts the managed
node's executable; ``fastdds_profile:=true`` gives the node process the shipped Fast DDS profile (its
camera-sized outputs then reach best-effort subscribers on this computer), ``fastdds_profile:=/path.xml``
another profile file.

``launch/multi_camera.launch.py`` takes the same arguments but ``image_topic``, plus ``image_topics`` (the
cameras, comma-separated or as a YAML list), which overrides the parameters file's list when given; its default
parameters file is ``config/multi_camera.yaml`` (four cameras).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsseg_ros.ros.fastdds import FASTDDS_PROFILE

NODE_NAME = "segmentation_node"
EXECUTABLES = {False: "segmentation_node", True: "segmentation_lifecycle_node"}

#: name -> (default, description) of every launch argument
ARGUMENTS: dict[str, tuple[str, str]] = {
    "params_file": (
        "",
        "node parameters YAML (/**: ros__parameters:); default: the installed config/segmentation.yaml",
    ),
    "image_topic": ("/camera/image_raw", "camera topic the node's `image` input is remapped to"),
    "namespace": ("", "namespace of the node and its semantic/* outputs"),
    "use_sim_time": (
        "",
        "true/false: use /clock (rosbag replay with --clock); empty = the parameters file's "
        "value (false if it has none)",
    ),
    "device": ("", "auto, cpu, cuda or cuda:N; empty = the parameters file's value (auto if it has none)"),
    "lifecycle": (
        "false",
        "true: start segmentation_lifecycle_node, the managed node (it waits unconfigured for "
        "a lifecycle manager's configure / activate)",
    ),
    "fastdds_profile": (
        "false",
        "true: give the node process the shipped Fast DDS profile "
        "(fastdds_large_images.xml: whole camera frames over shared memory, so its outputs "
        "reach best-effort subscribers); a path: that profile file; false: the environment's",
    ),
}


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name}:={text!r}: expected true or false")


def node_settings(args: dict[str, str], default_params_file: str) -> dict[str, Any]:
    """The Node action's settings for these launch arguments (missing ones take their defaults):
    ``executable``, ``name``, ``namespace``, ``parameters`` (the file, then a dict of only the overrides given),
    ``remappings`` and ``additional_env``."""
    unknown = set(args) - set(ARGUMENTS)
    if unknown:
        raise ValueError(f"unknown launch argument(s) {sorted(unknown)}; accepted: {', '.join(ARGUMENTS)}")
    a = {name: str(args.get(name, default)) for name, (default, _) in ARGUMENTS.items()}
    overrides: dict[str, Any] = {}
    if a["device"].strip():
        overrides["device"] = a["device"].strip()
    if a["use_sim_time"].strip():
        overrides["use_sim_time"] = _flag("use_sim_time", a["use_sim_time"])
    parameters: list[Any] = [a["params_file"] or default_params_file]
    if overrides:
        parameters.append(overrides)
    env: dict[str, str] = {}
    profile = a["fastdds_profile"].strip()
    if profile.lower() not in ("", "false", "0", "no", "off"):
        path = FASTDDS_PROFILE if profile.lower() in ("true", "1", "yes", "on") else Path(profile).expanduser()
        if not path.is_file():
            raise ValueError(f"launch argument fastdds_profile:={profile!r}: no such file {path}")
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return {
        "executable": EXECUTABLES[_flag("lifecycle", a["lifecycle"])],
        "name": NODE_NAME,
        "namespace": a["namespace"],
        "parameters": parameters,
        # the node subscribes <resolved image topic>/compressed itself when image_transport is compressed
        "remappings": [("image", a["image_topic"])],
        "additional_env": env,
    }


#: the multi-camera launch file's arguments: the same, with image_topics for image_topic
MULTI_CAMERA_ARGUMENTS: dict[str, tuple[str, str]] = {
    "image_topics": (
        "",
        "the cameras' image topics, comma-separated or a YAML list (/cam_front/image_raw,"
        "/cam_rear/image_raw); each camera's outputs go under its topic's namespace; empty = the "
        "parameters file's list",
    ),
    **{name: value for name, value in ARGUMENTS.items() if name != "image_topic"},
}
MULTI_CAMERA_ARGUMENTS["params_file"] = ("", "node parameters YAML; default: the installed config/multi_camera.yaml")


def parse_topics(text: str) -> list[str]:
    """``/a,/b``, ``[/a, /b]`` or ``['/a', '/b']`` -> ``["/a", "/b"]``; "" -> []."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    topics = [t.strip().strip("'\"") for t in body.split(",")]
    return [t for t in topics if t]


def multi_camera_settings(args: dict[str, str], default_params_file: str) -> dict[str, Any]:
    """:func:`node_settings` for the multi-camera launch file: no ``image`` remapping (the node subscribes each
    listed topic), and ``image_topics`` after the parameters file when given."""
    unknown = set(args) - set(MULTI_CAMERA_ARGUMENTS)
    if unknown:
        raise ValueError(f"unknown launch argument(s) {sorted(unknown)}; accepted: {', '.join(MULTI_CAMERA_ARGUMENTS)}")
    given = {k: v for k, v in args.items() if k != "image_topics"}
    settings = node_settings(given, default_params_file)
    settings["remappings"] = []
    topics = parse_topics(str(args.get("image_topics", "")))
    if topics:
        parameters = settings["parameters"]
        if len(parameters) > 1:
            parameters[1]["image_topics"] = topics
        else:
            parameters.append({"image_topics": topics})
    return settings


__all__ = [
    "ARGUMENTS",
    "EXECUTABLES",
    "MULTI_CAMERA_ARGUMENTS",
    "multi_camera_settings",
    "node_settings",
    "parse_topics",
]
