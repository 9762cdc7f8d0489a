"""One session of the per-frame trainer (stage 1) in this process: the model (ImageNet, a warm start or
``last.pt``), the augmented CamVid stream, the optimisation loop, validation every so often with ``best.pt``
kept, and ``last.pt`` for ``--resume``. :func:`vsseg_ros.training.perframe.run_training` starts it; the recipe
and the outputs are described there."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.data.camvid import CamVid, CamVidTrainDataset
from vsseg_ros.data.copy_paste import ClassCopyPaste
from vsseg_ros.data.transforms import TrainAugment
from vsseg_ros.training.checkpointing import (
    PERFRAME_STATE_FORMAT,
    append_jsonl,
    atomic_torch_save,
    provenance,
    read_perframe_state,
)
from vsseg_ros.training.curves import plot_curve
from vsseg_ros.training.loop import LossBar, ValidationSchedule
from vsseg_ros.training.losses import class_weights, mean_loss_parts, segmentation_loss
from vsseg_ros.training.optim import WeightAverage, check_finite, lr_factor, optimiser_step, param_groups, progress_of
from vsseg_ros.training.recipe import Recipe, TrainConfigError
from vsseg_ros.training.session import (
    RunClock,
    RunFiles,
    command_line,
    printer,
    seed_everything,
    set_threads,
    shard_batch,
)
from vsseg_ros.training.stream import stream_loader
from vsseg_ros.training.validation import Best, evaluate


@dataclass
class TrainResult:
    """What :func:`run_training` leaves: the best checkpoint's path and the trained model (this rank's copy)."""

    best_path: Path
    model: PerFrameSegNet
    step: int
    best_miou: float
    best_step: int


def _initial_model(recipe: Recipe, resume: bool, config_path: Path, say: Any) -> PerFrameSegNet:
    """A PerFrameSegNet of the recipe: warm-started from ``train.init``, else ImageNet-initialised (unless
    resuming: ``last.pt`` then gives the weights)."""
    tr = recipe.train
    model = PerFrameSegNet(recipe.model)
    if tr["init"] and not resume:
        from vsseg_ros.core.checkpoint import load_checkpoint, load_state_dict_checked

        init_ckpt = load_checkpoint(tr["init"])
        if init_ckpt.config.temporal is not None:
            raise TrainConfigError(
                f"{config_path}: train.init={tr['init']} is a temporal checkpoint; this trainer "
                "starts from a per-frame one"
            )
        state = {k: v.float() if v.is_floating_point() else v for k, v in init_ckpt.state_dict.items()}
        added = ""
        if model.detail is not None and not init_ckpt.config.detail_head:
            # a detail head on a model without one: it starts at zero, i.e. from the warm start's own logits
            state.update({f"detail.{k}": v for k, v in model.detail.state_dict().items()})
            added = "; the detail head starts at zero"
        load_state_dict_checked(model, state, source=str(tr["init"]))
        say(f"warm start from {tr['init']} ({init_ckpt.model_id}){added}", flush=True)
    elif tr["pretrained"] == "imagenet" and not resume:
        model.load_imagenet_backbone()
    return model


def _train_dataset(recipe: Recipe, train_data: CamVid) -> CamVidTrainDataset:
    """The augmented training crops, decoded once (workers forked after this share the pages)."""
    dc, cfg = recipe.data, recipe.model
    jitter = dc["jitter"]
    augment = TrainAugment(
        crop_size=tuple(dc["crop_size"]),
        scale_range=tuple(dc["scale_range"]),
        hflip=float(dc["hflip"]),
        brightness=float(jitter["brightness"]),
        contrast=float(jitter["contrast"]),
        saturation=float(jitter["saturation"]),
        hue=float(jitter["hue"]),
        jitter_p=float(jitter["p"]),
    )
    cp = dc["copy_paste"]
    names = list(train_data.class_map.names)
    paste = (
        ClassCopyPaste([names.index(c) for c in cp["classes"]], float(cp["p"]), float(cp["max_shift"]))
        if float(cp["p"]) > 0
        else None
    )
    dataset = CamVidTrainDataset(
        train_data,
        augment,
        mean=cfg.mean,
        std=cfg.std,
        boundary_radius=int(dc["boundary_radius"] or 0) or None,
        cache=True,
        copy_paste=paste,
    )
    dataset.preload()
    return dataset


def _optimizer(model: PerFrameSegNet, tr: dict[str, Any]) -> torch.optim.Optimizer:
    groups = param_groups(model, float(tr["lr"]), float(tr["head_lr_mult"]), float(tr["weight_decay"]))
    if tr["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=float(tr["lr"]))
    return torch.optim.SGD(groups, lr=float(tr["lr"]), momentum=float(tr["momentum"]), nesterov=True)


def train_session(
    recipe: Recipe,
    ctx: Any,
    config_path: Path,
    out_dir: Optional[Path],
    resume: bool,
    max_iters: Optional[int],
    threads: Optional[int],
    command: Optional[str],
    progress: bool,
) -> TrainResult:
    """Train (or continue, ``resume``) the recipe's per-frame model in this process of the group ``ctx``."""
    from vsseg_ros.core.checkpoint import save_checkpoint

    t_start = time.monotonic()
    tr, dc = recipe.train, recipe.data
    main_rank = ctx.is_main
    say = printer(main_rank)
    if max_iters is not None:
        if max_iters < 1:
            raise TrainConfigError(f"max_iters must be >= 1, got {max_iters}")
        tr["max_iters"] = int(max_iters)
    batch_size = int(tr["batch_size"])
    shard = shard_batch(batch_size, ctx.world_size, config_path)
    set_threads(threads, tr.get("threads"))
    files = RunFiles(out_dir, config_path)
    command = command_line(command)
    device = ctx.device

    seed = int(tr["seed"])
    seed_everything(seed)  # the same initial weights on every rank (DDP also copies rank 0's)
    cfg = recipe.model
    model = _initial_model(recipe, resume, config_path, say)
    model.to(device)
    model.train()
    averaged = WeightAverage(model, float(tr["ema"])) if tr.get("ema") else None

    train_data = CamVid(recipe.data_root, dc["train_split"], num_classes=cfg.num_classes)
    val_data = CamVid(recipe.data_root, dc["val_split"], num_classes=cfg.num_classes)
    dataset = _train_dataset(recipe, train_data)
    counts = np.zeros(cfg.num_classes, np.int64)
    for _, lab in dataset.pairs.kept():
        counts += np.bincount(lab.ravel(), minlength=256)[: cfg.num_classes]
    weights_np = class_weights(counts, str(tr["class_weighting"]))
    weight = torch.from_numpy(weights_np).to(device)
    optimizer = _optimizer(model, tr)

    step, elapsed_before, best = 0, 0.0, Best()
    history: list[dict[str, Any]] = []
    if resume:
        state = read_perframe_state(files.last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if averaged is not None:
            if state.get("ema") is None:
                raise ValueError(f"resume: {files.last} has no weight average but the recipe sets train.ema")
            averaged.model.load_state_dict(state["ema"])
        step = int(state["step"])
        elapsed_before = float(state["elapsed_s"])
        best = Best(float(state["best_miou"]), int(state["best_step"]))
        history = list(state.get("history", []))
        torch.set_rng_state(state["torch_rng"])
        say(
            f"resuming from {files.last} at step {step} ({elapsed_before / 60:.1f} min trained, "
            f"best mIoU {100 * best.score:.2f} % at step {best.step})",
            flush=True,
        )
    elif main_rank:
        files.start_fresh()

    # every parameter must take part in each step's gradient sync unless DDP is told to look for idle ones
    uses_boundary = (
        float(tr["boundary_loss_weight"] or 0.0) > 0
        and dataset.boundary_radius is not None
        and model.boundary_head is not None
    )
    idle_params = getattr(model, "aux_head", None) is not None or (
        model.boundary_head is not None and not uses_boundary
    )
    net: nn.Module = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=idle_params
        )

    budget_s = float(tr["time_budget_min"]) * 60.0 if tr.get("time_budget_min") else None
    max_it = int(tr["max_iters"])
    timer = RunClock(ctx, elapsed_before)

    def meta_common() -> dict[str, Any]:
        return provenance(
            "camvid",
            recipe.data_root,
            recipe.raw,
            config_path,
            command,
            processes=ctx.world_size,
            class_weights=[float(w) for w in weights_np],
            class_pixel_counts=counts.tolist(),
        )

    def save_last() -> None:
        if not main_rank:
            return
        atomic_torch_save(
            {
                "format": PERFRAME_STATE_FORMAT,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed_s": timer.elapsed(),
                "ema": averaged.model.state_dict() if averaged is not None else None,
                "best_miou": best.score,
                "best_step": best.step,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "config": cfg.to_dict(),
                "meta": meta_common(),
            },
            files.last,
        )

    val_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def validate(train_stats: dict[str, float]) -> float:
        t0 = time.monotonic()
        ctx.sync_buffers(model)
        ctx.check_in_sync(model)

        def score(net_: PerFrameSegNet) -> dict[str, Any]:
            cm = evaluate(
                net_,
                val_data,
                cfg.mean,
                cfg.std,
                int(dc["val_batch_size"]),
                cache=val_cache,
                rank=ctx.rank,
                world_size=ctx.world_size,
            )
            cm.matrix[:] = ctx.all_reduce_int(cm.matrix)
            cm.invalid_pred[:] = ctx.all_reduce_int(cm.invalid_pred)
            return cm.summary(CAMVID.names)

        # With a weight average both are scored and the one with the higher val mIoU is the candidate for best.pt:
        # the average helps while the rate is high but lags the trained weights once the poly decay has ended.
        nets = ([("average", averaged.model)] if averaged is not None else []) + [("trained", model)]
        scored = {name: (net, score(net)) for name, net in nets}
        # max keeps the first of equals: the average on a tie
        kept_name = max(scored, key=lambda name: scored[name][1]["miou"] or 0.0)
        kept, summ = scored[kept_name]
        miou = summ["miou"] if summ["miou"] is not None else 0.0
        improved = best.offer(miou, step)
        record = {
            "step": step,
            "epoch": step * batch_size / len(train_data),
            "elapsed_min": round(timer.elapsed() / 60.0, 2),
            "lr": optimizer.param_groups[0]["lr"],
            **{f"train_{k}": v for k, v in train_stats.items()},
            "val_miou": miou,
            "val_pixel_accuracy": summ["pixel_accuracy"],
            "val_iou": summ["iou"],
            **(
                {
                    "val_miou_trained_weights": scored["trained"][1]["miou"],
                    "val_miou_average": scored["average"][1]["miou"],
                    "kept": kept_name,
                }
                if averaged is not None
                else {}
            ),
            "val_s": round(time.monotonic() - t0, 1),
            "best": improved,
        }
        history.append({"step": step, "miou": miou})
        if improved and main_rank:
            meta = {
                **meta_common(),
                "split": dc["val_split"],
                "val_miou": miou,
                "val_pixel_accuracy": summ["pixel_accuracy"],
                "per_class_iou": summ["iou"],
                "iterations": step,
                "epochs": record["epoch"],
                "train_minutes": record["elapsed_min"],
                "val_size": [int(s) for s in val_cache[0][1].shape] if 0 in val_cache else None,
                "weights": kept_name,
            }
            save_checkpoint(files.best, kept, cfg, CAMVID, recipe.model_id, meta=meta)
        if main_rank:
            append_jsonl(files.log, record)
            save_last()
            plot_curve([(h["step"], h["miou"]) for h in history], files.curve, title=f"{recipe.model_id} val mIoU")
        worst = sorted(((v if v is not None else 0.0), k) for k, v in summ["iou"].items())[:3]
        say(
            f"\n[val] step {step}: mIoU {100 * miou:.2f} %  pixel acc {100 * (summ['pixel_accuracy'] or 0):.2f} %"
            f"  (best {100 * best.score:.2f} % at step {best.step}); weakest: "
            + ", ".join(f"{k} {100 * v:.1f}" for v, k in worst)
            + f"  [{record['val_s']} s]",
            flush=True,
        )
        return miou

    def finish() -> TrainResult:
        ctx.sync_buffers(model)
        ctx.barrier()  # rank 0's files are complete when any rank returns
        return TrainResult(files.best, model, step, best.score, best.step)

    clock = timer.shared()
    if step >= max_it or progress_of(step, max_it, clock, budget_s) >= 1.0:
        if not ctx.broadcast(float(files.best.is_file())):  # rank 0's view: every rank must take the same branch
            validate({})
        return finish()

    loader = stream_loader(
        dataset,
        seed,
        step * batch_size,
        ctx.rank,
        ctx.world_size,
        shard,
        workers=int(dc["num_workers"]),
        pin_memory=device.type == "cuda",
    )
    log_every = max(1, int(tr["log_every"] or 1))
    schedule = ValidationSchedule(tr, clock)
    sums: dict[str, float] = {}
    nsum = 0
    bar = LossBar(max_it, step, "train", progress and main_rank)
    it_t0, it_step0 = time.monotonic(), step
    data_iter = iter(loader)
    finished = False
    try:
        while not finished:
            batch = next(data_iter)
            factor = lr_factor(step, progress_of(step, max_it, clock, budget_s), tr)
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * factor
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            boundary = batch.get("boundary")
            if boundary is not None:
                boundary = boundary.to(device, non_blocking=True)
            out = net(image, boundary=boundary is not None)
            loss, local_parts = segmentation_loss(out, label, boundary, weight, tr)
            optimiser_step(optimizer, loss, model.parameters(), tr.get("grad_clip"))
            if averaged is not None:
                averaged.update()
            parts = mean_loss_parts(local_parts, ctx)
            check_finite(parts["loss"], step)
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            nsum += 1
            bar.step(parts["loss"], lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            clock = timer.shared()
            if step % log_every == 0 and main_rank:
                append_jsonl(
                    files.loss_log,
                    {"step": step, "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(clock, 1), **parts},
                )
            finished = step >= max_it or progress_of(step, max_it, clock, budget_s) >= 1.0
            if finished or schedule.due(step, clock):
                stats = {k: v / max(nsum, 1) for k, v in sums.items()}
                stats["s_per_iter"] = (time.monotonic() - it_t0) / max(step - it_step0, 1)
                validate(stats)
                sums, nsum = {}, 0
                clock = timer.shared()
                schedule.done(clock)
                it_t0, it_step0 = time.monotonic(), step
    finally:
        bar.close()
        del data_iter
    total_min = (time.monotonic() - t_start) / 60.0
    say(
        f"done: {step} iterations, best val mIoU {100 * best.score:.2f} % at step {best.step}; "
        f"{total_min:.1f} min this session; best checkpoint {files.best}",
        flush=True,
    )
    return finish()
