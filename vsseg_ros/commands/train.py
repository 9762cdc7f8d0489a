"""`vsseg-ros train --config RECIPE`: per-frame training (stage 1, :mod:`vsseg_ros.training.perframe`) or, for
a ``stage: temporal`` recipe, STF then MAR on a trained per-frame model (stages 2-3,
:mod:`vsseg_ros.training.temporal`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _is_temporal_recipe(path: Path) -> bool:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the per-frame trainer reports the problem
    return isinstance(raw, dict) and raw.get("stage") == "temporal"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, required=True, help="training recipe, e.g. config/train/mbv2_lite_camvid.yaml"
    )
    p.add_argument("--out", type=Path, help="output folder (best.pt, last.pt, logs, val_miou.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt at its saved step")
    p.add_argument("--max-iters", type=int, help="stop after this many iterations")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--data-root", type=Path, help="dataset root (overrides data.root of the recipe)")


def run(args: argparse.Namespace) -> int:
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
