"""Stages 2 and 3: the temporal modules (STF, then MAR) on top of a trained, frozen per-frame network.

As the reference does, the per-frame network (backbone + head) is trained first (stage 1,
:mod:`vsseg_ros.training.perframe`) and frozen here: stage 2 trains STF on clips with the label on the target
frame only; stage 3 builds the MAR memory from the training set with the STF-fused features
(:mod:`vsseg_ros.core.memory_bank`) and fine-tunes MAR (its memory included) with STF frozen.

``train_temporal(config_path)`` reads a YAML recipe (``config/train/*stf*.yaml``)::

    stage: temporal
    model: config/models/mbv2_lite_stf_mar.yaml   # a temporal ModelConfig (mapping or path)
    model_id: mbv2_lite_stf_mar_camvid
    init: vsseg_ros/weights/default.pt            # per-frame checkpoint: fills model.perframe (frozen)
    data:  {dataset, root, train_split, val_split, clip_size, clips: {...StillClipDataset options}}
    train: {seed, batch_size, stf_iters, mar_iters, time_budget_min, mar_share, lr, weight_decay, grad_clip,
            warmup_iters, class_weighting, val_every_min, log_every, threads}

Validation streams the whole validation split in order through :class:`TemporalSegmenter` (causal or centred,
as configured) and scores it with :class:`StreamScorer` (mIoU and mVC8, as ``vsseg-ros eval`` does); the
per-frame model is scored the same way once, so every log line shows the gain over it. ``best.pt`` is the
checkpoint with the best validation mIoU among those whose mVC8 is not below the per-frame model's.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.classes import IGNORE_ID
from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.training.perframe import (SeedStream, TrainConfigError, _append_jsonl, _atomic_torch_save,
                                         _merge, _repo_root_for, _seed_everything, class_weights, lr_factor,
                                         plot_curve, read_recipe_file)

DATA_DEFAULTS: dict[str, Any] = {
    "dataset": "camvid", "root": "../shared/data/camvid", "train_split": "train", "val_split": "val",
    "clip_size": [288, 384], "clips": None, "memory_split": "train",  # clips: StillClipDataset options
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 0, "batch_size": 4, "stf_iters": 1500, "mar_iters": 500, "time_budget_min": None, "mar_share": 0.3,
    "lr": 2e-4, "mar_lr": 1e-4, "weight_decay": 1e-4, "grad_clip": 1.0, "warmup_iters": 50,
    "schedule": "cosine", "poly_power": 0.9, "min_lr_ratio": 0.05, "class_weighting": "sqrt_median_freq",
    "val_every_min": 8.0, "log_every": 10, "threads": None, "memory_batches": None,
}
STATE_FORMAT = "vsseg_ros.temporal_train_state"


def load_temporal_recipe(config_path: Union[str, Path], data_root: Optional[Union[str, Path]] = None
                         ) -> dict[str, Any]:
    """The recipe with defaults filled in and paths resolved; TrainConfigError naming the field otherwise."""
    path, raw = read_recipe_file(config_path)
    if not isinstance(raw, dict) or raw.get("stage") != "temporal":
        raise TrainConfigError(f"{path}: a temporal recipe has `stage: temporal` at the top level")
    unknown = sorted(set(raw) - {"stage", "model", "model_id", "init", "data", "train"})
    if unknown:
        raise TrainConfigError(f"{path}: unknown top-level field(s): {', '.join(unknown)}; "
                               "known: stage, model, model_id, init, data, train")
    repo = _repo_root_for(path)
    section = raw.get("model")
    try:
        if isinstance(section, str):
            mp = Path(section)
            model = ModelConfig.from_yaml(mp if mp.is_absolute() else repo / mp)
        else:
            model = ModelConfig.from_dict(section or {})
    except ConfigError as e:
        raise TrainConfigError(f"{path}: model: {e}") from None
    if model.temporal is None:
        raise TrainConfigError(f"{path}: model has no `temporal` section; train per-frame models with the "
                               "stage-1 recipe (config/train/mbv2_lite_camvid.yaml)")
    data = _merge(DATA_DEFAULTS, raw.get("data"), "data", path)
    train = _merge(TRAIN_DEFAULTS, raw.get("train"), "train", path)
    init = raw.get("init")
    if not isinstance(init, str) or not init:
        raise TrainConfigError(f"{path}: init must name the per-frame checkpoint the temporal model starts from")
    init_path = Path(init) if Path(init).is_absolute() else repo / init
    root = Path(data_root).expanduser() if data_root is not None else Path(str(data["root"])).expanduser()
    if data_root is None and not root.is_absolute():
        root = repo / root
    cs = data["clip_size"]
    if not (isinstance(cs, (list, tuple)) and len(cs) == 2 and all(isinstance(v, int) and v > 0 for v in cs)):
        raise TrainConfigError(f"{path}: data.clip_size must be [height, width], got {cs!r}")
    return {"path": path, "raw": raw, "model": model, "model_id": str(raw.get("model_id") or model.name),
            "init": init_path, "data": data, "train": train, "root": root.resolve()}


# -- model --------------------------------------------------------------------------------------------


def build_from_init(config: ModelConfig, init: Path) -> nn.Module:
    """A TemporalSegNet whose per-frame network carries the stage-1 weights of ``init`` (a per-frame checkpoint
    of the same backbone/head); the temporal modules start from their own initialisation."""
    from vsseg_ros.core.checkpoint import CheckpointError, load_checkpoint, load_state_dict_checked
    from vsseg_ros.core.models.temporal import TemporalSegNet

    ckpt = load_checkpoint(init)
    if ckpt.config.temporal is not None:
        raise CheckpointError(f"{init}: init must be a per-frame checkpoint (stage 1), this one is temporal")
    model = TemporalSegNet(config)
    load_state_dict_checked(model.perframe, ckpt.state_dict, source=str(init))
    return model


def freeze(module: Optional[nn.Module]) -> None:
    """No gradients and eval mode (BatchNorm statistics and dropout fixed) for ``module``."""
    if module is None:
        return
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


def normalise(frames: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (or 0-255 float) ``(..., 3, h, w)`` RGB -> the network's normalised float input."""
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255.0
    return (frames.float() - m) / s


def clip_loss(logits: Tensor, label: Tensor, weight: Optional[Tensor]) -> Tensor:
    """Cross-entropy (ignore 255) of the stride-s logits upsampled to the label's size."""
    up = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(up, label, weight=weight, ignore_index=IGNORE_ID)
    return loss if torch.isfinite(loss) else up.sum() * 0.0


def window_logits(model: nn.Module, x: Tensor, target: int, refine: bool) -> dict[str, Optional[Tensor]]:
    """Fused outputs for a batch of clips ``x`` (N, T, 3, h, w): frame features without gradients (the
    per-frame network is frozen), fusion with them (MAR only if ``refine``)."""
    with torch.no_grad():
        feats = [model.frame_features(x[:, i]) for i in range(x.shape[1])]
    return model.fuse(feats, target, boundary=False, refine=refine)


def without_mar(model: nn.Module, config: ModelConfig) -> tuple[nn.Module, ModelConfig]:
    """A copy of ``model`` and its config with MAR removed (the STF stage runs and is saved without it: an
    unbuilt memory would only disturb the features)."""
    m = copy.deepcopy(model)
    m.mar = None
    temporal = dict(config.temporal or {})
    temporal["mar"] = None
    return m, config.replace(temporal=temporal)


# -- validation ---------------------------------------------------------------------------------------


def stream_scores(segmenter: Any, data: Any, class_names: Sequence[str], dataset: str) -> dict[str, Any]:
    """mIoU, per-class IoU and mVC8/16 of ``segmenter`` streamed over ``data`` in sequence order, exactly as
    ``vsseg-ros eval`` runs it (flow consistency off for speed)."""
    from vsseg_ros.data.sources import FRAME_NUMBER_RATE_HZ, frames_of
    from vsseg_ros.metrics.evaluate import evaluate_stream
    from vsseg_ros.metrics.scorer import StreamScorer

    scorer = StreamScorer(class_names, flow_consistency=False)
    frames = frames_of(data, FRAME_NUMBER_RATE_HZ.get(dataset, 30.0))
    evaluate_stream([segmenter], frames, [scorer], warmup=0)
    return scorer.result()


# -- the trainer --------------------------------------------------------------------------------------


def _pct(v: Optional[float], signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f} %"


def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else a - b


def _segmenter(model: nn.Module, class_map: Any, model_id: str) -> Any:
    from vsseg_ros.core.temporal_segmenter import TemporalSegmenter

    return TemporalSegmenter(model, class_map, model_id, device="cpu")  # it takes its own copy


def _perframe_baseline(init: Path, val_data: Any, class_names: Sequence[str], dataset: str) -> dict[str, Any]:
    from vsseg_ros.core.loading import load_segmenter

    return stream_scores(load_segmenter(str(init), device="cpu"), val_data, class_names, dataset)


def _loop(model: nn.Module, params: list[nn.Parameter], loader_iter: Any, iters: int, lr: float, tr: dict,
          weight: Optional[Tensor], stage: str, log: Any, validate: Any, deadline: Optional[float],
          progress: bool) -> int:
    """One stage's optimisation: AdamW over ``params``, warm-up then cosine decay over the stage's progress
    (steps or its share of the time budget, whichever is further), validation every ``val_every_min``."""
    from tqdm import tqdm

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=float(tr["weight_decay"]))
    t0 = time.monotonic()
    last_val = t0
    bar = tqdm(total=iters, desc=stage, ncols=110, disable=not progress, mininterval=5.0, file=sys.stdout)
    ema: Optional[float] = None
    step = 0
    target = model.target_index(model.frames)
    try:
        while step < iters:
            progress_f = step / iters
            if deadline is not None:
                progress_f = max(progress_f, (time.monotonic() - t0) / max(deadline - t0, 1e-6))
            if progress_f >= 1.0:
                break
            for g in optimizer.param_groups:
                g["lr"] = lr * lr_factor(step, progress_f, tr)
            batch = next(loader_iter)
            x = normalise(batch["frames"], model.perframe.config.mean, model.perframe.config.std)
            out = window_logits(model, x, target, refine=stage == "mar")
            loss = clip_loss(out["logits"], batch["label"].long(), weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tr.get("grad_clip"):
                nn.utils.clip_grad_norm_(params, float(tr["grad_clip"]))
            optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"{stage}: the loss became {value} at step {step}; lower train.lr")
            step += 1
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
            if step % max(1, int(tr["log_every"])) == 0:
                log({"stage": stage, "step": step, "loss": value, "lr": optimizer.param_groups[0]["lr"]})
            if tr.get("val_every_min") and time.monotonic() - last_val >= float(tr["val_every_min"]) * 60.0:
                validate(stage, step)
                last_val = time.monotonic()
    finally:
        bar.close()
    validate(stage, step)
    return step


def train_temporal(config_path: Union[str, Path], out_dir: Optional[Path] = None,
                   data_root: Optional[Path] = None, threads: Optional[int] = None,
                   stf_iters: Optional[int] = None, mar_iters: Optional[int] = None,
                   command: Optional[str] = None, progress: bool = True) -> Path:
    """Train STF (stage 2) and MAR (stage 3) from the recipe at ``config_path``; return ``best.pt``'s path."""
    from vsseg_ros.core.checkpoint import save_checkpoint
    from vsseg_ros.core.memory_bank import build_memory
    from vsseg_ros.data.clips import StillClipDataset
    from vsseg_ros.data.registry import open_dataset

    recipe = load_temporal_recipe(config_path, data_root)
    tr, dc, cfg = recipe["train"], recipe["data"], recipe["model"]
    if stf_iters is not None:
        tr["stf_iters"] = int(stf_iters)
    if mar_iters is not None:
        tr["mar_iters"] = int(mar_iters)
    if threads or tr.get("threads"):
        torch.set_num_threads(int(threads or tr["threads"]))
    out_dir = Path(out_dir) if out_dir is not None else Path("out/train") / Path(config_path).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, best_path = out_dir / "train_log.jsonl", out_dir / "best.pt"
    for p in (log_path, out_dir / "loss_log.jsonl"):
        p.unlink(missing_ok=True)
    command = command or shlex.join([Path(sys.executable).name] + sys.argv)
    seed = int(tr["seed"])
    _seed_everything(seed)

    model = build_from_init(cfg, recipe["init"])
    freeze(model.perframe)
    train_data = open_dataset(dc["dataset"], recipe["root"], dc["train_split"])
    val_data = open_dataset(dc["dataset"], recipe["root"], dc["val_split"])
    class_map = train_data.class_map
    names = list(class_map.names)
    clips = StillClipDataset(train_data, frames=model.frames, target=model.target_index(model.frames),
                             size=tuple(dc["clip_size"]), seed=seed, **dict(dc["clips"] or {}))
    counts = train_data.class_pixel_counts()
    weight = torch.from_numpy(class_weights(counts, str(tr["class_weighting"])))

    t_start = time.monotonic()
    budget = float(tr["time_budget_min"]) * 60.0 if tr.get("time_budget_min") else None
    print("scoring the per-frame model on the validation split (the bar to beat) ...", flush=True)
    base = _perframe_baseline(recipe["init"], val_data, names, dc["dataset"])
    print(f"per-frame: mIoU {_pct(base['miou'])}, mVC8 {_pct(base['mvc8'])}", flush=True)
    history: list[dict[str, Any]] = []
    best = {"score": -1.0}

    def log(record: dict[str, Any]) -> None:
        _append_jsonl(out_dir / "loss_log.jsonl", {**record, "elapsed_s": round(time.monotonic() - t_start, 1)})

    def validate(stage: str, step: int) -> None:
        t0 = time.monotonic()
        if stage == "stf" and model.mar is not None:
            net, net_cfg = without_mar(model, cfg)
        else:
            net, net_cfg = model, cfg
        # the segmenter runs an eval-mode copy: the modules being trained keep their modes
        res = stream_scores(_segmenter(net, class_map, recipe["model_id"]), val_data, names, dc["dataset"])
        gain = {k: _diff(res[k], base[k]) for k in ("miou", "mvc8")}
        ok = gain["mvc8"] is None or gain["mvc8"] >= 0.0  # (None: the split is shorter than 8 frames)
        record = {"stage": stage, "step": step, "elapsed_min": round((time.monotonic() - t_start) / 60, 2),
                  "val_miou": res["miou"], "val_mvc8": res["mvc8"], "val_mvc16": res["mvc16"],
                  "val_iou": res["per_class_iou"], "gain_miou": gain["miou"], "gain_mvc8": gain["mvc8"],
                  "perframe_miou": base["miou"], "perframe_mvc8": base["mvc8"],
                  "val_s": round(time.monotonic() - t0, 1)}
        history.append(record)
        improved = ok and (res["miou"] or 0.0) > best["score"]
        record["best"] = improved
        if improved:
            best["score"] = res["miou"] or 0.0
            meta = {"dataset": dc["dataset"], "data_root": str(recipe["root"]), "train_config": recipe["raw"],
                    "train_config_path": str(recipe["path"]), "command": command, "init": str(recipe["init"]),
                    "split": dc["val_split"], "val_miou": res["miou"], "val_mvc8": res["mvc8"],
                    "val_mvc16": res["mvc16"], "per_class_iou": res["per_class_iou"], "stage": stage,
                    "iterations": step, "perframe_val_miou": base["miou"], "perframe_val_mvc8": base["mvc8"]}
            save_checkpoint(best_path, net, net_cfg, class_map, recipe["model_id"], meta=meta)
        _append_jsonl(log_path, record)
        plot_curve([(i, h["val_miou"] or 0.0) for i, h in enumerate(history)], out_dir / "val_miou.png",
                   title=f"{recipe['model_id']} val mIoU (per-frame {_pct(base['miou'])})")
        print(f"\n[val] {stage} step {step}: mIoU {_pct(res['miou'])} ({_pct(gain['miou'], True)}), mVC8 "
              f"{_pct(res['mvc8'])} ({_pct(gain['mvc8'], True)}) vs per-frame [{record['val_s']} s]", flush=True)

    def loader(stream_seed: int) -> Any:
        # (index, augmentation seed) keys: every draw is a new clip, reproducible from the seed
        return iter(torch.utils.data.DataLoader(clips, batch_size=int(tr["batch_size"]), num_workers=0,
                                                sampler=SeedStream(len(clips), stream_seed)))

    stages_left = budget
    # stage 2: STF on frozen per-frame features
    if model.stf is not None and int(tr["stf_iters"]) > 0:
        freeze(model.mar)
        model.stf.train()
        share = 1.0 - float(tr["mar_share"]) if model.mar is not None else 1.0
        deadline = (time.monotonic() + stages_left * share) if stages_left else None
        params = [p for p in model.stf.parameters()]
        for p in params:
            p.requires_grad_(True)
        _loop(model, params, loader(seed), int(tr["stf_iters"]), float(tr["lr"]), tr, weight, "stf", log, validate,
              deadline, progress)
        freeze(model.stf)
    # stage 3: MAR memory from the training set with the fused features, then MAR fine-tuning
    if model.mar is not None and int(tr["mar_iters"]) > 0:
        print("building the MAR memory from the training clips ...", flush=True)
        target = model.target_index(model.frames)

        def batches() -> Any:
            n = int(tr["memory_batches"] or math.ceil(len(clips) / int(tr["batch_size"])))
            it = loader(seed + 1)
            for _ in range(n):
                b = next(it)
                x = normalise(b["frames"], cfg.mean, cfg.std)
                with torch.no_grad():
                    feats = [model.frame_features(x[:, i]) for i in range(x.shape[1])]
                    fused = model.fuse(feats, target, boundary=False, refine=False)
                yield fused["feature"], fused["logits"], b["label"].long()

        stats = build_memory(model.mar, batches(), num_classes=cfg.num_classes)
        print(f"memory built from {stats.pixels} labelled pixels; classes without a correct pixel: "
              f"{stats.empty_classes or 'none'}", flush=True)
        model.mar.train()
        # MAR changes the feature the classifier reads (LayerNorm): the classifier learns along with it
        head = model.perframe.head
        classifier = getattr(head, "classifier", None) or getattr(head, "conv_seg")
        params = list(model.mar.parameters()) + list(classifier.parameters())
        for p in params:
            p.requires_grad_(True)
        remaining = (t_start + budget - time.monotonic()) if budget else None
        deadline = (time.monotonic() + max(remaining, 60.0)) if remaining is not None else None
        _loop(model, params, loader(seed + 2), int(tr["mar_iters"]), float(tr["mar_lr"]), tr, weight, "mar", log,
              validate, deadline, progress)
        freeze(model.mar)
        freeze(model.perframe)
    _atomic_torch_save({"format": STATE_FORMAT, "model": model.state_dict(), "history": history,
                        "config": cfg.to_dict()}, out_dir / "last.pt")
    print(f"done in {(time.monotonic() - t_start) / 60:.1f} min; best {best_path if best_path.exists() else 'none'}",
          flush=True)
    return best_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vsseg_ros.training.temporal",
                                description="Train STF and MAR on a frozen per-frame network (stages 2 and 3).")
    p.add_argument("--config", required=True, type=Path, help="e.g. config/train/mbv2_lite_stf_mar_camvid.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/train/<config name>)")
    p.add_argument("--data-root", type=Path, default=None, help="override data.root")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--stf-iters", type=int, default=None, help="override train.stf_iters")
    p.add_argument("--mar-iters", type=int, default=None, help="override train.mar_iters")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "-m", "vsseg_ros.training.temporal",
                          *(sys.argv[1:] if argv is None else list(argv))])
    try:
        best = train_temporal(args.config, out_dir=args.out, data_root=args.data_root, threads=args.threads,
                              stf_iters=args.stf_iters, mar_iters=args.mar_iters, command=command,
                              progress=not args.no_progress)
    except (TrainConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
