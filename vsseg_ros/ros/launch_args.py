"""What ``launch/segmentation.launch.py`` starts, from its arguments: a plain function (no launch import), so
the argument handling is tested where launch is not installed.

The rules: the parameters file comes first and a launch argument overrides it only when it is given
(``device`` and ``use_sim_time`` default to "" = the file's value); ``lifecycle:=true`` starts the managed
node's executable; ``fastdds_profile:=true`` gives the node process the shipped Fast DDS profile (its
camera-sized outputs then reach best-effort subscribers on this computer), ``fastdds_profile:=/path.xml``
another profile file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vsseg_ros.tools.rosenv import FASTDDS_PROFILE

NODE_NAME = "segmentation_node"
EXECUTABLES = {False: "segmentation_node", True: "segmentation_lifecycle_node"}

#: name -> (default, description) of every launch argument
ARGUMENTS: dict[str, tuple[str, str]] = {
    "params_file": ("", "node parameters YAML (/**: ros__parameters:); default: the installed "
                        "config/segmentation.yaml"),
    "image_topic": ("/camera/image_raw", "camera topic the node's `image` input is remapped to"),
    "namespace": ("", "namespace of the node and its semantic/* outputs"),
    "use_sim_time": ("", "true/false: use /clock (rosbag replay with --clock); empty = the parameters file's "
                         "value (false if it has none)"),
    "device": ("", "auto, cpu, cuda or cuda:N; empty = the parameters file's value (auto if it has none)"),
    "lifecycle": ("false", "true: start segmentation_lifecycle_node, the managed node (it waits unconfigured for "
                           "a lifecycle manager's configure / activate)"),
    "fastdds_profile": ("false", "true: give the node process the shipped Fast DDS profile "
                                 "(fastdds_large_images.xml: whole camera frames over shared memory, so its outputs "
                                 "reach best-effort subscribers); a path: that profile file; false: the environment's"),
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
    return {"executable": EXECUTABLES[_flag("lifecycle", a["lifecycle"])], "name": NODE_NAME,
            "namespace": a["namespace"], "parameters": parameters,
            # the node subscribes <resolved image topic>/compressed itself when image_transport is compressed
            "remappings": [("image", a["image_topic"])], "additional_env": env}


__all__ = ["ARGUMENTS", "EXECUTABLES", "node_settings"]
