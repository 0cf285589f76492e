"""What a sandbox plugin (``run_suite(plugin=...)``) patches the project with."""
from __future__ import annotations

import pytest


def patch_for_the_run(config: pytest.Config) -> pytest.MonkeyPatch:
    """A MonkeyPatch undone as the sandboxed run ends: the runs share the test process, so a
    patch left behind would change every later test (run_suite fails the run that leaves one)."""
    patch = pytest.MonkeyPatch()
    config.add_cleanup(patch.undo)
    return patch
