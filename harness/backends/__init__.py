"""Backends by name: ``harness.backends.<name>`` defines ``BACKEND``, its class. Adding one is a
module here (``-`` in a name is ``_`` in the module's) and its name in
``harness.defaults.BACKEND_NAMES`` (which the options read before the harness is importable);
no test changes."""
from __future__ import annotations

import importlib

from harness.backends.base import Backend, BackendUnavailable, Session  # noqa: F401
from harness.defaults import BACKEND_NAMES

BACKENDS = BACKEND_NAMES
DEFAULT_BACKEND = "onnxruntime"  # the embedded default: runs on any CPU


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    # a module name cannot hold '-': ascend-preview lives in ascend_preview.py
    return importlib.import_module(f"harness.backends.{name.replace('-', '_')}").BACKEND


def soc_backends(soc: str | None) -> tuple[str, ...]:
    """The backends whose own device ``soc`` names (an Ascend chip selects ascend)."""
    return tuple(name for name in BACKENDS if backend_class(name).owns_soc(soc)) if soc else ()


def default_backends(soc: str | None) -> tuple[str, ...]:
    """What runs without --backend: the backend of --soc's device, else the embedded default."""
    return soc_backends(soc) or (DEFAULT_BACKEND,)
