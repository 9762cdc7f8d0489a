"""The node's scheduler without ROS: one SlotGroup, one slot per camera, one worker taking from it."""

from __future__ import annotations

import threading
import time

from vsseg_ros.core.mailbox import SlotGroup


def test_a_slot_refilled_at_once_does_not_starve_the_others() -> None:
    """Slot 0 is refilled right after every take (a camera flooding); slots 1 and 2 get one item each. Taking
    one at a time, each of them is served within two takes of its item's arrival, not after the flood."""
    group: SlotGroup[str] = SlotGroup()
    flood, slow, slower = group.slot(), group.slot(), group.slot()
    flood.put("a0")
    order = []
    for i in range(1, 9):
        if i == 2:
            slow.put("c")
        if i == 3:
            slower.put("d")
        (_, item), *rest = group.take(1, timeout=0)
        assert not rest
        order.append(item)
        flood.put(f"a{i}")  # the flood waits again before the next take
        time.sleep(0.001)  # distinct arrival times, whatever the clock's resolution
    assert order.index("c") <= 2 + 1 and order.index("d") <= 3 + 2, order
    assert order.count("c") == order.count("d") == 1 and len(order) == 8


def test_take_returns_every_waiting_slot_longest_waiting_first_up_to_the_limit() -> None:
    group: SlotGroup[int] = SlotGroup()
    slots = [group.slot() for _ in range(4)]
    for i in (2, 0, 3):  # slot 2 waits longest, slot 1 is empty
        slots[i].put(i)
        time.sleep(0.001)
    assert group.take(2, timeout=0) == [(2, 2), (0, 0)]
    assert group.take(8, timeout=0) == [(3, 3)]
    assert group.take(8, timeout=0.01) == []  # nothing waits: the time-out
    assert slots[0].put(5) is False and slots[0].put(6) is True  # a replaced item is a dropped one
    assert group.take(0, timeout=0) == [(0, 6)]  # a limit under 1 still takes one


def test_take_wakes_on_a_put_and_returns_nothing_once_closed() -> None:
    group: SlotGroup[int] = SlotGroup()
    slot = group.slot()
    got = []
    t = threading.Thread(target=lambda: got.append(group.take(4, timeout=5.0)))
    t.start()
    time.sleep(0.05)
    slot.put(7)
    t.join(5.0)
    assert got == [[(0, 7)]]
    t0 = time.monotonic()
    waiter = threading.Thread(target=lambda: got.append(group.take(4, timeout=5.0)))
    waiter.start()
    time.sleep(0.05)
    group.close()
    waiter.join(5.0)
    assert got[-1] == [] and time.monotonic() - t0 < 2.0 and group.closed and slot.closed
