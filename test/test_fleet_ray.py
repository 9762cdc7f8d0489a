"""`vsseg-ros eval --bags ... --ray` on one local Ray instance for the module (2 CPUs, no dashboard, 127.0.0.1 only,
stopped at the end): the Ray path equals the sequential one, the model shipped through the object store, and a
worker that dies mid-bag is retried once and its bag counted once."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from fleetutil import GOOD, HEADLINE, SMALL, fleet, run_eval as _run  # noqa: F401 - fleet is a fixture

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (requirements.txt pins it; `make setup` installs it)",
)


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    from vsseg_ros.fleet.ray_backend import FAULT_ENV, start_local, stop_local

    marker = tmp_path_factory.mktemp("fault") / "died"
    os.environ[FAULT_ENV] = f"crash_me:{marker}"  # the workers inherit it: the first to score crash_me dies
    ray, temp = start_local(2)
    try:
        yield {"ray": ray, "marker": marker, "temp": temp}
    finally:
        stop_local(ray, temp)
        os.environ.pop(FAULT_ENV, None)
    assert not temp.exists()  # its temporary files go with it


def test_the_local_instance_is_on_this_machine_only(ray_local):
    ray = ray_local["ray"]
    nodes = ray.nodes()
    assert len(nodes) == 1 and nodes[0]["NodeManagerAddress"] == "127.0.0.1"
    assert ray.cluster_resources()["CPU"] == 2


def test_ray_fleet_equals_the_sequential_fleet(fleet, ray_local, tmp_path):
    assert _run(["--bags", fleet["dir"], "--json", tmp_path / "seq.json"] + SMALL) == 1
    assert (
        _run(
            [
                "--bags",
                fleet["dir"],
                "--ray",
                "--workers",
                "2",
                "--results",
                tmp_path / "results",
                "--json",
                tmp_path / "ray.json",
            ]
            + SMALL
        )
        == 1
    )
    seq, ray = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("seq", "ray"))
    for key in HEADLINE + ("counts", "failed", "sequences"):
        assert ray[key] == seq[key], key
    assert [r["bag"] for r in ray["bags"]] == [r["bag"] for r in seq["bags"]]  # task order, not finishing order
    assert ray["fleet"]["workers"] == 2 and "Ray instance this process runs" in ray["fleet"]["mode"]
    workers = {r["worker"] for r in ray["bags"]}
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)  # scored in Ray's worker processes
    assert len(list((tmp_path / "results" / "bags").glob("*.json"))) == GOOD + 1


def test_a_worker_that_dies_mid_bag_is_retried_once_and_counted_once(fleet, ray_local, tmp_path):
    from vsseg_ros.core.loading import DEFAULT_WEIGHTS

    bags = tmp_path / "bags"
    bags.mkdir()
    for src in fleet["good"][3:6]:
        shutil.copytree(src, bags / src.name)
    shutil.copytree(fleet["good"][4], bags / "crash_me")
    model = tmp_path / "model.pt"  # a --model path: shipped to the workers through the object store
    shutil.copy(DEFAULT_WEIGHTS, model)
    args = ["--bags", bags, "--model", model] + SMALL
    assert _run(args + ["--json", tmp_path / "seq.json"]) == 0
    assert not ray_local["marker"].exists()
    assert (
        _run(args + ["--ray", "--workers", "2", "--results", tmp_path / "results", "--json", tmp_path / "ray.json"])
        == 0
    )
    assert ray_local["marker"].exists(), "no worker died: the fault hook did not run"
    seq, ray = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("seq", "ray"))
    assert ray["counts"]["scored"] == 4 and ray["failed"] == []
    for key in HEADLINE:
        assert ray[key] == seq[key], key  # the crashed bag's frames are in it exactly once
    died = int(ray_local["marker"].read_text())
    crashed = next(r for r in ray["bags"] if Path(r["bag"]).name == "crash_me")
    assert crashed["frames"] == 6 and crashed["worker"].split(":")[1] != str(died)  # the retry, on another worker
    assert len(list((tmp_path / "results" / "bags").glob("*.json"))) == 4


def test_a_ray_start_cluster_with_token_authentication(fleet, tmp_path):
    """A head started by `ray start` with token authentication (the token made by `ray get-auth-token
    --generate` into ~/.ray/auth_token, as Ray's docs set a cluster up) scores the bags like the sequential path:
    the driver sends the token by itself. The head runs with --block in its own process group, on 127.0.0.1
    only, and is stopped with the group."""
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HOME": str(tmp_path / "home"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_ADDRESS", None)
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="vsseg-ray-head-")  # short: Ray's socket paths must fit in 107 bytes
    subprocess.run([str(ray_bin), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    token = tmp_path / "home" / ".ray" / "auth_token"
    assert token.is_file(), "ray get-auth-token --generate wrote no token"
    head = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=1",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        env={**env, "RAY_AUTH_MODE": "token"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while head.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        assert head.poll() is None, "ray start exited"
        bags = [str(p) for p in fleet["good"][:2]]
        out = tmp_path / "cluster.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "vsseg_ros.cli",
                "eval",
                "--bags",
                *bags,
                "--ray",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--results",
                str(tmp_path / "res"),
                "--json",
                str(out),
                *SMALL,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert _run(["--bags", *bags, "--json", tmp_path / "seq.json"] + SMALL) == 0
        cluster, seq = json.loads(out.read_text()), json.loads((tmp_path / "seq.json").read_text())
        for key in HEADLINE:
            assert cluster[key] == seq[key], key
        assert f"Ray cluster at 127.0.0.1:{port}" in cluster["fleet"]["mode"]
    finally:
        os.killpg(head.pid, signal.SIGINT)  # --block: the head stops its processes when it is interrupted
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
