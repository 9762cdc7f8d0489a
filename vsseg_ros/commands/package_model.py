"""`vsseg-ros package-model`: a training checkpoint stored as the compact fp16 default model, with the mIoU the
stored weights give on CamVid val (:mod:`vsseg_ros.model_files.package`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, help="e.g. out/train/mbv2_lite_camvid/best.pt")
    p.add_argument("--out", type=Path, default=Path("vsseg_ros/weights/default.pt"))
    p.add_argument("--data-root", type=Path, default=Path("../shared/data/camvid"), help="CamVid (SegNet layout)")
    p.add_argument("--split", default="val")
    p.add_argument("--model-id", default="", help="model id to store (default: the checkpoint's)")


def run(args: argparse.Namespace) -> int:
    from vsseg_ros.model_files.package import package_model

    package_model(args.checkpoint, args.out, args.data_root, split=args.split, model_id=args.model_id)
    return 0
