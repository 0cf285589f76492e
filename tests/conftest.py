"""Fixtures shared by the tests: a single-thread pin for heavy networks, and ``run_suite`` to run
the suite itself in a sandbox (how pytest plugins test themselves)."""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import types
from pathlib import Path

import onnxruntime  # noqa: F401
import onnxsim  # noqa: F401
import openvino  # noqa: F401
import pytest
import torch
from sandbox_progress import SandboxProgress

# The C extensions above are imported before any test: pytester restores sys.modules after each
# sandboxed run, and an extension first imported during one (onnxsim's pybind11 module, say) would
# be dropped and could not be initialised again (seen under -n 2: "no attribute 'TensorPool'").
# the fake Ascend toolkit (atc, npu-smi, both ais_bench generations) for every test module
from fakes.toolkit import (  # noqa: F401
    _fakes_forgotten,
    fake_ascend_toolkit,
    fake_ascend_toolkit_atc_ignoring_batch,
    fake_ascend_toolkit_msit,
    fake_ascend_toolkit_tools,
)


@pytest.fixture(scope="module")
def single_thread():
    """Large networks on small maps: on a shared 2-core machine a second intra-op thread mostly
    waits (FlowNet2's forward ran 3x slower with two), so these modules pin one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PROJECT = Path(__file__).resolve().parents[1]

TINY_INPUTS = {"clip": (3, 4, 8, 8), "gain": (1, 4, 8, 8)}


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A tiny graph for the backends' own tests: Conv3d + ReLU scaled by a second input
    (``features``), and its mean through a Reshape (``mean``: int64 shape arithmetic for the
    Ascend graph passes); exported like the harness does (dynamic batch)."""
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)

        def forward(self, clip, gain):
            features = torch.relu(self.conv(clip)) * gain
            return features, features.reshape(features.shape[0], -1).mean(dim=1, keepdim=True)

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    args = tuple(torch.randn(1, *shape) for shape in TINY_INPUTS.values())
    axes = {name: {0: "batch"} for name in (*TINY_INPUTS, "features", "mean")}
    torch.onnx.export(Tiny().eval(), args, str(path), dynamo=False, opset_version=11,
                      input_names=list(TINY_INPUTS), output_names=["features", "mean"], dynamic_axes=axes)
    return path


ORT_SESSION_PATCH = '''
import numpy as np
import pytest

def patch(session, state):
{body}

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from harness.backends import onnxruntime as ort_backend

    real_open = ort_backend.OnnxRuntimeBackend.open
    def patched_open(self, artifact, shapes):
        session = real_open(self, artifact, shapes)
        patch(session, {{}})
        return session
    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    undo.setattr(ort_backend.OnnxRuntimeBackend, "open", patched_open)
'''


def ort_session_patch(body: str) -> str:
    """The source of a plugin (``run_suite(plugin=...)``) that hands every ONNX Runtime session,
    as it opens, to ``patch(session, state)`` with this body: a deliberately broken runtime."""
    return ORT_SESSION_PATCH.format(body=body)


def tiny_feeds(batch_size: int, seed: int = 1) -> dict:
    rng = __import__("numpy").random.default_rng(seed)
    return {name: rng.standard_normal((batch_size, *shape)).astype("float32") for name, shape in TINY_INPUTS.items()}


@pytest.fixture(scope="session")
def suite_cache(request) -> Path:
    """The run's --cache-dir, shared by the unit tests that need a model's ONNX or data and by the
    sandboxed suite runs: every artifact is built once per session (content-keyed, locked,
    renamed into place, so concurrent processes share it safely)."""
    from fixtures.options import run_config

    return run_config(request.config).cache_dir


PROJECT_PACKAGES = ("harness", "fixtures", "models")


def _import_project() -> None:
    """Every module of the project, and what it imports only when drawing, imported before any
    sandboxed run: pytester drops what a test first imports (it restores sys.modules), so each
    in-process run would import it anew (matplotlib's pyplot: about 0.5 s a time)."""
    for package in PROJECT_PACKAGES:
        for module in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            importlib.import_module(module.name)
    importlib.import_module("matplotlib").use("Agg")  # as the harness draws: no display
    importlib.import_module("matplotlib.pyplot")
    # the decoding pool outlives a run (one per process): its locks' classes must be the ones a
    # later run pickles with, not a copy a run imported first and pytester then dropped
    importlib.import_module("multiprocessing.synchronize")


_import_project()


def _patchable_state() -> dict:
    """What a sandbox plugin could patch and forget to restore, by identity: every global of the
    project's modules, every attribute of the classes they define, every registered model; as
    (namespace, name, value) keyed by (the namespace's id, name)."""
    from harness import registry

    namespaces = [registry._REGISTRY]
    for name, module in list(sys.modules.items()):
        if module is not None and name.partition(".")[0] in PROJECT_PACKAGES:
            namespaces += [module, *(v for v in vars(module).values()
                                     if isinstance(v, type) and v.__module__ == name)]
    return {(id(namespace), name): (namespace, name, value) for namespace in namespaces
            for name, value in list((namespace if isinstance(namespace, dict) else vars(namespace)).items())}


_ABSENT = object()  # what a name a plugin added was before it


def _restore(namespace, name: str, value) -> str:
    """Put ``value`` back as ``namespace``'s ``name`` (remove the name where it was absent);
    return what was restored, named."""
    if isinstance(namespace, dict):
        if value is _ABSENT:
            del namespace[name]
        else:
            namespace[name] = value
        return f"the registered model {name}"
    if value is _ABSENT:
        delattr(namespace, name)
    else:
        setattr(namespace, name, value)
    if isinstance(namespace, type):
        return f"{namespace.__module__}.{namespace.__qualname__}.{name}"
    return f"{namespace.__name__}.{name}"


def _run_in_process(pytester, args: list[str]):
    """The run in this process (its imports are done: about 5 s less per run than a subprocess).
    What the run left patched, or added to a class or the registry, is restored, and fails the
    test that ran it."""
    before = _patchable_state()
    result = pytester.runpytest_inprocess(*args)
    after = _patchable_state()
    changed = [entry for key, entry in before.items() if key not in after or after[key][2] is not entry[2]]
    # (a dunder Python adds itself, such as copyreg's __slotnames__ cache on pickling, is no patch)
    added = [(namespace, name, _ABSENT) for key, (namespace, name, _) in after.items()
             if key not in before and not isinstance(namespace, types.ModuleType)
             and not (name.startswith("__") and name.endswith("__"))]
    left = [_restore(*entry) for entry in changed + added]
    if left:
        pytest.fail(f"the sandboxed run left the project patched (patch through fakes.sandbox_patch."
                    f"patch_for_the_run in the plugin): {', '.join(left)}")
    return result


@pytest.fixture
def run_suite(pytester, suite_cache, monkeypatch, request):
    """Run the suite's own tests in a sandbox, as a user would, and return the result.

    ``run_suite(*options, plugin=SOURCE, tests=("test_accuracy.py",), project=PROJECT, cache=None, latest=True)``:
    ``plugin`` is the source of a pytest plugin loaded with ``-p`` (a deliberately broken backend,
    dataset or option; it patches through ``fakes.sandbox_patch.patch_for_the_run``); ``project``
    another copy of the project (a sandbox with a new model), run in a subprocess since its
    modules share this one's names; ``latest`` makes the run reports/latest although a sandboxed
    run is partial (``--models``: the run's own reading of what a night is is tested with
    ``latest=False``); the result carries ``.results`` (the run's results.json, or
    None) besides pytester's ``RunResult`` API (``assert_outcomes``, ``stdout.fnmatch_lines``, ``ret``).
    """
    # the sandboxed run is no xdist worker, even when this test runs in one
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    pytester.syspathinsert()  # where -p finds the plugin
    progress = SandboxProgress(request.config, request.node.nodeid)

    def run(*options: str, plugin: str | None = None, tests: tuple[str, ...] = ("test_accuracy.py",),
            project: Path = PROJECT, cache: Path | None = None, latest: bool = True):
        progress.before(options)
        args = [str(project / "tests" / t) for t in tests] + (["--latest"] if latest else [])
        if plugin is not None:
            pytester.makepyfile(sandbox_fault=plugin)
            args += ["-p", "sandbox_fault"]
        report_dir = pytester.path / "reports"
        args += [f"--rootdir={project}", "-p", "no:cacheprovider", f"--cache-dir={cache or suite_cache}",
                 f"--report-dir={report_dir}", *options]
        if project == PROJECT:
            # the project's plugin, already imported here, cannot be assertion-rewritten again
            result = _run_in_process(pytester, [*args, "-W", "ignore::pytest.PytestAssertRewriteWarning"])
        else:
            result = pytester.runpytest_subprocess(*args)
        result.results_dir = report_dir / "latest"
        latest = report_dir / "latest" / "results.json"
        result.results = json.loads(latest.read_text()) if latest.exists() else None
        return result

    return run
