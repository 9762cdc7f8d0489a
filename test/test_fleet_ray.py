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

from fleetutil import GOOD, HEADLINE, SMALL, fleet  # noqa: F401 - fleet is a fixture
from fleetutil import run_eval as _run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray is not installed (requirements.txt pins it; `make setup` installs it)")


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
    assert _run(["--bags", fleet["dir"], "--ray", "--workers", "2", "--results", tmp_path / "results",
                 "--json", tmp_path / "ray.json"] + SMALL) == 1
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
    assert _run(args + ["--ray", "--workers", "2", "--results", tmp_path / "results",
                        "--json", tmp_path / "ray.json"]) == 0
    assert ray_local["marker"].exists(), "no worker died: the fault hook did not run"
    seq, ray = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("seq", "ray"))
    assert ray["counts"]["scored"] == 4 and ray["failed"] == []
    for key in HEADLINE:
        assert ray[key] == seq[key], key  # the crashed bag's frames are in it exactly once
    died = int(ray_local["marker"].read_text())
    crashed = next(r for r in ray["bags"] if Path(r["bag"]).name == "crash_me")
    assert crashed["frames"] == 6 and crashed["worker"].split(":")[1] != str(died)  # the retry, on another worker
    assert len(list((tmp_path / "results" / "bags").glob("*.json"))) == 4
