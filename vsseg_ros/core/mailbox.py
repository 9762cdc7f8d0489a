"""A one-slot mailbox between a producer that must never block (a subscription callback) and a worker.

The worker always gets the newest item; an item replaced before the worker took it is dropped and counted.
Several slots (one per camera) can share one :class:`SlotGroup`, from which one worker takes the items that
are waiting, longest-waiting slot first: a slot that is refilled faster (a camera flooding its topic) is not
served more often than the others.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, Optional, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self, cond: Optional[threading.Condition] = None) -> None:
        self._cond = cond or threading.Condition()
        self._item: Optional[T] = None
        self._full = False
        self._closed = False
        #: when the slot last went from empty to full (monotonic s): how long it has been waiting
        self.waiting_since = 0.0

    def put(self, item: T) -> bool:
        """Store ``item``; return True if it replaced one the worker never took (a dropped item)."""
        with self._cond:
            replaced = self._full
            if not replaced:
                self.waiting_since = time.monotonic()
            self._item, self._full = item, True
            self._cond.notify_all()
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

    def _take_locked(self) -> Optional[T]:
        item, self._item, self._full = self._item, None, False
        return item


class SlotGroup(Generic[T]):
    """Slots that one worker serves together: :meth:`take` waits for any and returns the waiting items."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.slots: list[LatestSlot[T]] = []
        self._closed = False

    def slot(self) -> LatestSlot[T]:
        """A new slot of this group (its index in :attr:`slots` is the index :meth:`take` reports)."""
        s: LatestSlot[T] = LatestSlot(self._cond)
        self.slots.append(s)
        return s

    def take(self, limit: int, timeout: Optional[float] = None) -> list[tuple[int, T]]:
        """Wait up to ``timeout`` s for an item, then take up to ``limit`` of the waiting ones, the slots that
        have waited longest first, as ``(slot index, item)``; [] on time-out or once closed."""
        with self._cond:
            if not self._closed and not any(s._full for s in self.slots):
                self._cond.wait(timeout)
            full = sorted((s.waiting_since, i) for i, s in enumerate(self.slots) if s._full)
            return [(i, self.slots[i]._take_locked()) for _, i in full[: max(1, limit)]]  # type: ignore[misc]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for s in self.slots:
                s._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


__all__ = ["LatestSlot", "SlotGroup"]
