"""Why a state_dict does not fit a module, in one readable line (first few keys of each kind)."""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import Tensor

LIST_LIMIT = 10


def listing(items: list[str]) -> str:
    shown = ", ".join(items[:LIST_LIMIT])
    return shown + (f", ... ({len(items) - LIST_LIMIT} more)" if len(items) > LIST_LIMIT else "")


def state_dict_mismatch(
    own: Mapping[str, Tensor], state: Mapping[str, Tensor], ignore_prefixes: Sequence[str] = ()
) -> str:
    """Empty if ``state`` fits ``own`` exactly (keys in ``state`` starting with ``ignore_prefixes`` may be
    extra); otherwise the missing keys, unexpected keys and shape mismatches."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(tuple(ignore_prefixes))]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatch(es): {listing(mismatched)}")
    return "; ".join(parts)
