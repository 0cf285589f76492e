"""The README's example command lines, read from the README itself and run as written (in a
subprocess from the checkout, since where pytest roots the run is what is checked), at smoke
size: they cannot drift from what the suite does."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import PROJECT

SHARED_DATA = PROJECT.parent / "shared" / "data"
SMALL = ("--models=efficient3dcnn", "--batch-sizes=1", "-p", "no:cacheprovider")


def common_runs() -> list[list[str]]:
    """Each command of the README's "Common runs" block, split as a shell splits it (comments off)."""
    block = re.search(r"## Common runs\n\n(.*?)\n\n", (PROJECT / "README.md").read_text(), re.S)
    assert block, "the README has no 'Common runs' block"
    return [shlex.split(line, comments=True) for line in block[1].splitlines()]


def readme_line(*words: str) -> list[str]:
    """The one common run holding these words in this order."""
    lines = [line for line in common_runs() if " ".join(words) in " ".join(line)]
    assert len(lines) == 1, f"the README's common runs hold {len(lines)} lines with {' '.join(words)!r}"
    return lines[0]


def run_as_written(command: list[str], *more: str) -> subprocess.CompletedProcess:
    assert command[0] == "pytest", command
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run([sys.executable, "-m", "pytest", *command[1:], *more], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_common_runs_are_found():
    runs = common_runs()
    assert len(runs) >= 10 and all(run[0] in ("pytest", "python") for run in runs), runs


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} (the real test files) is absent")
def test_the_space_form_data_root_keeps_the_rootdir_and_prints_the_skip_reasons(suite_cache, tmp_path):
    command = readme_line("--data-root", "../shared/data")
    result = run_as_written(command, *SMALL, f"--cache-dir={suite_cache}", f"--report-dir={tmp_path}")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert f"rootdir: {PROJECT}\nconfigfile: pytest.ini\n" in out
    # pytest.ini's -ra: the published figure's skip says why, under the checkout's own test ids
    assert re.search(r"SKIPPED \[1\] tests/test_published\.py:\d+: efficient3dcnn: published figures do not "
                     r"apply: .*partial copy: 3782 of the 3783 listed items absent", out), out


def _written_paths(command: list[str]) -> list[str]:
    """What a common run writes into the checkout: --out DIR (as a folder), --benchmark-json=FILE."""
    paths = [after.rstrip("/") + "/" for before, after in zip(command, command[1:]) if before == "--out"]
    return paths + [word.split("=", 1)[1] for word in command if word.startswith("--benchmark-json=")]


@pytest.mark.skipif(not (PROJECT / ".git").exists(), reason="not a git checkout")
def test_what_the_common_runs_write_is_ignored_by_git():
    written = [path for command in common_runs() for path in _written_paths(command)]
    assert "history/" in written and "out.json" in written, written
    for path in written:
        ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=PROJECT)
        assert ignored.returncode == 0, f"the README's runs write {path}, which git does not ignore"


def test_every_option_of_the_common_pytest_runs_is_one_pytest_knows(tmp_path):
    """A renamed or removed option would leave the README's line a usage error."""
    help_text = run_as_written(["pytest", "--help"], "-p", "no:cacheprovider").stdout
    runs = [command for command in common_runs() if command[0] == "pytest"]
    options = {word.split("=", 1)[0] for command in runs for word in command if word.startswith("--")}
    assert {"--data-root", "--benchmark-json", "--references", "--setup-plan"} <= options, options
    unknown = sorted(o for o in options if not re.search(rf"(^|[\s,]){re.escape(o)}([\s=,]|$)", help_text, re.M))
    assert not unknown, f"the README's common runs use options pytest does not know: {unknown}"
