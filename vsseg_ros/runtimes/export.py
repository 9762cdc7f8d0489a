"""A checkpoint's network -> ONNX graph(s) in a self-describing directory (:mod:`.manifest`).

The graphs are traced from the same frozen, BatchNorm-folded inference copy the torch segmenters run
(:func:`~vsseg_ros.core.frame_pipeline.inference_copy`), with torch's TorchScript-based ONNX exporter: it traces
real tensors (fast: about a second for the default network, so a checkpoint can also be exported on the fly
when the node asks for an exported backend) and needs no onnxscript.

- Per-frame: ``network.onnx``, ``image`` (1, H, W, 3) NHWC -> ``logits`` (1, C, h, w) [, ``boundary``
  (1, 1, h, w)], and ``network_labels.onnx`` without the boundary head (for frames whose boundary nobody
  wants); H and W are dynamic (the engines fix them per input size when a session opens), the manifest's
  ``input_size`` is the network size it runs at by default.
- Temporal: ``features.onnx`` (run once per frame) and one fusion graph per (window frames N, labelled frame T)
  the streaming segmenter can ask for (:func:`~vsseg_ros.core.temporal_segmenter.fusion_calls`), N features ->
  logits (all rows) and boundary. STF's positional encodings are resized to the grid and MAR's memory folded in
  at export, so both go in as constants; the graphs are fixed to the export's input size.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ModelConfig
from vsseg_ros.core.frame_input import padded_size
from vsseg_ros.core.frame_pipeline import inference_copy
from vsseg_ros.runtimes.manifest import ExportedModel, ExportedModelError, fusion_key

#: ONNX opset the graphs are written with (ONNX Runtime and OpenVINO both run it)
OPSET = 17


class _NetworkGraph(nn.Module):
    """Per-frame: NHWC image -> logits (, boundary)."""

    def __init__(self, net: nn.Module, boundary: bool) -> None:
        super().__init__()
        self.net, self.boundary = net, boundary

    def forward(self, image: Tensor) -> Any:
        out = self.net(image.permute(0, 3, 1, 2), boundary=self.boundary)
        return (out["logits"], out["boundary"]) if self.boundary else out["logits"]


class _FeaturesGraph(nn.Module):
    """Temporal: NHWC image -> the per-frame feature the window keeps."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor) -> Tensor:
        return self.net.frame_features(image.permute(0, 3, 1, 2))


class _FusionGraph(nn.Module):
    """Temporal: ``n`` window features (oldest first) -> logits (, boundary) of frame ``target``."""

    def __init__(self, net: nn.Module, target: int, boundary: bool) -> None:
        super().__init__()
        self.net, self.target, self.boundary = net, target, boundary

    def forward(self, *features: Tensor) -> Any:
        out = self.net.fuse(list(features), self.target, boundary=self.boundary)
        return (out["logits"], out["boundary"]) if self.boundary else out["logits"]


def _export(
    module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic: Optional[dict] = None
) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # the legacy exporter's deprecation notice and tracer warnings about shape-dependent Python branches
        # (sizes are fixed per graph, or the branch is the same for every size: tests check other sizes)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )


def export_network(
    model: nn.Module,
    out_dir: Union[str, Path],
    model_id: str,
    class_map: ClassMap,
    input_size: Optional[tuple[int, int]] = None,
    source: Optional[dict] = None,
    progress: Any = None,
) -> ExportedModel:
    """Write ``model``'s fp32 graph(s) and manifest into ``out_dir`` (created; existing graphs are replaced).

    ``model``: a :class:`PerFrameSegNet` or :class:`TemporalSegNet` (left as it was). ``input_size``: the network
    input (height, width); None = the model config's. ``source``: what the manifest records about the origin
    (checkpoint name and sha256). ``progress``: an optional tqdm-like bar, advanced per graph.
    """
    from vsseg_ros.core.temporal_segmenter import fusion_calls

    config: ModelConfig = model.config
    size = input_size or config.input_size
    if not size:
        raise ExportedModelError(f"{model_id}: the model config has no input size; give --input-size HxW")
    temporal = config.temporal is not None
    if temporal and getattr(model, "flow2seg", None) is not None:
        raise ExportedModelError(
            f"{model_id}: models with a Flow2Seg path do not export yet (the DIS flow runs in "
            "OpenCV between the graphs); run it with backend torch"
        )
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.onnx"):
        old.unlink()
    net = inference_copy(model, torch.device("cpu"), channels_last=True, fold_bn=True)
    boundary = bool(config.boundary_head)
    hp, wp = padded_size(*size)
    image = torch.zeros(1, hp, wp, 3)
    maps = ["logits", "boundary"] if boundary else ["logits"]
    t0 = time.perf_counter()
    with torch.inference_mode():
        if not temporal:
            dyn = {"image": {1: "height", 2: "width"}, **{m: {2: "grid_h", 3: "grid_w"} for m in maps}}
            _export(_NetworkGraph(net, boundary), (image,), out / "network.onnx", ["image"], maps, dyn)
            graphs: dict[str, Any] = {"network": "network.onnx"}
            if boundary:  # without the boundary head, for frames nobody wants boundaries of (14 % faster)
                _export(
                    _NetworkGraph(net, False),
                    (image,),
                    out / "network_labels.onnx",
                    ["image"],
                    ["logits"],
                    {"image": dyn["image"], "logits": dyn["logits"]},
                )
                graphs["network_labels"] = "network_labels.onnx"
            stride = int(net.stride)
            if progress is not None:
                progress.update(1)
        else:
            _export(_FeaturesGraph(net), (image,), out / "features.onnx", ["image"], ["feature"])
            if progress is not None:
                progress.update(1)
            feature = net.frame_features(image.permute(0, 3, 1, 2))
            graphs = {"features": "features.onnx", "fusion": {}}
            for n, target in fusion_calls(net.frames):
                feats = tuple(torch.randn_like(feature) for _ in range(n))  # distinct tensors: no cache hits
                name = f"fusion_n{n}_t{target}.onnx"
                _export(
                    _FusionGraph(net, target, boundary), feats, out / name, [f"feature_{i}" for i in range(n)], maps
                )
                graphs["fusion"][fusion_key(n, target)] = name
                if progress is not None:
                    progress.update(1)
            stride = int(net.stride)
    exported = ExportedModel(
        root=out,
        model_id=model_id,
        config=config,
        class_map=class_map,
        stride=stride,
        precision="fp32",
        input_size=(int(size[0]), int(size[1])),
        kind="temporal" if temporal else "perframe",
        graphs=graphs,
        dynamic_size=not temporal,
        source=dict(source or {}),
        exporter={
            "torch": torch.__version__,
            "opset": OPSET,
            "exporter": "torch.onnx (TorchScript)",
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    exported.save()
    return exported


def graph_count(model: nn.Module) -> int:
    """How many graphs :func:`export_network` writes for ``model`` (for progress bars)."""
    from vsseg_ros.core.temporal_segmenter import fusion_calls

    if model.config.temporal is None:
        return 1
    return 1 + len(fusion_calls(model.frames))


__all__ = ["export_network", "graph_count", "OPSET"]
