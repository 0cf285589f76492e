"""Perf: pure-inference FPS per batch size with pytest-benchmark, as ais_bench measures it
(--warmup untimed runs, then --loop timed runs of one batch), beside the seed's reference; every
timing checked and every round audited (harness/perf.py)."""
from __future__ import annotations

import os

import pytest

from harness import flops, perf

pytestmark = pytest.mark.perf


@pytest.fixture(scope="session")
def gflops_per_sample(model, run, onnx_model) -> float:
    return flops.gflops_per_sample(onnx_model, model.profile(run.profile).inputs, run.cache_dir)


def test_inference_fps(model, batch_size, backend, session, dataset, weights, run, record, benchmark,
                       gflops_per_sample, request):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("pytest-benchmark disables itself under xdist and timings need the cores: "
                    "run `pytest -m perf` without -n")

    def pedantic(call, rounds, warmup_rounds, setup):
        benchmark.pedantic(call, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1, setup=setup)

    result = perf.perf_row(model, run, backend, session, dataset, weights, batch_size, gflops_per_sample,
                           network=lambda: request.getfixturevalue("torch_network"), runner=pedantic)
    benchmark.extra_info.update(record(result, weights=weights.provenance, environment=backend.environment(model)))
    result.raise_if_failed(record.row)
