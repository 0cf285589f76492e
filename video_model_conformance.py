"""The suite's command-line options, as the one module ``pip install -e .`` installs.

Installed as a pytest11 entry point so that pytest knows these options before it collects:
otherwise a path given as an option value (``--data-root ../shared/data``) is taken for a test
path and the project's conftest.py is never loaded. pytest looks for its rootdir and pytest.ini
before it loads any plugin, so such a value moves the rootdir out of the project and pytest.ini
(``-ra``, ``testpaths``, the warning filters) is lost: :func:`pytest_load_initial_conftests` puts
back what pytest finds from the test paths alone. It claims no generic import name
(``harness``, ``models`` and ``fixtures`` are importable only in the suite's own runs, from the
project's conftest.py), and it adds the options only to runs that concern this project (run from
inside it, or naming a path inside it), so an unrelated pytest run in the same environment is
unchanged. Validation, fixtures and parametrization live in the project's ``fixtures/``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent
GROUP = "video-models"


def _shared_defaults():
    """harness/defaults.py, read by its path: this module claims no generic import name."""
    spec = importlib.util.spec_from_file_location("video_model_conformance_defaults", PROJECT / "harness" / "defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_DEFAULTS = _shared_defaults()
BACKEND_NAMES, PRECISIONS, PROFILES, SAVE_LAYOUTS = (_DEFAULTS.BACKEND_NAMES, _DEFAULTS.PRECISIONS,
                                                     _DEFAULTS.PROFILES, _DEFAULTS.SAVE_LAYOUTS)
DEFAULT_CACHE_DIR, DEFAULT_REPORT_DIR = _DEFAULTS.DEFAULT_CACHE_DIR, _DEFAULTS.DEFAULT_REPORT_DIR
DEFAULT_FPS_REGRESSION = _DEFAULTS.DEFAULT_FPS_REGRESSION


def _inside_project(path: str, base: str) -> bool:
    try:
        return (Path(base) / path).resolve().is_relative_to(PROJECT)
    except (OSError, ValueError):
        return False


def concerns_project(argv: list[str] | None = None, cwd: str | None = None) -> bool:
    """True when pytest runs from inside the project or is given a path inside it."""
    cwd = cwd or os.getcwd()
    if _inside_project(cwd, cwd):
        return True
    args = sys.argv[1:] if argv is None else argv
    values = [a.split("=", 1)[-1] for a in args]
    return any(_inside_project(v, cwd) for v in values if v and not v.startswith("-"))


def add_options(parser) -> None:
    """Declare the suite's options once (the entry point and conftest.py may both ask)."""
    group = parser.getgroup(GROUP, "deployed video model conformance and benchmarks")
    if group.options:
        return
    g = group.addoption
    g("--backend", default=None, metavar="NAME[,NAME]",
      help=f"where the deployed model runs: {', '.join(BACKEND_NAMES)}; several, comma-separated, are each "
           "judged against PyTorch (default onnxruntime on the CPU; an Ascend --soc implies ascend)")
    g("--precision", default=None, choices=PRECISIONS,
      help="fp32, or the runtime's default (OpenVINO: bf16 on AMX/AVX512-BF16 CPUs; ATC: fp16). "
           "Default: each backend's own (fp32; Ascend: ATC's default, as the seeds ran)")
    g("--soc", default=None, metavar="NAME",
      help="the reference FPS table to compare with (a column of the seed: Ascend310P3, Ascend310, T4, ...); "
           "an Ascend name is also ATC's --soc_version and selects the Ascend backend by default")
    g("--devices", default="0", metavar="0,1",
      help="accelerator ids; under pytest -n each xdist worker is pinned to one of them")
    g("--profile", default="smoke", choices=PROFILES,
      help="smoke: small shapes and batch sizes for a fast CPU run; full: the seed's shapes and batch sizes")
    g("--weights-dir", default=None, metavar="DIR",
      help="directory holding the seeds' checkpoint files; every selected model's file must be there. "
           "Without it: seeded weights, and every result says so")
    g("--data-root", default=None, metavar="DIR",
      help="datasets in their real layouts; without it: generated deterministically in those layouts")
    g("--accept-bad-items", default=None, metavar="ID[,ID]",
      help="dataset items known to be unreadable or missing that the run may leave out (reported); "
           "by default any such item fails the run")
    g("--accept-missing", action="store_true",
      help="the data root is a partial copy: items the dataset's index lists but that are absent are left "
           "out (reported; the published figure then does not apply); by default they fail the run")
    g("--batch-sizes", default=None, metavar="1,4,...", help="override the profile's batch sizes")
    g("--models", default=None, metavar="a,b", help="only these registered models")
    g("--limit", default=None, type=int, metavar="N", help="read at most N dataset items per model")
    g("--workers", default=None, type=int, metavar="N",
      help="processes reading and preprocessing the dataset ahead of inference (default: the core count)")
    g("--cache-dir", default=DEFAULT_CACHE_DIR, metavar="DIR",
      help="converted artifacts, generated data, preprocessed samples and PyTorch reference outputs, by content")
    g("--cache-budget", default=None, metavar="SIZE",
      help="disk budget of --cache-dir, e.g. 40GB or 512MiB: least recently used entries are evicted, "
           "items beyond it are decoded each pass (default: half of the cache plus its disk's free space)")
    g("--report-dir", default=DEFAULT_REPORT_DIR, metavar="DIR", help="where reports/<run-id>/ is written")
    g("--latest", action="store_true",
      help="make this run reports/latest even when it is partial (--limit, -k, --models, no accuracy or perf row); "
           "by default only a run a night would make becomes reports/latest")
    g("--save-outputs", default=None, metavar="DIR",
      help="write DIR/<model>/<backend>/bs<N>/ and DIR/<model>/torch/ in --save-layout")
    g("--save-layout", default="npz", choices=SAVE_LAYOUTS,
      help="of --save-outputs: npz (<sample-id>.npz, one array per output name) or ais_bench (<i>_<k>.bin per "
           "sample number i in dataset order and output k, <folder>_summary.json and <folder>.sample_ids.txt "
           "beside the folder, one folder per Sintel pass: the seed's postprocess reads it as it is)")
    g("--seed-inputs", default=None, metavar="DIR",
      help="the folders the seeds' *_preprocess.py wrote, as they wrote them, as DIR/<model>/ (e.g. "
           "DIR/flavr/input_0/0.bin; GMA's per pass: DIR/gma/clean/, DIR/gma/final/): conformance compares "
           "them item by item with the suite's own preprocessing")
    g("--baseline", default=None, metavar="results.json",
      help="nightly gate: fail rows whose accuracy leaves its tolerance or FPS drops vs this run")
    g("--references", default=None, metavar="FILE",
      help="nightly gate: fail rows whose figures left the band of their pinned reference in FILE "
           "(references/pinned.yaml; `python -m harness.references update` writes it); --baseline is then noted")
    g("--fps-regression", default=DEFAULT_FPS_REGRESSION, type=float, metavar="F",
      help=f"allowed FPS drop against the pinned reference or --baseline, as a fraction (default {DEFAULT_FPS_REGRESSION})")
    g("--warmup", default=None, type=int, metavar="N",
      help="untimed runs before the timed loop of a perf row (default 1, as ais_bench's --warmup_count)")
    g("--keep-fp32", default=None, metavar="FILE",
      help="ATC's --keep_dtype file (one OpType::<type> or operator name per line) for the ascend and "
           "ascend-preview backends, instead of each model card's own list; `python -m harness.keep_fp32 MODEL` "
           "writes one")
    g("--loop", default=None, type=int, metavar="N",
      help="timed runs per perf row (default: the seed's ais_bench --loop at --profile full, 5 at smoke, "
           "as a floor that --perf-budget extends; given alone, the exact count)")
    g("--perf-budget", default=None, type=float, metavar="SECONDS",
      help="per perf row: time rounds beyond the floor until the median's 95%% interval is within "
           "±1%% or this many seconds are spent (default 2 at --profile smoke, 30 at full)")


def pytest_addoption(parser) -> None:
    if concerns_project():
        add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    """The rootdir and pytest.ini that pytest finds from the test paths alone, not from an option's
    value: pytest determines them before any plugin declares its options, so with the space form
    ``--data-root ../shared/data`` it took ``../shared/data`` for a test path, rooted the run at
    the common ancestor of that and the working directory, and found no pytest.ini there. Only
    when no configuration file was found and none was named; the ini's ``addopts`` are added to
    the command line as pytest adds them (pytest's documented way to add options here)."""
    from _pytest.config.findpaths import determine_setup

    known = early_config.known_args_namespace
    if not concerns_project() or early_config.inipath is not None or known.inifilename or known.rootdir:
        return
    rootpath, inipath, inicfg, ignored = determine_setup(
        inifile=None, override_ini=known.override_ini, args=known.file_or_dir, rootdir_cmd_arg=None,
        invocation_dir=early_config.invocation_params.dir)
    if inipath is None:
        return
    # pytest keeps these privately; it reads them through config.rootpath, .inipath and getini()
    if known.confcutdir == str(early_config.rootpath):  # pytest's default: no conftest.py above it
        known.confcutdir = str(inipath.parent)
    early_config._rootpath, early_config._inipath, early_config._inicfg = rootpath, inipath, inicfg
    early_config._ignored_config_files = ignored
    early_config._inicache.clear()
    args[:] = [*early_config.getini("addopts"), *args]
