"""The benchmark JSON as ``pytest-benchmark compare`` reads it: every value serialisable, each
row named by its parameters, and the reference FPS with its ratio only where the row is
comparable with the seed's table (harness/perf.py ``benchmark_params``, ``benchmark_extra_info``)."""
from __future__ import annotations

import json

import pytest

from harness import perf
from harness.results import Figure, FigureKind

RATIO = Figure("perf", "reference_ratio", 0.5, "", True, FigureKind.INFO, reference=73.237,
               reference_name="T4 table (compute-only)")


def _benchmark_json(run_suite, tmp_path, profile: str) -> tuple[str, dict]:
    """A sandboxed perf run's --benchmark-json: its text and its one benchmark, as compare loads it."""
    out = tmp_path / "bench.json"
    result = run_suite("-m", "perf", "--models=efficient3dcnn", "--batch-sizes=1", "--loop=2", "--soc=T4",
                       "--backend=onnxruntime", f"--profile={profile}", f"--benchmark-json={out}",
                       tests=("test_perf.py",))
    result.assert_outcomes(passed=1)
    text = out.read_text()
    (bench,) = json.loads(text)["benchmarks"]
    return text, bench


def test_a_smoke_run_writes_json_that_compare_reads_with_no_ratio(run_suite, tmp_path):
    text, bench = _benchmark_json(run_suite, tmp_path, "smoke")
    assert "UNSERIALIZABLE" not in text
    assert bench["params"] == {"model": "efficient3dcnn", "backend_name": "onnxruntime", "batch_size": 1}
    info = bench["extra_info"]
    assert info["profile"] == "smoke" and info["fps"] > 0
    assert "reference_ratio" not in info and "reference_fps" not in info
    assert info["reference"].startswith("not comparable: smoke-profile shapes, while the T4 table")


def test_a_full_profile_run_carries_the_reference_fps_and_the_ratio(run_suite, tmp_path):
    text, bench = _benchmark_json(run_suite, tmp_path, "full")
    assert "UNSERIALIZABLE" not in text
    info = bench["extra_info"]
    assert info["reference_fps"] == 73.237  # the seed's T4 column at batch size 1
    assert info["reference_ratio"] == pytest.approx(info["fps"] / 73.237)  # no compute time on ONNX Runtime
    assert info["reference_compared"].startswith("T4 table (end-to-end") and "reference" not in info


def test_a_full_profile_row_carries_the_reference_fps_and_ratio():
    info = perf.benchmark_extra_info({"fps": 36.6, "reference_ratio": 0.5}, RATIO, "full")
    assert info == {"fps": 36.6, "reference_fps": 73.237, "reference_ratio": 0.5,
                    "reference_compared": "T4 table (compute-only)"}
    json.dumps(info)


def test_a_row_without_a_reference_carries_none():
    assert perf.benchmark_extra_info({"fps": 36.6}, None, "full") == {"fps": 36.6}


def test_params_name_the_model():
    class Spec:
        name = "flavr"

    assert perf.benchmark_params({"model": Spec(), "batch_size": 2}) == {"model": "flavr", "batch_size": 2}
