"""The model registry: ``models/<name>/__init__.py`` calls :func:`register` with its spec."""
from __future__ import annotations

import importlib
import pkgutil

from harness.spec import ModelSpec

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"model {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    import models

    for info in pkgutil.iter_modules(models.__path__):
        if info.ispkg and not info.name.startswith("_"):
            importlib.import_module(f"models.{info.name}")


def all_specs() -> list[ModelSpec]:
    _discover()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def get(name: str) -> ModelSpec:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None
