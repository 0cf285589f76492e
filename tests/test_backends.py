"""Deployed-runtime backends: OpenVINO against ONNX Runtime on a tiny model, ATC's precision
flags, and what Ascend and TensorRT say when they cannot run here (the registered cards' ATC
commands against the seeds' are in test_model_cards.py)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import TINY_INPUTS, tiny_feeds
from harness.backends.base import BackendUnavailable
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.openvino import IR_XML, OpenVinoBackend
from harness.backends.tensorrt import TensorRtBackend

TINY_PARAMETERS = 4 * 3 * 3 * 3 * 3 + 4  # Conv3d(3, 4, 3) weight + bias


def _shapes(batch_size: int) -> dict[str, tuple[int, ...]]:
    return {name: (batch_size, *shape) for name, shape in TINY_INPUTS.items()}


def _reference(onnx_path: Path, feeds) -> np.ndarray:
    session = OnnxRuntimeBackend("fp32").open(onnx_path, {})
    return session.run(feeds)["features"]


def _run_openvino(backend, onnx_path, artifact, batch_size):
    compiled = backend.compile(onnx_path, _shapes(batch_size), artifact, spec=None)
    session = backend.open(compiled, _shapes(batch_size))
    try:
        return compiled, session.run(tiny_feeds(batch_size))
    finally:
        session.close()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_openvino_fp32_matches_onnxruntime_per_batch_size(tiny_onnx, tmp_path, batch_size):
    ov = pytest.importorskip("openvino")
    backend = OpenVinoBackend("fp32")
    artifact = tmp_path / f"tiny_bs{batch_size}{backend.artifact_suffix}"
    compiled, outputs = _run_openvino(backend, tiny_onnx, artifact, batch_size)

    assert compiled == artifact and sorted(p.name for p in artifact.iterdir()) == [
        "model.bin", "model.xml"]
    # weights stay fp32 in the IR (save_model would compress them to fp16 by default)
    assert (artifact / "model.bin").stat().st_size >= 4 * TINY_PARAMETERS
    model = ov.Core().read_model(str(artifact / IR_XML))
    assert {p.get_any_name(): tuple(p.get_shape()) for p in model.inputs} == _shapes(batch_size)

    expected = _reference(tiny_onnx, tiny_feeds(batch_size))
    assert outputs["features"].shape == expected.shape == (batch_size, 4, 4, 8, 8)
    np.testing.assert_allclose(outputs["features"], expected, rtol=1e-5, atol=1e-5)
    assert backend.precision == "fp32"


def test_openvino_default_precision_is_what_the_cpu_runs(tiny_onnx, tmp_path):
    ov = pytest.importorskip("openvino")
    backend = OpenVinoBackend("default")
    plugin_default = backend.precision  # before open: what the CPU plugin would choose
    _, outputs = _run_openvino(backend, tiny_onnx, tmp_path / "tiny.ovir", 2)
    assert backend.precision == plugin_default
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if backend.precision == "bf16":
        assert "BF16" in capabilities

    expected = _reference(tiny_onnx, tiny_feeds(2))
    error = np.abs(outputs["features"] - expected).max() / np.abs(expected).max()
    if backend.precision == "fp32":
        assert error < 1e-5
    else:  # a reduced precision really is in use, and only that much
        assert 1e-5 < error < 3e-2


def test_tensorrt_availability_says_what_is_missing():
    ok, why = TensorRtBackend.availability()
    if ok:
        pytest.skip("TensorRT and a CUDA GPU are here")
    assert why and ("tensorrt" in why or "CUDA" in why)
    with pytest.raises(BackendUnavailable):
        TensorRtBackend("fp32").compile(Path("m.onnx"), {}, Path("m.engine"), spec=None)


@pytest.mark.parametrize("flags, requested, expected", [
    (("FP16", "TF32"), "default", "fp16"),  # TensorRT 10: an fp16 engine
    (("FP16", "TF32"), "fp32", "fp32"),
])
def test_tensorrt_default_precision_builds_fp16_engines(monkeypatch, flags, requested, expected):
    fake = SimpleNamespace(BuilderFlag=SimpleNamespace(**{f: f for f in flags}), __version__="10.9")
    monkeypatch.setattr(TensorRtBackend, "_require", lambda self: fake)
    backend = TensorRtBackend(requested)
    assert backend.precision == expected
    assert backend._fp16_engine(fake) is (expected == "fp16")
