"""Building the MAR memory from labelled data, in one streaming pass with bounded memory.

For every class, among the pixels the model classifies correctly, keep the ``slots_per_class`` features with the
LOWEST max-softmax score (the keys: hard, mostly boundary pixels) and the ``slots_per_class`` with the HIGHEST
(their mean is the class prototype, repeated as the values), as the reference does. Only running top-k sets are
kept, never all pixels, so a whole training set fits in a few megabytes.

A class with fewer correct pixels than slots repeats the ones it has; a class with none gets the mean of all
kept features as keys and values (a neutral memory entry) and is reported in ``MemoryStats.empty_classes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from vsseg_ros.core.classes import IGNORE_ID


@dataclass
class MemoryStats:
    pixels: int = 0
    correct_per_class: list[int] = field(default_factory=list)
    empty_classes: list[int] = field(default_factory=list)


class _TopK:
    """Running k smallest (or largest) scores with their feature vectors."""

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.scores: Optional[Tensor] = None
        self.feats: Optional[Tensor] = None

    def add(self, scores: Tensor, feats: Tensor) -> None:
        if scores.numel() == 0:
            return
        if self.scores is not None:
            scores, feats = torch.cat([self.scores, scores]), torch.cat([self.feats, feats])
        k = min(self.k, scores.numel())
        idx = torch.topk(scores, k, largest=self.largest).indices
        self.scores, self.feats = scores[idx], feats[idx]


class MemoryBuilder:
    """Feed ``add(feature, logits, label)`` batches; ``memory()`` gives (keys, values), each (classes * k, C)."""

    def __init__(self, num_classes: int, slots_per_class: int, ignore_id: int = IGNORE_ID) -> None:
        self.num_classes, self.k, self.ignore_id = num_classes, slots_per_class, ignore_id
        self.hard = [_TopK(slots_per_class, largest=False) for _ in range(num_classes)]
        self.easy = [_TopK(slots_per_class, largest=True) for _ in range(num_classes)]
        self.stats = MemoryStats(correct_per_class=[0] * num_classes)
        self._sum: Optional[Tensor] = None
        self._count = 0

    @torch.no_grad()
    def add(self, feature: Tensor, logits: Tensor, label: Tensor) -> None:
        """``feature`` (N, C, h, w), ``logits`` (N, K, h, w) at the same size, ``label`` (N, H, W) class ids
        (nearest-resized to h x w here)."""
        N, C, h, w = feature.shape
        if logits.shape[-2:] != (h, w) or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (N, {self.num_classes}, {h}, {w}), got {tuple(logits.shape)}")
        if label.shape[-2:] != (h, w):
            label = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")[:, 0]
        label = label.long().reshape(-1)
        prob = torch.softmax(logits.float(), 1)
        conf, pred = prob.max(1)
        conf, pred = conf.reshape(-1), pred.reshape(-1)
        feats = feature.float().permute(0, 2, 3, 1).reshape(-1, C)
        valid = label != self.ignore_id
        self.stats.pixels += int(valid.sum())
        correct = valid & (pred == label)
        s = feats[correct].sum(0)
        self._sum = s if self._sum is None else self._sum + s
        self._count += int(correct.sum())
        for c in torch.unique(label[correct]).tolist():
            sel = correct & (label == c)
            self.stats.correct_per_class[c] += int(sel.sum())
            self.hard[c].add(conf[sel], feats[sel])
            self.easy[c].add(conf[sel], feats[sel])

    def memory(self) -> tuple[Tensor, Tensor]:
        if self._sum is None or self._count == 0:
            raise ValueError("no correctly classified pixel was seen: cannot build a memory (is the model trained "
                             "and are the labels right?)")
        mean = self._sum / self._count
        keys, values = [], []
        self.stats.empty_classes = []
        for c in range(self.num_classes):
            hard, easy = self.hard[c].feats, self.easy[c].feats
            if hard is None:
                self.stats.empty_classes.append(c)
                keys.append(mean.expand(self.k, -1))
                values.append(mean.expand(self.k, -1))
                continue
            reps = -(-self.k // hard.shape[0])
            keys.append(hard.repeat(reps, 1)[: self.k])
            values.append(easy.mean(0, keepdim=True).expand(self.k, -1))
        return torch.cat(keys).contiguous(), torch.cat(values).contiguous()


def build_memory(mar: "torch.nn.Module", batches: Iterable[tuple[Tensor, Tensor, Tensor]],
                 num_classes: Optional[int] = None) -> MemoryStats:
    """Build ``mar``'s memory from ``(feature, logits, label)`` batches and store it in ``mar``."""
    builder = MemoryBuilder(num_classes or mar.num_classes, mar.slots_per_class)
    for feature, logits, label in batches:
        builder.add(feature, logits, label)
    key, value = builder.memory()
    mar.set_memory(key, value)
    return builder.stats


__all__ = ["MemoryBuilder", "MemoryStats", "build_memory"]
