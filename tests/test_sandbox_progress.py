"""Under ``pytest -q`` a test that runs the suite in a sandbox for long says what it runs
(tests/sandbox_progress.py), instead of printing nothing for minutes."""
from __future__ import annotations


from sandbox_progress import SandboxProgress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_line_once_the_test_has_been_quiet_for_long(pytestconfig, monkeypatch):
    lines = []
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    monkeypatch.setattr(reporter, "write_line", lines.append)
    clock = Clock()
    progress = SandboxProgress(pytestconfig, "tests/test_x.py::test_y", quiet_s=30, clock=clock)
    for now in (1, 29, 31, 40, 62):
        clock.now = now
        progress.before(("-m", "accuracy", f"--at={now}"))
    assert lines == ["tests/test_x.py::test_y: sandboxed run 3: -m accuracy --at=31",
                     "tests/test_x.py::test_y: sandboxed run 5: -m accuracy --at=62"]


def test_run_suite_reports_through_it(run_suite, monkeypatch, pytestconfig):
    """The fixture's sandboxed runs go through the progress line (a zero quiet time: every run)."""
    lines = []
    monkeypatch.setattr("sandbox_progress.QUIET_S", 0.0)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    monkeypatch.setattr(reporter, "write_line", lines.append)
    run_suite("--models=efficient3dcnn", "--collect-only", "-q")
    assert lines and lines[-1].endswith(": sandboxed run 1: --models=efficient3dcnn --collect-only -q")
