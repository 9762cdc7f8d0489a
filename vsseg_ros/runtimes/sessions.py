"""One ONNX graph on one engine: ONNX Runtime (CPU, CUDA or TensorRT execution provider) or OpenVINO (CPU).

A :class:`GraphSession` takes numpy inputs by name and returns the outputs in the graph's order. Threads follow
torch's thread count (the node sets it from ``worker_threads``) unless given. ONNX Runtime's thread pools are
told not to spin: by default its workers keep spinning after every run and starve any torch code in the same
process (measured here: one torch pass took 1233 instead of 76 ms next to a spinning session).

The session says which engine and provider actually run (:attr:`GraphSession.provider`); asking for a provider
that is not installed, or that ONNX Runtime could not register, raises :class:`RuntimeUnavailable` with what is
available: never a silent fall back to the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

#: ONNX Runtime execution providers by our short name
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
#: OpenVINO CPU plugin settings besides the thread count: latency mode, one stream, fp32 arithmetic for fp32
#: graphs, its worker pinned (OpenVINO's default, stated so the log and tests can say it): with pre/post-processing
#: on one torch thread, pinned and unpinned both kept up with 30 Hz in the node (docs/deployment.md)
OV_CPU_PROPERTIES = {
    "PERFORMANCE_HINT": "LATENCY",
    "NUM_STREAMS": 1,
    "INFERENCE_PRECISION_HINT": "f32",
    "ENABLE_CPU_PINNING": True,
}
#: where TensorRT engines are cached unless ``VSSEG_TRT_ENGINE_CACHE`` says otherwise (a second start reuses them)
DEFAULT_TRT_CACHE = Path.home() / ".cache" / "vsseg_ros" / "tensorrt"


class RuntimeUnavailable(ValueError):
    """A backend, engine or execution provider that is not installed or cannot run here; the message lists
    what is available."""


class GraphError(ValueError):
    """A graph file that cannot be loaded (missing, truncated, corrupt); the message names the file."""


def default_threads() -> int:
    """Torch's intra-op thread count (the node sets it from ``worker_threads``)."""
    import torch

    return max(1, int(torch.get_num_threads()))


def trt_cache_dir() -> Path:
    return Path(os.environ.get("VSSEG_TRT_ENGINE_CACHE") or DEFAULT_TRT_CACHE).expanduser()


class GraphSession:
    """Base: ``run(feeds) -> list of arrays``; ``inputs``/``outputs`` are the graph's names in order."""

    engine: str = ""
    provider: str = ""
    inputs: list[str]
    outputs: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def setting(self, name: str) -> Any:
        """A setting read back from the engine (what it actually uses)."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.engine} ({self.provider})"


def _check_graph_file(path: Path) -> None:
    if not path.is_file():
        raise GraphError(f"graph file not found: {path}")
    if path.stat().st_size < 16:
        raise GraphError(f"{path}: {path.stat().st_size} bytes is not an ONNX graph (truncated?)")


class OrtSession(GraphSession):
    """ONNX Runtime. ``provider``: cpu, cuda or tensorrt (TensorRT falls back to CUDA, then the CPU, only for
    the nodes TensorRT cannot run, as ONNX Runtime assigns them; the session still reports TensorRT).
    ``fp16``: TensorRT builds fp16 engines. Engines are cached under :func:`trt_cache_dir`."""

    engine = "onnxruntime"

    def __init__(
        self,
        path: Union[str, Path],
        provider: str = "cpu",
        threads: Optional[int] = None,
        device_id: int = 0,
        fp16: bool = False,
        dims: Optional[dict[str, int]] = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        _check_graph_file(path)
        if provider not in ORT_PROVIDERS:
            raise RuntimeUnavailable(
                f"onnxruntime execution provider {provider!r} is not known; use {', '.join(ORT_PROVIDERS)}"
            )
        wanted = ORT_PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted not in available:
            raise RuntimeUnavailable(
                f"onnxruntime {ort.__version__} here has no {wanted} (available: {', '.join(available)}); "
                + (
                    "install onnxruntime-gpu (pip install -r requirements-gpu.txt) on a machine with CUDA"
                    if provider != "cpu"
                    else ""
                )
            )
        so = ort.SessionOptions()
        n = threads or default_threads()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = os.environ.get("VSSEG_ORT_SPINNING", "0")  # "1" only where nothing else runs in the process
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        so.log_severity_level = 3
        for name, value in (dims or {}).items():  # a fixed size plans memory and kernels once (6 % faster)
            so.add_free_dimension_override_by_name(name, int(value))
        providers: list[Any] = []
        if provider == "tensorrt":
            cache = trt_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            providers.append(
                (
                    wanted,
                    {
                        "device_id": device_id,
                        "trt_fp16_enable": bool(fp16),
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache),
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": str(cache),
                    },
                )
            )
        if provider in ("tensorrt", "cuda"):
            providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
        providers.append("CPUExecutionProvider")
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for corrupt graphs
            msg = " ".join(str(e).split())[:400]
            raise GraphError(f"{path}: onnxruntime cannot load this graph (corrupt or truncated?): {msg}") from None
        got = self._sess.get_providers()
        if got[0] != wanted:
            raise RuntimeUnavailable(
                f"onnxruntime could not start {wanted} for {path.name} (it registered "
                f"{', '.join(got)}); see its log for the reason"
            )
        self.provider = f"{wanted}, {n} thread(s)" if provider == "cpu" else f"{wanted}:{device_id}"
        self.inputs = [i.name for i in self._sess.get_inputs()]
        self.outputs = [o.name for o in self._sess.get_outputs()]

    def setting(self, name: str) -> Any:
        """A session option (``intra_op_num_threads``, ...) or config entry, as the session holds it."""
        opts = self._sess.get_session_options()
        return getattr(opts, name) if hasattr(opts, name) else opts.get_session_config_entry(name)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._sess.run(None, feeds)


class OpenVinoSession(GraphSession):
    """OpenVINO on the CPU with :data:`OV_CPU_PROPERTIES` (fp32 arithmetic: OpenVINO would pick bf16 on CPUs
    that have it); an int8 (QDQ) graph runs its int8 kernels. Outputs are copied: OpenVINO reuses its output
    buffers on the next run. :meth:`setting` reads a property back from the compiled model."""

    engine = "openvino"

    def __init__(
        self,
        path: Union[str, Path],
        provider: str = "cpu",
        threads: Optional[int] = None,
        dims: Optional[dict[str, int]] = None,
    ) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeUnavailable(
                "the openvino backend needs the openvino package (pip install openvino); not installed here"
            ) from None
        path = Path(path)
        _check_graph_file(path)
        if provider != "cpu":
            raise RuntimeUnavailable(f"the openvino backend runs on the CPU only here; got device {provider!r}")
        core = ov.Core()
        n = threads or default_threads()
        try:
            model = core.read_model(str(path))
            if dims:  # our graphs' one dynamic input: image (1, height, width, 3)
                model.reshape({"image": [1, int(dims["height"]), int(dims["width"]), 3]})
            self._compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": n, **OV_CPU_PROPERTIES})
        except Exception as e:
            msg = " ".join(str(e).split())[:400]
            raise GraphError(f"{path}: openvino cannot load this graph (corrupt or truncated?): {msg}") from None
        self._request = self._compiled.create_infer_request()
        self.provider = f"CPU, {n} thread(s), {'pinned' if OV_CPU_PROPERTIES['ENABLE_CPU_PINNING'] else 'unpinned'}"
        self.inputs = [p.get_any_name() for p in self._compiled.inputs]
        self.outputs = [p.get_any_name() for p in self._compiled.outputs]

    def setting(self, name: str) -> Any:
        return self._compiled.get_property(name)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._request.infer(feeds, share_inputs=True)
        return [np.array(self._request.get_output_tensor(i).data, copy=True) for i in range(len(self.outputs))]


ENGINES = {"onnxruntime": OrtSession, "openvino": OpenVinoSession}


def open_session(
    engine: str, path: Union[str, Path], provider: str = "cpu", threads: Optional[int] = None, **options: Any
) -> GraphSession:
    """A session of ``engine`` (onnxruntime, openvino) on ``path``."""
    if engine not in ENGINES:
        raise RuntimeUnavailable(f"engine {engine!r} is not known; use {', '.join(ENGINES)}")
    return ENGINES[engine](path, provider=provider, threads=threads, **options)


__all__ = [
    "GraphSession",
    "OrtSession",
    "OpenVinoSession",
    "RuntimeUnavailable",
    "GraphError",
    "open_session",
    "ORT_PROVIDERS",
    "OV_CPU_PROPERTIES",
    "trt_cache_dir",
    "default_threads",
]
