"""Which backend runs a model: what is installed here, what ``auto`` picks, and the errors that say so.

Backends: ``torch`` (eager, the checkpoint itself), ``onnxruntime`` (CPU; the CUDA execution provider on a GPU
device), ``openvino`` (CPU) and ``tensorrt`` (ONNX Runtime's TensorRT execution provider, engines cached). The
last three run exported graphs (:mod:`.manifest`): an exported model directory as it is, or a checkpoint
exported on the fly (fp32, about a second; cached by the checkpoint's hash, so the next start reuses it).

``auto``: for an exported model, the first backend of :data:`AUTO_ORDER` that is installed and that the model
passed its export checks on (``checks`` in its manifest); for a checkpoint, torch (exporting is then an explicit
choice). The order is this project's measurement on a 2-core AVX2 CPU (docs/deployment.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from vsseg_ros.runtimes.manifest import ExportedModel, load_exported, sha256_file
from vsseg_ros.runtimes.sessions import ORT_PROVIDERS, RuntimeUnavailable

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
BACKEND_CHOICES = ("auto",) + BACKENDS
#: exported backends in the order ``auto`` tries them, on the CPU and on a GPU
AUTO_ORDER = {"cpu": ("openvino", "onnxruntime"), "cuda": ("tensorrt", "onnxruntime")}
#: where checkpoints exported on the fly are kept (``VSSEG_EXPORT_CACHE`` overrides)
DEFAULT_EXPORT_CACHE = Path.home() / ".cache" / "vsseg_ros" / "exported"


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def backend_status() -> dict[str, Optional[str]]:
    """Backend -> None when it can run here, else why not."""
    status: dict[str, Optional[str]] = {"torch": None}
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    status["onnxruntime"] = None if has_ort else "the onnxruntime package is not installed"
    status["openvino"] = (
        None if importlib.util.find_spec("openvino") is not None else "the openvino package is not installed"
    )
    if not has_ort:
        status["tensorrt"] = "onnxruntime is not installed"
    elif ORT_PROVIDERS["tensorrt"] not in _ort_providers():
        status["tensorrt"] = (
            "this onnxruntime has no TensorrtExecutionProvider (needs onnxruntime-gpu and "
            "TensorRT: pip install -r requirements-gpu.txt, on a machine with a GPU)"
        )
    else:
        status["tensorrt"] = None
    return status


def available_backends() -> list[str]:
    return [b for b, why in backend_status().items() if why is None]


def check_backend(name: str) -> str:
    """``name`` if it is a known backend (or auto) that can run here; RuntimeUnavailable listing what can."""
    if name not in BACKEND_CHOICES:
        raise RuntimeUnavailable(
            f"backend {name!r} is not known; use one of {', '.join(BACKEND_CHOICES)} "
            f"(available here: auto, {', '.join(available_backends())})"
        )
    if name == "auto":
        return name
    why = backend_status()[name]
    if why is not None:
        raise RuntimeUnavailable(
            f"backend {name!r} is not available here: {why}; available: auto, {', '.join(available_backends())}"
        )
    return name


def checked_backends(model: ExportedModel) -> list[str]:
    """The backends the exported model passed its checks on at export (all exported ones when not recorded)."""
    checks = model.exporter.get("checks")
    if not isinstance(checks, dict):
        return [b for b in BACKENDS if b != "torch"]
    return [b for b, c in checks.items() if isinstance(c, dict) and c.get("passed")]


def choose_backend(requested: str, model: Optional[ExportedModel], gpu: bool) -> str:
    """The backend to run: ``requested`` checked (an exported model cannot run on torch), or ``auto`` resolved."""
    name = check_backend(requested)
    if name == "torch" and model is not None:
        src = model.source.get("checkpoint")
        raise RuntimeUnavailable(
            f"{model.root} is an exported model: it runs on "
            f"{', '.join(b for b in available_backends() if b != 'torch')}; for the torch "
            f"backend give its checkpoint{f' ({src})' if src else ''}"
        )
    if name != "auto":
        if name == "tensorrt" and not gpu:
            raise RuntimeUnavailable("backend 'tensorrt' needs a CUDA device (device auto/cuda with a GPU)")
        return name
    if model is None:
        return "torch"
    installed = set(available_backends())
    usable = checked_backends(model)
    for b in AUTO_ORDER["cuda" if gpu else "cpu"]:
        if b in installed and b in usable:
            return b
    raise RuntimeUnavailable(
        f"{model.root}: no installed backend passed this model's export checks "
        f"(checked: {', '.join(usable) or 'none'}; installed: {', '.join(sorted(installed))})"
    )


def export_cache_dir() -> Path:
    return Path(os.environ.get("VSSEG_EXPORT_CACHE") or DEFAULT_EXPORT_CACHE).expanduser()


def exported_checkpoint(path: Path, input_size: Optional[tuple[int, int]]) -> ExportedModel:
    """The fp32 export of checkpoint ``path`` (at ``input_size`` for a temporal model, whose graphs are
    fixed-size), from the cache when it was exported before, else exported now (into a temporary directory
    renamed into place, so two processes never see half a model)."""
    import torch

    from vsseg_ros.core.checkpoint import load_checkpoint
    from vsseg_ros.runtimes.export import export_network

    ckpt = load_checkpoint(path)
    digest = sha256_file(path)
    size = input_size if (ckpt.config.temporal is not None and input_size) else ckpt.config.input_size
    tag = f"{digest[:20]}-{size[0]}x{size[1]}-torch{torch.__version__}" if size else digest[:20]
    final = export_cache_dir() / tag
    if (final / "vsseg_model.json").is_file():
        try:
            return load_exported(final)
        except Exception:
            shutil.rmtree(final, ignore_errors=True)  # a damaged cache entry: export again
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{tag}.", dir=final.parent))
    try:
        export_network(
            ckpt.build_model(),
            tmp,
            ckpt.model_id,
            ckpt.class_map,
            input_size=size,
            source={"checkpoint": str(path), "sha256": digest, "exported_on_the_fly": True},
        )
        try:
            tmp.rename(final)
        except OSError:  # another process got there first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_exported(final)


__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "AUTO_ORDER",
    "backend_status",
    "available_backends",
    "check_backend",
    "checked_backends",
    "choose_backend",
    "exported_checkpoint",
    "export_cache_dir",
]
