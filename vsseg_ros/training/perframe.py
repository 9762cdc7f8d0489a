"""Stage-1 training of :class:`PerFrameSegNet` on CamVid (SegNet layout).

``train(config_path)`` reads a YAML recipe (``config/train/*.yaml``)::

    model: {...}                  # a ModelConfig mapping (as in config/models/*.yaml)
    model_id: mbv2_lite_camvid    # id written into best.pt
    data:   {root, train_split, val_split, crop_size, scale_range, hflip, jitter, boundary_radius, num_workers}
    train:  {seed, batch_size, max_iters, time_budget_min, optimizer, lr, head_lr_mult, weight_decay,
             momentum, warmup_iters, schedule, poly_power, class_weighting, boundary_loss_weight,
             boundary_pos_weight_max, pretrained, init, ema, ohem_keep, val_every_iters, val_every_min,
             log_every, threads, grad_clip, device}

Relative ``data.root`` paths are resolved against the repository the config file lies in (the nearest
folder above it holding ``pyproject.toml`` or ``package.xml``), else against the config file's folder.

Loss: pixel cross-entropy (ignore 255) with tempered class weights (``sqrt_median_freq``: the square root of
median-frequency balancing, computed from the training labels) plus ``boundary_loss_weight`` x binary
cross-entropy on the boundary head (targets from :mod:`vsseg_ros.training.targets`, excluded pixels left out,
positives up-weighted by neg/pos of the batch, capped at ``boundary_pos_weight_max``). Both heads' stride-8
outputs are upsampled bilinearly to the crop size before the loss.

``ohem_keep`` (a fraction in (0, 1], null = off): the cross-entropy averages only that share of each batch's
labelled pixels, the ones with the highest loss (online hard example mining; the class weights still apply).

``init``: start from the weights of a per-frame checkpoint (e.g. ``vsseg_ros/weights/default.pt``, resolved like
``data.root``) instead of ImageNet: a longer recipe continues from a trained model. ``ema`` (a decay such as
0.999, null = off): an exponential moving average of the weights (BatchNorm statistics included) is kept, saved
in ``last.pt``, validated alongside the trained weights, and it is what ``best.pt`` holds.

Schedule: linear warm-up, then poly (or cosine) decay over the run's *progress*, which is
``max(step / max_iters, elapsed / time_budget)``: on a shared machine whose speed varies, a time budget
still ends the run (with a completed decay, a final validation and ``best.pt``) on time.

Data-parallel: ``torchrun --nproc_per_node N -m vsseg_ros.training.perframe --config ...`` trains with N
processes (gloo on CPU; nccl with ``train.device: cuda``, one GPU per process); ``train.batch_size`` stays the
batch of one step over all processes (each takes ``batch_size / N``), so a recipe means the same on any N.
See :func:`run_training`.

Outputs in ``out_dir``: ``last.pt`` (model, optimiser, step, elapsed time, history: for ``resume``),
``best.pt`` (a vsseg_ros checkpoint of the best validation mIoU), ``train_log.jsonl`` (one line per
validation), ``loss_log.jsonl`` (training loss every ``log_every`` steps) and ``val_miou.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from vsseg_ros.core.classes import CAMVID, IGNORE_ID
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.data.camvid import CamVid, CamVidTrainDataset
from vsseg_ros.data.transforms import TrainAugment
from vsseg_ros.metrics.confusion import ConfusionMatrix

#: the network input is zero-padded to a multiple of this at validation, as PerFrameSegmenter does
VAL_PAD_MULTIPLE = 32
LAST_FORMAT = "vsseg_ros.train_state"


class TrainConfigError(ValueError):
    """A training recipe that cannot be used; the message names the file and the field."""


# -- recipe ---------------------------------------------------------------------------------------

DATA_DEFAULTS: dict[str, Any] = {
    "dataset": "camvid",
    "root": "../shared/data/camvid",
    "train_split": "train",
    "val_split": "val",
    "crop_size": [288, 384],
    "scale_range": [0.5, 2.0],
    "hflip": 0.5,
    "jitter": {"p": 0.8, "brightness": 0.25, "contrast": 0.25, "saturation": 0.25, "hue": 0.03},
    "boundary_radius": 2,
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
    "val_every_iters": 0,
    "val_every_min": 10.0,
    "log_every": 10,
    "threads": None,
    "grad_clip": 5.0,
    "device": "cpu",
}


@dataclass
class Recipe:
    path: Path
    raw: dict[str, Any]
    model: ModelConfig
    model_id: str
    data: dict[str, Any]
    train: dict[str, Any]
    data_root: Path


def _repo_root_for(path: Path) -> Path:
    for parent in path.resolve().parents:
        if (parent / "pyproject.toml").is_file() or (parent / "package.xml").is_file():
            return parent
    return path.resolve().parent


def _merge(defaults: dict[str, Any], given: Any, section: str, path: Path) -> dict[str, Any]:
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


def load_recipe(config_path: Union[str, Path], data_root: Optional[Union[str, Path]] = None) -> Recipe:
    from vsseg_ros.core.config import ConfigError

    path, raw = read_recipe_file(config_path)
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{path}: expected a mapping with model, data and train sections")
    unknown = sorted(set(raw) - {"model", "model_id", "data", "train"})
    if unknown:
        raise TrainConfigError(
            f"{path}: unknown top-level field(s): {', '.join(unknown)}; known: model, model_id, data, train"
        )
    model_section = raw.get("model")
    try:
        if isinstance(model_section, str):  # a path to a model config file
            mp = Path(model_section)
            model = ModelConfig.from_yaml(mp if mp.is_absolute() else path.parent / mp)
        else:
            model = ModelConfig.from_dict(model_section if model_section is not None else {})
    except ConfigError as e:
        raise TrainConfigError(f"{path}: model: {e}") from None
    if model.temporal is not None:
        raise TrainConfigError(f"{path}: model.temporal is set; this trainer trains per-frame models only")
    data = _merge(DATA_DEFAULTS, raw.get("data"), "data", path)
    train = _merge(TRAIN_DEFAULTS, raw.get("train"), "train", path)
    if data["dataset"] != "camvid":
        raise TrainConfigError(f"{path}: data.dataset={data['dataset']!r}; only 'camvid' is supported")
    if model.num_classes != CAMVID.num_classes:
        raise TrainConfigError(
            f"{path}: model.num_classes={model.num_classes} but CamVid has {CAMVID.num_classes} classes"
        )
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
    if train["init"] is not None:
        if not isinstance(train["init"], str) or not train["init"]:
            raise TrainConfigError(f"{path}: train.init must be null or the path of a per-frame checkpoint")
        ip = Path(train["init"]).expanduser()
        train["init"] = str(ip if ip.is_absolute() else _repo_root_for(path) / ip)
    cs = data["crop_size"]
    if not (isinstance(cs, (list, tuple)) and len(cs) == 2 and all(isinstance(v, int) and v > 0 for v in cs)):
        raise TrainConfigError(f"{path}: data.crop_size must be [height, width], got {cs!r}")
    if data_root is not None:
        root = Path(data_root).expanduser()
    else:
        root = Path(str(data["root"])).expanduser()
        if not root.is_absolute():
            root = _repo_root_for(path) / root
    model_id = str(raw.get("model_id") or f"{model.name}_camvid")
    return Recipe(path=path, raw=raw, model=model, model_id=model_id, data=data, train=train, data_root=root.resolve())


# -- data -----------------------------------------------------------------------------------------


class SeedStream(torch.utils.data.Sampler):
    """An endless stream of ``(index, augmentation seed)``: epoch ``e`` is a permutation drawn from
    ``(seed, e)``; ``start`` skips the first ``start`` draws (a resumed run picks up where it stopped).

    Data-parallel runs shard the one stream: with ``world_size`` ranks taking ``shard_batch`` draws each per
    step, rank ``r`` yields the ``r``-th run of ``shard_batch`` draws of every ``world_size * shard_batch``, so
    the ranks' batches of a step together are the single-process batch of that step (``start`` is then a
    multiple of ``world_size * shard_batch``)."""

    def __init__(
        self, n: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1, shard_batch: int = 1
    ) -> None:
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.n, self.seed, self.start = int(n), int(seed), int(start)
        self.rank, self.world_size, self.shard_batch = int(rank), int(world_size), max(1, int(shard_batch))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, pos = divmod(self.start, self.n)
        g = self.start  # position in the global stream
        while True:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            for i in range(pos, self.n):
                if (g // self.shard_batch) % self.world_size == self.rank:
                    yield int(perm[i]), int(self.seed * 1_000_003 + epoch * self.n + i) & 0x7FFFFFFF
                g += 1
            epoch, pos = epoch + 1, 0


def _worker_init(_: int) -> None:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Per-class loss weights from pixel counts: ``median_freq`` = median(f) / f_c, ``sqrt_median_freq`` its
    square root, ``none`` = ones. Classes absent from the data get the largest weight."""
    c = counts.astype(np.float64)
    if mode == "none" or c.sum() == 0:
        return np.ones(len(c), np.float32)
    freq = c / c.sum()
    present = freq > 0
    med = np.median(freq[present])
    w = np.ones(len(c))
    w[present] = med / freq[present]
    if mode == "sqrt_median_freq":
        w[present] = np.sqrt(w[present])
    w[~present] = w[present].max() if present.any() else 1.0
    return w.astype(np.float32)


# -- model pieces ---------------------------------------------------------------------------------


def _param_groups(model: PerFrameSegNet, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = not name.startswith("backbone.")
        no_decay = p.ndim <= 1  # BatchNorm weights/biases and conv biases
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


def lr_factor(step: int, progress: float, train: dict[str, Any]) -> float:
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


def segmentation_loss(
    out: dict[str, Optional[Tensor]],
    label: Tensor,
    boundary: Optional[Tensor],
    weight: Optional[Tensor],
    train: dict[str, Any],
) -> tuple[Tensor, dict[str, float]]:
    size = label.shape[-2:]
    logits = F.interpolate(out["logits"], size=size, mode="bilinear", align_corners=False)
    keep = train.get("ohem_keep")
    if keep is not None and float(keep) < 1.0:
        ce = ohem_cross_entropy(logits, label, weight, float(keep))
    else:
        ce = F.cross_entropy(logits, label, weight=weight, ignore_index=IGNORE_ID)
    if not torch.isfinite(ce):  # a batch of only ignore pixels
        ce = logits.sum() * 0.0
    total = ce
    parts = {"ce": float(ce.detach())}
    bw = float(train["boundary_loss_weight"] or 0.0)
    if bw > 0 and boundary is not None and out.get("boundary") is not None:
        edge = F.interpolate(out["boundary"], size=size, mode="bilinear", align_corners=False)[:, 0]
        valid = boundary != IGNORE_ID
        if bool(valid.any()):
            target = (boundary[valid] == 1).float()
            pos = float(target.sum())
            neg = float(target.numel()) - pos
            pw = min(max(neg / max(pos, 1.0), 1.0), float(train["boundary_pos_weight_max"]))
            bce = F.binary_cross_entropy_with_logits(
                edge[valid], target, pos_weight=torch.tensor(pw, dtype=edge.dtype, device=edge.device)
            )
            total = total + bw * bce
            parts["boundary"] = float(bce.detach())
        else:  # keep the boundary head in the graph (data-parallel gradient sync expects every step alike)
            total = total + edge.sum() * 0.0
    parts["loss"] = float(total.detach())
    return total, parts


def ohem_cross_entropy(logits: Tensor, label: Tensor, weight: Optional[Tensor], keep: float) -> Tensor:
    """Weighted cross-entropy over the ``keep`` share of the labelled pixels with the highest loss (at least
    one), normalised by their class weights as ``F.cross_entropy`` normalises a full batch."""
    per_pixel = F.cross_entropy(logits, label, weight=weight, ignore_index=IGNORE_ID, reduction="none").flatten()
    valid = (label != IGNORE_ID).flatten()
    n = int(valid.sum())
    if n == 0:
        return logits.sum() * 0.0
    k = max(1, int(round(keep * n)))
    losses = per_pixel[valid]
    idx = torch.topk(losses, k, sorted=False).indices
    if weight is None:
        return losses[idx].mean()
    w = weight[label.flatten()[valid][idx]]
    return losses[idx].sum() / w.sum().clamp_min(1e-12)


class WeightAverage:
    """An exponential moving average of a model's weights and buffers, in its own copy of the model (``model``):
    ``update()`` after every optimiser step. Integer buffers (BatchNorm's batch counter) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        import copy

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


@torch.no_grad()
def evaluate(
    model: PerFrameSegNet,
    data: CamVid,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 4,
    cache: Optional[dict[int, tuple[np.ndarray, np.ndarray]]] = None,
    rank: int = 0,
    world_size: int = 1,
) -> ConfusionMatrix:
    """Confusion matrix of ``model`` over ``data`` at each frame's own size, preprocessed as
    :class:`PerFrameSegmenter` does (normalise, zero-pad to a multiple of 32, upsample stride-8 logits).
    With ``world_size`` > 1 only frames ``rank, rank + world_size, ...`` are scored (sum the ranks' matrices)."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(model.num_classes)
    device = next(model.parameters()).device
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    stride = model.stride  # 8 for the lite head, the output stride for PSP/FCN
    order = list(range(int(rank), len(data), int(world_size)))
    try:
        j = 0
        while j < len(order):
            pairs = []
            while j < len(order) and len(pairs) < batch_size:
                i = order[j]
                if cache is not None and i in cache:
                    pair = cache[i]
                else:
                    pair = data.load(i)
                    if cache is not None:
                        cache[i] = pair
                if pairs and pair[0].shape != pairs[0][0].shape:
                    break
                pairs.append(pair)
                j += 1
            H, W = pairs[0][0].shape[:2]
            hp = -(-H // VAL_PAD_MULTIPLE) * VAL_PAD_MULTIPLE
            wp = -(-W // VAL_PAD_MULTIPLE) * VAL_PAD_MULTIPLE
            x = torch.zeros(len(pairs), 3, hp, wp)
            img = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float()
            x[:, :, :H, :W] = (img - m) / s
            logits = model(x.to(device), boundary=False)["logits"]
            hl, wl = -(-H // stride), -(-W // stride)
            logits = F.interpolate(logits[:, :, :hl, :wl], scale_factor=stride, mode="bilinear", align_corners=False)[
                :, :, :H, :W
            ]
            pred = logits.argmax(1).cpu().numpy().astype(np.uint8)
            for k, (_, label) in enumerate(pairs):
                cm.update(pred[k], label)
    finally:
        model.train(was_training)
    return cm


# -- plotting -------------------------------------------------------------------------------------


def plot_curve(
    points: Sequence[tuple[int, float]], path: Path, title: str = "validation mIoU", xlabel: str = "iteration"
) -> None:
    """A line chart of (x, mIoU in [0, 1]) (:func:`vsseg_ros.charts.training_curve`), written as PNG."""
    from vsseg_ros import charts

    path.parent.mkdir(parents=True, exist_ok=True)
    charts.save_png(charts.training_curve(points, title, xlabel), path)


# -- the trainer ----------------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@dataclass
class TrainResult:
    """What :func:`run_training` leaves: the best checkpoint's path and the trained model (this rank's copy)."""

    best_path: Path
    model: PerFrameSegNet
    step: int
    best_miou: float
    best_step: int


def train(
    config_path: Path,
    out_dir: Optional[Path] = None,
    resume: bool = False,
    max_iters: Optional[int] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
) -> Path:
    """Train a PerFrameSegNet from the recipe at ``config_path``; return the path of ``best.pt``.

    ``out_dir`` defaults to ``out/train/<config file stem>``; ``max_iters`` overrides ``train.max_iters``;
    ``data_root`` overrides ``data.root``; ``resume`` continues from ``out_dir/last.pt`` at its saved step.
    Under ``torchrun`` every process calls this; see :func:`run_training`.
    """
    return run_training(config_path, out_dir, resume, max_iters, data_root, threads, command, progress).best_path


def run_training(
    config_path: Path,
    out_dir: Optional[Path] = None,
    resume: bool = False,
    max_iters: Optional[int] = None,
    data_root: Optional[Path] = None,
    threads: Optional[int] = None,
    command: Optional[str] = None,
    progress: bool = True,
) -> TrainResult:
    """:func:`train`, returning the model as well.

    Data-parallel: launched by ``torchrun --nproc_per_node N``, the N processes join one group (gloo on CPU,
    nccl with ``train.device: cuda``, one GPU each), each takes ``batch_size / N`` of every step's batch from the
    shared :class:`SeedStream`, gradients are averaged by DistributedDataParallel (BatchNorm statistics are each
    rank's own; the running buffers are rank 0's), the logged losses and validation confusion matrices are summed
    over the ranks, and rank 0's clock steers the schedule, the time budget and validation for all of them. Only
    rank 0 writes checkpoints and logs and shows the progress bar.
    """
    from vsseg_ros.training.distributed import init_distributed

    config_path = Path(config_path)
    recipe = load_recipe(config_path, data_root)
    try:
        ctx = init_distributed(str(recipe.train["device"]))
    except ValueError as e:
        raise TrainConfigError(f"{config_path}: {e}") from None
    try:
        return _run(recipe, ctx, config_path, out_dir, resume, max_iters, threads, command, progress)
    finally:
        ctx.close()


def _run(
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
    from tqdm import tqdm

    from vsseg_ros.core.checkpoint import save_checkpoint

    t_start = time.monotonic()
    tr, dc = recipe.train, recipe.data
    main_rank = ctx.is_main
    say = print if main_rank else (lambda *a, **k: None)
    if max_iters is not None:
        if max_iters < 1:
            raise TrainConfigError(f"max_iters must be >= 1, got {max_iters}")
        tr["max_iters"] = int(max_iters)
    batch_size = int(tr["batch_size"])
    if batch_size % ctx.world_size:
        raise TrainConfigError(
            f"{config_path}: train.batch_size={batch_size} (the batch of one step, over all "
            f"processes) must be divisible by the number of processes, {ctx.world_size}"
        )
    shard_batch = batch_size // ctx.world_size
    n_threads = threads if threads is not None else tr.get("threads")
    if n_threads:
        torch.set_num_threads(int(n_threads))
    out_dir = Path(out_dir) if out_dir is not None else Path("out/train") / config_path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    log_path, loss_log_path = out_dir / "train_log.jsonl", out_dir / "loss_log.jsonl"
    if command is None:
        command = shlex.join([Path(sys.executable).name] + sys.argv)
    device = ctx.device

    seed = int(tr["seed"])
    _seed_everything(seed)  # the same initial weights on every rank (DDP also copies rank 0's)
    cfg = recipe.model
    model = PerFrameSegNet(cfg)
    if tr["init"] and not resume:  # warm start from a trained per-frame model
        from vsseg_ros.core.checkpoint import load_checkpoint, load_state_dict_checked

        init_ckpt = load_checkpoint(tr["init"])
        if init_ckpt.config.temporal is not None:
            raise TrainConfigError(
                f"{config_path}: train.init={tr['init']} is a temporal checkpoint; this trainer "
                "starts from a per-frame one"
            )
        load_state_dict_checked(
            model,
            {k: v.float() if v.is_floating_point() else v for k, v in init_ckpt.state_dict.items()},
            source=str(tr["init"]),
        )
        say(f"warm start from {tr['init']} ({init_ckpt.model_id})", flush=True)
    elif tr["pretrained"] == "imagenet" and not resume:
        model.load_imagenet_backbone()
    model.to(device)
    model.train()
    averaged = WeightAverage(model, float(tr["ema"])) if tr.get("ema") else None

    train_data = CamVid(recipe.data_root, dc["train_split"], num_classes=cfg.num_classes)
    val_data = CamVid(recipe.data_root, dc["val_split"], num_classes=cfg.num_classes)
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
    dataset = CamVidTrainDataset(
        train_data,
        augment,
        mean=cfg.mean,
        std=cfg.std,
        boundary_radius=int(dc["boundary_radius"] or 0) or None,
        cache=True,
    )
    dataset.preload()  # decoded once; workers forked after this share the pages
    counts = np.zeros(cfg.num_classes, np.int64)
    for _, lab in dataset.pairs.kept():
        counts += np.bincount(lab.ravel(), minlength=256)[: cfg.num_classes]
    weights_np = class_weights(counts, str(tr["class_weighting"]))
    weight = torch.from_numpy(weights_np).to(device)

    optim_groups = _param_groups(model, float(tr["lr"]), float(tr["head_lr_mult"]), float(tr["weight_decay"]))
    if tr["optimizer"] == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(optim_groups, lr=float(tr["lr"]))
    else:
        optimizer = torch.optim.SGD(optim_groups, lr=float(tr["lr"]), momentum=float(tr["momentum"]), nesterov=True)

    step, elapsed_before, best_miou, best_step = 0, 0.0, -1.0, -1
    history: list[dict[str, Any]] = []
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"resume: {last_path} not found (nothing to resume in {out_dir})")
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != LAST_FORMAT:
            raise ValueError(f"resume: {last_path} is not a training state written by this trainer")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if averaged is not None:
            if state.get("ema") is None:
                raise ValueError(f"resume: {last_path} has no weight average but the recipe sets train.ema")
            averaged.model.load_state_dict(state["ema"])
        step = int(state["step"])
        elapsed_before = float(state["elapsed_s"])
        best_miou, best_step = float(state["best_miou"]), int(state["best_step"])
        history = list(state.get("history", []))
        torch.set_rng_state(state["torch_rng"])
        say(
            f"resuming from {last_path} at step {step} ({elapsed_before / 60:.1f} min trained, "
            f"best mIoU {100 * best_miou:.2f} % at step {best_step})",
            flush=True,
        )
    elif main_rank and (log_path.exists() or loss_log_path.exists()):
        for p in (log_path, loss_log_path):  # a fresh run starts fresh logs
            p.unlink(missing_ok=True)

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
    run_t0 = time.monotonic()

    def elapsed() -> float:
        return elapsed_before + (time.monotonic() - run_t0)

    def shared_elapsed() -> float:
        """Rank 0's elapsed time on every rank: the schedule, the budget and validation follow one clock."""
        return ctx.broadcast(elapsed())

    def progress_of(s: int, t: float) -> float:
        p = s / max_it
        if budget_s:
            p = max(p, t / budget_s)
        return p

    def meta_common() -> dict[str, Any]:
        return {
            "dataset": "camvid",
            "data_root": str(recipe.data_root),
            "train_config": recipe.raw,
            "train_config_path": str(config_path),
            "command": command,
            "processes": ctx.world_size,
            "class_weights": [float(w) for w in weights_np],
            "class_pixel_counts": counts.tolist(),
        }

    def save_last() -> None:
        if not main_rank:
            return
        _atomic_torch_save(
            {
                "format": LAST_FORMAT,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "elapsed_s": elapsed(),
                "ema": averaged.model.state_dict() if averaged is not None else None,
                "best_miou": best_miou,
                "best_step": best_step,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "config": cfg.to_dict(),
                "meta": meta_common(),
            },
            last_path,
        )

    val_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def validate(train_stats: dict[str, float]) -> float:
        nonlocal best_miou, best_step
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

        # with a weight average, it is the model kept (best.pt); the trained weights are scored for the log
        kept = averaged.model if averaged is not None else model
        summ = score(kept)
        raw_miou = score(model)["miou"] if averaged is not None else None
        miou = summ["miou"] if summ["miou"] is not None else 0.0
        improved = miou > best_miou
        record = {
            "step": step,
            "epoch": step * batch_size / len(train_data),
            "elapsed_min": round(elapsed() / 60.0, 2),
            "lr": optimizer.param_groups[0]["lr"],
            **{f"train_{k}": v for k, v in train_stats.items()},
            "val_miou": miou,
            "val_pixel_accuracy": summ["pixel_accuracy"],
            "val_iou": summ["iou"],
            **({"val_miou_trained_weights": raw_miou} if averaged is not None else {}),
            "val_s": round(time.monotonic() - t0, 1),
            "best": improved,
        }
        history.append({"step": step, "miou": miou})
        if improved:
            best_miou, best_step = miou, step
            if main_rank:
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
                }
                save_checkpoint(best_path, kept, cfg, CAMVID, recipe.model_id, meta=meta)
        if main_rank:
            _append_jsonl(log_path, record)
            save_last()
            plot_curve(
                [(h["step"], h["miou"]) for h in history], out_dir / "val_miou.png", title=f"{recipe.model_id} val mIoU"
            )
        worst = sorted(((v if v is not None else 0.0), k) for k, v in summ["iou"].items())[:3]
        say(
            f"\n[val] step {step}: mIoU {100 * miou:.2f} %  pixel acc {100 * (summ['pixel_accuracy'] or 0):.2f} %"
            f"  (best {100 * best_miou:.2f} % at step {best_step}); weakest: "
            + ", ".join(f"{k} {100 * v:.1f}" for v, k in worst)
            + f"  [{record['val_s']} s]",
            flush=True,
        )
        return miou

    def finish() -> TrainResult:
        ctx.sync_buffers(model)
        ctx.barrier()  # rank 0's files are complete when any rank returns
        return TrainResult(best_path, model, step, best_miou, best_step)

    clock = shared_elapsed()
    if step >= max_it or progress_of(step, clock) >= 1.0:
        if not ctx.broadcast(float(best_path.is_file())):  # rank 0's view: every rank must take the same branch
            validate({})
        return finish()

    workers = int(dc["num_workers"])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=shard_batch,
        sampler=SeedStream(len(dataset), seed, step * batch_size, ctx.rank, ctx.world_size, shard_batch),
        num_workers=workers,
        worker_init_fn=_worker_init if workers > 0 else None,
        drop_last=False,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=device.type == "cuda",
        # fork after OpenCV/OpenMP threads have run can deadlock the worker; spawn is safe
        multiprocessing_context="spawn" if workers > 0 else None,
    )

    val_every_iters = int(tr["val_every_iters"] or 0)
    val_every_s = float(tr["val_every_min"]) * 60.0 if tr.get("val_every_min") else None
    log_every = max(1, int(tr["log_every"] or 1))
    last_val_clock = clock
    sums: dict[str, float] = {}
    nsum = 0
    ema: Optional[float] = None
    bar = tqdm(
        total=max_it,
        initial=step,
        desc="train",
        dynamic_ncols=False,
        ncols=110,
        disable=not (progress and main_rank),
        mininterval=5.0,
        file=sys.stdout,
    )
    it_t0, it_step0 = time.monotonic(), step
    data_iter = iter(loader)
    finished = False
    try:
        while not finished:
            batch = next(data_iter)
            factor = lr_factor(step, progress_of(step, clock), tr)
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * factor
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            boundary = batch.get("boundary")
            if boundary is not None:
                boundary = boundary.to(device, non_blocking=True)
            out = net(image, boundary=boundary is not None)
            loss, local_parts = segmentation_loss(out, label, boundary, weight, tr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients over the ranks here
            if tr.get("grad_clip"):
                nn.utils.clip_grad_norm_(model.parameters(), float(tr["grad_clip"]))
            optimizer.step()
            if averaged is not None:
                averaged.update()
            parts = _mean_parts(local_parts, ctx)
            if not math.isfinite(parts["loss"]):
                raise FloatingPointError(f"the loss became {parts['loss']} at step {step}; lower train.lr")
            step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            nsum += 1
            ema = parts["loss"] if ema is None else 0.95 * ema + 0.05 * parts["loss"]
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
            clock = shared_elapsed()
            if step % log_every == 0 and main_rank:
                _append_jsonl(
                    loss_log_path,
                    {"step": step, "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(clock, 1), **parts},
                )
            finished = step >= max_it or progress_of(step, clock) >= 1.0
            due = (
                finished
                or (val_every_iters and step % val_every_iters == 0)
                or (val_every_s is not None and clock - last_val_clock >= val_every_s)
            )
            if due:
                stats = {k: v / max(nsum, 1) for k, v in sums.items()}
                stats["s_per_iter"] = (time.monotonic() - it_t0) / max(step - it_step0, 1)
                validate(stats)
                sums, nsum = {}, 0
                clock = shared_elapsed()
                last_val_clock = clock
                it_t0, it_step0 = time.monotonic(), step
    finally:
        bar.close()
        del data_iter
    total_min = (time.monotonic() - t_start) / 60.0
    say(
        f"done: {step} iterations, best val mIoU {100 * best_miou:.2f} % at step {best_step}; "
        f"{total_min:.1f} min this session; best checkpoint {best_path}",
        flush=True,
    )
    return finish()


def _mean_parts(parts: dict[str, float], ctx: Any) -> dict[str, float]:
    """The loss terms averaged over the ranks (``boundary`` over the ranks that had boundary pixels)."""
    if not ctx.enabled:
        return parts
    has_b = "boundary" in parts
    total = ctx.all_reduce([parts["ce"], parts.get("boundary", 0.0), float(has_b), parts["loss"]])
    out = {"ce": float(total[0] / ctx.world_size)}
    if total[2] > 0:
        out["boundary"] = float(total[1] / total[2])
    out["loss"] = float(total[3] / ctx.world_size)
    return out


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vsseg_ros.training.perframe",
        description="Train the per-frame segmentation network (stage 1) on CamVid.",
    )
    p.add_argument(
        "--config", required=True, type=Path, help="training recipe (YAML), e.g. config/train/mbv2_lite_camvid.yaml"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: out/train/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt at its saved step")
    p.add_argument("--max-iters", type=int, default=None, help="override train.max_iters")
    p.add_argument("--data-root", type=Path, default=None, help="override data.root (the CamVid folder)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: train.threads or torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "vsseg_ros.training.perframe", *argv_list])
    try:
        best = train(
            args.config,
            out_dir=args.out,
            resume=args.resume,
            max_iters=args.max_iters,
            data_root=args.data_root,
            threads=args.threads,
            command=command,
            progress=not args.no_progress,
        )
    except (TrainConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0") or 0) == 0:
        print(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
