"""What both fake ais_bench generations share: the device side of aclruntime.

A fake .om is a zip of the ONNX and atc's parsed arguments (tests/fakes/bin/atc); loading it
runs the ONNX with ONNX Runtime, with the checks the device makes. What aclruntime keeps per
process is kept per process here too, because the harness must cope with it:

* ``LOADED``: the models loaded on the device. A session leaves it when released (its
  ``free_resource()``, or its destructor when the last reference goes), or when a process-wide
  finalize destroys every device context, after which every other open session fails.
* ``H2D_TIME_LIST`` / ``D2H_TIME_LIST``: aclruntime's one ``MemorySummary`` for the process,
  milliseconds per copy, appended by every session until ``reset()``.
"""
from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass

import numpy as np
import onnxruntime

ACL_FLOAT = 0  # aclruntime's dtype enum value for float32 (TENSOR_DTYPE_FLOAT32)
ACL_FORMAT_ND = 2

LOADED: dict[int, "FakeOm"] = {}
H2D_TIME_LIST: list[float] = []
D2H_TIME_LIST: list[float] = []


@dataclass
class TensorDesc:
    """aclruntime's ``tensor_desc``: what ``get_inputs()`` / ``get_outputs()`` list."""

    name: str
    datatype: int
    format: int
    shape: list  # ints, -1 for a dimension the model leaves dynamic
    realsize: int
    size: int


class Sumary:
    """aclruntime's ``sumary`` struct, as both generations' summary call returns it."""

    def __init__(self, exec_time_list):
        self.exec_time_list = exec_time_list


def reset_transfers() -> None:
    """aclruntime's process-wide MemorySummary reset, under either generation's name."""
    H2D_TIME_LIST.clear()
    D2H_TIME_LIST.clear()


def _float32_ms(value: float) -> float:
    # aclruntime keeps times as C++ float: the Python side sees float32-rounded values
    return float(np.float32(value))


def destroy_all_contexts(reason: str) -> None:
    """A process-wide finalize: every loaded model is gone, every open session fails from now on."""
    for om in list(LOADED.values()):
        om.release(reason)


class FakeOm:
    def __init__(self, device_id: int, model_path: str, loop: int = 1):
        if not isinstance(device_id, int) or device_id < 0:
            raise RuntimeError(f"device id {device_id!r}: expected a non-negative int")
        with zipfile.ZipFile(model_path) as om:  # a non-.om file fails here, as aclmdlLoad would
            onnx_bytes = om.read("model.onnx")
            self.atc_args = json.loads(om.read("atc_args.json"))
        self._ort = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.input_shapes = self.atc_args["input_shapes"]
        self.output_shapes = self.atc_args["output_shapes"]
        self.loop = loop
        self.zero_point = time.perf_counter()  # msit's aclruntime times executes from session creation
        self.released: str | None = None
        LOADED[id(self)] = self

    def release(self, reason: str) -> None:
        if self.released is None:
            self.released = reason
            LOADED.pop(id(self), None)

    def _descs(self, shapes: dict, names: list[str]) -> list[TensorDesc]:
        return [TensorDesc(name, ACL_FLOAT, ACL_FORMAT_ND, list(shapes[name]),
                           4 * int(np.prod(shapes[name])), 4 * int(np.prod(shapes[name])))
                for name in names]

    def inputs(self) -> list[TensorDesc]:
        return self._descs(self.input_shapes, [i.name for i in self._ort.get_inputs()])

    def outputs(self) -> list[TensorDesc]:
        return self._descs(self.output_shapes, [o.name for o in self._ort.get_outputs()])

    def execute(self, feeds) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
        """Copy the feeds in, execute ``loop`` times, copy the outputs out; the outputs and each
        execute's (start, end) in milliseconds since the session was created."""
        if self.released is not None:
            raise RuntimeError(f"the model is no longer loaded: {self.released}")
        names = [i.name for i in self._ort.get_inputs()]
        if len(feeds) != len(names):
            raise RuntimeError(f"{len(feeds)} feeds for the model's {len(names)} inputs")
        start = time.perf_counter()
        for name, feed in zip(names, feeds):
            if list(feed.shape) != self.input_shapes[name] or feed.dtype != np.float32:
                raise RuntimeError(f"input {name}: {feed.dtype}{list(feed.shape)}, the .om was "
                                   f"compiled for float32{self.input_shapes[name]}")
        H2D_TIME_LIST.append(_float32_ms(1000 * (time.perf_counter() - start)))
        spans = []
        for _ in range(self.loop):
            begin = time.perf_counter()
            outputs = self._ort.run(None, dict(zip(names, feeds)))
            end = time.perf_counter()
            spans.append((_float32_ms(1000 * (begin - self.zero_point)), _float32_ms(1000 * (end - self.zero_point))))
        start = time.perf_counter()
        outputs = [np.array(o) for o in outputs]
        D2H_TIME_LIST.append(_float32_ms(1000 * (time.perf_counter() - start)))
        return outputs, spans
