"""Perf: pure-inference FPS per batch size with pytest-benchmark, beside the seed's reference."""
from __future__ import annotations

import os

import numpy as np
import pytest

from harness import flops, gate, timing
from harness.pipeline import ElementwiseStats, batches, torch_forward
from harness.spec import OOM

pytestmark = pytest.mark.perf

WARMUP_ROUNDS = 2


@pytest.fixture(scope="session")
def peak_gflops() -> float:
    """Measured once at session start: the machine's fp32 matmul throughput."""
    return flops.measure_peak_gflops()


@pytest.fixture(scope="session")
def gflops_cache() -> dict:
    return {}


def _first_batch(pipeline, model, batch_size):
    """The first batch of the dataset, as the accuracy run feeds it (for the audit)."""
    for _, feeds in batches(pipeline.dataset(model), batch_size, model.input_names):
        return feeds
    pytest.fail(f"{model.name}: the dataset produced no samples")


def _audit(pipeline, model, batch_size, feeds, outputs) -> str:
    """MLPerf TEST01-style: timed outputs must equal the accuracy run's for the same inputs."""
    evaluation = pipeline.evaluated(model, batch_size)
    if evaluation is not None and evaluation.first_batch is not None:
        ref_feeds, ref_outputs = evaluation.first_batch
        if all(np.array_equal(ref_feeds[n], feeds[n]) for n in feeds):
            for name, ref in ref_outputs.items():
                assert np.allclose(outputs[name], ref, rtol=1e-5, atol=1e-6), (
                    f"{model.name} bs{batch_size}: timed output {name} differs from the accuracy run's")
            return "equal to the accuracy run's outputs"
    stats = ElementwiseStats(model.elementwise[pipeline.backend.precision])
    reference = torch_forward(pipeline.network(model), feeds, model.output_names)
    stats.add("timed batch", reference, outputs)
    assert stats.passed, f"{model.name} bs{batch_size}: timed outputs differ from PyTorch: {stats.as_dict()}"
    return "within tolerance of PyTorch (accuracy run not in this process)"


def test_inference_fps(model, batch_size, pipeline, benchmark, record, peak_gflops, gflops_cache, baseline):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("pytest-benchmark disables itself under xdist and timings need the cores: "
                    "run `pytest -m perf` without -n")
    run = pipeline.config
    reference = model.reference_fps.get(run.soc, {}).get(batch_size) if run.soc else None
    feeds = _first_batch(pipeline, model, batch_size)
    try:
        session = pipeline.open_session(model, batch_size)
        try:
            first_s, _ = timing.timed(lambda: session.run(feeds))
            rounds = timing.plan_rounds(first_s, run.perf_seconds)
            compute_ms: list[float] = []
            times: list[float] = []

            def one_round():
                elapsed, out = timing.timed(lambda: session.run(feeds))
                times.append(elapsed)
                if session.last_compute_ms() is not None:
                    compute_ms.append(session.last_compute_ms())
                return out

            outputs = benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
            times = times[WARMUP_ROUNDS:]
            compute_ms = compute_ms[WARMUP_ROUNDS:]
        finally:
            session.close()
    except MemoryError as err:
        record(perf={"status": OOM, "reason": str(err), "reference_fps": reference})
        raise
    perf = timing.summarize(times, batch_size, compute_ms)
    perf["warmup"] = WARMUP_ROUNDS
    perf["audit"] = _audit(pipeline, model, batch_size, feeds, outputs)
    if model.name not in gflops_cache:
        gflops_cache[model.name] = flops.gflops_per_sample(pipeline.onnx(model), model.profile(run.profile).inputs)
    perf["gflops_per_sample"] = gflops_cache[model.name]
    perf["gflops_per_s"] = perf["gflops_per_sample"] * perf["fps"]
    perf["peak_gflops"] = peak_gflops
    perf["fraction_of_peak"] = perf["gflops_per_s"] / peak_gflops
    perf["reference_fps"] = reference
    perf["reference_soc"] = run.soc
    perf["ratio"] = perf["fps"] / reference if isinstance(reference, float) else None
    benchmark.extra_info.update({"model": model.name, "backend": pipeline.backend.name,
                                 "precision": pipeline.backend.precision, "batch_size": batch_size,
                                 "profile": run.profile,
                                 "weights": pipeline.weights(model).provenance.get("sha256", "seeded"),
                                 **{k: v for k, v in perf.items() if k != "timer"}})
    regressions, improvements = [], []
    key = (model.name, pipeline.backend.name, pipeline.backend.precision, batch_size)
    base_fps = gate.gate_fps(baseline.get(key, {}).get("perf", {}))
    if base_fps:
        worse, better = gate.compare_fps(key, gate.gate_fps(perf), base_fps, run.fps_regression)
        regressions += [str(worse)] if worse else []
        improvements += [str(better)] if better else []
    record(perf=perf, weights=pipeline.weights(model).provenance,
           gate={"perf": {"regressions": regressions, "improvements": improvements}} if baseline else {})
    assert not regressions, "FPS regression against the baseline: " + "; ".join(regressions)
