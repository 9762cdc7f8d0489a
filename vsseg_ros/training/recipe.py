"""Training recipes (``config/train/*.yaml``) of both stages: read, defaults filled in, checked, paths resolved.

:func:`load_recipe` reads a per-frame (stage 1) recipe, :func:`load_temporal_recipe` a temporal (stages 2-3)
one; both raise :class:`TrainConfigError` naming the file and the field. Relative paths resolve against the
repository the recipe lies in (the nearest folder above it holding ``pyproject.toml`` or ``package.xml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.config import ConfigError, ModelConfig


class TrainConfigError(ValueError):
    """A training recipe that cannot be used; the message names the file and the field."""


# -- shared by both stages --------------------------------------------------------------------------


def repo_root_for(path: Path) -> Path:
    """The repository a recipe lies in (see the module docstring), else the recipe's own folder."""
    for parent in path.resolve().parents:
        if (parent / "pyproject.toml").is_file() or (parent / "package.xml").is_file():
            return parent
    return path.resolve().parent


def merge_section(defaults: dict[str, Any], given: Any, section: str, path: Path) -> dict[str, Any]:
    """``defaults`` updated with a recipe section (nested mappings one level deep); unknown fields are errors."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise TrainConfigError(f"{path}: '{section}' must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TrainConfigError(
            f"{path}: unknown field(s) in '{section}': {', '.join(unknown)}; known: {', '.join(sorted(defaults))}"
        )
    out = dict(defaults)
    for k, v in given.items():
        if isinstance(defaults.get(k), dict) and isinstance(v, dict):
            merged = dict(defaults[k])
            bad = sorted(set(v) - set(merged))
            if bad:
                raise TrainConfigError(f"{path}: unknown field(s) in '{section}.{k}': {', '.join(bad)}")
            merged.update(v)
            out[k] = merged
        else:
            out[k] = v
    return out


def read_recipe_file(config_path: Union[str, Path]) -> tuple[Path, Any]:
    """The path and parsed YAML of a training recipe; TrainConfigError if it is missing or not YAML."""
    path = Path(config_path).expanduser()
    if not path.is_file():
        raise TrainConfigError(f"training config not found: {path}")
    try:
        return path, yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TrainConfigError(f"{path}: not valid YAML: {e}") from None


def _check_top_level(raw: dict[str, Any], known: tuple[str, ...], path: Path) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise TrainConfigError(f"{path}: unknown top-level field(s): {', '.join(unknown)}; known: {', '.join(known)}")


def _model_config(section: Any, path: Path, base: Path) -> ModelConfig:
    """The recipe's ``model``: a ModelConfig mapping, or the path of a model config file relative to ``base``."""
    try:
        if isinstance(section, str):
            mp = Path(section)
            return ModelConfig.from_yaml(mp if mp.is_absolute() else base / mp)
        return ModelConfig.from_dict(section if section is not None else {})
    except ConfigError as e:
        raise TrainConfigError(f"{path}: model: {e}") from None


def _check_size(value: Any, field: str, path: Path) -> None:
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise TrainConfigError(f"{path}: {field} must be [height, width], got {value!r}")


def _data_root(override: Optional[Union[str, Path]], configured: Any, repo: Path) -> Path:
    """``--data-root`` as given, else ``data.root`` (relative to the repository), resolved."""
    if override is not None:
        return Path(override).expanduser().resolve()
    root = Path(str(configured)).expanduser()
    return (root if root.is_absolute() else repo / root).resolve()


# -- stage 1: the per-frame network -----------------------------------------------------------------

#: the data fields of both stages' recipes
_DATA_SOURCE: dict[str, Any] = {
    "dataset": "camvid",
    "root": "../shared/data/camvid",
    "train_split": "train",
    "val_split": "val",
}
DATA_DEFAULTS: dict[str, Any] = {
    **_DATA_SOURCE,
    "crop_size": [288, 384],
    "scale_range": [0.5, 2.0],
    "hflip": 0.5,
    "jitter": {"p": 0.8, "brightness": 0.25, "contrast": 0.25, "saturation": 0.25, "hue": 0.03},
    "boundary_radius": 2,
    # thin classes pasted from another frame at a random horizontal offset (p 0: off)
    "copy_paste": {"p": 0.0, "classes": ["Pole", "SignSymbol"], "max_shift": 0.5},
    "num_workers": 1,
    "val_batch_size": 4,
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "batch_size": 8,
    "max_iters": 1000,
    "time_budget_min": None,
    "optimizer": "adamw",
    "lr": 5e-4,
    "head_lr_mult": 4.0,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "warmup_iters": 100,
    "schedule": "poly",
    "poly_power": 0.9,
    "min_lr_ratio": 0.0,
    "class_weighting": "sqrt_median_freq",
    "boundary_loss_weight": 0.5,
    "boundary_pos_weight_max": 10.0,
    "pretrained": "imagenet",
    "init": None,
    "ema": None,
    "ohem_keep": None,
    "lovasz_weight": None,
    "val_every_iters": 0,
    "val_every_min": 10.0,
    "log_every": 10,
    "threads": None,
    "grad_clip": 5.0,
    "device": "cpu",
}


@dataclass
class Recipe:
    """A per-frame recipe: the file, its parsed YAML, the model, and the data and train sections with defaults."""

    path: Path
    raw: dict[str, Any]
    model: ModelConfig
    model_id: str
    data: dict[str, Any]
    train: dict[str, Any]
    data_root: Path


def _check_train(train: dict[str, Any], path: Path) -> None:
    if train["optimizer"] not in ("adamw", "sgd"):
        raise TrainConfigError(f"{path}: train.optimizer must be adamw or sgd, got {train['optimizer']!r}")
    if train["schedule"] not in ("poly", "cosine"):
        raise TrainConfigError(f"{path}: train.schedule must be poly or cosine, got {train['schedule']!r}")
    if train["class_weighting"] not in ("none", "sqrt_median_freq", "median_freq"):
        raise TrainConfigError(f"{path}: train.class_weighting must be none, sqrt_median_freq or median_freq")
    if train["pretrained"] not in ("imagenet", "none", None):
        raise TrainConfigError(f"{path}: train.pretrained must be imagenet or none")
    if str(train["device"]).lower() not in ("cpu", "cuda", "auto"):
        raise TrainConfigError(f"{path}: train.device must be cpu, cuda or auto, got {train['device']!r}")
    for key in ("batch_size", "max_iters"):
        if isinstance(train[key], bool) or not isinstance(train[key], int) or train[key] < 1:
            raise TrainConfigError(f"{path}: train.{key} must be a positive integer, got {train[key]!r}")
    for key, interval in (("ema", "(0, 1)"), ("ohem_keep", "(0, 1]")):
        v = train[key]
        bad = isinstance(v, bool) or not isinstance(v, (int, float))
        if v is not None and (bad or not 0.0 < float(v) <= 1.0 or (key == "ema" and float(v) == 1.0)):
            raise TrainConfigError(f"{path}: train.{key} must be null or a number in {interval}, got {v!r}")
    v = train["lovasz_weight"]
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v) >= 0.0):
        raise TrainConfigError(f"{path}: train.lovasz_weight must be null or a number >= 0, got {v!r}")


def _check_copy_paste(cp: Any, path: Path) -> None:
    p, shift, classes = cp["p"], cp["max_shift"], cp["classes"]
    for key, v in (("p", p), ("max_shift", shift)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise TrainConfigError(f"{path}: data.copy_paste.{key} must be a number in [0, 1], got {v!r}")
    names = list(CAMVID.names)
    if (
        not isinstance(classes, list)
        or not classes
        or len(set(map(str, classes))) != len(classes)
        or any(c not in names for c in classes)
    ):
        raise TrainConfigError(
            f"{path}: data.copy_paste.classes must be distinct CamVid class names ({', '.join(names)}), got {classes!r}"
        )


def load_recipe(config_path: Union[str, Path], data_root: Optional[Union[str, Path]] = None) -> Recipe:
    """The per-frame recipe at ``config_path`` (``data_root`` overrides ``data.root``)."""
    path, raw = read_recipe_file(config_path)
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{path}: expected a mapping with model, data and train sections")
    _check_top_level(raw, ("model", "model_id", "data", "train"), path)
    model = _model_config(raw.get("model"), path, path.parent)
    if model.temporal is not None:
        raise TrainConfigError(f"{path}: model.temporal is set; this trainer trains per-frame models only")
    data = merge_section(DATA_DEFAULTS, raw.get("data"), "data", path)
    train = merge_section(TRAIN_DEFAULTS, raw.get("train"), "train", path)
    if data["dataset"] != "camvid":
        raise TrainConfigError(f"{path}: data.dataset={data['dataset']!r}; only 'camvid' is supported")
    if model.num_classes != CAMVID.num_classes:
        raise TrainConfigError(
            f"{path}: model.num_classes={model.num_classes} but CamVid has {CAMVID.num_classes} classes"
        )
    _check_train(train, path)
    if train["init"] is not None:
        if not isinstance(train["init"], str) or not train["init"]:
            raise TrainConfigError(f"{path}: train.init must be null or the path of a per-frame checkpoint")
        ip = Path(train["init"]).expanduser()
        train["init"] = str(ip if ip.is_absolute() else repo_root_for(path) / ip)
    _check_size(data["crop_size"], "data.crop_size", path)
    _check_copy_paste(data["copy_paste"], path)
    root = _data_root(data_root, data["root"], repo_root_for(path))
    model_id = str(raw.get("model_id") or f"{model.name}_camvid")
    return Recipe(path=path, raw=raw, model=model, model_id=model_id, data=data, train=train, data_root=root)


# -- stages 2-3: the temporal modules ---------------------------------------------------------------

TEMPORAL_DATA_DEFAULTS: dict[str, Any] = {
    **_DATA_SOURCE,
    "clip_size": [288, 384],
    "clips": None,  # StillClipDataset options
    "memory_split": "train",
}
TEMPORAL_TRAIN_DEFAULTS: dict[str, Any] = {
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


def load_temporal_recipe(config_path: Union[str, Path], data_root: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """The temporal recipe with defaults filled in and paths resolved; TrainConfigError naming the field otherwise."""
    path, raw = read_recipe_file(config_path)
    if not isinstance(raw, dict) or raw.get("stage") != "temporal":
        raise TrainConfigError(f"{path}: a temporal recipe has `stage: temporal` at the top level")
    _check_top_level(raw, ("stage", "model", "model_id", "init", "data", "train"), path)
    repo = repo_root_for(path)
    model = _model_config(raw.get("model"), path, repo)
    if model.temporal is None:
        raise TrainConfigError(
            f"{path}: model has no `temporal` section; train per-frame models with the "
            "stage-1 recipe (config/train/mbv2_lite_camvid.yaml)"
        )
    data = merge_section(TEMPORAL_DATA_DEFAULTS, raw.get("data"), "data", path)
    train = merge_section(TEMPORAL_TRAIN_DEFAULTS, raw.get("train"), "train", path)
    init = raw.get("init")
    if not isinstance(init, str) or not init:
        raise TrainConfigError(f"{path}: init must name the per-frame checkpoint the temporal model starts from")
    _check_size(data["clip_size"], "data.clip_size", path)
    return {
        "path": path,
        "raw": raw,
        "model": model,
        "model_id": str(raw.get("model_id") or model.name),
        "init": Path(init) if Path(init).is_absolute() else repo / init,
        "data": data,
        "train": train,
        "root": _data_root(data_root, data["root"], repo),
    }
