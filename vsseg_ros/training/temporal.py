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
    train: {seed, batch_size, stf_iters, mar_iters, time_budget_min, mar_share, lr, mar_lr,
            classifier_lr_mult, weight_decay, grad_clip, warmup_iters, class_weighting, val_every_min,
            log_every, threads}

A model with ``temporal.frames: 1`` and no STF (``config/models/mbv2_lite_mar.yaml``) skips stage 2: MAR on the
per-frame default, trained on the stills themselves (clips of one frame), selected on mIoU alone.

Validation streams the whole validation split in order through :class:`TemporalSegmenter` (causal or centred,
as configured) and scores it with :class:`StreamScorer` (mIoU and mVC8, as ``vsseg-ros eval`` does); the
per-frame model is scored the same way once, so every log line shows the gain over it. ``best.pt`` is the
checkpoint with the best validation mIoU among those whose mVC8 is not below the per-frame model's.

``last.pt`` (written at every validation, once the MAR memory is built and when a stage ends) holds the whole
training state: weights, the stage's optimiser, the stage and step, the elapsed time, the history, the best
score, the RNG and the recipe. ``resume=True`` (``--resume``) continues from it on the data stream an
uninterrupted run would draw (:class:`SeedStream` from the saved step) and never rebuilds a memory it holds.

Data-parallel: ``torchrun --nproc_per_node N -m vsseg_ros.training.temporal --config ...`` trains with N CPU
processes (gloo); ``train.batch_size`` stays the batch of one step over all of them. See
:func:`run_temporal_training`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.classes import IGNORE_ID
from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.training.perframe import (
    SeedStream,
    TrainConfigError,
    _append_jsonl,
    _atomic_torch_save,
    _merge,
    _repo_root_for,
    _seed_everything,
    class_weights,
    lr_factor,
    plot_curve,
    read_recipe_file,
)

DATA_DEFAULTS: dict[str, Any] = {
    "dataset": "camvid",
    "root": "../shared/data/camvid",
    "train_split": "train",
    "val_split": "val",
    "clip_size": [288, 384],
    "clips": None,
    "memory_split": "train",  # clips: StillClipDataset options
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "batch_size": 4,
    "stf_iters": 1500,
    "mar_iters": 500,
    "time_budget_min": None,
    "mar_share": 0.3,
    "lr": 2e-4,
    "mar_lr": 1e-4,
    "classifier_lr_mult": 1.0,
    "weight_decay": 1e-4,
    "grad_clip": 1.0,
    "warmup_iters": 50,
    "schedule": "cosine",
    "poly_power": 0.9,
    "min_lr_ratio": 0.05,
    "class_weighting": "sqrt_median_freq",
    "val_every_min": 8.0,
    "log_every": 10,
    "threads": None,
    "memory_batches": None,
}
STATE_FORMAT = "vsseg_ros.temporal_train_state"


def load_temporal_recipe(config_path: Union[str, Path], data_root: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """The recipe with defaults filled in and paths resolved; TrainConfigError naming the field otherwise."""
    path, raw = read_recipe_file(config_path)
    if not isinstance(raw, dict) or raw.get("stage") != "temporal":
        raise TrainConfigError(f"{path}: a temporal recipe has `stage: temporal` at the top level")
    unknown = sorted(set(raw) - {"stage", "model", "model_id", "init", "data", "train"})
    if unknown:
        raise TrainConfigError(
            f"{path}: unknown top-level field(s): {', '.join(unknown)}; "
            "known: stage, model, model_id, init, data, train"
        )
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
        raise TrainConfigError(
            f"{path}: model has no `temporal` section; train per-frame models with the "
            "stage-1 recipe (config/train/mbv2_lite_camvid.yaml)"
        )
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
    return {
        "path": path,
        "raw": raw,
        "model": model,
        "model_id": str(raw.get("model_id") or model.name),
        "init": init_path,
        "data": data,
        "train": train,
        "root": root.resolve(),
    }


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


# -- the training state (last.pt) ---------------------------------------------------------------------


@dataclass
class StagePosition:
    """Where training stands, as ``last.pt`` records it: the stage (``"stf"`` or ``"mar"``), the optimisation
    steps taken in it, whether its loop has ended (final validation done), and its clock: the run's elapsed time
    when the stage began and the stage's share of the time budget (None: no budget)."""

    stage: str = "stf"
    step: int = 0
    finished: bool = False
    start_s: float = 0.0
    budget_s: Optional[float] = None


@dataclass
class TemporalTrainResult:
    """What :func:`run_temporal_training` leaves: ``best.pt``'s path, this process's model and where it stopped
    (``finished`` is False when ``stop_after`` ended the session early; ``resume`` continues it)."""

    best_path: Path
    model: nn.Module
    stage: str
    step: int
    finished: bool


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (what ``torch.load(weights_only=True)`` reads back)."""
    return json.loads(json.dumps(obj))


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two nested mappings differ (lists and tuples compare alike)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for k in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in saved or k not in current:
                out.append(name)
            else:
                out += _differences(saved[k], current[k], name)
        return out
    return [] if _plain(saved) == _plain(current) else [prefix or "(value)"]


def read_train_state(path: Path, config: ModelConfig) -> dict[str, Any]:
    """The training state a temporal run left in ``path`` (its ``last.pt``), checked to belong to a model of
    ``config``: FileNotFoundError when there is none, ValueError when it is not one or the model differs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume: {path} not found (nothing to resume in {path.parent})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        raise ValueError(f"resume: {path} cannot be read as a training state: {e}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"resume: {path} is not a training state of the temporal trainer (stages 2-3)")
    if "position" not in state:
        raise ValueError(
            f"resume: {path} was written by a version of the trainer that did not record where it stopped; start afresh"
        )
    diff = _differences(state["config"], config.to_dict())
    if diff:
        raise ValueError(
            f"resume: the recipe's model differs from the one trained in {path} (model."
            + ", model.".join(diff[:8])
            + (" ..." if len(diff) > 8 else "")
            + "); resume with the recipe that run used, or start afresh in another --out folder"
        )
    return state


# -- the trainer --------------------------------------------------------------------------------------


class FusionStep(nn.Module):
    """The trained part of a step as one module (what DistributedDataParallel wraps, so the gradients of STF,
    MAR and the classifier are averaged over the processes): the fusion of a window's per-frame features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: list[Tensor], target: int, refine: bool) -> dict[str, Optional[Tensor]]:
        return self.model.fuse(features, target, boundary=False, refine=refine)


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


class _TemporalRun:
    """One session of stages 2-3 in this process (see :func:`run_temporal_training`)."""

    def __init__(
        self,
        recipe: dict[str, Any],
        ctx: Any,
        out_dir: Optional[Path],
        threads: Optional[int],
        iters: dict[str, Optional[int]],
        command: Optional[str],
        progress: bool,
        resume: bool,
        stop_after: Optional[int],
    ) -> None:
        self.t0 = time.monotonic()
        self.recipe, self.ctx = recipe, ctx
        self.tr, self.dc, self.cfg = recipe["train"], recipe["data"], recipe["model"]
        self.main = ctx.is_main
        self.say = print if self.main else (lambda *a, **k: None)
        self.progress, self.resume, self.stop_after = progress, resume, stop_after
        self.iters_override = iters
        self.batch_size = int(self.tr["batch_size"])
        if self.batch_size % ctx.world_size:
            raise TrainConfigError(
                f"{recipe['path']}: train.batch_size={self.batch_size} (the batch of one step, over "
                f"all processes) must be divisible by the number of processes, {ctx.world_size}"
            )
        if threads or self.tr.get("threads"):
            torch.set_num_threads(int(threads or self.tr["threads"]))
        self.out_dir = Path(out_dir) if out_dir is not None else Path("out/train") / Path(recipe["path"]).stem
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path, self.loss_log_path = self.out_dir / "train_log.jsonl", self.out_dir / "loss_log.jsonl"
        self.best_path, self.last_path = self.out_dir / "best.pt", self.out_dir / "last.pt"
        self.command = command or shlex.join([Path(sys.executable).name] + sys.argv)
        self.elapsed_before = 0.0
        self.session_steps = 0
        self.history: list[dict[str, Any]] = []
        self.best_score = -1.0
        self.base: Optional[dict[str, Any]] = None  # the per-frame model's scores (rank 0)
        self.pos = StagePosition()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.optimizer_state: Optional[dict[str, Any]] = None  # a resumed stage's AdamW state

    # -- clocks and files ---------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Training time of the whole run, earlier sessions included (a resumed run keeps its time budget)."""
        return self.elapsed_before + (time.monotonic() - self.t0)

    def clock(self) -> float:
        """Rank 0's :meth:`elapsed` on every rank: the schedule, the budget and validation follow one clock."""
        return self.ctx.broadcast(self.elapsed())

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            _append_jsonl(self.loss_log_path, {**record, "elapsed_s": round(self.elapsed(), 1)})

    def save_last(self) -> None:
        """``last.pt``: everything :func:`run_temporal_training` needs to continue from here (rank 0 writes it)."""
        if not self.main:
            return
        _atomic_torch_save(
            {
                "format": STATE_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "position": asdict(self.pos),
                "elapsed_s": self.elapsed(),
                "history": _plain(self.history),
                "best_score": self.best_score,
                "perframe_scores": _plain(self.base),
                "torch_rng": torch.get_rng_state(),
                "config": self.cfg.to_dict(),
                "train": _plain(self.tr),
                "data": _plain(self.dc),
                "recipe": _plain(self.recipe["raw"]),
                "init": str(self.recipe["init"]),
                "model_id": self.recipe["model_id"],
                "processes": self.ctx.world_size,
            },
            self.last_path,
        )

    # -- setup ----------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        from vsseg_ros.data.clips import StillClipDataset
        from vsseg_ros.data.registry import open_dataset

        recipe, tr, dc, cfg = self.recipe, self.tr, self.dc, self.cfg
        self.seed = int(tr["seed"])
        _seed_everything(self.seed)  # the same initial temporal modules on every rank (DDP also copies rank 0's)
        self.model = build_from_init(cfg, recipe["init"])
        freeze(self.model.perframe)
        self.train_data = open_dataset(dc["dataset"], recipe["root"], dc["train_split"])
        self.val_data = open_dataset(dc["dataset"], recipe["root"], dc["val_split"])
        self.class_map = self.train_data.class_map
        self.names = list(self.class_map.names)
        self.clips = StillClipDataset(
            self.train_data,
            frames=self.model.frames,
            target=self.model.target_index(self.model.frames),
            size=tuple(dc["clip_size"]),
            seed=self.seed,
            **dict(dc["clips"] or {}),
        )
        counts = self.train_data.class_pixel_counts()
        self.weight = torch.from_numpy(class_weights(counts, str(tr["class_weighting"])))
        self.budget = float(tr["time_budget_min"]) * 60.0 if tr.get("time_budget_min") else None

    def _restore(self) -> None:
        """Continue from ``last.pt``: weights, optimiser, position, clock, history, best score, RNG."""
        state = read_train_state(self.last_path, self.cfg)
        for key in ("stf_iters", "mar_iters"):  # the run's own lengths (a changed length changes its schedule)
            if self.iters_override.get(key) is None:
                self.tr[key] = int(state["train"][key])
        changed = [f"train.{k}" for k in _differences(state["train"], self.tr) if k != "threads"]
        changed += [f"data.{k}" for k in _differences(state["data"], self.dc)]
        if changed:
            self.say(
                f"note: resuming with a recipe that differs from the saved run in {', '.join(changed)}; "
                "the recipe's values are used",
                flush=True,
            )
        self.model.load_state_dict(state["model"])
        self.pos = StagePosition(**state["position"])
        self.optimizer_state = state.get("optimizer")
        self.elapsed_before = float(state["elapsed_s"])
        self.history = list(state["history"])
        self.best_score = float(state["best_score"])
        self.base = state["perframe_scores"]
        torch.set_rng_state(state["torch_rng"])  # dropout continues with the masks of an uninterrupted run
        done = " (finished)" if self.pos.finished else ""
        self.say(
            f"resuming from {self.last_path} at {self.pos.stage} step {self.pos.step}{done} "
            f"({self.elapsed_before / 60:.1f} min trained, best val mIoU "
            f"{_pct(self.best_score) if self.best_score >= 0 else 'none yet'})",
            flush=True,
        )

    # -- validation -----------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Score the model being trained on the validation stream (rank 0; the others wait), keep ``best.pt``
        and write ``last.pt``."""
        self.ctx.check_in_sync(self.model)
        if self.main:
            self._validate()
        self.ctx.barrier()

    def _validate(self) -> None:
        from vsseg_ros.core.checkpoint import save_checkpoint

        recipe, dc, base, stage, step = self.recipe, self.dc, self.base, self.pos.stage, self.pos.step
        t0 = time.monotonic()
        if stage == "stf" and self.model.mar is not None:
            net, net_cfg = without_mar(self.model, self.cfg)
        else:
            net, net_cfg = self.model, self.cfg
        # the segmenter runs an eval-mode copy: the modules being trained keep their modes
        res = stream_scores(
            _segmenter(net, self.class_map, recipe["model_id"]), self.val_data, self.names, dc["dataset"]
        )
        gain = {k: _diff(res[k], base[k]) for k in ("miou", "mvc8")}
        # a model that fuses frames must not cost consistency; MAR alone (no STF) refines each frame on its own,
        # so it is selected on mIoU (None: the split is shorter than 8 frames)
        ok = self.model.stf is None or gain["mvc8"] is None or gain["mvc8"] >= 0.0
        record = {
            "stage": stage,
            "step": step,
            "elapsed_min": round(self.elapsed() / 60, 2),
            "val_miou": res["miou"],
            "val_mvc8": res["mvc8"],
            "val_mvc16": res["mvc16"],
            "val_iou": res["per_class_iou"],
            "gain_miou": gain["miou"],
            "gain_mvc8": gain["mvc8"],
            "perframe_miou": base["miou"],
            "perframe_mvc8": base["mvc8"],
            "val_s": round(time.monotonic() - t0, 1),
        }
        self.history.append(record)
        improved = ok and (res["miou"] or 0.0) > self.best_score
        record["best"] = improved
        if improved:
            self.best_score = res["miou"] or 0.0
            meta = {
                "dataset": dc["dataset"],
                "data_root": str(recipe["root"]),
                "train_config": recipe["raw"],
                "train_config_path": str(recipe["path"]),
                "command": self.command,
                "init": str(recipe["init"]),
                "split": dc["val_split"],
                "val_miou": res["miou"],
                "val_mvc8": res["mvc8"],
                "val_mvc16": res["mvc16"],
                "per_class_iou": res["per_class_iou"],
                "stage": stage,
                "iterations": step,
                "perframe_val_miou": base["miou"],
                "perframe_val_mvc8": base["mvc8"],
                "processes": self.ctx.world_size,
            }
            save_checkpoint(self.best_path, net, net_cfg, self.class_map, recipe["model_id"], meta=meta)
        _append_jsonl(self.log_path, record)
        self.save_last()
        plot_curve(
            [(i, h["val_miou"] or 0.0) for i, h in enumerate(self.history)],
            self.out_dir / "val_miou.png",
            title=f"{recipe['model_id']} val mIoU (per-frame {_pct(base['miou'])})",
            xlabel="validation round",
        )
        print(
            f"\n[val] {stage} step {step}: mIoU {_pct(res['miou'])} ({_pct(gain['miou'], True)}), mVC8 "
            f"{_pct(res['mvc8'])} ({_pct(gain['mvc8'], True)}) vs per-frame [{record['val_s']} s]",
            flush=True,
        )

    # -- one stage --------------------------------------------------------------------------------------

    def _begin(self, stage: str, budget_s: Optional[float]) -> None:
        self.pos = StagePosition(stage=stage, step=0, finished=False, start_s=self.clock(), budget_s=budget_s)
        self.optimizer, self.optimizer_state = None, None

    def _loader(self, stream_seed: int, start: int, rank: int, world_size: int) -> Any:
        """Clips keyed (index, augmentation seed) from the seeded stream, from draw ``start``; this rank's share
        of each step's batch. The loader has its own generator: the global RNG (dropout) is left alone."""
        shard = self.batch_size // world_size
        return iter(
            torch.utils.data.DataLoader(
                self.clips,
                batch_size=shard,
                num_workers=0,
                sampler=SeedStream(len(self.clips), stream_seed, start, rank, world_size, shard),
                generator=torch.Generator().manual_seed(stream_seed),
            )
        )

    def _wrap(self) -> nn.Module:
        step = FusionStep(self.model)
        if not self.ctx.enabled:
            return step
        # built after the stage's parameters are unfrozen: DDP averages the gradients of exactly those
        return nn.parallel.DistributedDataParallel(step, broadcast_buffers=False)

    def _loop(self, params: list[Any], lr: float, stream_seed: int) -> bool:
        """The current stage's optimisation from ``self.pos``: AdamW over ``params`` (parameters, or groups
        ``{"params", "lr_mult"}``), warm-up then cosine decay
        over the stage's progress (steps or its share of the time budget, whichever is further), validation every
        ``val_every_min`` and at the end. Returns True when ``stop_after`` ended the session (``last.pt`` saved)."""
        from tqdm import tqdm

        tr, pos, ctx, model = self.tr, self.pos, self.ctx, self.model
        stage = pos.stage
        iters = int(tr[f"{stage}_iters"])
        groups = params if params and isinstance(params[0], dict) else [{"params": params, "lr_mult": 1.0}]
        self.optimizer = optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=float(tr["weight_decay"]))
        params = [p for g in groups for p in g["params"]]
        if self.optimizer_state is not None:
            optimizer.load_state_dict(self.optimizer_state)
            self.optimizer_state = None
        net = self._wrap()
        data = self._loader(stream_seed, pos.step * self.batch_size, ctx.rank, ctx.world_size)
        target = model.target_index(model.frames)
        val_every_s = float(tr["val_every_min"]) * 60.0 if tr.get("val_every_min") else None
        log_every = max(1, int(tr["log_every"]))

        def progress_of(clock: float) -> float:
            p = pos.step / iters
            if pos.budget_s is not None:
                p = max(p, (clock - pos.start_s) / max(pos.budget_s, 1e-6))
            return p

        clock = self.clock()
        last_val = clock
        bar = tqdm(
            total=iters,
            initial=pos.step,
            desc=stage,
            ncols=110,
            disable=not (self.progress and self.main),
            mininterval=5.0,
            file=sys.stdout,
        )
        ema: Optional[float] = None
        try:
            while pos.step < iters and progress_of(clock) < 1.0:
                if self.stop_after is not None and self.session_steps >= self.stop_after:
                    self.save_last()
                    ctx.barrier()
                    return True
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_mult"] * lr_factor(pos.step, progress_of(clock), tr)
                batch = next(data)
                x = normalise(batch["frames"], model.perframe.config.mean, model.perframe.config.std)
                with torch.no_grad():  # the per-frame network is frozen
                    feats = [model.frame_features(x[:, i]) for i in range(x.shape[1])]
                out = net(feats, target, stage == "mar")
                loss = clip_loss(out["logits"], batch["label"].long(), self.weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # DDP averages the gradients over the ranks here
                if tr.get("grad_clip"):
                    nn.utils.clip_grad_norm_(params, float(tr["grad_clip"]))
                optimizer.step()
                value = float(ctx.all_reduce([float(loss.detach())])[0]) / ctx.world_size
                if not math.isfinite(value):  # (every rank sees the mean, so every rank stops)
                    raise FloatingPointError(f"{stage}: the loss became {value} at step {pos.step}; lower train.lr")
                pos.step += 1
                self.session_steps += 1
                ema = value if ema is None else 0.95 * ema + 0.05 * value
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
                clock = self.clock()
                if pos.step % log_every == 0:
                    self.log({"stage": stage, "step": pos.step, "loss": value, "lr": optimizer.param_groups[0]["lr"]})
                if val_every_s is not None and clock - last_val >= val_every_s:
                    self.validate()
                    clock = self.clock()
                    last_val = clock
        finally:
            bar.close()
        pos.finished = True
        self.validate()
        return False

    def _stf_stage(self) -> bool:
        model = self.model
        freeze(model.mar)
        model.stf.train()
        params = list(model.stf.parameters())
        for p in params:
            p.requires_grad_(True)
        stopped = self._loop(params, float(self.tr["lr"]), self.seed)
        freeze(model.stf)
        return stopped

    def _build_memory(self) -> None:
        """MAR's memory from the training clips with the STF-fused features, built on rank 0 and copied to the
        others; ``last.pt`` then records it, so a resumed run never builds it again."""
        from vsseg_ros.core.memory_bank import build_memory

        model, tr, cfg = self.model, self.tr, self.cfg
        freeze(model.stf)
        if self.main:
            self.say("building the MAR memory from the training clips ...", flush=True)
            target = model.target_index(model.frames)

            def batches() -> Any:
                n = int(tr["memory_batches"] or math.ceil(len(self.clips) / self.batch_size))
                it = self._loader(self.seed + 1, 0, 0, 1)  # the whole stream: rank 0 builds it alone
                for _ in range(n):
                    b = next(it)
                    x = normalise(b["frames"], cfg.mean, cfg.std)
                    with torch.no_grad():
                        feats = [model.frame_features(x[:, i]) for i in range(x.shape[1])]
                        fused = model.fuse(feats, target, boundary=False, refine=False)
                    yield fused["feature"], fused["logits"], b["label"].long()

            stats = build_memory(model.mar, batches(), num_classes=cfg.num_classes)
            self.say(
                f"memory built from {stats.pixels} labelled pixels; classes without a correct pixel: "
                f"{stats.empty_classes or 'none'}",
                flush=True,
            )
        self.ctx.broadcast_module(model.mar)

    def _mar_stage(self) -> bool:
        model = self.model
        freeze(model.stf)
        model.mar.train()
        # MAR changes the feature the classifier reads (LayerNorm): the classifier learns along with it
        head = model.perframe.head
        classifier = getattr(head, "classifier", None) or head.conv_seg
        mar_params, cls_params = list(model.mar.parameters()), list(classifier.parameters())
        for p in mar_params + cls_params:
            p.requires_grad_(True)
        # the classifier was trained on the head's (ReLU) feature and must re-learn MAR's (LayerNorm) one
        groups = [
            {"params": mar_params, "lr_mult": 1.0},
            {"params": cls_params, "lr_mult": float(self.tr["classifier_lr_mult"])},
        ]
        stopped = self._loop(groups, float(self.tr["mar_lr"]), self.seed + 2)
        freeze(model.mar)
        freeze(model.perframe)
        return stopped

    # -- the run ----------------------------------------------------------------------------------------

    def run(self) -> TemporalTrainResult:
        self._setup()
        tr, model = self.tr, self.model
        for key, value in self.iters_override.items():
            if value is not None:
                tr[key] = int(value)
        if self.resume:
            self._restore()
        else:
            if self.main:
                for p in (self.log_path, self.loss_log_path):  # a fresh run starts fresh logs
                    p.unlink(missing_ok=True)
                print("scoring the per-frame model on the validation split (the bar to beat) ...", flush=True)
                self.base = _perframe_baseline(self.recipe["init"], self.val_data, self.names, self.dc["dataset"])
                print(f"per-frame: mIoU {_pct(self.base['miou'])}, mVC8 {_pct(self.base['mvc8'])}", flush=True)
            self.ctx.barrier()
        stf_todo = model.stf is not None and int(tr["stf_iters"]) > 0
        mar_todo = model.mar is not None and int(tr["mar_iters"]) > 0
        # stage 2: STF on frozen per-frame features
        if stf_todo and self.pos.stage == "stf" and not self.pos.finished:
            if not self.resume:
                share = 1.0 - float(tr["mar_share"]) if model.mar is not None else 1.0
                self._begin("stf", self.budget * share if self.budget else None)
            if self._stf_stage():
                return self._stopped()
        # stage 3: MAR memory from the training set with the fused features, then MAR fine-tuning
        if mar_todo:
            if self.pos.stage != "mar":
                self._build_memory()
                remaining = self.budget - self.clock() if self.budget else None
                self._begin("mar", max(remaining, 60.0) if remaining is not None else None)
                self.save_last()
            if not self.pos.finished and self._mar_stage():
                return self._stopped()
        freeze(model.stf)
        freeze(model.mar)
        self.save_last()
        self.ctx.barrier()  # rank 0's files are complete when any rank returns
        best = self.best_path if self.best_path.exists() else "none"
        self.say(f"done in {(time.monotonic() - self.t0) / 60:.1f} min this session; best {best}", flush=True)
        return TemporalTrainResult(self.best_path, model, self.pos.stage, self.pos.step, True)

    def _stopped(self) -> TemporalTrainResult:
        self.say(
            f"stopped after {self.session_steps} steps this session at {self.pos.stage} step {self.pos.step}; "
            f"{self.last_path} holds the state: continue with --resume",
            flush=True,
        )
        return TemporalTrainResult(self.best_path, self.model, self.pos.stage, self.pos.step, False)


def run_temporal_training(
    config_path: Union[str, Path],
    out_dir: Optional[Path] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    stf_iters: Optional[int] = None,
    mar_iters: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
    resume: bool = False,
    stop_after: Optional[int] = None,
) -> TemporalTrainResult:
    """Train STF (stage 2) and MAR (stage 3) from the recipe at ``config_path``.

    ``resume``: continue from ``out_dir/last.pt`` (written at every validation, after the MAR memory is built and
    when a stage ends) at its stage and step, with its optimiser, clock (time budget), history, best score and
    RNG, on the data stream an uninterrupted run would draw; ``stf_iters``/``mar_iters`` then default to the
    saved run's. ``stop_after``: save ``last.pt`` and return after this many optimisation steps in this session
    (split a run over jobs with a time limit).

    Under ``torchrun`` every process calls this: they join one group (gloo, CPU), each takes
    ``batch_size / N`` clips of every step from the shared stream, DDP averages the gradients, rank 0's clock
    steers the schedule and the budget, and rank 0 alone scores, logs, builds the MAR memory (copied to the
    others) and writes files while the others wait.
    """
    from vsseg_ros.training.distributed import init_distributed

    if stop_after is not None and int(stop_after) < 1:
        raise TrainConfigError(f"stop_after must be a number of steps >= 1, got {stop_after}")
    recipe = load_temporal_recipe(config_path, data_root)
    ctx = init_distributed("cpu")
    try:
        run = _TemporalRun(
            recipe,
            ctx,
            out_dir,
            threads,
            {"stf_iters": stf_iters, "mar_iters": mar_iters},
            command,
            progress,
            resume,
            stop_after,
        )
        return run.run()
    finally:
        ctx.close()


def train_temporal(
    config_path: Union[str, Path],
    out_dir: Optional[Path] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    stf_iters: Optional[int] = None,
    mar_iters: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
    resume: bool = False,
    stop_after: Optional[int] = None,
) -> Path:
    """:func:`run_temporal_training`, returning ``best.pt``'s path."""
    return run_temporal_training(
        config_path, out_dir, data_root, threads, stf_iters, mar_iters, command, progress, resume, stop_after
    ).best_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vsseg_ros.training.temporal",
        description="Train STF and MAR on a frozen per-frame network (stages 2 and 3). "
        "Several processes: torchrun --nproc_per_node N -m "
        "vsseg_ros.training.temporal ...",
    )
    p.add_argument("--config", required=True, type=Path, help="e.g. config/train/mbv2_lite_stf_mar_camvid.yaml")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt at its saved stage and step")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="save OUT/last.pt and stop after this many steps in this session (continue with --resume)",
    )
    p.add_argument("--data-root", type=Path, default=None, help="override data.root")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (per process)")
    p.add_argument("--stf-iters", type=int, default=None, help="override train.stf_iters")
    p.add_argument("--mar-iters", type=int, default=None, help="override train.mar_iters")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    command = shlex.join(
        ["python", "-m", "vsseg_ros.training.temporal", *(sys.argv[1:] if argv is None else list(argv))]
    )
    try:
        best = train_temporal(
            args.config,
            out_dir=args.out,
            data_root=args.data_root,
            threads=args.threads,
            stf_iters=args.stf_iters,
            mar_iters=args.mar_iters,
            command=command,
            progress=not args.no_progress,
            resume=args.resume,
            stop_after=args.stop_after,
        )
    except (TrainConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
