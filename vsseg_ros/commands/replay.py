"""`vsseg-ros replay --bag BAG`: play a bag live through the segmentation node over DDS, record its outputs and score
them against the bag (:mod:`vsseg_ros.replay`); ``--score-recorded`` scores a bag recorded elsewhere, no node.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from vsseg_ros.bags.writing import STORAGES
from vsseg_ros.replay.player import OUTPUT_TYPES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bag", type=Path, required=True, help="input bag (vsseg-ros make-bag, ros2 bag record, ...)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (1 = recorded timing)")
    p.add_argument(
        "--clock", action="store_true", help="publish /clock with the bag's time (and start the node with use_sim_time)"
    )
    p.add_argument(
        "--image-topic",
        action="append",
        default=None,
        help="image topic in the bag; give it several times for several cameras into one node (default: "
        "every image topic ending in image_raw(/compressed) when there are several, else "
        "/camera/image_raw or the bag's only image topic)",
    )
    p.add_argument(
        "--gt-topic",
        default=None,
        help="ground-truth topic (default /camera/semantic_gt when present; "
        "several cameras: each camera's <parent>/semantic_gt)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for outputs/ (recorded output bag), replay.json, node.log (default out/replay/<bag>)",
    )
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="storage of the output bag")
    p.add_argument(
        "--outputs",
        nargs="+",
        choices=tuple(OUTPUT_TYPES),
        default=["mask", "segmentation"],
        help="node outputs to subscribe to and record (default: mask segmentation); the first one "
        "gives latency and drops",
    )
    p.add_argument(
        "--node-running",
        action="store_true",
        help="use a node that is already running (same ROS_DOMAIN_ID) instead of starting one",
    )
    p.add_argument("--namespace", default="", help="the node's namespace (its outputs are <ns>/semantic/...)")
    p.add_argument("--params-file", type=Path, help="node parameters YAML to start from (started node only)")
    p.add_argument("--model", default="", help="checkpoint for the started node (default: the packaged model)")
    p.add_argument("--device", default="auto", help="device for the started node: auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--backend",
        default="",
        help="backend for the started node: torch, onnxruntime, openvino, "
        "tensorrt, auto (default: the node's own, auto)",
    )
    p.add_argument("--max-frames", type=int, default=None, help="publish at most this many images")
    p.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the node to serve")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="after the last frame, stop waiting once no output arrived for this many seconds",
    )
    p.add_argument("--no-tc", action="store_true", help="skip the optical-flow temporal consistency (TC) metric")
    p.add_argument(
        "--score-recorded",
        type=Path,
        default=None,
        metavar="OUTPUT_BAG",
        help="run nothing: score an output bag recorded elsewhere (e.g. ros2 bag record of the node's "
        "/semantic/mask while ros2 bag play played --bag); no latency",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")


def run(args: argparse.Namespace) -> int:
    import warnings

    from vsseg_ros.bags.bagfile import BagError, BagWarning
    from vsseg_ros.replay.cameras import open_cameras
    from vsseg_ros.replay.score import replay

    if not args.rate > 0:
        print(f"vsseg-ros replay: --rate must be > 0, got {args.rate}", file=sys.stderr)
        return 2
    if args.max_frames is not None and args.max_frames <= 0:
        print("vsseg-ros replay: --max-frames must be > 0", file=sys.stderr)
        return 2
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", BagWarning)
        try:
            cams = open_cameras(args)
            for frames in cams:
                _ = frames.gt_report  # pairs ground truth with images now: errors before the node starts
        except BagError as err:
            print(f"vsseg-ros replay: {err}", file=sys.stderr)
            return 2
        caught += [str(w.message) for w in seen if issubclass(w.category, BagWarning)]
    for text in dict.fromkeys(caught):  # a bag opened once per camera warns once
        print(f"vsseg-ros replay: warning: {text}", file=sys.stderr)
    frames = cams[0]
    multi = len(cams) > 1
    out_dir = args.out or Path("out/replay") / frames.path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = replay(args, cams, out_dir)
    except BagError as err:
        print(f"vsseg-ros replay: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"vsseg-ros replay: {err}", file=sys.stderr)
        return 1
    (out_dir / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
    if multi:
        for topic, cam in result["cameras"].items():
            print_summary(cam, f"replay [{topic}]: ")
        print_summary({"score": result["score"]}, "replay [all cameras]: ")
    else:
        print_summary(result)
    print(
        f"replay: wrote {out_dir / 'replay.json'}"
        + (f", output bag {result['output_bag']}" if "output_bag" in result else "")
    )
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result["score"]["frames_received"] else 1


def print_summary(r: dict[str, Any], lead: str = "replay: ") -> None:
    s = r["score"]
    print(
        f"{lead}{s['frames_published']} frames published, {s['frames_received']} received, "
        f"{s['frames_dropped']} dropped ({100 * (s['drop_rate'] or 0):.1f} %), "
        f"{s['outputs_with_unknown_stamp']} outputs with a stamp the input does not have"
    )
    if "latency_ms" in r:
        lat = r["latency_ms"]
        print(
            f"{lead}end-to-end latency p50 {lat['p50']} ms, p95 {lat['p95']} ms (max {lat['max']}); input "
            f"{r['input_rate_hz']} Hz, output {r['output_rate_hz']} Hz; node counters {r.get('node_counters')}"
        )
        if "frames_lost_before_node" in r:
            print(
                f"{lead}of the drops, {r['frames_dropped_by_node']} were replaced by a newer frame while the node "
                f"was busy and {r['frames_lost_before_node']} never reached its callback (overwritten in its "
                "depth-1 input queue, or lost on the way)"
            )
    acc = s.get("accuracy")
    if acc:

        def pct(v: Optional[float]) -> str:
            return "-" if v is None else f"{100 * v:.1f} %"

        print(
            f"{lead}mIoU {pct(acc['miou'])} over {s['labelled_frames_scored']} of {s['labelled_frames']} labelled "
            f"frames, boundary F {pct(acc['boundary_f'])}, mVC8 {pct(acc['mvc8'])}, TC {pct(acc['tc'])}"
        )
    for note in s.get("notes", []):
        print(f"{lead}note: {note}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="vsseg-ros replay")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
