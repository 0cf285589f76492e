"""Fixtures that put a fake Ascend toolkit in place: ``atc`` and ``npu-smi`` on PATH, and one of
the two ais_bench generations importable, in this process and in any subprocess it starts
(``pytest --soc Ascend310P3`` in a sandbox), through monkeypatch.setenv."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

FAKES = Path(__file__).resolve().parent
GENERATIONS = ("tools", "msit")  # Ascend/tools' ais_bench (sumary/finalize), msit's (summary/free_resource)


def _install(monkeypatch, generation: str, atc_ignores_batch: bool = False) -> SimpleNamespace:
    site = FAKES / f"ais_bench_{generation}"
    # the fake atc is a Python script: this interpreter's bin first, so it finds onnx
    bins = [FAKES / "bin_ignoring_batch"] if atc_ignores_batch else []
    path = os.pathsep.join([*map(str, bins), str(FAKES / "bin"), str(Path(sys.executable).parent),
                            os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    pythonpath = os.pathsep.join(p for p in (str(site), str(FAKES), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.syspath_prepend(str(site))
    _forget_fakes()
    importlib.invalidate_caches()
    return SimpleNamespace(generation=generation, site=site, bin=FAKES / "bin")


def _forget_fakes() -> None:
    """Drop the fake packages from sys.modules, so that no later test imports them by accident."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("ais_bench", "aclruntime", "fake_om")]:
        del sys.modules[name]


@pytest.fixture
def _fakes_forgotten():
    yield
    _forget_fakes()


@pytest.fixture(params=GENERATIONS)
def fake_ascend_toolkit(request, monkeypatch, _fakes_forgotten) -> SimpleNamespace:
    """The fake toolkit, once per ais_bench generation."""
    return _install(monkeypatch, request.param)


@pytest.fixture
def fake_ascend_toolkit_tools(monkeypatch, _fakes_forgotten) -> SimpleNamespace:
    """The fake toolkit with the Ascend/tools ais_bench the seeds link (sumary(), finalize())."""
    return _install(monkeypatch, "tools")


@pytest.fixture
def fake_ascend_toolkit_msit(monkeypatch, _fakes_forgotten) -> SimpleNamespace:
    """The fake toolkit with msit's ais_bench (summary(), free_resource())."""
    return _install(monkeypatch, "msit")


@pytest.fixture
def fake_ascend_toolkit_atc_ignoring_batch(monkeypatch, _fakes_forgotten) -> SimpleNamespace:
    """The fake toolkit (Ascend/tools ais_bench) with a broken atc that ignores the batch size in
    --input_shape and always writes a batch-1 .om (tests/fakes/bin_ignoring_batch/atc)."""
    return _install(monkeypatch, "tools", atc_ignores_batch=True)
