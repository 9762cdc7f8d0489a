"""Exported graphs behind the calls the torch networks answer, so the segmenters run them unchanged.

:class:`PerFrameSegmenter` calls ``net(x, boundary=...)``; :class:`TemporalSegmenter` calls
``net.frame_features(x)`` once per frame and ``net.fuse(features, target, ...)`` per output. Here ``x`` is the
frame preparer's channels-last buffer, handed to the engine as the graphs' NHWC input without a copy, and the
outputs come back as CPU tensors, so the output maps, streaming windows and timings are the same code for
every backend.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from vsseg_ros.core.frame_input import padded_size
from vsseg_ros.core.temporal_config import TemporalConfig
from vsseg_ros.runtimes.manifest import ExportedModel, fusion_key
from vsseg_ros.runtimes.sessions import GraphSession, default_threads, open_session

#: backend name -> (engine, execution provider on the CPU / on a GPU)
ENGINE_OF = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "onnxruntime"}
#: torch threads for the segmenter's pre- and post-processing (resize, normalise, upsampling, argmax) while an
#: engine runs the network: one, so no idle OpenMP team spins beside the engine's own pool (docs/deployment.md)
HOST_THREADS = 1


def _open(
    backend: str,
    path: Any,
    gpu: bool,
    threads: Optional[int],
    device_id: int,
    fp16: bool,
    dims: Optional[dict[str, int]],
) -> GraphSession:
    if backend == "tensorrt":
        return open_session(
            "onnxruntime", path, provider="tensorrt", threads=threads, device_id=device_id, fp16=fp16, dims=dims
        )
    if backend == "onnxruntime" and gpu:
        return open_session("onnxruntime", path, provider="cuda", threads=threads, device_id=device_id, dims=dims)
    return open_session(ENGINE_OF[backend], path, provider="cpu", threads=threads, dims=dims)


class ExportedNet:
    """What both exported networks share: the manifest's model description and the NHWC input hand-over."""

    def __init__(
        self,
        model: ExportedModel,
        backend: str,
        gpu: bool = False,
        threads: Optional[int] = None,
        device_id: int = 0,
        fp16: bool = False,
    ) -> None:
        self.model = model
        self.config = model.config
        self.num_classes = model.config.num_classes
        self.stride = model.stride
        #: the engine's threads, fixed now: sessions opened later (another input size, the graph without the
        #: boundary head) must not follow torch's count, which is :data:`HOST_THREADS` while a frame runs
        self.threads = threads or default_threads()
        self.host_threads = HOST_THREADS
        self._open = lambda path, dims=None: _open(backend, path, gpu, self.threads, device_id, fp16, dims)
        self._fixed = None if model.dynamic_size else padded_size(*model.input_size)
        self.sessions: list[GraphSession] = []
        self.backend = backend

    def _session(self, path: Any, dims: Optional[dict[str, int]] = None) -> GraphSession:
        s = self._open(path, dims)
        if not self.sessions:
            self.sessions.append(s)  # the first one describes them all
        return s

    @property
    def description(self) -> str:
        """Which engine and provider run which precision (logged by the node: never a silent fall back)."""
        s = self.sessions[0]
        return (
            f"{s.engine} {s.provider}, pre/post-processing on {self.host_threads} torch thread(s), exported "
            f"{self.model.precision} graph(s) from {self.model.root}"
        )

    def open_sessions(self) -> list[GraphSession]:
        """Every session open now."""
        return list(self.sessions)

    def _image(self, x: Tensor) -> np.ndarray:
        """The (1, 3, H, W) input buffer as the graphs' (1, H, W, 3) array; a view of a channels-last buffer."""
        if self._fixed is not None and tuple(x.shape[-2:]) != self._fixed:
            h, w = self.model.input_size
            raise ValueError(
                f"{self.model.root}: exported for a {h}x{w} network input (padded "
                f"{self._fixed[0]}x{self._fixed[1]}), got a padded input of {x.shape[-2]}x"
                f"{x.shape[-1]}; re-export with --input-size HxW for another size"
            )
        a = x.permute(0, 2, 3, 1)
        if not a.is_contiguous():
            a = a.contiguous()
        return a.numpy()


class ExportedPerFrameNet(ExportedNet):
    """``net(x, boundary)`` -> ``{"logits", "boundary"}`` from ``network.onnx``, or from ``network_labels.onnx``
    (no boundary head) when no boundary is asked for. The graphs take any size; a session is opened per padded
    input size with that size fixed (the engines plan for it once), the model's own size at once, so a graph
    that does not load fails at start."""

    def __init__(self, model: ExportedModel, backend: str, **options: Any) -> None:
        super().__init__(model, backend, **options)
        self._by_size: dict[tuple[int, int, bool], GraphSession] = {}
        self._net(padded_size(*model.input_size), True)

    def open_sessions(self) -> list[GraphSession]:
        return list(self._by_size.values())

    def _net(self, size: tuple[int, int], boundary: bool) -> GraphSession:
        labels_only = not boundary and "network_labels" in self.model.graphs
        key = (size[0], size[1], labels_only)
        session = self._by_size.get(key)
        if session is None:
            dims = {"height": size[0], "width": size[1]} if self.model.dynamic_size else None
            session = self._session(self.model.graph("network_labels" if labels_only else "network"), dims)
            if len(self._by_size) >= 4:  # frames of many sizes: keep the latest few
                self._by_size.pop(next(iter(self._by_size)))
            self._by_size[key] = session
        return session

    def __call__(self, x: Tensor, boundary: bool = True) -> dict[str, Optional[Tensor]]:
        out = self._net((int(x.shape[-2]), int(x.shape[-1])), boundary).run({"image": self._image(x)})
        return {
            "logits": torch.from_numpy(out[0]),
            "boundary": torch.from_numpy(out[1]) if boundary and len(out) > 1 else None,
        }


class ExportedTemporalNet(ExportedNet):
    """``frame_features(x)`` from ``features.onnx``; ``fuse(features, target)`` from the fusion graph of that
    window length and target. MAR runs inside the fusion graph (its stage is not timed on its own)."""

    flow2seg = None
    mar = None

    def __init__(self, model: ExportedModel, backend: str, **options: Any) -> None:
        super().__init__(model, backend, **options)
        self.temporal = TemporalConfig.from_dict(model.config.temporal)
        self.frames, self.mode = self.temporal.frames, self.temporal.mode
        self._features = self._session(model.graph("features"))
        self._fusion = {key: self._session(model.graph("fusion", key)) for key in model.graphs["fusion"]}

    def open_sessions(self) -> list[GraphSession]:
        return [self._features, *self._fusion.values()]

    def frame_features(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self._features.run({"image": self._image(x)})[0])

    def fuse(
        self,
        features: Sequence[Tensor],
        target: int,
        flow: Optional[Tensor] = None,
        boundary: bool = True,
        rows: Optional[int] = None,
    ) -> dict[str, Optional[Tensor]]:
        """``rows`` is ignored: the graphs compute every row (the output maps read the ones they need)."""
        key = fusion_key(len(features), target)
        session = self._fusion.get(key)
        if session is None:
            raise ValueError(
                f"{self.model.root}: no fusion graph for {len(features)} frames labelling frame "
                f"{target} (it has {', '.join(self._fusion)}); re-export the model"
            )
        out = session.run({f"feature_{i}": f.numpy() for i, f in enumerate(features)})
        return {
            "logits": torch.from_numpy(out[0]),
            "feature": None,
            "boundary": torch.from_numpy(out[1]) if boundary and len(out) > 1 else None,
        }


def exported_net(model: ExportedModel, backend: str, **options: Any) -> ExportedNet:
    cls = ExportedTemporalNet if model.temporal else ExportedPerFrameNet
    return cls(model, backend, **options)


__all__ = ["ExportedNet", "ExportedPerFrameNet", "ExportedTemporalNet", "exported_net", "ENGINE_OF", "HOST_THREADS"]
