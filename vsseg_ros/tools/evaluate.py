"""`vsseg-ros eval`: accuracy, temporal consistency and latency of a model on a dataset split or a ROS 2 bag.

Frames stream in order through the same :class:`~vsseg_ros.core.segmenter.Segmenter` the node uses
(:func:`~vsseg_ros.core.loading.load_segmenter`), offline and deterministic (no DDS). ``--compare A B`` runs two
models over the same frames. Writes ``--json FILE`` (one model: miou, per_class_iou, boundary_f, mvc8, mvc16, tc,
latency_ms, frames, model, ...; two: ``{"models": [..., ...], "delta": ...}``), ``--report DIR`` (Markdown page
with pictures, see :mod:`vsseg_ros.tools.report`) and ``--output-bag`` (the predicted masks as a new bag).
``--bags PATTERN...`` scores a fleet of bags (one after the other, or as Ray tasks with ``--ray``) and merges the
results exactly: :mod:`vsseg_ros.fleet`. Nothing here imports ROS.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

from vsseg_ros.eval_inputs import DEFAULT_MODEL, backend_for, check_classes, open_source, print_summary

DATASETS = ("camvid", "cityscapes", "folder")
MASK_TOPIC = "semantic/mask"
BOUNDARY_TOPIC = "semantic/boundary_confidence"
CLASS_MAP_TOPIC = "semantic/class_map"


def _input_size(text: str) -> Any:
    t = text.strip().lower()
    if t in ("0", "native", "frame"):
        return 0
    try:
        h, w = (int(v) for v in t.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"input size must be HEIGHTxWIDTH (e.g. 360x480) or 0 for each frame's own size, got {text!r}"
        ) from None
    return (h, w)


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)

    m = p.add_argument_group("model")
    m.add_argument("--model", default="", help="checkpoint (default: the packaged default model)")
    m.add_argument(
        "--compare",
        nargs=2,
        metavar=("CKPT_A", "CKPT_B"),
        help=f"two checkpoints side by side on the same frames ('{DEFAULT_MODEL}' = the packaged model)",
    )
    m.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    m.add_argument(
        "--backend",
        default="torch",
        help="torch (default: the checkpoint's own numbers), onnxruntime, openvino, tensorrt, or auto "
        "(what the node runs by default); an exported --model runs on its engine",
    )
    m.add_argument("--precision", default="fp32", help="fp32 (default), fp16, bf16")
    m.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        help="network input HEIGHTxWIDTH (default: the model's own; 0 = each frame's size)",
    )
    m.add_argument(
        "--temporal-mode", default=None, help="causal or centered (temporal models; default: the model's own)"
    )
    m.add_argument(
        "--max-frame-gap",
        type=float,
        default=0.5,
        help="seconds between frames after which a temporal model restarts its window (default 0.5)",
    )
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    m.add_argument("--warmup", type=int, default=1, help="untimed pushes of the first frame (default 1)")

    s = p.add_argument_group("metrics")
    s.add_argument("--boundary-tolerance", type=int, default=2, help="boundary F-score tolerance in px (default 2)")
    s.add_argument("--no-tc", action="store_true", help="skip flow-warp temporal consistency (no optical flow)")
    s.add_argument(
        "--dis-preset",
        default="medium",
        choices=("ultrafast", "fast", "medium"),
        help="DIS optical flow preset for TC (default medium)",
    )

    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, help="write the results as JSON here")
    o.add_argument("--report", type=Path, help="write a report folder (index.md + PNG pictures) here")
    o.add_argument("--strip", type=int, default=6, help="frames in the report's overlay strip (0 = none)")
    o.add_argument(
        "--output-bag",
        help="write the predicted masks (+ boundary confidence and class map) into a new "
        "bag at this path; 'auto' (with --bag) = beside the input, BAG_eval",
    )
    o.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="storage of --output-bag")
    o.add_argument("--quiet", action="store_true", help="no progress bar")

    from vsseg_ros.fleet.run import add_fleet_arguments

    add_fleet_arguments(p)


class _OutputBag:
    """The segmenters' outputs as a bag (H6's :class:`~vsseg_ros.bags.writer.RawBagWriter`): per model the mono8
    mask, the 32FC1 boundary confidence (when the model has a boundary head) and the latched class map, each
    with the input frame's stamp and frame_id, under ``/<prefix>semantic/...``."""

    def __init__(self, path: Path, storage: str, prefixes: list[str], segmenters: list[Any]) -> None:
        from vsseg_ros.bags.writer import RawBagWriter

        self.writer = RawBagWriter(path, storage=storage, custom_data={"vsseg_ros.source": "vsseg-ros eval"})
        self.ts = self.writer.typestore
        self.prefixes = prefixes
        self.segmenters = segmenters
        self.class_map_written = [False] * len(prefixes)
        for prefix in prefixes:
            self.writer.add_topic(f"{prefix}/{MASK_TOPIC}", "sensor_msgs/msg/Image")
            self.writer.add_topic(
                f"{prefix}/{CLASS_MAP_TOPIC}", "vsseg_ros/msg/ClassMap", transient_local=True, depth=1
            )
        self.boundary_topics: set[str] = set()

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        t = self.ts.types
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
        )

    def _image(self, values: Any, header: Any) -> bytes:
        import numpy as np

        values = np.ascontiguousarray(values)
        encoding = "mono8" if values.dtype == np.uint8 else "32FC1"
        data = values.astype(np.uint8 if encoding == "mono8" else np.float32, copy=False).reshape(-1).view(np.uint8)
        msg = self.ts.types["sensor_msgs/msg/Image"](
            header=header,
            height=values.shape[0],
            width=values.shape[1],
            encoding=encoding,
            is_bigendian=0,
            step=values.shape[1] * values.itemsize,
            data=data,
        )
        return bytes(self.ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))

    def write(self, model: int, stamp_ns: int, frame_id: str, result: Any) -> None:
        import numpy as np

        prefix = self.prefixes[model]
        header = self._header(stamp_ns, frame_id)
        if not self.class_map_written[model]:
            seg = self.segmenters[model]
            cm = seg.class_map
            msg = self.ts.types["vsseg_ros/msg/ClassMap"](
                header=header,
                class_ids=np.asarray(cm.ids, np.uint8),
                class_names=list(cm.names),
                colors=np.asarray([v for c in cm.colors for v in c], np.uint8),
                ignore_id=cm.ignore_id,
                model_id=seg.model_id,
            )
            self.writer.write(
                f"{prefix}/{CLASS_MAP_TOPIC}", stamp_ns, bytes(self.ts.serialize_cdr(msg, "vsseg_ros/msg/ClassMap"))
            )
            self.class_map_written[model] = True
        self.writer.write(f"{prefix}/{MASK_TOPIC}", stamp_ns, self._image(result.labels, header))
        if result.boundary is not None:
            topic = f"{prefix}/{BOUNDARY_TOPIC}"
            if topic not in self.boundary_topics:
                self.writer.add_topic(topic, "sensor_msgs/msg/Image")
                self.boundary_topics.add(topic)
            self.writer.write(topic, stamp_ns, self._image(result.boundary.astype(np.float32), header))

    def close(self) -> dict[str, int]:
        return self.writer.close()


def _output_bag_path(args: argparse.Namespace, model_ids: list[str]) -> Optional[Path]:
    if not args.output_bag:
        return None
    if args.output_bag != "auto":
        return Path(args.output_bag)
    if args.bag is None:
        raise ValueError("--output-bag auto needs --bag (it writes beside the input bag); give a path instead")
    from vsseg_ros.bags.reader import resolve_bag_path

    base = resolve_bag_path(args.bag)
    folder = base if base.is_dir() else base.parent
    out = folder.parent / f"{folder.name}_eval"
    n = 2
    while out.exists():
        out = folder.parent / f"{folder.name}_eval{n}"
        n += 1
    return out


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """B minus A for the headline numbers (None where either is undefined)."""
    out: dict[str, Any] = {}
    for key in ("miou", "pixel_accuracy", "boundary_f", "mvc8", "mvc16", "tc"):
        out[key] = None if a.get(key) is None or b.get(key) is None else b[key] - a[key]
    out["latency_ms_p50"] = (
        None
        if a["latency_ms"]["p50"] is None or b["latency_ms"]["p50"] is None
        else b["latency_ms"]["p50"] - a["latency_ms"]["p50"]
    )
    return out


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by ``args`` (the parsed options) and write its outputs; returns the JSON."""
    import torch

    from vsseg_ros.core.loading import backend_summary, load_segmenter
    from vsseg_ros.core.segmenter import OutputRequest
    from vsseg_ros.metrics.evaluate import evaluate_stream
    from vsseg_ros.metrics.scorer import StreamScorer
    from vsseg_ros.tools.report import StripFrame, strip_indices, write_report

    if (args.bag is None) == (args.dataset is None):
        raise ValueError(
            "give exactly one input: --bag BAG or --dataset NAME --root DIR [--split S] (or --bags "
            "PATTERN... for a fleet of bags)"
        )
    if args.compare and args.model:
        raise ValueError("--model and --compare exclude each other (--compare names both models)")
    if args.bag is not None and any(args.context):
        raise ValueError("--context applies to --dataset (a bag streams all of its frames already)")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.threads:
        torch.set_num_threads(int(args.threads))
    paths = [("" if p == DEFAULT_MODEL else p) for p in args.compare] if args.compare else [args.model]
    segmenters = [
        load_segmenter(
            p,
            device=args.device,
            precision=args.precision,
            input_size=args.input_size,
            temporal_mode=args.temporal_mode or None,
            max_frame_gap_s=args.max_frame_gap,
            backend=backend_for(p, args.backend),
        )
        for p in paths
    ]
    for seg in segmenters[1:]:
        if seg.class_map.num_classes != segmenters[0].class_map.num_classes:
            raise ValueError(
                f"--compare needs two models with the same classes: {segmenters[0].model_id!r} has "
                f"{segmenters[0].class_map.num_classes}, {seg.model_id!r} has {seg.class_map.num_classes}"
            )
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        source = open_source(args, segmenters[0].class_map.num_classes)
        notes = check_classes(source, segmenters)
        scorers = [
            StreamScorer(
                seg.class_map.names,
                ignore_id=seg.class_map.ignore_id,
                boundary_tolerance_px=args.boundary_tolerance,
                flow_consistency=not args.no_tc,
                dis_preset=args.dis_preset,
            )
            for seg in segmenters
        ]
        total = source.total if args.max_frames is None else min(source.total or args.max_frames, args.max_frames)
        keep = set(strip_indices(total or 0, args.strip)) if args.report and source.show_frames else set()
        strip: dict[int, StripFrame] = {}
        ids = [seg.model_id for seg in segmenters]
        bag_path = _output_bag_path(args, ids)
        out_bag = None
        if bag_path is not None:
            prefixes = [""] if len(segmenters) == 1 else ["/model_a", "/model_b"]
            out_bag = _OutputBag(bag_path, args.storage, prefixes, segmenters)

        def on_result(model: int, index: int, lf: Any, result: Any, ms: float) -> None:
            if index in keep:
                sf = strip.setdefault(index, StripFrame(lf.name, lf.image, lf.label, [None] * len(segmenters)))
                sf.preds[model] = result.labels
            if out_bag is not None:
                out_bag.write(model, lf.stamp_ns, lf.camera_id, result)

        request = OutputRequest(boundary=out_bag is not None, confidence=False)
        try:
            stats = evaluate_stream(
                segmenters,
                source.frames,
                scorers,
                request=request,
                on_result=on_result,
                warmup=args.warmup,
                max_frames=args.max_frames,
                progress=not args.quiet,
                total=total,
            )
        finally:
            bag_counts = out_bag.close() if out_bag is not None else None
        caught = [f"{w.category.__name__}: {w.message}" for w in rec]
    for line in caught:
        print(f"warning: {line}", file=sys.stderr)
    if stats.frames == 0:
        raise ValueError(f"{source.description}: no frames to evaluate")

    results = []
    for seg, path, scorer, missed in zip(segmenters, paths, scorers, stats.unlabelled_by_model):
        r = scorer.result()
        r["model"] = seg.model_id
        r["model_path"] = path or DEFAULT_MODEL
        r["backend"] = backend_summary(seg)
        r["delay_frames"] = int(getattr(seg, "delay_frames", 0))
        r["frames_without_result"] = missed
        results.append(r)
    settings = {
        "boundary_tolerance_px": args.boundary_tolerance,
        "tc": not args.no_tc,
        "dis_preset": args.dis_preset,
        "device": args.device,
        "precision": args.precision,
        "input_size": args.input_size,
        "temporal_mode": args.temporal_mode or None,
        "max_frame_gap_s": args.max_frame_gap,
        "max_frames": args.max_frames,
    }
    common = {
        "source": source.info,
        "sequences": len(stats.sequences),
        "settings": settings,
        "warnings": caught + notes,
    }
    if len(results) == 1:
        out = {**results[0], **common}
    else:
        out = {
            "models": results,
            "model": [r["model"] for r in results],
            "frames": stats.frames,
            "delta": _delta(results[0], results[1]),
            **common,
        }
    if bag_counts is not None:
        out["output_bag"] = {"path": str(bag_path), "storage": args.storage, "messages": bag_counts}

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if args.report:
        names = ids if len(set(ids)) == len(ids) else [f"{c}: {i}" for c, i in zip("AB", ids)]
        frames = [strip[i] for i in sorted(strip) if all(p is not None for p in strip[i].preds)]
        write_report(
            args.report,
            results,
            names,
            [s.confusion.matrix for s in scorers],
            [s.latencies for s in scorers],
            segmenters[0].class_map,
            frames,
            source.description,
        )
    return out


def run(args: argparse.Namespace) -> int:
    """The ``vsseg-ros eval`` command: 0 on success, 2 on bad input (the message says what was wrong); with
    ``--bags`` see :func:`vsseg_ros.fleet.run.run_fleet_command`."""
    from vsseg_ros.core.checkpoint import CheckpointError

    if getattr(args, "bags", None):
        from vsseg_ros.fleet.run import run_fleet_command

        return run_fleet_command(args)

    errors: tuple[type[BaseException], ...] = (ValueError, CheckpointError, FileNotFoundError, OSError)
    try:
        out = evaluate(args)
    except errors as e:
        print(f"vsseg-ros eval: error: {e}", file=sys.stderr)
        return 2
    print_summary(out)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vsseg_ros.tools.evaluate", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
