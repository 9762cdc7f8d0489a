"""The multi-camera launch file's rules (as a function, no launch needed) and the 4-camera parameters example."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rosutil import needs_ros

ROOT = Path(__file__).resolve().parents[1]


def test_multi_camera_launch_settings():
    from vsseg_ros.ros.launch_args import multi_camera_settings, parse_topics

    assert (
        parse_topics("/a/image_raw, /b/image_raw")
        == parse_topics("['/a/image_raw', '/b/image_raw']")
        == ["/a/image_raw", "/b/image_raw"]
    )
    assert parse_topics("") == parse_topics("[]") == []
    s = multi_camera_settings({}, "/share/multi.yaml")
    assert s["parameters"] == ["/share/multi.yaml"] and s["remappings"] == []  # the file's cameras
    s = multi_camera_settings({"image_topics": "/f/image_raw,/r/image_raw", "device": "cuda:0"}, "/m.yaml")
    assert s["parameters"] == ["/m.yaml", {"device": "cuda:0", "image_topics": ["/f/image_raw", "/r/image_raw"]}]
    with pytest.raises(ValueError, match="unknown"):
        multi_camera_settings({"image_topic": "/x"}, "/m.yaml")  # the single-camera argument is not taken


@needs_ros
def test_the_four_camera_example_is_valid():
    from vsseg_ros.ros.params import PARAMS_BY_NAME

    values = yaml.safe_load((ROOT / "config" / "multi_camera.yaml").read_text())["/**"]["ros__parameters"]
    assert len(values["image_topics"]) == 4
    for name, value in values.items():
        assert PARAMS_BY_NAME[name].validate(value) is None, name
    assert "twice" in PARAMS_BY_NAME["image_topics"].validate(["/a/image", "/a/image"])
    assert "strings" in PARAMS_BY_NAME["image_topics"].validate([1, 2])
