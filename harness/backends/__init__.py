"""Backends by name. Adding one is a module here and a line in BACKENDS; no test changes."""
from __future__ import annotations

import importlib

from harness.backends.base import Backend, BackendUnavailable, Session  # noqa: F401

BACKENDS = {
    "onnxruntime": "harness.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "harness.backends.openvino:OpenVinoBackend",
    "ascend": "harness.backends.ascend:AscendBackend",
    "tensorrt": "harness.backends.tensorrt:TensorRtBackend",
}


def backend_class(name: str) -> type[Backend]:
    try:
        module, cls = BACKENDS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module), cls)
