"""The Ray path of a fleet evaluation (``vsseg-ros eval --bags ... --ray MODE``); the only module that imports ray.

Each bag (or chunk) is one Ray task running :func:`vsseg_ros.fleet.tasks.score_task`, the function the sequential
path runs; a worker process loads the model once and keeps it for the next tasks. A task whose worker dies is run
once more (``max_retries=1``); its record reaches the driver once, and the driver stores it under the task's key,
so a retried bag is never counted twice. Frames read are reported to a small progress actor, so the driver
shows one progress bar over the fleet's frames.

Modes: ``local`` starts a private Ray instance on this machine only (every server on 127.0.0.1, no dashboard, its
temporary files in a folder of its own that is removed at the end) and stops it when the run ends; ``auto`` uses
``RAY_ADDRESS`` or a cluster that ``ray start`` runs on this machine, else starts a local one; anything else is
the address of a running cluster (``HOST:PORT`` of its head, or ``ray://HOST:PORT`` for Ray Client), checked to
answer within ``timeout_s`` before Ray is asked to connect. A process that already called ``ray.init`` (a test,
a notebook) is used as it is and left running.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from vsseg_ros.fleet.discover import BagTask, FleetError, cpu_count
from vsseg_ros.fleet.tasks import OTHER_ERROR, ScoreSettings

RAY_PIN = "ray==2.60.0"
LOCAL_HOST = "127.0.0.1"
#: object store of a local instance: the model and the records are small
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
TEMP_PREFIX = "vsseg-ray-"
#: test hook: "BAG_NAME:MARKER_FILE" makes the first worker that scores BAG_NAME exit mid-bag (and create MARKER_FILE)
FAULT_ENV = "VSSEG_FLEET_KILL_WORKER_ONCE"
#: set before ray is imported, this makes Ray take 127.0.0.1 as the node's address (its single-machine mode)
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _split_address(address: str) -> tuple[str, int]:
    text = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise FleetError(
            f"--ray {address!r} is not an address: expected HOST:PORT of a Ray head (`ray start --head` "
            "prints it), ray://HOST:PORT for Ray Client, 'local' or 'auto'"
        )
    return host.strip("[]"), int(port)


def check_answers(address: str, timeout_s: float) -> None:
    """Raise :class:`FleetError` unless something accepts a connection at ``address`` within ``timeout_s``."""
    host, port = _split_address(address)
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        raise FleetError(
            f"the Ray cluster at {address} does not answer ({err}; waited {time.monotonic() - t0:.1f} s "
            f"of --ray-timeout {timeout_s:g} s). Start it with `ray start --head` there, check the "
            "address and the firewall, or use --ray local"
        ) from None


def _local_cluster_address() -> Optional[str]:
    """The head address of a cluster `ray start` runs on this machine (Ray's own bootstrap file), if it answers."""
    root = Path(os.environ.get("RAY_TMPDIR") or "/tmp") / "ray" / "ray_current_cluster"
    try:
        address = root.read_text().strip().splitlines()[0]
        check_answers(address, 1.0)
        return address
    except (OSError, IndexError, FleetError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _send_token_if_there_is_one() -> None:
    """A driver sends Ray's auth token only in ``RAY_AUTH_MODE=token``, but ``ray start`` (Ray >= 2.59) enables
    token authentication and writes the token to ~/.ray/auth_token: without this, connecting to such a cluster is
    refused (InvalidAuthToken). A cluster without authentication accepts a driver that sends one."""
    if os.environ.get("RAY_AUTH_MODE"):
        return  # the user's choice
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _clean_stale_temp_dirs() -> None:
    """Remove the temporary folders of local instances whose driver is gone (killed before it could)."""
    for d in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid) and time.time() - d.stat().st_mtime > 120:
            shutil.rmtree(d, ignore_errors=True)


def import_ray(loopback: bool = False) -> Any:
    """``ray``, or a :class:`FleetError` saying how to install it. ``loopback``: Ray takes 127.0.0.1 for this
    node (only has an effect before ray is first imported)."""
    if loopback:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError as err:
        raise FleetError(
            f"--ray needs Ray ({err}); install it with `pip install {RAY_PIN}` (make setup does), or "
            "leave out --ray to score the bags one after the other in this process"
        ) from None
    return ray


def start_local(num_cpus: int) -> tuple[Any, Path]:
    """A private Ray instance on this machine only; returns (ray, its temporary folder). Stop it with
    :func:`stop_local`."""
    import logging

    ray = import_ray(loopback=True)
    _clean_stale_temp_dirs()
    temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=tempfile.gettempdir()))
    (temp / "owner.pid").write_text(str(os.getpid()))
    try:
        ray.init(
            num_cpus=int(num_cpus),
            include_dashboard=False,
            _node_ip_address=LOCAL_HOST,
            _temp_dir=str(temp),
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return ray, temp


def stop_local(ray: Any, temp: Optional[Path]) -> None:
    ray.shutdown()
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)


class RayPool:
    """Ray for one fleet run: ``with RayPool(mode, workers) as pool: for record in pool.run(tasks, settings)``."""

    def __init__(
        self, mode: str, workers: Optional[int] = None, cpus_per_worker: float = 1.0, timeout_s: float = 10.0
    ) -> None:
        self.mode = mode or "auto"
        self.workers = workers
        self.cpus_per_worker = float(cpus_per_worker)
        self.timeout_s = float(timeout_s)
        self.ray: Any = None
        self.owned = False
        self.temp: Optional[Path] = None
        self.description = ""

    def __enter__(self) -> "RayPool":
        self._connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.owned:
            stop_local(self.ray, self.temp)

    def _start_local(self) -> None:
        n = self.workers or max(1, int(cpu_count() // self.cpus_per_worker))
        self.ray, self.temp = start_local(max(1, int(round(n * self.cpus_per_worker))))
        self.owned = True
        self.description = f"local Ray instance ({n} workers, 127.0.0.1 only)"

    def _connect(self) -> None:
        import logging
        import sys

        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            self.ray = sys.modules["ray"]
            self.description = "the Ray instance this process runs"
            return
        if self.mode == "local":
            return self._start_local()
        address = os.environ.get("RAY_ADDRESS", "") if self.mode == "auto" else self.mode
        if self.mode == "auto" and not address:
            address = _local_cluster_address() or ""
            if not address:
                return self._start_local()
        check_answers(address, self.timeout_s)
        _send_token_if_there_is_one()
        self.ray = import_ray(loopback=_is_loopback(_split_address(address)[0]))
        try:
            self.ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as err:  # noqa: BLE001 - Ray's connection errors come in many types
            raise FleetError(f"cannot connect to the Ray cluster at {address}: {type(err).__name__}: {err}") from None
        self.owned = True  # disconnects this driver at the end; the cluster goes on
        self.description = f"Ray cluster at {address}"

    def capacity(self) -> int:
        """How many tasks run at once: --workers, else what the cluster's CPUs allow."""
        if self.workers:
            return int(self.workers)
        cpus = float(self.ray.cluster_resources().get("CPU", 1))
        return max(1, int(cpus // self.cpus_per_worker))

    def run(
        self, tasks: list[BagTask], settings: ScoreSettings, model_bytes: Optional[bytes] = None, progress: Any = None
    ) -> Iterator[tuple[BagTask, dict[str, Any]]]:
        """Run every task; yields (task, record) as each finishes (at most :meth:`capacity` at a time).
        ``model_bytes``: the checkpoint, shipped to the workers through the object store. ``progress(n)``: frames
        read since the last call."""
        ray = self.ray
        remote = ray.remote(_score_remote).options(num_cpus=self.cpus_per_worker, max_retries=1)
        counter = ray.remote(_Frames).options(num_cpus=0).remote()
        model_ref = ray.put(model_bytes) if model_bytes is not None else None
        waiting = list(tasks)
        running: dict[Any, BagTask] = {}
        limit = self.capacity()
        try:
            while waiting or running:
                while waiting and len(running) < limit:
                    task = waiting.pop(0)
                    running[remote.remote(task, settings, model_ref, counter)] = task
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                if progress is not None:
                    progress(ray.get(counter.take.remote()))
                for ref in done:
                    task = running.pop(ref)
                    try:
                        record = ray.get(ref)
                    except Exception as err:  # noqa: BLE001 - the worker died on both tries, or Ray failed
                        record = _lost(task, err)
                    yield task, record
            if progress is not None:
                progress(ray.get(counter.take.remote()))
        finally:
            for ref in running:
                ray.cancel(ref, force=True)


def _lost(task: BagTask, err: BaseException) -> dict[str, Any]:
    text = str(err).strip().splitlines()
    return {
        "key": task.key,
        "bag": task.bag.path,
        "task": task.to_dict(),
        "chunk": None if task.chunks == 1 else [task.index + 1, task.chunks],
        "status": "failed",
        "error_kind": OTHER_ERROR,
        "warnings": [],
        "seconds": None,
        "worker": None,
        "error": f"{type(err).__name__}: {text[0] if text else ''} (the task was tried twice: a worker that dies "
        "is retried once)",
    }


class _Frames:
    """Counts the frames the workers have read since the driver last asked (a Ray actor)."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


def _score_remote(task: BagTask, settings: ScoreSettings, model_bytes: Optional[bytes], counter: Any) -> dict[str, Any]:
    """One Ray task: :func:`score_task`, reporting frames to ``counter`` about twice a second."""
    from vsseg_ros.fleet.tasks import score_task

    state = {"n": 0, "t": time.monotonic(), "seen": 0}
    fault = os.environ.get(FAULT_ENV, "")

    def report(n: int) -> None:
        state["n"] += n
        state["seen"] += n
        if fault:
            _maybe_die(fault, task, state["seen"])
        if time.monotonic() - state["t"] > 0.5:
            counter.add.remote(state["n"])
            state["n"], state["t"] = 0, time.monotonic()

    record = score_task(task, settings, model_bytes, progress=report)
    if state["n"]:
        counter.add.remote(state["n"])
    return record


def _maybe_die(fault: str, task: BagTask, frames_seen: int) -> None:
    name, _, marker = fault.partition(":")
    if task.bag.name == name and frames_seen >= 2 and marker and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(17)  # the worker dies mid-bag, as if killed


__all__ = ["FAULT_ENV", "RAY_PIN", "RayPool", "check_answers", "import_ray", "start_local", "stop_local"]
