"""The exported model directory: ONNX graph(s) + ``vsseg_model.json``, enough to run the model on its own.

Layout (``version`` 1)::

    DIR/vsseg_model.json   {"format": "vsseg_ros.exported", "version": 1, "model_id", "config" (ModelConfig),
                            "class_map", "stride", "precision" (fp32|fp16|int8), "input_size" [h, w] (the
                            network size; graphs take any size when "dynamic_size"), "input_layout": "NHWC",
                            "kind" (perframe|temporal), "graphs" {...}, "source" {checkpoint, sha256},
                            "eval" {...}, "calibration" {...}, "exporter" {...}}
    DIR/network.onnx       per-frame: normalised NHWC image -> logits, boundary logits
    DIR/features.onnx      temporal: image -> per-frame features (run once per frame)
    DIR/fusion_n{N}_t{T}.onnx  temporal: N window features (oldest first, frame T labelled) -> logits, boundary

Graph inputs are the frame preparer's zero-padded, normalised buffer in NHWC order (the CPU segmenters keep it
channels-last, so it goes to the engine without a copy). Every failure raises :class:`ExportedModelError`
naming the file, what is missing and the command that writes a valid directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from vsseg_ros.core.classes import ClassMap
from vsseg_ros.core.config import ConfigError, ModelConfig
from vsseg_ros.core.errors import CheckpointError

MANIFEST = "vsseg_model.json"
FORMAT = "vsseg_ros.exported"
VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
KINDS = ("perframe", "temporal")
REQUIRED_KEYS = (
    "format",
    "version",
    "model_id",
    "config",
    "class_map",
    "stride",
    "precision",
    "input_size",
    "kind",
    "graphs",
)
EXPORT_HINT = "write one with `vsseg-ros export --model CKPT --out DIR` (add --precision int8 for int8)"


class ExportedModelError(CheckpointError):
    """An exported model that cannot be used (a :class:`CheckpointError`: callers treat both alike)."""


def fusion_key(n: int, target: int) -> str:
    """The ``graphs["fusion"]`` key of the fusion graph for ``n`` window frames labelling frame ``target``."""
    return f"{n}:{target}"


@dataclass
class ExportedModel:
    """A loaded ``vsseg_model.json``; graph paths are absolute."""

    root: Path
    model_id: str
    config: ModelConfig
    class_map: ClassMap
    stride: int
    precision: str
    input_size: tuple[int, int]
    kind: str
    graphs: dict[str, Any]
    dynamic_size: bool = False
    source: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, Any] = field(default_factory=dict)

    @property
    def temporal(self) -> bool:
        return self.kind == "temporal"

    def graph(self, name: str, key: Optional[str] = None) -> Path:
        entry = self.graphs[name] if key is None else self.graphs[name][key]
        return self.root / entry

    def fusion_pairs(self) -> list[tuple[int, int]]:
        """The (window frames, target) pairs there is a fusion graph for."""
        return sorted(tuple(int(v) for v in k.split(":")) for k in self.graphs.get("fusion", {}))  # type: ignore

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id,
            "config": self.config.to_dict(),
            "class_map": self.class_map.to_dict(),
            "stride": self.stride,
            "precision": self.precision,
            "input_size": list(self.input_size),
            "input_layout": "NHWC",
            "dynamic_size": self.dynamic_size,
            "kind": self.kind,
            "graphs": self.graphs,
            "source": self.source,
            "eval": self.eval,
            "calibration": self.calibration,
            "exporter": self.exporter,
        }

    def save(self) -> Path:
        path = self.root / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def sha256_file(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_exported_path(path: Union[str, Path]) -> bool:
    """Whether ``model_path`` names an exported model (a directory or an .onnx file) rather than a checkpoint."""
    p = Path(path).expanduser()
    return p.is_dir() or p.suffix.lower() == ".onnx"


def _manifest_path(p: Path) -> Path:
    if p.is_dir():
        manifest = p / MANIFEST
        if not manifest.is_file():
            graphs = sorted(x.name for x in p.glob("*.onnx"))
            what = f"it holds {', '.join(graphs[:5])}" if graphs else "it holds no .onnx graph either"
            raise ExportedModelError(
                f"{p}: not a vsseg_ros exported model: {MANIFEST} is missing ({what}); {EXPORT_HINT}"
            )
        return manifest
    if not p.exists():
        raise ExportedModelError(f"exported model not found: {p}")
    manifest = p.parent / MANIFEST
    if not manifest.is_file():
        raise ExportedModelError(
            f"{p}: an ONNX graph without vsseg_ros metadata ({MANIFEST} is missing beside it, so the model id, "
            f"classes, normalisation, input size and stride are unknown); {EXPORT_HINT}"
        )
    return manifest


def load_exported(path: Union[str, Path]) -> ExportedModel:
    """Read and check an exported model directory (or one of its .onnx files); the graphs are not opened."""
    p = Path(path).expanduser()
    manifest = _manifest_path(p)
    try:
        d = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportedModelError(
            f"{manifest}: cannot be read as JSON ({type(e).__name__}: {e}); {EXPORT_HINT}"
        ) from None
    if not isinstance(d, dict):
        raise ExportedModelError(f"{manifest}: expected a JSON object, found {type(d).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ExportedModelError(
            f"{manifest}: missing key(s) {', '.join(missing)} (expected {', '.join(REQUIRED_KEYS)}); {EXPORT_HINT}"
        )
    if d["format"] != FORMAT:
        raise ExportedModelError(f"{manifest}: format is {d['format']!r}, expected {FORMAT!r}; {EXPORT_HINT}")
    if d["version"] != VERSION:
        raise ExportedModelError(
            f"{manifest}: version {d['version']!r} is not supported; this vsseg_ros reads version {VERSION}"
        )
    try:
        config = ModelConfig.from_dict(d["config"])
        class_map = ClassMap.from_dict(d["class_map"])
    except (ConfigError, KeyError, TypeError, ValueError) as e:
        raise ExportedModelError(f"{manifest}: invalid config or class_map ({type(e).__name__}: {e})") from None
    if d["precision"] not in PRECISIONS or d["kind"] not in KINDS:
        raise ExportedModelError(
            f"{manifest}: precision must be one of {', '.join(PRECISIONS)} and kind one of "
            f"{', '.join(KINDS)}; got {d['precision']!r}, {d['kind']!r}"
        )
    size = d["input_size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ExportedModelError(f"{manifest}: input_size must be [height, width], got {size!r}")
    stride = d["stride"]
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ExportedModelError(f"{manifest}: stride must be a positive integer, got {stride!r}")
    model = ExportedModel(
        root=manifest.parent,
        model_id=str(d["model_id"]),
        config=config,
        class_map=class_map,
        stride=stride,
        precision=d["precision"],
        input_size=(size[0], size[1]),
        kind=d["kind"],
        graphs=d["graphs"],
        dynamic_size=bool(d.get("dynamic_size", False)),
        source=d.get("source") or {},
        eval=d.get("eval") or {},
        calibration=d.get("calibration") or {},
        exporter=d.get("exporter") or {},
    )
    _check_graphs(model, manifest)
    return model


def _check_graphs(model: ExportedModel, manifest: Path) -> None:
    needed = ["network"] if model.kind == "perframe" else ["features", "fusion"]
    missing = [k for k in needed if k not in model.graphs]
    if missing:
        raise ExportedModelError(
            f"{manifest}: a {model.kind} model needs graphs {', '.join(needed)}; missing "
            f"{', '.join(missing)}; {EXPORT_HINT}"
        )
    files = [model.graph(k) for k in needed if k != "fusion"]
    if model.temporal:
        if not isinstance(model.graphs["fusion"], dict) or not model.graphs["fusion"]:
            raise ExportedModelError(f"{manifest}: graphs.fusion must map 'N:T' to fusion graph files")
        files += [model.graph("fusion", k) for k in model.graphs["fusion"]]
    absent = [str(f.name) for f in files if not f.is_file()]
    if absent:
        raise ExportedModelError(f"{manifest}: graph file(s) listed but not there: {', '.join(absent)}; {EXPORT_HINT}")


__all__ = [
    "ExportedModel",
    "ExportedModelError",
    "load_exported",
    "is_exported_path",
    "sha256_file",
    "fusion_key",
    "MANIFEST",
    "FORMAT",
    "VERSION",
    "PRECISIONS",
    "EXPORT_HINT",
]
