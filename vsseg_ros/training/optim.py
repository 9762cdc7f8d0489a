"""Optimisation pieces of both stages: parameter groups, the learning-rate schedule over a run's progress (steps
or time budget, whichever is further), one optimiser step, and an exponential moving average of the weights."""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Optional

import torch
from torch import Tensor, nn


def param_groups(model: nn.Module, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict[str, Any]]:
    """The per-frame network's trainable parameters in groups: backbone vs head (``head_lr_mult`` x ``lr``),
    decayed vs not (BatchNorm weights/biases and conv biases); each group's ``base_lr`` is what the schedule
    scales."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("backbone.")
        no_decay = p.ndim <= 1
        groups.setdefault((is_head, no_decay), []).append(p)
    out = []
    for (is_head, no_decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": lr * (head_lr_mult if is_head else 1.0),
                "base_lr": lr * (head_lr_mult if is_head else 1.0),
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": ("head" if is_head else "backbone") + ("_no_decay" if no_decay else ""),
            }
        )
    return out


def progress_of(step: int, iters: int, elapsed_s: float, budget_s: Optional[float]) -> float:
    """How far a run is: ``step / iters``, or its share of the time budget ``budget_s`` when that is further (on
    a shared machine whose speed varies, a budget still ends the run on time)."""
    p = step / iters
    if budget_s is not None:
        p = max(p, elapsed_s / max(budget_s, 1e-6))
    return p


def lr_factor(step: int, progress: float, train: dict[str, Any]) -> float:
    """The schedule's factor on the base learning rate: linear warm-up over ``warmup_iters`` steps, then poly (or
    cosine) decay over ``progress`` down to ``min_lr_ratio``."""
    warm = int(train["warmup_iters"] or 0)
    if warm > 0 and step < warm:
        return (step + 1) / warm
    p = min(max(progress, 0.0), 1.0)
    floor = float(train.get("min_lr_ratio") or 0.0)
    if train["schedule"] == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        f = (1.0 - p) ** float(train["poly_power"])
    return floor + (1.0 - floor) * f


def optimiser_step(
    optimizer: torch.optim.Optimizer, loss: Tensor, params: Iterable[Tensor], grad_clip: Optional[float]
) -> None:
    """Back-propagate ``loss`` (DDP averages the gradients over the ranks here), clip the gradient norm of
    ``params`` to ``grad_clip`` (none: no clipping) and step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(params, float(grad_clip))
    optimizer.step()


def check_finite(value: float, step: int, where: str = "") -> None:
    """FloatingPointError when the (rank-averaged, so every rank stops) loss is not finite."""
    if not math.isfinite(value):
        raise FloatingPointError(f"{where}the loss became {value} at step {step}; lower train.lr")


class WeightAverage:
    """An exponential moving average of a model's weights and buffers, in its own copy of the model (``model``):
    ``update()`` after every optimiser step. Integer buffers (BatchNorm's batch counter) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))

    @torch.no_grad()
    def update(self) -> None:
        for avg, cur in self._pairs:
            if avg.is_floating_point():
                avg.lerp_(cur.to(avg.dtype), 1.0 - self.decay)
            else:
                avg.copy_(cur)
