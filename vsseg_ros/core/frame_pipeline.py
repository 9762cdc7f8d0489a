"""The steps every network-backed :class:`Segmenter` shares: the frame in, the maps out.

In: check the frame, resize it to the network size, normalise it into a reused zero-padded input buffer
(:class:`FramePreparer`). Out: bilinear upsampling of the low-resolution logits straight to the frame's own
size, argmax labels and, only if asked, max-softmax confidence and boundary probability (:class:`OutputMaps`).
:class:`NetworkSegmenter` holds what the per-frame and the temporal segmenter have in common (device,
precision, the inference copy of the model, the lock); they differ only in what runs between the two ends.

The two ends are :mod:`vsseg_ros.core.frame_input` and :mod:`vsseg_ros.core.output_maps`. Large intermediate
buffers are kept between frames of the same size; the arrays handed out are always fresh.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import parse_input_size
from vsseg_ros.core.device import PRECISION_NAMES, resolve_device, resolve_precision
from vsseg_ros.core.frame_input import FramePreparer, check_image, padded_size
from vsseg_ros.core.models.cache_keys import freeze_weights
from vsseg_ros.core.models.perframe import fold_batchnorm
from vsseg_ros.core.output_maps import OutputMaps
from vsseg_ros.core.segmenter import Frame, OutputRequest, SegmentationResult, Segmenter

#: ``input_size`` value meaning "the size in the model's config"
MODEL_INPUT_SIZE = "model"


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Any:
    """Torch's intra-op thread count set to ``n`` for the block (None: as it is), restored after."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def inference_copy(model: nn.Module, device: torch.device, channels_last: bool, fold_bn: bool) -> nn.Module:
    """A frozen eval-mode copy of ``model`` on ``device`` (the caller's module is left as it was)."""
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(net)
    net = net.to(device)
    if channels_last:  # the convolutional part only (attention modules hold 5-d positional encodings)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
                # Module.to takes memory_format (torch's docs); its typed overloads leave it out
                m.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    freeze_weights(net)  # nothing changes this copy's weights: caches need not check them every frame
    return net


@dataclass
class _Batch:
    """Frames of one network input size, prepared as one tensor: their indices, the input, the region size and
    the preprocessing time of the whole group."""

    members: list[int]
    x: Tensor
    h: int
    w: int
    prepare_ms: float


class NetworkSegmenter(Segmenter):
    """What the network segmenters share: argument checks, device and precision, the inference copy of the
    model (``self.net``: a torch module, or an exported network on ONNX Runtime / OpenVINO that answers the
    same calls), the frame preparer and output maps, and a lock so one frame runs at a time.

    ``input_size``: ``(height, width)`` frames are resized to; ``"model"`` (default) takes the model
    config's; None, 0 or (0, 0) keeps each frame's own size. ``mean``/``std`` (0-1 scale) default to the
    config's. ``precision`` fp16/bf16 runs the network under autocast. ``channels_last`` (default: on the
    CPU) and ``fold_bn`` (fold BatchNorm into the convolutions) only change speed. Subclasses implement
    :meth:`_push` (called under the lock with a checked frame).
    """

    def __init__(
        self,
        model: nn.Module,
        config: Any,
        num_classes: int,
        stride: int,
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
        if class_map.num_classes != num_classes:
            raise ValueError(f"class map has {class_map.num_classes} classes but the model predicts {num_classes}")
        self.class_map = class_map
        self.model_id = model_id
        self._device = resolve_device(device)
        self._dtype = resolve_precision(precision, self._device)
        self.input_size: Optional[tuple[int, int]] = (
            config.input_size
            if isinstance(input_size, str) and input_size == MODEL_INPUT_SIZE
            else parse_input_size(input_size)
        )
        self.mean = tuple(float(v) for v in (config.mean if mean is None else mean))
        self.std = tuple(float(v) for v in (config.std if std is None else std))
        if len(self.mean) != 3 or len(self.std) != 3 or any(not s > 0 for s in self.std):
            raise ValueError(
                f"mean and std need 3 values each (R, G, B) and std > 0; got mean={self.mean}, std={self.std}"
            )
        self.channels_last = (self._device.type == "cpu") if channels_last is None else bool(channels_last)
        self.num_classes = num_classes
        # an exported network (vsseg_ros.runtimes.exported_net) runs as it is, on its own engine; pre- and
        # post-processing stay here, so every backend shares them
        self.net = (
            inference_copy(model, self._device, self.channels_last, fold_bn) if isinstance(model, nn.Module) else model
        )
        #: what runs the network: "torch", or the exported engine and its provider
        self.backend: str = getattr(self.net, "backend", "torch")
        #: torch threads for pre- and post-processing while an engine runs the network (None: torch's own)
        self.host_threads: Optional[int] = getattr(self.net, "host_threads", None)
        self.prepare = FramePreparer(self.input_size, self.mean, self.std, self._device, self.channels_last)
        self.output_maps = OutputMaps(num_classes, int(stride), self._device)
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def precision(self) -> str:
        return PRECISION_NAMES[self._dtype]

    def network_size(self, H: int, W: int) -> tuple[int, int]:
        """The (height, width) a frame of size HxW is resized to before padding."""
        return self.prepare.network_size(H, W)

    def push(self, frame: Frame, request: OutputRequest = OutputRequest()) -> Optional[SegmentationResult]:
        H, W = check_image(frame.image)
        with self._lock, torch_threads(self.host_threads):
            return self._push(frame, H, W, request)

    @abc.abstractmethod
    def _push(self, frame: Frame, H: int, W: int, request: OutputRequest) -> Optional[SegmentationResult]:
        """Segment a checked frame (the lock is held)."""

    @property
    def batches(self) -> bool:
        """Whether the network takes several frames in one call: torch modules do; exported graphs are exported
        with a batch of 1, so their frames go one at a time (an engine that batches sets ``net.batches``)."""
        return isinstance(self.net, nn.Module) or bool(getattr(self.net, "batches", False))

    def push_batch(
        self, frames: Sequence[Frame], request: OutputRequest = OutputRequest()
    ) -> list[Optional[SegmentationResult]]:
        sizes = [check_image(frame.image) for frame in frames]  # every frame checked before any runs
        with self._lock, torch_threads(self.host_threads):
            if len(frames) < 2 or not self.batches:
                return [self._push(frame, H, W, request) for frame, (H, W) in zip(frames, sizes)]
            return self._push_batch(list(frames), sizes, request)

    def _push_batch(
        self, frames: list[Frame], sizes: list[tuple[int, int]], request: OutputRequest
    ) -> list[Optional[SegmentationResult]]:
        """Segment checked frames as batches (the lock is held); one-at-a-time unless a subclass batches."""
        return [self._push(frame, H, W, request) for frame, (H, W) in zip(frames, sizes)]

    def _prepare_batch(self, frames: Sequence[Frame], sizes: Sequence[tuple[int, int]]) -> list[_Batch]:
        """The frames grouped by network input size, each group normalised into one ``(n, 3, hp, wp)`` tensor
        (the preparer's buffer is reused per frame, so each is copied out), with the time it took."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (H, W) in enumerate(sizes):
            groups.setdefault(self.network_size(H, W), []).append(i)
        batches = []
        for (h, w), members in groups.items():
            t0 = time.perf_counter()
            x = torch.empty(len(members), 3, *padded_size(h, w), device=self._device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for k, i in enumerate(members):
                one, _, _ = self.prepare(frames[i].image, *sizes[i])
                x[k].copy_(one[0])
            self._sync()
            batches.append(_Batch(members, x, h, w, (time.perf_counter() - t0) * 1e3))
        return batches

    @staticmethod
    def output_size(H: int, W: int, h: int, w: int, request: OutputRequest) -> tuple[int, int]:
        """The size of the output maps: the frame's, or the network input region's (``resolution`` network)."""
        return (h, w) if request.resolution == "network" else (H, W)

    def _sync(self) -> None:
        """Wait for queued GPU work, so stage timings are real."""
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def _autocast(self) -> Any:
        if self._dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self._device.type, dtype=self._dtype)

    def describe(self) -> str:
        size = "native" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"
        runs = (
            f"on {self.device} ({self.precision})"
            if self.backend == "torch"
            else f"on {getattr(self.net, 'description', self.backend)}"
        )
        return f"{self.model_id} {runs}, input {size}, {self.num_classes} classes"


__all__ = ["MODEL_INPUT_SIZE", "NetworkSegmenter", "inference_copy", "torch_threads"]
