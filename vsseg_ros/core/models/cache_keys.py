"""Keys for results cached across calls at inference (resized encodings, projected memories, per-frame tokens)."""

from __future__ import annotations

from typing import Any, Hashable, cast

import torch
from torch import Tensor, nn


def tensor_key(t: Tensor) -> Hashable:
    """Identity, storage, version counter, dtype and device of ``t``: changes when ``t`` is replaced, moved,
    converted or modified in place. Inference-mode tensors have no version counter (-1 is used): they can only
    be modified in place inside ``torch.inference_mode``, which the callers never do to cached inputs."""
    version = -1 if t.is_inference() else t._version
    return id(t), t.data_ptr(), version, t.dtype, t.device


def mode_key() -> Hashable:
    """What else decides a cached result: inference mode (its tensors cannot join autograd outside it) and
    autocast (which changes the dtype of matmul results) on CPU and CUDA."""
    return (
        torch.is_inference_mode_enabled(),
        *((torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cpu", "cuda")),
    )


def freeze_weights(module: nn.Module) -> int:
    """Declare that ``module``'s weights will not change again: every submodule that caches results derived
    from its weights (those with a ``weights_frozen`` attribute) stops re-checking them on each call; its keys
    keep only what still varies (inputs, dtype, inference and autocast mode). Checking a dozen weights costs
    more than a cached product saves on small per-frame work. A weight changed afterwards is not seen, so this
    is for inference copies nothing else holds (:func:`~vsseg_ros.core.frame_pipeline.inference_copy`).
    Returns how many submodules were frozen."""
    frozen = 0
    for m in module.modules():
        if hasattr(m, "weights_frozen"):
            cast(Any, m).weights_frozen = True  # a plain attribute of those modules (MAR, STF)
            frozen += 1
    return frozen


__all__ = ["tensor_key", "mode_key", "freeze_weights"]
