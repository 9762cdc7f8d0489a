"""RGB arrays -> raw ``sensor_msgs/Image`` payloads and compressed bytes: the inverse of :mod:`.decode`.

For tests, demos and benchmarks. No ROS imports. Every encoding in
:data:`vsseg_ros.imaging.decode.SUPPORTED_ENCODINGS` is produced:

* ``rgb8``/``bgr8``/``rgba8``/``bgra8``: channel reordering (alpha = 255);
* ``mono8``: OpenCV's RGB -> grey (BT.601 luma); ``mono16``: that grey x 257 (so 255 -> 65535), in the
  byte order chosen by ``bigendian``;
* ``bayer_<pattern>8``: a mosaic that takes, for each pixel, the channel the pattern names at its
  place in the 2x2 cell (``bayer_rggb8``: R at even row/even column, B at odd/odd, G elsewhere);
* ``yuv422``/``uyvy`` (U0 Y0 V0 Y1) and ``yuv422_yuy2``/``yuyv`` (Y0 U0 Y1 V0): OpenCV's BT.601
  RGB -> YUV 4:2:2 packing, the same conversion OpenCV's decoder inverts (even width needed);
* ``nv12``: OpenCV's BT.601 RGB -> I420, with the U and V planes interleaved into one UV plane
  (even width and height needed).
"""

from __future__ import annotations

import cv2
import numpy as np

from .decode import SUPPORTED_ENCODINGS, ImageDecodeError, _compressed_kind, _normalise

__all__ = ["PADDING_BYTE", "encode_compressed", "encode_image"]

#: Value written into row padding, deliberately non-zero so that a decoder that forgets to crop it
#: produces visibly wrong pixels in tests.
PADDING_BYTE = 0xA5

_CHANNEL = {"r": 0, "g": 1, "b": 2}


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {rgb.shape}")
    return rgb


def _bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    out = np.empty((h, w), np.uint8)
    for k, letter in enumerate(pattern):  # the four cells of the 2x2 pattern, row-major
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, _CHANNEL[letter]]
    return out


def _nv12(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y (h x w), U (h/2 x w/2), V (h/2 x w/2)
    chroma = i420[h:].reshape(-1)
    quarter = (h // 2) * (w // 2)
    out = np.empty((h + h // 2, w), np.uint8)
    out[:h] = i420[:h]
    uv = out[h:]
    uv[:, 0::2] = chroma[:quarter].reshape(h // 2, w // 2)
    uv[:, 1::2] = chroma[quarter:].reshape(h // 2, w // 2)
    return out


def _planar_rows(rgb: np.ndarray, enc: str, bigendian: bool) -> np.ndarray:
    """The image as a 2-D uint8 array of unpadded rows."""
    h, w = rgb.shape[:2]
    if enc == "rgb8":
        px = rgb
    elif enc == "bgr8":
        px = rgb[..., ::-1]
    elif enc in ("rgba8", "bgra8"):
        px = np.empty((h, w, 4), np.uint8)
        px[..., :3] = rgb if enc == "rgba8" else rgb[..., ::-1]
        px[..., 3] = 255
    elif enc == "mono8":
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif enc == "mono16":
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * np.uint16(257)
        px = grey.astype(">u2" if bigendian else "<u2").view(np.uint8)
    elif enc.startswith("bayer_"):
        px = _bayer(rgb, enc[len("bayer_") : -1])
    elif enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        if w % 2:
            raise ValueError(f"{enc} needs an even width, got {w}")
        code = cv2.COLOR_RGB2YUV_UYVY if enc in ("yuv422", "uyvy") else cv2.COLOR_RGB2YUV_YUYV
        px = cv2.cvtColor(np.ascontiguousarray(rgb), code)
    elif enc == "nv12":
        if w % 2 or h % 2:
            raise ValueError(f"nv12 needs an even width and height, got {w} x {h}")
        px = _nv12(np.ascontiguousarray(rgb))
    else:  # pragma: no cover - guarded by the caller
        raise AssertionError(enc)
    px = np.ascontiguousarray(px)
    return px.reshape(px.shape[0], -1)


def encode_image(rgb: np.ndarray, encoding: str, row_padding: int = 0, bigendian: bool = False) -> tuple[bytes, int]:
    """Encode an HxWx3 uint8 RGB array as ``sensor_msgs/Image`` data; returns ``(data, step)``.

    ``row_padding`` extra bytes (value :data:`PADDING_BYTE`) are appended to every row, so
    ``step = width * bytes_per_pixel + row_padding`` (for nv12 the UV rows are padded the same way).
    ``bigendian`` only matters for ``mono16``; pass the same value as the message's ``is_bigendian``.
    """
    rgb = _check_rgb(rgb)
    enc = _normalise(encoding)
    if enc not in SUPPORTED_ENCODINGS:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported encodings are: {', '.join(SUPPORTED_ENCODINGS)}",
            "unsupported_encoding",
        )
    if row_padding < 0:
        raise ValueError(f"row_padding must be >= 0, got {row_padding}")
    rows = _planar_rows(rgb, enc, bigendian)
    if row_padding:
        padded = np.full((rows.shape[0], rows.shape[1] + row_padding), PADDING_BYTE, np.uint8)
        padded[:, : rows.shape[1]] = rows
        rows = padded
    return rows.tobytes(), int(rows.shape[1])


def encode_compressed(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encode an HxWx3 uint8 RGB array as ``CompressedImage`` data in ``fmt`` (jpeg or png).

    ``fmt`` accepts the same strings as the decoder ("jpeg", "jpg", "png", "rgb8; jpeg compressed
    bgr8", ...). ``quality`` is the JPEG quality (0-100); PNG is lossless and ignores it.
    """
    rgb = _check_rgb(rgb)
    kind = _compressed_kind(fmt)
    if kind is None:
        raise ImageDecodeError(
            f"unsupported compressed image format {fmt!r}; supported are jpeg, png", "unsupported_compressed_format"
        )
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if kind == "jpeg":
        ok, out = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, out = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV failure
        raise RuntimeError(f"OpenCV could not encode a {kind} image of shape {rgb.shape}")
    return out.tobytes()
