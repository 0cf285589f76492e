"""OpenVINO on the CPU: the ONNX reshaped to one batch size and saved as IR, compiled on open.

The artifact is a directory holding ``model.xml`` and ``model.bin``: an IR is two files and the
xml finds its weights by its own file stem, so keeping both under one path lets a cache move the
artifact as a unit (one directory rename) without breaking that link.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from harness.backends.base import Backend, Session, looks_like_oom

IR_XML = "model.xml"

# OpenVINO element types as the harness names precisions
_PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _precision_name(element_type) -> str:
    name = element_type.get_type_name()
    try:
        return _PRECISION_NAMES[name]
    except KeyError:
        raise RuntimeError(f"OpenVINO reports inference precision {name!r}, which the harness "
                           f"has no tolerances for") from None


class _OpenVinoSession(Session):
    def __init__(self, compiled):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._inputs = [port.get_any_name() for port in compiled.inputs]
        self._outputs = [(port.get_any_name(), port) for port in compiled.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # share_outputs=False: the next run reuses the request's buffers
        try:
            result = self._request.infer({name: feeds[name] for name in self._inputs},
                                         share_outputs=False)
        except RuntimeError as error:
            if looks_like_oom(str(error)):
                raise MemoryError(f"openvino: {error}") from error
            raise
        return {name: np.asarray(result[port]) for name, port in self._outputs}

    def io_shapes(self) -> dict[str, dict[str, tuple]]:
        # the compiled model's ports as the CPU plugin will run them; a dynamic dimension is None
        def shape(port) -> tuple:
            return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())

        return {"inputs": {p.get_any_name(): shape(p) for p in self._compiled.inputs},
                "outputs": {p.get_any_name(): shape(p) for p in self._compiled.outputs}}

    def close(self) -> None:
        self._request = None
        self._compiled = None


class OpenVinoBackend(Backend):
    name = "openvino"
    artifact_suffix = ".ovir"  # a directory: model.xml + model.bin

    def __init__(self, precision: str = "fp32", device: int = 0):
        super().__init__(precision, device)
        self._compiled_precision: str | None = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "openvino is not installed: pip install openvino"
        return True, ""

    def versions(self) -> dict[str, str]:
        # the IR does not depend on the precision hint or the CPU: both apply at compile_model
        return {"openvino": self.require("openvino").__version__}

    def _config(self) -> dict[str, str]:
        # LATENCY: one stream using all cores, which is what one synchronous request per batch
        # (the harness's timing loop) can use, as `benchmark_app -hint latency -api sync` runs it
        # (benchmarks/bench_runtimes.py compares the two); THROUGHPUT would split the cores into
        # streams that only parallel requests fill.
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.requested_precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return config

    @property
    def precision(self) -> str:
        """What the compiled model runs at; before open, what the CPU plugin would choose."""
        if self._compiled_precision is not None:
            return self._compiled_precision
        if self.requested_precision == "fp32":
            return "fp32"
        core = self.require("openvino").Core()
        # on CPUs with AMX/AVX512-BF16 the plugin defaults to bf16, elsewhere to f32 (or f16 on ARM)
        return _precision_name(core.get_property("CPU", "INFERENCE_PRECISION_HINT"))

    def compile(self, onnx_path: Path, input_shapes: Mapping[str, tuple[int, ...]],
                out_path: Path, spec) -> Path:
        ov = self.require("openvino")
        model = ov.Core().read_model(str(onnx_path))
        model.reshape({name: ov.PartialShape(list(shape)) for name, shape in input_shapes.items()})
        out_path = Path(out_path)
        out_path.mkdir(parents=True, exist_ok=True)
        # compress_to_fp16 defaults to True, which would store fp16 weights and spoil fp32 runs
        ov.save_model(model, str(out_path / IR_XML), compress_to_fp16=False)
        return out_path

    def open(self, artifact: Path, input_shapes: Mapping[str, tuple[int, ...]]) -> Session:
        ov = self.require("openvino")
        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(Path(artifact) / IR_XML)), "CPU",
                                      self._config())
        self._compiled_precision = _precision_name(
            compiled.get_property("INFERENCE_PRECISION_HINT"))
        return _OpenVinoSession(compiled)


BACKEND = OpenVinoBackend  # what harness.backends.backend_class('openvino') gives
