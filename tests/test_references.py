"""Pinned references: written only by the explicit update command, from a run's results.json,
with the run, commit, date and environment that set them; read back or refused by name."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import yaml

from fabricated_nights import ENVIRONMENT, drop, record, set_value, write_night
from harness import references

PROJECT = references.PROJECT


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
    assert len(loaded.pins) == 2 and loaded.get(record(2)).figures["perf/fps"]["value"] == 200.0


def test_update_of_some_rows_keeps_the_others_and_says_what_moved(tmp_path):
    pinned = tmp_path / "pinned.yaml"
    references.update(write_night(tmp_path, "old", [record(1), record(2)]), pinned)
    changes = references.update(write_night(tmp_path, "new", [record(1, fps=90.0), record(2, fps=10.0)], night=3),
                                pinned, ["m/*/bs1"])
    assert changes == ["pinned m/onnxruntime/fp32/bs1 (smoke profile, no soc): perf/fps 100 -> 90"]
    loaded = references.load(pinned)
    assert loaded.get(record(1)).run == "new" and loaded.get(record(2)).run == "old"
    assert set(yaml.safe_load(pinned.read_text())["runs"]) == {"old", "new"}
    references.update(write_night(tmp_path, "newer", [record(2)], night=4), pinned)
    assert set(yaml.safe_load(pinned.read_text())["runs"]) == {"new", "newer"}  # a run no pin names is dropped


def test_rows_that_failed_or_hold_no_finite_figure_are_not_pinned_and_named(tmp_path):
    pinned = tmp_path / "pinned.yaml"
    rows = [record(1, status="fail"), set_value(record(2), "perf/fps", math.nan),
            drop(drop(drop(record(4), "accuracy/top1"), "accuracy/epe"), "perf/fps")]
    changes = references.update(write_night(tmp_path, "night", rows), pinned)
    assert changes == ["not pinned m/onnxruntime/fp32/bs1 (smoke profile, no soc): its own verdict is 'fail'",
                       "pinned m/onnxruntime/fp32/bs2 (smoke profile, no soc): accuracy/epe (none) -> 2; "
                       "accuracy/top1 (none) -> 80 (left out, not finite: perf/fps)",
                       "not pinned m/onnxruntime/fp32/bs4 (smoke profile, no soc): no finite gated figure"]


def test_a_pattern_matching_no_row_and_an_unreadable_run_are_usage_errors(tmp_path):
    night = write_night(tmp_path, "night", [record(1)])
    result = _update(tmp_path, night, "--rows", "flavr/*", "--file", tmp_path / "pinned.yaml")
    assert result.returncode == 2 and f"{night}: no row matches flavr/*" in result.stderr
    old = tmp_path / "old.json"
    old.write_text('{"records": []}')
    result = _update(tmp_path, old, "--file", tmp_path / "pinned.yaml")
    assert result.returncode == 2 and f"{old}: results.json format 1, this suite reads format 2" in result.stderr
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


def test_the_repositorys_pinned_references_read():
    """The file the nightly gates with is in the repository and in the current format."""
    assert references.load(references.DEFAULT_PATH).path == references.DEFAULT_PATH
