"""Where the suite writes: each location checked at the start as a usage error naming its option,
and a --save-outputs folder holding only this run's dump."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from harness.outputs import OutputStore, clear_earlier_dump

# sysfs refuses new files even to root, whom permission bits do not stop: a read-only location
READ_ONLY = Path("/sys")


def _read_only_here() -> bool:
    try:
        tempfile.TemporaryFile(dir=READ_ONLY).close()
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _read_only_here(), reason=f"{READ_ONLY} is writable here")
@pytest.mark.parametrize("option", ["--cache-dir", "--report-dir", "--save-outputs"])
def test_a_read_only_output_location_is_a_usage_error_naming_the_option(run_suite, option):
    result = run_suite("--models=efficient3dcnn", f"{option}={READ_ONLY / 'suite'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option} {READ_ONLY / 'suite'}: cannot write in {READ_ONLY} (*); "
                                 "give a writable directory*"])


def test_an_output_location_under_a_file_is_a_usage_error(run_suite, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run_suite("--models=efficient3dcnn", f"--save-outputs={tmp_path / 'file' / 'dump'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--save-outputs {tmp_path / 'file' / 'dump'}: {tmp_path / 'file'} is not a directory*"])


MODELS, FOLDERS = ("efficient3dcnn", "flavr"), ("onnxruntime", "torch")


def test_an_earlier_dump_is_cleared_and_anything_else_refused(tmp_path):
    earlier = OutputStore(tmp_path / "flavr" / "onnxruntime" / "bs4")
    earlier.put("old-sample", {"out": np.zeros(2, np.float32)})
    assert clear_earlier_dump(tmp_path, MODELS, FOLDERS) == [tmp_path / "flavr"]
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "efficient3dcnn" / "torch").mkdir(parents=True)
    (tmp_path / "efficient3dcnn" / "notes.txt").write_text("mine")
    (tmp_path / "thesis").mkdir()
    with pytest.raises(ValueError, match=r"holds thesis, efficient3dcnn/notes.txt, which no dump of this suite "
                                         r"writes \(<model>/<backend or torch>/\); give an empty or new folder"):
        clear_earlier_dump(tmp_path, MODELS, FOLDERS)
    assert (tmp_path / "thesis").is_dir() and (tmp_path / "efficient3dcnn" / "torch").is_dir(), "nothing removed"


def test_a_second_dump_into_the_same_folder_holds_only_its_own_files(run_suite, tmp_path):
    dump = tmp_path / "dump"
    options = ("--models=efficient3dcnn", "-m", "accuracy", f"--save-outputs={dump}", "--limit=1")
    run_suite(*options, "--batch-sizes=2").assert_outcomes(passed=1)
    assert (dump / "efficient3dcnn" / "onnxruntime" / "bs2").is_dir()
    run_suite(*options, "--batch-sizes=1").assert_outcomes(passed=1)
    assert sorted(p.name for p in (dump / "efficient3dcnn" / "onnxruntime").iterdir()) == ["bs1"]

    (dump / "README.txt").write_text("a user's file")
    refused = run_suite(*options, "--batch-sizes=1")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines([f"*--save-outputs {dump} holds README.txt, which no dump of this suite writes*"])
    assert (dump / "efficient3dcnn" / "onnxruntime" / "bs1").is_dir(), "a refused folder is left as it was"
