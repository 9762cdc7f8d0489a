"""Deployment runtimes: ONNX export round trips, parity with torch on ONNX Runtime and OpenVINO (per-frame default
and the light STF+MAR temporal model, streamed), the shipped int8 default (its source hash, its val mIoU), the
backend choice and every bad input (missing metadata, corrupt graphs, backends not installed, too few calibration
frames). GPU providers skip with the reason where there is none."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vsseg_ros.core.segmenter import Frame, OutputRequest

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
HAVE_OV = importlib.util.find_spec("openvino") is not None
ENGINES = [
    pytest.param("onnxruntime", marks=pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime not installed")),
    pytest.param("openvino", marks=pytest.mark.skipif(not HAVE_OV, reason="openvino not installed")),
]
pytestmark = pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime is not installed (make setup installs it)")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The whole module on one torch thread (the engines follow it): on a busy 2-core machine a 2-thread OpenMP
    team took 0.4-2.7 s per frame of the light temporal model, one thread 35-70 ms (the parity checks do not
    depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _export_cache(tmp_path_factory, monkeypatch):
    """Checkpoints exported on the fly go to a per-run cache, not the user's home."""
    monkeypatch.setenv("VSSEG_EXPORT_CACHE", str(tmp_path_factory.getbasetemp() / "export-cache"))


@functools.lru_cache(maxsize=None)
def _street(n: int, size=(360, 480)) -> tuple[np.ndarray, ...]:
    """The first ``n`` frames of the street clip (decoded once per size; nothing writes into them)."""
    from vsseg_ros.imaging.video import default_video, read_frames

    return tuple(read_frames(default_video(), max_frames=n, size=size))


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    """The packaged default exported by the CLI's code path (fp32)."""
    from vsseg_ros.core.checkpoint import load_checkpoint
    from vsseg_ros.core.loading import default_weights_path
    from vsseg_ros.runtimes.export import export_network

    path = default_weights_path()
    if path is None:
        pytest.skip("no packaged default.pt")
    ckpt = load_checkpoint(path)
    return export_network(
        ckpt.build_model(),
        tmp_path_factory.mktemp("default_fp32"),
        ckpt.model_id,
        ckpt.class_map,
        source={"checkpoint": path.name},
    )


def _logits(seg, image):
    with torch.inference_mode():
        x, _, _ = seg.prepare(image, *image.shape[:2])
        return seg.net(x, boundary=True)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("size", [(360, 480), (200, 264)])  # the model's size, and another (dynamic graph)
def test_perframe_default_round_trip_matches_torch(default_export, engine, size):
    from vsseg_ros.core.loading import load_segmenter

    ref = load_segmenter("", device="cpu", input_size=size, backend="torch")
    seg = load_segmenter(str(default_export.root), device="cpu", input_size=size, backend=engine)
    assert seg.backend == engine and seg.model_id == ref.model_id and seg.class_map == ref.class_map
    for image in _street(2, size):
        a, b = _logits(ref, image), _logits(seg, image)
        assert float((a["logits"] - b["logits"]).abs().max()) <= 1e-4
        assert float((a["boundary"] - b["boundary"]).abs().max()) <= 1e-4
        ra, rb = ref.push(Frame(image, 0)), seg.push(Frame(image, 0))
        assert (ra.labels == rb.labels).mean() >= 0.999
        assert np.abs(ra.boundary - rb.boundary).max() <= 1e-4 and np.abs(ra.confidence - rb.confidence).max() <= 1e-4
        # without boundaries the graph without the boundary head runs: same labels
        rc = seg.push(Frame(image, 0), OutputRequest(boundary=False, confidence=False))
        assert rc.boundary is None and np.array_equal(rc.labels, rb.labels)


@pytest.mark.parametrize("engine", ENGINES)
def test_detail_head_model_exports_and_matches_torch(engine, tmp_path):
    """A model with the stride-4 detail head (its logits and boundary at stride 4, its feature at 8) exports
    and runs on each engine as torch runs it, at a size that is not the model's."""
    from vsseg_ros.core.classes import CAMVID
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.models.perframe import PerFrameSegNet
    from vsseg_ros.core.perframe_segmenter import PerFrameSegmenter
    from vsseg_ros.runtimes.export import export_network

    torch.manual_seed(0)
    net = PerFrameSegNet(ModelConfig(head_channels=32, detail_head=True)).eval()
    with torch.no_grad():
        net.detail.weight.normal_(std=0.5)  # not its zero start: the detail path must reach the graph
    exported = export_network(net, tmp_path / "detail", "detail_test", CAMVID, source={"checkpoint": "none"})
    size = (200, 264)
    ref = PerFrameSegmenter(net, CAMVID, "detail_test", input_size=size)
    seg = load_segmenter(str(exported.root), device="cpu", input_size=size, backend=engine)
    assert seg.net.stride == 4
    for image in _street(2, size):
        a, b = _logits(ref, image), _logits(seg, image)
        assert a["logits"].shape[-2:] == (56, 72)  # the padded 224x288 input at stride 4
        assert float((a["logits"] - b["logits"]).abs().max()) <= 1e-4
        assert float((a["boundary"] - b["boundary"]).abs().max()) <= 1e-4
        ra, rb = ref.push(Frame(image, 0)), seg.push(Frame(image, 0))
        assert ra.labels.shape == size and (ra.labels == rb.labels).mean() >= 0.999


@pytest.mark.parametrize("engine", ENGINES)
def test_thread_setup_engine_threads_fixed_and_host_work_on_one_torch_thread(default_export, engine):
    """The thread setup (docs/deployment.md): the engine keeps the thread count torch had when the model loaded,
    also in a session opened later (the graph without the boundary head); OpenVINO latency mode, one stream,
    pinned; ONNX Runtime does not spin; pre- and post-processing run on HOST_THREADS torch thread(s), and torch's
    count is back after."""
    from vsseg_ros.core.frame_pipeline import torch_threads
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.runtimes.exported_net import HOST_THREADS

    assert HOST_THREADS == 1
    with torch_threads(2):
        seg = load_segmenter(str(default_export.root), device="cpu", backend=engine)
        maps, seen = seg.output_maps, []
        seg.output_maps = lambda *a, **k: (seen.append(torch.get_num_threads()), maps(*a, **k))[1]
        seg.push(Frame(_street(1)[0], 0), OutputRequest(boundary=False, confidence=False))  # opens network_labels
        assert seen == [HOST_THREADS] and torch.get_num_threads() == 2
    sessions = seg.net.open_sessions()
    assert len(sessions) == 2
    for s in sessions:
        if engine == "openvino":
            assert s.setting("INFERENCE_NUM_THREADS") == 2 and s.setting("ENABLE_CPU_PINNING") is True
            assert str(s.setting("PERFORMANCE_HINT")).endswith("LATENCY") and s.setting("NUM_STREAMS") == 1
        else:
            assert s.setting("intra_op_num_threads") == 2 and s.setting("inter_op_num_threads") == 1
            assert s.setting("session.intra_op.allow_spinning") == "0"
    assert "2 thread(s)" in seg.describe() and f"on {HOST_THREADS} torch thread(s)" in seg.describe()


def _light_temporal():
    from vsseg_ros.core.config import ModelConfig
    from vsseg_ros.core.models.temporal import TemporalSegNet

    cfg = ModelConfig.from_yaml(ROOT / "config" / "models" / "mbv2_lite_stf_mar.yaml")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TemporalSegNet(cfg).eval()
        with torch.no_grad():  # random weights everywhere, STF's zero-initialised output too, and a random memory
            for p in model.stf.parameters():
                p.normal_(0.0, 0.05)
            model.mar.set_memory(torch.randn(model.mar.slots, 128), torch.randn(model.mar.slots, 128))
    return model


@pytest.fixture(scope="module")
def temporal_export(tmp_path_factory):
    from vsseg_ros.core.classes import CAMVID as CAMVID_MAP
    from vsseg_ros.runtimes.export import export_network

    model = _light_temporal()
    # 120x160: the pooled grid (6x7) does not fill STF's 4x4 blocks, so the padding masks are in the graphs
    return model, export_network(
        model, tmp_path_factory.mktemp("stf_mar"), "stf_mar_random", CAMVID_MAP, input_size=(120, 160)
    )


def _streams_like_torch(model, seg, mode: str) -> None:
    """Six frames through ``seg`` and through torch in ``mode``: the same outputs, windows and stamps."""
    from vsseg_ros.core.classes import CAMVID as CAMVID_MAP
    from vsseg_ros.core.temporal_segmenter import TemporalSegmenter

    assert seg.mode == mode
    ref = TemporalSegmenter(model, CAMVID_MAP, "x", device="cpu", input_size=(120, 160), mode=mode, return_logits=True)
    seg.return_logits = True
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    outputs = 0
    for i in range(6):
        image = np.clip(base.astype(int) + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8)
        a, b = ref.push(Frame(image, i * 33_000_000)), seg.push(Frame(image, i * 33_000_000))
        assert (a is None) == (b is None)
        if a is None:
            continue
        outputs += 1
        assert a.frames_fused == b.frames_fused and a.window_stamps == b.window_stamps
        assert float((a.logits - b.logits).abs().max()) <= 1e-4
        assert (a.labels == b.labels).mean() >= 0.999
        assert np.abs(a.boundary - b.boundary).max() <= 1e-4
    assert outputs >= 5 and seg.backbone_calls == 6  # one features pass per frame, the window reused


@pytest.mark.parametrize("engine", ENGINES)
def test_temporal_stf_mar_streams_like_torch(temporal_export, engine):
    """Both modes on the same opened graphs (opening six graphs is the slow part): causal as the loader builds it,
    centered as a second segmenter on the loader's network."""
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.core.temporal_segmenter import TemporalSegmenter, fusion_calls

    model, exported = temporal_export
    assert exported.kind == "temporal" and set(exported.fusion_pairs()) == set(fusion_calls(3))
    seg = load_segmenter(str(exported.root), device="cpu", temporal_mode="causal", backend=engine)
    _streams_like_torch(model, seg, "causal")
    _streams_like_torch(
        model,
        TemporalSegmenter(
            seg.net,
            exported.class_map,
            exported.model_id,
            device="cpu",
            input_size=exported.input_size,
            mode="centered",
        ),
        "centered",
    )


def test_shipped_int8_default_matches_default_pt_and_is_what_auto_runs():
    from vsseg_ros.core.loading import DEFAULT_EXPORT, DEFAULT_WEIGHTS, fresh_default_export, load_segmenter
    from vsseg_ros.runtimes.manifest import load_exported, sha256_file

    if not (DEFAULT_EXPORT / "vsseg_model.json").is_file():
        pytest.skip("no packaged int8 export")
    shipped = load_exported(DEFAULT_EXPORT)
    assert shipped.source["sha256"] == sha256_file(DEFAULT_WEIGHTS), (
        "vsseg_ros/weights/default_int8 was exported from another default.pt: re-run `vsseg-ros export --default`"
    )
    assert shipped.precision == "int8" and shipped.calibration["data"].startswith("camvid train")
    assert sum(f.stat().st_size for f in DEFAULT_EXPORT.glob("*.onnx")) < 8 * 2**20
    assert fresh_default_export() is not None
    seg = load_segmenter("", device="cpu", backend="auto")
    assert seg.backend in ("onnxruntime", "openvino") and "int8" in seg.describe()


@pytest.mark.skipif(not (CAMVID / "val").is_dir(), reason="CamVid is not at ../shared/data/camvid")
def test_shipped_int8_default_keeps_val_miou_within_one_point():
    """The shipped int8 graph re-measured on CamVid val: within 1.0 point of the fp32 model, as recorded."""
    from vsseg_ros.core.loading import DEFAULT_EXPORT, load_segmenter
    from vsseg_ros.data.camvid import CamVid
    from vsseg_ros.metrics.evaluate import evaluate_split
    from vsseg_ros.runtimes.manifest import load_exported

    if not (DEFAULT_EXPORT / "vsseg_model.json").is_file():
        pytest.skip("no packaged int8 export")
    shipped = load_exported(DEFAULT_EXPORT)
    result = evaluate_split(
        load_segmenter(str(DEFAULT_EXPORT), device="cpu", backend="onnxruntime"), CamVid(CAMVID, "val"), progress=False
    )
    fp32 = shipped.eval["torch_fp32_miou"]
    assert result["miou"] == pytest.approx(shipped.eval["miou"]["onnxruntime"], abs=2e-4)
    assert (fp32 - result["miou"]) * 100 <= 1.0, (fp32, result["miou"])


@pytest.mark.skipif(not (CAMVID / "train").is_dir(), reason="CamVid is not at ../shared/data/camvid")
def test_int8_quantization_calibrates_on_train_and_runs(default_export, tmp_path):
    """A small calibration (the minimum, 16 train frames) end to end: QDQ graphs on both engines, labels mostly as
    fp32. At a 120x160 network input (the graphs take any size): calibration costs a ninth of 360x480's."""
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.data.camvid import CamVid
    from vsseg_ros.runtimes.quantize import MIN_CALIB_FRAMES, excluded_nodes, quantize_model

    small = dataclasses.replace(default_export, input_size=(120, 160))
    q = quantize_model(
        small,
        tmp_path / "int8",
        CamVid(CAMVID, "train"),
        frames=MIN_CALIB_FRAMES,
        progress=False,
        calib_name="camvid train",
    )
    assert q.precision == "int8" and q.calibration["frames"] == 16 and q.calibration["reduce_range"]
    assert q.input_size == (120, 160) and set(q.graphs) == set(default_export.graphs)
    kept = excluded_nodes(default_export.graph("network"), "ends")
    assert any(n.endswith("features.0.0/Conv") for n in kept) and any("boundary_head/out" in n for n in kept)
    ref = load_segmenter(str(default_export.root), device="cpu", input_size=(120, 160), backend="onnxruntime")
    for engine in [e for e, ok in (("onnxruntime", True), ("openvino", HAVE_OV)) if ok]:
        seg = load_segmenter(str(q.root), device="cpu", backend=engine)
        for image in _street(2):
            agree = (seg.push(Frame(image, 0)).labels == ref.push(Frame(image, 0)).labels).mean()
            assert agree > 0.9, (engine, agree)


# -- bad input -------------------------------------------------------------------------------------------------


def test_directory_or_onnx_without_metadata_names_what_is_missing(default_export, tmp_path):
    from vsseg_ros.core.errors import CheckpointError
    from vsseg_ros.core.loading import load_segmenter

    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(default_export.graph("network"), bare / "model.onnx")
    for path in (bare, bare / "model.onnx"):
        with pytest.raises(CheckpointError, match=r"vsseg_model\.json.*missing.*vsseg-ros export"):
            load_segmenter(str(path), device="cpu", backend="onnxruntime")
    (bare / "vsseg_model.json").write_text(json.dumps({"format": "vsseg_ros.exported", "version": 1}))
    with pytest.raises(CheckpointError, match=r"missing key\(s\) model_id, config"):
        load_segmenter(str(bare), device="cpu", backend="auto")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_or_truncated_graph_is_refused_with_the_file_named(default_export, tmp_path, engine, damage):
    from vsseg_ros.core.loading import load_segmenter

    copy = tmp_path / "damaged"
    shutil.copytree(default_export.root, copy)
    graph = copy / "network.onnx"
    data = graph.read_bytes()
    graph.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x08\x07garbage" * 1000)
    with pytest.raises(ValueError, match=re.escape(str(graph)) + r".*(corrupt|truncated)"):
        load_segmenter(str(copy), device="cpu", backend=engine)


def test_backends_not_installed_or_unknown_are_refused_with_what_is_available(default_export):
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.runtimes.backends import available_backends, backend_status
    from vsseg_ros.runtimes.sessions import RuntimeUnavailable

    with pytest.raises(RuntimeUnavailable, match=r"not known.*available here: auto, torch"):
        load_segmenter("", device="cpu", backend="tflite")
    if backend_status()["tensorrt"] is not None:
        with pytest.raises(RuntimeUnavailable, match=r"'tensorrt' is not available here.*available: auto, torch"):
            load_segmenter("", device="cpu", backend="tensorrt")
    with pytest.raises(RuntimeUnavailable, match="exported model.*give its checkpoint"):
        load_segmenter(str(default_export.root), device="cpu", backend="torch")
    assert "torch" in available_backends() and "onnxruntime" in available_backends()


def test_session_refuses_a_provider_that_is_not_there(default_export):
    import onnxruntime as ort

    from vsseg_ros.runtimes.sessions import OrtSession, RuntimeUnavailable

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(RuntimeUnavailable, match=r"no CUDAExecutionProvider \(available: .*CPUExecutionProvider"):
        OrtSession(default_export.graph("network"), provider="cuda")


def test_fixed_size_temporal_export_refuses_another_size(temporal_export):
    from vsseg_ros.core.loading import load_segmenter

    _, exported = temporal_export
    with pytest.raises(ValueError, match=r"exported for a 120x160 network input, not 360x480.*--input-size"):
        load_segmenter(str(exported.root), device="cpu", input_size=(360, 480), backend="onnxruntime")


def test_precision_other_than_the_graphs_is_refused(default_export):
    from vsseg_ros.core.loading import load_segmenter

    with pytest.raises(ValueError, match="runs the exported fp32 graph as it is"):
        load_segmenter(str(default_export.root), device="cpu", precision="bf16", backend="onnxruntime")


def test_int8_export_with_too_few_calibration_frames_fails_before_any_work(tmp_path, capsys):
    """The CLI's own entry point, in this process (a subprocess only adds seconds of imports)."""
    from vsseg_ros.cli import main

    out = tmp_path / "never"
    assert main(["export", "--out", str(out), "--precision", "int8", "--calib-frames", "3"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"vsseg-ros export: error: .*at least 16 frames", err), err
    assert main(["export", "--out", str(out), "--precision", "int8", "--calib-split", "val"]) == 2
    err = capsys.readouterr().err
    assert "calibrate on training frames" in err, err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.device_count() == 0, reason="no CUDA device here (CUDA / TensorRT providers)")
@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt"])
def test_gpu_providers_match_torch(default_export, backend):
    from vsseg_ros.core.loading import load_segmenter
    from vsseg_ros.runtimes.backends import backend_status

    if backend_status()[backend] is not None:
        pytest.skip(backend_status()[backend])
    ref = load_segmenter("", device="cpu", backend="torch")
    seg = load_segmenter(str(default_export.root), device="cuda", backend=backend)
    image = _street(1)[0]
    agree = (ref.push(Frame(image, 0)).labels == seg.push(Frame(image, 0)).labels).mean()
    assert agree >= 0.999
