"""The history picture over fabricated nights: each row's figures with the pin, its band and the
published line, the nights that failed, and since when and how much a figure left its band."""
from __future__ import annotations

import subprocess
import sys

from fabricated_nights import drifting_nights, record, write_night
from harness import history, references

PNG = b"\x89PNG\r\n\x1a\n"


def _history(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.history", *map(str, args)], cwd=references.PROJECT,
                          capture_output=True, text=True, timeout=120)


def test_a_slow_drift_reads_since_when_and_how_much(tmp_path):
    nights = drifting_nights(tmp_path / "reports", 8)
    pinned = tmp_path / "pinned.yaml"
    references.update(nights[0], pinned)
    result = _history(*nights, "--references", pinned, "--out", tmp_path / "history")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "history"
    for picture in ("drift.png", "m-onnxruntime-fp32-bs1-smoke-nosoc.png", "m-onnxruntime-fp32-bs2-smoke-nosoc.png"):
        assert (out / picture).read_bytes().startswith(PNG), picture
    table = (out / "history.md").read_text()
    assert "## History: 8 night(s), 11-20 to 11-27" in table and "![every pinned figure against its pin](drift.png)" in table
    failed = "11-22, 11-23, 11-24, 11-25, 11-26, 11-27"
    assert (f"| m/onnxruntime/fp32/bs1 (smoke profile, no soc) | perf/fps | 100 | 55.78 | -44.2% | "
            f"**11-22** (night-2) | 11-22 (-39.4%) | {failed} |") in table
    assert (f"| m/onnxruntime/fp32/bs1 (smoke profile, no soc) | accuracy/top1 | 80 | 79.72 | -0.28% | "
            f"**11-23** (night-3) | 11-21 (-0.4%) | {failed} |") in table
    assert "| m/onnxruntime/fp32/bs2 (smoke profile, no soc) | perf/fps | 200 | 200 | +0.0% |  |  | none |" in table


def test_each_figure_carries_its_pin_band_published_line_and_failed_nights(tmp_path):
    nights, _ = history.load_nights(drifting_nights(tmp_path / "reports", 4))
    pinned = tmp_path / "pinned.yaml"
    references.update(nights[0].path, pinned)
    rows = history.row_histories(nights, references.load(pinned), fps_fraction=0.10)
    drifting = rows[0]
    assert list(drifting.figures) == ["accuracy/epe", "accuracy/top1", "perf/fps"]
    fps, top1 = drifting.figures["perf/fps"], drifting.figures["accuracy/top1"]
    assert fps.pinned == 100.0 and fps.band == (90.0, 110.00000000000001) and fps.since() == 2
    assert top1.band == (79.9, 80.1) and top1.published == 81.126 and top1.since() == 3
    assert [bool(why) for why in drifting.failed] == [False, False, True, True]
    assert "REGRESSION m/onnxruntime/fp32/bs1 perf/fps: 84.64 fps vs pinned 100" in drifting.failed[2]


def test_two_nights_without_pins_a_failed_and_an_absent_row_and_a_new_figure(tmp_path):
    errored = {**{k: v for k, v in record(2).items() if k != "figures"}, "status": "error",
               "error": {"type": "RuntimeError", "message": "AI Core exception"}, "figures": []}
    second = [record(1), errored, record(4)]
    second[0]["figures"].append({"part": "accuracy", "name": "psnr", "value": 30.0, "unit": "dB",
                                 "higher_is_better": True, "kind": "accuracy", "tolerance": 0.5})
    paths = [write_night(tmp_path, "one", [record(1), record(2)], 0), write_night(tmp_path, "two", second, 1)]
    nights, _ = history.load_nights([paths[1].parent, paths[0]])  # folders or files, in any order
    assert [n.run_id for n in nights] == ["one", "two"]
    rows = {row.key.batch_size: row for row in history.row_histories(nights, None)}
    assert "accuracy/psnr" in rows[1].figures and rows[1].figures["accuracy/psnr"].values == [None, 30.0]
    assert rows[2].failed[0] is None and rows[2].failed[1].startswith("ERRORED m/onnxruntime/fp32/bs2 row: RuntimeError")
    assert rows[4].present == [False, True] and rows[4].failed == [None, None]  # new on night two, not missing before
    result = _history(*paths, "--out", tmp_path / "history")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "history" / "history.md").read_text()
    assert "No pinned references: each night is judged against the one before it only." in table
    assert not (tmp_path / "history" / "drift.png").exists()
    assert (tmp_path / "history" / "m-onnxruntime-fp32-bs2-smoke-nosoc.png").read_bytes().startswith(PNG)


def test_a_night_that_cannot_be_read_is_a_failed_night_named_and_the_history_goes_on(tmp_path):
    """Issue 26: one night the history could not read (a format change) stopped the history step."""
    broken = tmp_path / "broken" / "results.json"
    broken.parent.mkdir()
    broken.write_text("{")
    result = _history(write_night(tmp_path, "one", [record(1)]), broken.parent, "--out", tmp_path / "history")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "history" / "history.md").read_text()
    assert f"the night's results could not be read: {broken}: not JSON" in table
