"""A small fleet for the fleet-evaluation tests: 8 good bags (CamVid val chunks where the shared data is here,
synthetic street scenes, one made by `make-bag` from a folder, one without ground truth) and a corrupt one, and
the same frames scored as one stream in one process (the reference the fleet must equal)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from test_eval import _scene
from vsseg_ros.bags.writer import write_bag
from vsseg_ros.core.classes import CAMVID
from vsseg_ros.data.sources import LabelledFrame, dataset_frames

SHARED_CAMVID = Path(__file__).resolve().parents[1].parent / "shared/data/camvid"
HAVE_CAMVID = (SHARED_CAMVID / "val").is_dir() and (SHARED_CAMVID / "valannot").is_dir()
START = 1_700_000_000 * 10**9
#: eval options every fleet test uses (a small network input, one thread, the fastest flow)
SMALL = ["--input-size", "64x96", "--threads", "1", "--quiet", "--dis-preset", "ultrafast"]
GOOD = 8


def run_eval(argv) -> int:
    """`vsseg-ros eval` in this process with these arguments (paths welcome)."""
    from vsseg_ros.commands.eval import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The fleet of :func:`make_fleet`, made once per test module."""
    return make_fleet(tmp_path_factory.mktemp("fleet"))


def synthetic(sequence: str, n: int, offset: int = 0, labelled: bool = True) -> list[LabelledFrame]:
    frames = []
    for t in range(n):
        img, lab = _scene(t + offset)
        label = np.where(lab == 11, 255, lab).astype(np.uint8) if labelled else None
        frames.append(
            LabelledFrame(
                image=img,
                label=label,
                stamp_ns=t * 66_666_667,
                camera_id="cam",
                sequence=sequence,
                name=f"{sequence}_{t:05d}",
            )
        )
    return frames


def _folder_dataset(root: Path, n: int) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for t in range(n):
        img, lab = _scene(20 + t)
        cv2.imwrite(str(root / "images" / f"folderdrive_{t:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "labels" / f"folderdrive_{t:06d}.png"), np.where(lab == 11, 255, lab).astype(np.uint8))
    names = (
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    )
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def make_fleet(root: Path, frames_per_bag: int = 6) -> dict[str, Any]:
    """``root/bags/`` with the 8 good bags (sorted names a_... h_...) and ``root/bags/z_corrupt``."""
    from vsseg_ros.commands.make_bag import main as make_bag

    bags = root / "bags"
    bags.mkdir(parents=True)
    n = frames_per_bag
    if HAVE_CAMVID:  # CamVid val chunks: the first by make-bag itself, three more cut from the clip
        assert (
            make_bag(
                [
                    "--dataset",
                    "camvid",
                    "--root",
                    str(SHARED_CAMVID),
                    "--split",
                    "val",
                    "--max-frames",
                    str(n),
                    "--out",
                    str(bags / "a_camvid"),
                    "--start",
                    "1700000000",
                ]
            )
            == 0
        )
        clip = list(dataset_frames("camvid", SHARED_CAMVID, "val"))
        for i, name in enumerate(("b_camvid", "c_camvid", "d_camvid"), 1):
            part = [replace(f, sequence=f"0016E5_part{i}") for f in clip[i * n : (i + 1) * n]]
            write_bag(bags / name, part, None, "mcap", start_ns=START, class_names=list(CAMVID.names))
    else:
        for i, name in enumerate(("a_syn", "b_syn", "c_syn", "d_syn")):
            write_bag(bags / name, synthetic(f"syn{i}", n, 5 * i), None, "mcap", start_ns=START)
    write_bag(bags / "e_street", synthetic("street_e", n, 1), None, "mcap", start_ns=START)
    write_bag(bags / "f_street", synthetic("street_f", n + 2, 7), None, "sqlite3", start_ns=START)
    folder = _folder_dataset(root / "folder", n)
    assert make_bag(["--folder", str(folder), "--out", str(bags / "g_folder"), "--start", "1700000000"]) == 0
    write_bag(bags / "h_no_gt", synthetic("street_h", n, 3, labelled=False), None, "mcap", start_ns=START)
    corrupt = bags / "z_corrupt"
    shutil.copytree(bags / "e_street", corrupt)
    (mcap,) = corrupt.glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])  # cut off while recording
    return {"dir": bags, "good": sorted(p for p in bags.iterdir() if p.name != "z_corrupt"), "corrupt": corrupt}


def one_stream_reference(bags: list[Path], input_size=(64, 96)) -> dict[str, Any]:
    """The frames of ``bags`` (in order) as one stream through one segmenter and one scorer in this process,
    each bag its own sequence: what a single `eval` over the concatenated frames computes."""
    import itertools

    import torch

    from vsseg_ros.bags.reader import BagFrames
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.metrics.evaluate import evaluate_stream
    from vsseg_ros.metrics.scorer import StreamScorer

    torch.set_num_threads(1)
    seg = load_segmenter("", device="cpu", input_size=input_size)
    cm = seg.class_map
    scorer = StreamScorer(cm.names, ignore_id=cm.ignore_id, boundary_tolerance_px=2, dis_preset="ultrafast")
    sources = [BagFrames(b) for b in bags]
    evaluate_stream([seg], itertools.chain.from_iterable(sources), [scorer], warmup=1)
    return scorer.result()


def without_timing(d: dict[str, Any]) -> dict[str, Any]:
    """A result without what is measured rather than computed (latency values)."""
    d = dict(d)
    lat = d.pop("latency_ms", None)
    if lat is not None:
        d["latency_count"] = lat["count"]
    return d


HEADLINE = (
    "miou",
    "per_class_iou",
    "pixel_accuracy",
    "boundary_f",
    "boundary",
    "mvc8",
    "mvc16",
    "mvc_windows",
    "tc",
    "tc_pairs",
    "frames",
    "labelled_frames",
    "scored_pixels",
)
