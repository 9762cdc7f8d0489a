"""Recording already serialized (CDR) messages into a bag from any thread (what ``replay`` receives from the node
over DDS), with one writer thread owning the storage.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from vsseg_ros.bags.typestore import DEFAULT_DISTRO, add_package_types, check_distro, typestore_for
from vsseg_ros.bags.writing import BagWriteError, offered_qos, open_writer, set_metadata_version


class RawBagWriter:
    """A bag of already serialized (CDR) messages, e.g. what a subscription with ``raw=True`` receives.

    Topics are added with their type name (``sensor_msgs/msg/Image``, ``vsseg_ros/msg/SemanticSegmentation``,
    ...); the definitions embedded come from the ``distro`` store plus this package's messages. Any thread may
    call :meth:`add_topic` and :meth:`write`: one writer thread owns the storage (sqlite3 connections must stay in
    the thread that opened them) and takes the work in order from a queue, so callbacks never wait on the disk.
    A storage error is raised by :meth:`close`.
    """

    def __init__(
        self,
        path: Union[str, Path],
        storage: str = "mcap",
        distro: str = DEFAULT_DISTRO,
        custom_data: Optional[Mapping[str, str]] = None,
    ) -> None:
        import queue

        self.path = Path(path)
        self.distro = distro = check_distro(distro)
        self.typestore = add_package_types(typestore_for(distro))
        self._writer = open_writer(self.path, storage, distro)  # checks the path and storage now
        self._queue: "queue.SimpleQueue[Optional[tuple]]" = queue.SimpleQueue()
        self._counts: dict[str, int] = {}
        self._topics: set[str] = set()
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self.closed = False
        self._thread = threading.Thread(
            target=self._run, args=(dict(custom_data or {}),), daemon=True, name="vsseg-bag-writer"
        )
        self._thread.start()

    def _run(self, custom_data: dict[str, str]) -> None:
        connections: dict[str, Any] = {}
        try:
            self._writer.open()
            for key, value in custom_data.items():
                self._writer.set_custom_data(key, value)
            while (item := self._queue.get()) is not None:
                if item[0] == "add":
                    _, topic, msgtype, qos = item
                    connections[topic] = self._writer.add_connection(
                        topic, msgtype, typestore=self.typestore, offered_qos_profiles=[qos]
                    )
                else:
                    _, topic, log_ns, raw = item
                    self._writer.write(connections[topic], log_ns, raw)
            self._writer.close()
            set_metadata_version(self.path, self.distro)
        except BaseException as err:  # reported by close(); the rest of the queue is dropped
            self._error = err
            try:
                self._writer.abort()
            except Exception:
                pass

    def add_topic(
        self, topic: str, msgtype: str, reliable: bool = True, transient_local: bool = False, depth: int = 10
    ) -> None:
        with self._lock:
            if topic in self._topics or self.closed:
                return
            self._topics.add(topic)
            self._counts[topic] = 0
            self._queue.put(("add", topic, msgtype, offered_qos(reliable, depth, transient_local)))

    def write(self, topic: str, log_ns: int, raw: Union[bytes, memoryview]) -> None:
        with self._lock:
            if self.closed:
                return  # a late message after close: nothing left to write it to
            if topic not in self._topics:
                raise KeyError(f"topic {topic} was not added to {self.path}")
            self._counts[topic] += 1
            self._queue.put(("write", topic, int(log_ns), bytes(raw)))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def close(self) -> dict[str, int]:
        """Finish the bag (index + metadata.yaml); returns messages per topic."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise BagWriteError(f"writing {self.path} failed: {self._error}") from self._error
        return self.counts()

    def __enter__(self) -> "RawBagWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
