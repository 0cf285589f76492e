"""The environment a figure was produced in: versions of what decides it, the CPU, the host.

Backends add their own (CANN, driver, TensorRT, GPU) through ``Backend.environment()``.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path


def version(module: str) -> str:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return "absent"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "cpu": cpu_name(), "cores": os.cpu_count()}
    for module in ("torch", "onnx", "numpy", "onnxruntime", "onnxsim", "openvino", "cv2", "av"):
        info[module] = version(module)
    return info
