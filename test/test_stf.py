"""STF: interlaced sparse attention against a loop-per-group computation with nn.MultiheadAttention's own
forward, encoder/decoder layers, padding invariance, short windows, caches and gradients."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

import vsseg_ros.core.models.stf as stf_mod
from vsseg_ros.core.models.stf import STF, InterlacedSparseAttention, STFDecoderLayer, STFEncoderLayer

torch.set_num_threads(1)


def _randomise(module: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _naive_isa(
    isa: InterlacedSparseAttention, q: torch.Tensor, m: torch.Tensor, pq: torch.Tensor, pm: torch.Tensor
) -> torch.Tensor:
    """ISA by explicit gathering, one group at a time, through nn.MultiheadAttention.forward; inputs
    channels-last (N, T, H, W, C), H and W multiples of the block."""
    b = isa.block
    N, Tq, H, W, C = q.shape
    long_out = torch.zeros_like(q)
    for i in range(b):
        for j in range(b):
            qq = (q + pq)[:, :, i::b, j::b].reshape(N, -1, C)
            kk = (m + pm)[:, :, i::b, j::b].reshape(N, -1, C)
            vv = m[:, :, i::b, j::b].reshape(N, -1, C)
            o = isa.self_attn_long(qq, kk, vv, need_weights=False)[0]
            long_out[:, :, i::b, j::b] = o.reshape(N, Tq, H // b, W // b, C)
    out = torch.zeros_like(q)
    for bi in range(H // b):
        for bj in range(W // b):
            sl = (slice(None), slice(None), slice(bi * b, (bi + 1) * b), slice(bj * b, (bj + 1) * b))
            x = long_out[sl].reshape(N, -1, C)
            xp = (long_out + pq)[sl].reshape(N, -1, C)
            out[sl] = isa.self_attn_short(xp, xp, x, need_weights=False)[0].reshape(N, Tq, b, b, C)
    return out


def _grid_isa(isa: InterlacedSparseAttention, q: torch.Tensor, m, pq: torch.Tensor, pm) -> torch.Tensor:
    """Our ISA on channels-last grids (N, T, H, W, C): into the blocks layout and back."""
    b, (H, W) = isa.block, q.shape[2:4]
    enc = lambda p: None if p is None else stf_mod.Encoding.of_grid(p, b)  # noqa: E731
    out = isa(stf_mod.to_blocks(q, b), None if m is None else stf_mod.to_blocks(m, b), enc(pq), enc(pm))
    return stf_mod.from_blocks(out, H, W, b)


def test_layouts_round_trip_and_group_as_documented() -> None:
    x = torch.randn(2, 3, 8, 12, 5)
    blocks = stf_mod.to_blocks(x, 4)
    assert blocks.shape == (2, 6, 3, 16, 5)
    assert torch.equal(stf_mod.from_blocks(blocks, 8, 12, 4), x)
    # block (1, 2) of frame 2, in-block offset (3, 1): grid position (4 + 3, 8 + 1)
    assert torch.equal(blocks[1, 1 * 3 + 2, 2, 3 * 4 + 1], x[1, 2, 7, 9])
    offsets = stf_mod.swap_grouping(blocks)
    assert offsets.shape == (2, 16, 3, 6, 5) and torch.equal(stf_mod.swap_grouping(offsets), blocks)


@pytest.mark.parametrize("cross", [False, True])
def test_isa_matches_per_group_multihead_attention(cross: bool) -> None:
    torch.manual_seed(0)
    isa = InterlacedSparseAttention(8, 2, 0.0, block=4).eval()
    _randomise(isa)
    x = torch.randn(2, 1 if cross else 3, 8, 12, 8)
    mem = torch.randn(2, 3, 8, 12, 8)
    px, pm = torch.randn(1, x.shape[1], 8, 12, 8), torch.randn(1, 3, 8, 12, 8)
    with torch.no_grad():
        ours = _grid_isa(isa, x, mem if cross else None, px, pm if cross else None)
        naive = _naive_isa(isa, x, mem if cross else x, px, pm if cross else px)
    assert ours.shape == x.shape
    assert torch.allclose(ours, naive, atol=1e-5), (ours - naive).abs().max()


def test_isa_long_range_connects_frames_and_blocks_short_range_stays_in_block() -> None:
    """Which outputs a single input token can reach after the long step only, through the gradient."""
    isa = InterlacedSparseAttention(4, 1, 0.0, block=2)
    _randomise(isa, scale=0.5)
    x = torch.randn(1, 2, 4, 4, 4, requires_grad=True)
    zeros = torch.zeros(1, 2, 4, 4, 4)
    C = 4
    w, b = isa.self_attn_long.in_proj_weight, isa.self_attn_long.in_proj_bias
    # long step alone: output at (t=0, 0, 0) depends on tokens with the same in-block offset, every frame/block
    xo = stf_mod.swap_grouping(stf_mod.to_blocks(x, 2))
    out = stf_mod.attend(
        isa.self_attn_long, xo + stf_mod.swap_grouping(stf_mod.to_blocks(zeros, 2)), None, xo, None, 0.0
    )
    out = stf_mod.from_blocks(stf_mod.swap_grouping(out), 4, 4, 2)
    out[0, 0, 0, 0].sum().backward()
    reach = x.grad.abs().sum(-1)[0] > 0
    expected = torch.zeros(2, 4, 4, dtype=torch.bool)
    expected[:, 0::2, 0::2] = True
    assert torch.equal(reach, expected)
    assert w.shape == (3 * C, C) and b.shape == (3 * C,)


def test_encoder_and_decoder_layers_shapes_postnorm_and_gradients() -> None:
    torch.manual_seed(1)
    enc, dec = STFEncoderLayer(8, 2, 16, 0.1, 4), STFDecoderLayer(8, 2, 16, 0.1, 4)
    x = torch.randn(2, 3, 4, 8, 8, requires_grad=True)
    pos = torch.randn(1, 3, 4, 8, 8)
    e_pos, d_pos = stf_mod.Encoding.of_grid(pos, 4), stf_mod.Encoding.of_grid(pos[:, 1:2], 4)
    xb = stf_mod.to_blocks(x, 4)
    m = enc(xb, e_pos, None)
    y = stf_mod.from_blocks(dec(xb[:, :, 1:2], m, d_pos, e_pos, None), 4, 8, 4)
    m = stf_mod.from_blocks(m, 4, 8, 4)
    assert m.shape == x.shape and y.shape == (2, 1, 4, 8, 8)
    # post-norm: every token comes out of a LayerNorm with unit weight and zero bias at init
    assert torch.allclose(y.mean(-1), torch.zeros(2, 1, 4, 8), atol=1e-5)
    y.pow(2).sum().backward()
    for mod in (enc, dec):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mod.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def _stf(dim=None, pool=1, block=4, frames=3, channels=16, seed=0) -> STF:
    s = STF(channels, frames, heads=2, ffn=24, block=block, dropout=0.0, pe_size=(6, 7), dim=dim, pool=pool)
    _randomise(s, seed)
    return s.eval()


@pytest.mark.parametrize("dim,pool", [(None, 1), (8, 1), (8, 2)])
@pytest.mark.parametrize("size", [(8, 8), (9, 13), (3, 5)])
def test_stf_output_shape_and_padding_does_not_leak(dim, pool, size, monkeypatch) -> None:
    """Whatever the padding holds, real tokens get the same result (padded keys are masked everywhere)."""
    torch.manual_seed(2)
    s = _stf(dim, pool)
    feats = [torch.randn(2, 16, *size) for _ in range(3)]
    with torch.no_grad():
        clean = s(feats, 2)
    assert clean.shape == (2, 16, *size) and torch.isfinite(clean).all()

    def garbage_pad(x: torch.Tensor, block: int) -> torch.Tensor:
        h, w = x.shape[-3:-1]
        H, W = -(-h // block) * block, -(-w // block) * block
        out = torch.randn(*x.shape[:-3], H, W, x.shape[-1]) * 100
        out[..., :h, :w, :] = x
        return out

    monkeypatch.setattr(stf_mod, "_pad_to", garbage_pad)
    s._pe_cache.clear()
    s._token_cache.clear()
    with torch.no_grad():
        dirty = s(feats, 2)
    assert torch.allclose(clean, dirty, atol=1e-5), (clean - dirty).abs().max()


def test_stf_without_padding_equals_naive_transformer_over_the_window() -> None:
    """STF in the reference's setting (no projection, aligned grid): encoder over all frames, decoder from the
    raw target-frame tokens, positional encodings resized to (T, h, w) added to queries and keys."""
    torch.manual_seed(3)
    s = _stf()
    feats = [torch.randn(1, 16, 8, 8) for _ in range(3)]
    x = torch.stack(feats, 1).permute(0, 1, 3, 4, 2)
    pe = F.interpolate(s.pe_enc, size=(3, 8, 8), mode="trilinear", align_corners=False).permute(0, 2, 3, 4, 1)
    pd = F.interpolate(s.pe_dec, size=(1, 8, 8), mode="trilinear", align_corners=False).permute(0, 2, 3, 4, 1)
    enc, dec = s.encoder.layers[0], s.decoder.layers[0]
    with torch.no_grad():
        m = enc.norm1(x + _naive_isa(enc.self_attn, x, x, pe, pe))
        m = enc.norm2(m + enc.linear2(F.relu(enc.linear1(m))))
        t = x[:, 1:2]
        y = dec.norm1(t + _naive_isa(dec.self_attn, t, t, pd, pd))
        y = dec.norm2(y + _naive_isa(dec.multihead_attn, y, m, pd, pe))
        y = dec.norm3(y + dec.linear2(F.relu(dec.linear1(y))))
        ours = s(feats, 1, positions=[0, 1, 2])
    assert torch.allclose(ours, y[:, 0].permute(0, 3, 1, 2), atol=1e-5)


def test_short_windows_keep_the_labelled_frame_at_its_nominal_position() -> None:
    s = _stf()
    assert s.positions(3, 2, 2) == [0, 1, 2]  # causal, full
    assert s.positions(2, 1, 2) == [1, 2]  # causal, filling: the newest is always position T-1
    assert s.positions(1, 0, 2) == [2]
    assert s.positions(3, 1, 1) == [0, 1, 2]  # centered, full
    assert s.positions(2, 0, 1) == [1, 2]  # centered, filling
    assert s.positions(2, 1, 1) == [0, 1]  # centered flush: target is the newest frame
    assert s.positions(1, 0, 1) == [1]
    torch.manual_seed(4)
    feats = [torch.randn(1, 16, 8, 8) for _ in range(3)]
    with torch.no_grad():
        for n in (1, 2, 3):
            out = s(feats[3 - n :], n - 1)  # default positions: the last n
            assert out.shape == (1, 16, 8, 8) and torch.isfinite(out).all()
            assert torch.equal(out, s(feats[3 - n :], n - 1, positions=list(range(3 - n, 3))))
        # positions matter: the same frames at other time positions give another result
        assert not torch.allclose(s(feats[1:], 1, positions=[1, 2]), s(feats[1:], 1, positions=[0, 1]))
    with pytest.raises(ValueError, match="at most 3"):
        s(feats + feats[:1], 0)
    with pytest.raises(ValueError, match="target"):
        s(feats, 3)
    with pytest.raises(ValueError, match="positions"):
        s(feats, 0, positions=[0, 1, 3])


def test_light_stf_starts_as_identity_and_learns() -> None:
    torch.manual_seed(5)
    s = STF(16, 3, heads=2, ffn=24, block=4, dropout=0.1, pe_size=(6, 7), dim=8, pool=2).train()
    feats = [torch.randn(2, 16, 9, 11, requires_grad=True) for _ in range(3)]
    out = s(feats, 2)
    assert torch.equal(out, feats[2])  # zero-initialised output projection
    out.pow(2).sum().backward()
    assert s.proj_out.weight.grad.abs().sum() > 0
    opt = torch.optim.SGD(s.parameters(), lr=0.1)
    opt.step()
    out2 = s(feats, 2)
    assert not torch.equal(out2, feats[2])
    out2.sum().backward()
    for name, p in s.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert s.pe_enc.grad.abs().sum() > 0 and feats[0].grad.abs().sum() > 0


def test_caches_follow_parameter_and_feature_changes() -> None:
    torch.manual_seed(6)
    s = _stf(dim=8, pool=2)
    feats = [torch.randn(1, 16, 9, 9) for _ in range(3)]
    with torch.enable_grad():
        reference = s(feats, 2).detach()  # no caching with autograd on
    with torch.inference_mode():
        assert torch.allclose(s(feats, 2), reference, atol=1e-6)
        assert torch.allclose(s(feats, 2), reference, atol=1e-6)  # from the caches
    with torch.no_grad():
        feats[0].mul_(2.0)  # an in-place change of a cached frame
        changed = s(feats, 2)
        s.pe_enc.add_(1.0)  # an optimizer-like in-place update of the encodings
        moved = s(feats, 2)
        s.proj_in.weight.mul_(0.5)
        reprojected = s(feats, 2)
    with torch.enable_grad():
        assert torch.allclose(reprojected, s(feats, 2).detach(), atol=1e-6)
    with torch.no_grad():  # each frame's long-step projection is kept too: it must follow the encoder's weights
        s.encoder.layers[0].self_attn.self_attn_long.in_proj_weight.mul_(0.7)
        reweighted = s(feats, 2)
    with torch.enable_grad():
        assert torch.allclose(reweighted, s(feats, 2).detach(), atol=1e-6)
    assert not torch.allclose(changed, reference) and not torch.allclose(moved, changed)
    assert not torch.allclose(reprojected, moved) and not torch.allclose(reweighted, reprojected)
    del feats, reference, changed, moved, reprojected, reweighted
    gc.collect()
    assert not s._token_cache  # entries leave with their features


def test_a_frozen_channels_last_stf_gives_the_same_result_and_leaves_its_inputs_alone() -> None:
    """As a segmenter's inference copy runs: features channels-last (the residual is then added into the
    upsampled result in place) and weights frozen (freeze_weights: the caches stop checking them)."""
    from vsseg_ros.core.models.cache_keys import freeze_weights

    torch.manual_seed(7)
    s = _stf(dim=8, pool=2)
    feats = [torch.randn(1, 16, 9, 11) for _ in range(3)]
    with torch.enable_grad():
        reference = s(feats, 2).detach()
    assert freeze_weights(s) == 1 and s.weights_frozen
    last = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    kept = [f.clone() for f in last]
    with torch.inference_mode():
        for _ in range(2):  # the second time from the caches
            out = s(last, 2)
            torch.testing.assert_close(out, reference, atol=1e-6, rtol=0)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(f, k) for f, k in zip(last, kept))


def test_stream_frames_stay_cached_while_other_features_pass_through() -> None:
    """A stream's frames are prepared once even when other windows use the same STF in between (other
    cameras, or the benchmark's naive way with fresh features each time): those must not push them out."""
    s = _stf(dim=8, pool=2)
    prepared: list[weakref.ref] = []  # weak: counting must not keep the passing features alive
    tokens = s._tokens
    s._tokens = lambda f: prepared.append(weakref.ref(f)) or tokens(f)  # count the per-frame work
    stream = [torch.randn(1, 16, 8, 8) for _ in range(8)]
    live = [[torch.randn(1, 16, 8, 8) for _ in range(3)] for _ in range(4)]  # four more cameras' windows
    with torch.no_grad():
        for i in range(2, len(stream)):
            s(stream[i - 2 : i + 1], 2)
            for _ in range(6):  # naive passes: fresh features, freed at once
                s([torch.randn(1, 16, 8, 8) for _ in range(3)], 2)
            for window in live:
                s(window, 2)
    for f in stream + [f for w in live for f in w]:
        assert sum(p() is f for p in prepared) == 1
    assert len(s._token_cache) <= s.FRAME_CACHE_ENTRIES
    prepared.clear()
    del stream, live, window, f  # the loop variables hold tensors too
    gc.collect()
    assert not s._token_cache


def test_stf_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="divisible"):
        STF(16, 3, heads=3, dim=8)
    s = _stf()
    with pytest.raises(ValueError, match=r"\(N, 16, h, w\)"):
        s([torch.randn(1, 8, 4, 4)] * 3, 2)


def test_a_module_with_filled_caches_can_be_pickled() -> None:
    import io

    s = _stf(dim=8, pool=2)
    feats = [torch.randn(1, 16, 8, 8) for _ in range(3)]
    with torch.no_grad():
        before = s(feats, 2)
    assert s._token_cache
    buf = io.BytesIO()
    torch.save(s, buf)
    buf.seek(0)
    copy = torch.load(buf, weights_only=False)
    with torch.no_grad():
        assert torch.equal(copy(feats, 2), before)
