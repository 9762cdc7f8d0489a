"""The segmentation node as a child process, for the tests, the benchmarks, the demo, replay and soak:
the environment of a local ROS run (DDS on loopback, a domain of its own, the large-frame Fast DDS profile), a
parameters file, and :class:`NodeProcess` (``vsseg-ros node`` in its own session). Imports no rclpy: what talks
to the node over DDS is :mod:`vsseg_ros.ros.node_client`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import yaml

from vsseg_ros.ros.fastdds import FASTDDS_PROFILE


def local_ros_env(domain_id: Optional[int] = None, large_data: bool = True) -> dict[str, str]:
    """Settings for processes that only talk to each other on this machine.

    ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` keeps discovery multicast off the network interfaces.
    ``ROS_DOMAIN_ID``: the caller's if set, else a random one so concurrent runs do not see each other.
    ``FASTDDS_DEFAULT_PROFILES_FILE``: :data:`FASTDDS_PROFILE`, a shared-memory segment large enough for whole
    frames; without it best-effort subscribers lose most frames over ~1 MB. Every process of the run must use
    the same setting (children inherit it).
    """
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID") or random.Random(os.getpid()).randint(1, 100))
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(domain_id)}
    if large_data:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return env


def apply_local_ros_env(**kwargs) -> dict[str, str]:
    """Set :func:`local_ros_env` in this process (before rclpy.init) and return it."""
    env = local_ros_env(**kwargs)
    os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)  # would override the profile's transports
    os.environ.update(env)
    return env


def write_params_file(params: dict, path: Optional[Path] = None, base: Optional[Path] = None) -> Path:
    """A ROS parameters file (``/**: ros__parameters:``): ``base`` file's values updated with ``params``."""
    values: dict = {}
    if base is not None:
        values = dict((yaml.safe_load(Path(base).read_text()) or {}).get("/**", {}).get("ros__parameters", {}))
    values.update(params)
    if path is None:
        fd, name = tempfile.mkstemp(prefix="vsseg_params_", suffix=".yaml")
        os.close(fd)
        path = Path(name)
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}, sort_keys=False))
    return path


class NodeProcess:
    """``vsseg-ros node`` in a child process with its own session (so SIGINT reaches only it)."""

    def __init__(
        self,
        params_file: Optional[Path] = None,
        image_topic: str = "/camera/image_raw",
        env: Optional[dict[str, str]] = None,
        log_path: Optional[Path] = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        cmd = [sys.executable, "-m", "vsseg_ros.cli", "node", "--image-topic", image_topic]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        cmd += list(extra_args)
        self.log_path = Path(log_path or tempfile.mkstemp(prefix="vsseg_node_", suffix=".log")[1])
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL if it does not exit in ``timeout`` s; returns the exit code."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
