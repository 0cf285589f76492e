"""A perf row's efficiency figures (harness/roofline.py): the GFLOP/s, the fraction of peak that
fails above 1 saying which of count, peak or timing is suspect, and the roofline."""
from __future__ import annotations

import pytest

from harness import roofline
from harness.flops import GraphCount
from harness.peak import Peak
from harness.results import FindingKind, PerfResult

# 10 GFLOPs (8 useful) per sample; 1e6 weights, 1e8 activation elements
COUNT = GraphCount(10.0, 8.0, (), 1_000_000, 100_000_000)
CPU = Peak("a CPU", "fp32", 500.0, "2 core(s) x 3.9 GHz (a table) x 64 fp32 FLOP/cycle/core", 40.0, "a triad")


def _figures(result) -> dict[str, float]:
    return {f.name: f.value for f in result.figures}


def test_a_row_carries_its_rate_fractions_and_roofline():
    result = PerfResult()
    roofline.add_efficiency(result, COUNT, fps=4.0, batch_size=2, peak=CPU)
    moved = 4 * (1e6 / 2 + 2 * 1e8)  # weights shared by the batch, activations written and read
    figures = _figures(result)
    assert figures["gflops_per_s"] == pytest.approx(40.0) and figures["useful_gflops_per_s"] == pytest.approx(32.0)
    assert figures["fraction_of_peak"] == pytest.approx(40.0 / 500.0)
    assert figures["arithmetic_intensity"] == pytest.approx(10e9 / moved)
    assert figures["roofline_gflops_per_s"] == pytest.approx(10e9 / moved * 40.0)  # memory-bound: below the peak
    assert figures["roofline_gflops_per_s"] < 500.0
    assert figures["fraction_of_roofline"] == pytest.approx(40.0 / (10e9 / moved * 40.0))
    assert result.passed


def test_bf16_moves_half_the_bytes_and_a_compute_bound_row_is_bounded_by_the_peak():
    assert roofline.bytes_per_sample(COUNT, 1, "bf16") == pytest.approx(roofline.bytes_per_sample(COUNT, 1, "fp32") / 2)
    assert roofline.roof_gflops(500.0, 40.0, intensity=100.0) == 500.0


def test_a_row_above_its_memory_roof_is_a_note_not_a_failure():
    result = PerfResult()
    streaming = GraphCount(10.0, 8.0, (), 1_000_000, 1_000_000_000)  # 1.25 FLOP/byte: a 50 GFLOP/s roof
    roofline.add_efficiency(result, streaming, fps=10.0, batch_size=1, peak=CPU)  # 100 GFLOP/s
    assert result.passed
    assert [f.what for f in result.findings if f.kind is FindingKind.NOTE] == ["fraction_of_roofline"]
    assert "fewer bytes moved than an unfused execution's" in result.findings[0].message


def test_nodes_left_out_of_the_count_are_named_in_the_row():
    result = PerfResult()
    count = GraphCount(10.0, 8.0, ("att (Einsum): no counting rule for this op",), 1, 1)
    roofline.add_efficiency(result, count, fps=1.0, batch_size=1, peak=CPU)
    assert "1 node(s) left out of the FLOP count, so the GFLOP/s read low: att (Einsum)" in result.findings[0].message


@pytest.mark.parametrize("fps, peak, suspect", [
    (55.0, CPU, "the count is suspect: without the taps on zero padding (440 GFLOP/s) it reads 0.88"),
    (70.0, Peak("a CPU", "fp32", 500.0, "2 core(s) x 3.1 GHz (measured here: an FMA-bound kernel ...)"),
     "the peak is suspect: it was measured here, not documented"),
    (70.0, CPU, "the timing is suspect (a round shorter than the work allows), or the count"),
], ids=["count", "peak", "timing"])
def test_a_rate_above_the_peak_fails_saying_what_is_suspect(fps, peak, suspect):
    result = PerfResult()
    roofline.add_efficiency(result, COUNT, fps=fps, batch_size=1, peak=peak)
    [failure] = result.failures
    assert failure.what == "fraction_of_peak" and suspect in failure.message
    assert "a fast algorithm such as Winograd or FFT convolution does fewer multiplies" in failure.message


def test_no_peak_no_fraction_and_no_bandwidth_no_roof():
    result = PerfResult()
    roofline.add_efficiency(result, COUNT, fps=1.0, batch_size=1, peak=Peak("x", "fp16", None, "unknown"))
    assert set(_figures(result)) == {"gflops_per_s", "useful_gflops_per_s"}
    result = PerfResult()
    roofline.add_efficiency(result, COUNT, fps=1.0, batch_size=1, peak=Peak("x", "fp16", 1e5, "a datasheet"))
    assert "fraction_of_peak" in _figures(result) and "fraction_of_roofline" not in _figures(result)


def test_the_triad_measures_this_machine_once(tmp_path, monkeypatch):
    from harness import kernels

    roofline._triad.cache_clear()
    first = roofline.cpu_bandwidth(tmp_path)
    assert first.gbs > 0.1 and "STREAM's triad" in first.source
    monkeypatch.setattr(kernels, "triad_gbs", lambda: pytest.fail("measured again"))
    roofline._triad.cache_clear()
    assert roofline.cpu_bandwidth(tmp_path) == first
    roofline._triad.cache_clear()


def _row(model: str, intensity: float, gflops: float) -> dict:
    from harness.results import Figure

    figures = [Figure("perf", "arithmetic_intensity", intensity), Figure("perf", "gflops_per_s", gflops),
               Figure("perf", "roofline_gflops_per_s", min(500.0, 40.0 * intensity))]
    return {"model": model, "backend": "onnxruntime", "precision": "fp32", "batch_size": 1,
            "perf": {"peak": {"gflops": 500.0, "bandwidth_gbs": 40.0}}, "figures": [f.as_dict() for f in figures]}


def test_the_report_draws_every_row_with_a_roof_on_the_roofline_plot(tmp_path):
    from harness import pictures, render

    from harness.records import Row

    rows = [Row.of(r) for r in (_row("depthwise", 2.0, 30.0), _row("dense", 60.0, 300.0),
                                {"model": "no roof", "backend": "openvino", "precision": "fp32", "batch_size": 1,
                                 "figures": []})]
    assert [p["label"] for p in pictures.roofline_points(rows)] == ["depthwise onnxruntime fp32 bs1",
                                                                   "dense onnxruntime fp32 bs1"]
    assert "roofline.png" in render.write_plots(tmp_path, rows, {}, None)
    assert (tmp_path / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert render.write_plots(tmp_path / "none", rows[2:], {}, None) == []
