"""Validation of both stages: scoring a per-frame network frame by frame (:func:`evaluate`, a confusion
matrix, shardable over ranks) or a segmenter streamed over a split in order (:func:`stream_scores`, mIoU and
mVC), the best-so-far selection, and the figures' formatting in the log lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vsseg_ros.data.camvid import CamVid
from vsseg_ros.metrics.confusion import ConfusionMatrix
from vsseg_ros.training.stream import normalise

#: the network input is zero-padded to a multiple of this at validation, as PerFrameSegmenter does
VAL_PAD_MULTIPLE = 32


@torch.no_grad()
def evaluate(
    model: Any,
    data: CamVid,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 4,
    cache: Optional[dict[int, tuple[np.ndarray, np.ndarray]]] = None,
    rank: int = 0,
    world_size: int = 1,
) -> ConfusionMatrix:
    """Confusion matrix of a PerFrameSegNet ``model`` over ``data`` at each frame's own size, preprocessed as
    :class:`PerFrameSegmenter` does (normalise, zero-pad to a multiple of 32, upsample stride-8 logits).
    With ``world_size`` > 1 only frames ``rank, rank + world_size, ...`` are scored (sum the ranks' matrices)."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(model.num_classes)
    device = next(model.parameters()).device
    stride = model.stride  # 8 for the lite head, the output stride for PSP/FCN
    order = list(range(int(rank), len(data), int(world_size)))
    try:
        j = 0
        while j < len(order):
            pairs: list[tuple[np.ndarray, np.ndarray]] = []
            while j < len(order) and len(pairs) < batch_size:  # a batch of frames of one size
                i = order[j]
                if cache is not None and i in cache:
                    pair = cache[i]
                else:
                    pair = data.load(i)
                    if cache is not None:
                        cache[i] = pair
                if pairs and pair[0].shape != pairs[0][0].shape:
                    break
                pairs.append(pair)
                j += 1
            H, W = pairs[0][0].shape[:2]
            hp = -(-H // VAL_PAD_MULTIPLE) * VAL_PAD_MULTIPLE
            wp = -(-W // VAL_PAD_MULTIPLE) * VAL_PAD_MULTIPLE
            x = torch.zeros(len(pairs), 3, hp, wp)
            img = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float()
            x[:, :, :H, :W] = normalise(img, mean, std)
            logits = model(x.to(device), boundary=False)["logits"]
            hl, wl = -(-H // stride), -(-W // stride)
            logits = F.interpolate(logits[:, :, :hl, :wl], scale_factor=stride, mode="bilinear", align_corners=False)[
                :, :, :H, :W
            ]
            pred = logits.argmax(1).cpu().numpy().astype(np.uint8)
            for k, (_, label) in enumerate(pairs):
                cm.update(pred[k], label)
    finally:
        model.train(was_training)
    return cm


def stream_scores(segmenter: Any, data: Any, class_names: Sequence[str], dataset: str) -> dict[str, Any]:
    """mIoU, per-class IoU and mVC8/16 of ``segmenter`` streamed over ``data`` in sequence order, exactly as
    ``vsseg-ros eval`` runs it (flow consistency off for speed)."""
    from vsseg_ros.data.sources import FRAME_NUMBER_RATE_HZ, frames_of
    from vsseg_ros.metrics.evaluate import evaluate_stream
    from vsseg_ros.metrics.scorer import StreamScorer

    scorer = StreamScorer(class_names, flow_consistency=False)
    frames = frames_of(data, FRAME_NUMBER_RATE_HZ.get(dataset, 30.0))
    evaluate_stream([segmenter], frames, [scorer], warmup=0)
    return scorer.result()


@dataclass
class Best:
    """The best validation score so far (-1: none yet) and the step it was reached at."""

    score: float = -1.0
    step: int = -1

    def offer(self, score: float, step: int, eligible: bool = True) -> bool:
        """Keep ``score`` if it is eligible and beats the best so far; True when it does (save ``best.pt``)."""
        if not (eligible and score > self.score):
            return False
        self.score, self.step = score, step
        return True


def pct(v: Optional[float], signed: bool = False) -> str:
    """A share in [0, 1] as a percentage (``n/a`` for None; ``signed``: a gain, with its sign)."""
    if v is None:
        return "n/a"
    return f"{100 * v:+.2f}" if signed else f"{100 * v:.2f} %"


def diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """``a - b``, None when either is."""
    return None if a is None or b is None else a - b
