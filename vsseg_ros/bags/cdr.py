"""The header at the start of a serialized (CDR) message, read without deserializing the rest.

Image, CompressedImage, CameraInfo and this package's messages all begin with a ``std_msgs/Header``: matching
frames by stamp then costs a few bytes per message instead of decoding whole images.
"""

from __future__ import annotations

import struct


class CdrError(ValueError):
    """Bytes that do not start like a CDR message with a std_msgs/Header."""


def header_of(raw: bytes | bytearray | memoryview) -> tuple[int, str]:
    """``(stamp in ns, frame_id)`` of a CDR message whose first field is a ``std_msgs/Header``."""
    if len(raw) < 16:
        raise CdrError(f"{len(raw)} bytes are too short for a CDR message with a header (at least 16)")
    # 4-byte encapsulation: representation id 0x0000 = big endian CDR, 0x0001 = little endian (0x0002/0x0003:
    # the same for parameter lists, not used by ROS 2 messages).
    kind = raw[1]
    if raw[0] != 0 or kind not in (0, 1):
        raise CdrError(f"unknown CDR encapsulation {bytes(raw[:2]).hex()}")
    order = "<" if kind == 1 else ">"
    sec, nanosec, length = struct.unpack_from(order + "iII", raw, 4)
    end = 16 + length
    if length == 0 or end > len(raw):
        raise CdrError(f"frame_id length {length} does not fit in a {len(raw)}-byte message")
    frame_id = bytes(raw[16 : end - 1]).decode("utf-8", errors="replace")  # the length counts the NUL
    return sec * 1_000_000_000 + nanosec, frame_id


def stamp_of(raw: bytes | bytearray | memoryview) -> int:
    return header_of(raw)[0]


__all__ = ["CdrError", "header_of", "stamp_of"]
