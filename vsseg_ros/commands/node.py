"""`vsseg-ros node`: the segmentation node (what `ros2 run vsseg_ros segmentation_node` runs), where `ros2 run` is
absent; ``--lifecycle``: the managed node. Arguments after ``--ros-args`` go to ROS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = "Run the segmentation node. Arguments after --ros-args go to ROS."


def node_namespace(text: str) -> str:
    """``--namespace`` as a ROS namespace: relative ones (``cam0``, as users type them) made absolute
    (``/cam0``), a trailing slash dropped; ValueError saying why for an invalid one."""
    ns = "/" + text.strip().strip("/") if text.strip().strip("/") else ""
    if ns:
        from rclpy.exceptions import InvalidNamespaceException
        from rclpy.validate_namespace import validate_namespace

        try:
            validate_namespace(ns)
        except InvalidNamespaceException as err:
            raise ValueError(f"--namespace {text!r} is not a valid ROS namespace: {err}") from None
    return ns


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params-file", help="ROS parameters YAML (`/**: ros__parameters:`)")
    p.add_argument("--image-topic", default="/camera/image_raw", help="topic the `image` input is remapped to")
    p.add_argument(
        "--namespace", default="", help="node namespace, e.g. cam0 or /cam0 (outputs go to <ns>/semantic/...)"
    )
    p.add_argument(
        "--lifecycle",
        action="store_true",
        help="run as a managed (lifecycle) node: it starts "
        "unconfigured and waits for configure / activate (what segmentation_lifecycle_node runs)",
    )


def run(args: argparse.Namespace) -> int:
    """``args.ros_args``: what followed ``--ros-args`` on the command line (the dispatcher sets it)."""
    from vsseg_ros.ros.main import main  # light: the heavy imports come after its signal handlers

    argv = ["vsseg-ros-node", "--ros-args", "-r", f"image:={args.image_topic}"]
    try:
        namespace = node_namespace(args.namespace)
    except ValueError as err:
        print(f"vsseg-ros node: {err}", file=sys.stderr)
        return 2
    if namespace:
        argv += ["-r", f"__ns:={namespace}"]
    if args.params_file:
        if not Path(args.params_file).is_file():
            print(f"vsseg-ros node: parameters file {args.params_file} does not exist", file=sys.stderr)
            return 2
        argv += ["--params-file", str(args.params_file)]
    ros_args = getattr(args, "ros_args", [])
    if ros_args:
        argv += [a for a in ros_args if a != "--ros-args"]
    return main(argv, lifecycle=args.lifecycle)
