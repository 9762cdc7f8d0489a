"""Bags without ROS: make-bag -> read back (mcap and sqlite3), other distros' bags, and what a bad bag does."""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from vsseg_ros.bags.bagfile import BagError, BagWarning
from vsseg_ros.bags.calibration import CameraCalibration
from vsseg_ros.bags.cdr import header_of
from vsseg_ros.bags.masks import BagMasks
from vsseg_ros.bags.raw_writer import RawBagWriter
from vsseg_ros.bags.reader import BagFrames
from vsseg_ros.bags.score import score_outputs
from vsseg_ros.bags.typestore import typestore_for
from vsseg_ros.bags.writer import write_bag
from vsseg_ros.bags.writing import BagWriteError
from vsseg_ros.data.sources import LabelledFrame, dataset_frames

SHARED_CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/camvid"
START = 1_700_000_000 * 10**9
H, W = 24, 32


def _frames(n: int = 6, sequences=("seqA",), label_every: int = 2, seed: int = 0) -> list[LabelledFrame]:
    rng = np.random.default_rng(seed)
    out = []
    for seq in sequences:
        for i in range(n):
            image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            label = None
            if i % label_every == 0:
                label = rng.integers(0, 11, (H, W)).astype(np.uint8)
                label[0] = 255
            out.append(
                LabelledFrame(
                    image=image,
                    label=label,
                    stamp_ns=i * 66_666_667,
                    camera_id=seq,
                    sequence=seq,
                    name=f"{seq}_{i:05d}",
                )
            )
    return out


def _same(a: LabelledFrame, b: LabelledFrame) -> bool:
    labels = (a.label is None and b.label is None) or (
        a.label is not None and b.label is not None and np.array_equal(a.label, b.label)
    )
    return np.array_equal(a.image, b.image) and labels


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_frames_read_back_identically_with_stamps_names_and_sequences(tmp_path, storage):
    frames = _frames(sequences=("seqA", "seqB"))
    summary = write_bag(tmp_path / "bag", frames, None, storage, start_ns=START)
    assert summary.frames == 12 and summary.labelled == 6 and summary.sequences == ["seqA", "seqB"]
    assert summary.topics == {"/camera/image_raw": 12, "/camera/camera_info": 12, "/camera/semantic_gt": 6}
    bag = BagFrames(tmp_path / "bag")
    assert bag.storage == storage and bag.gt_topic == "/camera/semantic_gt" and len(bag) == 12
    back = list(bag)
    assert len(back) == 12 and all(_same(a, b) for a, b in zip(frames, back))
    assert [b.name for b in back] == [f.name for f in frames]
    assert [b.sequence for b in back] == [f.sequence for f in frames]
    assert {b.camera_id for b in back} == {"seqA", "seqB"}  # frame_id defaults to each frame's camera_id
    stamps = [b.stamp_ns for b in back]
    assert stamps[0] == START and np.diff(stamps[:6]).tolist() == [66_666_667] * 5  # the source's own spacing
    assert stamps[6] - stamps[5] == 1_000_000_000 + 66_666_667 or stamps[6] - stamps[5] >= 1_000_000_000
    assert bag.gt_report.matched == 6 and bag.gt_report.unmatched == 0


def test_rate_restamps_evenly_and_compressed_frames_decode(tmp_path):
    frames = _frames(n=4)
    write_bag(tmp_path / "png", frames, 10.0, "mcap", encoding="png", start_ns=START, frame_id="cam0")
    bag = BagFrames(tmp_path / "png")
    assert bag.image_topic == "/camera/image_raw/compressed" and bag.compressed
    back = list(bag)
    assert [b.stamp_ns - START for b in back] == [0, 100_000_000, 200_000_000, 300_000_000]
    assert all(_same(a, b) for a, b in zip(frames, back))  # png is lossless
    assert {b.camera_id for b in back} == {"cam0"}
    y, x = np.mgrid[0:H, 0:W]
    smooth = np.stack([x * 8, y * 10, np.full_like(x, 200)], -1).astype(np.uint8)  # jpeg keeps smooth images
    frames[0] = LabelledFrame(image=smooth, label=frames[0].label, stamp_ns=0, sequence="seqA", name="smooth")
    write_bag(tmp_path / "jpeg", frames, 10.0, "sqlite3", encoding="jpeg", start_ns=START)
    back = list(BagFrames(tmp_path / "jpeg", image_topic="/camera/image_raw"))  # finds .../compressed
    assert np.abs(back[0].image.astype(int) - smooth.astype(int)).mean() < 4  # lossy, but RGB in RGB order
    assert np.array_equal(back[0].label, frames[0].label)  # ground truth is never compressed


@pytest.mark.parametrize("encoding", ["bgr8", "yuv422", "bayer_rggb8"])
def test_other_raw_encodings_decode_to_rgb(tmp_path, encoding):
    flat = [LabelledFrame(image=np.full((H, W, 3), (200, 40, 10), np.uint8), label=None, stamp_ns=0, name="x")]
    write_bag(tmp_path / "b", flat, 5.0, encoding=encoding, start_ns=START)
    (back,) = list(BagFrames(tmp_path / "b"))
    assert np.abs(back.image.astype(int)[4:-4, 4:-4] - (200, 40, 10)).max() <= 3


def test_camera_info_and_gt_share_the_image_header(tmp_path):
    calib = tmp_path / "calib.yaml"
    calib.write_text(
        yaml.safe_dump(
            {
                "image_width": W,
                "image_height": H,
                "camera_name": "c",
                "distortion_model": "plumb_bob",
                "camera_matrix": {"rows": 3, "cols": 3, "data": [30.0, 0, 16, 0, 30.0, 12, 0, 0, 1]},
                "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.1, 0, 0, 0, 0]},
                "rectification_matrix": {"rows": 3, "cols": 3, "data": [1.0, 0, 0, 0, 1, 0, 0, 0, 1]},
                "projection_matrix": {"rows": 3, "cols": 4, "data": [30.0, 0, 16, 0, 0, 30, 12, 0, 0, 0, 1, 0]},
            }
        )
    )
    write_bag(
        tmp_path / "b",
        _frames(n=2, label_every=1),
        15.0,
        calibration=CameraCalibration.from_yaml(calib),
        start_ns=START,
        frame_id="cam",
    )
    from rosbags.rosbag2 import Reader

    ts = typestore_for("kilted")
    headers: dict[str, list] = {}
    with Reader(tmp_path / "b") as reader:
        for conn, _, raw in reader.messages():
            headers.setdefault(conn.topic, []).append(header_of(raw))
            if conn.msgtype == "sensor_msgs/msg/CameraInfo":
                info = ts.deserialize_cdr(raw, conn.msgtype)
                assert info.k.tolist() == [30.0, 0, 16, 0, 30.0, 12, 0, 0, 1] and (info.width, info.height) == (W, H)
    assert headers["/camera/image_raw"] == headers["/camera/camera_info"] == headers["/camera/semantic_gt"]
    assert headers["/camera/image_raw"][0] == (START, "cam")


def test_cdr_header_matches_the_serialized_header():
    ts = typestore_for("kilted")
    t = ts.types
    for stamp, frame_id in [(0, "a"), (1_234_567_890_123_456_789, "front_camera_optical"), (5, "")]:
        sec, nsec = divmod(stamp, 10**9)
        msg = t["sensor_msgs/msg/CompressedImage"](
            header=t["std_msgs/msg/Header"](
                stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id
            ),
            format="png",
            data=np.zeros(3, np.uint8),
        )
        raw = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
        assert header_of(raw) == (stamp, frame_id)
        big = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage", little_endian=False))
        assert header_of(big) == (stamp, frame_id)


# ---- make-bag on a dataset ---------------------------------------------------------------------------------------
def _camvid_like(root: Path, n: int = 5) -> Path:
    """A tiny CamVid (SegNet layout) val split: one sequence at 15 Hz (frame numbers step 2 at 30 Hz)."""
    rng = np.random.default_rng(3)
    for sub in ("val", "valannot"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"0016E5_{7959 + 2 * i:05d}"
        cv2.imwrite(str(root / "val" / f"{name}.png"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "valannot" / f"{name}.png"), rng.integers(0, 12, (H, W)).astype(np.uint8))
    return root


def _make_bag(*argv: str) -> int:
    from vsseg_ros.commands.make_bag import main

    return main(list(argv))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_round_trip_equals_the_dataset_stream(tmp_path, storage):
    root = _camvid_like(tmp_path / "camvid")
    out = tmp_path / f"bag_{storage}"
    assert (
        _make_bag(
            "--dataset",
            "camvid",
            "--root",
            str(root),
            "--split",
            "val",
            "--out",
            str(out),
            "--storage",
            storage,
            "--start",
            "1700000000",
        )
        == 0
    )
    expected = list(dataset_frames("camvid", root, "val"))
    bag = BagFrames(out)
    back = list(bag)
    assert len(back) == len(expected) == 5
    assert all(_same(a, b) for a, b in zip(expected, back))
    assert [b.name for b in back] == [e.name for e in expected]
    assert {b.sequence for b in back} == {"0016E5"}
    assert np.abs(np.diff([b.stamp_ns for b in back]) - 66_666_667).max() <= 1  # 15 Hz from the frame numbers
    assert bag.class_names is not None and len(bag.class_names) == 11
    assert _make_bag("--dataset", "camvid", "--root", str(root), "--split", "val", "--out", str(out)) == 2  # exists
    assert (
        _make_bag(
            "--dataset",
            "camvid",
            "--root",
            str(root),
            "--split",
            "val",
            "--out",
            str(out),
            "--force",
            "--rate",
            "5",
            "--max-frames",
            "3",
            "--storage",
            storage,
        )
        == 0
    )
    assert np.diff([b.stamp_ns for b in BagFrames(out)]).tolist() == [200_000_000] * 2


def _eval(tmp_path: Path, name: str, *argv: str) -> dict:
    from vsseg_ros.commands.eval import main

    out = tmp_path / f"{name}.json"
    assert main([*argv, "--json", str(out), "--no-tc", "--quiet", "--threads", "1"]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_then_eval_scores_the_bag_like_the_dataset(tmp_path, storage):
    root = _camvid_like(tmp_path / "camvid")
    bag = tmp_path / "bag"
    assert (
        _make_bag("--dataset", "camvid", "--root", str(root), "--split", "val", "--out", str(bag), "--storage", storage)
        == 0
    )
    on_bag = _eval(tmp_path, "bag", "--bag", str(bag), "--output-bag", str(tmp_path / "masks"))
    on_data = _eval(tmp_path, "data", "--dataset", "camvid", "--root", str(root), "--split", "val")
    assert on_bag["frames"] == on_data["frames"] == 5 and on_bag["labelled_frames"] == 5
    assert on_bag["miou"] is not None and on_bag["miou"] == pytest.approx(on_data["miou"], abs=1e-9)
    assert on_bag["per_class_iou"] == pytest.approx(on_data["per_class_iou"], abs=1e-9)
    assert on_bag["mvc8"] == on_data["mvc8"] and on_bag["boundary_f"] == pytest.approx(on_data["boundary_f"])
    # the masks eval wrote, scored the way replay scores a recorded run: the same numbers
    scored = score_outputs(BagFrames(bag), BagMasks(tmp_path / "masks"), flow_consistency=False)
    assert scored["frames_received"] == 5 and scored["frames_dropped"] == 0
    assert scored["accuracy"]["miou"] == pytest.approx(on_bag["miou"], abs=1e-9)


def test_make_bag_from_a_folder_with_unlabelled_neighbours_of_one_sequence(tmp_path):
    """--folder with frames/ (video frames around the labelled ones), --frames-before/after, --sequence."""
    rng = np.random.default_rng(5)
    for sub in ("images", "labels", "frames"):
        (tmp_path / "f" / sub).mkdir(parents=True)
    for seq in ("drive1", "drive2"):
        cv2.imwrite(str(tmp_path / "f" / "images" / f"{seq}_000010.png"), rng.integers(0, 256, (H, W, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "f" / "labels" / f"{seq}_000010.png"), rng.integers(0, 3, (H, W)).astype(np.uint8))
        for k in (7, 8, 9, 11):
            frame = rng.integers(0, 256, (H, W, 3), np.uint8)
            cv2.imwrite(str(tmp_path / "f" / "frames" / f"{seq}_{k:06d}.png"), frame)
    out = tmp_path / "bag"
    assert (
        _make_bag(
            "--folder",
            str(tmp_path / "f"),
            "--sequence",
            "drive2",
            "--frames-before",
            "2",
            "--frames-after",
            "1",
            "--out",
            str(out),
        )
        == 0
    )
    back = list(BagFrames(out))
    assert [b.name for b in back] == ["drive2_000008", "drive2_000009", "drive2_000010", "drive2_000011"]
    assert [b.label is not None for b in back] == [False, False, True, False]
    assert {b.sequence for b in back} == {"drive2"}
    assert np.abs(np.diff([b.stamp_ns for b in back]) - 33_333_333).max() <= 1  # folder frame numbers at 30 Hz


def test_make_bag_refuses_bad_sources(tmp_path, capsys):
    root = _camvid_like(tmp_path / "camvid")
    assert (
        _make_bag(
            "--dataset",
            "camvid",
            "--root",
            str(root),
            "--split",
            "val",
            "--sequence",
            "0001TP",
            "--out",
            str(tmp_path / "b"),
        )
        == 2
    )
    assert "0016E5" in capsys.readouterr().err  # names the sequences it has
    assert _make_bag("--dataset", "camvid", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")) == 2
    assert "not found" in capsys.readouterr().err
    assert _make_bag("--video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "b")) == 2
    assert _make_bag("--out", str(tmp_path / "b")) == 2
    assert (
        _make_bag(
            "--dataset",
            "camvid",
            "--root",
            str(root),
            "--split",
            "val",
            "--encoding",
            "rgb48",
            "--out",
            str(tmp_path / "b"),
        )
        == 2
    )
    assert "rgb48" in capsys.readouterr().err and not (tmp_path / "b").exists()  # nothing half-written is left


def test_make_bag_from_a_video(tmp_path):
    from vsseg_ros.imaging.video import VideoWriter

    video = tmp_path / "clip.mp4"
    w = VideoWriter(video, 12.0, (48, 64))
    for i in range(6):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.close()
    assert _make_bag("--video", str(video), "--out", str(tmp_path / "v"), "--encoding", "bgr8") == 0
    bag = BagFrames(tmp_path / "v")
    back = list(bag)
    assert len(back) == 6 and bag.gt_topic is None and all(b.label is None for b in back)
    assert np.diff([b.stamp_ns for b in back]).tolist() == [83_333_333] * 5  # the video's 12 fps
    assert [b.name for b in back][:2] == ["clip_000000", "clip_000001"]


@pytest.mark.skipif(not SHARED_CAMVID.is_dir(), reason=f"CamVid not found at {SHARED_CAMVID}")
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_camvid_val_round_trip(tmp_path, storage):
    out = tmp_path / "camvid_val"
    assert (
        _make_bag(
            "--dataset",
            "camvid",
            "--root",
            str(SHARED_CAMVID),
            "--split",
            "val",
            "--sequence",
            "0016E5",
            "--max-frames",
            "4",
            "--storage",
            storage,
            "--out",
            str(out),
        )
        == 0
    )
    expected = list(dataset_frames("camvid", SHARED_CAMVID, "val"))[:4]
    back = list(BagFrames(out))
    assert (
        [b.name for b in back]
        == [e.name for e in expected]
        == ["0016E5_07959", "0016E5_07961", "0016E5_07963", "0016E5_07965"]
    )
    assert all(_same(a, b) for a, b in zip(expected, back))
    assert all(b.image.shape == (360, 480, 3) for b in back)
    if storage == "sqlite3":
        return  # eval on a sqlite3 bag: test_make_bag_then_eval_scores_the_bag_like_the_dataset
    on_bag = _eval(tmp_path, "bag", "--bag", str(out))
    on_data = _eval(
        tmp_path, "data", "--dataset", "camvid", "--root", str(SHARED_CAMVID), "--split", "val", "--max-frames", "4"
    )
    assert on_bag["labelled_frames"] == on_data["labelled_frames"] == 4
    assert on_bag["miou"] > 0.4 and on_bag["miou"] == pytest.approx(on_data["miou"], abs=1e-9)


# ---- other distributions --------------------------------------------------------------------------------------
def _as_humble(bag: Path) -> None:
    """Rewrite a rosbags bag the way Humble's rosbag2 lays it out: metadata v5 (QoS as a string, no custom_data,
    ros_distro or type hashes) and, for sqlite3, schema 3 without message definitions."""
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    from rosbags.rosbag2.metadata import dump_qos_v8, parse_qos

    for t in meta["topics_with_message_count"]:
        tm = t["topic_metadata"]
        tm["offered_qos_profiles"] = dump_qos_v8(parse_qos(tm["offered_qos_profiles"]))
        tm.pop("type_description_hash", None)
    for key in ("custom_data", "ros_distro"):
        meta.pop(key, None)
    meta["version"] = 5
    (bag / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": meta}))
    if meta["storage_identifier"] == "sqlite3":
        db = bag / meta["relative_file_paths"][0]
        old = sqlite3.connect(db)
        topics = old.execute("SELECT id, name, type, serialization_format, offered_qos_profiles FROM topics").fetchall()
        messages = old.execute("SELECT id, topic_id, timestamp, data FROM messages").fetchall()
        old.close()
        db.unlink()
        new = sqlite3.connect(db)
        new.executescript("""
            CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
            INSERT INTO schema VALUES (3, 'humble');
            CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                                serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
            CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,
                                  data BLOB NOT NULL);
            CREATE INDEX timestamp_idx ON messages (timestamp ASC);""")
        new.executemany("INSERT INTO topics VALUES (?, ?, ?, ?, ?)", topics)
        new.executemany("INSERT INTO messages VALUES (?, ?, ?, ?)", messages)
        new.commit()
        new.close()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("distro", ["humble", "foxy", "jazzy"])
def test_bags_written_with_another_distros_typestore_read_back(tmp_path, storage, distro):
    frames = _frames(n=4)
    write_bag(tmp_path / "b", frames, 15.0, storage, distro=distro, start_ns=START)
    meta = yaml.safe_load((tmp_path / "b" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == {"humble": 5, "foxy": 4, "jazzy": 9}[distro]  # what that distro's rosbag2 writes
    assert isinstance(
        meta["topics_with_message_count"][0]["topic_metadata"]["offered_qos_profiles"],
        str if distro != "jazzy" else list,
    )  # QoS as the string older readers parse
    assert all(_same(a, b) for a, b in zip(frames, BagFrames(tmp_path / "b")))
    if distro != "humble":
        return
    _as_humble(tmp_path / "b")  # and as Humble itself would have written it: v5, no embedded definitions
    bag = BagFrames(tmp_path / "b")
    assert bag.version == 5 and bag.distro is None
    back = list(bag)
    assert len(back) == 4 and all(_same(a, b) for a, b in zip(frames, back))
    assert back[0].stamp_ns == START and back[0].sequence == "b"  # no custom_data: the bag's name


# ---- bad input ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    for storage in ("mcap", "sqlite3"):
        write_bag(d / storage, _frames(n=40), 15.0, storage, start_ns=START)
    return d


def test_missing_bag_and_non_bags(tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        BagFrames(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a ROS 2 bag"):
        BagFrames(tmp_path / "empty")
    (tmp_path / "old.bag").write_bytes(b"#ROSBAG V2.0\n")
    with pytest.raises(BagError, match="ROS 1"):
        BagFrames(tmp_path / "old.bag")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_a_clear_error(good_bags, tmp_path, storage):
    bag = tmp_path / "cut"
    shutil.copytree(good_bags / storage, bag)
    (data,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    with pytest.raises(BagError, match="truncated|corrupt|damaged|cut off") as err:
        list(BagFrames(bag))
    assert str(bag) in str(err.value)


def test_corrupt_files_are_clear_errors(good_bags, tmp_path):
    bag = tmp_path / "garbage"
    shutil.copytree(good_bags / "sqlite3", bag)
    (bag / "sqlite3.db3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BagError, match="corrupt|damaged|not a"):
        list(BagFrames(bag))
    meta = tmp_path / "meta"
    shutil.copytree(good_bags / "mcap", meta)
    (meta / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    with pytest.raises(BagError, match="metadata|YAML"):
        BagFrames(meta)


def test_lost_metadata_yaml_reads_the_storage_file_with_a_warning(good_bags, tmp_path):
    bag = tmp_path / "nometa"
    shutil.copytree(good_bags / "mcap", bag)
    (bag / "metadata.yaml").unlink()
    with pytest.warns(BagWarning, match="no metadata.yaml"):
        frames = BagFrames(bag)
    assert len(list(frames)) == 40


def test_missing_image_topic_lists_the_topics_the_bag_has(tmp_path):
    with RawBagWriter(tmp_path / "b") as w:
        w.add_topic("/lidar/points_meta", "std_msgs/msg/String")
        ts = w.typestore
        w.write(
            "/lidar/points_meta",
            START,
            bytes(ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String")),
        )
    with pytest.raises(BagError, match=r"no image topic.*/lidar/points_meta \(std_msgs/msg/String, 1 msgs\)"):
        BagFrames(tmp_path / "b")
    write_bag(tmp_path / "c", _frames(n=2), 5.0, start_ns=START)
    with pytest.raises(BagError, match=r"no topic /front/image.*/camera/image_raw \(sensor_msgs/msg/Image"):
        BagFrames(tmp_path / "c", image_topic="/front/image")
    with pytest.raises(BagError, match=r"not an image"):
        BagFrames(tmp_path / "c", image_topic="/camera/camera_info")
    with pytest.raises(BagError, match=r"no ground-truth topic /gt"):
        BagFrames(tmp_path / "c", gt_topic="/gt")


def test_unknown_message_type_is_named(tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    msgdef = "std_msgs/Header header\nuint8[] pixels\n"
    with Writer(tmp_path / "b", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/camera/image_raw", "acme_msgs/msg/Frame", msgdef=msgdef, rihs01="RIHS01_" + "0" * 64)
        w.write(conn, START, b"\x00\x01\x00\x00" + bytes(20))
    with pytest.raises(BagError, match=r"acme_msgs/msg/Frame.*not an image|no image topic.*acme_msgs/msg/Frame"):
        BagFrames(tmp_path / "b")


def _bag_with_gt_stamps(path: Path, shift_ns: dict[int, int]) -> list[LabelledFrame]:
    """A bag whose ground truth for frame i is stamped ``shift_ns.get(i, 0)`` away from its image."""
    frames = _frames(n=6, label_every=1)
    write_bag(path, frames, 15.0, start_ns=START, gt_topic="/tmp_gt")
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    ts = typestore_for("kilted")
    out = path.with_name(path.name + "_shifted")
    with Reader(path) as r, Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for c in r.connections:
            topic = "/camera/semantic_gt" if c.topic == "/tmp_gt" else c.topic
            conns[c.id] = w.add_connection(topic, c.msgtype, typestore=ts)
        i = 0
        for c, t, raw in r.messages():
            if c.topic == "/tmp_gt":
                msg = ts.deserialize_cdr(raw, c.msgtype)
                ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec + shift_ns.get(i, 0)
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 10**9)
                raw = bytes(ts.serialize_cdr(msg, c.msgtype))
                i += 1
            w.write(conns[c.id], t, raw)
    shutil.rmtree(path)
    out.rename(path)
    return frames


def test_ground_truth_matching_no_image_is_counted_in_a_warning(tmp_path):
    frames = _bag_with_gt_stamps(tmp_path / "b", {1: 5_000_000, 4: 7})
    bag = BagFrames(tmp_path / "b")
    with pytest.warns(BagWarning, match="2 of 6 ground-truth messages on /camera/semantic_gt match no image"):
        back = list(bag)
    assert [b.label is not None for b in back] == [True, False, True, True, False, True]
    assert np.array_equal(back[2].label, frames[2].label)
    assert bag.gt_report.as_dict() == {"images": 6, "gt": 6, "matched": 4, "unmatched": 2, "duplicate_image_stamps": 0}


def test_ground_truth_matching_no_image_at_all_is_an_error(tmp_path):
    _bag_with_gt_stamps(tmp_path / "b", {i: 3_000_000_000 for i in range(6)})
    with pytest.raises(BagError, match="none of the 6 ground-truth messages.*Nothing could be scored"):
        list(BagFrames(tmp_path / "b"))
    assert all(b.label is None for b in BagFrames(tmp_path / "b", gt_topic=""))  # explicitly without ground truth


def test_write_bag_refuses_bad_input(tmp_path):
    with pytest.raises(BagWriteError, match="exists"):
        (tmp_path / "x").mkdir()
        write_bag(tmp_path / "x", _frames(n=1), 5.0)
    backwards = _frames(n=3)
    backwards[2] = LabelledFrame(image=backwards[2].image, label=None, stamp_ns=0, sequence="seqA", name="late")
    with pytest.raises(BagWriteError, match="'late'.*--rate"):
        write_bag(tmp_path / "y", backwards, None)
    assert not (tmp_path / "y").exists()
    with pytest.raises(BagWriteError, match="storage"):
        write_bag(tmp_path / "z", _frames(n=1), 5.0, storage="rosbag1")
    with pytest.raises(BagWriteError, match="no frames"):
        write_bag(tmp_path / "w", [], 5.0)


# ---- scoring a recorded output bag -------------------------------------------------------------------------------
def _output_bag(path: Path, frames: list[LabelledFrame], stamps: list[int], keep, extra_stamp: bool = False):
    ts = typestore_for("kilted")
    t = ts.types
    with RawBagWriter(path) as w:
        w.add_topic("/semantic/mask", "sensor_msgs/msg/Image")
        w.add_topic("/semantic/class_map", "vsseg_ros/msg/ClassMap")
        cm = w.typestore.types["vsseg_ros/msg/ClassMap"](
            header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""),
            class_ids=np.arange(11, dtype=np.uint8),
            class_names=[f"c{i}" for i in range(11)],
            colors=np.zeros(33, np.uint8),
            ignore_id=255,
            model_id="test-model",
        )
        w.write("/semantic/class_map", START, bytes(w.typestore.serialize_cdr(cm, "vsseg_ros/msg/ClassMap")))
        for i, (f, s) in enumerate(zip(frames, stamps)):
            if not keep(i):
                continue
            pred = f.label.copy() if f.label is not None else np.zeros((H, W), np.uint8)
            pred[pred == 255] = 0
            sec, nsec = divmod(s + (1 if extra_stamp and i == 0 else 0), 10**9)
            msg = t["sensor_msgs/msg/Image"](
                header=t["std_msgs/msg/Header"](
                    stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="cam"
                ),
                height=H,
                width=W,
                encoding="mono8",
                is_bigendian=0,
                step=W,
                data=pred.reshape(-1),
            )
            w.write("/semantic/mask", s + 10**6, bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Image")))


def test_score_outputs_counts_drops_and_scores_what_arrived(tmp_path):
    frames = _frames(n=8, label_every=1)
    write_bag(tmp_path / "in", frames, 10.0, start_ns=START)
    stamps = [b.stamp_ns for b in BagFrames(tmp_path / "in")]
    _output_bag(tmp_path / "out", frames, stamps, keep=lambda i: i not in (2, 5))
    masks = BagMasks(tmp_path / "out")
    assert masks.class_names == [f"c{i}" for i in range(11)] and masks.model_id == "test-model"
    r = score_outputs(BagFrames(tmp_path / "in"), masks, flow_consistency=False)
    assert (r["frames_published"], r["frames_received"], r["frames_dropped"]) == (8, 6, 2)
    assert r["outputs_with_unknown_stamp"] == 0 and r["drop_segments"] == 3
    assert r["accuracy"]["miou"] == pytest.approx(1.0) and r["labelled_frames_scored"] == 6
    assert any("2 of 8 labelled frames were dropped" in n for n in r["notes"])

    _output_bag(tmp_path / "shifted", frames, stamps, keep=lambda i: True, extra_stamp=True)
    r = score_outputs(BagFrames(tmp_path / "in"), BagMasks(tmp_path / "shifted"), flow_consistency=False)
    assert r["outputs_with_unknown_stamp"] == 1 and r["frames_received"] == 7  # a changed stamp is not a match


def test_score_outputs_without_any_mask_says_so(tmp_path):
    frames = _frames(n=3, label_every=1)
    write_bag(tmp_path / "in", frames, 10.0, start_ns=START)
    stamps = [b.stamp_ns for b in BagFrames(tmp_path / "in")]
    _output_bag(tmp_path / "out", frames, stamps, keep=lambda i: False)
    r = score_outputs(BagFrames(tmp_path / "in"), BagMasks(tmp_path / "out"), flow_consistency=False)
    assert r["frames_received"] == 0 and r["accuracy"] is None
    assert any("none of the 3 labelled frames got a mask" in n for n in r["notes"])
    with pytest.raises(BagError, match="no mask topic"):
        BagMasks(tmp_path / "in")


def test_frame_names_survive_in_custom_data(tmp_path):
    write_bag(tmp_path / "b", _frames(n=2), 5.0, start_ns=START, class_names=["a", "b"], source="unit test")
    meta = yaml.safe_load((tmp_path / "b" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    names = json.loads(meta["custom_data"]["vsseg_ros.frame_names"])
    assert sorted(names.values()) == ["seqA_00000", "seqA_00001"]
    bag = BagFrames(tmp_path / "b")
    assert bag.class_names == ["a", "b"] and bag.source == "unit test"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(bag)) == 2  # a clean bag warns about nothing


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_raw_writer_takes_messages_from_other_threads(tmp_path, storage):
    """Subscription callbacks run in executor threads; sqlite3 connections only work in the thread that made them."""
    import threading

    write_bag(tmp_path / "in", _frames(n=4, label_every=1), 10.0, start_ns=START)
    gt = [raw for _, _, raw in BagFrames(tmp_path / "in").raw_messages(["/camera/semantic_gt"])]
    w = RawBagWriter(tmp_path / "out", storage=storage)
    w.add_topic("/semantic/mask", "sensor_msgs/msg/Image")
    for raw in gt:
        t = threading.Thread(target=w.write, args=("/semantic/mask", header_of(raw)[0] + 1, raw))
        t.start()
        t.join()
    assert w.close() == {"/semantic/mask": 4}
    back = [s for s, _, _, _ in BagMasks(tmp_path / "out", topic="/semantic/mask")]
    assert back == [header_of(raw)[0] for raw in gt]
    other = RawBagWriter(tmp_path / "other", storage=storage)
    with pytest.raises(KeyError, match="not added"):
        other.write("/x", 0, b"")
    assert other.close() == {}
