"""The parameter table, the shipped parameters file and the launch file agree with each other."""

from __future__ import annotations

import array
import importlib.util
import threading
import time
from pathlib import Path

import pytest
import yaml

from rosutil import HAVE_RCLPY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy is not installed (run `make test`)")
def test_params_file_lists_every_parameter_with_its_default():
    from vsseg_ros.ros.params import PARAMS

    text = (ROOT / "config" / "segmentation.yaml").read_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    for spec in PARAMS:
        assert spec.name in values, f"{spec.name} missing from config/segmentation.yaml"
        assert values[spec.name] == spec.default, f"{spec.name}: yaml {values[spec.name]!r} != {spec.default!r}"
        assert spec.validate(values[spec.name]) is None
    assert set(values) <= {s.name for s in PARAMS}


@pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy is not installed (run `make test`)")
@pytest.mark.parametrize(
    "name, value, ok",
    [
        ("overlay_alpha", 0.3, True),
        ("overlay_alpha", -0.1, False),
        ("overlay_alpha", 1, True),
        ("device", "cuda:1", True),
        ("device", "gpu", False),
        ("precision", "bf16", True),
        ("precision", "fp8", False),
        ("input_qos_depth", 0, False),
        ("input_qos_depth", True, False),
        ("image_mean", [0.5, 0.5, 0.5], True),
        ("image_mean", [0.5], False),
        ("image_stddev", [0.2, 0.0, 0.2], False),
        # what rclpy hands over for `ros2 param set ... "[0.5, 0.5, 0.5]"`, ints too; "" is the model's own
        ("image_mean", array.array("d", [0.5, 0.4, 0.3]), True),
        ("image_stddev", array.array("q", [1, 1, 1]), True),
        ("image_mean", "", True),
        ("image_mean", "0.5", False),
        ("image_mean", [0.5, True, 0.5], False),
        ("max_input_side", 0, False),
        ("max_drop_rate", 1.5, False),
        ("latency_budget_ms", 200, True),
        ("max_input_pixels", 0, False),
        ("model_path", 3, False),
    ],
)
def test_parameter_validation(name, value, ok):
    from vsseg_ros.ros.params import PARAMS_BY_NAME

    reason = PARAMS_BY_NAME[name].validate(value)
    assert (reason is None) == ok, reason
    if not ok:
        assert name in reason


def _resolve_launch(**launch_args: str):
    """Resolve the launch file as `ros2 launch vsseg_ros segmentation.launch.py k:=v ...` does before it starts
    the process: the given arguments are set, DeclareLaunchArgument fills in the defaults of the others, the
    OpaqueFunction builds the Node, then the Node performs its substitutions. Returns (launch configurations,
    Node, the command line's tokens, the --params-file arguments in order); a token that launch only fills in
    when it starts the process (`__node:=`/`__ns:=`) is None, and launch's temporary file for dict parameters
    is read and removed (its content is returned in its place)."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LocalSubstitution
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    from launch import LaunchContext
    from vsseg_ros.ros.launch_args import ARGUMENTS

    spec = importlib.util.spec_from_file_location("seg_launch", ROOT / "launch" / "segmentation.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    args = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    assert {a.name for a in args} == set(ARGUMENTS)
    assert all(a.description for a in args)
    ctx = LaunchContext()
    ctx.launch_configurations.update(launch_args)
    for a in args:
        a.execute(ctx)
    (opaque,) = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
    (node,) = [e for e in opaque.execute(ctx) if isinstance(e, Node)]
    # Node.execute() starts with this (the same in launch_ros 0.26/jazzy and 0.28/kilted); there is no public API
    # that resolves a Node without starting it.
    node._perform_substitutions(ctx)
    cmd = [
        None if any(isinstance(s, LocalSubstitution) for s in part) else perform_substitutions(ctx, part)
        for part in node.cmd
    ]
    params: list[str | dict] = [cmd[i + 1] for i, tok in enumerate(cmd) if tok == "--params-file"]
    for i, f in enumerate(params):
        if Path(f).name.startswith("launch_params_"):  # launch's temporary file (delete=False) for dict parameters
            try:
                params[i] = yaml.safe_load(Path(f).read_text())
            finally:
                Path(f).unlink(missing_ok=True)
    return dict(ctx.launch_configurations), node, cmd, params


def _remaps(cmd: list[str | None]) -> dict[str, str]:
    return dict(cmd[i + 1].split(":=", 1) for i, tok in enumerate(cmd) if tok == "-r" and cmd[i + 1] is not None)


def test_launch_arguments_override_the_params_file_only_when_given():
    """The launch file's rules as a function (no launch needed): device and use_sim_time come after the file
    only when given; lifecycle picks the managed node's executable; fastdds_profile sets the node's profile."""
    from vsseg_ros.ros.fastdds import FASTDDS_PROFILE
    from vsseg_ros.ros.launch_args import node_settings

    s = node_settings({}, "/share/seg.yaml")
    assert s["parameters"] == ["/share/seg.yaml"]  # nothing overrides device / use_sim_time of the file
    assert s["executable"] == "segmentation_node" and s["additional_env"] == {}
    assert s["remappings"] == [("image", "/camera/image_raw")] and s["name"] == "segmentation_node"
    s = node_settings({"device": "cuda:1", "use_sim_time": "true", "params_file": "/mine.yaml"}, "/share/seg.yaml")
    assert s["parameters"] == ["/mine.yaml", {"device": "cuda:1", "use_sim_time": True}]
    assert node_settings({"use_sim_time": "False"}, "/p.yaml")["parameters"] == ["/p.yaml", {"use_sim_time": False}]
    assert node_settings({"lifecycle": "true"}, "/p.yaml")["executable"] == "segmentation_lifecycle_node"
    assert node_settings({"fastdds_profile": "true"}, "/p.yaml")["additional_env"] == {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(FASTDDS_PROFILE)
    }
    assert FASTDDS_PROFILE.is_file()
    for bad, match in (
        ({"lifecycle": "maybe"}, "lifecycle"),
        ({"use_sim_time": "yes please"}, "use_sim_time"),
        ({"fastdds_profile": "/no/such.xml"}, "no such file"),
        ({"devise": "cpu"}, "unknown"),
    ):
        with pytest.raises(ValueError, match=match):
            node_settings(bad, "/p.yaml")


def test_launch_file():
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (it does not come from PyPI; a ROS 2 install has it)")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        share = Path(get_package_share_directory("vsseg_ros"))
    except PackageNotFoundError:
        pytest.fail("vsseg_ros is not in the ament index: build it and source install/setup.bash (`make test` does)")
    # The build installs the launch file and the parameters file where `ros2 launch` and FindPackageShare look.
    assert (share / "launch" / "segmentation.launch.py").read_bytes() == (
        ROOT / "launch" / "segmentation.launch.py"
    ).read_bytes(), "installed launch file is stale: rebuild"
    share_params = share / "config" / "segmentation.yaml"
    assert share_params.is_file()

    # Defaults: the shipped file alone (device and use_sim_time are the file's).
    conf, node, cmd, params = _resolve_launch()
    assert {k: conf[k] for k in ("params_file", "image_topic", "namespace", "use_sim_time", "device")} == {
        "params_file": "",
        "image_topic": "/camera/image_raw",
        "namespace": "",
        "use_sim_time": "",
        "device": "",
    }
    assert node.node_package == "vsseg_ros" and node.node_executable == "segmentation_node"
    # ExecutableInPackage found an executable lib/vsseg_ros/segmentation_node in the install (`ros2 run` looks there).
    assert Path(cmd[0]) == share.parents[1] / "lib" / "vsseg_ros" / "segmentation_node"
    assert node.expanded_node_namespace == "/" and node.node_name == "/segmentation_node"
    assert dict(node.expanded_remapping_rules) == {"image": "/camera/image_raw"}
    assert _remaps(cmd) == {"image": "/camera/image_raw"}
    assert params == [str(share_params)]

    # Arguments given on the command line override the file.
    _, node, cmd, params = _resolve_launch(
        image_topic="/front/image",
        namespace="front",
        device="cuda:1",
        use_sim_time="true",
        params_file=str(ROOT / "config" / "segmentation.yaml"),
        lifecycle="true",
    )
    assert node.expanded_node_namespace == "/front" and node.node_name == "/front/segmentation_node"
    assert Path(cmd[0]) == share.parents[1] / "lib" / "vsseg_ros" / "segmentation_lifecycle_node"
    assert dict(node.expanded_remapping_rules) == {"image": "/front/image"}
    assert _remaps(cmd) == {"image": "/front/image"}
    # use_sim_time must reach the node as a bool (a string is refused); "cuda:1" stays a string.
    assert params == [
        str(ROOT / "config" / "segmentation.yaml"),
        {"/front/segmentation_node": {"ros__parameters": {"device": "cuda:1", "use_sim_time": True}}},
    ]


def test_latest_slot_keeps_the_newest_and_counts_replacements():
    from vsseg_ros.core.mailbox import LatestSlot

    slot: LatestSlot[int] = LatestSlot()
    assert slot.take(timeout=0.01) is None
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: dropped
    assert slot.take(0.01) == 2 and slot.take(0.01) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    t.start()
    time.sleep(0.05)
    slot.put(3)
    t.join()
    assert got == [3]
    slot.close()
    assert slot.take(timeout=5.0) is None
