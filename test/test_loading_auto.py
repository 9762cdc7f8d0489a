"""`backend: auto` with no model_path (the node's default): the packaged int8 export where an installed engine can
run it at the asked precision, else torch on default.pt, and the segmenter says which ran."""

from __future__ import annotations

import pytest

from vsseg_ros.core.loading import DEFAULT_EXPORT, backend_summary, fresh_default_export, load_segmenter

pytestmark = pytest.mark.skipif(
    not (DEFAULT_EXPORT / "vsseg_model.json").is_file() or fresh_default_export() is None,
    reason="no packaged int8 export matching default.pt",
)


def test_auto_runs_torch_where_no_engine_can_run_the_export(monkeypatch):
    import vsseg_ros.runtimes.backends as backends

    status = {name: "not installed (test)" for name in backends.BACKENDS if name != "torch"}
    monkeypatch.setattr(backends, "backend_status", lambda: {"torch": None, **status})
    seg = load_segmenter("", device="cpu", backend="auto")
    assert backend_summary(seg) == "torch" and seg.model_id == "mbv2_lite_camvid"


def test_auto_runs_torch_for_a_torch_precision():
    seg = load_segmenter("", device="cpu", backend="auto", precision="bf16")
    assert backend_summary(seg) == "torch"


def test_auto_runs_the_int8_export_where_an_engine_is_installed():
    from vsseg_ros.runtimes.backends import available_backends

    if not set(available_backends()) & {"onnxruntime", "openvino"}:
        pytest.skip("neither onnxruntime nor openvino is installed")
    seg = load_segmenter("", device="cpu", backend="auto")
    assert backend_summary(seg).split(":")[0] in ("onnxruntime", "openvino") and "int8" in backend_summary(seg)
