"""What both fake ais_bench generations share: loading a fake .om (a zip of the ONNX and atc's
arguments) and running it with ONNX Runtime, with the checks the device would make."""
from __future__ import annotations

import json
import time
import zipfile
from types import SimpleNamespace

import numpy as np
import onnxruntime


class FakeOm:
    def __init__(self, device_id: int, model_path: str):
        if not isinstance(device_id, int) or device_id < 0:
            raise RuntimeError(f"device id {device_id!r}: expected a non-negative int")
        with zipfile.ZipFile(model_path) as om:  # a non-.om file fails here, as aclmdlLoad would
            onnx_bytes = om.read("model.onnx")
            self.atc_args = json.loads(om.read("atc_args.json"))
        self._ort = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.shapes = self.atc_args["input_shapes"]
        self.exec_time_list: list[float] = []
        self.h2d: list[float] = []
        self.d2h: list[float] = []

    def inputs(self):
        return [SimpleNamespace(name=i.name, shape=self.shapes[i.name], datatype="FLOAT32",
                                size=4 * int(np.prod(self.shapes[i.name])))
                for i in self._ort.get_inputs()]

    def outputs(self):
        return [SimpleNamespace(name=o.name, shape=o.shape, datatype="FLOAT32")
                for o in self._ort.get_outputs()]

    def infer(self, feeds, mode):
        if mode != "static":
            raise RuntimeError(f"mode {mode!r}: this .om has static shapes")
        names = [i.name for i in self._ort.get_inputs()]
        if len(feeds) != len(names):
            raise RuntimeError(f"{len(feeds)} feeds for the model's {len(names)} inputs")
        start = time.perf_counter()
        for name, feed in zip(names, feeds):
            if list(feed.shape) != self.shapes[name] or feed.dtype != np.float32:
                raise RuntimeError(f"input {name}: {feed.dtype}{list(feed.shape)}, the .om was "
                                   f"compiled for float32{self.shapes[name]}")
        self.h2d.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        outputs = self._ort.run(None, dict(zip(names, feeds)))
        self.exec_time_list.append((time.perf_counter() - start) * 1000)
        self.d2h.append(0.0)
        return outputs
