"""Decode ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` payloads into RGB arrays.

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
``unsupported_encoding:<encoding>``    ``Image.encoding`` is not in :data:`SUPPORTED_ENCODINGS`
``odd_size``                           yuv422 / nv12 frame with an odd width (nv12: or height)
``step_too_small``                     ``step`` is less than width x bytes per pixel
``size_mismatch``                      ``len(data)`` differs from what step and height require
``bad_data``                           ``data`` is not a byte buffer / sequence of bytes
``unsupported_compressed_format``      ``CompressedImage.format`` names neither jpeg nor png
``corrupt_compressed``                 the compressed bytes are empty, corrupt or truncated
=====================================  ==========================================================

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

import struct

import cv2
import numpy as np

try:  # optional: rosbags-image is not a rosdep key
    from rosbags.image.image import convert_color as _rosbags_convert_color
except ImportError:  # pragma: no cover - depends on the environment
    _rosbags_convert_color = None

__all__ = [
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
SUPPORTED_COMPRESSED_FORMATS = ("jpeg", "png")

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

_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (SOF0..SOF15 without DHT C4, JPG C8 and DAC CC).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class ImageDecodeError(ValueError):
    """An image message that cannot be decoded.

    ``kind`` is a short stable key for the category of problem (no per-frame numbers in it), e.g.
    ``"size_mismatch"`` or ``"unsupported_encoding:rgb16"``; ``str(err)`` is the full human message.
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


def _as_bytes_array(data) -> np.ndarray:
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
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        pass
    try:  # a list/tuple of ints, say
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise ImageDecodeError(
            f"image data of type {type(data).__name__} is not a byte buffer or a sequence of bytes ({err})",
            "bad_data",
        ) from None


def _check_dims(height: int, width: int, max_pixels: int, what: str) -> None:
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


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data,
    is_bigendian: int = 0,
    max_pixels: int = 0,
) -> np.ndarray:
    """Decode raw ``sensor_msgs/Image`` fields into a C-contiguous HxWx3 uint8 RGB array.

    ``data`` may be ``bytes``, ``bytearray``, ``memoryview``, ``array.array('B')`` (rclpy) or a uint8
    numpy array (rosbags); it is wrapped without copying. Rows may be padded (``step`` larger than
    width x bytes per pixel); the padding is cropped. ``max_pixels`` > 0 rejects frames with more
    pixels (the node's ``max_input_pixels``).

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
    height, width, step = int(height), int(width), int(step)
    _check_dims(height, width, max_pixels, f"{encoding!s} image")
    enc = _normalise(encoding)
    bpp = _BPP.get(enc)
    if bpp is None:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported encodings are: "
            f"{', '.join(SUPPORTED_ENCODINGS)}",
            "unsupported_encoding:" + str(encoding)[:40],
        )
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
            raise ImageDecodeError(_size_message(enc, width, height, bpp, step, rows, expected, len(data)),
                                   "size_mismatch")
    buf = _as_bytes_array(data)
    if buf.size != expected:
        raise ImageDecodeError(_size_message(enc, width, height, bpp, step, rows, expected, buf.size),
                               "size_mismatch")

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


def _size_message(enc: str, width: int, height: int, bpp: int, step: int, rows: int, expected: int,
                  got: int) -> str:
    if enc == "nv12":
        layout = f"nv12 {width} x {height} (width x height; Y plane plus half-height UV plane = {rows} rows)"
    else:
        layout = f"{enc} {width} x {height} x {bpp} (width x height x bytes per pixel)"
    return (f"image data size mismatch: {layout} with step {step} needs step x rows = {step} x {rows} = "
            f"{expected} bytes, got {got}")


def _compressed_kind(fmt: str, data: np.ndarray | None = None) -> str | None:
    """'jpeg', 'png' or None for a CompressedImage.format string (short or image_transport long form)."""
    f = str(fmt).strip().lower()
    if "compresseddepth" in f:
        return None
    if "jpeg" in f or "jpg" in f:
        return "jpeg"
    if "png" in f:
        return "png"
    if not f and data is not None:  # format left empty by the publisher: trust the magic bytes
        head = data[:8].tobytes()
        if head.startswith(b"\xff\xd8"):
            return "jpeg"
        if head == _PNG_MAGIC:
            return "png"
    return None


def _peek_size(kind: str, buf: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or JPEG SOF header, or None if it cannot be read cheaply."""
    n = buf.size
    try:
        if kind == "png":
            if n >= 24 and buf[:8].tobytes() == _PNG_MAGIC and buf[12:16].tobytes() == b"IHDR":
                return struct.unpack_from(">II", buf, 16)
            return None
        if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
            return None
        i = 2
        for _ in range(512):  # segments before the frame header; real files have a few dozen at most
            if i + 4 > n or buf[i] != 0xFF:
                return None
            marker = int(buf[i + 1])
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _JPEG_SOF:
                if i + 9 > n:
                    return None
                h, w = struct.unpack_from(">HH", buf, i + 5)
                return w, h
            if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
                i += 2
                continue
            if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
                return None
            (seg_len,) = struct.unpack_from(">H", buf, i + 2)
            i += 2 + seg_len
    except (struct.error, IndexError, ValueError):
        return None
    return None


def decode_compressed(fmt: str, data, max_pixels: int = 0) -> np.ndarray:
    """Decode ``sensor_msgs/CompressedImage`` bytes into a C-contiguous HxWx3 uint8 RGB array.

    ``fmt`` is the message's ``format``: ``"jpeg"``, ``"jpg"``, ``"png"`` or image_transport's long
    form such as ``"rgb8; jpeg compressed bgr8"`` or ``"bgr8; png compressed"`` (an empty format is
    resolved from the magic bytes). ``compressedDepth`` payloads are rejected. Grey, 16-bit and RGBA
    PNGs are converted to 8-bit RGB (OpenCV's IMREAD_COLOR rules: 16 bits keep the high byte, alpha
    is dropped). The frame size is read from the PNG/JPEG header and checked against ``max_pixels``
    before decoding, then checked again on the decoded image.
    """
    buf = _as_bytes_array(data)
    kind = _compressed_kind(fmt, buf)
    if kind is None:
        raise ImageDecodeError(
            f"unsupported compressed image format {fmt!r}; supported are "
            f"{', '.join(SUPPORTED_COMPRESSED_FORMATS)} (also in image_transport's long form, "
            f"e.g. 'rgb8; jpeg compressed bgr8'); compressedDepth is not supported",
            "unsupported_compressed_format",
        )
    if buf.size == 0:
        raise ImageDecodeError(f"compressed {kind} image has no data (0 bytes)", "corrupt_compressed")
    size = _peek_size(kind, buf)
    if size is not None:
        _check_dims(size[1], size[0], max_pixels, f"compressed {kind} image")
    try:
        if _IMREAD_RGB is not None:
            img = cv2.imdecode(buf, _IMREAD_RGB)
        else:  # pragma: no cover - OpenCV < 4.10
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            if img is not None:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    except cv2.error as err:
        raise ImageDecodeError(
            f"compressed {kind} image of {buf.size} bytes could not be decoded: {str(err).strip()}",
            "corrupt_compressed",
        ) from None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ImageDecodeError(
            f"compressed {kind} image of {buf.size} bytes could not be decoded (corrupt or truncated data)",
            "corrupt_compressed",
        )
    _check_dims(img.shape[0], img.shape[1], max_pixels, f"compressed {kind} image")
    return np.ascontiguousarray(img)


def decode_message(msg, max_pixels: int = 0) -> np.ndarray:
    """Decode an Image (has ``encoding``) or CompressedImage (has ``format``) message object.

    Duck-typed, so rclpy messages, rosbags messages and simple namespaces all work.
    """
    if hasattr(msg, "encoding"):
        return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                            getattr(msg, "is_bigendian", 0), max_pixels)
    if hasattr(msg, "format"):
        return decode_compressed(msg.format, msg.data, max_pixels)
    raise TypeError(f"{type(msg).__name__} is neither a sensor_msgs Image (no .encoding) "
                    f"nor a CompressedImage (no .format)")
