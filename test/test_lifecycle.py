"""The managed (lifecycle) node over real DDS: the standard lifecycle services and transition_event topic drive
it through the whole cycle, with masks flowing only while it is active."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rosutil import needs_ros

pytestmark = needs_ros
ROOT = Path(__file__).resolve().parents[1]
H, W = 48, 64
BASE = {"network_image_height": 96, "network_image_width": 128, "stats_period": 1.0, "worker_threads": 1}


def _rgb() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 4, y * 5, x + y], -1).astype(np.uint8)


class Lifecycle:
    """A lifecycle manager's view of one node: change_state / get_state and the transition events."""

    def __init__(self, client, node_name: str) -> None:
        from lifecycle_msgs.msg import TransitionEvent
        from lifecycle_msgs.srv import ChangeState, GetState

        self.node = client.node
        self._change = self.node.create_client(ChangeState, f"{node_name}/change_state")
        self._get = self.node.create_client(GetState, f"{node_name}/get_state")
        self.events: list = []
        self.node.create_subscription(TransitionEvent, f"{node_name}/transition_event", self.events.append, 10)
        assert self._change.wait_for_service(timeout_sec=60.0) and self._get.wait_for_service(timeout_sec=10.0)

    def _call(self, cli, req, timeout: float = 90.0):
        fut = cli.call_async(req)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert fut.done(), "the lifecycle service did not answer"
        return fut.result()

    def change(self, transition: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request(transition=Transition(id=getattr(Transition, f"TRANSITION_{transition.upper()}")))
        return self._call(self._change, req).success

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(self._get, GetState.Request()).current_state.label


def _masks_flow(client, seconds: float) -> bool:
    """Publish frames for up to ``seconds``; True as soon as one comes back as a mask."""
    from vsseg_ros.ros.node_client import make_image_msg

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _sent[0] += 1
        key = client.publish(make_image_msg(_rgb(), "rgb8", 3_000_000_000 + _sent[0] * 10_000_000))
        if client.wait_for("mask", key, 0.4) is not None:
            return True
    return False


_sent = [0]  # frames published so far: every frame gets its own stamp


@pytest.fixture(scope="module")
def rclpy_ctx():
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_full_transition_cycle_with_masks_only_while_active(tmp_path, rclpy_ctx):
    from vsseg_ros.ros.node_client import SegmentationClient
    from vsseg_ros.ros.node_process import NodeProcess, write_params_file

    pf = write_params_file(BASE, path=tmp_path / "params.yaml")
    proc = NodeProcess(
        params_file=pf,
        log_path=tmp_path / "node.log",
        image_topic="/lc/image",
        extra_args=("--namespace", "lc", "--lifecycle"),
    )
    client = SegmentationClient(image_topic="/lc/image", namespace="/lc", outputs=("mask",), name="lc_client")
    try:
        lc = Lifecycle(client, "/lc/segmentation_node")
        assert lc.state() == "unconfigured"
        assert not _masks_flow(client, 1.0)
        cycle = [
            ("configure", "inactive", False),
            ("activate", "active", True),
            ("deactivate", "inactive", False),
            ("activate", "active", True),
            ("deactivate", "inactive", False),
            ("cleanup", "unconfigured", False),
            ("configure", "inactive", False),
            ("activate", "active", True),
        ]
        for transition, state, flowing in cycle:
            assert lc.change(transition), f"{transition} failed:\n{proc.log()[-2000:]}"
            assert lc.state() == state
            # Active: masks must come (a new subscription needs a moment to be discovered); otherwise none may.
            assert _masks_flow(client, 30.0 if flowing else 1.5) == flowing, (transition, proc.log()[-2000:])
            if transition == "configure":
                assert client.wait_for_class_map(10.0) is not None  # the model is loaded at configure
        assert lc.change("active_shutdown")
        assert proc.wait(30.0) == 0, proc.log()[-2000:]
        goals = [e.goal_state.label for e in lc.events]
        assert goals.count("active") == 3 and goals.count("inactive") == 4 and goals[-1] == "finalized", goals
        assert "Traceback" not in proc.log()
    finally:
        client.close()
        proc.stop()


def test_a_bad_model_fails_configure_and_the_node_can_be_configured_again(tmp_path, rclpy_ctx):
    """Through the installed `segmentation_lifecycle_node` executable (what `ros2 run` and launch start)."""
    import subprocess

    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    from vsseg_ros.ros.node_client import SegmentationClient
    from vsseg_ros.ros.node_process import write_params_file

    exe = next(ROOT.glob("install/vsseg_ros/lib/vsseg_ros/segmentation_lifecycle_node"), None)
    if exe is None:
        pytest.skip("the package is not built into install/ (run `make test`)")
    pf = write_params_file({**BASE, "model_path": str(tmp_path / "missing.pt")}, path=tmp_path / "params.yaml")
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(exe),
            "--ros-args",
            "-r",
            "__ns:=/lcbad",
            "-r",
            "image:=/lcbad/image",
            "--params-file",
            str(pf),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = SegmentationClient(image_topic="/lcbad/image", namespace="/lcbad", outputs=("mask",), name="lcbad_client")
    try:
        lc = Lifecycle(client, "/lcbad/segmentation_node")
        assert not lc.change("configure")
        assert lc.state() == "unconfigured"
        text = (tmp_path / "node.log").read_text()
        assert "configure failed" in text and "missing.pt" in text
        cli = client.node.create_client(SetParameters, "/lcbad/segmentation_node/set_parameters")
        assert cli.wait_for_service(timeout_sec=10.0)
        fut = cli.call_async(SetParameters.Request(parameters=[Parameter("model_path", value="").to_parameter_msg()]))
        end = time.monotonic() + 30
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.01)
        assert fut.result().results[0].successful  # unconfigured: accepted, loaded at the next configure
        assert lc.change("configure") and lc.state() == "inactive"
        assert lc.change("activate") and _masks_flow(client, 30.0)
    finally:
        client.close()
        if proc.poll() is None:
            import os
            import signal

            os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, (tmp_path / "node.log").read_text()[-2000:]
        log.close()
