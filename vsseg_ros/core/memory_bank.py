"""Building the MAR memory from labelled data, in one streaming pass with bounded memory.

For every class, among the pixels the model classifies correctly (prediction == label, ignore label excluded):

- **keys**: the features of the ``slots_per_class`` (K_L) pixels with the LOWEST max-softmax score, in
  ascending score order (the reference's stand-in for hard / boundary features);
- **values**: the mean feature of the ``prototypes`` (K_H, default K_L) pixels with the HIGHEST score (the class
  prototype), repeated in each of the class's K_L slots. Slot ``s`` belongs to class ``s // K_L``.

Only running top-k sets are kept (per class at most K_L + K_H feature vectors, plus one running sum), never all
pixels, so a whole training set takes a few megabytes whatever its size.

Edge cases (the reference crashes on an empty class and tiles short lists before averaging; we do not):

- a class with fewer correct pixels than K_L repeats its keys cyclically (lowest score first), as the reference;
  its prototype is the plain mean of the pixels it has (the reference's tiling would weigh some twice);
- a class with no correct pixel at all gets the mean of every correctly classified feature as its keys and
  values (a neutral entry) and is listed in ``MemoryStats.empty_classes``.

The reference selects greedily while streaming (a pixel goes to the key list *or* the value list, whichever it
qualifies for first); here both sets are exact over the whole pass, so a pixel can be among both when a class
has fewer than K_L + K_H correct pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from vsseg_ros.core.classes import IGNORE_ID


@dataclass
class MemoryStats:
    """What a memory was built from: labelled pixels seen, correct pixels per class, classes with none."""

    pixels: int = 0
    correct_per_class: list[int] = field(default_factory=list)
    empty_classes: list[int] = field(default_factory=list)
    batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pixels": self.pixels,
            "correct_per_class": list(self.correct_per_class),
            "empty_classes": list(self.empty_classes),
            "batches": self.batches,
        }


class _TopK:
    """The running ``k`` smallest (or largest) scores with their feature vectors, sorted (best first)."""

    def __init__(self, k: int, largest: bool) -> None:
        self.k, self.largest = k, largest
        self.scores: Optional[Tensor] = None
        self.feats: Optional[Tensor] = None

    def add(self, scores: Tensor, feats: Tensor) -> None:
        if scores.numel() == 0:
            return
        if scores.numel() > self.k:  # cut the batch down first: the concatenation stays small
            idx = torch.topk(scores, self.k, largest=self.largest).indices
            scores, feats = scores[idx], feats[idx]
        if self.scores is not None and self.feats is not None:  # set together
            scores, feats = torch.cat([self.scores, scores]), torch.cat([self.feats, feats])
        k = min(self.k, scores.numel())
        idx = torch.topk(scores, k, largest=self.largest, sorted=True).indices
        self.scores, self.feats = scores[idx], feats[idx].clone()


class MemoryBuilder:
    """Feed ``add(feature, logits, label)`` batches; ``memory()`` gives (keys, values), each (classes * K_L, C).

    ``slots_per_class``: K_L (keys per class); ``prototypes``: K_H (pixels averaged into the prototype,
    default K_L)."""

    def __init__(
        self, num_classes: int, slots_per_class: int, ignore_id: int = IGNORE_ID, prototypes: Optional[int] = None
    ) -> None:
        if num_classes < 1 or slots_per_class < 1:
            raise ValueError(f"need at least one class and one slot, got {num_classes} and {slots_per_class}")
        self.num_classes, self.k, self.ignore_id = num_classes, slots_per_class, ignore_id
        self.prototypes = slots_per_class if prototypes is None else int(prototypes)
        if self.prototypes < 1:
            raise ValueError(f"prototypes must be >= 1, got {prototypes}")
        self.hard = [_TopK(self.k, largest=False) for _ in range(num_classes)]
        self.easy = [_TopK(self.prototypes, largest=True) for _ in range(num_classes)]
        self.stats = MemoryStats(correct_per_class=[0] * num_classes)
        self._sum: Optional[Tensor] = None
        self._count = 0

    @torch.no_grad()
    def add(self, feature: Tensor, logits: Tensor, label: Tensor) -> None:
        """``feature`` (N, C, h, w), ``logits`` (N, K, h, w) at the same size, ``label`` (N, H, W) class ids
        (nearest-resized to h x w here, as the reference resizes its ground truth to the feature grid)."""
        if feature.dim() != 4 or logits.dim() != 4 or label.dim() != 3:
            raise ValueError(
                f"expected feature (N, C, h, w), logits (N, K, h, w), label (N, H, W); got "
                f"{tuple(feature.shape)}, {tuple(logits.shape)}, {tuple(label.shape)}"
            )
        N, C, h, w = feature.shape
        if logits.shape != (N, self.num_classes, h, w):
            raise ValueError(
                f"logits must be (N={N}, {self.num_classes}, {h}, {w}) to match the feature, got {tuple(logits.shape)}"
            )
        if label.shape[0] != N:
            raise ValueError(f"label batch {label.shape[0]} != feature batch {N}")
        if label.shape[-2:] != (h, w):
            label = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")[:, 0]
        label = label.long().reshape(-1)
        conf, pred = torch.softmax(logits.float(), 1).max(1)
        conf, pred = conf.reshape(-1), pred.reshape(-1)
        valid = label != self.ignore_id
        bad = valid & ((label < 0) | (label >= self.num_classes))
        if bool(bad.any()):
            ids = sorted(set(label[bad].tolist()))[:10]
            raise ValueError(
                f"label has class id(s) {ids} outside 0..{self.num_classes - 1} (and not the ignore "
                f"id {self.ignore_id})"
            )
        self.stats.pixels += int(valid.sum())
        self.stats.batches += 1
        correct = valid & (pred == label)
        if not bool(correct.any()):
            return
        feats = feature.float().permute(0, 2, 3, 1).reshape(-1, C)[correct]
        conf, label = conf[correct], label[correct]
        s = feats.sum(0)
        self._sum = s if self._sum is None else self._sum + s
        self._count += int(label.numel())
        for c in torch.unique(label).tolist():
            sel = label == c
            self.stats.correct_per_class[c] += int(sel.sum())
            self.hard[c].add(conf[sel], feats[sel])
            self.easy[c].add(conf[sel], feats[sel])

    def memory(self) -> tuple[Tensor, Tensor]:
        """``(keys, values)``, each (num_classes * K_L, C); see the module docstring for the edge cases."""
        if self._sum is None or self._count == 0:
            raise ValueError(
                "no correctly classified pixel was seen: cannot build a memory (is the model trained, "
                "and do the labels use the model's class ids?)"
            )
        mean = self._sum / self._count
        keys, values = [], []
        self.stats.empty_classes = []
        for c in range(self.num_classes):
            hard, easy = self.hard[c].feats, self.easy[c].feats
            if hard is None or easy is None:
                self.stats.empty_classes.append(c)
                keys.append(mean.expand(self.k, -1))
                values.append(mean.expand(self.k, -1))
                continue
            reps = -(-self.k // hard.shape[0])
            keys.append(hard.repeat(reps, 1)[: self.k])
            values.append(easy.mean(0, keepdim=True).expand(self.k, -1))
        return torch.cat(keys).contiguous(), torch.cat(values).contiguous()


def build_memory(
    mar: Any,
    batches: Iterable[tuple[Tensor, Tensor, Tensor]],
    num_classes: Optional[int] = None,
    prototypes: Optional[int] = None,
) -> MemoryStats:
    """Build ``mar``'s memory from ``(feature, logits, label)`` batches and store it in ``mar``
    (:meth:`~vsseg_ros.core.models.mar.MAR.set_memory`); returns what it was built from."""
    builder = MemoryBuilder(num_classes or mar.num_classes, mar.slots_per_class, prototypes=prototypes)
    for feature, logits, label in batches:
        builder.add(feature, logits, label)
    key, value = builder.memory()
    mar.set_memory(key, value)
    return builder.stats


__all__ = ["MemoryBuilder", "MemoryStats", "build_memory"]
