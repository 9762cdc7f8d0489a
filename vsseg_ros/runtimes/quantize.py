"""int8 static quantization of an exported fp32 model, calibrated on training frames (never on val).

ONNX Runtime's ``quantize_static`` in QDQ format with per-channel weights. The calibration frames go through the
same :class:`FramePreparer` as at run time (resize to the network size, normalise, zero-pad, NHWC), taken evenly
over the split, a few frames per pass (onnxruntime keeps every activation of a pass in memory). The per-frame
model's two graphs (with and without the boundary head) share one calibration.

Choices (docs/deployment.md has what each gave on CamVid val):

- ``method``: ``minmax``, ``entropy``, ``percentile`` (99.999th) activation ranges;
- ``exclude``: the nodes kept in fp32: ``none``; ``ends`` (the first convolution, which sees the raw normalised
  image, and the last layer before each output: the classifier and the boundary head's output convolution);
  ``ends+resize`` (also the bilinear Resize of the head);
- ``reduce_range``: 7-bit weights. Without VNNI, x86 int8 kernels multiply u8 x s8 pairs into int16 with
  saturation (vpmaddubsw); 7-bit weights cannot saturate;
- ``weights``: ``s8`` (u8 activations x s8 weights, ONNX Runtime's fast x86 path) or ``u8`` (u8 x u8).

For a temporal model the per-frame features graph is quantized (it is the backbone: the time); the fusion graphs
stay fp32 (attention, LayerNorm and MAR's softmax over a class memory are precision-sensitive and small).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch

from vsseg_ros.core.frame_input import FramePreparer
from vsseg_ros.runtimes.manifest import ExportedModel, ExportedModelError, load_exported

#: fewer calibration frames than this give ranges that one odd frame decides
MIN_CALIB_FRAMES = 16
METHODS = ("minmax", "entropy", "percentile")
EXCLUDES = ("none", "ends", "ends+resize")
WEIGHT_TYPES = ("s8", "u8")
COMPUTE_OPS = ("Conv", "MatMul", "Gemm")


def check_options(frames: int, method: str, exclude: str, weights: str, available: Optional[int] = None) -> None:
    """ValueError before any work: too few calibration frames (or fewer in the split), an unknown option."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < MIN_CALIB_FRAMES:
        raise ValueError(f"int8 calibration needs at least {MIN_CALIB_FRAMES} frames (--calib-frames), got {frames!r}")
    if available is not None and available < frames:
        raise ValueError(f"--calib-frames {frames}: the calibration split has only {available} frames")
    for name, value, allowed in (
        ("method", method, METHODS),
        ("exclude", exclude, EXCLUDES),
        ("weights", weights, WEIGHT_TYPES),
    ):
        if value not in allowed:
            raise ValueError(f"int8 {name} {value!r} is not known; use one of {', '.join(allowed)}")


class _FrameReader:
    """onnxruntime's CalibrationDataReader protocol over prepared dataset frames (rewindable)."""

    def __init__(self, model: ExportedModel, data: Any, frames: int, progress: bool) -> None:
        cfg = model.config
        self.prepare = FramePreparer(model.input_size, cfg.mean, cfg.std, torch.device("cpu"), channels_last=True)
        self.data = data
        self.indices = np.linspace(0, len(data) - 1, frames).round().astype(int).tolist()
        self.progress = progress
        self._range = (0, len(self.indices))
        self._it: Optional[Iterator[dict[str, np.ndarray]]] = None
        self._bar: Any = None

    def __len__(self) -> int:
        return len(self.indices)

    def set_range(self, start_index: int, end_index: int) -> None:
        """onnxruntime's strided calibration: the next pass reads frames start..end only."""
        self._range = (start_index, end_index)
        self._it = None

    def _frames(self) -> Iterator[dict[str, np.ndarray]]:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(
                total=len(self.indices), desc="int8 calibration", unit="frame", leave=False, disable=not self.progress
            )
        for i in self.indices[self._range[0] : self._range[1]]:
            self._bar.update(1)
            image, _ = self.data.load(i)
            with torch.inference_mode():
                buf, _, _ = self.prepare(image, *image.shape[:2])
                yield {"image": buf.permute(0, 2, 3, 1).contiguous().numpy().copy()}

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        if self._it is None:
            self._it = self._frames()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None
        self._range = (0, len(self.indices))
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _stride(frames: int) -> int:
    """Frames per calibration pass: onnxruntime keeps every activation of a pass in memory (and, for MinMax with
    CalibMaxIntermediateOutputs, drops them without merging), so ranges are merged every few frames instead;
    it must divide the frame count."""
    return max(d for d in range(1, 9) if frames % d == 0)


def excluded_nodes(path: Path, exclude: str) -> list[str]:
    """Names of the nodes of graph ``path`` kept in fp32 for ``exclude`` (see the module doc)."""
    import onnx

    if exclude == "none":
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    names: list[str] = []
    first = next((n for n in graph.node if n.op_type in COMPUTE_OPS), None)
    if first is not None:
        names.append(first.name)
    for out in graph.output:  # walk back from each output to its last Conv/MatMul, keeping what lies between
        node = producer.get(out.name)
        while node is not None:
            names.append(node.name)
            if node.op_type in COMPUTE_OPS:
                break
            node = next((producer[i] for i in node.input if i in producer), None)
    if exclude == "ends+resize":
        names += [n.name for n in graph.node if n.op_type == "Resize"]
    return sorted(set(names))


def _quantize_graph(
    src: Path,
    dst: Path,
    reader: Optional[_FrameReader],
    cache: Path,
    method: str,
    exclude: str,
    reduce_range: bool,
    weights: str,
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="vsseg-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # folds and names what quantization needs
        extra: dict[str, Any] = {"CalibStridedMinMax": _stride(len(reader))} if reader is not None else {}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        quantize_static(
            str(pre),
            str(dst),
            calibration_data_reader=reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8 if weights == "s8" else QuantType.QUInt8,
            nodes_to_exclude=excluded_nodes(pre, exclude),
            calibrate_method=methods[method],
            extra_options=extra,
            calibration_cache_path=str(cache),
        )


def quantize_model(
    fp32: Union[ExportedModel, str, Path],
    out_dir: Union[str, Path],
    data: Any,
    frames: int = 100,
    method: str = "minmax",
    exclude: str = "ends",
    reduce_range: bool = True,
    weights: str = "s8",
    calib_name: str = "",
    progress: bool = True,
) -> ExportedModel:
    """The int8 version of exported fp32 model ``fp32`` in ``out_dir``, calibrated on ``frames`` frames of
    ``data`` (a :class:`LabelledDataset`, a training split). ``calib_name`` is recorded (e.g. "camvid train")."""
    model = fp32 if isinstance(fp32, ExportedModel) else load_exported(fp32)
    if model.precision != "fp32":
        raise ExportedModelError(f"{model.root}: int8 quantization starts from an fp32 export, not {model.precision}")
    check_options(frames, method, exclude, weights, available=len(data))
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.onnx"):
        old.unlink()
    for old in out.glob("calibration_*.json"):
        old.unlink()
    reader = _FrameReader(model, data, frames, progress)
    quantized = ["network", "network_labels"] if not model.temporal else ["features"]
    graphs = json.loads(json.dumps(model.graphs))
    with tempfile.TemporaryDirectory(prefix="vsseg-calib-") as tmp:
        cache = Path(tmp) / f"calibration_{method}.json"  # one calibration for both per-frame graphs
        for name in quantized:
            if name not in model.graphs:
                continue
            reader.rewind()
            _quantize_graph(
                model.graph(name), out / model.graphs[name], reader, cache, method, exclude, reduce_range, weights
            )
    if model.temporal:  # fusion graphs stay fp32 (see the module doc)
        for name in model.graphs["fusion"].values():
            shutil.copyfile(model.root / name, out / name)
    result = ExportedModel(
        root=out,
        model_id=model.model_id,
        config=model.config,
        class_map=model.class_map,
        stride=model.stride,
        precision="int8",
        input_size=model.input_size,
        kind=model.kind,
        graphs=graphs,
        dynamic_size=model.dynamic_size,
        source=dict(model.source),
        calibration={
            "data": calib_name or repr(data),
            "frames": frames,
            "method": method,
            "exclude": exclude,
            "reduce_range": reduce_range,
            "activations": "u8",
            "weights": weights,
            "per_channel": True,
            "format": "QDQ",
            "quantized_graphs": [g for g in quantized if g in model.graphs],
        },
        exporter=dict(model.exporter),
    )
    result.save()
    return result


__all__ = [
    "quantize_model",
    "check_options",
    "excluded_nodes",
    "MIN_CALIB_FRAMES",
    "METHODS",
    "EXCLUDES",
    "WEIGHT_TYPES",
]
