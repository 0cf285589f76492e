"""A line on the terminal while a test runs the suite in a sandbox for long: under ``pytest -q``
such a test shows one dot when it ends, and a stretch of them (a cold cache builds every model's
artifacts) printed nothing for minutes."""
from __future__ import annotations

import time

QUIET_S = 30.0  # a test that has printed nothing for this long says what it runs next


class SandboxProgress:
    """``before(options)`` at the start of each sandboxed run of one test: once the test has run
    ``quiet_s`` (default :data:`QUIET_S`) without a line, writes one naming the test, the run's
    number and its options."""

    def __init__(self, config, test_id: str, quiet_s: float | None = None, clock=time.monotonic):
        self.config, self.test_id, self.quiet_s, self.clock = config, test_id, quiet_s, clock
        self.last_line = clock()  # the test's start: pytest has just named it or printed a dot
        self.runs = 0

    def before(self, options) -> None:
        self.runs += 1
        now = self.clock()
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or now - self.last_line < (QUIET_S if self.quiet_s is None else self.quiet_s):
            return
        self.last_line = now
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():  # the test's output is captured; this line is not
            if reporter.verbosity < 0:  # -q's dots carry no file name, by which write_line ends a line
                reporter.write("\n")
            reporter.write_line(f"{self.test_id}: sandboxed run {self.runs}: {' '.join(options)}")
