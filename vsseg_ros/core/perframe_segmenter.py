"""A :class:`Segmenter` that labels every frame on its own with a :class:`PerFrameSegNet`.

The hot path per frame: resize (to the network size) -> normalise into a reused, zero-padded input buffer ->
network -> bilinear upsampling of the logits (at the model's stride) straight to the frame's own size ->
argmax, and only if asked, max-softmax confidence and boundary probability. Both ends are the shared steps of
:mod:`vsseg_ros.core.frame_pipeline` (:mod:`~vsseg_ros.core.frame_input`, :mod:`~vsseg_ros.core.output_maps`).
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence, Union

import torch

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.frame_pipeline import MODEL_INPUT_SIZE, NetworkSegmenter
from vsseg_ros.core.models.perframe import PerFrameSegNet
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult


class PerFrameSegmenter(NetworkSegmenter):
    """Runs a :class:`PerFrameSegNet` on each frame (no temporal state, no delay).

    ``input_size``: ``(height, width)`` frames are resized to; ``"model"`` (default) takes the model
    config's; None, 0 or (0, 0) keeps each frame's own size. ``mean``/``std`` (0-1 scale) default to the
    config's. ``precision`` fp16/bf16 runs the network under autocast. ``channels_last`` (default: on the
    CPU) and ``fold_bn`` (fold BatchNorm into the convolutions) only change speed. The model is copied, so
    the caller's module is left as it was.
    """

    delay_frames = 0

    def __init__(
        self,
        model: PerFrameSegNet,
        class_map: ClassMap,
        model_id: str,
        device: Union[str, torch.device] = "cpu",
        precision: Union[str, torch.dtype] = "fp32",
        input_size: Any = MODEL_INPUT_SIZE,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        channels_last: Optional[bool] = None,
        fold_bn: bool = True,
    ) -> None:
        super().__init__(
            model,
            model.config,
            model.num_classes,
            model.stride,
            class_map,
            model_id,
            device=device,
            precision=precision,
            input_size=input_size,
            mean=mean,
            std=std,
            channels_last=channels_last,
            fold_bn=fold_bn,
        )
        self.has_boundary = bool(model.config.boundary_head)

    def push(self, frame: Frame, request: OutputRequest = OutputRequest()) -> SegmentationResult:
        result = super().push(frame, request)
        assert result is not None  # a per-frame model labels every frame
        return result

    def _push(self, frame: Frame, H: int, W: int, request: OutputRequest) -> SegmentationResult:
        t0 = time.perf_counter()
        with torch.inference_mode():
            x, h, w = self.prepare(frame.image, H, W)
            self._sync()
            t1 = time.perf_counter()
            with self._autocast():
                out = self.net(x, boundary=bool(request.boundary and self.has_boundary))
            self._sync()
            t2 = time.perf_counter()
            labels, confidence, boundary = self.output_maps(
                out["logits"], out["boundary"], *self.output_size(H, W, h, w, request), h, w, request
            )
            self._sync()
        t3 = time.perf_counter()
        return SegmentationResult(
            frame=frame,
            labels=labels,
            boundary=boundary,
            confidence=confidence,
            frames_fused=1,
            timings_ms={"preprocess": (t1 - t0) * 1e3, "network": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3},
        )

    def _push_batch(
        self, frames: list[Frame], sizes: list[tuple[int, int]], request: OutputRequest
    ) -> list[Optional[SegmentationResult]]:
        """One network call per network input size; each frame's maps from its slice of the outputs. A frame's
        preprocess and network times are its share of the batch's."""
        results: list[Optional[SegmentationResult]] = [None] * len(frames)
        with torch.inference_mode():
            for batch in self._prepare_batch(frames, sizes):
                t1 = time.perf_counter()
                with self._autocast():
                    out = self.net(batch.x, boundary=bool(request.boundary and self.has_boundary))
                self._sync()
                network_ms = (time.perf_counter() - t1) * 1e3
                n = len(batch.members)
                for k, i in enumerate(batch.members):
                    H, W = sizes[i]
                    t2 = time.perf_counter()
                    edge = out["boundary"][k : k + 1] if out["boundary"] is not None else None
                    labels, confidence, boundary = self.output_maps(
                        out["logits"][k : k + 1],
                        edge,
                        *self.output_size(H, W, batch.h, batch.w, request),
                        batch.h,
                        batch.w,
                        request,
                    )
                    self._sync()
                    results[i] = SegmentationResult(
                        frame=frames[i],
                        labels=labels,
                        boundary=boundary,
                        confidence=confidence,
                        frames_fused=1,
                        timings_ms={
                            "preprocess": batch.prepare_ms / n,
                            "network": network_ms / n,
                            "postprocess": (time.perf_counter() - t2) * 1e3,
                        },
                    )
        return results
