"""What `vsseg-ros build-memory` does: build the MAR memory of a temporal checkpoint from a labelled dataset split.

For every labelled frame the model's window is assembled (T frames with the labelled one at the model's target
index), each frame goes through the same resize/normalise/pad as in the node (:class:`FramePreparer`), and the
STF-fused feature (what MAR reads) with its logits and the label feed
:class:`~vsseg_ros.core.memory_bank.MemoryBuilder`. The memory goes into the MAR module's ``memory_key`` /
``memory_value`` and a new checkpoint is written (``meta["mar_memory"]`` records what it was built from).

Windows (``--window``): ``real`` uses the dataset's own neighbouring frames (Cityscapes sequences, a folder's
``frames/``, CamVid's labelled 15 Hz val sequence with ``--frame-step 2``) and fails for a frame without them;
``repeat`` repeats the labelled frame T times (a static scene); ``auto`` (default) uses real neighbours where
they exist and repeats the still otherwise (CamVid's 1 Hz training stills have no neighbours).
"""

from __future__ import annotations

import argparse
from typing import Any, Iterator

WINDOWS = ("auto", "real", "repeat")


def _windows(
    data: Any, indices: list[int], frames: int, target: int, step: int, mode: str, counts: dict[str, int]
) -> Iterator[tuple[list[Any], Any]]:
    """(T RGB frames, label) per labelled frame, oldest first, the labelled one at ``target``."""
    offsets = [(i - target) * step for i in range(frames)]
    for i in indices:
        image, label = data.load(i)
        real = mode != "repeat" and hasattr(data, "has_neighbours") and data.has_neighbours(i, offsets)
        if mode == "real" and not real:
            from vsseg_ros.data.base import DatasetError

            raise DatasetError(f"{data[i].name} has no frames at offsets {offsets} (use --window auto or repeat)")
        if real:
            images = data.neighbours(i, offsets)
            images[target] = image
            counts["real"] += 1
        else:
            images = [image] * frames
            counts["repeated"] += 1
        yield images, label


def build(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from vsseg_ros.core.checkpoint import load_checkpoint, save_checkpoint
    from vsseg_ros.core.frame_input import FramePreparer
    from vsseg_ros.core.memory_bank import MemoryBuilder
    from vsseg_ros.data.registry import open_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.model)
    if ckpt.config.temporal is None:
        raise ValueError(f"{args.model}: a per-frame model; build-memory needs a temporal model with MAR")
    model = ckpt.build_model()
    if getattr(model, "mar", None) is None:
        raise ValueError(f"{args.model}: the temporal model has no MAR module (temporal.mar is null)")
    if args.frame_step < 1:
        raise ValueError(f"--frame-step must be >= 1, got {args.frame_step}")
    data = open_dataset(args.dataset, args.root, args.split or None)
    if data.num_classes != model.num_classes:
        raise ValueError(f"{args.dataset} {args.split} has {data.num_classes} classes, the model {model.num_classes}")
    indices = list(range(len(data)))[: args.limit or None]
    if not indices:
        raise ValueError(f"{args.dataset} split {args.split!r} at {args.root} has no labelled frames")
    T, target = model.frames, model.target_index(model.frames)
    cfg = ckpt.config
    prep = FramePreparer(cfg.input_size, cfg.mean, cfg.std, torch.device("cpu"), channels_last=False)
    builder = MemoryBuilder(
        model.num_classes, model.mar.slots_per_class, ignore_id=ckpt.class_map.ignore_id, prototypes=args.prototypes
    )
    counts = {"real": 0, "repeated": 0}
    stride = model.stride
    with torch.inference_mode():
        bar = tqdm(
            _windows(data, indices, T, target, args.frame_step, args.window, counts),
            total=len(indices),
            desc="build-memory",
            unit="frame",
            disable=args.quiet,
        )
        for images, label in bar:
            feats = []
            for image in images:
                x, h, w = prep(image, *image.shape[:2])
                feats.append(model.frame_features(x))
            out = model.fuse(feats, target, boundary=False, refine=False)
            fh, fw = -(-h // stride), -(-w // stride)  # the grid cells of the image (the rest is padding)
            builder.add(out["feature"][..., :fh, :fw], out["logits"][..., :fh, :fw], torch.from_numpy(label)[None])
    key, value = builder.memory()
    model.mar.set_memory(key, value)
    stats = builder.stats.to_dict()
    record = {
        "source_checkpoint": str(args.model),
        "source_model_id": ckpt.model_id,
        "dataset": args.dataset,
        "root": str(args.root),
        "split": args.split,
        "frames": len(indices),
        "window": args.window,
        "frame_step": args.frame_step,
        "windows_real": counts["real"],
        "windows_repeated": counts["repeated"],
        "slots_per_class": model.mar.slots_per_class,
        "prototypes": builder.prototypes,
        "class_names": list(ckpt.class_map.names),
        **stats,
    }
    meta = {**ckpt.meta, "mar_memory": record}
    save_checkpoint(
        args.out, model, cfg, ckpt.class_map, args.model_id or ckpt.model_id, meta=meta, half=ckpt.storage == "fp16"
    )
    return record


__all__ = ["WINDOWS", "build"]
