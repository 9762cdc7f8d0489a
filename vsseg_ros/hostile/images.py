"""Hostile compressed images, built byte by byte: decompression bombs and other inputs that cost a decoder far
more than their size. ``vsseg-ros decode-bombs`` and the tests feed them to the decoder; nothing here decodes.

Every builder returns ``bytes`` of at most about 1 MB, and the catalogue (:func:`catalogue`) names each with what
a naive decoder would do with it.
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable

import cv2
import numpy as np

from vsseg_ros.imaging.decode import MAX_JPEG_SCANS
from vsseg_ros.imaging.sniff import JPEG_SOF, sniff


def _jpeg(rgb: np.ndarray, progressive: bool = False, quality: int = 90) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    if progressive:
        params += [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    ok, out = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), params)
    assert ok
    return out.tobytes()


def _segments(data: bytes) -> list[tuple[int, int]]:
    """(marker, offset) of every marker segment up to the first SOS, offsets of the 0xFF byte."""
    out, i = [], 2
    while i + 4 <= len(data):
        marker = data[i + 1]
        out.append((marker, i))
        if marker == 0xDA:
            break
        i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return out


def with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` whose frame header (SOF) declares ``width`` x ``height``; the data stays that of the small image."""
    b = bytearray(jpeg)
    for marker, i in _segments(jpeg):
        if marker in JPEG_SOF:
            struct.pack_into(">HH", b, i + 5, height, width)
            return bytes(b)
    raise ValueError("no SOF in the JPEG")


def with_app_segments(jpeg: bytes, count: int, size: int = 4) -> bytes:
    """``count`` small APP15 segments (``size`` bytes of payload each) right after SOI."""
    seg = b"\xff\xef" + struct.pack(">H", size + 2) + bytes(size)
    return jpeg[:2] + seg * count + jpeg[2:]


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """``jpeg`` with an APP1 Exif segment whose IFD0 holds one entry: Orientation (0x0112) = ``orientation``."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def with_repeated_last_scan(progressive_jpeg: bytes, times: int) -> bytes:
    """A progressive JPEG whose last scan (header and entropy-coded data) is repeated ``times`` more: each copy
    makes the decoder walk the whole coefficient buffer again (libjpeg only warns about the bogus progression)."""
    end = progressive_jpeg.rindex(b"\xff\xd9")
    last = progressive_jpeg.rindex(b"\xff\xda", 0, end)
    scan = progressive_jpeg[last:end]
    return progressive_jpeg[:end] + scan * times + progressive_jpeg[end:]


def _up_to_scans(progressive_jpeg: bytes, scans: int) -> bytes:
    have = sniff(progressive_jpeg)[1].scans
    return with_repeated_last_scan(progressive_jpeg, max(0, scans - have))


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)


def flat_png(
    width: int, height: int, bit_depth: int = 8, colour_type: int = 2, interlaced: bool = False, palette: bool = True
) -> bytes:
    """A valid all-zero PNG of any size (it compresses about 1000:1), Adam7-interlaced if asked; a palette image
    (colour type 3) gets a grey PLTE unless ``palette`` is False (then it is invalid)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    bits = channels * bit_depth

    def rows(w: int, h: int):
        row = bytes(1 + (w * bits + 7) // 8)  # filter byte 0 + zero samples
        for _ in range(h):
            yield row

    passes = (
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        if interlaced
        else [(0, 0, 1, 1)]
    )
    z = zlib.compressobj(9)
    parts = []
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w <= 0 or h <= 0:
            continue
        block = b"".join(rows(w, min(h, 256)))
        for start in range(0, h, 256):
            n = min(256, h - start)
            parts.append(z.compress(block if n == 256 else b"".join(rows(w, n))))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, int(interlaced))
    plte = (
        _chunk(b"PLTE", bytes(v for k in range(1 << bit_depth) for v in (k * 255 // ((1 << bit_depth) - 1),) * 3))
        if colour_type == 3 and palette
        else b""
    )
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + plte + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_with_chunk_length(png: bytes, tag: bytes = b"IDAT", length: int = 0x8000000B) -> bytes:
    """``png`` whose ``tag`` chunk declares ``length`` bytes (OpenCV 5 allocated that much before reading: found
    by fuzzing, 2 GB for a 68-byte file)."""
    b = bytearray(png)
    i = png.index(tag) - 4
    struct.pack_into(">I", b, i, length)
    return bytes(b)


def png_with_corrupt_idat(png: bytes) -> bytes:
    """``png`` with bytes inside its IDAT overwritten (libpng reports the damage on stderr)."""
    b = bytearray(png)
    i = png.index(b"IDAT") + 4
    b[i + 2 : i + 22] = b"\xff" * 20
    return bytes(b)


def jpeg_with_bad_scan(jpeg: bytes) -> bytes:
    """``jpeg`` with a run of its entropy-coded data zeroed (libjpeg warns on stderr and decodes grey)."""
    b = bytearray(jpeg)
    start = jpeg.rindex(b"\xff\xda") + 20  # inside the (last) scan's entropy-coded data
    mid = (start + len(b) - 2) // 2
    b[mid : mid + 50] = bytes(50)
    return bytes(b)


def _texture(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 7 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


def catalogue(max_pixels: int = 3840 * 2160 * 2) -> dict[str, tuple[str, Callable[[], bytes]]]:
    """name -> (format field to send, builder): the issue's bombs, then valid images at the pixel limit (a decoder
    must decode those within bounds), then other containers OpenCV would decode."""
    small = _jpeg(_texture(48, 64))
    h = int((max_pixels / 2) ** 0.5)  # a 2:1 frame at the pixel limit
    w = max_pixels // h
    return {
        "jpeg 20000x20000 SOF, sent as png": ("png", lambda: with_declared_size(small, 20000, 20000)),
        "jpeg 20000x20000 SOF after 600 APP segments": (
            "jpeg",
            lambda: with_app_segments(with_declared_size(small, 20000, 20000), 600),
        ),
        "jpeg 20000x20000 SOF after 100000 APP segments": (
            "jpeg",
            lambda: with_app_segments(with_declared_size(small, 20000, 20000), 100_000),
        ),
        "jpeg 65535x2 SOF (degenerate)": ("jpeg", lambda: with_declared_size(small, 65535, 2)),
        "png 20000x20000 (valid), sent as jpeg": ("jpeg", lambda: flat_png(20000, 20000, 1, 0)),
        "png 193x45 whose IDAT chunk claims 2 GB": ("png", lambda: png_with_chunk_length(flat_png(193, 45, 8, 0))),
        f"progressive jpeg {w}x{h} flat with 3000 repeated scans": (
            "jpeg",
            lambda: with_repeated_last_scan(_jpeg(np.zeros((h, w, 3), np.uint8), progressive=True), 3000),
        ),
        f"progressive jpeg {w}x{h} flat with {MAX_JPEG_SCANS} scans (the most accepted)": (
            "jpeg",
            lambda: _up_to_scans(_jpeg(np.zeros((h, w, 3), np.uint8), progressive=True), MAX_JPEG_SCANS),
        ),
        f"jpeg {w}x{h} flat, baseline (at max_input_pixels)": ("jpeg", lambda: _jpeg(np.zeros((h, w, 3), np.uint8))),
        f"jpeg {w}x{h} flat, progressive (at max_input_pixels)": (
            "jpeg",
            lambda: _jpeg(np.zeros((h, w, 3), np.uint8), progressive=True),
        ),
        f"png {w}x{h} 16-bit RGBA flat (at max_input_pixels)": ("png", lambda: flat_png(w, h, 16, 6)),
        f"png {w}x{h} 16-bit RGBA flat, interlaced (at max_input_pixels)": (
            "png",
            lambda: flat_png(w, h, 16, 6, interlaced=True),
        ),
        "webp sent as jpeg": ("jpeg", lambda: cv2.imencode(".webp", _texture(48, 64))[1].tobytes()),
        "tiff sent as png": ("png", lambda: cv2.imencode(".tiff", _texture(48, 64))[1].tobytes()),
        "bmp sent as jpeg": ("jpeg", lambda: cv2.imencode(".bmp", _texture(48, 64))[1].tobytes()),
        "pgm 20000x20000 header": ("png", lambda: b"P5\n20000 20000\n255\n" + bytes(1000)),
        "gif sent as png": ("png", lambda: b"GIF89a" + struct.pack("<HH", 20000, 20000) + bytes(100)),
    }


__all__ = [
    "catalogue",
    "flat_png",
    "jpeg_with_bad_scan",
    "png_with_chunk_length",
    "png_with_corrupt_idat",
    "with_app_segments",
    "with_declared_size",
    "with_exif_orientation",
    "with_repeated_last_scan",
]
