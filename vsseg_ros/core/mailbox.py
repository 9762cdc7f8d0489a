"""A one-slot mailbox between a producer that must never block (a subscription callback) and a worker.

The worker always gets the newest item; an item replaced before the worker took it is dropped and counted.
"""

from __future__ import annotations

import threading
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Optional[T] = None
        self._full = False
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; return True if it replaced one the worker never took (a dropped item)."""
        with self._cond:
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
        return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[T]:
        """Wait up to ``timeout`` s for an item; None on time-out or once closed."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
