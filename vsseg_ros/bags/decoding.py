"""Decoding a bag's serialized messages: the type store that reads them, the header stamp read straight from the
bytes (so only the messages used are deserialized), mono8 masks as arrays, and stamps as text for messages.
Every failure is a :class:`~vsseg_ros.bags.bagfile.BagError` naming the topic and the message.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from vsseg_ros.bags.bagfile import BagError
from vsseg_ros.bags.cdr import CdrError, header_of
from vsseg_ros.bags.typestore import add_package_types, typestore_for


def decoder(distro: Optional[str], msgtypes: Sequence[str], with_package: bool = False) -> Any:
    """The type store for a bag recorded on ``distro`` (with this package's messages), checked to know ``msgtypes``."""
    store = typestore_for(distro)
    if with_package:
        add_package_types(store)
    for t in msgtypes:
        if t not in store.types:
            raise BagError(
                f"unknown message type {t!r}: neither ROS 2 {distro or 'kilted'} nor this package defines it"
            )
    return store


def deserialize(store: Any, raw: bytes, msgtype: str, topic: str, what: str) -> Any:
    """``raw`` as a ``msgtype`` message; ``what`` names it in the error."""
    try:
        return store.deserialize_cdr(raw, msgtype)
    except Exception as err:
        raise BagError(
            f"{what} on {topic} cannot be decoded as {msgtype}: {err} (a corrupt message, or a type "
            "that differs from the standard definition)"
        ) from err


def stamp_of(raw: bytes, topic: str) -> tuple[int, str]:
    """(header stamp ns, frame_id) read from the serialized bytes, without deserializing the message."""
    try:
        return header_of(raw)
    except CdrError as err:
        raise BagError(f"a message on {topic} has no readable header: {err} (corrupt bag?)") from err


def mono8_array(msg: Any, what: str) -> np.ndarray:
    """An Image message holding one byte per pixel (mono8 / 8UC1) as an HxW uint8 array (a copy)."""
    if str(msg.encoding).lower() not in ("mono8", "8uc1"):
        raise BagError(f"{what} has encoding {msg.encoding!r}; expected mono8 class ids (255 = ignore)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    if h <= 0 or w <= 0 or step < w or data.size < step * h:
        raise BagError(f"{what}: {w}x{h} mono8 with step {step} needs {step * h} bytes, has {data.size}")
    return data[: step * h].reshape(h, step)[:, :w].copy()


def fmt_stamp(stamp_ns: int) -> str:
    """``stamp SEC.NANOSEC`` for messages."""
    return f"stamp {stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"


def stamp_span(stamps: Sequence[int]) -> str:
    """The first and last of ``stamps`` as ``SEC.NS..SEC.NS s`` ("none" when empty)."""
    return f"{fmt_stamp(min(stamps))[6:]}..{fmt_stamp(max(stamps))[6:]} s" if stamps else "none"
