"""Property-based fuzzing of the node's two decoders with hypothesis: random ``sensor_msgs/Image`` field
combinations and ``CompressedImage`` formats and byte strings (random, and valid JPEG/PNG files mutated: bytes
flipped, cut, inserted, frame sizes rewritten) either decode to an array of the declared size or raise
:class:`ImageDecodeError`; never another exception.

The strategies and properties are used by the tests (a bounded, derandomized number of examples) and by
``vsseg-ros fuzz-decoders --examples 10000`` (:func:`fuzz_report`), which also measures each decode's own peak
RSS growth (the peak is reset before every call, ``/proc/self/clear_refs``) and reports the largest: with the
limits used here (1 Mpixel, 4096 per side) no message may cost more than :data:`BOUND_MB`. (Not the run's own
peak: that also holds what hypothesis keeps of every example it generated, hundreds of MB over 10,000.)
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from typing import Any, Callable, Optional

import numpy as np

from vsseg_ros.bench.memory import peak_rss_mb, reset_peak_rss, rss_mb

MAX_PIXELS = 1 << 20
MAX_SIDE = 4096
BOUND_MB = 100.0  # peak RSS growth allowed for one decode


class PeakProbe:
    """Each decode's own peak RSS growth: the kernel's peak (VmHWM) is reset to the current RSS before the call
    and read after it. The largest growth seen, and the message that caused it."""

    def __init__(self) -> None:
        self.max_mb = 0.0
        self.worst = ""
        self.enabled = reset_peak_rss() and rss_mb() is not None  # not Linux, or no permission: nothing measured

    def __call__(self, fn: Callable[[], Any], describe: Callable[[], str]) -> Any:
        if not self.enabled:
            return fn()
        reset_peak_rss()
        before = rss_mb() or 0.0
        try:
            return fn()
        finally:
            growth = (peak_rss_mb() or 0.0) - before
            if growth > self.max_mb:
                self.max_mb, self.worst = growth, describe()


_NO_PROBE = lambda fn, _describe: fn()  # noqa: E731


def _hypothesis():
    try:
        import hypothesis
        from hypothesis import strategies as st
    except ImportError as err:  # pragma: no cover - it is in requirements.txt
        raise SystemExit(f"fuzzing needs hypothesis (pip install hypothesis): {err}") from None
    return hypothesis, st


# ---- raw Image ------------------------------------------------------------------------------------
def image_fields():
    """A strategy of dicts with the Image fields (encoding, height, width, step, data, is_bigendian): half of
    them consistent (the right number of bytes for the size, sometimes padded), half anything."""
    _, st = _hypothesis()
    from vsseg_ros.imaging.decode import SUPPORTED_ENCODINGS, bytes_per_pixel

    known = st.sampled_from(SUPPORTED_ENCODINGS)
    encodings = st.one_of(
        known,
        known,
        known,
        st.sampled_from([e.upper() for e in SUPPORTED_ENCODINGS]),
        st.text(max_size=24),
        st.sampled_from(["", "16UC1", "32FC1", "bgr16", "rgba16"]),
    )
    dims = st.one_of(st.integers(0, 64), st.integers(-3, 3), st.integers(0, 5000), st.integers(0, 2**32 - 1))

    @st.composite
    def fields(draw):
        consistent = draw(st.booleans())
        enc = draw(known if consistent else encodings)
        h, w = draw(dims), draw(dims)
        try:
            bpp = bytes_per_pixel(enc)
        except KeyError:
            bpp = draw(st.integers(1, 4))
        if consistent and 0 < h <= 64 and 0 < w <= 64:
            step = w * bpp + draw(st.integers(0, 8))
            rows = h + h // 2 if str(enc).strip().lower() == "nv12" else h
            data = draw(st.binary(min_size=step * rows, max_size=step * rows))
        else:
            step = draw(st.one_of(st.integers(-4, 400), st.integers(0, 2**32 - 1), st.just(max(w, 0) * bpp)))
            data = draw(st.binary(max_size=4096))
        return {
            "encoding": enc,
            "height": h,
            "width": w,
            "step": step,
            "data": data,
            "is_bigendian": draw(st.integers(0, 255)),
        }

    return fields()


def check_image(fields: dict[str, Any], stats: Counter, probe: Callable[..., Any] = _NO_PROBE) -> None:
    """The property: an array of exactly the declared size, or ImageDecodeError."""
    from vsseg_ros.imaging.decode import ImageDecodeError, decode_image

    try:
        out = probe(
            lambda: decode_image(
                fields["encoding"],
                fields["height"],
                fields["width"],
                fields["step"],
                fields["data"],
                fields["is_bigendian"],
                max_pixels=MAX_PIXELS,
                max_side=MAX_SIDE,
            ),
            lambda: repr({k: (v if k != "data" else f"{len(v)} bytes") for k, v in fields.items()}),
        )
    except ImageDecodeError as err:
        stats[f"refused:{err.kind}"] += 1
        return
    assert out.shape == (fields["height"], fields["width"], 3) and out.dtype == np.uint8, out.shape
    assert out.flags.c_contiguous
    stats["decoded"] += 1


# ---- CompressedImage ------------------------------------------------------------------------------
def _seeds() -> list[bytes]:
    """Small valid files of each kind the decoder meets: JPEG baseline / progressive / grey, PNG RGB / grey /
    16-bit RGBA / interlaced / palette-depth grey."""
    import cv2

    from vsseg_ros.hostile.images import flat_png, with_exif_orientation

    y, x = np.mgrid[0:24, 0:32]
    bgr = np.stack([x * 8, y * 10, (x + y) * 4], -1).astype(np.uint8)
    grey = bgr[..., 0].copy()
    enc = lambda ext, img, *p: cv2.imencode(ext, img, list(p))[1].tobytes()  # noqa: E731
    jpeg = enc(".jpg", bgr)
    return [
        jpeg,
        enc(".jpg", bgr, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        enc(".jpg", grey),
        with_exif_orientation(jpeg, 6),
        enc(".png", bgr),
        enc(".png", grey),
        enc(".png", (bgr.astype(np.uint16) * 257)),
        flat_png(19, 13, 16, 6, interlaced=True),
        flat_png(40, 9, 1, 0),
        flat_png(7, 5, 4, 3),
    ]


def compressed_fields():
    """A strategy of (format, data): random bytes, other formats' magic numbers, and valid seeds mutated."""
    _, st = _hypothesis()
    from vsseg_ros.imaging.sniff import JPEG_SOF

    seeds = _seeds()
    formats = st.one_of(
        st.sampled_from(
            [
                "jpeg",
                "png",
                "",
                "jpg",
                "rgb8; jpeg compressed bgr8",
                "bgr8; png compressed",
                "16UC1; compressedDepth png",
                "tiff",
                "webp",
            ]
        ),
        st.text(max_size=30),
    )
    magics = [
        b"\xff\xd8\xff",
        b"\x89PNG\r\n\x1a\n",
        b"RIFF\x00\x00\x00\x00WEBP",
        b"BM",
        b"II*\x00",
        b"GIF89a",
        b"P6\n",
        b"\xff\x4f\xff\x51",
        b"v/1\x01",
        b"#?RADIANCE\n",
        b"\x00\x00\x00\x1cftypavif",
    ]

    def set_size(data: bytearray, w: int, h: int) -> None:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
            struct.pack_into(">II", data, 16, w & 0xFFFFFFFF, h & 0xFFFFFFFF)
            return
        for i in range(2, len(data) - 8):
            if data[i] == 0xFF and data[i + 1] in JPEG_SOF:
                struct.pack_into(">HH", data, i + 5, h & 0xFFFF, w & 0xFFFF)
                return

    @st.composite
    def mutated(draw):
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "size", "repeat", "zero"]))
            n = len(data)
            if n == 0:
                break
            at = draw(st.integers(0, n - 1))
            if op == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "cut":
                del data[at:]
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            elif op == "size":
                set_size(
                    data,
                    draw(st.one_of(st.integers(0, 70), st.integers(0, 70000), st.integers(0, 2**32 - 1))),
                    draw(st.one_of(st.integers(0, 70), st.integers(0, 70000), st.integers(0, 2**32 - 1))),
                )
            elif op == "repeat":
                end = min(n, at + draw(st.integers(1, 200)))
                data[at:at] = bytes(data[at:end]) * draw(st.integers(1, 20))
            else:
                data[at : at + draw(st.integers(1, 64))] = bytes(min(64, n - at))
        return bytes(data)

    data = st.one_of(
        st.binary(max_size=2048),
        st.builds(lambda m, tail: m + tail, st.sampled_from(magics), st.binary(max_size=512)),
        mutated(),
        mutated(),
    )
    return st.tuples(formats, data)


def check_compressed(fmt: str, data: bytes, stats: Counter, probe: Callable[..., Any] = _NO_PROBE) -> None:
    """The property: an array of exactly the size the bytes' header declares, or ImageDecodeError."""
    from vsseg_ros.imaging.decode import ImageDecodeError, decode_compressed
    from vsseg_ros.imaging.sniff import sniff

    try:
        out = probe(
            lambda: decode_compressed(fmt, data, max_pixels=MAX_PIXELS, max_side=MAX_SIDE),
            lambda: f"format {fmt!r}, {len(data)} bytes starting {data[:24].hex(' ')}",
        )
    except ImageDecodeError as err:
        stats[f"refused:{err.kind}"] += 1
        return
    header = sniff(data)[1]
    assert out.shape == (header.height, header.width, 3) and out.dtype == np.uint8, (out.shape, header)
    assert header.width * header.height <= MAX_PIXELS and max(header.width, header.height) <= MAX_SIDE
    stats[f"decoded:{header.format}"] += 1


# ---- running --------------------------------------------------------------------------------------
def settings(examples: int):
    hypothesis, _ = _hypothesis()
    from hypothesis import HealthCheck

    return hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def fuzz(examples: int) -> dict[str, Any]:
    """Run both properties for ``examples`` generated messages each; raises what a property raises."""
    hypothesis, _ = _hypothesis()
    results: dict[str, Any] = {}
    cases: dict[str, tuple[Any, Callable[..., Any]]] = {
        "Image": (image_fields(), lambda stats, probe: lambda f: check_image(f, stats, probe)),
        "CompressedImage": (
            compressed_fields(),
            lambda stats, probe: lambda fd: check_compressed(fd[0], fd[1], stats, probe),
        ),
    }
    from tqdm import tqdm

    for name, (strategy, make) in tqdm(cases.items(), desc="fuzz decoders", unit="decoder"):
        stats: Counter = Counter()
        probe = PeakProbe()
        t0 = time.perf_counter()
        hypothesis.given(strategy)(settings(examples)(make(stats, probe)))()
        results[name] = {
            "examples": sum(stats.values()),
            "seconds": time.perf_counter() - t0,
            "outcomes": dict(sorted(stats.items())),
            "max_decode_rss_growth_mb": probe.max_mb,
            "worst_message": probe.worst,
            "measured": probe.enabled,
        }
    return results


def fuzz_report(examples: int) -> dict[str, Any]:
    """:func:`fuzz` as a report: per decoder its counts, the largest peak RSS growth of one decode against
    :data:`BOUND_MB`, and ``error`` (an unexpected exception, whose falsifying example hypothesis has printed)."""
    try:
        results = fuzz(examples)
        error: Optional[str] = None
    except Exception as err:  # an unexpected exception: hypothesis has printed the falsifying example
        results, error = {}, f"{type(err).__name__}: {err}"
    worst = max((r["max_decode_rss_growth_mb"] for r in results.values()), default=0.0)
    return {
        "examples_per_decoder": examples,
        "max_pixels": MAX_PIXELS,
        "max_side": MAX_SIDE,
        "decoders": results,
        "max_decode_rss_growth_mb": worst,
        "bound_mb": BOUND_MB,
        "error": error,
    }
