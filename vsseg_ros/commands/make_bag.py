"""`vsseg-ros make-bag`: a dataset sequence, a folder or a video file as a ROS 2 bag (rosbags; no ROS needed): the
frames come from :func:`vsseg_ros.bags.make.open_bag_source`, the bag from :func:`vsseg_ros.bags.writer.write_bag`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from vsseg_ros.bags.typestore import DEFAULT_DISTRO, DISTROS
from vsseg_ros.bags.writer import DEFAULT_GT_TOPIC, DEFAULT_IMAGE_TOPIC
from vsseg_ros.bags.writing import STORAGES


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source (one of)")
    src.add_argument("--dataset", choices=("camvid", "cityscapes", "folder"), help="a labelled dataset (with --root)")
    src.add_argument("--video", type=Path, help="a video file (frames without ground truth)")
    src.add_argument("--folder", type=Path, help="an image folder (same as --dataset folder --root FOLDER)")
    p.add_argument("--root", type=Path, help="dataset root (e.g. ../shared/data/camvid)")
    p.add_argument(
        "--split",
        default=None,
        help="dataset split (default: train for camvid/cityscapes; none for a "
        "folder); CamVid val is the 15 Hz clip 0016E5",
    )
    p.add_argument(
        "--sequence",
        nargs="+",
        default=None,
        help="sequence name(s) to write (default: every sequence of the split, in name order)",
    )
    p.add_argument(
        "--frames-before",
        type=int,
        default=0,
        help="also write up to N unlabelled frames before each labelled one where the dataset has them "
        "(Cityscapes leftImg8bit_sequence: 19)",
    )
    p.add_argument("--frames-after", type=int, default=0, help="the same after each labelled frame")
    p.add_argument("--out", type=Path, help="bag folder to create (default out/bags/<source>)")
    p.add_argument("--force", action="store_true", help="replace an existing bag at --out")
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="storage plugin (default mcap)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="stamp frames evenly at this rate in Hz (default: the source's timing: dataset frame numbers "
        "(CamVid numbers frames at 30 Hz, Cityscapes at 17 Hz), the video's frame rate)",
    )
    p.add_argument(
        "--encoding",
        default="rgb8",
        help="Image encoding (rgb8, bgr8, mono8, bayer_rggb8, yuv422, nv12, ...) or jpeg/png for "
        "CompressedImage on <image-topic>/compressed (default rgb8)",
    )
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--max-frames", type=int, default=None, help="write at most this many frames")
    p.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC)
    p.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC)
    p.add_argument("--frame-id", default="camera", help="header frame_id of every message (default camera)")
    p.add_argument(
        "--camera-info",
        type=Path,
        help="camera calibration YAML (ROS camera_calibration format); default: uncalibrated (zeros)",
    )
    p.add_argument(
        "--distro",
        choices=tuple(DISTROS),
        default=DEFAULT_DISTRO,
        help="message definitions and metadata version to write (humble/iron: v8, jazzy/kilted: v9)",
    )
    p.add_argument("--start", type=float, default=None, help="first stamp in seconds since the epoch (default now)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vsseg_ros.bags.calibration import CameraCalibration
    from vsseg_ros.bags.make import open_bag_source
    from vsseg_ros.bags.writer import write_bag
    from vsseg_ros.bags.writing import BagWriteError
    from vsseg_ros.data.base import DatasetError

    dataset, root = args.dataset, args.root
    if args.folder is not None:
        dataset, root = "folder", args.folder
    chosen = [x for x in (dataset, args.video) if x is not None]
    if len(chosen) != 1:
        print(
            "vsseg-ros make-bag: give exactly one source: --dataset NAME --root DIR, --folder DIR or --video FILE",
            file=sys.stderr,
        )
        return 2
    if dataset is not None and root is None:
        print(f"vsseg-ros make-bag: --dataset {dataset} needs --root DIR (the dataset's folder)", file=sys.stderr)
        return 2
    if args.max_frames is not None and args.max_frames <= 0:
        print("vsseg-ros make-bag: --max-frames must be > 0", file=sys.stderr)
        return 2
    if args.frames_before < 0 or args.frames_after < 0:
        print("vsseg-ros make-bag: --frames-before/--frames-after must be >= 0", file=sys.stderr)
        return 2
    try:
        calibration = CameraCalibration.from_yaml(args.camera_info) if args.camera_info else None
        made = open_bag_source(
            dataset,
            root,
            args.split,
            args.sequence,
            args.frames_before,
            args.frames_after,
            args.video,
            args.max_frames,
            args.rate,
        )
        total, rate, source, class_names = made.total, made.rate, made.description, made.class_names
        out = args.out or Path("out/bags") / made.label
        if out.exists():
            if not args.force:
                print(f"vsseg-ros make-bag: {out} exists; pass --force to replace it or choose --out", file=sys.stderr)
                return 2
            if out.is_dir() and not (out / "metadata.yaml").exists():
                print(
                    f"vsseg-ros make-bag: {out} exists and is not a bag (no metadata.yaml); not removing it",
                    file=sys.stderr,
                )
                return 2
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        out.parent.mkdir(parents=True, exist_ok=True)
        start_ns = int(args.start * 1e9) if args.start is not None else None
        t0 = time.perf_counter()
        with tqdm(total=total, desc="make-bag", unit="frame") as bar:
            summary = write_bag(
                out,
                made.frames,
                rate,
                args.storage,
                image_topic=args.image_topic,
                gt_topic=args.gt_topic,
                encoding=args.encoding,
                jpeg_quality=args.jpeg_quality,
                calibration=calibration,
                frame_id=args.frame_id,
                start_ns=start_ns,
                distro=args.distro,
                source=source,
                class_names=class_names,
                progress=bar,
            )
        seconds = time.perf_counter() - t0
    except (DatasetError, BagWriteError, FileNotFoundError, ValueError) as err:
        print(f"vsseg-ros make-bag: {err}", file=sys.stderr)
        return 2
    info = summary.as_dict()
    info.update(
        seconds=round(seconds, 2),
        rate_hz=(round((summary.frames - 1) / summary.duration_s, 3) if summary.duration_s > 0 else None),
    )
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        size = info["image_size"]
        print(
            f"wrote {out} ({summary.storage}, {summary.bytes / 1e6:.1f} MB) in {seconds:.1f} s: {summary.frames} "
            f"frames {size[1]}x{size[0]} over {summary.duration_s:.2f} s ({info['rate_hz'] or '-'} Hz), "
            f"{summary.labelled} with ground truth; sequences {', '.join(summary.sequences)}"
        )
        for topic, n in summary.topics.items():
            print(f"  {topic}: {n} messages")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros make-bag")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
