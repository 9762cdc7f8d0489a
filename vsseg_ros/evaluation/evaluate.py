"""What `vsseg-ros eval` does with one input: accuracy, temporal consistency and latency of one model (or two
side by side) on a dataset split or a ROS 2 bag.

Frames stream in order through the same :class:`~vsseg_ros.core.segmenter.Segmenter` the node uses
(:func:`~vsseg_ros.core.loading.load_segmenter`), offline and deterministic (no DDS). ``--compare A B`` runs two
models over the same frames. Writes ``--json FILE`` (one model: miou, per_class_iou, boundary_f, mvc8, mvc16, tc,
latency_ms, frames, model, ...; two: ``{"models": [..., ...], "delta": ...}``), ``--report DIR`` (Markdown page
with pictures, see :mod:`.report`) and ``--output-bag`` (the predicted masks as a new bag, :mod:`.output_bag`).
``--bags PATTERN...`` scores a fleet of bags (one after the other, or as Ray tasks with ``--ray``) and merges the
results exactly: :mod:`vsseg_ros.fleet`. Nothing here imports ROS.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from vsseg_ros.evaluation.inputs import DEFAULT_MODEL, backend_for, check_classes, open_source


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
    from vsseg_ros.evaluation.output_bag import OutputBag, output_bag_path
    from vsseg_ros.evaluation.report import StripFrame, strip_indices, write_report
    from vsseg_ros.metrics.evaluate import evaluate_stream
    from vsseg_ros.metrics.scorer import StreamScorer

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
        bag_path = output_bag_path(args, ids)
        out_bag = None
        if bag_path is not None:
            prefixes = [""] if len(segmenters) == 1 else ["/model_a", "/model_b"]
            out_bag = OutputBag(bag_path, args.storage, prefixes, segmenters)

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
