"""STF: spatial-temporal fusion of a window of per-frame features by attention (Zhuang et al.).

Why one file over 400 lines: it is one model (the attention primitives, interlaced sparse attention, the
encoder and decoder layers and STF itself), read top to bottom the way timm's and torchvision's model files are.

One post-norm transformer encoder layer runs over the T frames' features; one decoder layer takes the target
frame's features as queries and the encoder output as memory. Every attention is *interlaced sparse attention*
(ISA): the (T, h, w) token grid is cut into ``block`` x ``block`` spatial blocks, and

- the *long-range* step attends among the tokens at the same offset inside every block, across all frames
  (T * (h / block) * (w / block) tokens per group),
- the *short-range* step then attends within each block, across all frames (T * block * block tokens), with the
  long-range result as input.

Together they connect every token with every other at a fraction of full attention's cost. In the decoder's
cross-attention only the long-range step looks at the encoder memory; its short-range step attends within the
query frame's blocks. Learned positional encodings ``(1, C, T, pe_h, pe_w)`` are resized (trilinear) to the
feature grid and added to queries and keys, never to values. In the reference's setting (``dim=None``,
``pool=1``, h and w multiples of ``block``, T frames) this is the reference's computation; the parameters carry
the reference's names (``self_attn_long``/``self_attn_short`` are ``nn.MultiheadAttention``), so its
``STF.*`` weights load unchanged (:mod:`vsseg_ros.core.models.import_st_memory`).

**Any feature size**: the grid is padded up to a multiple of ``block`` and padded keys are masked out of every
attention (LayerNorm and the feed-forward blocks work per token), so the values in the padding never reach a
real token and the output, cropped back, does not depend on them. The positional encodings are resized to the
unpadded (h, w) first, so a real token's encoding is the same whatever the padding. Where a whole long-range
group is padding (h or w < ``block``), its tokens attend to nothing and come out as zeros (PyTorch's
scaled_dot_product_attention gives 0 for a fully masked row); they are padding and are masked as keys later.

**Fewer than T frames** (a window still filling, after a reset): the frames keep their time positions relative
to the labelled one. :meth:`STF.positions` puts the labelled frame at its nominal position (T-1 for a causal
model, T-2 for a centered one) and each other frame at its offset from it, clamped to 0..T-1; the frames'
positional encodings are those rows of the resized ``pe_enc``. So a 2-frame causal window uses positions
T-2, T-1 (the newest frame always looks like the newest), and a full window gives the same result as before.

**Light configuration** (``dim`` set): 1x1 projections bring the features to ``dim`` channels for the attention,
and the fused result is added back to the target frame's features through a zero-initialised projection, so
an untrained STF leaves the per-frame model unchanged. ``pool`` > 1 attends on average-pooled features
(``ceil_mode``) and upsamples the fused residual (bilinear) to the feature size.

**Implementation**: tokens live in a *blocks* layout ``(N, blocks, T, block*block, C)`` (a group per spatial
block, the short-range step's grouping); the long-range step's grouping is the same tensor with dims 1 and 3
swapped, ``(N, block*block, T, blocks, C)`` (a group per offset inside the block). So each attention step
changes layout with one transpose-copy of its input, LayerNorm, the feed-forward blocks and the q/k/v and output
projections run on the grouped tokens directly (they work per token), and the heads are strided views handed to
``F.scaled_dot_product_attention`` with the weights of the ``nn.MultiheadAttention`` modules (same math as their
forward). The 1x1 input projection runs after pooling (both are linear, so they commute). Without autograd, the
resized positional encodings and padding masks are cached (keyed by size, positions and the parameters'
version) and so is each frame's pooled, projected, padded and grouped input (keyed by the feature tensor
itself): in a stream a frame is prepared once, not T times.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Callable, NamedTuple, Optional, Sequence, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vsseg_ros.core.models.cache_keys import mode_key, tensor_key

# -- token layouts ----------------------------------------------------------------------------------------------
# grid:    (N, T, H, W, C), H and W multiples of the block
# blocks:  (N, hb*wb, T, b*b, C)  one group per spatial block (short range)
# offsets: (N, b*b, T, hb*wb, C)  one group per offset inside the blocks (long range): blocks with dims 1, 3 swapped


def to_blocks(x: Tensor, block: int) -> Tensor:
    """grid (N, T, H, W, C) -> blocks layout (N, hb*wb, T, block*block, C) (a copy)."""
    N, T, H, W, C = x.shape
    hb, wb = H // block, W // block
    x = x.reshape(N, T, hb, block, wb, block, C).permute(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(N, hb * wb, T, block * block, C)


def from_blocks(x: Tensor, H: int, W: int, block: int) -> Tensor:
    """Inverse of :func:`to_blocks`: -> grid (N, T, H, W, C)."""
    N, _, T, _, C = x.shape
    hb, wb = H // block, W // block
    x = x.reshape(N, hb, wb, T, block, block, C).permute(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(N, T, H, W, C)


def swap_grouping(x: Tensor) -> Tensor:
    """blocks <-> offsets layout (the same permutation both ways), as a contiguous copy."""
    return x.transpose(1, 3).contiguous()


def _ceil_div(a: int, b: int) -> int:
    """ceil(a / b) for a >= 0, b > 0, written without negative numbers: traced into an ONNX graph, ``//`` of a
    size becomes an integer Div, which truncates, so ``-(-a // b)`` would come out as floor(a / b)."""
    return (a + b - 1) // b


def _round_up(a: int, b: int) -> int:
    """``a`` rounded up to a multiple of ``b`` (see :func:`_ceil_div`)."""
    return _ceil_div(a, b) * b


def _pad_to(x: Tensor, block: int) -> Tensor:
    """Zero-pad dims -3, -2 (H, W of a channels-last ``(..., H, W, C)`` tensor) up to multiples of ``block``."""
    h, w = x.shape[-3:-1]
    ph, pw = _round_up(h, block) - h, _round_up(w, block) - w
    return F.pad(x, (0, 0, 0, pw, 0, ph)) if (ph or pw) else x


def _heads(x: Tensor, heads: int) -> Tensor:
    """(N, A, T, B, C) grouped tokens -> (N*A, heads, T*B, C/heads), a view where the strides allow."""
    N, A, T, B, C = x.shape
    return x.reshape(N * A, T * B, heads, C // heads).transpose(1, 2)


def attend(
    mha: nn.MultiheadAttention,
    qk_q: Tensor,
    qk_k: Optional[Tensor],
    v_in: Tensor,
    mask: Optional[Tensor],
    dropout: float,
) -> Tensor:
    """One multi-head attention within groups, with ``mha``'s weights: q from ``qk_q``, k from ``qk_k`` (None:
    from ``qk_q``, one projection for both), v from ``v_in``. Inputs are grouped tokens (N, A, T, B, C) with the
    same N, A (groups); queries and keys may have different T. Returns the output projection in ``qk_q``'s
    shape. ``mask``: (N*A, 1, 1, keys) bool, True = attend, or None."""
    C = qk_q.shape[-1]
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    if qk_k is None:
        q, k = torch.split(F.linear(qk_q, w[: 2 * C], bias[: 2 * C]), C, dim=-1)
    else:
        q = F.linear(qk_q, w[:C], bias[:C])
        k = F.linear(qk_k, w[C : 2 * C], bias[C : 2 * C])
    return attend_projected(mha, q, k, F.linear(v_in, w[2 * C :], bias[2 * C :]), mask, dropout)


def attend_projected(
    mha: nn.MultiheadAttention, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor], dropout: float
) -> Tensor:
    """:func:`attend` from projected q, k, v (grouped (N, A, T, B, C) tensors or views of them)."""
    N, A, Tq, B, C = q.shape
    E = mha.num_heads
    out = F.scaled_dot_product_attention(_heads(q, E), _heads(k, E), _heads(v, E), attn_mask=mask, dropout_p=dropout)
    out = out.transpose(1, 2).reshape(N, A, Tq, B, C)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)


def _tracing() -> bool:
    """Whether torch.jit is tracing this call (an ONNX export)."""
    # torch.jit.is_tracing is public (torch's docs) but neither re-exported nor annotated in torch's stubs
    return bool(torch.jit.is_tracing())  # type: ignore[attr-defined, no-untyped-call]


def _deferred_linear(tokens: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Callable[[], Tensor]:
    """The long-step projection of ``tokens`` (grouped in offsets), computed when called."""
    return lambda: F.linear(swap_grouping(tokens), weight, bias)


class Encoding(NamedTuple):
    """A positional encoding in both groupings (each (1, A, T, B, C), broadcast over the batch)."""

    blocks: Tensor
    offsets: Tensor

    @staticmethod
    def of_grid(pe: Tensor, block: int) -> "Encoding":
        """From a padded grid encoding (1, T, H, W, C)."""
        b = to_blocks(pe, block)
        return Encoding(b, swap_grouping(b))


class Padding:
    """Which grid positions are real (not padding), as key masks for either grouping, built once per shape.

    ``valid``: (H, W) bool, or None when nothing is padded (then every mask is None)."""

    def __init__(self, valid: Optional[Tensor], block: int, batch: int) -> None:
        self.batch = batch
        self._masks: dict[tuple[str, int], Tensor] = {}
        self._valid: Optional[dict[str, Tensor]] = None
        if valid is not None:
            H, W = valid.shape
            vb = to_blocks(valid.view(1, 1, H, W, 1), block)[0, :, 0, :, 0]  # (blocks, b*b)
            self._valid = {"blocks": vb, "offsets": vb.t()}

    def mask(self, grouping: str, frames: int) -> Optional[Tensor]:
        """(N*groups, 1, 1, frames*tokens) key mask for keys from ``frames`` frames in ``grouping``
        ("blocks" or "offsets"), or None."""
        if self._valid is None:
            return None
        key = (grouping, frames)
        if key not in self._masks:
            v = self._valid[grouping]  # (groups, tokens per frame)
            m = v[None, :, None, :].expand(self.batch, -1, frames, -1)
            self._masks[key] = m.reshape(self.batch * v.shape[0], 1, 1, frames * v.shape[1])
        return self._masks[key]


class InterlacedSparseAttention(nn.Module):
    """Long-range then short-range multi-head attention on tokens in the blocks layout ``(N, blocks, T, bb, C)``.
    ``self_attn_long`` / ``self_attn_short`` are ``nn.MultiheadAttention`` (the reference's names); their weights
    are applied with ``scaled_dot_product_attention``.

    ``forward(query, memory, pos_q, pos_m, padding)``: the long-range step attends from ``query + pos_q`` to
    ``memory + pos_m`` (keys) and ``memory`` (values); ``memory=None`` means self-attention. The short-range
    step attends within the query's own blocks, on the long-range result. ``pos_q``/``pos_m`` are
    :class:`Encoding` s; ``padding`` a :class:`Padding` (or None: nothing is padded). ``long_qkv``: for
    self-attention, the long step's projections ``[q | k | v]`` of ``query`` (offsets layout, 3C channels,
    positional encoding included in q and k), when the caller has them (the streaming path keeps each frame's).
    """

    def __init__(self, dim: int, heads: int, dropout: float, block: int) -> None:
        super().__init__()
        self.block, self.heads, self.dropout = block, heads, dropout
        self.self_attn_long = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn_short = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(
        self,
        query: Tensor,
        memory: Optional[Tensor],
        pos_q: Encoding,
        pos_m: Optional[Encoding],
        padding: Optional[Padding] = None,
        long_qkv: Optional[Tensor] = None,
    ) -> Tensor:
        p = self.dropout if self.training else 0.0
        T_q = query.shape[2]
        if long_qkv is not None:  # self-attention whose long-step q|k|v the caller projected (offsets layout)
            mask = padding.mask("offsets", T_q) if padding else None
            q, k, v = torch.split(long_qkv, query.shape[-1], dim=-1)
            x = attend_projected(self.self_attn_long, q, k, v, mask, p)
        elif memory is None:  # self-attention: one projection gives q and k
            q_off = swap_grouping(query)
            mask = padding.mask("offsets", T_q) if padding else None
            x = attend(self.self_attn_long, q_off + pos_q.offsets, None, q_off, mask, p)
        else:
            assert pos_m is not None  # memory comes with its encoding
            q_off = swap_grouping(query)
            m_off = swap_grouping(memory)
            mask = padding.mask("offsets", memory.shape[2]) if padding else None
            x = attend(self.self_attn_long, q_off + pos_q.offsets, m_off + pos_m.offsets, m_off, mask, p)
        x = swap_grouping(x)
        mask = padding.mask("blocks", T_q) if padding else None
        return attend(self.self_attn_short, x + pos_q.blocks, None, x, mask, p)


class STFEncoderLayer(nn.Module):
    """Post-norm: x = LN(x + ISA(x)); x = LN(x + FFN(x)) on tokens in the blocks layout."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, block: int) -> None:
        super().__init__()
        self.self_attn = InterlacedSparseAttention(dim, heads, dropout, block)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self, src: Tensor, pos: Encoding, padding: Optional[Padding], long_qkv: Optional[Tensor] = None
    ) -> Tensor:
        x = self.norm1(src + self.dropout1(self.self_attn(src, None, pos, None, padding, long_qkv)))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class STFDecoderLayer(nn.Module):
    """Post-norm: self-ISA on the target frame, cross-ISA to the encoder memory, FFN; LN after each."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, block: int) -> None:
        super().__init__()
        self.self_attn = InterlacedSparseAttention(dim, heads, dropout, block)
        self.multihead_attn = InterlacedSparseAttention(dim, heads, dropout, block)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self, tgt: Tensor, memory: Tensor, pos_t: Encoding, pos_m: Encoding, padding: Optional[Padding]
    ) -> Tensor:
        x = self.norm1(tgt + self.dropout1(self.self_attn(tgt, None, pos_t, None, padding)))
        x = self.norm2(x + self.dropout2(self.multihead_attn(x, memory, pos_t, pos_m, padding)))
        return self.norm3(x + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class _Layers(nn.Module):
    """Holds one layer as ``layers.0`` (the reference's state_dict layout for a one-layer stack)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList([layer])

    @property
    def layer(self) -> nn.Module:
        return self.layers[0]


class STF(nn.Module):
    """Fuse a window of per-frame features (each (N, channels, h, w)) into the target frame's feature.

    ``frames``: T, the window the positional encodings are learned for. ``dim``: attention width (None = the
    feature width, as the reference). See the module docstring for ``block``, ``pool``, padding and short
    windows.
    """

    #: bound on the per-frame cache (two entries per frame: tokens and long-step projections). Entries leave
    #: when their feature is freed, so this only matters when many features are alive at once (many cameras
    #: sharing one model: 64 is ten cameras at T=3 with room to spare)
    FRAME_CACHE_ENTRIES = 64
    #: True on an inference copy (:func:`~vsseg_ros.core.models.cache_keys.freeze_weights`): the caches stop
    #: checking the parameters on every call (features, sizes, dtype and mode still key them)
    weights_frozen = False

    def __init__(
        self,
        channels: int,
        frames: int = 3,
        heads: int = 2,
        ffn: int = 256,
        block: int = 16,
        dropout: float = 0.1,
        pe_size: Sequence[int] = (128, 256),
        dim: Optional[int] = None,
        pool: int = 1,
    ) -> None:
        super().__init__()
        d = channels if dim is None else dim
        if d % heads:
            raise ValueError(f"attention width {d} must be divisible by heads={heads}")
        self.channels, self.frames, self.block, self.pool, self.dim = channels, frames, block, pool, d
        self.residual = dim is not None
        if self.residual:
            self.proj_in = nn.Conv2d(channels, d, 1)
            self.proj_out = nn.Conv2d(d, channels, 1)
            # zero at the start: an untrained STF leaves the per-frame feature as it is
            nn.init.zeros_(self.proj_out.weight)
            if self.proj_out.bias is not None:  # built with one
                nn.init.zeros_(self.proj_out.bias)
        ph, pw = int(pe_size[0]), int(pe_size[1])
        self.pe_enc = nn.Parameter(torch.zeros(1, d, frames, ph, pw))
        self.pe_dec = nn.Parameter(torch.zeros(1, d, 1, ph, pw))
        nn.init.trunc_normal_(self.pe_enc, std=0.02)
        nn.init.trunc_normal_(self.pe_dec, std=0.02)
        self.encoder = _Layers(STFEncoderLayer(d, heads, ffn, dropout, block))
        self.decoder = _Layers(STFDecoderLayer(d, heads, ffn, dropout, block))
        # two kinds of entries: a window's encodings, and the long-step projection of their offsets (by "pos_qk")
        self._pe_cache: dict[tuple[object, ...], Union[tuple[Encoding, Encoding], tuple[Tensor, Tensor]]] = {}
        self._token_cache: dict[tuple[object, ...], tuple[weakref.ref[Tensor], Tensor]] = {}
        self._mask_cache: dict[tuple[object, ...], Padding] = {}

    def __getstate__(self) -> dict[str, object]:
        """Pickling (``torch.save(model)``, spawned workers) leaves the caches behind: weak references cannot be
        pickled, and the entries are only valid for this process's tensors anyway."""
        state = self.__dict__.copy()
        state["_pe_cache"], state["_token_cache"], state["_mask_cache"] = {}, {}, {}
        return state

    def positions(self, n: int, target: int, nominal_target: int) -> list[int]:
        """Time positions (0..T-1) of ``n`` window frames whose ``target``-th is labelled: the target takes its
        nominal position (``nominal_target``, T-1 for a causal model) and the others keep their offsets."""
        return [min(max(i - target + nominal_target, 0), self.frames - 1) for i in range(n)]

    def _resized_pe(self, pe: Tensor, t: int, h: int, w: int) -> Tensor:
        """``pe`` resized to (t, h, w), channels-last: (1, t, h, w, dim)."""
        if pe.shape[2:] != (t, h, w):
            pe = F.interpolate(pe, size=(t, h, w), mode="trilinear", align_corners=False)
        return pe.permute(0, 2, 3, 4, 1)

    def _encodings(self, positions: Sequence[int], h: int, w: int, dtype: torch.dtype) -> tuple[Encoding, Encoding]:
        """Encoder (n frames) and decoder (1 frame) encodings, resized to the unpadded (h, w), zero-padded and
        grouped; cached while the parameters are unchanged and no gradient is needed."""
        key = (tuple(positions), h, w, dtype, *self._weights_key(self.pe_enc, self.pe_dec), mode_key())
        cacheable = not (torch.is_grad_enabled() and self.pe_enc.requires_grad)
        if cacheable and key in self._pe_cache:
            return cast(tuple[Encoding, Encoding], self._pe_cache[key])
        enc = self._resized_pe(self.pe_enc, self.frames, h, w)[:, list(positions)]
        dec = self._resized_pe(self.pe_dec, 1, h, w)
        pair = (
            Encoding.of_grid(_pad_to(enc, self.block).to(dtype), self.block),
            Encoding.of_grid(_pad_to(dec, self.block).to(dtype), self.block),
        )
        if cacheable:
            if len(self._pe_cache) > 16:
                self._pe_cache.clear()
            self._pe_cache[key] = pair
        return pair

    def _padding(self, h: int, w: int, batch: int, device: torch.device) -> Optional[Padding]:
        """Key masks for an (h, w) grid padded to the block size (None when nothing is padded), cached."""
        H, W = _round_up(h, self.block), _round_up(w, self.block)
        if (H, W) == (h, w):
            return None
        key = (h, w, batch, device)
        if key not in self._mask_cache:
            if len(self._mask_cache) > 8:
                self._mask_cache.clear()
            valid = torch.zeros(H, W, dtype=torch.bool, device=device)
            valid[:h, :w] = True
            self._mask_cache[key] = Padding(valid, self.block, batch)
        return self._mask_cache[key]

    def _tokens(self, feature: Tensor) -> Tensor:
        """(N, C, h, w) -> pooled, projected, padded tokens in the blocks layout (N, blocks, 1, bb, dim)."""
        if self.pool > 1:
            feature = F.avg_pool2d(feature, self.pool, ceil_mode=True)
        x = feature.permute(0, 2, 3, 1)
        if self.residual:  # the 1x1 conv as a linear on channels-last tokens (after pooling: they commute)
            x = F.linear(x, self.proj_in.weight.flatten(1), self.proj_in.bias)
        return to_blocks(_pad_to(x.unsqueeze(1), self.block), self.block)

    def _frame_tokens(self, feature: Tensor) -> Tensor:
        """:meth:`_tokens`, remembered per feature tensor without autograd: a streaming window passes the same
        tensors again as it slides, so each frame is prepared once. An entry holds a weak reference to its
        feature (it is dropped when the feature is freed) and its version counter (an in-place change misses).
        Inference-mode tensors have no version counter: features made under ``torch.inference_mode`` must not
        be modified in place while they are in a window (the streaming segmenter never does)."""
        if torch.is_grad_enabled() or _tracing():  # tracing (ONNX export): every frame is an input
            return self._tokens(feature)
        return self._frame_cached(
            "tokens", feature, lambda: self._tokens(feature), self._weights_key(*self._input_projection())
        )

    def _long_qkv(
        self, features: Sequence[Tensor], tokens: Sequence[Tensor], positions: Sequence[int], pe_enc: Encoding
    ) -> Optional[Tensor]:
        """Without autograd: the encoder's long-step ``[q | k | v]`` for the window, (N, bb, n, blocks, 3C).
        The projection is linear, so ``(x + p) W + b = (x W + b) + p W``: each frame's ``x W + b`` is computed
        once and kept with the frame, the encodings' ``p W`` once per window shape. None with autograd and while
        tracing (an exported graph recomputes it from its inputs)."""
        if torch.is_grad_enabled() or _tracing():
            return None
        mha = cast(STFEncoderLayer, self.encoder.layer).self_attn.self_attn_long
        w, b = mha.in_proj_weight, mha.in_proj_bias
        deps = self._weights_key(w, b)
        own = self._weights_key(*self._input_projection())
        per_frame = [
            self._frame_cached("long_qkv", f, _deferred_linear(t, w, b), deps + own) for f, t in zip(features, tokens)
        ]
        key = ("pos_qk", id(pe_enc.offsets), tuple(positions), *deps)
        hit = cast(Optional[tuple[Tensor, Tensor]], self._pe_cache.get(key))
        if hit is None or hit[0] is not pe_enc.offsets:
            C = self.dim
            hit = (pe_enc.offsets, F.linear(pe_enc.offsets, w[: 2 * C]))
            self._pe_cache[key] = hit
        qkv = torch.cat(per_frame, 2)
        qkv[..., : 2 * self.dim] += hit[1]
        return qkv

    def _weights_key(self, *params: Tensor) -> tuple[Hashable, ...]:
        """The part of a cache key that follows ``params``: their :func:`tensor_key` s, or nothing once the
        weights are frozen (an inference copy's never change)."""
        return () if self.weights_frozen else tuple(tensor_key(p) for p in params)

    def _input_projection(self) -> tuple[Tensor, ...]:
        """The 1x1 input projection's weight and bias (none without one): each frame's tokens depend on them."""
        if not self.residual:
            return ()
        bias = self.proj_in.bias  # built with one
        return (self.proj_in.weight,) if bias is None else (self.proj_in.weight, bias)

    def _frame_cached(
        self, name: str, feature: Tensor, make: Callable[[], Tensor], deps: tuple[Hashable, ...]
    ) -> Tensor:
        """A per-frame result kept while ``feature`` (weakly referenced) and ``deps`` are unchanged."""
        key = (name, tensor_key(feature), mode_key(), *deps)
        hit = self._token_cache.get(key)
        if hit is not None and hit[0]() is feature:
            return hit[1]
        value = make()
        cache = self._token_cache

        # the entry leaves when its feature is freed (a frame leaving every window, a naive pass's features),
        # so features passing through never push out the frames a stream still holds
        def drop(_: weakref.ref[Tensor], k: tuple[object, ...] = key) -> None:
            cache.pop(k, None)

        cache[key] = (weakref.ref(feature, drop), value)
        while len(cache) > self.FRAME_CACHE_ENTRIES:  # many live features: oldest first (insertion order)
            cache.pop(next(iter(cache)), None)
        return value

    def forward(self, features: Sequence[Tensor], target: int, positions: Optional[Sequence[int]] = None) -> Tensor:
        """``features``: n (<= T) tensors (N, C, h, w), oldest first; returns the fused (N, C, h, w) for
        ``features[target]``. ``positions``: each frame's time position in 0..T-1 (default: the window's
        frames take the last n positions, as a causal window that is still filling)."""
        n = len(features)
        if n < 1 or not 0 <= target < n:
            raise ValueError(f"need 1..{self.frames} frames and a target among them, got {n} and {target}")
        if n > self.frames:
            raise ValueError(f"this STF was built for windows of at most {self.frames} frames, got {n}")
        if positions is None:
            positions = self.positions(n, target, target + self.frames - n)
        if len(positions) != n or not all(0 <= p < self.frames for p in positions):
            raise ValueError(f"positions must be {n} values in 0..{self.frames - 1}, got {list(positions)}")
        x_target = features[target]
        if x_target.dim() != 4 or x_target.shape[1] != self.channels:
            raise ValueError(f"STF expects features (N, {self.channels}, h, w), got {tuple(x_target.shape)}")
        N, _, h0, w0 = x_target.shape
        h, w = (_ceil_div(h0, self.pool), _ceil_div(w0, self.pool)) if self.pool > 1 else (h0, w0)
        tokens = [self._frame_tokens(f) for f in features]
        x = torch.cat(tokens, 2)  # (N, blocks, n, bb, dim)
        padding = self._padding(h, w, N, x.device)
        pe_enc, pe_dec = self._encodings(positions, h, w, x.dtype)
        memory = self.encoder.layer(x, pe_enc, padding, self._long_qkv(features, tokens, positions, pe_enc))
        out = self.decoder.layer(tokens[target], memory, pe_dec, pe_enc, padding)
        if self.residual:  # project back at the pooled size (cheaper; linear, so it commutes with upsampling)
            out = F.linear(out, self.proj_out.weight.flatten(1), self.proj_out.bias)
        H, W = _round_up(h, self.block), _round_up(w, self.block)
        out = from_blocks(out, H, W, self.block)[:, 0, :h, :w].permute(0, 3, 1, 2)
        if self.pool > 1:
            out = F.interpolate(out, size=(h0, w0), mode="bilinear", align_corners=False)
            if self.residual and out.dtype == x_target.dtype and out.stride() == x_target.stride():
                return out.add_(x_target)  # a new tensor of the same layout: add into it, no third one
        return x_target + out if self.residual else out.contiguous()


__all__ = [
    "STF",
    "InterlacedSparseAttention",
    "STFEncoderLayer",
    "STFDecoderLayer",
    "Encoding",
    "Padding",
    "attend",
    "attend_projected",
    "to_blocks",
    "from_blocks",
    "swap_grouping",
]
