"""Pieces of the optimisation loops of both stages: when to validate (every so many steps or minutes of the
run's clock) and the progress bar with the smoothed training loss."""

from __future__ import annotations

import sys
from typing import Any, Optional


class ValidationSchedule:
    """Validation every ``val_every_iters`` steps (0 or absent: never by steps) and every ``val_every_min``
    minutes of the run's clock (null: never by time), counted from ``clock`` and from each :meth:`done`."""

    def __init__(self, train: dict[str, Any], clock: float) -> None:
        self.every_steps = int(train.get("val_every_iters") or 0)
        self.every_s = float(train["val_every_min"]) * 60.0 if train.get("val_every_min") else None
        self.last = clock

    def due(self, step: int, clock: float) -> bool:
        by_steps = bool(self.every_steps) and step % self.every_steps == 0
        return by_steps or (self.every_s is not None and clock - self.last >= self.every_s)

    def done(self, clock: float) -> None:
        """A validation ended at ``clock``: the next one by time is counted from here."""
        self.last = clock


class LossBar:
    """A tqdm bar on stdout (updated at most every 5 s: logs of long runs stay short) of the steps, showing an
    exponential moving average of the training loss."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            dynamic_ncols=False,
            ncols=110,
            disable=not enabled,
            mininterval=5.0,
            file=sys.stdout,
        )
        self.loss: Optional[float] = None

    def step(self, loss: float, **postfix: str) -> None:
        """One step done with ``loss``; ``postfix``: more figures to show (e.g. the learning rate)."""
        self.loss = loss if self.loss is None else 0.95 * self.loss + 0.05 * loss
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.loss:.3f}", **postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()
