"""Tests for vsseg_ros.imaging: raw and compressed image decoding (no ROS needed)."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import vsseg_ros.imaging.decode as decode_mod
from vsseg_ros.imaging.decode import (
    SUPPORTED_COMPRESSED_FORMATS,
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    decode_message,
)
from vsseg_ros.imaging.encode import PADDING_BYTE, encode_compressed, encode_image

H, W = 48, 64
EXACT = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
BAYER = ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
YUV422 = ("yuv422", "yuv422_yuy2", "uyvy", "yuyv")
# Mean absolute error allowed on the smooth gradient (measured: bayer ~0.24, yuv422 ~0.88, nv12 ~1.25).
TOLERANCE = {**{e: 0.5 for e in BAYER}, **{e: 1.5 for e in YUV422}, "nv12": 2.0}


def gradient(h: int = H, w: int = W) -> np.ndarray:
    """A smooth RGB test image with a different ramp in every channel."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (w + h - 2)], axis=-1).astype(
        np.uint8
    )


def grey3(rgb: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.repeat(g[:, :, None], 3, axis=2)


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def check_output(out: np.ndarray, h: int = H, w: int = W) -> None:
    assert out.shape == (h, w, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def test_supported_lists():
    for enc in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", *BAYER, *YUV422, "nv12"):
        assert enc in SUPPORTED_ENCODINGS
    assert SUPPORTED_COMPRESSED_FORMATS == ("jpeg", "png")


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 7])
@pytest.mark.parametrize("enc", EXACT)
def test_round_trip_exact(enc, padding):
    img = gradient()
    data, step = encode_image(img, enc, row_padding=padding)
    bpp = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2}[enc]
    assert step == W * bpp + padding
    assert len(data) == step * H
    out = decode_image(enc, H, W, step, data)
    check_output(out)
    expected = grey3(img) if enc.startswith("mono") else img
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("padding", [0, 6])
@pytest.mark.parametrize("enc", BAYER + YUV422 + ("nv12",))
def test_round_trip_approx(enc, padding):
    img = gradient()
    data, step = encode_image(img, enc, row_padding=padding)
    out = decode_image(enc, H, W, step, data)
    check_output(out)
    err = mae(out, img)
    assert err < TOLERANCE[enc], f"{enc}: mean abs error {err:.2f}"
    # Interior pixels are close too (borders of a demosaic may be a bit off).
    assert np.abs(out.astype(int) - img)[2:-2, 2:-2].max() <= 6


@pytest.mark.parametrize(
    ("enc", "wrong"), [("yuv422", "yuv422_yuy2"), ("yuyv", "uyvy"), ("bayer_rggb8", "bayer_bggr8"), ("bgr8", "rgb8")]
)
def test_tolerance_catches_wrong_layout(enc, wrong):
    """The round-trip tolerances are tight enough to notice a swapped layout."""
    img = gradient()
    data, step = encode_image(img, enc)
    assert mae(decode_image(wrong, H, W, step, data), img) > 10 * TOLERANCE.get(enc, 0.1)


def test_matches_rosbags_image_where_it_works():
    """Same pixels as rosbags-image's own decoder for unpadded frames (it gets nv12 wrong)."""
    image_to_cvimage = pytest.importorskip("rosbags.image").image_to_cvimage
    img = gradient()
    for enc in SUPPORTED_ENCODINGS:
        if enc == "nv12":
            continue
        data, step = encode_image(img, enc)
        msg = SimpleNamespace(
            encoding=enc, height=H, width=W, step=step, is_bigendian=0, data=np.frombuffer(data, np.uint8)
        )
        theirs = image_to_cvimage(msg, "rgb8")
        ours = decode_image(enc, H, W, step, data)
        assert np.abs(ours.astype(int) - theirs).max() <= (1 if enc == "mono16" else 0), enc


def test_fallback_without_rosbags_gives_identical_pixels(monkeypatch):
    img = gradient()
    frames = {enc: encode_image(img, enc, row_padding=3) for enc in SUPPORTED_ENCODINGS}
    with_rosbags = {enc: decode_image(enc, H, W, step, data) for enc, (data, step) in frames.items()}
    monkeypatch.setattr(decode_mod, "_rosbags_convert_color", None)
    for enc, (data, step) in frames.items():
        np.testing.assert_array_equal(decode_image(enc, H, W, step, data), with_rosbags[enc], err_msg=enc)


# --- bayer naming ---------------------------------------------------------------------------------

SOLIDS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def hand_mosaic(pattern: str, colour: tuple[int, int, int], h: int = 8, w: int = 10) -> bytes:
    """Mosaic of a solid colour built straight from the pattern letters (independent of encode.py)."""
    raw = np.zeros((h, w), np.uint8)
    for k, letter in enumerate(pattern):
        dy, dx = divmod(k, 2)
        raw[dy::2, dx::2] = colour["rgb".index(letter)]
    return raw.tobytes()


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("name", list(SOLIDS))
def test_bayer_solid_colour(pattern, name):
    colour = SOLIDS[name]
    out = decode_image(f"bayer_{pattern}8", 8, 10, 10, hand_mosaic(pattern, colour))
    check_output(out, 8, 10)
    assert (out == np.array(colour, np.uint8)).all(), f"{pattern} {name}: got {out[4, 4]}"
    # The encoder mosaics the same way.
    data, _ = encode_image(np.full((8, 10, 3), colour, np.uint8), f"bayer_{pattern}8")
    assert data == hand_mosaic(pattern, colour)


def test_bayer_red_is_not_blue():
    """The rggb/bggr distinction matters: the same red mosaic read as bggr is blue."""
    red = hand_mosaic("rggb", SOLIDS["red"])
    assert tuple(decode_image("bayer_rggb8", 8, 10, 10, red)[3, 3]) == (255, 0, 0)
    assert tuple(decode_image("bayer_bggr8", 8, 10, 10, red)[3, 3]) == (0, 0, 255)


# --- step padding, byte order, buffer types ------------------------------------------------------


def test_step_padding_is_cropped():
    img = gradient(5, 7)
    step = 7 * 3 + 5
    raw = np.full((5, step), 200, np.uint8)
    raw[:, :21] = img.reshape(5, 21)
    out = decode_image("rgb8", 5, 7, step, raw.tobytes())
    check_output(out, 5, 7)
    np.testing.assert_array_equal(out, img)
    data, pstep = encode_image(img, "bgra8", row_padding=9)
    assert pstep == 7 * 4 + 9 and data[28:37] == bytes([PADDING_BYTE]) * 9
    np.testing.assert_array_equal(decode_image("bgra8", 5, 7, pstep, data), img)


def test_rgb8_unpadded_is_zero_copy():
    img = gradient()
    buf = bytearray(img.tobytes())
    out = decode_image("rgb8", H, W, W * 3, buf)
    np.testing.assert_array_equal(out, img)
    buf[0] = 255 - buf[0]
    assert out[0, 0, 0] == buf[0]  # a view of the message buffer, not a copy


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_byte_order(bigendian):
    values = np.array([[0x0000, 0x00FF, 0x0100, 0x1234, 0x7FFF, 0x8000, 0xFF00, 0xFFFF]], np.uint16)
    data = values.astype(">u2" if bigendian else "<u2").tobytes()
    out = decode_image("mono16", 1, 8, 16, data, is_bigendian=int(bigendian))
    check_output(out, 1, 8)
    expected = np.array([0x00, 0x00, 0x01, 0x12, 0x7F, 0x80, 0xFF, 0xFF], np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[0, :, c], expected)
    # Reading with the wrong byte order gives different values (so the flag is really honoured).
    wrong = decode_image("mono16", 1, 8, 16, data, is_bigendian=int(not bigendian))
    assert wrong[0, 1, 0] == 0xFF and wrong[0, 3, 0] == 0x34


def test_mono16_big_endian_padded_round_trip():
    img = gradient()
    data, step = encode_image(img, "mono16", row_padding=4, bigendian=True)
    np.testing.assert_array_equal(decode_image("mono16", H, W, step, data, is_bigendian=1), grey3(img))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "array", "numpy", "list"])
def test_buffer_types(kind):
    img = gradient(4, 6)
    raw = encode_image(img, "bgr8")[0]
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "array": array.array("B", raw),
        "numpy": np.frombuffer(raw, np.uint8).copy(),
        "list": list(raw),
    }[kind]
    np.testing.assert_array_equal(decode_image("bgr8", 4, 6, 18, data), img)


def test_array_array_rgb8_round_trip():
    img = gradient()
    data = array.array("B", img.tobytes())  # what rclpy gives for Image.data
    out = decode_image("rgb8", H, W, W * 3, data)
    check_output(out)
    np.testing.assert_array_equal(out, img)


# --- errors ---------------------------------------------------------------------------------------


def raises_kind(kind: str, fn, *args, **kwargs) -> str:
    with pytest.raises(ImageDecodeError) as info:
        fn(*args, **kwargs)
    assert info.value.kind == kind
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_unknown_encoding_lists_supported():
    msg = raises_kind("unsupported_encoding", decode_image, "rgb16", 2, 2, 12, bytes(24))
    assert "'rgb16'" in msg
    for enc in SUPPORTED_ENCODINGS:
        assert enc in msg


def test_error_kinds_hold_no_value_from_the_message():
    """The node logs once per kind: a kind must be the category, never the offending value."""
    kinds = set()
    for i in range(20):
        with pytest.raises(ImageDecodeError) as info:
            decode_image(f"garbage_{i}" * (i + 1), 2, 2, 6, bytes(12))
        kinds.add(info.value.kind)
        assert f"garbage_{i}" in str(info.value)  # the value is in the message
    assert kinds == {"unsupported_encoding"}


def test_size_mismatch_says_expected_and_got():
    msg = raises_kind("size_mismatch", decode_image, "rgb8", 720, 1280, 3840, bytes(1000))
    assert "2764800" in msg and "1000" in msg and "1280 x 720 x 3" in msg
    # Too many bytes is also a mismatch, and the kind does not depend on the numbers.
    raises_kind("size_mismatch", decode_image, "rgb8", 2, 2, 6, bytes(13))
    raises_kind("size_mismatch", decode_image, "rgb8", 2, 2, 6, list(range(11)))


def test_nv12_size_check():
    img = gradient()
    data, step = encode_image(img, "nv12")
    assert len(data) == W * H * 3 // 2
    msg = raises_kind("size_mismatch", decode_image, "nv12", H, W, step, data[: W * H])
    assert str(W * H * 3 // 2) in msg and str(W * H) in msg
    raises_kind("odd_size", decode_image, "nv12", 3, 4, 4, bytes(4 * 4))
    raises_kind("odd_size", decode_image, "nv12", 4, 3, 3, bytes(3 * 6))


def test_yuv422_needs_even_width():
    raises_kind("odd_size", decode_image, "yuv422", 2, 3, 6, bytes(12))
    raises_kind("odd_size", decode_image, "yuyv", 2, 5, 10, bytes(20))


@pytest.mark.parametrize(("h", "w"), [(0, 4), (4, 0), (0, 0)])
def test_zero_size(h, w):
    raises_kind("zero_size", decode_image, "rgb8", h, w, w * 3, b"")


def test_too_large_names_the_parameter():
    img = gradient()
    data, step = encode_image(img, "rgb8")
    msg = raises_kind("too_large", decode_image, "rgb8", H, W, step, data, max_pixels=H * W - 1)
    assert "max_input_pixels" in msg and str(H * W - 1) in msg and str(H * W) in msg
    # At the limit it is fine; 0 means no limit.
    assert decode_image("rgb8", H, W, step, data, max_pixels=H * W).shape == (H, W, 3)
    assert decode_image("rgb8", H, W, step, data, max_pixels=0).shape == (H, W, 3)


def test_step_too_small():
    msg = raises_kind("step_too_small", decode_image, "bgra8", 2, 4, 12, bytes(24))
    assert "12" in msg and "16" in msg


def test_bad_data_type():
    raises_kind("bad_data", decode_image, "mono8", 1, 2, 2, [1, 300])
    raises_kind("bad_data", decode_image, "mono8", 1, 2, 2, object())


def test_corrupt_jpeg():
    raises_kind("corrupt_compressed", decode_compressed, "jpeg", b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    good = encode_compressed(gradient(), "jpeg")
    raises_kind("corrupt_compressed", decode_compressed, "jpeg", good[: len(good) // 3])
    raises_kind("corrupt_compressed", decode_compressed, "jpeg", b"")


def test_truncated_png():
    good = encode_compressed(gradient(), "png")
    raises_kind("corrupt_compressed", decode_compressed, "png", good[: len(good) - 30])


@pytest.mark.parametrize("fmt", ["tiff", "webp", "16UC1; compressedDepth png", "bgr8; theora"])
def test_unsupported_compressed_format(fmt):
    msg = raises_kind("unsupported_compressed_format", decode_compressed, fmt, b"\x00" * 16)
    assert "jpeg" in msg and "png" in msg


# --- compressed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "JPEG", "rgb8; jpeg compressed bgr8", "bgr8; jpeg compressed bgr8"])
def test_jpeg_round_trip(fmt):
    img = gradient()
    out = decode_compressed(fmt, encode_compressed(img, "jpeg", quality=95))
    check_output(out)
    assert mae(out, img) < 2.0
    assert out[0, -1, 0] > 200 and out[0, -1, 2] < 160  # red ramp goes right, so RGB order is kept


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed", "rgb8; png compressed bgr8", ""])
def test_png_round_trip_is_exact(fmt):
    img = gradient()
    out = decode_compressed(fmt, memoryview(encode_compressed(img, "png")))
    check_output(out)
    np.testing.assert_array_equal(out, img)


def test_grey_png_is_replicated():
    g = np.arange(48, dtype=np.uint8).reshape(6, 8)
    ok, buf = cv2.imencode(".png", g)
    assert ok
    out = decode_compressed("mono8; png compressed mono8", buf)
    check_output(out, 6, 8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_too_large_is_checked_from_the_header(fmt, monkeypatch):
    from vsseg_ros.imaging.sniff import sniff

    data = encode_compressed(gradient(), fmt)
    kind, header = sniff(data)
    assert kind == fmt and (header.width, header.height) == (W, H)

    def no_decoding(*_args):
        raise AssertionError("decoded although the header says it is too large")

    monkeypatch.setattr(decode_mod.cv2, "imdecode", no_decoding)
    msg = raises_kind("too_large", decode_compressed, fmt, data, max_pixels=100)
    assert "max_input_pixels" in msg and "100" in msg


# --- decode_message -------------------------------------------------------------------------------


def test_decode_message_image_and_compressed():
    img = gradient()
    data, step = encode_image(img, "bgr8", row_padding=2)
    msg = SimpleNamespace(encoding="bgr8", height=H, width=W, step=step, is_bigendian=0, data=array.array("B", data))
    np.testing.assert_array_equal(decode_message(msg), img)
    cmsg = SimpleNamespace(format="png", data=encode_compressed(img, "png"))
    np.testing.assert_array_equal(decode_message(cmsg), img)
    with pytest.raises(ImageDecodeError) as info:
        decode_message(msg, max_pixels=10)
    assert info.value.kind == "too_large"
    with pytest.raises(TypeError):
        decode_message(SimpleNamespace(data=b""))


def test_decode_message_big_endian_mono16():
    img = gradient()
    data, step = encode_image(img, "mono16", bigendian=True)
    msg = SimpleNamespace(encoding="mono16", height=H, width=W, step=step, is_bigendian=1, data=data)
    np.testing.assert_array_equal(decode_message(msg), grey3(img))
