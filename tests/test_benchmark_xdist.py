"""pytest-benchmark's warning that xdist disables it is printed only when a perf test is selected
(fixtures/benchmark.py). Each run is a sandboxed run acting as xdist's first worker, which is
where pytest-benchmark decides to warn; collecting is enough, since it decides at collection."""
from __future__ import annotations

import warnings

from pytest_benchmark.logger import PytestBenchmarkWarning


def _benchmark_warnings(run_suite, monkeypatch, marker: str) -> list[str]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_suite("-m", marker, "--models=efficient3dcnn", "--batch-sizes=1", "--collect-only",
                           tests=("test_accuracy.py", "test_perf.py"))
    assert result.ret == 0, result.stdout.str()
    return [str(w.message) for w in caught if issubclass(w.category, PytestBenchmarkWarning)]


def test_no_warning_when_no_perf_test_is_selected(run_suite, monkeypatch):
    assert _benchmark_warnings(run_suite, monkeypatch, "accuracy") == []


def test_the_warning_stays_when_a_perf_test_is_selected(run_suite, monkeypatch):
    (message,) = _benchmark_warnings(run_suite, monkeypatch, "perf")
    assert "automatically disabled because xdist plugin is active" in message
