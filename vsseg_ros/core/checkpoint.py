"""Checkpoint files: one ``torch.save``'d dict that is enough to rebuild and run a model.

Layout (``version`` 1)::

    {"format": "vsseg_ros.checkpoint", "version": 1, "model_id": str, "config": ModelConfig.to_dict(),
     "class_map": ClassMap.to_dict(), "state_dict": {name: tensor}, "memory": optional, "meta": dict}

Files are read with ``torch.load(weights_only=True)``: only tensors and plain containers/scalars are accepted,
so loading a file never runs code from it. Every failure raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.models.state_dict import listing as _listing, state_dict_mismatch

FORMAT = "vsseg_ros.checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "model_id", "config", "class_map", "state_dict")
OPTIONAL_KEYS = ("memory", "meta", "storage")


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``state_dict`` tensors are float32 (fp16 storage is converted back)."""

    path: str
    model_id: str
    config: ModelConfig
    class_map: ClassMap
    state_dict: dict[str, Tensor]
    memory: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    version: int = VERSION
    storage: str = "fp32"

    def load_into(self, model: nn.Module) -> None:
        """Load the weights into ``model`` strictly; CheckpointError lists what does not fit."""
        load_state_dict_checked(model, self.state_dict, source=self.path)

    def build_model(self) -> nn.Module:
        """The network the stored config describes (a :class:`TemporalSegNet` when ``config.temporal`` is set,
        else a :class:`PerFrameSegNet`) with the stored weights, in eval mode."""
        if self.config.temporal is not None:
            from vsseg_ros.core.models.temporal import TemporalSegNet

            try:
                model: nn.Module = TemporalSegNet(self.config)
            except ConfigError as e:
                raise CheckpointError(f"{self.path}: invalid temporal model config: {e}") from None
        else:
            from vsseg_ros.core.models.perframe import PerFrameSegNet

            model = PerFrameSegNet(self.config)
        self.load_into(model)
        return model.eval()


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, Tensor], source: str = "state_dict") -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a CheckpointError that lists the missing and
    unexpected keys and the shape mismatches (first 10 of each) instead of a long RuntimeError."""
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError(f"{source}: the weights do not fit the model {type(model).__name__}: {problems}")
    model.load_state_dict(state_dict, strict=True)


def _plain(value: Any, where: str) -> Any:
    """Convert to what ``torch.load(weights_only=True)`` reads back (numpy scalars -> Python, tuples -> lists)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be a string or an int")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return _plain(item(), where)
    if hasattr(value, "__array__"):  # numpy arrays -> tensors
        return torch.as_tensor(value.__array__())
    raise TypeError(
        f"{where}: {type(value).__name__} cannot be stored in a checkpoint "
        "(use numbers, strings, lists, dicts and tensors)"
    )


def save_checkpoint(
    path: Union[str, Path],
    model: Union[nn.Module, Mapping[str, Tensor]],
    config: ModelConfig,
    class_map: ClassMap,
    model_id: str,
    meta: Optional[Mapping[str, Any]] = None,
    half: bool = False,
    memory: Any = None,
) -> Path:
    """Write a checkpoint (atomically: a temporary file renamed into place). ``half`` stores floating
    tensors as fp16 (about half the size); :func:`load_checkpoint` turns them back into fp32."""
    if not isinstance(model_id, str) or not model_id:
        raise ValueError("model_id must be a non-empty string")
    config.validate()
    if config.num_classes != class_map.num_classes:
        raise ValueError(f"config has {config.num_classes} classes but the class map has {class_map.num_classes}")
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors: dict[str, Tensor] = {}
    for k, v in state.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
        v = v.detach().cpu()
        if half and v.is_floating_point():
            v = v.to(torch.float16)
        tensors[k] = v.contiguous()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_id": model_id,
        "config": config.to_dict(),
        "class_map": class_map.to_dict(),
        "state_dict": tensors,
        "memory": _plain(memory, "memory"),
        "meta": _plain(dict(meta or {}), "meta"),
        "storage": "fp16" if half else "fp32",
    }
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _looks_like_state_dict(obj: Mapping[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def load_checkpoint(path: Union[str, Path]) -> Checkpoint:
    """Read and check a checkpoint file; raises :class:`CheckpointError` with the reason if it is unusable."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"checkpoint file not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {p}")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):  # zip (torch >= 1.6) or legacy pickle
        raise CheckpointError(
            f"{p}: not a PyTorch checkpoint ({size} bytes; a torch.save file starts with a zip "
            f"or pickle header, this one starts with {head!r})"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike
        msg = " ".join(str(e).split())
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
        if refused:
            raise CheckpointError(
                f"{p}: refusing to load it: it contains the Python object {refused.group(1)}, and {FORMAT} files "
                "hold only tensors and plain data (they are read with torch.load(weights_only=True))"
            ) from None
        detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", msg)
        msg = detail.group(1).strip() if detail else msg
        if len(msg) > 200:  # keep the first sentence of long torch messages
            msg = msg.split(". ")[0][:300]
        raise CheckpointError(
            f"{p}: cannot read it as a PyTorch checkpoint ({size} bytes): the file is corrupt or truncated "
            f"({type(e).__name__}: {msg})"
        ) from None

    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a {FORMAT} dict, found a {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        hint = (
            " It looks like a bare state_dict; save it with vsseg_ros.core.checkpoint.save_checkpoint()."
            if _looks_like_state_dict(obj)
            else ""
        )
        found = [str(k) for k in obj]
        raise CheckpointError(
            f"{p}: not a {FORMAT} file: missing key(s) {', '.join(missing)} (expected {', '.join(REQUIRED_KEYS)}; "
            f"found {_listing(found) if found else 'nothing'}).{hint}"
        )
    if obj["format"] != FORMAT:
        raise CheckpointError(f"{p}: format is {obj['format']!r}, expected {FORMAT!r}")
    version = obj["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{p}: version must be an integer, found {version!r}")
    if version != VERSION:
        newer = " (written by a newer vsseg_ros; update this one)" if version > VERSION else ""
        raise CheckpointError(
            f"{p}: checkpoint version {version} is not supported; this vsseg_ros reads version {VERSION}{newer}"
        )
    model_id = obj["model_id"]
    if not isinstance(model_id, str) or not model_id:
        raise CheckpointError(f"{p}: model_id must be a non-empty string, found {model_id!r}")
    try:
        config = ModelConfig.from_dict(obj["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{p}: invalid model config: {e}") from None
    try:
        class_map = ClassMap.from_dict(obj["class_map"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{p}: invalid class_map ({type(e).__name__}: {e}); expected a dict with names, colors, ignore_id, ids"
        ) from None
    if class_map.num_classes != config.num_classes:
        raise CheckpointError(
            f"{p}: class_map has {class_map.num_classes} classes but the config says num_classes={config.num_classes}"
        )
    state = obj["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: state_dict must be a dict of tensors, found {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{p}: state_dict entries that are not named tensors: {_listing(bad)}")
    state = {k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v) for k, v in state.items()}
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"{p}: state_dict has NaN or infinite values in: {_listing(nonfinite)}")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: meta must be a dict, found {type(meta).__name__}")
    return Checkpoint(
        path=str(p),
        model_id=model_id,
        config=config,
        class_map=class_map,
        state_dict=state,
        memory=obj.get("memory"),
        meta=meta,
        version=version,
        storage=str(obj.get("storage", "fp32")),
    )


__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_state_dict_checked", "FORMAT", "VERSION"]
