"""The one place a model is turned into a :class:`Segmenter` (used by the ROS node, demo, eval and bench).

``load_segmenter("")`` runs the packaged default model: ``vsseg_ros/weights/default.pt`` when it ships with
the package; otherwise MobileNetV2 with ImageNet weights and *untrained* heads, built deterministically
(seed 0) and named :data:`UNTRAINED_MODEL_ID` so logs say plainly that its labels are meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, TypedDict, Union, cast

import torch

from vsseg_ros.core.checkpoint import Checkpoint, load_checkpoint
from vsseg_ros.core.classes import CAMVID
from vsseg_ros.core.config import ConfigError, ModelConfig, default_config, parse_input_size
from vsseg_ros.core.device import resolve_device, resolve_precision
from vsseg_ros.core.errors import CheckpointError
from vsseg_ros.core.frame_pipeline import MODEL_INPUT_SIZE
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.models.temporal import TemporalSegNet
from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter
from vsseg_ros.core.segmenter import Segmenter
from vsseg_ros.core.temporal_segmenter import (
    DEFAULT_MAX_FRAME_GAP_S,
    TemporalSegmenter,
    check_max_frame_gap,
    check_mode,
)

if TYPE_CHECKING:
    from vsseg_ros.runtimes.manifest import ExportedModel


class _Options(TypedDict):
    """The checked arguments :func:`load_segmenter` passes on to whichever segmenter it builds."""

    device: torch.device
    precision: torch.dtype
    input_size: Union[tuple[int, int], None, str]
    mean: Optional[tuple[float, ...]]
    std: Optional[tuple[float, ...]]
    temporal_mode: Optional[str]
    max_frame_gap_s: float


UNTRAINED_MODEL_ID = "mbv2_lite:imagenet-backbone+untrained-heads"
#: where a trained default model ships inside the package
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "default.pt"
#: the default model exported for ``backend: auto`` (int8, ``vsseg-ros export --default``), beside it
DEFAULT_EXPORT = DEFAULT_WEIGHTS.parent / "default_int8"


def default_weights_path() -> Optional[Path]:
    """The packaged default checkpoint, or None when none ships."""
    return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None


def default_model_description() -> str:
    """One line for logs/README saying which weights ``load_segmenter("")`` runs."""
    path = default_weights_path()
    if path is not None:
        return f"packaged checkpoint {path}"
    cfg = default_config()
    h, w = cfg.input_size or (0, 0)
    return (
        f"{UNTRAINED_MODEL_ID}: MobileNetV2 (ImageNet weights, output stride {cfg.output_stride}) + "
        f"LiteHead ({cfg.head_channels} ch) with UNTRAINED, randomly initialised heads (seed 0), "
        f"{cfg.num_classes} CamVid classes at {h}x{w}; its labels are meaningless until a trained "
        f"checkpoint is given (model_path) or shipped as {DEFAULT_WEIGHTS}"
    )


def build_untrained_default(config: Optional[ModelConfig] = None) -> PerFrameSegNet:
    """The default network with ImageNet backbone weights and heads initialised from seed 0 (the global RNG
    is left untouched)."""
    config = config or default_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PerFrameSegNet(config)
    model.load_imagenet_backbone()
    return model.eval()


def _check_triple(name: str, value: Optional[Sequence[float]], positive: bool) -> Optional[tuple[float, ...]]:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 3 numbers (R, G, B) on a 0-1 scale, got {value!r}") from None
    if len(vals) != 3:
        raise ValueError(f"{name} must be 3 numbers (R, G, B) on a 0-1 scale, got {len(vals)}: {list(vals)}")
    if positive and any(not v > 0 for v in vals):
        raise ValueError(f"{name} values must be > 0, got {list(vals)}")
    return vals


def load_segmenter(
    model_path: Union[str, Path] = "",
    device: str = "auto",
    precision: str = "fp32",
    input_size: Union[tuple[int, int], int, None] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    temporal_mode: Optional[str] = None,
    max_frame_gap_s: float = DEFAULT_MAX_FRAME_GAP_S,
    backend: str = "torch",
) -> Segmenter:
    """Build a ready-to-run Segmenter.

    ``model_path``: a checkpoint file or an exported model (a ``vsseg-ros export`` directory or one of its .onnx
    files); "" = the default model (see module doc). ``device``: auto, cpu, cuda, cuda:N. ``precision``: fp32,
    fp16, bf16 (torch autocast; exported graphs run their own precision, fp16 only as TensorRT engines).
    ``input_size``: ``(height, width)`` of the network input; None = the model's own (from its config);
    ``(0, 0)`` or 0 = each frame's own size. ``mean``/``std``: RGB on a 0-1 scale, None = the model's own.
    ``temporal_mode`` (causal, centered; None or "" = the model's own) and ``max_frame_gap_s`` apply to temporal
    models (see :class:`TemporalSegmenter`); per-frame models ignore them. ``backend``: torch, onnxruntime,
    openvino, tensorrt or auto (see :mod:`vsseg_ros.runtimes.backends`); with ``auto`` and no ``model_path``
    the packaged int8 export runs when it is there and matches ``default.pt``.

    Raises :class:`CheckpointError` for unusable files (and exported models), ``RuntimeUnavailable`` (a
    ``ValueError``) for a backend that is not installed, and ``ValueError`` for bad device, precision, sizes,
    temporal mode or frame gap.
    """
    from vsseg_ros.runtimes.backends import check_backend
    from vsseg_ros.runtimes.manifest import is_exported_path, load_exported

    # check the cheap arguments before touching any file
    backend = check_backend(backend)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    size = MODEL_INPUT_SIZE if input_size is None else _parse_size(input_size)
    mean_t = _check_triple("mean", mean, positive=False)
    std_t = _check_triple("std", std, positive=True)
    mode = check_mode(temporal_mode)
    gap = check_max_frame_gap(max_frame_gap_s)
    options = _Options(
        device=dev, precision=dtype, input_size=size, mean=mean_t, std=std_t, temporal_mode=mode, max_frame_gap_s=gap
    )

    path = str(model_path).strip() if model_path is not None else ""
    if path and is_exported_path(path):
        return exported_segmenter(load_exported(path), backend, **options)
    if not path and backend == "auto":
        shipped = fresh_default_export()
        # auto means torch (logged as such) where no installed engine can run the export, or for a torch
        # precision (fp16/bf16 autocast) that the int8 graphs do not have
        if shipped is not None and dtype == torch.float32 and _runnable_here(shipped, dev):
            return exported_segmenter(shipped, backend, **options)
    if backend not in ("torch", "auto"):  # a checkpoint on an exported backend: export it (cached) first
        from vsseg_ros.runtimes.backends import exported_checkpoint

        source = Path(path) if path else default_weights_path()
        if source is None:
            raise CheckpointError(
                f"backend {backend!r} runs exported models; no checkpoint ships as {DEFAULT_WEIGHTS}: give model_path"
            )
        return exported_segmenter(
            exported_checkpoint(source, None if isinstance(size, str) else size), backend, **options
        )
    if path:
        ckpt = load_checkpoint(path)
    elif default_weights_path() is not None:
        ckpt = load_checkpoint(DEFAULT_WEIGHTS)
    else:
        model = build_untrained_default()
        return PerFrameSegmenter(
            model, CAMVID, UNTRAINED_MODEL_ID, device=dev, precision=dtype, input_size=size, mean=mean_t, std=std_t
        )
    return segmenter_from_checkpoint(ckpt, **options)


def _runnable_here(model: "ExportedModel", device: torch.device) -> bool:
    """Whether an installed backend can run ``model`` (``auto``'s choice exists)."""
    from vsseg_ros.runtimes.backends import choose_backend
    from vsseg_ros.runtimes.sessions import RuntimeUnavailable

    try:
        choose_backend("auto", model, gpu=device.type == "cuda")
    except RuntimeUnavailable:
        return False
    return True


def backend_summary(segmenter: Segmenter) -> str:
    """Which backend, engine and provider actually run the network (logged and reported: never a silent fall
    back)."""
    backend = getattr(segmenter, "backend", "torch")
    net = getattr(segmenter, "net", None)  # an exported model's segmenter runs an ExportedNet
    return backend if backend == "torch" else f"{backend}: {getattr(net, 'description', backend)}"


def fresh_default_export() -> Optional["ExportedModel"]:
    """The packaged export of the default model, or None when it is absent or was exported from another
    ``default.pt`` (its recorded sha256 differs: re-run ``vsseg-ros export --default``)."""
    from vsseg_ros.runtimes.manifest import MANIFEST, load_exported, sha256_file

    if default_weights_path() is None or not (DEFAULT_EXPORT / MANIFEST).is_file():
        return None
    model = load_exported(DEFAULT_EXPORT)
    return model if model.source.get("sha256") == sha256_file(DEFAULT_WEIGHTS) else None


def exported_segmenter(
    model: "ExportedModel",
    backend: str,
    device: torch.device,
    precision: torch.dtype,
    input_size: Union[tuple[int, int], None, str],
    mean: Optional[Sequence[float]],
    std: Optional[Sequence[float]],
    temporal_mode: Optional[str],
    max_frame_gap_s: float,
) -> Segmenter:
    """A segmenter running exported ``model`` on ``backend`` (auto resolved). Pre- and post-processing run on
    the CPU; the graphs on the backend's engine (the CUDA or TensorRT provider for a CUDA ``device``)."""
    from vsseg_ros.runtimes.backends import choose_backend
    from vsseg_ros.runtimes.exported_net import exported_net

    gpu = device.type == "cuda"
    name = choose_backend(backend, model, gpu)
    if precision != torch.float32 and not (name == "tensorrt" and precision == torch.float16):
        raise ValueError(
            f"precision {precision} applies to torch (and fp16 to TensorRT engines); the {name} "
            f"backend runs the exported {model.precision} graph as it is: use precision fp32"
        )
    size = model.input_size if isinstance(input_size, str) and input_size == MODEL_INPUT_SIZE else input_size
    if not model.dynamic_size and size != model.input_size:
        shown = "each frame's own size" if size is None else f"{size[0]}x{size[1]}"
        raise ValueError(
            f"{model.root} was exported for a {model.input_size[0]}x{model.input_size[1]} network "
            f"input, not {shown}; re-export it with --input-size HxW"
        )
    net = exported_net(model, name, gpu=gpu, device_id=device.index or 0, fp16=precision == torch.float16)
    cpu = torch.device("cpu")
    if model.temporal:
        # the ExportedNet stands in for the torch network: the same calls (vsseg_ros.runtimes.exported_net)
        return TemporalSegmenter(
            net,  # type: ignore[arg-type]
            model.class_map,
            model.model_id,
            device=cpu,
            input_size=size,
            mean=mean,
            std=std,
            mode=temporal_mode,
            max_frame_gap_s=max_frame_gap_s,
        )
    return PerFrameSegmenter(
        net,  # type: ignore[arg-type]
        model.class_map,
        model.model_id,
        device=cpu,
        input_size=size,
        mean=mean,
        std=std,
    )


def _parse_size(value: Union[tuple[int, int], int]) -> Optional[tuple[int, int]]:
    try:
        return parse_input_size(value)
    except ConfigError as e:
        raise ValueError(str(e)) from None


def segmenter_from_checkpoint(
    ckpt: Checkpoint,
    device: Union[str, torch.device] = "auto",
    precision: Union[str, torch.dtype] = "fp32",
    input_size: Union[tuple[int, int], int, None, str] = MODEL_INPUT_SIZE,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    temporal_mode: Optional[str] = None,
    max_frame_gap_s: float = DEFAULT_MAX_FRAME_GAP_S,
) -> Segmenter:
    """The Segmenter for a loaded checkpoint: a :class:`TemporalSegmenter` (streaming, with ``temporal_mode``
    and ``max_frame_gap_s``) when its config has a temporal module, else a :class:`PerFrameSegmenter`."""
    model = ckpt.build_model()  # a TemporalSegNet when the config has a temporal module, else a PerFrameSegNet
    if ckpt.config.temporal is not None:
        return TemporalSegmenter(
            cast(TemporalSegNet, model),
            ckpt.class_map,
            ckpt.model_id,
            device=device,
            precision=precision,
            input_size=input_size,
            mean=mean,
            std=std,
            mode=temporal_mode,
            max_frame_gap_s=max_frame_gap_s,
        )
    return PerFrameSegmenter(
        cast(PerFrameSegNet, model),
        ckpt.class_map,
        ckpt.model_id,
        device=device,
        precision=precision,
        input_size=input_size,
        mean=mean,
        std=std,
    )
