"""What `vsseg-ros mar-analysis` reports: what a MAR model's memory holds, and where MAR changes the per-frame
model's answers.

Two questions, for a MAR checkpoint (``--model``) built on a per-frame model (``--baseline``, default: the
packaged default):

- **memory** (``--memory-split``, default train): the memory is rebuilt with the same
  :class:`~vsseg_ros.core.memory_bank.MemoryBuilder` from the baseline's features and answers on that split (the
  node's preprocessing, whole frames), with one extra channel carried along each feature: whether its grid cell
  holds a ground-truth class boundary (within ``--boundary-radius`` px). So per class it says how many correct
  pixels there were, what share of the hard keys (the least confident correct pixels) and of the prototype pixels
  lie on boundaries, against the share of boundary cells among all of the class's correct pixels, the keys'
  confidence, and how close the checkpoint's stored (fine-tuned) keys are to the rebuilt ones (cosine).
- **changes** (``--split``, default val): both models stream the split as ``vsseg-ros eval`` runs them; per labelled
  pixel, did MAR change the answer, and was that a fix (baseline wrong, MAR right), a break (baseline right, MAR
  wrong) or wrong to wrong; split into boundary pixels (within ``--boundary-radius`` px of a ground-truth boundary)
  and interiors, and per ground-truth class.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Iterable, Optional, Sequence

import numpy as np

KINDS = ("changed", "fixed", "broken", "wrong_to_wrong")
#: also counted per pixel: right before (the baseline) and after (MAR)
CORRECT = ("baseline_correct", "mar_correct")


def boundary_band(label: np.ndarray, ignore_id: int, radius: int) -> np.ndarray:
    """HxW bool: pixels within ``radius`` px of a ground-truth boundary between two labelled classes."""
    from vsseg_ros.metrics.boundary import _dilate, boundary_map

    return _dilate(boundary_map(label, ignore_id=ignore_id), int(radius))


def count_changes(
    base: np.ndarray, new: np.ndarray, label: np.ndarray, band: np.ndarray, num_classes: int, ignore_id: int
) -> dict[str, np.ndarray]:
    """Per labelled pixel of one frame: counts ``(2, num_classes)`` (row 0: boundary band, row 1: interior; column:
    ground-truth class) of ``labelled`` pixels, of each kind in :data:`KINDS` and of :data:`CORRECT`."""
    valid = (label != ignore_id) & (label < num_classes)
    gt = label[valid].astype(np.int64)
    where = np.where(band[valid], 0, 1)
    b, n = base[valid], new[valid]
    masks = {
        "labelled": np.ones_like(gt, bool),
        "changed": b != n,
        "fixed": (b != gt) & (n == gt),
        "broken": (b == gt) & (n != gt),
        "wrong_to_wrong": (b != n) & (b != gt) & (n != gt),
        "baseline_correct": b == gt,
        "mar_correct": n == gt,
    }
    out = {}
    for k, m in masks.items():
        counts = np.zeros((2, num_classes), np.int64)
        np.add.at(counts, (where[m], gt[m]), 1)
        out[k] = counts
    return out


def summarise_changes(totals: dict[str, np.ndarray], names: Sequence[str]) -> dict[str, Any]:
    """Shares (of the labelled pixels) of each kind, overall, on the boundary band, in interiors and per class."""

    def shares(sel: Any) -> dict[str, Any]:
        n = int(totals["labelled"][sel].sum())
        row = {"labelled": n}
        for k in KINDS:
            c = int(totals[k][sel].sum())
            row[k] = c
            row[f"{k}_share"] = c / n if n else None
        row["net_fixed_share"] = (row["fixed"] - row["broken"]) / n if n else None
        for k in CORRECT:  # accuracy (recall of the ground-truth class) before and after
            row[k.replace("_correct", "_accuracy")] = int(totals[k][sel].sum()) / n if n else None
        return row

    out = {"all": shares(np.s_[:, :]), "boundary": shares(np.s_[0, :]), "interior": shares(np.s_[1, :])}
    changed = out["all"]["changed"]
    out["boundary_share_of_changes"] = out["boundary"]["changed"] / changed if changed else None
    out["boundary_share_of_labelled"] = (
        out["boundary"]["labelled"] / out["all"]["labelled"] if out["all"]["labelled"] else None
    )
    out["per_class"] = {name: shares(np.s_[:, c]) for c, name in enumerate(names)}
    return out


def cell_flags(mask: np.ndarray, grid: tuple[int, int], stride: int) -> np.ndarray:
    """(gh, gw) bool: grid cells (``stride`` px squares of the network input) holding any pixel of ``mask``."""
    gh, gw = grid
    padded = np.zeros((gh * stride, gw * stride), bool)
    h, w = min(mask.shape[0], gh * stride), min(mask.shape[1], gw * stride)
    padded[:h, :w] = mask[:h, :w]
    return padded.reshape(gh, stride, gw, stride).any(axis=(1, 3))


def memory_contents(
    batches: Iterable[tuple[Any, Any, Any, Any]],
    num_classes: int,
    slots_per_class: int,
    ignore_id: int,
    prototypes: Optional[int] = None,
) -> dict[str, Any]:
    """Rebuild a memory from ``(feature (1, C, h, w), logits (1, K, h, w), label (1, h, w), boundary cells
    (1, h, w) bool)`` batches with :class:`MemoryBuilder`, the boundary flag carried as an extra feature channel.
    Returns the keys and values (without the flag) and, per class, the shares of boundary cells."""
    import torch

    from vsseg_ros.core.memory_bank import MemoryBuilder

    builder = MemoryBuilder(num_classes, slots_per_class, ignore_id=ignore_id, prototypes=prototypes)
    # the share of boundary cells among each class's correctly classified cells (the base rate)
    correct_cells = np.zeros(num_classes, np.int64)
    labelled_cells = np.zeros(num_classes, np.int64)
    correct_boundary = np.zeros(num_classes, np.int64)
    hard_conf: list[list[float]] = [[] for _ in range(num_classes)]
    for feature, logits, label, edge in batches:
        flag = edge[:, None].to(feature.dtype)
        builder.add(torch.cat([feature, flag], 1), logits, label)
        pred = logits.argmax(1)
        ok = (label == pred) & (label != ignore_id)
        known = label[(label != ignore_id) & (label < num_classes)].long()
        labelled_cells += np.bincount(known.numpy(), minlength=num_classes)[:num_classes]
        lab, e = label[ok].long(), edge[ok].long()
        correct_cells += np.bincount(lab.numpy(), minlength=num_classes)[:num_classes]
        correct_boundary += np.bincount(lab[e == 1].numpy(), minlength=num_classes)[:num_classes]
    keys, _ = builder.memory()
    K = slots_per_class
    per_class = []
    for c in range(num_classes):
        hard, easy = builder.hard[c], builder.easy[c]
        if c in builder.stats.empty_classes or hard.feats is None or easy.feats is None:
            per_class.append(
                {
                    "correct_pixels": 0,
                    "baseline_accuracy": 0.0 if labelled_cells[c] else None,
                    "hard_on_boundary": None,
                    "prototype_on_boundary": None,
                    "boundary_base_rate": None,
                    "hard_confidence": None,
                }
            )
            continue
        hard_conf[c] = [float(v) for v in hard.scores]
        per_class.append(
            {
                "correct_pixels": int(builder.stats.correct_per_class[c]),
                # how well the baseline already does on the memory's split (at the feature grid)
                "baseline_accuracy": float(correct_cells[c] / labelled_cells[c]) if labelled_cells[c] else None,
                "hard_on_boundary": float(hard.feats[:, -1].mean()),
                "prototype_on_boundary": float(easy.feats[:, -1].mean()),
                "boundary_base_rate": float(correct_boundary[c] / correct_cells[c]) if correct_cells[c] else None,
                "hard_confidence": [round(v, 4) for v in hard_conf[c]],
            }
        )
    value_rows = torch.stack(
        [
            builder.easy[c].feats[:, :-1].mean(0) if builder.easy[c].feats is not None else keys[c * K, :-1]
            for c in range(num_classes)
        ]
    )
    return {
        "keys": keys[:, :-1].contiguous(),
        "prototypes": value_rows,
        "per_class": per_class,
        "pixels": builder.stats.pixels,
        "empty_classes": list(builder.stats.empty_classes),
    }


def _memory_batches(
    baseline: Any, cfg: Any, data: Any, indices: list[int], radius: int, ignore_id: int, quiet: bool
) -> Iterable[tuple[Any, Any, Any, Any]]:
    import cv2
    import torch
    from tqdm import tqdm

    from vsseg_ros.core.frame_input import FramePreparer

    prep = FramePreparer(cfg.input_size, cfg.mean, cfg.std, torch.device("cpu"), channels_last=False)
    stride = baseline.feature_stride  # the memory works on the feature's grid
    for i in tqdm(indices, desc="memory", unit="frame", disable=quiet):
        image, label = data.load(i)
        x, h, w = prep(image, *image.shape[:2])
        with torch.inference_mode():
            out = baseline(x, boundary=False)
        gh, gw = -(-h // stride), -(-w // stride)  # the grid cells of the image (the rest is padding)
        lab = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST) if label.shape != (h, w) else label
        edge = cell_flags(boundary_band(lab, ignore_id, radius), (gh, gw), stride)
        lab_grid = torch.from_numpy(lab)[None]
        lab_grid = torch.nn.functional.interpolate(lab_grid[:, None].float(), size=(gh, gw), mode="nearest")[:, 0]
        yield (
            out["feature"][..., :gh, :gw].clone(),
            out["logits"][..., :gh, :gw].clone(),
            lab_grid.long(),
            torch.from_numpy(edge)[None],
        )


def analyse(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from vsseg_ros.core.checkpoint import load_checkpoint
    from vsseg_ros.core.loading import DEFAULT_WEIGHTS, load_segmenter
    from vsseg_ros.core.segmenter import Frame, OutputRequest
    from vsseg_ros.data.registry import open_dataset
    from vsseg_ros.data.sources import FRAME_NUMBER_RATE_HZ, frames_of

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.boundary_radius < 0:
        raise ValueError(f"--boundary-radius must be >= 0, got {args.boundary_radius}")
    ckpt = load_checkpoint(args.model)
    model = ckpt.build_model()
    if ckpt.config.temporal is None or getattr(model, "mar", None) is None:
        raise ValueError(f"{args.model}: not a model with MAR (temporal.mar)")
    base_path = args.baseline or str(DEFAULT_WEIGHTS)
    base_ckpt = load_checkpoint(base_path)
    if base_ckpt.config.temporal is not None:
        raise ValueError(f"{base_path}: the baseline must be a per-frame checkpoint")
    baseline = base_ckpt.build_model()
    names = list(ckpt.class_map.names)
    K, ignore_id = model.num_classes, ckpt.class_map.ignore_id
    out: dict[str, Any] = {
        "model": ckpt.model_id,
        "model_path": str(args.model),
        "baseline": base_ckpt.model_id,
        "baseline_path": base_path,
        "dataset": args.dataset,
        "boundary_radius": args.boundary_radius,
        "class_names": names,
    }

    if args.memory_split:
        data = open_dataset(args.dataset, args.root, args.memory_split)
        indices = list(range(len(data)))[: args.limit or None]
        mem = memory_contents(
            _memory_batches(baseline, base_ckpt.config, data, indices, args.boundary_radius, ignore_id, args.quiet),
            K,
            model.mar.slots_per_class,
            ignore_id,
        )
        stored = model.mar.memory_key.detach()[0].float()
        cos = torch.nn.functional.cosine_similarity(stored, mem["keys"].float(), dim=1).view(K, -1).mean(1)
        vstored = model.mar.memory_value.detach()[0].float().view(K, -1, stored.shape[-1]).mean(1)
        vcos = torch.nn.functional.cosine_similarity(vstored, mem["prototypes"].float(), dim=1)
        for c, row in enumerate(mem["per_class"]):
            row["stored_key_cosine"] = round(float(cos[c]), 4)
            row["stored_value_cosine"] = round(float(vcos[c]), 4)
        out["memory"] = {
            "split": args.memory_split,
            "frames": len(indices),
            "pixels": mem["pixels"],
            "empty_classes": [names[c] for c in mem["empty_classes"]],
            "slots_per_class": model.mar.slots_per_class,
            "per_class": dict(zip(names, mem["per_class"])),
        }

    data = open_dataset(args.dataset, args.root, args.split)
    segs = [load_segmenter(base_path, device="cpu"), load_segmenter(str(args.model), device="cpu")]
    totals = {k: np.zeros((2, K), np.int64) for k in ("labelled", *KINDS, *CORRECT)}
    frames = 0
    request = OutputRequest(boundary=False, confidence=False)
    stream = frames_of(data, FRAME_NUMBER_RATE_HZ.get(args.dataset, 30.0))
    for lf in tqdm(stream, desc="changes", unit="frame", disable=args.quiet):
        if lf.label is None:
            continue
        preds = []
        for seg in segs:
            res = seg.push(Frame(image=lf.image, stamp_ns=lf.stamp_ns, camera_id=lf.camera_id), request)
            if res is None:
                raise ValueError(f"{args.model}: no result for {lf.name} (a model with a delay is not supported)")
            preds.append(res.labels)
        band = boundary_band(lf.label, ignore_id, args.boundary_radius)
        for k, v in count_changes(preds[0], preds[1], lf.label, band, K, ignore_id).items():
            totals[k] += v
        frames += 1
        if args.limit and frames >= args.limit:
            break
    if frames == 0:
        raise ValueError(f"{args.dataset} split {args.split!r} at {args.root}: no labelled frames")
    out["changes"] = {"split": args.split, "frames": frames, **summarise_changes(totals, names)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def format_report(out: dict[str, Any]) -> str:
    lines = []
    mem = out.get("memory")
    if mem:
        lines.append(
            f"memory rebuilt from {mem['frames']} frames of {mem['split']} ({mem['slots_per_class']} keys per "
            f"class; boundary = within {out['boundary_radius']} px, per feature cell)"
        )
        lines.append(
            f"{'class':12s}{'correct px':>12s}{'acc %':>8s}{'keys on bd %':>14s}{'protos on bd %':>16s}"
            f"{'base rate %':>13s}{'key conf':>10s}{'key cos':>9s}"
        )
        for name, r in mem["per_class"].items():
            conf = "n/a" if not r["hard_confidence"] else f"{float(np.mean(r['hard_confidence'])):.2f}"
            lines.append(
                f"{name:12s}{r['correct_pixels']:>12d}{_pct(r['baseline_accuracy']):>8s}"
                f"{_pct(r['hard_on_boundary']):>14s}"
                f"{_pct(r['prototype_on_boundary']):>16s}{_pct(r['boundary_base_rate']):>13s}{conf:>10s}"
                f"{r['stored_key_cosine']:>9.3f}"
            )
    ch = out["changes"]
    lines.append(
        f"changes on {ch['frames']} frames of {ch['split']}: "
        f"{_pct(ch['all']['changed_share'])} % of labelled pixels changed, "
        f"{_pct(ch['boundary_share_of_changes'])} % of them on the boundary band "
        f"({_pct(ch['boundary_share_of_labelled'])} % of labelled pixels are)"
    )
    lines.append(
        f"{'where':12s}{'labelled':>10s}{'changed %':>11s}{'fixed %':>9s}{'broken %':>10s}{'w->w %':>8s}"
        f"{'net %':>8s}{'acc base %':>12s}{'acc MAR %':>11s}"
    )
    rows = [("all", ch["all"]), ("boundary", ch["boundary"]), ("interior", ch["interior"])]
    rows += list(ch["per_class"].items())
    for name, r in rows:
        lines.append(
            f"{name:12s}{r['labelled']:>10d}{_pct(r['changed_share']):>11s}{_pct(r['fixed_share']):>9s}"
            f"{_pct(r['broken_share']):>10s}{_pct(r['wrong_to_wrong_share']):>8s}"
            f"{_pct(r['net_fixed_share']):>8s}{_pct(r['baseline_accuracy']):>12s}"
            f"{_pct(r['mar_accuracy']):>11s}"
        )
    return "\n".join(lines)


__all__ = [
    "analyse",
    "count_changes",
    "summarise_changes",
    "memory_contents",
    "boundary_band",
    "cell_flags",
    "format_report",
]
