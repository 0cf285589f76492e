"""Perf: pure-inference FPS per batch size with pytest-benchmark, as ais_bench measures it
(--warmup untimed runs, then --loop timed runs of one batch), beside the seed's reference."""
from __future__ import annotations

import os

import pytest

from harness import flops, gate, stages, timing, verdicts
from harness.outputs import ElementwiseStats, batches, split

pytestmark = pytest.mark.perf

SMOKE_LOOP = 5  # timed runs per row at smoke shapes: figures to compare runs, not the seed's
AIS_BENCH_WARMUP = 1  # ais_bench's --warmup_count default


@pytest.fixture(scope="session")
def peak_gflops(run) -> float:
    """Measured once per CPU and onnxruntime version, then read from the run's cache."""
    return flops.measure_peak_gflops(run.cache_dir)


@pytest.fixture(scope="session")
def gflops_per_sample(model, run, onnx_model) -> float:
    return flops.gflops_per_sample(onnx_model, model.profile(run.profile).inputs)


def test_inference_fps(model, batch_size, backend, session, dataset, weights, run, record, baseline,
                       benchmark, peak_gflops, gflops_per_sample, request):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("pytest-benchmark disables itself under xdist and timings need the cores: "
                    "run `pytest -m perf` without -n")
    first = next(batches(dataset, batch_size, model.input_names), None)
    assert first is not None, f"{model.name}: the dataset under {dataset.summary['root']} produced no samples"
    group, feeds = first
    warmup = AIS_BENCH_WARMUP if run.warmup is None else run.warmup
    loop = run.loop or (model.seed_loop if run.profile == "full" else SMOKE_LOOP)
    compute_ms: list[float] = []
    transfers: list[dict] = []
    wall_s: list[float] = []

    def one_run():
        elapsed, outputs = timing.timed(lambda: session.run(feeds))
        wall_s.append(elapsed)
        if session.last_compute_ms() is not None:
            compute_ms.append(session.last_compute_ms())
        if session.last_transfer_ms() is not None:
            transfers.append(session.last_transfer_ms())
        return outputs

    outputs = benchmark.pedantic(one_run, rounds=loop, warmup_rounds=warmup, iterations=1)
    summary = timing.summarize(wall_s[warmup:], batch_size, compute_ms[warmup:], transfers[warmup:])
    summary["warmup"] = warmup
    summary["audit"] = _audit(model, run, weights, request, group, feeds, outputs, backend.precision)
    perf = verdicts.perf_row(model, batch_size, summary, run.soc, gflops_per_sample, peak_gflops)
    benchmark.extra_info.update({"model": model.name, "backend": backend.name, "precision": backend.precision,
                                 "batch_size": batch_size, "profile": run.profile,
                                 "weights": weights.provenance.get("sha256", "seeded"),
                                 **{k: v for k, v in perf.items() if k != "timer"}})
    key = (model.name, backend.name, backend.precision, batch_size)
    findings = gate.compare_row(key, {"perf": perf, "profile": run.profile}, baseline.get(key),
                                run.fps_regression) if baseline else []
    record(perf=perf, weights=weights.provenance, environment=backend.environment(),
           **({"gate": {"perf": gate.findings_record(findings)}} if baseline else {}))
    failing = [str(f) for f in findings if f.failing]
    assert not failing, "against the baseline: " + "; ".join(failing)


def _audit(model, run, weights, request, group, feeds, outputs, precision) -> str:
    """MLPerf TEST01-style: the timed outputs must be PyTorch's outputs for the same inputs."""
    reference = stages.reference_pass(model, run.profile, weights, lambda: request.getfixturevalue("torch_network"),
                                      group, run.cache_dir)
    stats = ElementwiseStats(model.elementwise[precision])
    for sample, got in zip(group, split(outputs, len(group))):
        stats.add(sample.id, reference.store.get(sample.id), got)
    assert stats.passed, f"{model.name}: the timed outputs are not PyTorch's for the same inputs: {stats.message()}"
    return f"timed outputs within the {precision} element-wise tolerance of PyTorch on the same {len(group)} sample(s)"
