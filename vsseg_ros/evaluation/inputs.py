"""What an evaluation reads and prints, shared by `vsseg-ros eval`, `temporal-headroom` and fleet evaluation.

The options that name the input (:func:`add_input_arguments`), the labelled frames of a bag or a dataset split
(:func:`open_source`), the class check between them and a model (:func:`check_classes`), which backend runs a
model path (:func:`backend_for`) and the one-line summary per model (:func:`print_summary`). The fleet code and
the commands import it without importing each other. Nothing here imports ROS.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

DEFAULT_MODEL = "default"  # --compare / fleet name for the packaged default model
DATASETS = ("camvid", "cityscapes", "folder")


def add_input_arguments(p: argparse.ArgumentParser, context_after: bool = True) -> None:
    """The input options shared by the tools that score a stream of labelled frames: a bag or a dataset split.
    ``context_after=False``: ``--context`` takes only the frames before each labelled one (causal tools)."""
    src = p.add_argument_group("input (one of --bag or --dataset)")
    src.add_argument("--bag", type=Path, help="a ROS 2 bag (folder, .mcap or .db3; Humble to Kilted metadata)")
    src.add_argument("--image-topic", help="image topic of the bag (default: /camera/image_raw or the only one)")
    src.add_argument(
        "--gt-topic",
        help="ground-truth topic of the bag (mono8 ids, 255 = ignore; default: "
        "/camera/semantic_gt if present; '' = none)",
    )
    src.add_argument("--dataset", choices=DATASETS, help="a labelled dataset split instead of a bag")
    src.add_argument("--root", type=Path, help="dataset root folder (with --dataset)")
    src.add_argument("--split", default="val", help="dataset split (default val)")
    src.add_argument(
        "--frame-rate",
        type=float,
        default=None,
        help="rate the dataset's frame numbers count in, for the stamps (default: camvid 30, cityscapes 17, folder 30)",
    )
    where = "where the dataset has them (Cityscapes leftImg8bit_sequence, a folder's frames/)"
    if context_after:
        src.add_argument(
            "--context",
            type=int,
            nargs=2,
            default=(0, 0),
            metavar=("BEFORE", "AFTER"),
            help=f"also stream this many unlabelled video frames before / after each labelled one, "
            f"{where}, for temporal models (default 0 0)",
        )
    else:
        src.add_argument(
            "--context",
            type=int,
            default=0,
            metavar="BEFORE",
            help=f"also stream this many unlabelled video frames before each labelled one, {where}, "
            "so the window is filled (default 0)",
        )
    src.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")


def backend_for(path: str, backend: str) -> str:
    """An exported model runs on its engine (auto) unless a backend other than the default torch is asked for."""
    from vsseg_ros.runtimes.manifest import is_exported_path

    return "auto" if backend == "torch" and path and is_exported_path(path) else backend


class EvalSource:
    """The frames to evaluate, with what is known about them before the first one is read."""

    def __init__(
        self,
        frames: Any,
        total: Optional[int],
        description: str,
        info: dict[str, Any],
        class_names: Optional[list[str]],
        num_classes: Optional[int],
        show_frames: bool,
    ) -> None:
        self.frames = frames
        self.total = total
        self.description = description
        self.info = info
        self.class_names = class_names
        self.num_classes = num_classes
        self.show_frames = show_frames


def open_source(args: argparse.Namespace, model_classes: int) -> EvalSource:
    """The labelled frames to score: a bag (``--bag``) or a dataset split (``--dataset/--root/--split``)."""
    if args.bag is not None:
        from vsseg_ros.bags.reader import BagFrames

        bag = BagFrames(args.bag, image_topic=args.image_topic, gt_topic=args.gt_topic)
        info = {
            "kind": "bag",
            "path": str(bag.path),
            "image_topic": bag.image_topic,
            "gt_topic": bag.gt_topic,
            "storage": bag.storage,
        }
        report = bag.gt_report  # pairs ground truth with images now: warns with counts, raises if none match
        if report is not None:
            info["ground_truth"] = report.as_dict()
        names = list(bag.class_names) if bag.class_names else None
        return EvalSource(bag, len(bag), bag.describe(), info, names, len(names) if names else None, True)
    from vsseg_ros.data.sources import FRAME_NUMBER_RATE_HZ, frames_of, open_labelled, plan_frames

    if args.root is None:
        raise ValueError("--dataset needs --root DIR (the dataset's root folder)")
    num_classes = None
    if args.dataset == "folder":
        from vsseg_ros.data.folder import CLASS_FILES

        # a folder without a class list takes the model's class count (instead of reading every label first)
        if not any((Path(args.root) / f).is_file() for f in CLASS_FILES):
            num_classes = model_classes
    data = open_labelled(args.dataset, args.root, args.split or None, num_classes=num_classes)
    rate = args.frame_rate or FRAME_NUMBER_RATE_HZ[args.dataset]
    context = tuple(args.context)
    total = len(plan_frames(data, context)) if any(context) else len(data)
    info = {
        "kind": "dataset",
        "dataset": args.dataset,
        "root": str(args.root),
        "split": args.split,
        "frame_rate_hz": rate,
        "sequences": len(data.sequences()),
        "context": list(context),
    }
    described = f"{len(data)} labelled frames" + (f", {total} with context" if total != len(data) else "")
    return EvalSource(
        frames_of(data, rate, context),
        total,
        f"{args.dataset} {args.split} ({args.root}, {described})",
        info,
        list(data.class_map.names),
        data.num_classes,
        True,
    )


def check_classes(source: EvalSource, segmenters: list[Any]) -> list[str]:
    """Raise when the ground truth's class count differs from a model's; notes when only the names differ."""
    notes = []
    for seg in segmenters:
        cm = seg.class_map
        if source.num_classes is not None and source.num_classes != cm.num_classes:
            listed = f" ({', '.join(source.class_names)})" if source.class_names else ""
            raise ValueError(
                f"the ground truth has {source.num_classes} classes{listed}"
                f" but model {seg.model_id!r} predicts {cm.num_classes} ({', '.join(cm.names)}); "
                "evaluate a model trained on this label set"
            )
        if source.class_names and [n.lower() for n in source.class_names] != [n.lower() for n in cm.names]:
            notes.append(
                f"class names differ between the ground truth ({', '.join(source.class_names)}) and model "
                f"{seg.model_id!r} ({', '.join(cm.names)}); ids are compared as they are"
            )
    return notes


def print_summary(out: dict[str, Any]) -> None:
    results = out["models"] if "models" in out else [out]

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}"

    for r in results:
        lat = r["latency_ms"]
        p50 = "n/a" if lat["p50"] is None else f"{lat['p50']:.1f}"
        p95 = "n/a" if lat["p95"] is None else f"{lat['p95']:.1f}"
        p99 = "n/a" if lat["p99"] is None else f"{lat['p99']:.1f}"
        print(
            f"{r['model']}: mIoU {pct(r['miou'])}  boundary F {pct(r['boundary_f'])}  mVC8 {pct(r['mvc8'])}  "
            f"mVC16 {pct(r['mvc16'])}  TC {pct(r['tc'])}  latency p50/p95/p99 {p50}/{p95}/{p99} ms  "
            f"({r['frames']} frames, {r['labelled_frames']} labelled)"
        )
        for note in r.get("notes", []):
            print(f"  note: {note}")
