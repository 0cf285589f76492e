"""The night a team can leave running (issue 26): every pin read strictly and applied only where
it was taken, a gate that is complete (its own verdict, rows gone missing, backends absent), runs
that are nights kept apart from partial ones, and a history that survives gaps. Each case was red
before: it names the item of the issue it closes."""
from __future__ import annotations

import json
import math

import pytest

from fabricated_nights import record, set_value, write_night
from harness import gate, history, references
from harness.environment import machine
from harness.figures import FigureKind
from harness.gate import Kind
from harness.records import Row, RowKey

OTHER_MACHINE = "AMD EPYC 9654 96-Core Processor, 192 cores"


def _pinned(tmp_path, rows, name="accepted") -> references.References:
    path = tmp_path / f"{name}.yaml"
    references.update(write_night(tmp_path, name, rows), path, allow_weak=True)
    return references.load(path)


def _gate_cli(capsys, results, *options) -> tuple[int, str]:
    status = gate.main([str(results), *map(str, options)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


# -- 5. pins that do not apply are named, with what differs ------------------------------------------

def test_a_pin_from_another_machine_is_named_and_the_row_treated_as_unpinned(tmp_path):
    pins = _pinned(tmp_path, [record(1, machine=OTHER_MACHINE)])
    here = Row.of(record(1, machine=machine(), fps=10.0))
    found = gate.Baseline(pins).judge(here, 0.10)
    assert [(f.kind, f.failing) for f in found] == [(Kind.PIN_ELSEWHERE, False)]
    assert f"pinned on machine '{OTHER_MACHINE}'; this run on machine '{machine()}'" in str(found[0])


def test_a_pin_set_from_other_weights_is_named_not_read_as_a_regression(tmp_path):
    pins = _pinned(tmp_path, [record(1)])
    other = Row.of(record(1, top1=20.0, weights={"source": "checkpoint", "sha256": "f808f496" + "0" * 56}))
    found = gate.Baseline(pins).judge(other, 0.10)
    assert [f.kind for f in found] == [Kind.PIN_ELSEWHERE]
    assert "pinned from weights sha256:73547d2b" in str(found[0]) and "-> sha256:f808f496" in str(found[0])


# -- 6. rows and backends that vanish are named ------------------------------------------------------

def test_a_pinned_row_missing_from_a_backend_that_ran_fails_and_an_absent_backend_is_named(tmp_path, capsys):
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "accepted", [record(1), record(2), record(1, backend="ascend", soc="Ascend310P3")]),
                      pinned, allow_weak=True)
    status, out = _gate_cli(capsys, write_night(tmp_path, "tonight", [record(1)]), "--references", pinned)
    assert status == 1
    assert "MISSING m/onnxruntime/fp32/bs2 row: in the pinned rows, not in this run" in out
    assert "ABSENT ascend rows: 1 pinned row(s) of ascend, no row of it in this run: m/ascend/fp32/bs1" in out


def test_the_in_run_gate_fails_a_pinned_row_the_run_was_asked_for_and_did_not_run(run_suite, tmp_path):
    """Two batch sizes pinned; the run is asked for both and runs one (-k): the other is named
    missing and the run is red; another model's pin is named as not asked."""
    options = ("--models=efficient3dcnn", "--batch-sizes=1,2", "-m", "accuracy or perf", "--loop=3")
    tests = ("test_accuracy.py", "test_perf.py")
    night = run_suite(*options, tests=tests)
    night.assert_outcomes(passed=4)
    accepted = tmp_path / "accepted" / "results.json"
    accepted.parent.mkdir()
    flavr = {**night.results["records"][0], "model": "flavr"}
    accepted.write_text(json.dumps({**night.results, "records": night.results["records"] + [flavr]}))
    pinned = tmp_path / "pinned.yaml"
    references.update(accepted, pinned, allow_weak=True)
    red = run_suite(*options, "-k", "bs1", f"--references={pinned}", tests=tests)
    assert red.ret == pytest.ExitCode.TESTS_FAILED
    red.stdout.fnmatch_lines(["*gate: MISSING efficient3dcnn/onnxruntime/fp32/bs2 row: pinned (pinned from run *) and "
                              "asked for, but this run has no row of it*",
                              "*gate: NOT ASKED 1 pinned row(s) rows: not asked in this run, so not gated here: "
                              "flavr/onnxruntime/fp32/bs1*"], consecutive=False)


# -- 7. a row red on its own verdict is red in the gate -----------------------------------------------

def test_a_row_whose_own_verdict_failed_is_red_with_its_figures_inside_their_pins(tmp_path, capsys):
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "accepted", [record(1)]), pinned, allow_weak=True)
    failed = record(1, status="fail", findings=[{"kind": "failure", "part": "accuracy", "what": "element-wise",
                                                 "message": "12 of 4096 elements outside atol 1e-4"}])
    status, out = _gate_cli(capsys, write_night(tmp_path, "tonight", [failed]), "--references", pinned)
    assert status == 1
    assert "RED m/onnxruntime/fp32/bs1 row: its own verdict is fail: element-wise: 12 of 4096 elements outside" in out


# -- 3. the first night: the exit status and the words agree ------------------------------------------

def test_the_first_night_says_nothing_is_pinned_yet_and_exits_2(tmp_path, capsys):
    empty = tmp_path / "pinned.yaml"
    empty.write_text("format: 2\nruns: {}\nrows: []\n")
    markdown = tmp_path / "gate.md"
    status, out = _gate_cli(capsys, write_night(tmp_path, "first", [record(1)]), "--references", empty,
                            "--markdown", markdown)
    assert status == 2 and "nothing pinned yet" in out
    text = markdown.read_text()
    assert "**NOT GATED**" in text and "GREEN" not in text and "nothing pinned yet" in text


# -- 9. nights are runs a night would make ------------------------------------------------------------

def test_setup_plan_writes_nothing_and_a_partial_run_leaves_latest_on_the_last_whole_one(run_suite, pytester):
    whole = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy")
    latest = pytester.path / "reports" / "latest"
    first = latest.resolve()
    assert whole.results["partial"] == ["--models efficient3dcnn"]
    plan = run_suite("--setup-plan", "-m", "accuracy", "--models=efficient3dcnn", latest=False)
    assert plan.ret == 0 and latest.resolve() == first
    assert len([p for p in (pytester.path / "reports").iterdir() if p.name != "latest"]) == 1, "the plan wrote no run"
    limited = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy", "--limit=1", latest=False)
    assert limited.ret == 0 and latest.resolve() == first, "a --limit run is not the latest night"



def test_two_runs_given_one_id_keep_their_records_apart(run_suite, pytester, monkeypatch):
    """Two runs of one process within a second (or two containers' processes with one pid) get
    one id; the second used to append its rows to the first's and report the first's notes."""
    from harness import records

    monkeypatch.setattr(records, "new_run_id", lambda: "20261207T124457Z-4502")
    options = ("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy", "--limit=1")
    first, second = run_suite(*options), run_suite(*options)
    assert (first.results["run_id"], second.results["run_id"]) == ("20261207T124457Z-4502", "20261207T124457Z-4502.2")
    assert len(first.results["records"]) == len(second.results["records"]) == 1
    unit_only = run_suite("-k", "nothing_matches", latest=False)
    runs = sorted(p.name for p in (pytester.path / "reports").iterdir() if p.name != "latest")
    assert unit_only.ret == 5 and runs == ["20261207T124457Z-4502", "20261207T124457Z-4502.2"], runs

def test_the_history_reads_nights_only_and_names_what_it_left_out(tmp_path):
    night = write_night(tmp_path, "night", [record(1)], 0)
    partial = write_night(tmp_path, "limited", [record(1)], 1)
    data = json.loads(partial.read_text())
    partial.write_text(json.dumps({**data, "partial": ["--limit 3"]}))
    nights, skipped = history.load_nights([night, partial])
    assert [n.run_id for n in nights] == ["night"] and skipped == [f"limited ({partial}): not a night: --limit 3"]


# -- 10. the history tells the truth --------------------------------------------------------------------

def _drift_with_gaps(tmp_path) -> list:
    """FPS: pinned 100; night 2 drops to 80 and stays; night 3 has no row, night 4 a null figure."""
    fps = [100.0, 100.0, 80.0, None, 80.0, 80.0]
    paths = []
    for night, value in enumerate(fps):
        rows = [] if value is None else [record(1, fps=value)]
        if night == 4:
            rows = [set_value(record(1, fps=80.0), "accuracy/top1", None)]
        paths.append(write_night(tmp_path / "reports", f"night-{night}", rows + [record(2)], night))
    return paths


def test_since_survives_a_missing_night_which_is_listed_failed_with_its_reason(tmp_path):
    paths = _drift_with_gaps(tmp_path)
    nights, _ = history.load_nights(paths)
    pins = _pinned(tmp_path, [record(1), record(2)])
    row = next(r for r in history.row_histories(nights, pins) if r.key.batch_size == 1)
    assert row.figures["perf/fps"].since() == 2, "the gap on night 3 does not reset 'since'"
    assert row.failed[3] == "missing: the night has no row of it"
    assert row.figures["accuracy/top1"].values[4] is None, "a null figure is missing, not +0 %"
    out = tmp_path / "history"
    text = history.write_history(nights, pins, out).read_text()
    assert "### Why nights failed" in text and "- 11-23 m/onnxruntime/fp32/bs1: missing: the night has no row of it" in text
    assert row.figures["perf/fps"].steps()[0].index == 2, "the step is named at the night it began, across the gap"
    assert "| perf/fps | 100 | 80 | -20.0% | **11-22** (night-2) | 11-22 (-20.0%) |" in text
    assert "- 11-22 m/onnxruntime/fp32/bs1: REGRESSION m/onnxruntime/fp32/bs1 perf/fps: 80 fps vs pinned 100" in text


def test_drift_png_keeps_its_scale_when_one_figure_jumps(tmp_path):
    """A -0.5 dB step is thousands of allowances: drawn at the scale's edge with its value written,
    so that an FPS drift of -1.3 allowances stays readable beside it."""
    jump = history.FigureHistory("accuracy/psnr", "dB", FigureKind.ACCURACY, True, [30.0, 29.5],
                                 pinned=30.0, band=(29.99985, 30.00015))
    drift = history.FigureHistory("perf/fps", "fps", FigureKind.SPEED, True, [100.0, 87.0], pinned=100.0, band=(90.0, 110.0))
    assert history._in_allowances(jump)[1] == pytest.approx(-3333.3, rel=1e-3)
    assert history._in_allowances(drift)[1] == pytest.approx(-1.3)
    rows = [history.RowHistory(RowKey("m", "onnxruntime", "fp32", 1), {"psnr": jump, "fps": drift}, [None, "x"],
                               [True, True], None)]
    nights = [history.Night(tmp_path, f"n{i}", f"11-2{i}", {}) for i in range(2)]
    picture = history.draw_drift(rows, nights, tmp_path / "drift.png")
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert history.DRIFT_CLIP < 10


def test_the_published_line_is_drawn_only_where_the_published_figure_applies(tmp_path):
    applies = Row.of(record(1, published_top1=81.126))
    smoke = Row.of({**record(1, published_top1=81.126), "published": {"applies": False, "reason": "smoke profile shapes"}})
    assert references.published_values(applies) == {"top1": 81.126}
    assert references.published_values(smoke) == {}


# -- 28. one typed row: a key field is stated once ---------------------------------------------------------

def test_every_key_field_reaches_the_row_the_pin_and_the_gate_from_the_one_declaration(tmp_path):
    key = RowKey("m", "onnxruntime", "fp32", 1, "smoke", None, machine())
    row = Row.of(record(1, machine=machine()))
    assert row.key == key and set(RowKey.names()) <= set(row.record())
    pin = _pinned(tmp_path, [record(1, machine=machine())]).match(key).pin
    assert pin.key == key and set(RowKey.names()) <= set(pin.entry())
    assert all(math.isfinite(f.value) for f in pin.figures.values())


def test_a_sandboxed_run_keeps_its_tallies_to_itself(run_suite, request):
    """Issue 28: after one sandboxed test, the outer run reported the inner run's conversions and
    decoded items as its own."""
    from fixtures.options import run_state

    outer = run_state(request.config)
    before = (list(outer.built), outer.served.as_dict())
    inner = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy")
    inner.assert_outcomes(passed=1)
    assert (outer.built, outer.served.as_dict()) == before
    assert inner.results["records"][0]["data"]["passes"] >= 1


# -- 27. a run and what it is judged against that differ are named as such ---------------------------------

def test_a_bf16_run_against_an_fp32_baseline_names_the_precision_not_missing_rows(tmp_path, capsys):
    bf16 = [{**record(b), "precision": "bf16"} for b in (1, 2)]
    status, out = _gate_cli(capsys, write_night(tmp_path, "bf16", bf16), "--baseline",
                            write_night(tmp_path, "fp32", [record(1), record(2)]))
    assert status == 1 and "MISSING" not in out
    assert ("NOT COMPARABLE m/onnxruntime/bf16/bs1 row: this run and the baseline ran it otherwise: "
            "precision: 'fp32' -> 'bf16'") in out


# -- 31. the harness commands start fast: they import what they use ----------------------------------------

@pytest.mark.parametrize("command", ["harness.gate", "harness.references", "harness.history", "harness.report"])
def test_a_harness_command_imports_no_runtime_or_network_library(command):
    """They read JSON and YAML: torch, onnx, onnxruntime, openvino and matplotlib (drawn only
    when drawing) took seconds to import, up to 14 s under load, before a command said anything."""
    import subprocess
    import sys

    probe = (f"import sys, runpy; sys.argv = ['{command}', '--help']\n"
             f"try:\n    runpy.run_module('{command}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'matplotlib', 'av', 'cv2') if m in sys.modules]\n"
             "print('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            cwd=references.PROJECT)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


# -- 27. results read back against a schema --------------------------------------------------------------

@pytest.mark.parametrize("edit, said", [
    (lambda f: f.update(val=f.pop("value")), "record 0 (m/onnxruntime/fp32/bs1).figures[1]: Additional properties are not allowed ('val' was unexpected)"),
    (lambda f: f.update(kind="fast"), "record 0 (m/onnxruntime/fp32/bs1).figures[1].kind: 'fast' is not one of"),
    (lambda f: f.update(higher_is_better="yes"), ".figures[1].higher_is_better: 'yes' is not of type 'boolean'"),
])
def test_a_hand_edited_results_file_is_refused_naming_the_field(tmp_path, capsys, edit, said):
    """Issue 27: a figure field renamed read as 'the baseline has no figure'."""
    row = record(1)
    edit(row["figures"][1])
    with pytest.raises(SystemExit) as exit_info:
        gate.main([str(write_night(tmp_path, "now", [record(1)])), "--baseline", str(write_night(tmp_path, "old", [row]))])
    assert exit_info.value.code == 2 and said in capsys.readouterr().err


# -- 28. one place per fact: the harness stands without the pytest entry module ----------------------------

# what a process holds, not what a run counts: the models registered (models/*/spec.py) and the
# shared flocks that pin cache entries while this process uses them (released when it ends)
PROCESS_STATE = {"registry.py": {"_REGISTRY"}, "cache_budget.py": {"_PINS"}}
MUTATORS = {"append", "extend", "add", "update", "clear", "pop", "setdefault", "insert", "remove"}


def test_no_harness_module_imports_the_pytest_entry_module_or_keeps_run_state_in_a_module():
    import ast

    root = references.PROJECT / "harness"
    importing, mutated = [], []
    for path in sorted(root.rglob("*.py")):
        tree, name = ast.parse(path.read_text()), str(path.relative_to(root))
        containers = {target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                      and isinstance(node.value, (ast.List, ast.Set, ast.Dict))
                      for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                      if isinstance(target, ast.Name)} - PROCESS_STATE.get(name, set())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "video_model_conformance" for n in names):
                importing.append(name)
            if isinstance(node, ast.Global):
                mutated.append(f"{name}: global {', '.join(node.names)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in containers:
                mutated.append(f"{name}: {node.func.value.id}.{node.func.attr}()")
            if isinstance(node, (ast.Assign, ast.AugAssign)) and any(
                    isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in containers
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                mutated.append(f"{name}: {ast.unparse(node)}")
    assert importing == [] and mutated == []
