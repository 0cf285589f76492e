"""Fixtures shared by the tests: a single-thread pin for heavy networks, and ``run_suite`` to run
the suite itself in a sandbox (how pytest plugins test themselves)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

# the fake Ascend toolkit (atc, npu-smi, both ais_bench generations) for every test module
from fakes.toolkit import (_fakes_forgotten, fake_ascend_toolkit, fake_ascend_toolkit_msit,  # noqa: F401
                           fake_ascend_toolkit_tools)


@pytest.fixture(scope="module")
def single_thread():
    """Large networks on small maps: on a shared 2-core machine a second intra-op thread mostly
    waits (FlowNet2's forward ran 3x slower with two), so these modules pin one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sandbox_cache(tmp_path_factory) -> Path:
    """One artifact cache for every sandboxed suite run of this session: the faithful and the
    broken runs of a model share its ONNX and reference outputs, so each case costs one pass."""
    return tmp_path_factory.mktemp("sandbox-cache")


@pytest.fixture
def run_suite(pytester, sandbox_cache):
    """Run the suite's own tests in a subprocess, as a user would, and return the result.

    ``run_suite(*options, plugin=SOURCE, tests=("test_accuracy.py",))``: ``plugin`` is the source
    of a pytest plugin loaded with ``-p`` (a deliberately broken backend, dataset or option);
    the result carries ``.results`` (the run's results.json, or None) besides pytester's
    ``RunResult`` API (``assert_outcomes``, ``stdout.fnmatch_lines``, ``ret``).
    """
    def run(*options: str, plugin: str | None = None, tests: tuple[str, ...] = ("test_accuracy.py",)):
        args = [str(PROJECT / "tests" / t) for t in tests]
        if plugin is not None:
            pytester.makepyfile(sandbox_fault=plugin)
            args += ["-p", "sandbox_fault"]
        report_dir = pytester.path / "reports"
        result = pytester.runpytest_subprocess(
            *args, f"--rootdir={PROJECT}", "-p", "no:cacheprovider", f"--cache-dir={sandbox_cache}",
            f"--report-dir={report_dir}", *options)
        latest = report_dir / "latest" / "results.json"
        result.results = json.loads(latest.read_text()) if latest.exists() else None
        return result

    return run
