"""Decode ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` payloads into RGB arrays.

Why one module over 400 lines: the table of accepted encodings, the header checks that run before any pixel
is read and the conversion of each are one contract (what is accepted, and every refusal's kind and words).

Everything here is free of ROS imports: the functions take plain values (or any object that looks like
the message), so they work on rclpy messages, rosbags messages and test doubles alike.

Every decoder returns a C-contiguous ``(height, width, 3)`` ``uint8`` array in RGB order, the model's
input. For an unpadded ``rgb8`` frame this is a zero-copy view of the message buffer: it may be
read-only (when ``data`` is ``bytes``) and it aliases the message, so copy it before writing to it.

Headers are validated before any pixel is touched. Every failure raises :class:`ImageDecodeError`,
whose ``kind`` is a short, stable key for the category of the problem (the node logs each kind once),
and whose message says what was wrong, with the actual numbers, and what is accepted:

=====================================  ==========================================================
``zero_size``                          width or height is 0 (or negative)
``too_large``                          width x height exceeds ``max_pixels`` (``max_input_pixels``)
``too_long_side``                      width or height exceeds ``max_side`` (``max_input_side``)
``bad_field``                          a size field is not an integer
``unsupported_encoding``               ``Image.encoding`` is not in :data:`SUPPORTED_ENCODINGS`
``odd_size``                           yuv422 / nv12 frame with an odd width (nv12: or height)
``step_too_small``                     ``step`` is less than width x bytes per pixel
``size_mismatch``                      ``len(data)`` differs from what step and height require
``bad_data``                           ``data`` is not a byte buffer / sequence of bytes
``unsupported_compressed_format``      the bytes are neither JPEG nor PNG (whatever ``format`` says), or
                                       ``format`` is compressedDepth
``too_many_scans``                     a JPEG with more than :data:`MAX_JPEG_SCANS` scans
``corrupt_compressed``                 the compressed bytes are empty, corrupt or truncated
=====================================  ==========================================================

No kind contains a value from the message (an encoding string, a size): a stream of frames that are each wrong
in a different way is still reported once.

Compressed data is identified by its magic number, never by ``CompressedImage.format`` (OpenCV picks its codec
from the bytes too), and its declared size is read from the JPEG SOF / PNG IHDR header and checked against the
limits before anything is decoded (:mod:`.sniff`). EXIF orientation is ignored: pixels are taken as sent. What
libjpeg/libpng print on fd 2 is caught (:mod:`.stderr_capture`) and put into the error message instead of the
log.

Colour conversion goes through rosbags-image (``rosbags.image``) where it is right, on a view that we
build ourselves. Its own ``image_to_cvimage`` is not used directly because (rosbags-image 0.10.4)
it ignores ``step`` (padded rows come out sheared), reads only the Y plane of ``nv12`` (OpenCV then
rejects the shape), and converts ``mono16`` through float64 (slow). Its ``compressed_image_to_cvimage``
fails with a bare ``AssertionError`` on corrupt data. When rosbags-image is not installed, an
equivalent table of OpenCV conversion codes is used instead (the tests check that both agree).

Bayer naming: ROS ``bayer_rggb8`` means the top-left 2x2 cell is ``R G / G B``. OpenCV's historic
two-letter codes name the pattern differently (ROS rggb is OpenCV ``COLOR_BayerBG2RGB``, which
OpenCV 5 also spells ``COLOR_BayerRGGB2RGB``); both rosbags-image and the fallback table get this
right, and the tests prove it with solid-colour mosaics.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import Any, Union

import cv2
import numpy as np

from .sniff import ACCEPTED_FORMATS, HeaderError, format_field_kind, sniff
from .stderr_capture import library_messages

try:  # optional: rosbags-image is not a rosdep key
    from rosbags.image.image import convert_color as _rosbags_convert_color
except ImportError:  # pragma: no cover - depends on the environment
    _rosbags_convert_color = None  # type: ignore[assignment]  # optional: None says it is not installed

#: what an image message's ``data`` may be: bytes-like (rclpy gives ``array.array('B')``), a uint8 numpy array
#: (rosbags) or a sequence of ints
ByteData = Union[bytes, bytearray, memoryview, "array.array[int]", np.ndarray, Sequence[int]]

__all__ = [
    "MAX_JPEG_SCANS",
    "SUPPORTED_COMPRESSED_FORMATS",
    "SUPPORTED_ENCODINGS",
    "ImageDecodeError",
    "bytes_per_pixel",
    "decode_compressed",
    "decode_image",
    "decode_message",
]

# encoding -> bytes per pixel of the (first) plane.
_BPP: dict[str, int] = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "mono16": 2,
    "bayer_rggb8": 1,
    "bayer_bggr8": 1,
    "bayer_gbrg8": 1,
    "bayer_grbg8": 1,
    "yuv422": 2,  # UYVY: U0 Y0 V0 Y1
    "yuv422_yuy2": 2,  # YUYV: Y0 U0 Y1 V0
    "uyvy": 2,
    "yuyv": 2,
    "nv12": 1,  # Y plane (height rows), then interleaved UV plane (height/2 rows), same step
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_BPP)
SUPPORTED_COMPRESSED_FORMATS = ACCEPTED_FORMATS
#: scans a JPEG may have: the decoder walks the whole image once per scan, real progressive files have about 10
MAX_JPEG_SCANS = 32

_YUV422 = frozenset({"yuv422", "yuv422_yuy2", "uyvy", "yuyv"})


def _cv_code(*names: str) -> int:
    for name in names:
        code = getattr(cv2, name, None)
        if code is not None:
            return int(code)
    raise AttributeError(f"OpenCV has none of {names}")  # pragma: no cover


# Fallback conversion table (used when rosbags-image is missing). Bayer entries prefer OpenCV 5's
# explicit four-letter names, which match ROS; the two-letter names are the pre-5 equivalents.
_CV_TO_RGB: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": _cv_code("COLOR_BGR2RGB"),
    "rgba8": _cv_code("COLOR_RGBA2RGB"),
    "bgra8": _cv_code("COLOR_BGRA2RGB"),
    "mono8": _cv_code("COLOR_GRAY2RGB"),
    "bayer_rggb8": _cv_code("COLOR_BayerRGGB2RGB", "COLOR_BayerBG2RGB"),
    "bayer_bggr8": _cv_code("COLOR_BayerBGGR2RGB", "COLOR_BayerRG2RGB"),
    "bayer_gbrg8": _cv_code("COLOR_BayerGBRG2RGB", "COLOR_BayerGR2RGB"),
    "bayer_grbg8": _cv_code("COLOR_BayerGRBG2RGB", "COLOR_BayerGB2RGB"),
    "yuv422": _cv_code("COLOR_YUV2RGB_UYVY"),
    "uyvy": _cv_code("COLOR_YUV2RGB_UYVY"),
    "yuv422_yuy2": _cv_code("COLOR_YUV2RGB_YUYV"),
    "yuyv": _cv_code("COLOR_YUV2RGB_YUYV"),
    "nv12": _cv_code("COLOR_YUV2RGB_NV12"),
}

# Pixels as sent: IMREAD_IGNORE_ORIENTATION keeps OpenCV from applying a JPEG's EXIF rotation.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_IMREAD_FLAGS = (cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB) | cv2.IMREAD_IGNORE_ORIENTATION


class ImageDecodeError(ValueError):
    """An image message that cannot be decoded.

    ``kind`` is a short stable key for the category of problem (no value from the message in it), e.g.
    ``"size_mismatch"`` or ``"unsupported_encoding"``; ``str(err)`` is the full human message.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def bytes_per_pixel(encoding: str) -> int:
    """Bytes per pixel of ``encoding``'s first plane (nv12: the Y plane, 1)."""
    return _BPP[_normalise(encoding)]


def _normalise(encoding: str) -> str:
    return str(encoding).strip().lower()


def _to_rgb(src: np.ndarray, encoding: str) -> np.ndarray:
    """Colour-convert a correctly shaped (possibly row-strided) view to a fresh RGB array."""
    if _rosbags_convert_color is not None:
        out = _rosbags_convert_color(src, encoding, "rgb8")
    else:
        code = _CV_TO_RGB[encoding]
        out = src if code is None else cv2.cvtColor(src, code)
    return np.ascontiguousarray(out)


def _as_bytes_array(data: ByteData) -> np.ndarray:
    """``data`` as a flat uint8 array, without copying when it supports the buffer protocol."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)  # a view unless data is non-contiguous
        if data.flags.c_contiguous:
            return data.reshape(-1).view(np.uint8)
        raise ImageDecodeError(
            f"image data is a non-contiguous {data.dtype} array; expected bytes or a uint8 array",
            "bad_data",
        )
    try:  # whatever came in (hostile messages too): the buffer protocol is tried, a TypeError says no
        buf: np.ndarray = np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
        return buf
    except (TypeError, ValueError, BufferError):
        pass
    try:  # a list/tuple of ints, say
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise ImageDecodeError(
            f"image data of type {type(data).__name__} is not a byte buffer or a sequence of bytes ({err})",
            "bad_data",
        ) from None


def _check_dims(height: int, width: int, max_pixels: int, max_side: int, what: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageDecodeError(
            f"{what} has zero size: width x height = {width} x {height}; both must be positive",
            "zero_size",
        )
    if max_pixels > 0 and width * height > max_pixels:
        raise ImageDecodeError(
            f"{what} is too large: {width} x {height} = {width * height} pixels exceeds the limit of "
            f"{max_pixels} pixels set by the parameter max_input_pixels",
            "too_large",
        )
    if max_side > 0 and max(width, height) > max_side:
        raise ImageDecodeError(
            f"{what} of width x height = {width} x {height} has a side longer than {max_side} pixels, the limit "
            "set by the parameter max_input_side",
            "too_long_side",
        )


def _as_int(value: Any, name: str) -> int:  # Any: a message field of whatever type the sender put there
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ImageDecodeError(f"image {name} {value!r} is not an integer", "bad_field") from None


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: ByteData,
    is_bigendian: int = 0,
    max_pixels: int = 0,
    max_side: int = 0,
) -> np.ndarray:
    """Decode raw ``sensor_msgs/Image`` fields into a C-contiguous HxWx3 uint8 RGB array.

    ``data`` may be ``bytes``, ``bytearray``, ``memoryview``, ``array.array('B')`` (rclpy) or a uint8
    numpy array (rosbags); it is wrapped without copying. Rows may be padded (``step`` larger than
    width x bytes per pixel); the padding is cropped. ``max_pixels`` > 0 rejects frames with more
    pixels (the node's ``max_input_pixels``), ``max_side`` > 0 frames with a longer side (``max_input_side``).

    Grey images are replicated into three channels. ``mono16`` is mapped to 8 bits by keeping the
    high byte (``value >> 8``: 0..255 -> 0, 65280..65535 -> 255), which treats the full 16-bit range
    as the signal range; ``is_bigendian`` says which byte of each pixel that is. Depth images in
    millimetres (mostly small values) therefore come out dark: this is a camera-image decoder.

    ``yuv422``/``uyvy`` are UYVY (U0 Y0 V0 Y1), ``yuv422_yuy2``/``yuyv`` are YUYV (Y0 U0 Y1 V0), as in
    ROS image_encodings; they need an even width. ``nv12`` is a Y plane of ``height`` rows followed
    by an interleaved UV plane of ``height / 2`` rows, both ``step`` bytes apart, so ``data`` must hold
    ``step * height * 3 / 2`` bytes and width and height must be even. YUV uses OpenCV's BT.601
    conversion.

    For an unpadded ``rgb8`` frame the result is a view of ``data`` (zero copy; read-only if
    ``data`` is immutable); every other case returns a new array.
    """
    height, width, step = _as_int(height, "height"), _as_int(width, "width"), _as_int(step, "step")
    enc = _normalise(encoding)
    bpp = _BPP.get(enc)
    if bpp is None:
        raise ImageDecodeError(
            f"unsupported image encoding {str(encoding)[:64]!r}; supported encodings are: "
            f"{', '.join(SUPPORTED_ENCODINGS)}",
            "unsupported_encoding",
        )
    _check_dims(height, width, max_pixels, max_side, f"{enc} image")
    if (enc in _YUV422 and width % 2) or (enc == "nv12" and (width % 2 or height % 2)):
        need = "an even width" if enc in _YUV422 else "an even width and height"
        raise ImageDecodeError(
            f"{enc} image of width x height = {width} x {height} is invalid: {enc} needs {need}",
            "odd_size",
        )
    row_bytes = width * bpp
    if step < row_bytes:
        raise ImageDecodeError(
            f"{enc} image step {step} is less than width x bytes per pixel = {width} x {bpp} = {row_bytes}",
            "step_too_small",
        )
    rows = height + height // 2 if enc == "nv12" else height
    expected = step * rows

    if isinstance(data, (list, tuple)):
        # A plain sequence: check its length before converting it element by element.
        if len(data) != expected:
            raise ImageDecodeError(
                _size_message(enc, width, height, bpp, step, rows, expected, len(data)), "size_mismatch"
            )
    buf = _as_bytes_array(data)
    if buf.size != expected:
        raise ImageDecodeError(_size_message(enc, width, height, bpp, step, rows, expected, buf.size), "size_mismatch")

    if enc == "rgb8" and step == row_bytes:
        return buf.reshape(height, width, 3)  # zero copy; buf is contiguous here

    # A (rows, width[, bytes per pixel]) view whose rows are `step` bytes apart: no copy, padding skipped.
    table = buf.reshape(rows, step)
    if enc == "mono16":
        # Keep the high byte: offset 1 of each little-endian sample, offset 0 of each big-endian one.
        start = 0 if is_bigendian else 1
        return _to_rgb(table[:, start:row_bytes:2], "mono8")
    src = table[:, :row_bytes]
    if bpp > 1:
        src = src.reshape(rows, width, bpp)  # splits the contiguous last axis: still a view
    return _to_rgb(src, enc)


def _size_message(enc: str, width: int, height: int, bpp: int, step: int, rows: int, expected: int, got: int) -> str:
    if enc == "nv12":
        layout = f"nv12 {width} x {height} (width x height; Y plane plus half-height UV plane = {rows} rows)"
    else:
        layout = f"{enc} {width} x {height} x {bpp} (width x height x bytes per pixel)"
    return (
        f"image data size mismatch: {layout} with step {step} needs step x rows = {step} x {rows} = "
        f"{expected} bytes, got {got}"
    )


def _compressed_kind(fmt: str, data: np.ndarray | None = None) -> str | None:
    """'jpeg', 'png' or None for a CompressedImage.format string (kept for the encoder; decoding goes by the
    bytes)."""
    return format_field_kind(fmt)


def _refuse_container(fmt: str, container: str | None, head: bytes) -> ImageDecodeError:
    said = f" (its format field says {str(fmt)[:64]!r})" if str(fmt).strip() else ""
    what = (
        f"is {container} data"
        if container is not None
        else f"is neither JPEG nor PNG data (it starts with bytes {head.hex(' ')})"
    )
    return ImageDecodeError(
        f"compressed image {what}{said}; accepted are jpeg and png, recognised by their magic number whatever "
        "the format field says",
        "unsupported_compressed_format",
    )


def decode_compressed(
    fmt: str, data: ByteData, max_pixels: int = 0, max_side: int = 0, warnings: list[str] | None = None
) -> np.ndarray:
    """Decode ``sensor_msgs/CompressedImage`` bytes into a C-contiguous HxWx3 uint8 RGB array.

    The bytes decide the format: JPEG or PNG by their magic number, whatever ``fmt`` (the message's ``format``)
    says; anything else (WebP, TIFF, BMP, GIF, ...) is refused by name. ``fmt`` only matters for
    ``compressedDepth``, which is refused (its payload is a depth header and a 16-bit PNG, not a camera image).
    The frame size declared in the PNG IHDR / JPEG SOF header (found after any number of segments) is checked
    against ``max_pixels`` and ``max_side`` before anything is decoded, and a JPEG's scan count against
    :data:`MAX_JPEG_SCANS`; the decoded image must have exactly the declared size. EXIF orientation is ignored
    (pixels as sent). Grey, 16-bit and RGBA PNGs are converted to 8-bit RGB (OpenCV's IMREAD_COLOR rules: 16
    bits keep the high byte, alpha is dropped). What the image libraries print is caught: it goes into the
    error's message, or, for a frame that decoded despite it (libjpeg recovers from some damage), into
    ``warnings`` when a list is given.
    """
    buf = _as_bytes_array(data)
    if "compresseddepth" in str(fmt).lower():
        raise ImageDecodeError(
            f"compressed image format {str(fmt)[:64]!r} is a compressedDepth payload, which is not supported; "
            f"accepted are {', '.join(SUPPORTED_COMPRESSED_FORMATS)} camera images",
            "unsupported_compressed_format",
        )
    if buf.size == 0:
        raise ImageDecodeError("compressed image has no data (0 bytes)", "corrupt_compressed")
    raw = buf.tobytes()
    try:
        kind, header = sniff(raw)
    except HeaderError as err:
        raise ImageDecodeError(
            f"compressed image of {buf.size} bytes is corrupt: {err}", "corrupt_compressed"
        ) from None
    if header is None:
        raise _refuse_container(fmt, kind, raw[:8])
    what = f"compressed {kind} image"
    _check_dims(header.height, header.width, max_pixels, max_side, what)
    if kind == "jpeg":
        if header.scans == 0:
            raise ImageDecodeError(
                f"{what} of {buf.size} bytes has no image data (no scan after its frame header)", "corrupt_compressed"
            )
        if header.scans > MAX_JPEG_SCANS:
            raise ImageDecodeError(
                f"{what} has {header.scans} scans, more than the {MAX_JPEG_SCANS} accepted (the "
                "decoder would walk the whole image once per scan)",
                "too_many_scans",
            )
    with library_messages() as printed:
        try:
            img = cv2.imdecode(buf, _IMREAD_FLAGS)
            if img is not None and _IMREAD_RGB is None and img.ndim == 3:  # pragma: no cover - OpenCV < 4.10
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            error = None
        except cv2.error as err:
            img, error = None, str(err).strip()
    said = f" ({'; '.join(printed)[:300]})" if printed else ""
    if error is not None or img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        why = f": {error}" if error else " (corrupt or truncated data)"
        raise ImageDecodeError(f"{what} of {buf.size} bytes could not be decoded{why}{said}", "corrupt_compressed")
    if img.shape[:2] != (header.height, header.width):
        raise ImageDecodeError(
            f"{what} decoded to {img.shape[1]} x {img.shape[0]} but its header declares {header.width} x "
            f"{header.height}",
            "corrupt_compressed",
        )
    if printed and warnings is not None:
        warnings.extend(printed)
    return np.ascontiguousarray(img)


def decode_message(msg: Any, max_pixels: int = 0, max_side: int = 0, warnings: list[str] | None = None) -> np.ndarray:
    """Decode an Image (has ``encoding``) or CompressedImage (has ``format``) message object.

    Duck-typed, so rclpy messages, rosbags messages and simple namespaces all work.
    """
    if hasattr(msg, "encoding"):
        return decode_image(
            msg.encoding,
            msg.height,
            msg.width,
            msg.step,
            msg.data,
            getattr(msg, "is_bigendian", 0),
            max_pixels,
            max_side,
        )
    if hasattr(msg, "format"):
        return decode_compressed(msg.format, msg.data, max_pixels, max_side, warnings)
    raise TypeError(
        f"{type(msg).__name__} is neither a sensor_msgs Image (no .encoding) nor a CompressedImage (no .format)"
    )
