"""One session of the temporal trainer (stages 2-3) in this process: STF on the frozen per-frame features,
then the MAR memory built from the training clips and MAR fine-tuned, each stage an optimisation loop with
validation on the streamed validation split, ``best.pt`` kept and ``last.pt`` for ``--resume``.
:func:`vsseg_ros.training.temporal.run_temporal_training` starts it; the recipe is described there.

Why this module is over 400 lines: it is one class, :class:`TemporalRun`, whose state (the stage position, its
optimiser, the clock, the history and best score) the two stages, validation, ``last.pt`` and resume all read
and write; the pieces without that state live in the shared modules and :mod:`~vsseg_ros.training.temporal_model`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from vsseg_ros.training.checkpointing import (
    TEMPORAL_STATE_FORMAT,
    StagePosition,
    append_jsonl,
    atomic_torch_save,
    differences,
    plain,
    provenance,
    read_train_state,
)
from vsseg_ros.training.curves import plot_curve
from vsseg_ros.training.loop import LossBar, ValidationSchedule
from vsseg_ros.training.losses import class_weights, pixel_cross_entropy
from vsseg_ros.training.optim import check_finite, lr_factor, optimiser_step, progress_of
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
from vsseg_ros.training.temporal_model import (
    FusionStep,
    build_from_init,
    freeze,
    mar_trainable,
    memory_batches,
    perframe_baseline,
    segmenter_of,
    stf_trainable,
    window_features,
    without_mar,
)
from vsseg_ros.training.validation import Best, diff, pct, stream_scores


@dataclass
class TemporalTrainResult:
    """What :func:`run_temporal_training` leaves: ``best.pt``'s path, this process's model and where it stopped
    (``finished`` is False when ``stop_after`` ended the session early; ``resume`` continues it)."""

    best_path: Path
    model: nn.Module
    stage: str
    step: int
    finished: bool


class TemporalRun:
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
        self.timer = RunClock(ctx)
        self.recipe, self.ctx = recipe, ctx
        self.tr, self.dc, self.cfg = recipe["train"], recipe["data"], recipe["model"]
        self.main = ctx.is_main
        self.say = printer(self.main)
        self.progress, self.resume, self.stop_after = progress, resume, stop_after
        self.iters_override = iters
        self.batch_size = int(self.tr["batch_size"])
        shard_batch(self.batch_size, ctx.world_size, recipe["path"])
        set_threads(threads, self.tr.get("threads"))
        self.files = RunFiles(out_dir, recipe["path"])
        self.command = command_line(command)
        self.session_steps = 0
        self.history: list[dict[str, Any]] = []
        self.best = Best()
        self.base: Optional[dict[str, Any]] = None  # the per-frame model's scores (rank 0)
        self.pos = StagePosition()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.optimizer_state: Optional[dict[str, Any]] = None  # a resumed stage's AdamW state

    # -- files ----------------------------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        if self.main:
            append_jsonl(self.files.loss_log, {**record, "elapsed_s": round(self.timer.elapsed(), 1)})

    def save_last(self) -> None:
        """``last.pt``: everything :func:`run_temporal_training` needs to continue from here (rank 0 writes it)."""
        if not self.main:
            return
        atomic_torch_save(
            {
                "format": TEMPORAL_STATE_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "position": asdict(self.pos),
                "elapsed_s": self.timer.elapsed(),
                "history": plain(self.history),
                "best_score": self.best.score,
                "perframe_scores": plain(self.base),
                "torch_rng": torch.get_rng_state(),
                "config": self.cfg.to_dict(),
                "train": plain(self.tr),
                "data": plain(self.dc),
                "recipe": plain(self.recipe["raw"]),
                "init": str(self.recipe["init"]),
                "model_id": self.recipe["model_id"],
                "processes": self.ctx.world_size,
            },
            self.files.last,
        )

    # -- setup ----------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        from vsseg_ros.data.clip_synthesis import StillClipDataset
        from vsseg_ros.data.registry import open_dataset

        recipe, tr, dc, cfg = self.recipe, self.tr, self.dc, self.cfg
        self.seed = int(tr["seed"])
        seed_everything(self.seed)  # the same initial temporal modules on every rank (DDP also copies rank 0's)
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
        state = read_train_state(self.files.last, self.cfg)
        for key in ("stf_iters", "mar_iters"):  # the run's own lengths (a changed length changes its schedule)
            if self.iters_override.get(key) is None:
                self.tr[key] = int(state["train"][key])
        changed = [f"train.{k}" for k in differences(state["train"], self.tr) if k != "threads"]
        changed += [f"data.{k}" for k in differences(state["data"], self.dc)]
        if changed:
            self.say(
                f"note: resuming with a recipe that differs from the saved run in {', '.join(changed)}; "
                "the recipe's values are used",
                flush=True,
            )
        self.model.load_state_dict(state["model"])
        self.pos = StagePosition(**state["position"])
        self.optimizer_state = state.get("optimizer")
        self.timer.elapsed_before = float(state["elapsed_s"])
        self.history = list(state["history"])
        self.best = Best(float(state["best_score"]))
        self.base = state["perframe_scores"]
        torch.set_rng_state(state["torch_rng"])  # dropout continues with the masks of an uninterrupted run
        done = " (finished)" if self.pos.finished else ""
        self.say(
            f"resuming from {self.files.last} at {self.pos.stage} step {self.pos.step}{done} "
            f"({self.timer.elapsed_before / 60:.1f} min trained, best val mIoU "
            f"{pct(self.best.score) if self.best.score >= 0 else 'none yet'})",
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
            segmenter_of(net, self.class_map, recipe["model_id"]), self.val_data, self.names, dc["dataset"]
        )
        gain = {k: diff(res[k], base[k]) for k in ("miou", "mvc8")}
        # a model that fuses frames must not cost consistency; MAR alone (no STF) refines each frame on its own,
        # so it is selected on mIoU (None: the split is shorter than 8 frames)
        ok = self.model.stf is None or gain["mvc8"] is None or gain["mvc8"] >= 0.0
        record = {
            "stage": stage,
            "step": step,
            "elapsed_min": round(self.timer.elapsed() / 60, 2),
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
        improved = self.best.offer(res["miou"] or 0.0, step, eligible=ok)
        record["best"] = improved
        if improved:
            meta = provenance(
                dc["dataset"],
                recipe["root"],
                recipe["raw"],
                recipe["path"],
                self.command,
                init=str(recipe["init"]),
                split=dc["val_split"],
                val_miou=res["miou"],
                val_mvc8=res["mvc8"],
                val_mvc16=res["mvc16"],
                per_class_iou=res["per_class_iou"],
                stage=stage,
                iterations=step,
                perframe_val_miou=base["miou"],
                perframe_val_mvc8=base["mvc8"],
                processes=self.ctx.world_size,
            )
            save_checkpoint(self.files.best, net, net_cfg, self.class_map, recipe["model_id"], meta=meta)
        append_jsonl(self.files.log, record)
        self.save_last()
        plot_curve(
            [(i, h["val_miou"] or 0.0) for i, h in enumerate(self.history)],
            self.files.curve,
            title=f"{recipe['model_id']} val mIoU (per-frame {pct(base['miou'])})",
            xlabel="validation round",
        )
        print(
            f"\n[val] {stage} step {step}: mIoU {pct(res['miou'])} ({pct(gain['miou'], True)}), mVC8 "
            f"{pct(res['mvc8'])} ({pct(gain['mvc8'], True)}) vs per-frame [{record['val_s']} s]",
            flush=True,
        )

    # -- one stage --------------------------------------------------------------------------------------

    def _begin(self, stage: str, budget_s: Optional[float]) -> None:
        self.pos = StagePosition(stage=stage, step=0, finished=False, start_s=self.timer.shared(), budget_s=budget_s)
        self.optimizer, self.optimizer_state = None, None

    def _loader(self, stream_seed: int, start: int, rank: int, world_size: int) -> Any:
        """Clips keyed (index, augmentation seed) from the seeded stream, from draw ``start``; this rank's share
        of each step's batch. The loader has its own generator: the global RNG (dropout) is left alone."""
        shard = self.batch_size // world_size
        return iter(stream_loader(self.clips, stream_seed, start, rank, world_size, shard, generator_seed=stream_seed))

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
        log_every = max(1, int(tr["log_every"]))

        def progress(clock: float) -> float:
            return progress_of(pos.step, iters, clock - pos.start_s, pos.budget_s)

        clock = self.timer.shared()
        schedule = ValidationSchedule(tr, clock)
        bar = LossBar(iters, pos.step, stage, self.progress and self.main)
        try:
            while pos.step < iters and progress(clock) < 1.0:
                if self.stop_after is not None and self.session_steps >= self.stop_after:
                    self.save_last()
                    ctx.barrier()
                    return True
                for g in optimizer.param_groups:
                    g["lr"] = lr * g["lr_mult"] * lr_factor(pos.step, progress(clock), tr)
                batch = next(data)
                feats = window_features(model, batch["frames"], model.perframe.config.mean, model.perframe.config.std)
                out = net(feats, target, stage == "mar")
                loss = pixel_cross_entropy(out["logits"], batch["label"].long(), self.weight)
                optimiser_step(optimizer, loss, params, tr.get("grad_clip"))
                value = float(ctx.all_reduce([float(loss.detach())])[0]) / ctx.world_size
                check_finite(value, pos.step, f"{stage}: ")
                pos.step += 1
                self.session_steps += 1
                bar.step(value)
                clock = self.timer.shared()
                if pos.step % log_every == 0:
                    self.log({"stage": stage, "step": pos.step, "loss": value, "lr": optimizer.param_groups[0]["lr"]})
                if schedule.due(pos.step, clock):
                    self.validate()
                    clock = self.timer.shared()
                    schedule.done(clock)
        finally:
            bar.close()
        pos.finished = True
        self.validate()
        return False

    def _stf_stage(self) -> bool:
        stopped = self._loop(stf_trainable(self.model), float(self.tr["lr"]), self.seed)
        freeze(self.model.stf)
        return stopped

    def _build_memory(self) -> None:
        """MAR's memory from the training clips with the STF-fused features, built on rank 0 and copied to the
        others; ``last.pt`` then records it, so a resumed run never builds it again."""
        from vsseg_ros.core.memory_bank import build_memory

        model, tr, cfg = self.model, self.tr, self.cfg
        freeze(model.stf)
        if self.main:
            self.say("building the MAR memory from the training clips ...", flush=True)
            n = int(tr["memory_batches"] or math.ceil(len(self.clips) / self.batch_size))
            clips = self._loader(self.seed + 1, 0, 0, 1)  # the whole stream: rank 0 builds it alone
            stats = build_memory(model.mar, memory_batches(model, clips, n, cfg), num_classes=cfg.num_classes)
            self.say(
                f"memory built from {stats.pixels} labelled pixels; classes without a correct pixel: "
                f"{stats.empty_classes or 'none'}",
                flush=True,
            )
        self.ctx.broadcast_module(model.mar)

    def _mar_stage(self) -> bool:
        groups = mar_trainable(self.model, float(self.tr["classifier_lr_mult"]))
        stopped = self._loop(groups, float(self.tr["mar_lr"]), self.seed + 2)
        freeze(self.model.mar)
        freeze(self.model.perframe)
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
                self.files.start_fresh()
                print("scoring the per-frame model on the validation split (the bar to beat) ...", flush=True)
                self.base = perframe_baseline(self.recipe["init"], self.val_data, self.names, self.dc["dataset"])
                print(f"per-frame: mIoU {pct(self.base['miou'])}, mVC8 {pct(self.base['mvc8'])}", flush=True)
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
                remaining = self.budget - self.timer.shared() if self.budget else None
                self._begin("mar", max(remaining, 60.0) if remaining is not None else None)
                self.save_last()
            if not self.pos.finished and self._mar_stage():
                return self._stopped()
        freeze(model.stf)
        freeze(model.mar)
        self.save_last()
        self.ctx.barrier()  # rank 0's files are complete when any rank returns
        best = self.files.best if self.files.best.exists() else "none"
        self.say(f"done in {(time.monotonic() - self.t0) / 60:.1f} min this session; best {best}", flush=True)
        return TemporalTrainResult(self.files.best, model, self.pos.stage, self.pos.step, True)

    def _stopped(self) -> TemporalTrainResult:
        self.say(
            f"stopped after {self.session_steps} steps this session at {self.pos.stage} step {self.pos.step}; "
            f"{self.files.last} holds the state: continue with --resume",
            flush=True,
        )
        return TemporalTrainResult(self.files.best, self.model, self.pos.stage, self.pos.step, False)
