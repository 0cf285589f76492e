"""One small interface for every deployed runtime.

A backend compiles the simplified ONNX for one batch size into an artifact (a file the caller
caches by content) and opens it as a :class:`Session` that maps ONNX input names to arrays.
"""
from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping

import numpy as np

from harness import environment
from harness.peak import Peak, cpu_peak

from harness.defaults import PRECISIONS

# Messages runtimes give when host or device memory runs out: ONNX Runtime ("Failed to allocate
# memory"), OpenVINO and C++ (bad_alloc), ATC/ACL/aclruntime (ACL error 207001 is
# ACL_ERROR_RT_MEMORY_ALLOCATION), CUDA and TensorRT (cudaErrorMemoryAllocation). Sessions turn
# them into MemoryError, which the harness records as an out-of-memory row (expected where the
# seed's table says so).
_OOM = re.compile(
    r"out of memory|bad_alloc|failed to allocate|memory (is )?not enough|not enough memory|insufficient memory"
    r"|(malloc|alloc\w*) (device )?memory fail|aclrtMalloc\w* fail|rtMalloc\w* fail|\b207001\b"
    r"|cudaErrorMemoryAllocation",
    re.IGNORECASE)


def looks_like_oom(message: str) -> bool:
    return bool(_OOM.search(message))


class BackendUnavailable(RuntimeError):
    """The runtime or its hardware is not here; the message says what to install or source."""


class ArtifactMismatch(RuntimeError):
    """The opened artifact's own inputs or outputs are not the ones the harness asked for (a
    compiler that ignored the batch size, a stale or foreign artifact): an error of that row."""


def io_shape_mismatches(requested: Mapping[str, Mapping[str, tuple]],
                        artifact: Mapping[str, Mapping[str, tuple]]) -> list[str]:
    """Each difference between the shapes asked for and an artifact's own (``{'inputs': {name:
    shape}, 'outputs': {...}}``, as :meth:`Session.io_shapes` gives them), one line each naming
    the tensor and both shapes. A dimension the artifact leaves dynamic (None) matches any size."""
    found = []
    for kind in ("inputs", "outputs"):
        wanted, has = requested.get(kind, {}), artifact.get(kind, {})
        for name, shape in wanted.items():
            if name not in has:
                found.append(f"{kind[:-1]} {name}: requested {tuple(shape)}, the artifact has no "
                             f"such tensor (it has {', '.join(has) or 'none'})")
            elif len(has[name]) != len(shape) or any(
                    got is not None and got != size for got, size in zip(has[name], shape)):
                found.append(f"{kind[:-1]} {name}: requested {tuple(shape)}, the artifact has "
                             f"{tuple(has[name])}")
        found += [f"{kind[:-1]} {name}: not requested, the artifact has it with shape "
                  f"{tuple(has[name])}" for name in has if name not in wanted]
    return found


class Session(ABC):
    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs by ONNX name (batch axis included) -> outputs by ONNX name."""

    def last_compute_ms(self) -> float | None:
        """Device compute time of the last run where the runtime reports it (ais_bench does)."""
        return None

    def last_transfer_ms(self) -> dict[str, float] | None:
        """{'h2d_ms', 'd2h_ms'} of the last run where the runtime exposes its copies."""
        return None

    def io_shapes(self) -> dict[str, dict[str, tuple]] | None:
        """The opened artifact's own shapes, read back from the runtime: ``{'inputs': {name:
        shape}, 'outputs': {name: shape}}``; a dimension the artifact leaves dynamic is ``None``.
        The harness compares them with what it asked to compile (a compiler that ignored the
        batch size fails the row). None only where the runtime has no way to say."""
        return None

    def close(self) -> None:
        """Release device memory; sessions are closed after each test that opens one."""


class Backend(ABC):
    """A deployed runtime. A backend owns everything particular to it: how it is built from the
    run's options (:meth:`from_options`), its default precision, what its compiled artifact
    depends on (:meth:`compile_key`), the compile options it reads from a spec, and its versions."""

    name: str = ""
    artifact_suffix: str = ""  # '' when the runtime compiles in memory from the ONNX itself
    default_precision: str = "fp32"  # what --precision means when not given
    # What this backend can do, declared as data (read by the perf stage, the report, localise):
    # True when Session.last_compute_ms() gives the device's own compute time of each run
    reports_compute_time: bool = False
    # None when harness.localise can mark the ONNX's intermediate tensors as outputs and run them
    # on this backend; else why not and what to use instead
    not_localised: str | None = None
    # True when the backend compiles with ATC's keep list (--keep-fp32 FILE, else the card's)
    reads_keep_fp32: bool = False

    def __init__(self, precision: str | None = None, device: int = 0):
        precision = precision or self.default_precision
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        self.requested_precision = precision
        self.device = device

    def require(self, module: str | None = None):
        """``module`` imported (the runtime's own package), or BackendUnavailable saying what is
        missing and how to get it."""
        ok, why = self.availability()
        if not ok:
            raise BackendUnavailable(why)
        return importlib.import_module(module) if module else None

    @classmethod
    def owns_soc(cls, soc: str) -> bool:
        """True when ``soc`` (--soc) names this backend's own device, which then selects it."""
        return False

    @classmethod
    def option_problem(cls, soc: str | None) -> str | None:
        """Why this backend cannot run with these options (e.g. a device it needs named), or None."""
        return None

    @classmethod
    def option_name(cls, soc: str | None) -> str:
        """The option that chose this backend, for messages."""
        return f"--backend {cls.name}"

    @classmethod
    def from_options(cls, config) -> "Backend":
        """This backend as the run's options (a :class:`harness.config.RunConfig`) ask for it."""
        return cls(precision=config.precision, device=config.device)

    @property
    def compiles_ahead(self) -> bool:
        """True when :meth:`compile` writes an artifact the caller caches (an .om, engine, IR)."""
        return bool(self.artifact_suffix)

    def compile_key(self, spec) -> dict:
        """Everything besides the ONNX and the shapes that determines the compiled artifact."""
        return {"precision": self.requested_precision, "versions": self.versions()}

    def environment(self, spec=None) -> dict:
        """Versions and hardware that decide this backend's figures, for the report; with ``spec``,
        also what this backend did particular to that model (the Ascend keep list)."""
        return {**self.versions(), "device": self.device}

    def machine(self) -> str | None:
        """What keeps this backend's figures apart from another machine's (a row's key): the host
        CPU for a CPU runtime; accelerator backends return None, their rows keyed by --soc."""
        return environment.machine()

    @property
    def localises(self) -> bool:
        return self.not_localised is None

    def peak(self, precision: str, cache_dir: Path | None = None) -> Peak:
        """The dense peak of the device this backend runs on, at ``precision`` (what it ran at,
        :attr:`precision`), with its source; ``Peak.gflops`` is None, and ``Peak.source`` says
        why, where no figure is documented. The default is the host CPU's
        (:func:`harness.peak.cpu_peak`, whose fp32 check measures a MatMul once per machine,
        cached under ``cache_dir``); accelerator backends override it."""
        return cpu_peak(precision, cache_dir=cache_dir)

    @classmethod
    @abstractmethod
    def availability(cls) -> tuple[bool, str]:
        """(True, '') when usable here, else (False, what is missing and how to get it)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Tool versions that determine the artifact; part of its cache key."""

    @property
    @abstractmethod
    def precision(self) -> str:
        """The precision the runtime actually computes at: 'fp32', 'fp16' or 'bf16'."""

    def compile(self, onnx_path: Path, input_shapes: Mapping[str, tuple[int, ...]],
                out_path: Path, spec) -> Path:
        """Write the artifact for these static input shapes to ``out_path`` and return it.

        The default is no ahead-of-time step: the runtime compiles the ONNX when it opens it.
        """
        return onnx_path

    @abstractmethod
    def open(self, artifact: Path, input_shapes: Mapping[str, tuple[int, ...]]) -> Session:
        """Load a compiled artifact for running."""
