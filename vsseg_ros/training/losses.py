"""The training losses of both stages: per-class weights from pixel counts, pixel cross-entropy on upsampled
logits (optionally over the hardest pixels only), the Lovasz-softmax surrogate of the IoU, the per-frame stage's
boundary term, and the averaging of the logged loss terms over data-parallel ranks."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vsseg_ros.core.classes import IGNORE_ID


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Per-class loss weights from pixel counts: ``median_freq`` = median(f) / f_c, ``sqrt_median_freq`` its
    square root, ``none`` = ones. Classes absent from the data get the largest weight."""
    c = counts.astype(np.float64)
    if mode == "none" or c.sum() == 0:
        return np.ones(len(c), np.float32)
    freq = c / c.sum()
    present = freq > 0
    med = np.median(freq[present])
    w = np.ones(len(c))
    w[present] = med / freq[present]
    if mode == "sqrt_median_freq":
        w[present] = np.sqrt(w[present])
    w[~present] = w[present].max() if present.any() else 1.0
    return w.astype(np.float32)


def ohem_cross_entropy(logits: Tensor, label: Tensor, weight: Optional[Tensor], keep: float) -> Tensor:
    """Weighted cross-entropy over the ``keep`` share of the labelled pixels with the highest loss (at least
    one), normalised by their class weights as ``F.cross_entropy`` normalises a full batch."""
    per_pixel = F.cross_entropy(logits, label, weight=weight, ignore_index=IGNORE_ID, reduction="none").flatten()
    valid = (label != IGNORE_ID).flatten()
    n = int(valid.sum())
    if n == 0:
        return logits.sum() * 0.0
    k = max(1, int(round(keep * n)))
    losses = per_pixel[valid]
    idx = torch.topk(losses, k, sorted=False).indices
    if weight is None:
        return losses[idx].mean()
    w = weight[label.flatten()[valid][idx]]
    return losses[idx].sum() / w.sum().clamp_min(1e-12)


def pixel_cross_entropy(
    logits: Tensor, label: Tensor, weight: Optional[Tensor], ohem_keep: Optional[float] = None
) -> Tensor:
    """Cross-entropy (ignore 255) of stride-s ``logits`` upsampled bilinearly to the label's size, over the
    ``ohem_keep`` share of the hardest pixels when set below 1. A batch of only ignored
    pixels gives a zero that keeps the graph (data-parallel gradient sync expects every step alike)."""
    up = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
    if ohem_keep is not None and float(ohem_keep) < 1.0:
        ce = ohem_cross_entropy(up, label, weight, float(ohem_keep))
    else:
        ce = F.cross_entropy(up, label, weight=weight, ignore_index=IGNORE_ID)
    if not torch.isfinite(ce):
        ce = up.sum() * 0.0
    return ce


def lovasz_softmax(probs: Tensor, label: Tensor) -> Tensor:
    """The Lovasz-softmax loss (Berman et al., CVPR 2018) of class probabilities ``probs`` (N, C, H, W) against
    ``label`` (N, H, W, ignore 255), over the whole batch: per class present in the labels, the Lovasz extension of
    the Jaccard loss evaluated at the pixels' errors |[label = c] - p_c|, averaged over those classes.

    It optimises each class's IoU directly, so a thin class's few pixels count as much as a large class's many
    (cross-entropy lets a pole's pixels be outvoted by the building around it). On 0/1 probabilities it equals
    the mean of 1 - IoU over the present classes exactly."""
    c = probs.shape[1]
    flat = probs.permute(0, 2, 3, 1).reshape(-1, c)
    lab = label.reshape(-1)
    valid = lab != IGNORE_ID
    flat, lab = flat[valid], lab[valid]
    if lab.numel() == 0:
        return probs.sum() * 0.0
    losses = []
    for k in torch.unique(lab).tolist():
        fg = (lab == k).to(flat.dtype)
        errors = (fg - flat[:, k]).abs()
        errors, order = torch.sort(errors, descending=True)
        fg_sorted = fg[order]
        # the Jaccard loss of the prefixes of the sorted pixels; its increments weight the sorted errors
        total = fg_sorted.sum()
        intersection = total - fg_sorted.cumsum(0)
        union = total + (1.0 - fg_sorted).cumsum(0)
        jaccard = 1.0 - intersection / union
        grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        losses.append(torch.dot(errors, grad))
    return torch.stack(losses).mean()


def segmentation_loss(
    out: dict[str, Optional[Tensor]],
    label: Tensor,
    boundary: Optional[Tensor],
    weight: Optional[Tensor],
    train: dict[str, Any],
) -> tuple[Tensor, dict[str, float]]:
    """The per-frame stage's loss: :func:`pixel_cross_entropy` plus ``boundary_loss_weight`` x binary
    cross-entropy on the boundary head (positives up-weighted by neg/pos of the batch, capped at
    ``boundary_pos_weight_max``), plus ``lovasz_weight`` x :func:`lovasz_softmax` where that is set; and its
    terms as floats (``ce``, ``lovasz`` and ``boundary`` where there were, ``loss``)."""
    logits = out["logits"]
    assert logits is not None
    ce = pixel_cross_entropy(logits, label, weight, train.get("ohem_keep"))
    total = ce
    parts = {"ce": float(ce.detach())}
    lw = float(train.get("lovasz_weight") or 0.0)
    if lw > 0:
        # at half the crop's resolution: one sort per class of every pixel is the cost (0.85 s a batch of eight
        # 256x320 crops on 2 cores, 0.2 s at half), and a pole 4 px wide is still 2 px there
        half = label[:, ::2, ::2]
        up = F.interpolate(logits, size=half.shape[-2:], mode="bilinear", align_corners=False)
        lov = lovasz_softmax(up.float().softmax(1), half)
        total = total + lw * lov
        parts["lovasz"] = float(lov.detach())
    bw = float(train["boundary_loss_weight"] or 0.0)
    edge_logits = out.get("boundary")
    if bw > 0 and boundary is not None and edge_logits is not None:
        edge = F.interpolate(edge_logits, size=label.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        valid = boundary != IGNORE_ID
        if bool(valid.any()):
            target = (boundary[valid] == 1).float()
            pos = float(target.sum())
            neg = float(target.numel()) - pos
            pw = min(max(neg / max(pos, 1.0), 1.0), float(train["boundary_pos_weight_max"]))
            bce = F.binary_cross_entropy_with_logits(
                edge[valid], target, pos_weight=torch.tensor(pw, dtype=edge.dtype, device=edge.device)
            )
            total = total + bw * bce
            parts["boundary"] = float(bce.detach())
        else:  # keep the boundary head in the graph (data-parallel gradient sync expects every step alike)
            total = total + edge.sum() * 0.0
    parts["loss"] = float(total.detach())
    return total, parts


def mean_loss_parts(parts: dict[str, float], ctx: Any) -> dict[str, float]:
    """The loss terms averaged over the ranks (``boundary`` over the ranks that had boundary pixels)."""
    if not ctx.enabled:
        return parts
    has_b = "boundary" in parts
    total = ctx.all_reduce(
        [parts["ce"], parts.get("boundary", 0.0), float(has_b), parts["loss"], parts.get("lovasz", 0.0)]
    )
    out = {"ce": float(total[0] / ctx.world_size)}
    if "lovasz" in parts:  # every rank has it or none (one recipe)
        out["lovasz"] = float(total[4] / ctx.world_size)
    if total[2] > 0:
        out["boundary"] = float(total[1] / total[2])
    out["loss"] = float(total[3] / ctx.world_size)
    return out
