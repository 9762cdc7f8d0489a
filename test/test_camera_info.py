"""camera_info beside the masks, without a node: the stamp cache (exact, and nearest within the slop), the
scaling image_proc's resize does, the once-per-camera warnings, and the message_filters path where it is
installed."""

from __future__ import annotations

import importlib.util

import pytest

from rosutil import needs_ros
from vsseg_ros.ros.camera_info import StampCache, scaled_intrinsics

MS = 1_000_000


def test_stamp_cache_exact_and_within_the_slop() -> None:
    exact = StampCache(0, keep=3)
    for s in (10, 20, 30, 40):
        exact.add(s * MS, s)
    assert len(exact) == 3 and exact.match(10 * MS) is None  # only the last 3 stamps are kept
    assert exact.match(30 * MS) == 30 and exact.match(31 * MS) is None
    assert exact.offset_ns(33 * MS) == -3 * MS
    slop = StampCache(4 * MS)
    for s in (10, 20, 30):
        slop.add(s * MS, s)
    assert slop.match(23 * MS) == 20 and slop.match(27 * MS) == 30 and slop.match(25 * MS) is None
    assert slop.match(15 * MS) is None and slop.match(36 * MS) is None


def test_scaled_intrinsics_follow_image_proc_resize() -> None:
    k = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 320.0, -60.0, 0.0, 510.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    k2, p2 = scaled_intrinsics(k, p, 0.5, 0.25)
    assert k2 == [250.0, 0.0, 160.0, 0.0, 127.5, 60.0, 0.0, 0.0, 1.0]
    assert p2 == [250.0, 0.0, 160.0, -30.0, 0.0, 127.5, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@needs_ros
def test_matcher_publishes_with_the_mask_header_scales_and_warns_once() -> None:
    from std_msgs.msg import Header

    from vsseg_ros.ros.camera_info import UNMATCHED_FRAMES, CameraInfoMatcher
    from vsseg_ros.ros.node_client import make_camera_info

    def header(stamp_ns: int) -> Header:
        h = Header(frame_id="cam")
        h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return h

    warnings: list[str] = []
    m = CameraInfoMatcher("/cam/camera_info", "/cam/image_raw", 0, warnings.append)
    for i in range(UNMATCHED_FRAMES):  # no camera_info at all
        assert m.for_mask(header(i * MS), (48, 64), (48, 64)) is None
    assert len(warnings) == 1 and "no camera_info on /cam/camera_info" in warnings[0]
    m.on_message(make_camera_info(64, 48, 100 * MS, "cam"))
    out = m.for_mask(header(100 * MS), (48, 64), (24, 16))  # maps at a 16x24 network size
    assert out.header == header(100 * MS) and (out.width, out.height) == (16, 24)
    assert out.k[0] == pytest.approx(100.0 * 16 / 64) and out.k[4] == pytest.approx(110.0 * 24 / 48)
    assert out.p[3] == pytest.approx(-12.0 * 16 / 64) and out.p[6] == pytest.approx((48 - 1) / 2.0 * 0.5)
    m.on_message(make_camera_info(640, 480, 200 * MS, "cam"))  # not the frames' resolution
    m.for_mask(header(200 * MS), (48, 64), (48, 64))
    m.for_mask(header(200 * MS), (48, 64), (48, 64))
    assert len(warnings) == 2 and "640x480" in warnings[1] and "64x48" in warnings[1]

    # a camera_info that comes after its frame's mask went out (the driver published the image first)
    assert m.for_mask(header(300 * MS), (48, 64), (48, 64)) is None
    late_info = m.on_message(make_camera_info(64, 48, 300 * MS, "cam"))
    assert late_info is not None and late_info.header == header(300 * MS)
    assert m.on_message(make_camera_info(64, 48, 400 * MS, "cam")) is None  # no mask waits for this one

    never: list[str] = []
    late = CameraInfoMatcher("/c2/camera_info", "/c2/image_raw", 0, never.append)
    for i in range(UNMATCHED_FRAMES + 3):  # camera_info always 7 ms after the frame
        late.on_message(make_camera_info(64, 48, i * 100 * MS + 7 * MS, "c2"))
        assert late.for_mask(header(i * 100 * MS), (48, 64), (48, 64)) is None
    assert len(never) == 1 and "never match" in never[0] and "+7.0" in never[0]
    slop = CameraInfoMatcher("/c3/camera_info", "/c3/image_raw", 10 * MS, never.append)
    slop.on_message(make_camera_info(64, 48, 107 * MS, "c3"))
    assert slop.for_mask(header(100 * MS), (48, 64), (48, 64)).header == header(100 * MS)


@pytest.mark.skipif(
    importlib.util.find_spec("message_filters") is None,
    reason="message_filters is not installable here (not on PyPI); the node uses the ROS-free StampCache, tested above",
)
def test_message_filters_cache_matches_like_the_stamp_cache() -> None:
    from vsseg_ros.ros.camera_info import MessageFiltersCache, stamp_ns
    from vsseg_ros.ros.node_client import make_camera_info

    for slop in (0, 4 * MS):
        ours, theirs = StampCache(slop), MessageFiltersCache(slop)
        for s in (10, 20, 30):
            msg = make_camera_info(64, 48, s * MS, "cam")
            ours.add(stamp_ns(msg.header), msg)
            theirs.add(stamp_ns(msg.header), msg)
        for t in (10, 12, 20, 23, 27, 31, 45):
            assert ours.match(t * MS) is theirs.match(t * MS)
