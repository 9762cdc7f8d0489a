"""MAR refinement (against a hand-written computation of the reference's formula) and the streaming memory
builder on a synthetic set whose keys and values can be worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vsseg_ros.core.memory_bank import MemoryBuilder, build_memory
from vsseg_ros.core.models.mar import MAR

torch.set_num_threads(1)


def _mar(channels: int = 8, classes: int = 3, slots: int = 2, dim: int = 4, seed: int = 0) -> MAR:
    torch.manual_seed(seed)
    m = MAR(channels, classes, slots_per_class=slots, dim=dim, ffn=6, dropout=0.1)
    with torch.no_grad():
        m.set_memory(torch.randn(classes * slots, channels), torch.randn(classes * slots, channels))
        for p in m.HEdecoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def _by_hand(m: MAR, x: torch.Tensor) -> torch.Tensor:
    """q, k, v through three bias-free linears each; softmax(q k^T) without 1/sqrt(d); x = LN(x + out(A v));
    x = LN(x + FFN(x))."""
    d = m.HEdecoder
    t = x.flatten(2).transpose(1, 2)

    def chain(seq, y):
        for lin in seq:
            y = y @ lin.weight.T
        return y

    q, k, v = chain(d.attn.to_q, t), chain(d.attn.to_k, m.memory_key), chain(d.attn.to_v, m.memory_value)
    a = torch.softmax(q @ k.transpose(1, 2), -1)
    t = F.layer_norm(t + d.attn.to_out[0](a @ v), (x.shape[1],), d.norm1.weight, d.norm1.bias)
    t = F.layer_norm(t + d.linear2(F.relu(d.linear1(t))), (x.shape[1],), d.norm2.weight, d.norm2.bias)
    return t.transpose(1, 2).reshape(x.shape)


def test_mar_matches_the_formula_with_and_without_autograd() -> None:
    m = _mar()
    x = torch.randn(2, 8, 5, 7)
    expected = _by_hand(m, x).detach()
    with torch.enable_grad():
        assert torch.allclose(m(x), expected, atol=1e-5)
    with torch.inference_mode():  # folded query linears, cached memory projections
        assert torch.allclose(m(x), expected, atol=1e-5)
        assert torch.allclose(m(x), expected, atol=1e-5)
    assert m(x).shape == x.shape


def test_mar_cache_follows_memory_and_weight_changes() -> None:
    m = _mar()
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        before = m(x)
        m.set_memory(torch.randn(6, 8), torch.randn(6, 8))
        after_memory = m(x)
        m.HEdecoder.attn.to_q[1].weight.mul_(3.0)
        after_weight = m(x)
        m.HEdecoder.linear2.bias.add_(1.0)  # folded into norm1's and linear1's biases at inference
        after_bias = m(x)
    assert not torch.allclose(before, after_memory)
    assert not torch.allclose(after_memory, after_weight)
    assert not torch.allclose(after_weight, after_bias)
    assert torch.allclose(after_bias, _by_hand(m, x).detach(), atol=1e-5)


def test_frozen_weights_are_folded_once_and_no_longer_checked() -> None:
    """An inference copy's weights never change (freeze_weights): the fold is made once and reused without
    re-checking the weights, so a later change is not seen, which is why only such copies are frozen."""
    from vsseg_ros.core.models.cache_keys import freeze_weights

    m = _mar()
    x = torch.randn(1, 8, 4, 4)
    expected = _by_hand(m, x).detach()
    assert freeze_weights(m) == 1 and m.HEdecoder.weights_frozen
    with torch.inference_mode():
        first = m.HEdecoder.folded(m.memory_key, m.memory_value, x.dtype, 2)
        assert torch.allclose(m(x), expected, atol=1e-5)
        with torch.no_grad():
            m.HEdecoder.linear2.bias.add_(1.0)
        assert m.HEdecoder.folded(m.memory_key, m.memory_value, x.dtype, 2) is first
        assert torch.allclose(m(x), expected, atol=1e-5)


def test_mar_inference_uses_one_value_per_class_when_the_memory_repeats_its_prototypes() -> None:
    m = _mar(classes=3, slots=4)
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():  # a built memory: each class's slots share one prototype
        m.memory_value.copy_(torch.randn(3, 1, 8).expand(3, 4, 8).reshape(1, 12, 8))
    expected = _by_hand(m, x).detach()
    with torch.inference_mode():
        assert torch.allclose(m(x), expected, atol=1e-5)
        f = m.HEdecoder.folded(m.memory_key, m.memory_value, x.dtype, 4)
        assert f.step == 4 and f.values.shape == (3, 8)
        with torch.no_grad():  # one slot's value changes: back to a value per slot, still the same map
            m.memory_value[0, 5].add_(1.0)
        expected = _by_hand(m, x).detach()
        assert torch.allclose(m(x), expected, atol=1e-5)
        f = m.HEdecoder.folded(m.memory_key, m.memory_value, x.dtype, 4)
        assert f.step == 1 and f.values.shape == (12, 8)


def test_mar_memory_is_in_the_state_dict_and_trainable_when_enabled() -> None:
    m = _mar().train()
    sd = m.state_dict()
    assert sd["memory_key"].shape == (1, 6, 8) and sd["memory_value"].shape == (1, 6, 8)
    assert not m.memory_key.requires_grad  # frozen unless the MAR stage enables it
    m.memory_key.requires_grad_(True)
    m.memory_value.requires_grad_(True)
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    m(x).pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.memory_key.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    m2 = MAR(8, 3, slots_per_class=2, dim=4, ffn=6)
    m2.load_state_dict(sd)
    assert torch.equal(m2.memory_value, m.memory_value)
    with pytest.raises(ValueError, match="6 slots"):
        m2.set_memory(torch.zeros(5, 8), torch.zeros(5, 8))


# -- the memory builder ------------------------------------------------------------------------------------


def _logits_for(pred: torch.Tensor, conf: torch.Tensor, classes: int) -> torch.Tensor:
    """Logits whose argmax is ``pred`` and whose max softmax is exactly ``conf`` (N, h, w)."""
    other = torch.log((1 - conf) / (classes - 1))
    logits = other[:, None].expand(-1, classes, -1, -1).clone()
    logits.scatter_(1, pred[:, None], torch.log(conf)[:, None])
    return logits


def _synthetic() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row of 8 pixels, 3 classes, feature = (pixel index, 10 * confidence).

    pixel:      0    1    2    3    4    5    6    7
    label:      0    0    0    0    1    1  255    0
    prediction: 0    0    0    0    1    0    0    2   (5: wrong, 6: ignored, 7: wrong)
    confidence: .90  .50  .70  .95  .60  .99  .99  .99
    class 0 correct: pixels 0..3 (conf .90 .50 .70 .95); class 1: pixel 4; class 2: none."""
    label = torch.tensor([[[0, 0, 0, 0, 1, 1, 255, 0]]])
    pred = torch.tensor([[[0, 0, 0, 0, 1, 0, 0, 2]]])
    conf = torch.tensor([[[0.90, 0.50, 0.70, 0.95, 0.60, 0.99, 0.99, 0.99]]])
    feature = torch.stack([torch.arange(8.0)[None, None].expand(1, 1, 8), 10 * conf], 1)
    return feature, _logits_for(pred, conf, 3), label


def test_memory_from_a_hand_checkable_set() -> None:
    feature, logits, label = _synthetic()
    b = MemoryBuilder(num_classes=3, slots_per_class=2, prototypes=3)
    b.add(feature, logits, label)
    keys, values = b.memory()
    assert keys.shape == values.shape == (6, 2)
    # class 0: the two least confident correct pixels, ascending: pixel 1 (.50), pixel 2 (.70)
    assert torch.allclose(keys[0:2], torch.tensor([[1.0, 5.0], [2.0, 7.0]]))
    # prototype: mean of the 3 most confident: pixels 3, 0, 2 -> ((3+0+2)/3, (9.5+9+7)/3), in both slots
    assert torch.allclose(values[0:2], torch.tensor([[5 / 3, 25.5 / 3]] * 2))
    # class 1: one correct pixel (4) repeated as keys; its prototype is itself
    assert torch.allclose(keys[2:4], torch.tensor([[4.0, 6.0]] * 2))
    assert torch.allclose(values[2:4], torch.tensor([[4.0, 6.0]] * 2))
    # class 2: nothing correct -> the mean of all 5 correct features, keys and values
    mean = torch.tensor([(0 + 1 + 2 + 3 + 4) / 5, (9 + 5 + 7 + 9.5 + 6) / 5])
    assert torch.allclose(keys[4:6], mean.expand(2, 2)) and torch.allclose(values[4:6], mean.expand(2, 2))
    assert b.stats.empty_classes == [2]
    assert b.stats.correct_per_class == [4, 1, 0]
    assert b.stats.pixels == 7  # the ignored pixel is not counted


def test_streaming_in_pieces_equals_one_pass_and_stays_bounded() -> None:
    torch.manual_seed(0)
    N, C, K = 12, 5, 4
    feature = torch.randn(N, C, 6, 6)
    logits = torch.randn(N, K, 6, 6) * 3
    label = torch.randint(0, K, (N, 6, 6))
    label[:, 0] = 255
    whole = MemoryBuilder(K, slots_per_class=3)
    whole.add(feature, logits, label)
    pieces = MemoryBuilder(K, slots_per_class=3)
    for i in range(N):
        pieces.add(feature[i : i + 1], logits[i : i + 1], label[i : i + 1])
        assert all(t.feats is None or t.feats.shape[0] <= 3 for t in pieces.hard + pieces.easy)
    kw, vw = whole.memory()
    kp, vp = pieces.memory()
    assert torch.allclose(kw, kp) and torch.allclose(vw, vp, atol=1e-6)
    assert whole.stats.correct_per_class == pieces.stats.correct_per_class


def test_labels_are_resized_to_the_feature_grid_and_bad_input_is_refused() -> None:
    feature, logits, label = _synthetic()
    big = label.repeat_interleave(4, -1).repeat_interleave(4, -2)  # (1, 4, 32)
    b1, b2 = MemoryBuilder(3, 2), MemoryBuilder(3, 2)
    b1.add(feature, logits, label)
    b2.add(feature, logits, big)
    assert all(torch.equal(a, b) for a, b in zip(b1.memory(), b2.memory()))
    with pytest.raises(ValueError, match="logits must be"):
        b1.add(feature, logits[:, :2], label)
    with pytest.raises(ValueError, match=r"\[7\] outside 0..2"):
        b1.add(
            feature,
            _logits_for(torch.full((1, 1, 8), 1), torch.full((1, 1, 8), 0.9), 5)[:, :3],
            torch.full((1, 1, 8), 7),
        )
    with pytest.raises(ValueError, match="no correctly classified"):
        MemoryBuilder(3, 2).memory()


def test_build_memory_stores_it_in_the_module() -> None:
    feature, logits, label = _synthetic()
    m = MAR(2, 3, slots_per_class=2, dim=2, ffn=2)
    stats = build_memory(m, [(feature, logits, label)])
    assert stats.empty_classes == [2]
    assert torch.allclose(m.memory_key[0, 0], torch.tensor([1.0, 5.0]))
    assert torch.allclose(m.memory_value[0, 2], torch.tensor([4.0, 6.0]))
