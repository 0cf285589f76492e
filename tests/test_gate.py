"""The regression gate: one row comparison over a row's figures, the pinned references beside the
last night, and whole runs judged from their results.json files (as `python -m harness.gate`
does), doctored the ways a nightly goes wrong."""
from __future__ import annotations

import copy
import json
import math

import pytest

from fabricated_nights import ENVIRONMENT, drifting_nights, drop, record, set_value, write_night
from harness import gate, references
from harness.gate import Kind
from harness.records import FORMAT, Row



def _row(record):
    return None if record is None else Row.of(record)


def compare(now, then, fps_fraction, *args, **kwargs):
    return gate.compare_row(_row(now), _row(then), fps_fraction, *args, **kwargs)


def _kinds(findings) -> list[tuple[Kind, str]]:
    return [(f.kind, f.what) for f in findings if f.kind is not Kind.WITHIN]


def test_a_row_within_its_bands_has_only_within_findings_and_info_figures_are_not_judged():
    findings = compare(record(), record(), 0.10)
    assert {f.kind for f in findings} == {Kind.WITHIN}
    assert [f.what for f in findings] == ["accuracy/epe", "accuracy/top1", "perf/fps"]


def test_accuracy_regressions_and_improvements_follow_the_metric_direction():
    now = record(top1=79.0, epe=1.9)  # top1 worse by 1 (tolerance 0.1); epe better by 0.1 (tolerance 0.05)
    findings = compare(now, record(), 0.10)
    assert _kinds(findings) == [(Kind.IMPROVEMENT, "accuracy/epe"), (Kind.REGRESSION, "accuracy/top1")]
    assert "REGRESSION m/onnxruntime/fp32/bs1 accuracy/top1: 79% vs baseline 80% (-1%, tolerance ±0.1)" in map(str, findings)
    assert _kinds(compare(record(epe=2.1), record(), 0.10)) == [(Kind.REGRESSION, "accuracy/epe")]


def test_fps_is_judged_by_the_allowed_drop():
    assert _kinds(compare(record(fps=80.0), record(), 0.10)) == [(Kind.REGRESSION, "perf/fps")]
    assert _kinds(compare(record(fps=95.0), record(), 0.10)) == []
    assert _kinds(compare(record(fps=120.0), record(), 0.10)) == [(Kind.IMPROVEMENT, "perf/fps")]
    assert "80 fps vs baseline 100 (-20.0%, allowed drop 10%)" in str(compare(record(fps=80.0), record(), 0.1)[-1])


def test_a_new_figure_is_gated_with_no_edit_in_the_gate():
    now, then = record(), record()
    for row, value in ((now, 30.0), (then, 31.0)):
        row["figures"].append({"part": "accuracy", "name": "psnr", "value": value, "unit": "dB",
                               "higher_is_better": True, "kind": "accuracy", "tolerance": 0.5})
    assert _kinds(compare(now, then, 0.10)) == [(Kind.REGRESSION, "accuracy/psnr")]


def test_a_partial_record_compares_only_the_parts_it_holds():
    """The in-run tests hand over their own part of the row: accuracy without perf and so on."""
    accuracy_only = drop(record(top1=79.0), "perf/fps")
    assert {f.what for f in compare(accuracy_only, record(), 0.10)} == {"accuracy/top1", "accuracy/epe"}
    perf_only = drop(drop(record(fps=50.0), "accuracy/top1"), "accuracy/epe")
    assert _kinds(compare(perf_only, record(), 0.10)) == [(Kind.REGRESSION, "perf/fps")]


@pytest.mark.parametrize("value", [math.nan, math.inf, None, "n/a"])
@pytest.mark.parametrize("side", ["this run", "baseline"])
def test_a_figure_present_on_one_side_and_not_finite_on_the_other_fails_named(value, side):
    broken = set_value(set_value(record(), "accuracy/top1", value), "perf/fps", value)
    now, then = (broken, record()) if side == "this run" else (record(), broken)
    found = compare(now, then, 0.10)
    assert _kinds(found) == [(Kind.NOT_COMPARABLE, "accuracy/top1"), (Kind.NOT_COMPARABLE, "perf/fps")]
    assert all(f.failing for f in found if f.kind is Kind.NOT_COMPARABLE)


def test_a_figure_absent_on_one_side_fails_and_one_absent_on_both_is_fine():
    assert _kinds(compare(drop(record(), "accuracy/epe"), record(), 0.10)) == [(Kind.MISSING, "accuracy/epe")]
    found = compare(record(), drop(record(), "accuracy/epe"), 0.10)
    assert _kinds(found) == [(Kind.NOT_COMPARABLE, "accuracy/epe")] and found[0].failing
    both_empty = set_value(record(), "accuracy/epe", math.nan)
    assert _kinds(compare(both_empty, copy.deepcopy(both_empty), 0.10)) == []


def test_errored_and_out_of_memory_rows():
    row = {k: v for k, v in record().items() if k != "figures"}
    errored = {**row, "status": "error", "error": {"type": "RuntimeError", "message": "AI Core exception"}}
    assert [str(f) for f in compare(errored, None, 0.10)] == [
        "ERRORED m/onnxruntime/fp32/bs1 row: RuntimeError: AI Core exception"]
    oom = {**row, "status": "oom", "error": {"type": "MemoryError", "message": "aclrtMalloc failed"}}
    assert compare(oom, copy.deepcopy(oom), 0.10) == []  # the seed's expected row, both nights
    found = compare(oom, record(), 0.10)
    assert _kinds(found) == [(Kind.ERRORED, "row")] and "aclrtMalloc failed" in str(found[0])
    assert _kinds(compare(record(), oom, 0.10)) == [(Kind.IMPROVEMENT, "row")]


def test_rows_at_other_shapes_are_not_compared():
    found = compare(record(profile="full"), record(), 0.10)
    assert _kinds(found) == [(Kind.NOT_COMPARABLE, "row")] and "full" in str(found[0]) and "smoke" in str(found[0])


def test_gate_findings_are_kept_in_the_row_as_objects_that_read_back():
    findings = compare(record(top1=79.0, fps=200.0), record(), 0.10)
    noted = gate.GateFinding(Kind.REGRESSION, "r", "perf/fps", "x", binding=False)
    kept = [f.as_dict() for f in findings + [noted]]
    assert gate.findings_of(Row.of({**record(), "gate": kept})) == findings + [noted]


# -- the pinned references beside the last night -----------------------------------------------------

def _pin(tmp_path, records, run_id="accepted"):
    path = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, run_id, records), path, allow_weak=True)
    return path


def test_the_pin_binds_and_the_last_night_is_noted(tmp_path):
    baseline = gate.load_baseline(write_night(tmp_path, "last", [record(fps=60.0)]), _pin(tmp_path, [record()]))
    findings = baseline.judge(_row(record(fps=55.0)), 0.10)
    failing = [f for f in findings if f.failing]
    assert [(f.kind, f.what, f.against) for f in failing] == [(Kind.REGRESSION, "perf/fps", "pinned")]
    assert "55 fps vs pinned 100 (-45.0%, allowed drop 10%); pinned from run accepted (commit abc1234, 2026-11-20" \
        in str(failing[0])
    noted = [f for f in findings if not f.binding]
    assert {(f.kind, f.what, f.against) for f in noted} >= {(Kind.WITHIN, "perf/fps", "baseline")}
    # against the last night alone, the same figure is inside its band
    assert not [f for f in gate.load_baseline(write_night(tmp_path, "last", [record(fps=60.0)])).judge(_row(record(fps=55.0)), 0.10) if f.failing]


def test_a_row_without_a_pin_is_reported_not_failed_and_a_pinned_figure_now_broken_fails(tmp_path):
    baseline = gate.load_baseline(references=_pin(tmp_path, [record()]))
    found = baseline.judge(_row(record(bs=2)), 0.10)
    assert [(f.kind, f.failing) for f in found] == [(Kind.NO_REFERENCE, False)]
    assert "m/onnxruntime/fp32/bs2 (smoke profile, no soc) has no pinned reference" in str(found[0])
    found = baseline.judge(_row(set_value(record(), "accuracy/top1", math.nan)), 0.10)
    assert _kinds(found) == [(Kind.NOT_COMPARABLE, "accuracy/top1")] and found[-1].failing is not None
    assert [f for f in found if f.failing][0].what == "accuracy/top1"


def test_a_row_without_a_pin_is_gated_against_the_last_night(tmp_path):
    baseline = gate.load_baseline(write_night(tmp_path, "last", [record(1), record(2)]), _pin(tmp_path, [record(1)]))
    found = baseline.judge(_row(record(2, fps=50.0)), 0.10)
    assert [(f.kind, f.against, f.failing) for f in found if f.kind is not Kind.WITHIN] == [
        (Kind.NO_REFERENCE, "pinned", False), (Kind.REGRESSION, "baseline", True)]
    pinned_row = baseline.judge(_row(record(1, fps=50.0)), 0.10)
    assert [(f.against, f.failing) for f in pinned_row if f.kind is Kind.REGRESSION] == [("pinned", True), ("baseline", False)]


def test_a_pin_is_per_soc_and_profile(tmp_path):
    baseline = gate.load_baseline(references=_pin(tmp_path, [record(soc="Ascend310P3", profile="full")]))
    found = baseline.judge(_row(record()), 0.10)
    assert [(f.kind, f.failing) for f in found] == [(Kind.PIN_ELSEWHERE, False)]
    assert ("pinned on profile 'full', soc 'Ascend310P3'; this run on profile 'smoke', soc None; treated as unpinned "
            "here") in str(found[0])
    assert _kinds(baseline.judge(_row(record(soc="Ascend310P3", profile="full", fps=50.0)), 0.10)) == [
        (Kind.REGRESSION, "perf/fps")]


# -- whole runs, as the nightly compares them ------------------------------------------------------

def _night(bs=(1, 2)):
    return [record(b) for b in bs]


def _gate(capsys, new, *options) -> tuple[int, str]:
    status = gate.main([str(new), *map(str, options)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_run_against_itself_passes(tmp_path, capsys):
    run = write_night(tmp_path, "run", _night())
    status, out = _gate(capsys, run, "--baseline", run)
    assert status == 0, out
    assert "6 figure(s) compared over 2 row(s)" in out and "note:" not in out


def test_a_row_missing_from_the_new_run_fails_naming_it(tmp_path, capsys):
    old = write_night(tmp_path, "old", _night())
    status, out = _gate(capsys, write_night(tmp_path, "new", _night(bs=(1,))), "--baseline", old)
    assert status == 1
    assert "MISSING m/onnxruntime/fp32/bs2 row: in the baseline rows, not in this run" in out
    status, out = _gate(capsys, write_night(tmp_path, "new", _night(bs=(1,))), "--references", _pin(tmp_path, _night()))
    assert status == 1 and "MISSING m/onnxruntime/fp32/bs2 row: in the pinned rows, not in this run" in out


def test_a_part_missing_from_a_row_fails_naming_each_figure(tmp_path, capsys):
    """A failing accuracy step that skipped perf: that night must not pass the gate."""
    records = _night()
    drop(records[1], "perf/fps")
    status, out = _gate(capsys, write_night(tmp_path, "new", records), "--baseline", write_night(tmp_path, "old", _night()))
    assert status == 1 and "MISSING m/onnxruntime/fp32/bs2 perf/fps: baseline 200, this run has no figure" in out


def test_an_errored_row_fails_naming_it_and_its_reason(tmp_path, capsys):
    records = _night()
    records[0] = {**{k: records[0][k] for k in ("model", "backend", "precision", "batch_size", "profile", "soc")},
                  "status": "error", "error": {"type": "InvalidArgument", "message": "input x has shape [1,3]"}}
    status, out = _gate(capsys, write_night(tmp_path, "new", records), "--baseline", write_night(tmp_path, "old", _night()))
    assert status == 1
    assert "ERRORED m/onnxruntime/fp32/bs1 row: InvalidArgument: input x has shape [1,3]" in out


def test_a_baseline_with_nan_accuracy_is_not_compared_on_fps_alone(tmp_path, capsys):
    """Issue 18: a baseline whose accuracy figures are NaN passed as '0 not comparable'."""
    broken = [set_value(set_value(record(b), "accuracy/top1", math.nan), "accuracy/epe", math.nan) for b in (1, 2)]
    status, out = _gate(capsys, write_night(tmp_path, "new", _night()), "--baseline", write_night(tmp_path, "old", broken))
    assert status == 1
    assert "NOT COMPARABLE m/onnxruntime/fp32/bs1 accuracy/top1: this run 80, the baseline has nan" in out
    assert "4 not comparable" in out


def test_expected_out_of_memory_rows_in_both_runs_pass(tmp_path, capsys):
    oom = {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": 4, "profile": "smoke",
           "soc": None, "status": "oom", "error": {"type": "MemoryError", "message": "out of memory"}, "figures": []}
    night = _night() + [oom]
    status, out = _gate(capsys, write_night(tmp_path, "new", night), "--baseline", write_night(tmp_path, "old", copy.deepcopy(night)))
    assert status == 0, out


def test_different_machines_or_tool_versions_are_noted_not_failed(tmp_path, capsys):
    other = {**ENVIRONMENT, "cpu": "AMD EPYC", "onnxruntime": "1.23.0"}
    status, out = _gate(capsys, write_night(tmp_path, "new", _night(), environment=other),
                        "--baseline", write_night(tmp_path, "old", _night()))
    assert status == 0
    assert ("note: this run and the baseline {} come from different machines or tool versions: "
            "cpu: 'Intel Xeon' -> 'AMD EPYC'; onnxruntime: '1.22.0' -> '1.23.0'").format(tmp_path / "old" / "results.json") in out


def test_a_slower_night_fails_and_the_allowed_drop_is_an_option_per_soc(tmp_path, capsys):
    slow = [record(1, fps=80.0), record(1, fps=80.0, soc="Ascend310P3", backend="ascend")]
    fast = [record(1), record(1, soc="Ascend310P3", backend="ascend")]
    new, old = write_night(tmp_path, "new", slow), write_night(tmp_path, "old", fast)
    status, out = _gate(capsys, new, "--baseline", old)
    assert status == 1 and "REGRESSION m/onnxruntime/fp32/bs1 perf/fps: 80 fps vs baseline 100 (-20.0%, allowed drop 10%)" in out
    status, out = _gate(capsys, new, "--baseline", old, "--fps-regression=0.3")
    assert status == 0, out
    status, out = _gate(capsys, new, "--baseline", old, "--fps-regression=0.3", "--fps-regression=Ascend310P3=0.1")
    assert status == 1 and "REGRESSION m/ascend/fp32/bs1 perf/fps" in out and "onnxruntime/fp32/bs1 perf" not in out


@pytest.mark.parametrize("content, message", [
    ("{", "not JSON"),
    (json.dumps({"run_id": "old", "records": []}), f"results.json format 1, this suite reads format {FORMAT}"),
    (json.dumps({"format": FORMAT, "records": [{"model": "m"}]}), "record 0 lacks backend, precision, batch_size"),
])
def test_a_baseline_that_cannot_be_read_is_a_usage_error_naming_the_file(tmp_path, capsys, content, message):
    broken = tmp_path / "broken.json"
    broken.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        gate.main([str(write_night(tmp_path, "new", _night())), "--baseline", str(broken)])
    assert exit_info.value.code == 2
    assert f"{broken}: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("rows: [", "not YAML"),
    ("format: 7\nrows: []\n", "pinned-references format 7, this suite reads format 2"),
    ("format: 2\nruns: {}\nrows:\n- {model: m}\n", "row 0 lacks backend, precision, batch_size"),
    ("format: 2\nruns: {}\nrows: []\nrows: []\n", "duplicate key 'rows' on line 4 (first on line 3)"),
    ("format: 2\nruns: {}\nrows: []\npins: []\n", "the file: unknown field(s) pins"),
])
def test_references_that_cannot_be_read_are_a_usage_error_naming_the_file(tmp_path, capsys, content, message):
    broken = tmp_path / "pinned.yaml"
    broken.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        gate.main([str(write_night(tmp_path, "new", _night())), "--references", str(broken)])
    assert exit_info.value.code == 2 and f"{broken}: {message}" in capsys.readouterr().err


def test_nothing_comparable_exits_2_and_the_gate_needs_something_to_compare_with(tmp_path, capsys):
    empty = write_night(tmp_path, "empty", [])
    status, out = _gate(capsys, empty, "--baseline", empty)
    assert status == 2 and "nothing was gated" in out
    with pytest.raises(SystemExit) as exit_info:
        gate.main([str(empty)])
    assert exit_info.value.code == 2 and "give --references FILE" in capsys.readouterr().err


def test_the_verdict_is_written_as_markdown_for_the_job_summary(tmp_path, capsys):
    markdown = tmp_path / "gate.md"
    status, _ = _gate(capsys, write_night(tmp_path, "new", [record(1, fps=50.0), record(2)]),
                      "--references", _pin(tmp_path, [record(1)]), "--markdown", markdown)
    text = markdown.read_text()
    assert status == 1 and text.startswith("## Gate\n\n**RED**:")
    assert "### Failing\n\n- REGRESSION m/onnxruntime/fp32/bs1 perf/fps: 50 fps vs pinned 100 (-50.0%" in text
    assert "### Without a pinned reference\n\n- NO PINNED REFERENCE m/onnxruntime/fp32/bs2 row" in text


# -- the slow drift the pins exist for (issue 20's done-when) ----------------------------------------

def test_a_slow_drift_is_red_against_the_pin_and_green_against_each_last_night(tmp_path, capsys):
    nights = drifting_nights(tmp_path / "reports", 8)
    pinned = tmp_path / "pinned.yaml"
    references.update(nights[0], pinned, allow_weak=True)
    for before, after in zip(nights, nights[1:]):  # the ratchet: every night inside the last night's band
        status, out = _gate(capsys, after, "--baseline", before)
        assert status == 0, out
    status, out = _gate(capsys, nights[-1], "--references", pinned, "--baseline", nights[-2])
    assert status == 1
    assert ("REGRESSION m/onnxruntime/fp32/bs1 perf/fps: 55.78 fps vs pinned 100 (-44.2%, allowed drop 10%); "
            "pinned from run night-0 (commit abc1234, 2026-11-20T02:00:00+00:00") in out
    assert "REGRESSION m/onnxruntime/fp32/bs1 accuracy/top1: 79.72% vs pinned 80% (-0.28%, tolerance ±0.1)" in out
    assert "m/onnxruntime/fp32/bs2" not in out.split("figure(s) compared")[0]
    assert "note (against the last night, not gated)" not in out  # last night: every figure within its band


# -- the gate in the run ---------------------------------------------------------------------------

IN_RUN = ("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy or perf", "--loop=3")
IN_RUN_TESTS = ("test_accuracy.py", "test_perf.py")


def test_the_in_run_gate_holds_rows_to_their_pin_and_notes_the_last_night(run_suite, tmp_path):
    """--references in the run: green against a pin of the night as it was; red naming the row,
    the figure and the pin when the pin is better, whatever the last night says."""
    night = run_suite(*IN_RUN, tests=IN_RUN_TESTS)
    night.assert_outcomes(passed=2)
    faithful = tmp_path / "faithful" / "results.json"
    faithful.parent.mkdir()
    faithful.write_text(json.dumps(night.results))
    as_it_was = tmp_path / "as_it_was.yaml"
    references.update(faithful, as_it_was, allow_weak=True)
    run_suite(*IN_RUN, f"--references={as_it_was}", f"--baseline={faithful}", "--fps-regression=0.9",
              tests=IN_RUN_TESTS).assert_outcomes(passed=2)
    better = json.loads(faithful.read_text())
    for f in (f for r in better["records"] for f in r["figures"]):
        f["value"] = {"top1": 50.0, "fps": 1e6}.get(f["name"], f["value"])
    doctored = tmp_path / "better" / "results.json"
    doctored.parent.mkdir()
    doctored.write_text(json.dumps({**better, "run_id": "the-better-night"}))
    pinned = tmp_path / "pinned.yaml"
    references.update(doctored, pinned, allow_weak=True)
    red = run_suite(*IN_RUN, f"--references={pinned}", f"--baseline={faithful}", "--fps-regression=0.9",
                    tests=IN_RUN_TESTS)
    red.assert_outcomes(failed=2)
    red.stdout.fnmatch_lines([
        "*against the pinned reference: REGRESSION efficient3dcnn/onnxruntime/fp32/bs1 accuracy/top1: * vs pinned 50%"
        "*pinned from run the-better-night*",
        "*against the pinned reference: REGRESSION efficient3dcnn/onnxruntime/fp32/bs1 perf/fps: * vs pinned 1e+06*"],
        consecutive=False)
    notes = red.results["notes"]
    assert f"gate against the pinned references {pinned} and the baseline {faithful}: 2 failing finding(s), 0 improvement(s)" \
        in notes and any(n.startswith("REGRESSION efficient3dcnn/onnxruntime/fp32/bs1 accuracy/top1") for n in notes)


def test_the_in_run_gate_fails_a_figure_the_baseline_holds_as_nan(run_suite, tmp_path):
    """Issue 18: a baseline whose accuracy figures are NaN was compared on FPS alone."""
    night = run_suite(*IN_RUN, tests=IN_RUN_TESTS)
    for f in (f for r in night.results["records"] for f in r["figures"] if f["kind"] == "accuracy"):
        f["value"] = float("nan")  # json writes NaN, as a hand-edited or foreign results.json may hold
    broken = tmp_path / "nan.json"
    broken.write_text(json.dumps(night.results))
    red = run_suite(*IN_RUN, f"--baseline={broken}", "--fps-regression=0.9", tests=IN_RUN_TESTS)
    red.assert_outcomes(passed=1, failed=1)
    red.stdout.fnmatch_lines(["*against the baseline: NOT COMPARABLE efficient3dcnn/onnxruntime/fp32/bs1 accuracy/top1: "
                              "this run 0, the baseline has nan*"])


def test_a_gate_file_that_cannot_be_read_stops_the_run_before_any_row(run_suite, tmp_path):
    broken = tmp_path / "pinned.yaml"
    broken.write_text("rows: [")
    result = run_suite(*IN_RUN, f"--references={broken}", tests=IN_RUN_TESTS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--references {broken}: not YAML" in result.stderr.str()
    corrupt = tmp_path / "results.json"
    corrupt.write_text('{"format": 2, "records": [')
    result = run_suite(*IN_RUN, f"--baseline={corrupt}", tests=IN_RUN_TESTS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR and f"--baseline {corrupt}: not JSON" in result.stderr.str()


# -- the perf rounds' distributions (issue 25) ----------------------------------------------------------

def _timed(ms: list[float], bs: int = 1) -> dict:
    row = record(bs, fps=1000.0 * bs / sorted(ms)[len(ms) // 2])
    return {**row, "perf": {"rounds_ms": ms}}


def _noisy(median_ms: float, spread: float, rounds: int, seed: int) -> list[float]:
    import numpy as np

    return list(median_ms * np.exp(spread * np.random.default_rng(seed).standard_normal(rounds)))


@pytest.mark.parametrize("slower, spread, rounds, kind", [
    (1.15, 0.03, 200, Kind.REGRESSION),  # established beyond the allowance
    (1.00, 0.03, 200, Kind.WITHIN),  # the same speed, measured well
    (1.08, 0.30, 6, Kind.INCONCLUSIVE),  # the noise is wider than the allowance
])
def test_speed_with_rounds_on_both_sides_is_judged_by_their_distributions(slower, spread, rounds, kind):
    now, then = _timed(_noisy(20.0 * slower, spread, rounds, 1)), _timed(_noisy(20.0, spread, rounds, 2))
    found = [f for f in compare(now, then, 0.10) if f.what == "perf/fps"]
    assert [f.kind for f in found] == [kind], [str(f) for f in found]
    assert "95 % interval" in found[0].detail
    if kind is Kind.INCONCLUSIVE:
        assert not found[0].failing and "rounds a side would settle it" in found[0].detail


def test_a_pin_keeps_its_rounds_and_the_gate_reads_them(tmp_path):
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "accepted", [_timed(_noisy(20.0, 0.03, 100, 3))]), pinned)
    pin = references.load(pinned).match(Row.of(record(1)).key).pin
    assert len(pin.rounds_ms) == 100
    baseline = gate.load_baseline(references=pinned)
    found = baseline.judge(Row.of(_timed(_noisy(23.0, 0.03, 100, 4))), 0.10)
    assert [(f.kind, f.what) for f in found if f.kind is not Kind.WITHIN] == [(Kind.REGRESSION, "perf/fps")]
    assert "regression: 0.8" in str(found[-1]) and "pinned from run accepted" in str(found[-1])
