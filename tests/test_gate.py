"""The regression gate: one row comparison, and whole runs judged from their results.json files
(as `python -m harness.gate` does), doctored the ways a nightly goes wrong."""
from __future__ import annotations

import copy
import json
import math

import pytest

from harness import gate
from harness.gate import Kind

KEY = ("m", "onnxruntime", "fp32", 1)
ENVIRONMENT = {"python": "3.11.9", "cpu": "Intel Xeon", "cores": 2, "torch": "2.13.0", "onnxruntime": "1.22.0"}


def _record(bs=1, top1=80.0, epe=2.0, fps=100.0, **fields) -> dict:
    return {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": bs, "profile": "smoke",
            "accuracy": {"top1": {"torch": top1, "deployed": top1, "tolerance": 0.1, "verdict": "pass",
                                  "higher_is_better": True},
                         "epe": {"torch": epe, "deployed": epe, "tolerance": 0.05, "verdict": "pass",
                                 "higher_is_better": False}},
            "conformance": {"passed": True, "outside_tolerance": 0},
            "perf": {"fps": fps * bs, "best_fps": 1.1 * fps * bs}, **fields}


def _kinds(findings) -> list[tuple[Kind, str]]:
    return [(f.kind, f.what) for f in findings if f.kind is not Kind.WITHIN]


def test_a_row_within_its_bands_has_only_within_findings():
    findings = gate.compare_row(KEY, _record(), _record(), 0.10)
    assert {f.kind for f in findings} == {Kind.WITHIN}
    assert {f.what for f in findings} == {"top1", "epe", "fps (best round)", "conformance"}


def test_accuracy_regressions_and_improvements_follow_the_metric_direction():
    now = _record(top1=79.0, epe=1.9)  # top1 worse by 1 (tolerance 0.1); epe better by 0.1 (tolerance 0.05)
    findings = gate.compare_row(KEY, now, _record(), 0.10)
    assert _kinds(findings) == [(Kind.IMPROVEMENT, "epe"), (Kind.REGRESSION, "top1")]
    assert "REGRESSION m/onnxruntime/fp32/bs1 top1: 79 vs baseline 80 (tolerance ±0.1)" in map(str, findings)
    assert _kinds(gate.compare_row(KEY, _record(epe=2.1), _record(), 0.10)) == [(Kind.REGRESSION, "epe")]


def test_fps_is_judged_by_the_allowed_drop():
    assert _kinds(gate.compare_row(KEY, _record(fps=80.0), _record(), 0.10)) == [(Kind.REGRESSION, "fps (best round)")]
    assert _kinds(gate.compare_row(KEY, _record(fps=95.0), _record(), 0.10)) == []
    assert _kinds(gate.compare_row(KEY, _record(fps=120.0), _record(), 0.10)) == [(Kind.IMPROVEMENT, "fps (best round)")]


def test_a_partial_record_compares_only_what_it_has():
    """The in-run tests hand over their own part of the row: accuracy without perf and so on."""
    accuracy_only = {"profile": "smoke", "accuracy": _record(top1=79.0)["accuracy"]}
    findings = gate.compare_row(KEY, accuracy_only, _record(), 0.10)
    assert {f.what for f in findings} == {"top1", "epe"}
    perf_only = {"profile": "smoke", "perf": {"fps": 50.0}}
    assert _kinds(gate.compare_row(KEY, perf_only, _record(), 0.10)) == [(Kind.REGRESSION, "fps (best round)")]


@pytest.mark.parametrize("value", [math.nan, math.inf, None, "n/a"])
def test_a_figure_the_baseline_has_and_this_run_cannot_compare_fails(value):
    now = _record()
    now["accuracy"]["top1"]["deployed"] = value
    now["perf"]["best_fps"] = now["perf"]["fps"] = value
    found = _kinds(gate.compare_row(KEY, now, _record(), 0.10))
    assert found == [(Kind.NOT_COMPARABLE, "top1"), (Kind.NOT_COMPARABLE, "fps (best round)")]
    assert all(k.failing for k, _ in found)


def test_a_metric_missing_from_this_run_fails_and_one_without_samples_in_both_is_fine():
    now = _record()
    del now["accuracy"]["epe"]
    assert _kinds(gate.compare_row(KEY, now, _record(), 0.10)) == [(Kind.MISSING, "epe")]
    both_empty = _record()
    both_empty["accuracy"]["epe"].update(torch=math.nan, deployed=math.nan, verdict="n/a")
    assert _kinds(gate.compare_row(KEY, both_empty, copy.deepcopy(both_empty), 0.10)) == []


def test_errored_and_out_of_memory_rows():
    errored = {"profile": "smoke", "status": "error", "reason": "RuntimeError: AI Core exception"}
    assert [str(f) for f in gate.compare_row(KEY, errored, None, 0.10)] == [
        "ERRORED m/onnxruntime/fp32/bs1 row: RuntimeError: AI Core exception"]
    oom = {"profile": "smoke", "status": "oom", "reason": "aclrtMalloc failed",
           "perf": {"status": "oom", "reference_fps": "oom"}}
    assert gate.compare_row(KEY, oom, copy.deepcopy(oom), 0.10) == []  # the seed's expected row, both nights
    found = gate.compare_row(KEY, oom, _record(), 0.10)
    assert _kinds(found) == [(Kind.ERRORED, "row")] and "aclrtMalloc failed" in str(found[0])
    assert _kinds(gate.compare_row(KEY, _record(), oom, 0.10)) == [(Kind.IMPROVEMENT, "row")]


def test_rows_at_other_shapes_are_not_compared():
    found = gate.compare_row(KEY, _record(profile="full"), _record(), 0.10)
    assert _kinds(found) == [(Kind.NOT_COMPARABLE, "row")] and "full" in str(found[0]) and "smoke" in str(found[0])


def test_a_conformance_that_stopped_passing_is_a_regression():
    now = _record(conformance={"passed": False, "outside_tolerance": 12})
    assert _kinds(gate.compare_row(KEY, now, _record(), 0.10)) == [(Kind.REGRESSION, "conformance")]


def test_findings_record_keeps_failing_findings_and_improvements_as_text():
    findings = gate.compare_row(KEY, _record(top1=79.0, fps=200.0), _record(), 0.10)
    kept = gate.findings_record(findings)
    assert kept["regressions"] == ["REGRESSION m/onnxruntime/fp32/bs1 top1: 79 vs baseline 80 (tolerance ±0.1)"]
    assert len(kept["improvements"]) == 1 and "fps" in kept["improvements"][0]


# -- whole runs, as the nightly compares them ------------------------------------------------------

def _write_run(tmp_path, name, records, environment=ENVIRONMENT):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"run_id": name, "environment": environment, "records": records}))
    return str(path)


def _night(bs=(1, 2)):
    return [_record(b) for b in bs]


def _gate(capsys, new, old, *options) -> tuple[int, str]:
    status = gate.main([new, "--baseline", old, *options])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_run_against_itself_passes(tmp_path, capsys):
    run = _write_run(tmp_path, "run", _night())
    status, out = _gate(capsys, run, run)
    assert status == 0, out
    assert "8 figure(s) compared over 2 common row(s)" in out and "note:" not in out


def test_a_row_missing_from_the_new_run_fails_naming_it(tmp_path, capsys):
    old = _write_run(tmp_path, "old", _night())
    new = _write_run(tmp_path, "new", _night(bs=(1,)))
    status, out = _gate(capsys, new, old)
    assert status == 1
    assert "MISSING m/onnxruntime/fp32/bs2 row: in the baseline, not in this run" in out


def test_a_part_missing_from_a_row_fails_naming_it(tmp_path, capsys):
    """The old nightly's accuracy step failing skipped perf: that night must not pass the gate."""
    records = _night()
    del records[1]["perf"]
    status, out = _gate(capsys, _write_run(tmp_path, "new", records), _write_run(tmp_path, "old", _night()))
    assert status == 1 and "MISSING m/onnxruntime/fp32/bs2 perf: in the baseline row, not in this run's" in out


def test_an_errored_row_fails_naming_it_and_its_reason(tmp_path, capsys):
    records = _night()
    records[0] = {**{k: records[0][k] for k in ("model", "backend", "precision", "batch_size", "profile")},
                  "status": "error", "reason": "InvalidArgument: input x has shape [1,3] expected [1,3,16]"}
    status, out = _gate(capsys, _write_run(tmp_path, "new", records), _write_run(tmp_path, "old", _night()))
    assert status == 1
    assert "ERRORED m/onnxruntime/fp32/bs1 row: InvalidArgument: input x has shape" in out


def test_a_nan_figure_fails_as_not_comparable(tmp_path, capsys):
    records = _night()
    records[1]["accuracy"]["top1"]["deployed"] = math.nan  # json writes NaN, as results.json does
    status, out = _gate(capsys, _write_run(tmp_path, "new", records), _write_run(tmp_path, "old", _night()))
    assert status == 1 and "NOT COMPARABLE m/onnxruntime/fp32/bs2 top1: deployed nan" in out


def test_expected_out_of_memory_rows_in_both_runs_pass(tmp_path, capsys):
    oom = {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": 4, "profile": "smoke",
           "status": "oom", "reason": "out of memory", "perf": {"status": "oom", "reference_fps": "oom"}}
    night = _night() + [oom]
    status, out = _gate(capsys, _write_run(tmp_path, "new", night), _write_run(tmp_path, "old", copy.deepcopy(night)))
    assert status == 0, out


def test_different_machines_or_tool_versions_are_noted_not_failed(tmp_path, capsys):
    other = {**ENVIRONMENT, "cpu": "AMD EPYC", "onnxruntime": "1.23.0"}
    status, out = _gate(capsys, _write_run(tmp_path, "new", _night(), other), _write_run(tmp_path, "old", _night()))
    assert status == 0
    assert ("note: the two runs come from different machines or tool versions: "
            "cpu: 'Intel Xeon' -> 'AMD EPYC'; onnxruntime: '1.22.0' -> '1.23.0'") in out


def test_a_row_run_with_other_runtime_settings_is_noted(tmp_path, capsys):
    new, old = _night(), _night()
    new[0]["environment"], old[0]["environment"] = {"providers": "['CPUExecutionProvider']"}, {"providers": "['CUDAExecutionProvider']"}
    status, out = _gate(capsys, _write_run(tmp_path, "new", new), _write_run(tmp_path, "old", old))
    assert status == 0 and ("note: m/onnxruntime/fp32/bs1 ran with other runtime settings: "
                            "providers: \"['CUDAExecutionProvider']\" -> \"['CPUExecutionProvider']\"") in out


def test_a_slower_night_fails_and_the_allowed_drop_is_an_option(tmp_path, capsys):
    slow = [_record(b, fps=80.0) for b in (1, 2)]
    new, old = _write_run(tmp_path, "new", slow), _write_run(tmp_path, "old", _night())
    status, out = _gate(capsys, new, old)
    assert status == 1 and "REGRESSION m/onnxruntime/fp32/bs1 fps (best round): 88 vs baseline 110" in out
    assert _gate(capsys, new, old, "--fps-regression=0.3")[0] == 0


def test_nothing_comparable_and_unreadable_files_exit_2(tmp_path, capsys):
    empty = _write_run(tmp_path, "empty", [])
    status, out = _gate(capsys, empty, empty)
    assert status == 2 and "nothing was gated" in out
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(SystemExit) as exit_info:
        gate.main([str(tmp_path / "broken.json"), "--baseline", empty])
    assert exit_info.value.code == 2
    assert "broken.json: not a results.json written by this suite" in capsys.readouterr().err
