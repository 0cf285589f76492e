"""Installing the suite (``pip install -e .``) changes no unrelated pytest run in the same
environment and claims no generic import name; the suite's own runs get their options."""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

import video_model_conformance


def _installed() -> bool:
    try:
        return any(ep.value == "video_model_conformance" for ep in metadata.entry_points(group="pytest11"))
    except Exception:  # pragma: no cover - metadata of a broken install
        return False


pytestmark = pytest.mark.skipif(not _installed(), reason="the suite is not installed (pip install -e .)")


def test_an_unrelated_run_is_unchanged(pytester):
    """Its own ``model`` fixture stays its own, and the suite's options are not there."""
    pytester.makepyfile(test_other="""
        import pytest

        @pytest.fixture(params=["resnet", "bert"])
        def model(request):
            return request.param

        def test_own_model(model):
            assert model in ("resnet", "bert")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    assert "--weights-dir" not in help_text and "video-models" not in help_text


@pytest.mark.parametrize("name", ["harness", "models", "fixtures"])
def test_no_generic_top_level_name_is_installed(tmp_path, name):
    found = subprocess.run([sys.executable, "-c", f"import importlib.util as u; print(u.find_spec({name!r}))"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert found == "None", f"{name} is importable outside the project: {found}"


def test_the_suites_runs_get_their_options(tmp_path):
    """From inside the project, or naming a path in it, wherever pytest is started."""
    assert video_model_conformance.concerns_project(argv=[], cwd=str(video_model_conformance.PROJECT / "tests"))
    assert video_model_conformance.concerns_project(
        argv=["--data-root", "/data", str(video_model_conformance.PROJECT / "tests")], cwd=str(tmp_path))
    assert not video_model_conformance.concerns_project(argv=["-q", "tests"], cwd=str(tmp_path))


def test_each_backend_the_options_name_is_a_module_with_its_class():
    """--backend's names are the one list of backends: each is harness/backends/<name>.py, whose
    BACKEND carries the same name; no other module there is a backend nobody can select."""
    from harness.backends import backend_class
    from harness.backends.base import Backend

    for name in video_model_conformance.BACKEND_NAMES:
        cls = backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name
    modules = {p.stem for p in (video_model_conformance.PROJECT / "harness" / "backends").glob("*.py")}
    # a '-' in a backend's name is '_' in its module's (ascend-preview: ascend_preview.py)
    assert modules - {"__init__", "base", "onnx_passes"} == {n.replace("-", "_") for n in video_model_conformance.BACKEND_NAMES}
