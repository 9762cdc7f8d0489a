"""STF: spatial-temporal fusion of a window of per-frame features by attention (Zhuang et al.).

One post-norm transformer encoder layer runs over the T frames' features; one decoder layer takes the target
frame's features as queries and the encoder output as memory. Every attention is *interlaced sparse attention*
(ISA): the (T, h, w) token grid is cut into ``block`` x ``block`` spatial blocks, and

- the *long-range* step attends among the tokens at the same offset inside every block, across all frames
  (T * (h / block) * (w / block) tokens per group),
- the *short-range* step then attends within each block, across all frames (T * block * block tokens).

Together they connect every token with every other at a fraction of full attention's cost. In the decoder's
cross-attention only the long-range step looks at the encoder memory; its short-range step attends within the
query frame's blocks. Learned positional encodings ``(1, C, T, pe_h, pe_w)`` are resized (trilinear) to the
feature grid and added to queries and keys, never to values.

Any feature size works: the grid is padded up to a multiple of ``block`` and padded keys are masked out of every
attention, so padding never changes the result; the output is cropped back. Fewer than T frames (a window
still filling) take the positional encodings of the time positions they occupy (see :meth:`STF.forward`).

With ``dim`` set (the light configuration), 1x1 projections bring the features down to ``dim`` channels for the
attention, and the fused result is added back to the target frame's features through a zero-initialised
projection, so an untrained STF leaves the per-frame model unchanged. ``pool`` > 1 attends on average-pooled
features and upsamples the fused residual.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _pad_to(x: Tensor, block: int) -> Tensor:
    """Pad the last two dims of ``x`` with zeros up to multiples of ``block``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % block, (-w) % block
    return F.pad(x, (0, pw, 0, ph)) if (ph or pw) else x


def _long_groups(x: Tensor, block: int) -> Tensor:
    """(N, T, C, H, W) -> (N * block * block, T * (H/block) * (W/block), C): a group per offset in the block."""
    N, T, C, H, W = x.shape
    hb, wb = H // block, W // block
    x = x.reshape(N, T, C, hb, block, wb, block)
    return x.permute(0, 4, 6, 1, 3, 5, 2).reshape(N * block * block, T * hb * wb, C)


def _long_ungroup(x: Tensor, N: int, T: int, H: int, W: int, block: int) -> Tensor:
    C = x.shape[-1]
    hb, wb = H // block, W // block
    x = x.reshape(N, block, block, T, hb, wb, C)
    return x.permute(0, 3, 6, 4, 1, 5, 2).reshape(N, T, C, H, W)


def _short_groups(x: Tensor, block: int) -> Tensor:
    """(N, T, C, H, W) -> (N * (H/block) * (W/block), T * block * block, C): a group per block."""
    N, T, C, H, W = x.shape
    hb, wb = H // block, W // block
    x = x.reshape(N, T, C, hb, block, wb, block)
    return x.permute(0, 3, 5, 1, 4, 6, 2).reshape(N * hb * wb, T * block * block, C)


def _short_ungroup(x: Tensor, N: int, T: int, H: int, W: int, block: int) -> Tensor:
    C = x.shape[-1]
    hb, wb = H // block, W // block
    x = x.reshape(N, hb, wb, T, block, block, C)
    return x.permute(0, 3, 6, 1, 4, 2, 5).reshape(N, T, C, H, W)


class InterlacedSparseAttention(nn.Module):
    """Long-range then short-range multi-head attention over (N, T, C, H, W) token grids (H, W multiples of
    ``block``). ``self_attn_long`` / ``self_attn_short`` are ``nn.MultiheadAttention`` (the reference's names).

    ``forward(query, key, value, pos_q, pos_k, valid_q, valid_k, cross)``: with ``cross`` the long-range step
    attends from ``query`` to ``key``/``value`` (the encoder memory) and the short-range step attends within the
    query's own blocks; otherwise both steps are self-attention. ``valid_*`` (H, W) bool masks mark real
    (unpadded) positions.
    """

    def __init__(self, dim: int, heads: int, dropout: float, block: int) -> None:
        super().__init__()
        self.block = block
        self.self_attn_long = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.self_attn_short = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    @staticmethod
    def _mask(valid: Optional[Tensor], N: int, T: int, grouper, block: int) -> Optional[Tensor]:
        """Key padding mask (True = ignore) in the grouped layout, or None when nothing is padded."""
        if valid is None or bool(valid.all()):
            return None
        H, W = valid.shape
        v = valid.view(1, 1, 1, H, W).expand(N, T, 1, H, W)
        return ~grouper(v, block)[..., 0]

    def forward(self, query: Tensor, key: Tensor, value: Tensor, pos_q: Tensor, pos_k: Tensor,
                valid: Optional[Tensor] = None, cross: bool = False) -> Tensor:
        b = self.block
        N, Tq, C, H, W = query.shape
        Tk = key.shape[1]
        # long range: tokens at the same offset of every block, across frames
        q = _long_groups(query + pos_q, b)
        k = _long_groups(key + pos_k, b)
        v = _long_groups(value, b)
        out = self.self_attn_long(q, k, v, key_padding_mask=self._mask(valid, N, Tk, _long_groups, b),
                                  need_weights=False)[0]
        x = _long_ungroup(out, N, Tq, H, W, b)
        # short range: within each block (of the query frames), on the long-range result
        q = _short_groups(x + pos_q, b)
        v = _short_groups(x, b)
        out = self.self_attn_short(q, q, v, key_padding_mask=self._mask(valid, N, Tq, _short_groups, b),
                                   need_weights=False)[0]
        return _short_ungroup(out, N, Tq, H, W, b)


class _FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


def _channels_last(x: Tensor) -> Tensor:
    """(N, T, C, H, W) -> (N, T, H, W, C) for LayerNorm / Linear over channels."""
    return x.permute(0, 1, 3, 4, 2)


def _channels_first(x: Tensor) -> Tensor:
    return x.permute(0, 1, 4, 2, 3)


class STFEncoderLayer(nn.Module):
    """Post-norm: x = LN(x + ISA(x)); x = LN(x + FFN(x))."""

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

    def forward(self, src: Tensor, pos: Tensor, valid: Optional[Tensor]) -> Tensor:
        attn = self.self_attn(src, src, src, pos, pos, valid)
        x = self.norm1(_channels_last(src + self.dropout1(attn)))
        x = self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return _channels_first(x)


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

    def forward(self, tgt: Tensor, memory: Tensor, pos_t: Tensor, pos_m: Tensor,
                valid: Optional[Tensor]) -> Tensor:
        x = tgt
        a = self.self_attn(x, x, x, pos_t, pos_t, valid)
        x = _channels_first(self.norm1(_channels_last(x + self.dropout1(a))))
        a = self.multihead_attn(x, memory, memory, pos_t, pos_m, valid, cross=True)
        x = self.norm2(_channels_last(x + self.dropout2(a)))
        x = self.norm3(x + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        return _channels_first(x)


class STF(nn.Module):
    """Fuse a window of per-frame features (each (N, channels, h, w)) into the target frame's feature.

    ``frames``: T, the window the positional encodings are learned for. ``dim``: attention width (None = the
    feature width, as the reference). See the module docstring for ``block``, ``pool`` and padding.
    """

    def __init__(self, channels: int, frames: int = 3, heads: int = 2, ffn: int = 256, block: int = 16,
                 dropout: float = 0.1, pe_size: Sequence[int] = (128, 256), dim: Optional[int] = None,
                 pool: int = 1) -> None:
        super().__init__()
        self.channels, self.frames, self.block, self.pool = channels, frames, block, pool
        d = channels if dim is None else dim
        self.dim = d
        self.residual = dim is not None
        if self.residual:
            self.proj_in = nn.Conv2d(channels, d, 1)
            self.proj_out = nn.Conv2d(d, channels, 1)
            # zero at the start: an untrained STF leaves the per-frame feature as it is
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)
        ph, pw = int(pe_size[0]), int(pe_size[1])
        self.pe_enc = nn.Parameter(torch.zeros(1, d, frames, ph, pw))
        self.pe_dec = nn.Parameter(torch.zeros(1, d, 1, ph, pw))
        nn.init.trunc_normal_(self.pe_enc, std=0.02)
        nn.init.trunc_normal_(self.pe_dec, std=0.02)
        self.encoder = _Layers(STFEncoderLayer(d, heads, ffn, dropout, block))
        self.decoder = _Layers(STFDecoderLayer(d, heads, ffn, dropout, block))

    def positions(self, n: int, target: int, nominal_target: int) -> list[int]:
        """Time positions (0..T-1) of ``n`` window frames whose ``target``-th is labelled: the target takes its
        nominal position (``nominal_target``, T-1 for a causal model) and the others keep their offsets."""
        return [min(max(i - target + nominal_target, 0), self.frames - 1) for i in range(n)]

    def _pe(self, pe: Tensor, t: int, h: int, w: int) -> Tensor:
        """Positional encodings resized to (t, h, w): (1, t, dim, h, w)."""
        if pe.shape[2:] != (t, h, w):
            pe = F.interpolate(pe, size=(t, h, w), mode="trilinear", align_corners=False)
        return pe.permute(0, 2, 1, 3, 4)

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
        x_target = features[target]
        h0, w0 = x_target.shape[-2:]
        x = torch.stack(list(features), 1)  # (N, n, C, h, w)
        N = x.shape[0]
        if self.residual:
            x = self.proj_in(x.flatten(0, 1)).unflatten(0, (N, n))
        if self.pool > 1:
            x = F.avg_pool2d(x.flatten(0, 1), self.pool, ceil_mode=True).unflatten(0, (N, n))
        h, w = x.shape[-2:]
        x = _pad_to(x, self.block)
        H, W = x.shape[-2:]
        valid = None
        if (H, W) != (h, w):
            valid = torch.zeros(H, W, dtype=torch.bool, device=x.device)
            valid[:h, :w] = True
        pe_all = self._pe(self.pe_enc, self.frames, h, w)[:, list(positions)]
        pe_enc = _pad_to(pe_all, self.block).to(x.dtype)
        pe_dec = _pad_to(self._pe(self.pe_dec, 1, h, w), self.block).to(x.dtype)
        memory = self.encoder.layer(x, pe_enc, valid)
        out = self.decoder.layer(x[:, target:target + 1], memory, pe_dec, pe_enc, valid)[:, 0, :, :h, :w]
        if self.pool > 1:
            out = F.interpolate(out, size=(h0, w0), mode="bilinear", align_corners=False)
        if self.residual:
            return x_target + self.proj_out(out)
        return out


class _Layers(nn.Module):
    """Holds one layer as ``layers.0`` (the reference's state_dict layout for a one-layer stack)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList([layer])

    @property
    def layer(self) -> nn.Module:
        return self.layers[0]


__all__ = ["STF", "InterlacedSparseAttention", "STFEncoderLayer", "STFDecoderLayer"]
