"""The parameter table, the shipped parameters file and the launch file agree with each other."""

from __future__ import annotations

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
        if spec.default is None:  # unset = the model's own; shown commented out
            assert f"# {spec.name}:" in text
            continue
        assert spec.name in values, f"{spec.name} missing from config/segmentation.yaml"
        assert values[spec.name] == spec.default, f"{spec.name}: yaml {values[spec.name]!r} != {spec.default!r}"
        assert spec.validate(values[spec.name]) is None
    assert set(values) <= {s.name for s in PARAMS}


@pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy is not installed (run `make test`)")
@pytest.mark.parametrize("name, value, ok", [
    ("overlay_alpha", 0.3, True), ("overlay_alpha", -0.1, False), ("overlay_alpha", 1, True),
    ("device", "cuda:1", True), ("device", "gpu", False), ("precision", "bf16", True),
    ("precision", "fp8", False), ("input_qos_depth", 0, False), ("input_qos_depth", True, False),
    ("image_mean", [0.5, 0.5, 0.5], True), ("image_mean", [0.5], False), ("image_stddev", [0.2, 0.0, 0.2], False),
    ("max_input_pixels", 0, False), ("model_path", 3, False),
])
def test_parameter_validation(name, value, ok):
    from vsseg_ros.ros.params import PARAMS_BY_NAME

    reason = PARAMS_BY_NAME[name].validate(value)
    assert (reason is None) == ok, reason
    if not ok:
        assert name in reason


def test_launch_file(monkeypatch):
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (it does not come from PyPI; a ROS 2 install has it)")
    spec = importlib.util.spec_from_file_location("seg_launch", ROOT / "launch" / "segmentation.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    ld = mod.generate_launch_description()
    args = {a.name: a for a in ld.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(args) == {"params_file", "image_topic", "namespace", "use_sim_time", "device"}
    (node,) = [e for e in ld.entities if isinstance(e, Node)]
    ctx = LaunchContext()
    for a in args.values():
        a.execute(ctx)
    monkeypatch.setattr("launch_ros.substitutions.find_package.get_package_share_directory",
                        lambda pkg: str(ROOT), raising=False)
    node._perform_substitutions(ctx)
    assert node.node_package == "vsseg_ros" and node.node_executable == "segmentation_node"
    assert dict(node.expanded_remapping_rules)["image"] == "/camera/image_raw"


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
