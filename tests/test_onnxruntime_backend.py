"""The ONNX Runtime backend against a fake ``onnxruntime``: a CUDA session that silently fell
back to the CPU is refused, naming the fallback; intra-op threads never spin after a run."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from harness.backends.base import BackendUnavailable
from harness.backends.onnxruntime import OnnxRuntimeBackend


def fake_onnxruntime(available: list[str], running: list[str]) -> types.ModuleType:
    module = types.ModuleType("onnxruntime")
    module.__version__ = "0.0-fake"
    module.opened = []

    class SessionOptions:
        def __init__(self):
            self.entries = {}

        def add_session_config_entry(self, key, value):
            self.entries[key] = value

    class InferenceSession:
        def __init__(self, path, options, providers):
            self.options, self.requested = options, providers
            module.opened.append(self)

        def get_providers(self):
            return running

        def get_outputs(self):
            return [types.SimpleNamespace(name="y")]

    module.SessionOptions, module.InferenceSession = SessionOptions, InferenceSession
    module.get_available_providers = lambda: available
    return module


def test_a_cuda_session_running_on_the_cpu_is_refused(monkeypatch):
    ort = fake_onnxruntime(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    backend = OnnxRuntimeBackend("default", device=1)
    with pytest.raises(BackendUnavailable) as err:
        backend.open(Path("model.onnx"), {"x": (1, 3)})
    message = str(err.value)
    assert "CUDAExecutionProvider (device 1) was requested" in message
    assert "runs on CPUExecutionProvider" in message and "model.onnx" in message


def test_a_cuda_session_on_cuda_opens(monkeypatch):
    ort = fake_onnxruntime(["CUDAExecutionProvider", "CPUExecutionProvider"],
                           ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    OnnxRuntimeBackend("fp32").open(Path("model.onnx"), {"x": (1, 3)})
    (session,) = ort.opened
    assert session.requested[0] == ("CUDAExecutionProvider", {"device_id": "0", "use_tf32": "0"})


@pytest.mark.parametrize("available", [["CPUExecutionProvider"],
                                       ["CUDAExecutionProvider", "CPUExecutionProvider"]])
def test_intra_op_threads_spin_within_a_run_and_stop_when_it_returns(monkeypatch, available):
    ort = fake_onnxruntime(available, available)
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    OnnxRuntimeBackend("fp32").open(Path("model.onnx"), {"x": (1, 3)})
    entries = ort.opened[0].options.entries
    assert entries["session.intra_op.allow_spinning"] == "1" and entries["session.force_spinning_stop"] == "1"


def test_the_real_runtime_accepts_the_spinning_entry(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(path))
    import numpy as np

    session = OnnxRuntimeBackend("fp32").open(path, {"x": (1, 3)})
    out = session.run({"x": np.array([[-1.0, 0.0, 2.0]], np.float32)})
    np.testing.assert_array_equal(out["y"], [[0.0, 0.0, 2.0]])


@pytest.mark.parametrize("requested, math, gflops", [("fp32", "fp32", 67_000), ("default", "tf32", 494_500)])
def test_the_cuda_provider_declares_the_gpus_peak_for_the_math_it_ran(monkeypatch, requested, math, gflops):
    from harness.backends import onnxruntime as ort_backend

    ort = fake_onnxruntime(["CUDAExecutionProvider", "CPUExecutionProvider"], [])
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    asked = []
    monkeypatch.setattr(ort_backend, "nvidia_smi", lambda field, device=None: asked.append((field, device)) or "NVIDIA H200")
    backend = OnnxRuntimeBackend(requested, device=1)
    found = backend.peak(backend.precision)
    assert asked == [("name", 1)] and found.gflops == gflops and f"dense {math} peak" in found.source


def test_on_the_cpu_provider_the_peak_is_the_cpus(monkeypatch):
    from harness import peak

    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(["CPUExecutionProvider"], []))
    monkeypatch.setattr(peak, "_matmul_floor", lambda cache_dir: 0.0)
    assert OnnxRuntimeBackend("fp32").peak("fp32") == peak.cpu_peak("fp32")
