"""Report writing, part merging across workers, batching and element-wise statistics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness import report
from harness.backends.base import looks_like_oom
from harness.outputs import ElementwiseStats, batches
from harness.spec import Elementwise, Sample


def _row(bs, **fields):
    return {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": bs, **fields}


def test_parts_from_several_workers_merge_into_one_row(tmp_path):
    report.PartWriter(tmp_path, "gw0").add(_row(1, accuracy={"top1": {"torch": 50.0, "deployed": 50.0, "verdict": "pass"}}))
    report.PartWriter(tmp_path, "gw1").add(_row(1, perf={"fps": 10.0}))
    report.PartWriter(tmp_path, "gw1").add(_row(2, perf={"fps": 18.0}))
    merged = report.merge_parts(tmp_path)
    assert [r["batch_size"] for r in merged] == [1, 2]
    assert merged[0]["accuracy"]["top1"]["verdict"] == "pass" and merged[0]["perf"]["fps"] == 10.0


def test_run_directory_has_results_summary_plots_and_latest(tmp_path):
    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    records = [
        _row(1, weights={"source": "seeded"}, data={"generated": True, "read": 3, "listed": 3},
             accuracy={"top1": {"torch": 50.0, "deployed": 40.0, "delta": -10.0, "tolerance": 0.1, "verdict": "fail"}},
             accuracy_verdict="fail", failures=["top1: deployed 40 vs PyTorch 50"],
             published={"applies": False, "reason": "seeded weights",
                        "metrics": {"top1": {"published": 81.1, "value": 40.0, "verdict": "n/a", "why": "seeded weights"}}},
             perf={"fps": 10.0, "p50_ms": 100.0, "reference_fps": 1001.5, "rounds": 5, "warmup": 2}),
        _row(4, perf={"status": "oom", "reason": "out of memory", "reference_fps": "oom"}),
    ]
    header = {"run_id": "run1", "config": {"backends": ["onnxruntime"], "soc": "Ascend310P3"},
              "reference_fps": {"m": {"Ascend310P3": {"1": 1001.5, "4": "oom"}}}}
    summary = report.write_run(run_dir, header, records)
    text = summary.read_text()
    assert "❌ FAIL" in text and "out of memory" in text and "seeded weights" in text
    assert "- onnxruntime bs1 ❌ FAIL: top1: deployed 40 vs PyTorch 50" in text
    assert json.loads((run_dir / "results.json").read_text())["records"][0]["perf"]["fps"] == 10.0
    for png in ("fps.png", "accuracy.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "latest").resolve() == run_dir.resolve()


def test_last_batch_is_padded_and_only_real_samples_returned():
    samples = [Sample(str(i), {"x": np.full((2,), i, np.float32)}, None) for i in range(5)]
    got = list(batches(samples, 2, ["x"]))
    assert [len(group) for group, _ in got] == [2, 2, 1]
    assert got[-1][1]["x"].shape == (2, 2) and got[-1][1]["x"][1, 0] == 4.0


def test_elementwise_stats_count_outliers_and_nan():
    stats = ElementwiseStats(Elementwise(rtol=0.0, atol=0.1))
    stats.add("a", {"y": np.zeros(4)}, {"y": np.array([0.0, 0.05, 0.2, 0.0])})
    assert stats.outside == 1 and not stats.passed and abs(stats.max_abs - 0.2) < 1e-12
    nan = ElementwiseStats(Elementwise(rtol=0.0, atol=0.1))
    nan.add("b", {"y": np.zeros(2)}, {"y": np.array([np.nan, 0.0])})
    assert nan.outside == 1 and not nan.passed


def test_out_of_memory_messages_are_recognised():
    assert looks_like_oom("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer")
    assert looks_like_oom("std::bad_alloc")
    assert looks_like_oom("EE9999: aclrtMallocAsync failed, error code 207001")
    assert not looks_like_oom("Invalid input name: x3")


# -- what the summary and the plots show -----------------------------------------------------------

SOC = "Ascend310P3"
REFERENCE_FPS = {"m": {SOC: {"1": 400.0, "2": "oom", "4": 900.0}, "T4": {"1": 300.0, "2": 500.0}}}


def _header(**config):
    return {"run_id": "r", "config": {"backends": ["onnxruntime"], "soc": SOC, **config}, "reference_fps": REFERENCE_FPS}


def _judged(value, published_verdict="n/a", why="seeded weights (no m.pth in --weights-dir)") -> dict:
    """The accuracy and published parts of a row, as the accuracy test records them."""
    applies = published_verdict != "n/a"
    return {"accuracy": {"top1": {"torch": value, "deployed": value, "delta": 0.0, "tolerance": 0.1, "verdict": "pass",
                                  "higher_is_better": True, "unit": "%"}},
            "accuracy_verdict": "pass", "failures": [],
            "published": {"applies": applies, "reason": None if applies else why,
                          "metrics": {"top1": {"published": 81.1, "value": value, "verdict": published_verdict, "why": why}}}}


def _oom(bs):
    return _row(bs, profile="smoke", status="oom", reason="aclrtMalloc failed",
                perf={"status": "oom", "reason": "aclrtMalloc failed", "reference_fps": REFERENCE_FPS["m"][SOC][str(bs)]})


def _glance_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| m |"))


def test_expected_out_of_memory_rows_show_as_expected_and_others_as_failures():
    records = [_row(1, profile="smoke", **_judged(50.0)), _oom(2)]
    glance = _glance_line(report.summary_markdown({**_header(), "records": records}, [], []))
    assert "⚠️ bs2 out of memory, as the seed records on Ascend310P3 (expected)" in glance
    assert "❌" not in glance and "✅ pass" in glance
    records += [_oom(4), _row(8, profile="smoke", status="error", reason="RuntimeError: AI Core exception")]
    text = report.summary_markdown({**_header(), "records": records}, [], [])
    glance = _glance_line(text)
    assert glance.index("❌ bs4 out of memory (the seed ran it)") < glance.index("❌ bs8 error") < glance.index("⚠️ bs2")
    assert "- onnxruntime ❌ bs8 error: RuntimeError: AI Core exception" in text
    assert "out of memory (expected: the seed records it): aclrtMalloc failed" in text


def test_smoke_fps_is_marked_as_not_comparable_with_the_reference_in_the_summary():
    perf = {"fps": 10.0, "reference_fps": 400.0, "ratio": 0.025, "rounds": 3, "warmup": 2}
    smoke = report.summary_markdown({**_header(), "records": [_row(1, profile="smoke", perf=perf)]}, [], [])
    assert "measured at smoke shapes: not comparable with the reference (full shapes)" in _glance_line(smoke)
    assert "| — (smoke shapes) |" in smoke and "0.025" not in smoke
    full = report.summary_markdown({**_header(), "records": [_row(1, profile="full", perf=perf)]}, [], [])
    assert "not comparable" not in full and "| 0.025 |" in full


@pytest.fixture
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    yield pyplot
    pyplot.close("all")


def _horizontal_lines(ax) -> list[float]:
    return [line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1 and not line.get_marker() == "D"]


def test_accuracy_plot_draws_the_published_line_only_where_it_applies(plt):
    applies = report.accuracy_figure(plt, [_row(1, **_judged(80.0, "pass", "within 1 of published 81.1"))])
    assert 81.1 in _horizontal_lines(applies.axes[0])
    seeded = report.accuracy_figure(plt, [_row(1, **_judged(80.0))])
    ax = seeded.axes[0]
    assert 81.1 not in _horizontal_lines(ax)
    assert any("published 81.1 not drawn: seeded weights" in t.get_text().replace("\n", " ") for t in ax.texts)


def test_accuracy_plot_makes_zero_and_nan_values_visible(plt):
    figure = report.accuracy_figure(plt, [_row(1, **_judged(0.0)), _row(1, backend="openvino", **_judged(math.nan))])
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("0") == 2 and "nan" in labels
    markers = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [0, 1, 2]
    assert ax.get_ylim()[1] > 0  # an all-zero panel still has an axis to read the zeros on


def test_fps_plot_never_shares_axes_between_smoke_figures_and_the_reference(plt):
    smoke = [_row(bs, profile="smoke", perf={"fps": 10.0 * bs}) for bs in (1, 2)]
    figure = report.fps_figure(plt, smoke, REFERENCE_FPS, SOC)
    measured, reference = figure.axes[0], figure.axes[1]
    assert "not comparable with the reference" in measured.get_title()
    assert all("reference" not in line.get_label() for line in measured.get_lines())
    assert {line.get_label() for line in reference.get_lines()} == {
        "Ascend310P3 (seed reference, full shapes)", "T4 (seed reference, full shapes)"}
    full = [_row(bs, profile="full", perf={"fps": 100.0 * bs}) for bs in (1, 4)]
    together = report.fps_figure(plt, full, REFERENCE_FPS, SOC)
    assert len([ax for ax in together.axes if ax.get_visible()]) == 1
    assert len(together.axes[0].get_lines()) == 3 and "full shapes" in together.axes[0].get_title()


def _results_file(tmp_path, name, records, **config):
    run_dir = tmp_path / name
    run_dir.mkdir()
    header = {**_header(**config), "run_id": name, "environment": {"cpu": "x"}, "exit_status": 0}
    report.write_run(run_dir, header, records, [f"{name} note"])
    return run_dir / "results.json"


def test_two_invocations_merge_into_one_report_the_gate_reads(tmp_path):
    from harness import gate

    accuracy = _results_file(tmp_path, "acc", [_row(1, profile="smoke", **_judged(50.0)), _oom(2)], workers=2)
    perf = _results_file(tmp_path, "perf", [_row(1, profile="smoke", perf={"fps": 10.0, "rounds": 3, "warmup": 2})], workers=0)
    out = tmp_path / "night"
    assert report.main([str(accuracy), str(perf), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    row = merged["records"][0]
    assert row["accuracy"]["top1"]["deployed"] == 50.0 and row["perf"]["fps"] == 10.0
    assert merged["run_id"] == "acc+perf" and merged["merged_from"] == ["acc", "perf"]
    assert "config workers differs between the merged runs: [2, 0]" in merged["notes"]
    assert "acc: acc note" in merged["notes"] and (out / "summary.md").exists()
    assert gate.main([str(out / "results.json"), "--baseline", str(out / "results.json")]) == 0
    assert gate.main([str(perf), "--baseline", str(out / "results.json")]) == 1  # the accuracy part is missing


def test_merge_refuses_a_file_that_is_not_a_results_json(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "broken.json"), "--out", str(tmp_path / "out")])
    assert "broken.json: not a results.json written by this suite" in capsys.readouterr().err


def test_the_summary_shows_agreement_with_pytorch_and_where_a_divergence_starts():
    """The verdict that gates a deployment with seeded weights must be readable in summary.md."""
    agreement = {"top1_agreement": {"value": 14.3, "limit": 99.0, "bound": "min", "unit": "%", "passed": False}}
    row = _row(1, **_judged(0.0), agreement=agreement, worst_sample_picture="/r/divergence/m-onnxruntime-fp32-bs1/worst_sample.png",
               localisation="divergence on onnxruntime (fp32) starts at node /features/features.8/conv/Conv")
    text = report.summary_markdown({**_header(), "records": [row]}, [], [])
    assert "| onnxruntime | 1 | fp32 | top1_agreement | 14.3% | >= 99 | ❌" in text
    assert "(divergence/m-onnxruntime-fp32-bs1/worst_sample.png)" in text
    assert "- onnxruntime bs1: divergence on onnxruntime (fp32) starts at node /features/features.8/conv/Conv" in text
