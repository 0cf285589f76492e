"""Command-line options: defaults, usage errors that say what is wrong, device pinning."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from fixtures.options import judged_against, resolve_options
from harness.records import FORMAT


def options(**overrides):
    defaults = dict(backend=None, precision=None, soc=None, devices="0", profile="smoke", weights_dir=None,
                    data_root=None, batch_sizes=None, models=None, limit=None, cache_dir=".cache",
                    report_dir="reports", save_outputs=None, baseline=None, references=None, fps_regression=0.10,
                    accept_bad_items=None, accept_missing=False, workers=None, warmup=None, loop=None, save_layout="npz",
                    seed_inputs=None, cache_budget=None, latest=False, perf_budget=None, keep_fp32=None)
    return SimpleNamespace(**{**defaults, **overrides})


def test_defaults_run_onnxruntime_fp32_smoke_on_every_model():
    from harness.backends.onnxruntime import OnnxRuntimeBackend

    run = resolve_options(options())
    assert run.backends == ("onnxruntime",) and run.precision is None and run.profile == "smoke"
    assert OnnxRuntimeBackend.from_options(run).precision == "fp32", "each backend's own default"
    assert run.models is None and run.batch_sizes is None and run.devices == (0,)


def test_lists_are_parsed():
    run = resolve_options(options(backend="onnxruntime,openvino", batch_sizes="1,4", models="flavr,gma"))
    assert run.backends == ("onnxruntime", "openvino") and run.batch_sizes == (1, 4)
    assert run.models == ("flavr", "gma")


@pytest.mark.parametrize("overrides, message", [
    ({"batch_sizes": "1,x"}, "--batch-sizes '1,x': expected comma-separated integers"),
    ({"batch_sizes": "0"}, "batch sizes must be >= 1"),
    ({"models": "flavr,nope"}, "--models: unknown nope; registered: "),
    ({"backend": "tpu"}, "unknown tpu; choose from"),
    ({"backend": "ascend"}, "--backend ascend needs an Ascend --soc"),
    ({"backend": "ascend", "soc": "T4"}, "--soc T4 is not one"),
    ({"soc": "H100"}, "--soc H100: no model has a reference table for it; known: Ascend310, Ascend310P3, T4"),
    ({"soc": ""}, "--soc: empty value"),
    ({"weights_dir": ""}, "--weights-dir: empty value"),
    ({"data_root": ""}, "--data-root: empty value"),
    ({"models": ","}, "--models ',': empty"),
    ({"backend": ""}, "--backend '': empty"),
    ({"loop": 0}, "--loop must be >= 1"),
    ({"perf_budget": -1.0}, "--perf-budget must be seconds >= 0 (got -1.0)"),
    ({"workers": 0}, "--workers must be >= 1"),
    ({"limit": 0}, "--limit must be >= 1"),
    ({"data_root": "/nonexistent/data"}, "--data-root /nonexistent/data: not a directory"),
    ({"baseline": "/nonexistent/results.json"}, "no such file"),
    ({"fps_regression": 1.5}, "fraction between 0 and 1"),
])
def test_usage_errors_say_what_is_wrong(overrides, message):
    with pytest.raises(pytest.UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("'", ".")):
        resolve_options(options(**overrides))


@pytest.mark.parametrize("option, content, message", [
    ("baseline", "{", "--baseline {path}: not JSON"),
    ("baseline", '{"run_id": "old", "records": []}', f"--baseline {{path}}: results.json format 1, this suite reads format {FORMAT}"),
    ("references", "format: 1\nrows: [", "--references {path}: not YAML"),
    ("references", "format: 0\n", "--references {path}: pinned-references format 0"),
    ("references", None, "--references {path}: no such file (expected a pinned-references file"),
])
def test_a_gate_file_that_cannot_be_read_stops_the_run_at_start_naming_it(tmp_path, option, content, message):
    path = tmp_path / "file"
    if content is not None:
        path.write_text(content)
    with pytest.raises(pytest.UsageError) as err:
        judged_against(resolve_options(options(**{option: str(path)})))
    assert message.format(path=path) in str(err.value)


@pytest.mark.skipif(shutil.which("atc") is not None, reason="the Ascend toolkit is installed here")
def test_soc_without_toolkit_stops_naming_what_to_install():
    with pytest.raises(pytest.UsageError) as err:
        resolve_options(options(soc="Ascend310P3"))
    assert "set_env.sh" in str(err.value) and "ais_bench" in str(err.value)


def test_each_xdist_worker_is_pinned_to_one_device(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert resolve_options(options(devices="0,1")).devices == (1,)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    assert resolve_options(options(devices="0,1")).devices == (0,)


def test_seed_out_of_memory_rows_are_expected_failures_on_that_soc():
    from fixtures.options import batch_cases
    from harness import registry
    from harness.config import RunConfig

    specs = [registry.get("flownet2"), registry.get("gma")]
    on_soc = {p.id: p.marks for p in batch_cases(specs, RunConfig(soc="Ascend310P3", profile="full"))}
    assert [m.kwargs["reason"] for m in on_soc["flownet2-bs8"]] == [
        "the seed records out of memory on Ascend310P3 at batch size 8"]
    assert on_soc["flownet2-bs8"][0].kwargs["raises"] is MemoryError, "only out of memory is expected there"
    assert on_soc["gma-bs16"] and not on_soc["gma-bs8"] and not on_soc["flownet2-bs4"]
    on_cpu = batch_cases(specs, RunConfig(profile="full"))
    assert not any(p.marks for p in on_cpu), "without --soc no reference row applies"


def test_the_reference_table_is_chosen_apart_from_the_backend():
    """The Efficient-3DCNNs seed has a T4 column: any backend may be compared with it."""
    run = resolve_options(options(soc="T4"))
    assert run.backends == ("onnxruntime",) and run.soc == "T4"
