"""Options, parametrization over the model registry, and the fixture plugins."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import registry
from harness.backends import BACKENDS, backend_class
from harness.backends.base import PRECISIONS
from harness.config import PROFILES, RunConfig, parse_int_list
from harness.spec import OOM

pytest_plugins = [
    "fixtures.weights",
    "fixtures.export",
    "fixtures.compile",
    "fixtures.data",
    "fixtures.outputs",
    "fixtures.report",
]

CONFIG_KEY = pytest.StashKey[RunConfig]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("video-models", "deployed video model conformance and benchmarks")
    g.addoption("--backend", default=None, choices=sorted(BACKENDS),
                help="where the deployed model runs (default onnxruntime on the CPU; --soc implies ascend); "
                     "PyTorch is always the reference")
    g.addoption("--precision", default=None, choices=PRECISIONS,
                help="fp32, or the runtime's default (OpenVINO: bf16 on AMX CPUs; ATC: fp16). Default: fp32, "
                     "except on Ascend where the seeds ran ATC's default")
    g.addoption("--soc", default=None, metavar="NAME",
                help="Ascend SoC, e.g. Ascend310P3: selects the Ascend backend (needs CANN's atc and ais_bench) "
                     "and the reference FPS rows that gate perf")
    g.addoption("--devices", default="0", metavar="0,1",
                help="accelerator ids; under pytest -n each xdist worker is pinned to one of them")
    g.addoption("--profile", default="smoke", choices=PROFILES,
                help="smoke: small shapes and batch sizes for a fast CPU run; full: the seed's shapes and batch sizes")
    g.addoption("--weights-dir", default=None, metavar="DIR",
                help="directory holding the seed's checkpoint files; absent ones use seeded weights")
    g.addoption("--data-root", default=None, metavar="DIR",
                help="datasets in their real layouts; absent: generated deterministically in those layouts")
    g.addoption("--batch-sizes", default=None, metavar="1,4,...", help="override the profile's batch sizes")
    g.addoption("--models", default=None, metavar="a,b", help="only these registered models")
    g.addoption("--limit", default=None, type=int, metavar="N", help="read at most N dataset items per model")
    g.addoption("--cache-dir", default=".cache", metavar="DIR", help="converted artifacts and generated data")
    g.addoption("--report-dir", default="reports", metavar="DIR", help="where reports/<run-id>/ is written")
    g.addoption("--save-outputs", default=None, metavar="DIR",
                help="write DIR/<model>/<backend>/bs<N>/<sample-id>.npz and DIR/<model>/torch/<sample-id>.npz")
    g.addoption("--baseline", default=None, metavar="results.json",
                help="nightly gate: fail rows whose accuracy leaves its tolerance or FPS drops vs this run")
    g.addoption("--fps-regression", default=0.10, type=float, metavar="F",
                help="allowed FPS drop against --baseline as a fraction (default 0.10)")
    g.addoption("--perf-seconds", default=2.0, type=float, metavar="S",
                help="time budget of the timed rounds per perf row (at least 3 rounds)")


def _usage(message: str) -> None:
    raise pytest.UsageError(message)


def _resolve(config: pytest.Config) -> RunConfig:
    opt = config.option
    soc = opt.soc
    backend = opt.backend or ("ascend" if soc else "onnxruntime")
    if soc and backend != "ascend":
        _usage(f"--soc {soc} selects the Ascend backend; it cannot be combined with --backend {backend}")
    if backend == "ascend" and not soc:
        _usage("--backend ascend needs --soc NAME (e.g. --soc Ascend310P3, as `npu-smi info` shows the chip)")
    if backend != "onnxruntime" or soc:
        ok, why = backend_class(backend).availability()
        if not ok:
            _usage(f"--{'soc ' + soc if soc else 'backend ' + backend}: {why}")
    try:
        devices = parse_int_list(opt.devices, "--devices")
        batch_sizes = parse_int_list(opt.batch_sizes, "--batch-sizes") if opt.batch_sizes else None
    except ValueError as err:
        _usage(str(err))
    if batch_sizes and 0 in batch_sizes:
        _usage("--batch-sizes: batch sizes must be >= 1")
    models = tuple(m.strip() for m in opt.models.split(",") if m.strip()) if opt.models else None
    known = [s.name for s in registry.all_specs()]
    unknown = [m for m in models or () if m not in known]
    if unknown:
        _usage(f"--models: unknown {', '.join(unknown)}; registered: {', '.join(known)}")
    for flag, value in (("--weights-dir", opt.weights_dir), ("--data-root", opt.data_root)):
        if value is not None and not Path(value).is_dir():
            _usage(f"{flag} {value}: not a directory")
    if opt.baseline is not None and not Path(opt.baseline).is_file():
        _usage(f"--baseline {opt.baseline}: no such file (expected a reports/<run-id>/results.json)")
    if opt.limit is not None and opt.limit < 1:
        _usage("--limit must be >= 1")
    if not 0 < opt.fps_regression < 1:
        _usage("--fps-regression must be a fraction between 0 and 1")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker and len(devices) > 1:  # pin each xdist worker to one device
        devices = (devices[int(worker.removeprefix("gw") or 0) % len(devices)],)
    return RunConfig(
        backend=backend, precision=opt.precision or ("default" if backend == "ascend" else "fp32"), soc=soc, devices=devices, profile=opt.profile,
        weights_dir=Path(opt.weights_dir) if opt.weights_dir else None,
        data_root=Path(opt.data_root) if opt.data_root else None,
        batch_sizes=batch_sizes, models=models, limit=opt.limit,
        cache_dir=Path(opt.cache_dir).resolve(), report_dir=Path(opt.report_dir).resolve(),
        save_outputs=Path(opt.save_outputs).resolve() if opt.save_outputs else None,
        baseline=Path(opt.baseline) if opt.baseline else None,
        fps_regression=opt.fps_regression, perf_seconds=opt.perf_seconds,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[CONFIG_KEY] = _resolve(config)


def run_config(config: pytest.Config) -> RunConfig:
    return config.stash[CONFIG_KEY]


def selected_specs(config: pytest.Config):
    run = run_config(config)
    return [s for s in registry.all_specs() if run.models is None or s.name in run.models]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests never name a model: ``model`` runs over the registry, ``batch_size`` over each
    model's batch sizes. Rows the seed's table records as out of memory for the chosen soc are
    expected failures with that reason."""
    if "model" not in metafunc.fixturenames:
        return
    run = run_config(metafunc.config)
    specs = selected_specs(metafunc.config)
    if "batch_size" not in metafunc.fixturenames:
        metafunc.parametrize("model", specs, ids=[s.name for s in specs])
        return
    params = []
    for spec in specs:
        for bs in run.batch_sizes or spec.profile(run.profile).batch_sizes:
            marks = []
            if run.soc and spec.reference_fps.get(run.soc, {}).get(bs) == OOM:
                marks.append(pytest.mark.xfail(reason=f"the seed records out of memory on {run.soc} at batch size {bs}"))
            params.append(pytest.param(spec, bs, marks=marks, id=f"{spec.name}-bs{bs}"))
    metafunc.parametrize("model,batch_size", params)
