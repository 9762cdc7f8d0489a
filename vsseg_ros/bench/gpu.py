"""The GPU check, one prepared run (``scripts/gpu_bench.sh``): torch CUDA fp32 / fp16 vs ONNX Runtime CUDA (fp32)
vs TensorRT fp16, for the default model at 720x1280 and the PSPNet-R50 STF+MAR configuration (random weights,
seed 0) at 1024x2048: network ms (median, the temporal model's backbone + fusion + MAR) and, against torch
CUDA fp32 on the same frames, the share of equal labels. Needs a CUDA build of torch and requirements-gpu.txt.

    python -m vsseg_ros.bench.gpu --json out/bench/gpu.json [--frames 20] [--warmup 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
#: (name, torch backend/precision pairs to compare): the issue's four
VARIANTS = (("torch", "fp32"), ("torch", "fp16"), ("onnxruntime", "fp32"), ("tensorrt", "fp16"))
NETWORK_STAGES = ("network", "backbone", "fusion", "mar")


def _random_temporal_checkpoint(config: Path, out: Path) -> Path:
    import torch

    from vsseg_ros.core.checkpoint import save_checkpoint
    from vsseg_ros.core.classes import CITYSCAPES
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.models.temporal import TemporalSegNet

    cfg = ModelConfig.from_yaml(config)
    torch.manual_seed(0)
    model = TemporalSegNet(cfg).eval()
    with torch.no_grad():
        model.mar.set_memory(
            torch.randn(model.mar.slots, model.mar.channels), torch.randn(model.mar.slots, model.mar.channels)
        )
    class_map = CITYSCAPES if cfg.num_classes == CITYSCAPES.num_classes else None
    if class_map is None:
        from vsseg_ros.data.base import generic_class_map

        class_map = generic_class_map(cfg.num_classes)
    return save_checkpoint(out, model, cfg, class_map, "pspnet_r50_stf_mar:random-seed0")


def _run(
    path: str, size: tuple[int, int], backend: str, precision: str, frames: list[np.ndarray], warmup: int
) -> tuple[list[float], list[np.ndarray], str]:
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.segmenter import Frame, OutputRequest

    t0 = time.perf_counter()
    seg = load_segmenter(path, device="cuda", precision=precision, input_size=size, backend=backend)
    start_s = time.perf_counter() - t0
    ms, labels = [], []
    request = OutputRequest(boundary=False, confidence=False)
    for i, image in enumerate(frames):
        res = seg.push(Frame(image=image, stamp_ns=i * 33_000_000), request)
        if res is None:
            continue
        labels.append(res.labels)
        if i >= warmup:
            ms.append(sum(res.timings_ms.get(k, 0.0) for k in NETWORK_STAGES))
    return ms, labels, f"{seg.describe()} (start {start_s:.1f} s)"


def bench(frames: int, warmup: int, video: Optional[Path]) -> list[dict[str, Any]]:
    import torch

    from vsseg_ros.imaging.video import default_video, read_frames

    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device visible to torch (a CUDA build of torch and a GPU are needed)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vsseg-gpu-") as tmp:
        psp = _random_temporal_checkpoint(
            ROOT / "config" / "models" / "pspnet_r50_stf_mar.yaml", Path(tmp) / "pspnet_r50_stf_mar.pt"
        )
        for name, path, size in (("default", "", (720, 1280)), ("pspnet_r50_stf_mar", str(psp), (1024, 2048))):
            clip = list(read_frames(video or default_video(), max_frames=frames + warmup, size=size))
            ref_labels: Optional[list[np.ndarray]] = None
            for backend, precision in VARIANTS:
                row: dict[str, Any] = {
                    "model": name,
                    "size": f"{size[0]}x{size[1]}",
                    "backend": backend,
                    "precision": precision,
                }
                try:
                    ms, labels, runs_on = _run(path, size, backend, precision, clip, warmup)
                except Exception as e:  # a provider that cannot start: reported, the others still run
                    row["error"] = f"{type(e).__name__}: {e}"
                    rows.append(row)
                    print(json.dumps(row))
                    continue
                if ref_labels is None:
                    ref_labels = labels
                agree = float(np.mean([(a == b).mean() for a, b in zip(ref_labels, labels)]))
                row.update(
                    {
                        "network_ms_p50": round(float(np.median(ms)), 2),
                        "label_agreement_vs_torch_fp32": round(agree, 5),
                        "runs_on": runs_on,
                    }
                )
                rows.append(row)
                print(json.dumps(row))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--video", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = bench(args.frames, args.warmup, args.video)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"gpu": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
