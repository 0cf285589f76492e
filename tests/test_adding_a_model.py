"""Extending the suite, in a sandboxed copy of the project: a user's own test against the stage
fixtures (the README's example), and a sixth model, which costs one folder. A sandboxed copy of the project gets one new package,
``models/tiny/`` (tests/tiny_model/: a one-block 3D CNN with its spec, reader and generator),
and nothing else; the generic tests then run on it, green, and red when its card is wrong.

The sandbox is a copy, not symlinks: the harness keys its cache by the source files under its
own root (harness/cache.py PROJECT_ROOT, resolved), which must hold the new package. The copy's
own conftest.py puts the copy first on sys.path, so ``--models=tiny`` (unknown in the real
project) proves the run imported the sandbox's models."""
from __future__ import annotations

import shutil
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).resolve().with_name("tiny_model")
PROJECT_FILES = ("conftest.py", "pytest.ini", "video_model_conformance.py", "harness", "fixtures", "models", "tests")
GENERIC_TESTS = ("test_accuracy.py", "test_published.py", "test_conformance.py", "test_perf.py", "test_checkpoints.py")
_NOT_COPIED = shutil.ignore_patterns("__pycache__", "tiny_model")


def _project_copy(root: Path) -> Path:
    """The project's code as it is, in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=_NOT_COPIED)
        else:
            shutil.copy2(source, root / name)
    return root


def _project_with_tiny(root: Path, spec_source: str | None = None) -> Path:
    """The project's code as it is, plus models/tiny/ (with ``spec_source`` as its spec.py if given)."""
    _project_copy(root)
    shutil.copytree(TINY, root / "models" / "tiny", ignore=_NOT_COPIED)
    if spec_source is not None:
        (root / "models" / "tiny" / "spec.py").write_text(spec_source)
    return root


def _readme_example() -> tuple[str, str]:
    """(file path, source) of the README's 'Writing a test of your own' example."""
    text = (PROJECT / "README.md").read_text()
    section = text[text.index("### Writing a test of your own"):]
    path = section.split("(`", 1)[1].split("`", 1)[0]
    return path, section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_of_a_users_own_test_runs(pytester, run_suite, suite_cache):
    project = _project_copy(pytester.path / "project")
    path, source = _readme_example()
    (project / path).parent.mkdir(parents=True)
    (project / path).write_text(source)
    result = pytester.runpytest_subprocess(str(project / path), f"--rootdir={project}", "--models=flavr",
                                           "-p", "no:cacheprovider", f"--cache-dir={suite_cache}",
                                           f"--report-dir={pytester.path / 'reports'}")
    result.assert_outcomes(passed=2)  # smoke batch sizes 1 and 2 on ONNX Runtime


def test_one_new_folder_is_covered_by_every_generic_test(pytester, run_suite):
    project = _project_with_tiny(pytester.path / "project")
    result = run_suite("-v", "--models=tiny", tests=GENERIC_TESTS, project=project, cache=pytester.path / "cache")
    outcomes = result.parseoutcomes()
    assert result.ret == 0 and outcomes.get("skipped") == 2, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["SKIPPED*test_published.py*seeded weights (no --weights-dir with tiny_c3d.pth)*"])
    for test in GENERIC_TESTS:  # every module ran tiny's cases (the published one as far as its verdict)
        result.stdout.fnmatch_lines([f"*{test}::*[[]*tiny*[]] {'SKIPPED' if test == 'test_published.py' else 'PASSED'}*"])
    records = [r for r in result.results["records"] if r.get("model") == "tiny"]
    batch_sizes = {"accuracy": set(), "conformance": set(), "perf": set()}
    for record in records:
        for field, seen in batch_sizes.items():
            if field in record:
                seen.add(record["batch_size"])
    assert batch_sizes == {"accuracy": {1, 2}, "conformance": {1, 2}, "perf": {1, 2}}
    assert all(r["status"] == "pass" for r in records)
    assert {r["weights"]["source"] for r in records if "weights" in r} == {"seeded"}


def test_a_wrong_declared_output_shape_fails_conformance(pytester, run_suite):
    declared = 'outputs={"class": (network.NUM_CLASSES,)}'
    source = (TINY / "spec.py").read_text()
    assert source.count(declared) == 2, f"tests/tiny_model/spec.py no longer declares {declared} per profile"
    project = _project_with_tiny(pytester.path / "project",
                                 source.replace(declared, 'outputs={"class": (network.NUM_CLASSES + 1,)}'))
    result = run_suite("--models=tiny", tests=("test_conformance.py",), project=project, cache=pytester.path / "cache")
    # the exported contract fails, and each deployed row errors on the artifact's own output shape
    result.assert_outcomes(failed=1, passed=1, errors=2, skipped=1)
    result.stdout.fnmatch_lines(["*ArtifactMismatch: onnxruntime: tiny bs1: * output class: requested (1, 6), "
                                 "the artifact has (None, 5)*"])
    differing = "{'class': {'dtype': 'float32', 'shape': ('batch', 5)}} != {'class': {'dtype': 'float32', 'shape': ('batch', 6)}}"
    result.stdout.fnmatch_lines([f"*{differing}*",
                                 "FAILED *tests/test_conformance.py::test_onnx_outputs_keep_the_declared_contract[[]tiny[]]*"])
