"""Pinned references: written only by the explicit update command, from a run's results.json,
with the run, commit, date and environment that set them; read back or refused by name."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import yaml

from fabricated_nights import CHECKPOINT_SHA256, ENVIRONMENT, drop, record, set_value, write_night
from harness import records, references
from harness.records import Row, RowKey

PROJECT = references.PROJECT


def _pin_of(loaded, record_dict):
    return loaded.match(RowKey.of(record_dict)).pin


def _update(tmp_path, *args) -> subprocess.CompletedProcess:
    """The command as a user types it (so that its output and exit status are what they see)."""
    return subprocess.run([sys.executable, "-m", "harness.references", "update", *map(str, args)],
                          cwd=PROJECT, capture_output=True, text=True, timeout=60)


def test_update_pins_every_row_with_its_provenance(tmp_path):
    night = write_night(tmp_path, "20261120T020000Z-1", [record(1, environment={"providers": "CPU"}), record(2)])
    pinned = tmp_path / "pinned.yaml"
    result = _update(tmp_path, night, "--file", pinned)
    assert result.returncode == 0, result.stderr
    assert "pinned m/onnxruntime/fp32/bs1 (smoke profile, no soc): accuracy/epe (none) -> 2; " \
           "accuracy/top1 (none) -> 80; perf/fps (none) -> 100" in result.stdout
    assert f"wrote {pinned}: review the change" in result.stdout
    text = pinned.read_text()
    assert text.startswith("# Pinned references") and "python -m harness.references update" in text
    data = yaml.safe_load(text)
    assert data["runs"]["20261120T020000Z-1"] == {"commit": "abc1234", "date": "2026-11-20T02:00:00+00:00",
                                                 "results": str(night), "environment": ENVIRONMENT}
    first = data["rows"][0]
    assert {k: first[k] for k in ("model", "backend", "precision", "batch_size", "profile", "soc", "run")} == {
        "model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": 1, "profile": "smoke",
        "soc": None, "run": "20261120T020000Z-1"}
    assert first["environment"] == {"providers": "CPU"}
    assert first["figures"]["perf/fps"] == {"value": 100.0, "unit": "fps", "higher_is_better": True, "kind": "speed",
                                            "tolerance": None}
    assert "accuracy/max_abs_diff" not in first["figures"]  # info figures are shown, never pinned
    loaded = references.load(pinned)
    assert len(loaded.pins) == 2 and _pin_of(loaded, record(2)).figures["perf/fps"].value == 200.0
    assert first["weights"] == f"sha256:{CHECKPOINT_SHA256}" and first["data"] == "complete index (10 items)"


def test_update_of_some_rows_keeps_the_others_and_says_what_moved(tmp_path):
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "old", [record(1), record(2)]), pinned)
    done = references.update(write_night(tmp_path, "new", [record(1, fps=90.0), record(2, fps=10.0)], night=3),
                             pinned, ["m/*/bs1"])
    assert done.changes == ["pinned m/onnxruntime/fp32/bs1 (smoke profile, no soc): perf/fps 100 -> 90"]
    loaded = references.load(pinned)
    assert _pin_of(loaded, record(1)).run == "new" and _pin_of(loaded, record(2)).run == "old"
    assert set(yaml.safe_load(pinned.read_text())["runs"]) == {"old", "new"}
    references.update(write_night(tmp_path, "newer", [record(2)], night=4), pinned)
    assert set(yaml.safe_load(pinned.read_text())["runs"]) == {"new", "newer"}  # a run no pin names is dropped


def test_rows_that_failed_or_hold_no_gated_figure_are_not_pinned_and_named(tmp_path):
    pinned = tmp_path / "pinned.yaml"
    rows = [record(1, status="fail"), record(2), drop(drop(drop(record(4), "accuracy/top1"), "accuracy/epe"), "perf/fps")]
    done = references.update(write_night(tmp_path, "night", rows), pinned)
    assert done.changes == ["not pinned m/onnxruntime/fp32/bs1 (smoke profile, no soc): its own verdict is 'fail'",
                            "pinned m/onnxruntime/fp32/bs2 (smoke profile, no soc): accuracy/epe (none) -> 2; "
                            "accuracy/top1 (none) -> 80; perf/fps (none) -> 200",
                            "not pinned m/onnxruntime/fp32/bs4 (smoke profile, no soc): no gated figure"]
    assert done.refused == []


def test_a_figure_that_is_not_finite_fails_the_update_and_writes_nothing(tmp_path):
    """Issue 26: a pin whose new figure was NaN was dropped with exit 0, and the gate went silent on it."""
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "old", [record(1)]), pinned)
    before = pinned.read_text()
    night = write_night(tmp_path, "night", [set_value(record(1), "perf/fps", math.nan)], night=1)
    result = _update(tmp_path, night, "--file", pinned)
    assert result.returncode == 1
    assert "refused, nothing written" in result.stderr
    assert "m/onnxruntime/fp32/bs1 (smoke profile, no soc): perf/fps not a finite figure" in result.stderr
    assert pinned.read_text() == before


@pytest.mark.parametrize("fields, said", [
    ({"weights": {"source": "seeded", "seed": 0}}, "taken from weights seeded"),
    ({"data": {"generated": True, "listed": 3, "read": 3}}, "taken from data generated"),
    ({"data": {"generated": False, "listed": 3783, "read": 1, "missing": 3782}}, "taken from data partial: 1 of 3783"),
])
def test_an_update_from_seeded_weights_or_partial_data_needs_the_flag_and_says_so(tmp_path, fields, said):
    pinned = tmp_path / "pinned.yaml"
    night = write_night(tmp_path, "night", [record(1, **fields)])
    refused = _update(tmp_path, night, "--file", pinned)
    assert refused.returncode == 1 and said in refused.stderr and "--allow-weak-run" in refused.stderr
    assert not pinned.exists()
    allowed = _update(tmp_path, night, "--file", pinned, "--allow-weak-run")
    assert allowed.returncode == 0 and f"({said.replace('taken from ', 'taken from ')}" in allowed.stdout


def test_a_pattern_matching_no_row_and_an_unreadable_run_are_usage_errors(tmp_path):
    night = write_night(tmp_path, "night", [record(1)])
    result = _update(tmp_path, night, "--rows", "flavr/*", "--file", tmp_path / "pinned.yaml")
    assert result.returncode == 2 and f"{night}: no row matches flavr/*" in result.stderr
    old = tmp_path / "old.json"
    old.write_text('{"records": []}')
    result = _update(tmp_path, old, "--file", tmp_path / "pinned.yaml")
    assert result.returncode == 2 and f"{old}: results.json format 1, this suite reads format {records.FORMAT}" in result.stderr
    assert not (tmp_path / "pinned.yaml").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["rows"][0]["figures"]["perf/fps"].update(value=float("nan")), "figure perf/fps: expected a finite value"),
    (lambda d: d["rows"][0].update(run="other"), "names run 'other', which the file's runs do not list"),
    (lambda d: d["rows"].append(dict(d["rows"][0])), "is pinned twice"),
    (lambda d: d["rows"][0].update(figures={}), "has no figures"),
])
def test_a_hand_edited_file_that_breaks_the_format_is_refused_naming_the_row(tmp_path, edit, message):
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "night", [record(1)]), pinned)
    data = yaml.safe_load(pinned.read_text())
    edit(data)
    pinned.write_text(yaml.safe_dump(data))
    with pytest.raises(references.ReferencesError, match="m/onnxruntime/fp32/bs1") as error:
        references.load(pinned)
    assert message in str(error.value) and str(pinned) in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("format: 2\nruns: {}\nrows: []\nrows: []\n", "duplicate key 'rows' on line 4 (first on line 3)"),
    ("format: 2\nformat: 2\nruns: {}\nrows: []\n", "duplicate key 'format' on line 2"),
    ("format: 2\nruns: {}\nrows: []\npinned: []\n", "unknown field(s) pinned"),
])
def test_a_duplicate_key_or_an_unknown_field_is_refused_naming_it(tmp_path, text, message):
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(text)
    with pytest.raises(references.ReferencesError) as error:
        references.load(pinned)
    assert message in str(error.value) and str(pinned) in str(error.value)


def test_a_second_value_for_a_figure_is_refused_not_taken(tmp_path):
    """Issue 26: YAML keeps the last of two keys, so a second `value:` won in silence."""
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "night", [record(1)]), pinned)
    lines = pinned.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "perf/fps" in line and "value: 100.0" in line)
    lines[at] = lines[at].replace("value: 100.0", "value: 100.0, value: 1.0")
    pinned.write_text("\n".join(lines) + "\n")
    with pytest.raises(references.ReferencesError, match=f"duplicate key 'value' on line {at + 1}"):
        references.load(pinned)
    gate_run = subprocess.run([sys.executable, "-m", "harness.gate", str(write_night(tmp_path, "now", [record(1)])),
                               "--references", str(pinned)], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert gate_run.returncode == 2 and "duplicate" in gate_run.stderr


def test_the_repositorys_pinned_references_read():
    """The file the nightly gates with is in the repository and in the current format."""
    assert references.load(references.DEFAULT_PATH).path == references.DEFAULT_PATH


def test_metrics_of_seeded_weights_at_zero_are_not_pinned_and_the_rest_is(tmp_path):
    """Issue 26: the CPU nightly pinned top-1 0.0 % (seeded weights on generated data), a figure
    that cannot fall; a metric that can move (an EPE) and the deployed speed are pinned."""
    pinned = tmp_path / "pinned.yaml"
    seeded = {"weights": {"source": "seeded", "seed": 0}}
    night = write_night(tmp_path, "cpu", [record(1, top1=0.0, **seeded),
                                          drop(drop(record(2, top1=0.0, **seeded), "perf/fps"), "accuracy/epe")])
    done = references.update(night, pinned, allow_weak=True)
    assert done.changes == [
        "pinned m/onnxruntime/fp32/bs1 (smoke profile, no soc): accuracy/epe (none) -> 2; perf/fps (none) -> 100 "
        "(taken from weights seeded) (not pinned, metrics of seeded weights at zero: accuracy/top1)",
        "not pinned m/onnxruntime/fp32/bs2 (smoke profile, no soc): only metrics of seeded weights at zero, which "
        "cannot fall (the run judges them against PyTorch)"]
    pin = _pin_of(references.load(pinned), record(1))
    assert list(pin.figures) == ["accuracy/epe", "perf/fps"]
    assert pin.left_out == {"accuracy/top1": "a metric of seeded weights at zero: it cannot fall"}
    from harness import gate

    assert [f.kind for f in gate.compare_row(Row.of(record(1, top1=0.0)), pin.row, 0.1)] == [gate.Kind.WITHIN] * 2
