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
    monkeypatch.setattr(TensorRtBackend, "require", lambda self, module=None: fake)
    backend = TensorRtBackend(requested)
    assert backend.precision == expected
    assert backend._fp16_engine(fake) is (expected == "fp16")


class _FakeEngine:
    """The named-tensor surface of ``tensorrt.ICudaEngine`` (TensorRT 10 Python API reference):
    ``num_io_tensors``, ``get_tensor_name(i)``, ``get_tensor_mode(name)``,
    ``get_tensor_shape(name)`` (-1 on a dynamic axis), ``get_tensor_profile_shape(name, profile)``
    -> [min, opt, max]."""

    def __init__(self, tensors: dict, profiles: dict):
        self._tensors, self._profiles = tensors, profiles
        self.num_io_tensors = len(tensors)

    def get_tensor_name(self, index):
        return list(self._tensors)[index]

    def get_tensor_mode(self, name):
        return self._tensors[name][0]

    def get_tensor_shape(self, name):
        return self._tensors[name][1]

    def get_tensor_profile_shape(self, name, profile_index):
        assert profile_index == 0
        return self._profiles[name]


FAKE_TRT = SimpleNamespace(TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"))


@pytest.mark.parametrize("batch", [1, 2])
def test_tensorrt_reads_the_batch_its_profile_pins(batch):
    from harness.backends.tensorrt import _TensorRtSession

    engine = _FakeEngine({"clip": ("INPUT", [-1, 3, 4, 8, 8]), "features": ("OUTPUT", [-1, 4, 4, 8, 8]),
                          "mean": ("OUTPUT", [-1, 1])},
                         {"clip": [[batch, 3, 4, 8, 8]] * 3})
    session = object.__new__(_TensorRtSession)  # io_shapes reads only the engine (no GPU here)
    session._engine, session._trt = engine, FAKE_TRT
    assert session.io_shapes() == {"inputs": {"clip": (batch, 3, 4, 8, 8)},
                                   "outputs": {"features": (None, 4, 4, 8, 8), "mean": (None, 1)}}


@pytest.mark.parametrize("requested, device, math, gflops", [
    ("fp32", "NVIDIA H200", "fp32", 67_000),
    ("default", "NVIDIA H200", "fp16", 989_500),  # TensorRT 10: an fp16 engine
    ("default", "Tesla T4", "fp16", 65_000),
])
def test_tensorrt_declares_the_gpus_peak_for_the_math_it_runs(monkeypatch, requested, device, math, gflops):
    import torch

    fake = SimpleNamespace(BuilderFlag=SimpleNamespace(FP16="FP16", TF32="TF32"), __version__="10.9")
    monkeypatch.setattr(TensorRtBackend, "require", lambda self, module=None: fake)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device_id=None: device)
    backend = TensorRtBackend(requested)
    found = backend.peak(backend.precision)
    assert (found.gflops, found.precision) == (gflops, backend.precision)
    assert f"dense {math} peak" in found.source


def test_tensorrt_11_default_is_judged_as_fp16_but_peaks_as_tf32(monkeypatch):
    import torch

    fake = SimpleNamespace(BuilderFlag=SimpleNamespace(TF32="TF32"), __version__="11.0")  # no FP16 flag
    monkeypatch.setattr(TensorRtBackend, "require", lambda self, module=None: fake)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device_id=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device_id=None: (8, 0))
    backend = TensorRtBackend("default")
    found = backend.peak(backend.precision)
    assert backend.precision == "fp16" and found.gflops == 156_000 and "dense tf32 peak" in found.source


def test_each_backend_declares_what_it_can_do():
    from harness.backends import backend_class

    declared = {name: (backend_class(name).reports_compute_time, backend_class(name).not_localised is None)
                for name in ("onnxruntime", "openvino", "tensorrt", "ascend")}
    assert declared == {"onnxruntime": (False, True), "openvino": (False, True),
                        "tensorrt": (True, True), "ascend": (True, False)}
    ascend = backend_class("ascend")(precision="default", soc="Ascend310P3")
    assert "msit compare" in ascend.not_localised
    assert ascend.peak("fp16").gflops == 70_000 and ascend.peak("fp32").gflops is None
