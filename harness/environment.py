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


def machine() -> str:
    """What keeps CPU figures apart: the CPU model and the machine's core count. The cores a run
    may use (``taskset``, a container's CPU set) are recorded beside it, not in it: a run held to
    fewer cores is the same machine running slower, and its pin says so."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def perf_machine(runtime: str, versions: dict[str, str]) -> dict:
    """The machine a perf row ran on, as its speed depends on it: the CPU model, the cores this
    process may use, the runtime and its versions. A pin taken here binds this machine only."""
    return {"cpu": cpu_name(), "cores": usable_cores(), "runtime": runtime, "versions": dict(versions)}


def machine_id(machine: dict) -> str:
    """The machine in words, as a pin names it: 'AMD EPYC, 2 cores'."""
    return f"{machine['cpu']}, {machine['cores']} core{'s' if machine['cores'] != 1 else ''}"


def environment() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "host": platform.node(),
            "cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": usable_cores()}
    for module in ("torch", "onnx", "numpy", "onnxruntime", "onnxsim", "openvino", "cv2", "av"):
        info[module] = version(module)
    return info
