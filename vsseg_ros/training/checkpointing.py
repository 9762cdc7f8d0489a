"""What a training run writes and reads back, for both stages: files saved atomically, the jsonl logs, the
provenance ``best.pt`` records, and reading ``last.pt`` for ``--resume`` with the checks that it belongs to the
run (its format; for the temporal stage also its position and its model)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from vsseg_ros.core.config import ModelConfig

#: the ``format`` of the per-frame trainer's ``last.pt``
PERFRAME_STATE_FORMAT = "vsseg_ros.train_state"
#: the ``format`` of the temporal trainer's ``last.pt``
TEMPORAL_STATE_FORMAT = "vsseg_ros.temporal_train_state"


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


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a hidden file next to ``path``, then renamed: a run stopped mid-write keeps the old file."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (what ``torch.load(weights_only=True)`` reads back)."""
    return json.loads(json.dumps(obj))


def differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two nested mappings differ (lists and tuples compare alike)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for k in sorted(set(saved) | set(current), key=str):
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in saved or k not in current:
                out.append(name)
            else:
                out += differences(saved[k], current[k], name)
        return out
    return [] if plain(saved) == plain(current) else [prefix or "(value)"]


def provenance(
    dataset: str, data_root: Path, raw: Any, config_path: Path, command: Optional[str], **more: Any
) -> dict[str, Any]:
    """The meta a run's checkpoints share: the data, the recipe (as written and where), the command; then
    ``more``."""
    return {
        "dataset": dataset,
        "data_root": str(data_root),
        "train_config": raw,
        "train_config_path": str(config_path),
        "command": command,
        **more,
    }


def read_state(path: Path, fmt: str, whose: str) -> dict[str, Any]:
    """The training state in ``path`` (a ``last.pt``) of format ``fmt``: FileNotFoundError when there is none,
    ValueError when it cannot be read or is another trainer's (``whose`` says whose it should be)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"resume: {path} not found (nothing to resume in {path.parent})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        raise ValueError(f"resume: {path} cannot be read as a training state: {e}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(f"resume: {path} is not a training state {whose}")
    return state


def read_perframe_state(path: Path) -> dict[str, Any]:
    """The training state a per-frame run left in ``path`` (see :func:`read_state`)."""
    return read_state(path, PERFRAME_STATE_FORMAT, "written by this trainer")


def read_train_state(path: Path, config: ModelConfig) -> dict[str, Any]:
    """The training state a temporal run left in ``path`` (its ``last.pt``), checked to belong to a model of
    ``config``: FileNotFoundError when there is none, ValueError when it is not one or the model differs."""
    state = read_state(path, TEMPORAL_STATE_FORMAT, "of the temporal trainer (stages 2-3)")
    if "position" not in state:
        raise ValueError(
            f"resume: {path} was written by a version of the trainer that did not record where it stopped; start afresh"
        )
    diff = differences(state["config"], config.to_dict())
    if diff:
        raise ValueError(
            f"resume: the recipe's model differs from the one trained in {path} (model."
            + ", model.".join(diff[:8])
            + (" ..." if len(diff) > 8 else "")
            + "); resume with the recipe that run used, or start afresh in another --out folder"
        )
    return state
