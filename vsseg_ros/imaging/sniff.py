"""What compressed bytes really are, and how large they say the image is, read from the bytes alone.

A ``CompressedImage``'s ``format`` field is written by the publisher and cannot be trusted: the decoder
(OpenCV) picks its codec from the bytes' signature, so the size limits must be read the same way, before
anything is decoded. :func:`sniff` identifies the container by its magic number and, for the two formats the
node accepts (JPEG and PNG), parses the header that declares the frame size:

* PNG: the IHDR chunk, which the format requires to come first; then every chunk's length is checked against
  the bytes that remain (OpenCV 5 allocates a chunk's declared length before reading it: a 68-byte PNG whose
  IDAT claims 2 GB made it allocate 2 GB), and a palette image must have its PLTE before the image data.
* JPEG: every marker segment from SOI up to the first start-of-frame (all thirteen SOF types: baseline,
  extended, progressive, lossless, hierarchical, arithmetic), however many segments come before it; then the
  scan headers (SOS) are counted, skipping entropy-coded data, because a progressive JPEG with thousands of
  tiny scans makes the decoder walk the whole image once per scan.

Anything else OpenCV would decode (WebP, BMP, TIFF, GIF, PNM/PAM/PFM, JPEG 2000, OpenEXR, Radiance HDR, Sun
raster, AVIF/HEIF, JPEG XL) is named so the refusal can say what it was. No ROS imports, no allocation beyond
a copy of the header bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

#: formats the decoder accepts (in CompressedImage.format and, what decides, in the bytes)
ACCEPTED_FORMATS = ("jpeg", "png")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers: SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_SOS, _EOI = 0xDA, 0xD9
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0..7: no length field
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}  # colour type -> depths

# (signature test, name) for formats OpenCV decodes but the node does not accept.
_OTHER_FORMATS: tuple[tuple[object, str], ...] = (
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", "WebP"),
    (lambda b: b[:2] == b"BM", "BMP"),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF"),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), "GIF"),
    (lambda b: b[:4] == b"\xff\x4f\xff\x51" or b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (lambda b: b[:2] == b"\xff\x0a" or b[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (lambda b: b[:4] == b"v/1\x01", "OpenEXR"),
    (lambda b: b[:10] == b"#?RADIANCE" or b[:6] == b"#?RGBE", "Radiance HDR"),
    (lambda b: b[:4] == b"\x59\xa6\x6a\x95", "Sun raster"),
    (lambda b: b[4:8] == b"ftyp" and b[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"), "AVIF/HEIF"),
    (lambda b: len(b) >= 3 and b[:1] == b"P" and b[1:2] in b"1234567fF" and b[2:3] in b" \t\r\n", "PNM/PAM/PFM"),
)


class HeaderError(ValueError):
    """The bytes claim a format but its header is missing, truncated or inconsistent."""


@dataclass(frozen=True)
class CompressedHeader:
    """What the header of a JPEG or PNG declares."""

    format: str  # "jpeg" or "png"
    width: int
    height: int
    channels: int  # JPEG components; PNG channels of the colour type
    bit_depth: int  # JPEG sample precision; PNG bit depth
    progressive: bool = False  # JPEG: a progressive SOF (the decoder buffers the whole image's coefficients)
    scans: int = 0  # JPEG: scan headers (SOS) in the data
    interlaced: bool = False  # PNG: Adam7


def format_field_kind(fmt: str) -> Optional[str]:
    """'jpeg', 'png' or None for a ``CompressedImage.format`` string (short or image_transport's long form,
    e.g. ``"rgb8; jpeg compressed bgr8"``); compressedDepth payloads (a depth header before the PNG) are None."""
    f = str(fmt).strip().lower()
    if "compresseddepth" in f:
        return None
    if "jpeg" in f or "jpg" in f:
        return "jpeg"
    if "png" in f:
        return "png"
    return None


def identify(head: bytes) -> Optional[str]:
    """The container the first bytes belong to: 'jpeg', 'png', another format's name, or None if unknown."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == PNG_MAGIC:
        return "png"
    for test, name in _OTHER_FORMATS:
        if test(head):  # type: ignore[operator]
            return name
    return None


def sniff(data: bytes) -> tuple[Optional[str], Optional[CompressedHeader]]:
    """``(container, header)``: the header for JPEG and PNG, None for other (or unknown) containers.

    Raises :class:`HeaderError` when the bytes start like a JPEG or PNG but do not declare a frame size.
    """
    kind = identify(data[:16])
    if kind == "png":
        return kind, _png_header(data)
    if kind == "jpeg":
        return kind, _jpeg_header(data)
    return kind, None


def _png_header(data: bytes) -> CompressedHeader:
    if len(data) < 33:
        raise HeaderError(f"PNG data of {len(data)} bytes is too short to hold its IHDR chunk")
    length, tag = struct.unpack_from(">I4s", data, 8)
    if tag != b"IHDR" or length != 13:
        raise HeaderError("PNG data does not start with an IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if depth not in _PNG_DEPTHS.get(colour, ()):
        raise HeaderError(f"PNG IHDR declares bit depth {depth} with colour type {colour}, which PNG does not allow")
    if compression or filtering or interlace > 1:
        raise HeaderError("PNG IHDR declares an unknown compression, filter or interlace method")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    _check_png_chunks(data, palette=colour == 3)
    return CompressedHeader("png", width, height, channels, depth, interlaced=interlace == 1)


def _check_png_chunks(data: bytes, palette: bool) -> None:
    """Every chunk fits in the data (a chunk may not claim more bytes than are there); IDAT exists, and a palette
    image has PLTE before it."""
    i, n = 8, len(data)
    seen_plte = seen_idat = False
    while i + 8 <= n:
        length, tag = struct.unpack_from(">I4s", data, i)
        if length > n - i - 12:
            raise HeaderError(
                f"PNG chunk {tag!r} at byte {i} declares {length} bytes, more than the {n - i - 12} that follow"
            )
        if tag == b"PLTE":
            seen_plte = True
        elif tag == b"IDAT":
            if palette and not seen_plte:
                raise HeaderError("PNG palette image has no PLTE chunk before its image data")
            seen_idat = True
        elif tag == b"IEND":
            break
        i += 12 + length
    if not seen_idat:
        raise HeaderError("PNG data has no image data (IDAT chunk)")


def _jpeg_header(data: bytes) -> CompressedHeader:
    """Walk the marker segments up to the first SOF (any number of them), then count the scans."""
    n = len(data)
    i = 2
    frame: Optional[tuple[int, int, int, int, bool]] = None
    while frame is None:
        if i + 2 > n:
            raise HeaderError(f"JPEG data ends after {n} bytes without a frame header (SOF)")
        if data[i] != 0xFF:
            raise HeaderError(f"JPEG data has no marker at byte {i} before its frame header (SOF)")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (_SOS, _EOI, 0xD8):
            raise HeaderError(f"JPEG data has marker 0x{marker:02X} before its frame header (SOF)")
        if i + 4 > n:
            raise HeaderError(f"JPEG data ends inside the segment at byte {i}")
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2 or i + 2 + length > n:
            raise HeaderError(f"JPEG segment 0x{marker:02X} at byte {i} has an invalid length {length}")
        if marker in JPEG_SOF:
            if length < 8:
                raise HeaderError(f"JPEG frame header (SOF) of length {length} is too short")
            precision, height, width, components = struct.unpack_from(">BHHB", data, i + 4)
            if length < 8 + 3 * components:
                raise HeaderError(f"JPEG frame header declares {components} components but is {length} bytes")
            frame = (width, height, components, precision, marker in _JPEG_PROGRESSIVE)
        i += 2 + length
    width, height, components, precision, progressive = frame
    return CompressedHeader(
        "jpeg", width, height, components, precision, progressive=progressive, scans=_count_scans(data, i)
    )


def _count_scans(data: bytes, i: int) -> int:
    """SOS markers from byte ``i`` on. Inside entropy-coded data 0xFF is always followed by 0x00 (stuffing) or
    a restart marker, so the next real marker is the next 0xFF that is followed by anything else."""
    scans = 0
    n = len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            j = data.find(b"\xff", i)
            if j < 0:
                break
            i = j
            continue
        marker = data[i + 1]
        if marker == 0x00 or marker == 0xFF or marker in _STANDALONE:
            i += 1 if marker == 0xFF else 2
            continue
        if marker == _EOI:
            break
        if i + 4 > n:
            break
        if marker == _SOS:
            scans += 1
        (length,) = struct.unpack_from(">H", data, i + 2)
        i += 2 + max(length, 2)
    return scans


__all__ = [
    "ACCEPTED_FORMATS",
    "CompressedHeader",
    "HeaderError",
    "JPEG_SOF",
    "PNG_MAGIC",
    "format_field_kind",
    "identify",
    "sniff",
]
