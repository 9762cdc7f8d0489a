"""MAR: memory-augmented refinement of per-pixel features (Zhuang et al.).

A memory of ``num_classes * slots_per_class`` slots is extracted from the training data once (see
:mod:`vsseg_ros.core.memory_bank`): per class, the keys are features of hard pixels (the least confident of the
correctly classified ones) and the values are the class prototype (the mean feature of the most confident ones);
slot ``s`` belongs to class ``s // slots_per_class``. Every pixel feature then attends to the memory
(single head, q/k/v through three bias-free linears, softmax without 1/sqrt(d) scaling, as the reference), and
the result refines the feature through residual + LayerNorm and a feed-forward block.

The memory lives in ``memory_key`` / ``memory_value`` parameters (so it is saved with the weights and can be
fine-tuned in the MAR stage); they are frozen (``requires_grad=False``) unless a trainer enables them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.models.cache_keys import mode_key, tensor_key


def _projection(channels: int, dim: int) -> nn.Sequential:
    """channels -> channels -> dim -> dim, three bias-free linears (the reference's to_q/to_k/to_v)."""
    return nn.Sequential(
        nn.Linear(channels, channels, bias=False), nn.Linear(channels, dim, bias=False), nn.Linear(dim, dim, bias=False)
    )


def _in_runs(rows: Tensor, group: int) -> Tensor:
    """0-d bool: ``rows`` (slots, C) come in runs of ``group`` equal rows (a class's slots share one value)."""
    if rows.shape[0] % group:
        return torch.tensor(False)
    return (rows.view(-1, group, rows.shape[-1]) == rows[::group, None]).all()


@functools.lru_cache(maxsize=8)
def _group_sum_matrix(slots: int, group: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(slots, slots / group) 0/1: column g sums slots g * group .. (g + 1) * group - 1."""
    with torch.inference_mode(False):  # a normal tensor: usable with and without autograd
        m = torch.zeros(slots, slots // group, dtype=dtype, device=device)
        m[torch.arange(slots, device=device), torch.arange(slots, device=device) // group] = 1
        return m


class MemoryAttention(nn.Module):
    """Single-head cross-attention from pixel features to memory slots (``to_q``, ``to_k``, ``to_v``,
    ``to_out``). :meth:`fold` gives the same map for inference as two matrices (see
    :meth:`MemoryDecoder._infer`)."""

    def __init__(self, channels: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.to_q = _projection(channels, dim)
        self.to_k = _projection(channels, dim)
        self.to_v = _projection(channels, dim)
        self.to_out = nn.Sequential(nn.Linear(dim, channels), nn.Dropout(dropout))

    def forward(self, x: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """x (N, L, C), key/value (1, S, C) memory (converted to x's dtype here) -> (N, L, C)."""
        q, k, v = self.to_q(x), self.to_k(key.to(x.dtype)), self.to_v(value.to(x.dtype))
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)  # no 1/sqrt(d), as the reference
        return self.to_out(torch.matmul(attn, v))

    def weights(self) -> list[Tensor]:
        """The parameters :meth:`fold` depends on."""
        return [*(m.weight for m in (*self.to_q, *self.to_k, *self.to_v)), self.to_out[0].weight, self.to_out[0].bias]

    def fold(self, key: Tensor, value: Tensor, dtype: torch.dtype, group: int = 1) -> tuple[Tensor, Tensor, int]:
        """For inference: ``scores`` (C x slots) with ``q k^T = x @ scores``, ``values`` = ``to_out(to_v(value))``
        (bias included) and the group size they come in.

        ``group``: slots per class. A built memory holds one prototype per class, repeated in each of its
        slots; then the values are one row per class (group = ``group``) and the attention weights are summed
        per class before the (ten times smaller) product. Otherwise one row per slot (group = 1)."""
        wq = [cast(nn.Linear, m).weight for m in self.to_q]  # _projection: three linears
        scores = (self.to_k(key.to(dtype))[0] @ (wq[2] @ wq[1] @ wq[0]).to(dtype)).t().contiguous()  # (C, slots)
        step = group if group > 1 and bool(_in_runs(value[0], group)) else 1
        values = self.to_out[0](self.to_v(value[:, ::step].to(dtype)))[0]  # (slots / step, C)
        return scores, values, step


class Folded(NamedTuple):
    """A :class:`MemoryDecoder` in its inference form for one memory (see :meth:`MemoryDecoder._infer`)."""

    scores: Tensor  # (C, slots): the attention logits are x @ scores
    values: Tensor  # (slots / step, C): to_out(to_v(memory values)), to_out's bias included
    step: int  # slots per row of values
    norm1_bias: Tensor  # norm1's bias + linear2's bias
    linear1_bias: Tensor  # linear1's bias - linear1's weight @ linear2's bias


class MemoryDecoder(nn.Module):
    """x = LN(x + Dropout(attn(x, memory))); x = LN(x + Dropout(FFN(x))) (the reference's ``HEdecoder``; its
    attention output passes two dropouts in training, ``to_out``'s and this one, as there)."""

    #: True on an inference copy (:func:`~vsseg_ros.core.models.cache_keys.freeze_weights`): its weights and
    #: memory never change, so :meth:`folded` stops checking them on every call
    weights_frozen = False

    def __init__(self, channels: int, dim: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.attn = MemoryAttention(channels, dim, dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(channels)
        self.linear1 = nn.Linear(channels, ffn)
        self.linear2 = nn.Linear(ffn, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self._cache: dict[str, tuple[tuple[object, ...], Folded]] = {}

    def forward(self, x: Tensor, key: Tensor, value: Tensor, group: int = 1) -> Tensor:
        """``group``: slots per class (lets inference use a memory's repeated prototypes; see
        :meth:`MemoryAttention.fold`)."""
        if not (self.training or torch.is_grad_enabled()):
            return self._infer(x, key, value, group)
        x = self.norm1(x + self.dropout(self.attn(x, key, value)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout1(F.relu(self.linear1(x))))))

    def folded(self, key: Tensor, value: Tensor, dtype: torch.dtype, group: int = 1) -> Folded:
        """The inference form for memory ``key``/``value`` (see :meth:`_infer`), cached while the memory, the
        weights and the inference/autocast mode are unchanged (one key over all of them: it is checked every
        frame). Frozen weights leave only the mode to check."""
        if self.weights_frozen:
            deps: tuple[object, ...] = (mode_key(),)
        else:
            tensors = (
                key,
                value,
                *self.attn.weights(),
                self.norm1.bias,
                self.linear1.weight,
                self.linear1.bias,
                self.linear2.bias,
            )
            deps = (*(tensor_key(t) for t in tensors), mode_key())
        name = f"{group}/{dtype}"
        hit = self._cache.get(name)
        if hit is not None and hit[0] == deps:
            return hit[1]
        scores, values, step = self.attn.fold(key, value, dtype, group)
        b2 = self.linear2.bias
        # elementwise, not a matmul: autocast must not round the folded bias to half precision
        folded = Folded(
            scores, values, step, self.norm1.bias + b2, self.linear1.bias - (self.linear1.weight * b2).sum(1)
        )
        self._cache[name] = (deps, folded)
        return folded

    def _infer(self, x: Tensor, key: Tensor, value: Tensor, group: int = 1) -> Tensor:
        """The same map with the memory folded in, for inference (no dropout, no autograd): the attention
        logits are ``x @ scores`` with ``scores = (k Wq)^T`` (C x slots), and since each row of the softmax sums
        to 1, ``to_out(A v) = A (to_out(v))``: the output projection and its bias fold into the values. A pixel
        then costs two small matmuls instead of five. Where each class's slots share one value (a built
        memory), ``A v`` sums the class's weights first. linear2's bias is added by norm1 instead (one pass
        fewer): the FFN's input then carries it too, so linear1's bias takes ``linear1.weight @ b2`` back out."""
        f = self.folded(key, value, x.dtype, group)
        shape = x.shape
        t = x.reshape(-1, shape[-1])
        a = torch.softmax(t @ f.scores, dim=-1)
        if f.step > 1:  # per-class sums as a product with a 0/1 matrix: faster than a strided sum on a CPU
            a = a @ _group_sum_matrix(a.shape[-1], f.step, a.dtype, a.device)
        t = F.layer_norm(
            torch.addmm(t, a, f.values), self.norm1.normalized_shape, self.norm1.weight, f.norm1_bias, self.norm1.eps
        )
        h = F.relu_(F.linear(t, self.linear1.weight, f.linear1_bias))
        w2 = self.linear2.weight.t()
        # t is our own here: add into it, no copy; but in-place ops are not autocast, so there addmm casts
        t = torch.addmm(t, h, w2) if torch.is_autocast_enabled(t.device.type) else t.addmm_(h, w2)
        t = F.layer_norm(t, self.norm2.normalized_shape, self.norm2.weight, self.norm2.bias, self.norm2.eps)
        return t.reshape(shape)


class MAR(nn.Module):
    """Refine (N, C, h, w) features by attention to a class memory; returns the same shape."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        slots_per_class: int = 10,
        dim: int = 256,
        ffn: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.channels, self.num_classes, self.slots_per_class = channels, num_classes, slots_per_class
        slots = num_classes * slots_per_class
        self.memory_key = nn.Parameter(torch.zeros(1, slots, channels), requires_grad=False)
        self.memory_value = nn.Parameter(torch.zeros(1, slots, channels), requires_grad=False)
        self.HEdecoder = MemoryDecoder(channels, dim, ffn, dropout)

    @property
    def slots(self) -> int:
        return self.num_classes * self.slots_per_class

    @torch.no_grad()
    def set_memory(self, key: Tensor, value: Tensor) -> None:
        """Store a built memory: ``key``/``value`` (slots, C) or (1, slots, C)."""
        key, value = key.reshape(1, -1, self.channels), value.reshape(1, -1, self.channels)
        if key.shape[1] != self.slots or value.shape[1] != self.slots:
            raise ValueError(
                f"memory must have {self.slots} slots ({self.num_classes} classes x "
                f"{self.slots_per_class}), got {key.shape[1]} keys and {value.shape[1]} values"
            )
        self.memory_key.copy_(key)
        self.memory_value.copy_(value)

    def forward(self, x: Tensor) -> Tensor:
        N, C, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, h*w, C)
        out = self.HEdecoder(tokens, self.memory_key, self.memory_value, self.slots_per_class)
        return out.transpose(1, 2).reshape(N, C, h, w)


__all__ = ["MAR", "MemoryAttention", "MemoryDecoder", "Folded"]
