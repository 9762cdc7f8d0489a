"""Choosing the torch device and the inference precision, with errors that say what to change.

Nothing CUDA-specific runs at import; CUDA is only queried when a device string asks about it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Union

import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")

PRECISIONS = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
PRECISION_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _cuda_count() -> int:
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver reads as "no CUDA"
        return 0


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` (cuda:0 when CUDA is usable, else cpu), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises ``ValueError`` for an unknown name, CUDA asked for but unavailable, or an index out of range.
    """
    if isinstance(device, torch.device):
        device = str(device)
    text = (device or "auto").strip().lower()
    m = _DEVICE_RE.match(text)
    if m is None:
        raise ValueError(f"device={device!r} is not understood; use auto, cpu, cuda or cuda:N")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if index is not None:
            raise ValueError(f"device={device!r}: 'auto' takes no index; use cuda:{index} to pick a GPU")
        return torch.device("cuda", 0) if _cuda_count() > 0 else torch.device("cpu")
    if kind == "cpu":
        if index not in (None, "0"):
            raise ValueError(f"device={device!r}: there is only one cpu device; use cpu")
        return torch.device("cpu")
    count = _cuda_count()
    if count == 0:
        why = (
            "this torch build has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA device is visible (driver missing, or CUDA_VISIBLE_DEVICES hides them)"
        )
        raise ValueError(f"device={device!r} asks for CUDA but {why}; use device=cpu or auto")
    i = int(index) if index is not None else 0
    if i >= count:
        raise ValueError(
            f"device={device!r}: CUDA device index {i} is out of range; {count} device(s) "
            f"visible (cuda:0 to cuda:{count - 1})"
        )
    return torch.device("cuda", i)


@lru_cache(maxsize=None)
def cpu_autocast_supports(dtype: torch.dtype) -> bool:
    """Whether a convolution runs under CPU autocast with ``dtype`` in this torch build."""
    try:
        conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
            y = conv(torch.rand(1, 3, 8, 8))
        return bool(torch.isfinite(y.float()).all())
    except Exception:
        return False


def resolve_precision(precision: Union[str, torch.dtype, None], device: torch.device) -> torch.dtype:
    """``"fp32"``, ``"fp16"`` or ``"bf16"`` (or the torch dtype) -> the dtype to autocast to on ``device``.

    fp16 on CPU is accepted only if this torch runs convolutions under CPU autocast in fp16; bf16 on CUDA
    needs a GPU that supports it. Raises ``ValueError`` otherwise.
    """
    if isinstance(precision, torch.dtype):
        if precision not in PRECISION_NAMES:
            raise ValueError(f"precision {precision} is not supported; use fp32, fp16 or bf16")
        dtype = precision
    else:
        key = (precision or "fp32").strip().lower()
        if key not in PRECISIONS:
            raise ValueError(f"precision={precision!r} is not understood; use fp32, fp16 or bf16")
        dtype = PRECISIONS[key]
    if dtype == torch.float32:
        return dtype
    if device.type == "cpu":
        if not cpu_autocast_supports(dtype):
            raise ValueError(
                f"precision={PRECISION_NAMES[dtype]} does not run on the CPU with torch "
                f"{torch.__version__} (CPU autocast refuses it); use fp32 or bf16 on the CPU"
            )
        return dtype
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"precision=bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16 or fp32"
            )
        return dtype
    raise ValueError(f"precision={PRECISION_NAMES[dtype]} is not supported on device {device}; use fp32")
