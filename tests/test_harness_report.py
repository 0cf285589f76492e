"""Report writing, part merging across workers, batching and element-wise statistics."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness import records, report
from harness.records import Row, RowKey
from harness.results import Figure, FigureKind
from harness.backends.base import looks_like_oom
from harness.outputs import ElementwiseStats, batches
from harness.spec import Elementwise, Sample


def _row(bs, **fields):
    return {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": bs, **fields}


def _top1(value, torch=None, verdict="pass") -> dict:
    return Figure("accuracy", "top1", value, "%", True, FigureKind.ACCURACY, 0.1,
                  value if torch is None else torch, "PyTorch", verdict).as_dict()


def _fps(value) -> dict:
    return Figure("perf", "fps", value, "samples/s", True, FigureKind.INFO).as_dict()


def _ratio(value) -> dict:
    return Figure("perf", "reference_ratio", value, "", True, FigureKind.INFO).as_dict()


def test_parts_from_several_workers_merge_into_one_row(tmp_path):
    records.PartWriter(tmp_path, "gw0").add(_row(1, accuracy={"verdict": "pass"}, figures=[_top1(50.0)]))
    records.PartWriter(tmp_path, "gw1").add(_row(1, perf={"rounds": 5}, figures=[_fps(10.0)]))
    records.PartWriter(tmp_path, "gw1").add(_row(2, perf={"rounds": 5}, figures=[_fps(18.0)]))
    merged = records.merge_parts(tmp_path)
    assert [r["batch_size"] for r in merged] == [1, 2]
    assert Row.of(merged[0]).figure("accuracy", "top1").value == 50.0
    assert Row.of(merged[0]).figure("perf", "fps").value == 10.0 and merged[0]["status"] == "pass"


def test_run_directory_has_results_summary_plots_and_latest(tmp_path):
    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    rows = [
        _row(1, weights={"source": "seeded"}, data={"generated": True, "read": 3, "listed": 3},
             accuracy={"verdict": "fail"}, figures=[_top1(40.0, 50.0, "fail"), _fps(10.0)],
             findings=[{"kind": "failure", "part": "accuracy", "what": "top1", "message": "deployed 40 vs PyTorch 50"}],
             published={"applies": False, "reason": "seeded weights",
                        "metrics": {"top1": {"published": 81.1, "value": 40.0, "verdict": "n/a", "why": "seeded weights"}}},
             perf={"rounds": 5, "warmup": 2}),
        _row(4, error={"type": "MemoryError", "message": "out of memory", "stage": "call"}),
    ]
    header = {"run_id": "run1", "config": {"backends": ["onnxruntime"], "soc": "Ascend310P3"},
              "reference_fps": {"m": {"Ascend310P3": {"1": 1001.5, "4": "oom"}}}}
    summary = report.write_run(run_dir, header, [records.finalise(r) for r in rows])
    text = summary.read_text()
    assert "❌ FAIL" in text and "out of memory" in text and "seeded weights" in text
    assert "- onnxruntime bs1 ❌ FAIL (accuracy) top1: deployed 40 vs PyTorch 50" in text
    written = records.load_run(run_dir / "results.json")
    assert written.row(RowKey("m", "onnxruntime", "fp32", 1)).figure("perf", "fps").value == 10.0
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
    return {"accuracy": {"verdict": "pass"}, "figures": [_top1(value)],
            "published": {"applies": applies, "reason": None if applies else why,
                          "metrics": {"top1": {"published": 81.1, "value": value, "verdict": published_verdict, "why": why}}}}


def _oom(bs, expected=True):
    error = {"type": "MemoryError", "message": "aclrtMalloc failed", "stage": "call"}
    return records.finalise(_row(bs, profile="smoke", error=error, **(
        {"expected_failure": f"the seed records out of memory on {SOC} at batch size {bs}"} if expected else {})))


def _glance_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| m |"))


def test_expected_out_of_memory_rows_show_as_expected_and_others_as_failures():
    rows = [records.finalise(_row(1, profile="smoke", **_judged(50.0))), _oom(2)]
    glance = _glance_line(report.render.summary_markdown({**_header(), "records": rows}, [], []))
    assert "⚠️ bs2 expected failure (the seed records out of memory on Ascend310P3 at batch size 2)" in glance
    assert "❌" not in glance and "✅ pass" in glance
    error = {"type": "RuntimeError", "message": "AI Core exception", "stage": "call"}
    rows += [_oom(4, expected=False), records.finalise(_row(8, profile="smoke", error=error))]
    text = report.render.summary_markdown({**_header(), "records": rows}, [], [])
    glance = _glance_line(text)
    assert glance.index("❌ bs4 out of memory (the seed ran it)") < glance.index("❌ bs8 error") < glance.index("⚠️ bs2")
    assert "- onnxruntime ❌ bs8 error: RuntimeError: AI Core exception" in text


def test_smoke_fps_is_marked_as_not_comparable_with_the_reference_in_the_summary():
    perf = {"perf": {"rounds": 3, "warmup": 2}, "figures": [_fps(10.0), _ratio(0.025)]}
    smoke = report.render.summary_markdown({**_header(), "records": [_row(1, profile="smoke", **perf)]}, [], [])
    assert "measured at smoke shapes: not comparable with the reference (full shapes)" in _glance_line(smoke)
    assert "| — (smoke shapes) |" in smoke and "0.025" not in smoke
    full = report.render.summary_markdown({**_header(), "records": [_row(1, profile="full", **perf)]}, [], [])
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
    applies = report.render.accuracy_figure(plt, [Row.of(_row(1, **_judged(80.0, "pass", "within 1 of published 81.1")))])
    assert 81.1 in _horizontal_lines(applies.axes[0])
    seeded = report.render.accuracy_figure(plt, [Row.of(_row(1, **_judged(80.0)))])
    ax = seeded.axes[0]
    assert 81.1 not in _horizontal_lines(ax)
    assert any("published 81.1 not drawn: seeded weights" in t.get_text().replace("\n", " ") for t in ax.texts)


def test_accuracy_plot_makes_zero_and_nan_values_visible(plt):
    figure = report.render.accuracy_figure(plt, [Row.of(_row(1, **_judged(0.0))), Row.of(_row(1, backend="openvino", **_judged(math.nan)))])
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("0") == 2 and "nan" in labels
    markers = [line for line in ax.get_lines() if line.get_marker() == "D"]
    assert len(markers) == 1 and list(markers[0].get_xdata()) == [0, 1, 2]
    assert ax.get_ylim()[1] > 0  # an all-zero panel still has an axis to read the zeros on


def test_fps_plot_never_shares_axes_between_smoke_figures_and_the_reference(plt):
    smoke = [_row(bs, profile="smoke", perf={}, figures=[_fps(10.0 * bs)]) for bs in (1, 2)]
    figure = report.render.fps_figure(plt, [Row.of(r) for r in smoke], REFERENCE_FPS, SOC)
    measured, reference = figure.axes[0], figure.axes[1]
    assert "not comparable with the reference" in measured.get_title()
    assert all("reference" not in line.get_label() for line in measured.get_lines())
    assert {line.get_label() for line in reference.get_lines()} == {
        "Ascend310P3 (seed reference, full shapes)", "T4 (seed reference, full shapes)"}
    full = [_row(bs, profile="full", perf={}, figures=[_fps(100.0 * bs)]) for bs in (1, 4)]
    together = report.render.fps_figure(plt, [Row.of(r) for r in full], REFERENCE_FPS, SOC)
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
    perf = _results_file(tmp_path, "perf", [_row(1, profile="smoke", perf={"rounds": 3, "warmup": 2}, figures=[_fps(10.0)])],
                         workers=0)
    out = tmp_path / "night"
    assert report.main([str(accuracy), str(perf), "--out", str(out)]) == 0
    merged = json.loads((out / "results.json").read_text())
    row = merged["records"][0]
    assert Row.of(row).figure("accuracy", "top1").value == 50.0 and Row.of(row).figure("perf", "fps").value == 10.0
    assert merged["run_id"] == "acc+perf" and merged["merged_from"] == ["acc", "perf"]
    assert "config workers differs between the merged runs: [2, 0]" in merged["notes"]
    assert "acc: acc note" in merged["notes"] and (out / "summary.md").exists()
    assert gate.main([str(out / "results.json"), "--baseline", str(out / "results.json")]) == 0
    assert gate.main([str(perf), "--baseline", str(out / "results.json")]) == 1  # the accuracy part is missing


def test_merge_refuses_a_file_that_is_not_a_results_json(tmp_path, capsys):
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SystemExit):
        report.main([str(tmp_path / "broken.json"), "--out", str(tmp_path / "out")])
    assert "broken.json: not JSON" in capsys.readouterr().err


def test_the_summary_shows_agreement_with_pytorch_and_where_a_divergence_starts():
    """The verdict that gates a deployment with seeded weights must be readable in summary.md."""
    judged = _judged(0.0)
    judged["figures"].append(Figure("accuracy", "top1_agreement", 14.3, "%", True, FigureKind.INFO, None, 99.0, "limit",
                                    "fail").as_dict())
    row = _row(1, **judged, worst_sample_picture="/r/divergence/m-onnxruntime-fp32-bs1/worst_sample.png",
               localisation="divergence on onnxruntime (fp32) starts at node /features/features.8/conv/Conv")
    text = report.render.summary_markdown({**_header(), "records": [row]}, [], [])
    assert "| onnxruntime | 1 | fp32 | top1_agreement | 14.3% | >= 99 (limit) | ❌" in text
    assert "(divergence/m-onnxruntime-fp32-bs1/worst_sample.png)" in text
    assert "- onnxruntime bs1: divergence on onnxruntime (fp32) starts at node /features/features.8/conv/Conv" in text


def test_a_new_figure_and_every_finding_kind_reach_the_summary_and_the_gate_without_edits_there():
    """What adding a metric or a finding kind takes: the result type and its builder. The summary
    shows every figure by its name in its part's table and every finding by its kind, and the
    gate compares every figure of a gated kind, whatever its name."""
    from harness import gate
    from harness.results import FindingKind

    def row(new_value):
        figures = [Figure("accuracy", "new_metric", new_value, "dB", True, FigureKind.ACCURACY, 0.5, 30.0,
                          "PyTorch", "pass").as_dict(),
                   Figure("accuracy", "new_check", 0.25, "", False, FigureKind.INFO, None, 1.0, "limit", "pass").as_dict(),
                   Figure("perf", "new_speed", 123.0, "samples/s", True, FigureKind.SPEED).as_dict()]
        findings = [{"kind": kind.value, "part": "accuracy", "what": "new_check", "message": f"said as {kind.value}"}
                    for kind in FindingKind]
        return records.finalise(_row(1, profile="smoke", accuracy={"verdict": "pass"}, perf={"rounds": 1},
                                     figures=figures, findings=findings))

    text = report.render.summary_markdown({**_header(), "records": [row(30.0)]}, [], [])
    assert "| onnxruntime | 1 | fp32 | new_metric | 30 | 30 | 0 | 0.5 | ✅ pass |" in text
    assert "| onnxruntime | 1 | fp32 | new_check | 0.25 | <= 1 (limit) | ✅ pass |" in text
    assert "| backend | bs | precision | new_speed | reference FPS | rounds | audit |" in text and "| 123 |" in text
    for kind in FindingKind:
        assert f"new_check: said as {kind.value}" in text
    found = {(f.kind, f.what) for f in gate.compare_row(Row.of(row(29.0)), Row.of(row(30.0)), 0.1)}
    assert found == {(gate.Kind.REGRESSION, "accuracy/new_metric"), (gate.Kind.WITHIN, "perf/new_speed")}
