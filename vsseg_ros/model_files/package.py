"""What `vsseg-ros package-model` does: a training checkpoint -> the compact default model the package ships.

Stores the weights as fp16 (half the size), then re-measures mIoU with the stored weights through the same
Segmenter the node uses, so the number recorded in the file is the number the file gives.
"""

from __future__ import annotations

import json
from pathlib import Path

from vsseg_ros.core.checkpoint import load_checkpoint, save_checkpoint
from vsseg_ros.core.loading import load_segmenter
from vsseg_ros.data.camvid import CamVid
from vsseg_ros.metrics.evaluate import evaluate_split


def package_model(checkpoint: Path, out: Path, data_root: Path, split: str = "val", model_id: str = "") -> dict:
    ckpt = load_checkpoint(checkpoint)
    meta = dict(ckpt.meta)
    meta["source_checkpoint"] = checkpoint.name
    model_id = model_id or ckpt.model_id
    save_checkpoint(out, ckpt.state_dict, ckpt.config, ckpt.class_map, model_id, meta=meta, half=True)
    result = evaluate_split(load_segmenter(str(out), device="cpu"), CamVid(data_root, split))
    meta["packaged_eval"] = {
        "split": split,
        "miou": result["miou"],
        "per_class_iou": result["iou"],
        "pixel_accuracy": result["pixel_accuracy"],
        "frames": result["frames"],
        "storage": "fp16",
        "input_size": list(ckpt.config.input_size or ()),
    }
    save_checkpoint(out, ckpt.state_dict, ckpt.config, ckpt.class_map, model_id, meta=meta, half=True)
    summary = {
        "out": str(out),
        "bytes": out.stat().st_size,
        "model_id": model_id,
        "trained_val_miou": ckpt.meta.get("val_miou"),
        "packaged_val_miou": result["miou"],
    }
    print(json.dumps(summary, indent=2))
    return summary
