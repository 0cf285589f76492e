"""The suite run against deliberately broken deployments, data and options must be red and name
the culprit; against the faithful deployment, green. Each case runs the suite's own tests in a
sandbox (pytest's ``pytester``, in this process), as a user would; smoke shapes, the fastest model that shows
the behaviour, and one artifact cache shared by every case."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from conftest import ort_session_patch
from harness import registry

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

NOISE = """    rng = state.setdefault("rng", np.random.default_rng(0))
    return {n: rng.standard_normal(a.shape).astype(a.dtype) for n, a in outputs.items()}"""

# the outputs of the batch before: a pipelining bug that leaves every number plausible
STALE = """    previous = state.get("previous", outputs)
    state["previous"] = outputs
    return previous"""

NAN = """    outputs = {n: a.copy() for n, a in outputs.items()}
    next(iter(outputs.values())).flat[0] = np.nan
    return outputs"""


def faulty(body: str) -> str:
    """A runtime whose sessions return what ``corrupt(outputs, feeds, state)`` (this body) makes
    of the true outputs."""
    corrupt = "    def corrupt(outputs, feeds, state):\n" + textwrap.indent(body, "    ")
    return ort_session_patch(f"{corrupt}\n    real_run = session.run\n"
                             "    session.run = lambda feeds: corrupt(real_run(feeds), feeds, state)")


def _notes(result) -> list[str]:
    return [f["message"] for r in result.results["records"] for f in r.get("findings", []) if f["kind"] == "note"]


@pytest.mark.parametrize("name", ["efficient3dcnn", "slowfast"])
def test_noise_from_the_runtime_fails_accuracy_alone(run_suite, name):
    """Seeded weights give top-1 0 % for PyTorch and for noise alike; agreement tells them apart."""
    result = run_suite(f"--models={name}", "--batch-sizes=1", "-m", "accuracy", plugin=faulty(NOISE))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{name} bs1 on onnxruntime (fp32): *top1_agreement: * vs PyTorch, expected >= *"])


def test_another_batchs_outputs_fail(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=2", "-m", "accuracy", plugin=faulty(STALE))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*element-wise: * elements outside * (vs PyTorch, fp32 tolerance)*"])


def test_nan_from_the_runtime_fails_naming_the_sample(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy", plugin=faulty(NAN))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the deployed model produced NaN or Inf on 7 sample(s), first v_*/clip0 (outputs class)*"])
    # a refused figure is absent, never a number: NaN or Infinity as a JSON value fails here
    json.loads((result.results_dir / "results.json").read_text(),
               parse_constant=lambda constant: pytest.fail(f"{constant} as a value in results.json"))
    assert not any(cell.strip() in ("nan", "inf", "-inf") for line in (result.results_dir / "summary.md").read_text()
                   .splitlines() for cell in line.split("|"))


def test_the_faithful_deployment_is_green_and_says_the_weights_are_seeded(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy or conformance",
                       tests=("test_accuracy.py", "test_conformance.py"))
    result.assert_outcomes(passed=4, skipped=1)  # --seed-inputs not given
    records = result.results["records"]
    assert records and all(r["weights"]["source"] == "seeded" for r in records if "weights" in r)
    assert all(r["status"] == "pass" and r["accuracy"]["verdict"] == "pass" for r in records if "accuracy" in r)


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} (the real test files) is absent")
def test_noise_fails_on_the_real_files_too(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy",
                       f"--data-root={SHARED_DATA}", "--accept-missing", plugin=faulty(NOISE))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*top1_agreement: * vs PyTorch*"])
    result.stdout.no_fnmatch_line("*listed item(s) missing*")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} (the real test files) is absent")
def test_the_faithful_deployment_is_green_on_the_real_files(run_suite):
    """../shared/data is a partial copy (UCF101's split lists 3,783 videos, one is there): green
    when the run says so, and the rows say what was left out."""
    result = run_suite("--batch-sizes=1", "-m", "accuracy", f"--data-root={SHARED_DATA}", "--accept-missing")
    result.assert_outcomes(passed=5)
    notes = _notes(result)
    assert any(n.startswith("3782 listed item(s) absent under") for n in notes), notes


OOM_ROW = '''
import dataclasses
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """The E3D T4 table records bs1 as out of memory, and opening a session raises {error}."""
    from harness import registry
    from harness.backends import onnxruntime as ort_backend

    spec = registry.get("efficient3dcnn")
    tables = {{**spec.reference_fps, "T4": {{**spec.reference_fps["T4"], 1: "oom"}}}}
    def failing_open(self, artifact, shapes):
        raise {error}
    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    undo.setitem(registry._REGISTRY, "efficient3dcnn", dataclasses.replace(spec, reference_fps=tables))
    undo.setattr(ort_backend.OnnxRuntimeBackend, "open", failing_open)
'''


def test_out_of_memory_at_a_seed_oom_row_is_expected(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "--soc=T4", "-m", "accuracy",
                       plugin=OOM_ROW.format(error='MemoryError("onnxruntime: Failed to allocate memory")'))
    result.assert_outcomes(xfailed=1)
    assert result.ret == 0
    rows = result.results["records"]
    assert [r["status"] for r in rows] == ["expected failure"] and rows[0]["error"]["type"] == "MemoryError"


def test_any_other_error_at_a_seed_oom_row_fails(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "--soc=T4", "-m", "accuracy",
                       plugin=OOM_ROW.format(error='RuntimeError("EZ9999: AI Core exception")'))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: EZ9999: AI Core exception*"])
    rows = result.results["records"]
    assert [r["status"] for r in rows] == ["error"] and "AI Core exception" in rows[0]["error"]["message"]


@pytest.fixture
def ucf101(tmp_path) -> Path:
    """A generated UCF101 rawframes tree (the real layout) to break."""
    spec = registry.get("efficient3dcnn")
    root = tmp_path / "data"
    spec.generate_dataset(root / spec.dataset_dir, spec.profile("smoke"), spec.protocol_for("smoke"))
    return root


def _videos(root: Path) -> list[Path]:
    return sorted(p for p in (root / "UCF101" / "rawframes").glob("*/*") if p.is_dir())


def test_a_listed_video_that_is_missing_fails_naming_it(run_suite, ucf101):
    gone = _videos(ucf101)[0]
    shutil.rmtree(gone)
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", f"--data-root={ucf101}", "-m", "accuracy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*1 listed item(s) missing under {ucf101 / 'UCF101'}: {gone.name} (a partial copy*"])


def test_accepting_a_known_bad_item_is_explicit_and_reported(run_suite, ucf101):
    gone = _videos(ucf101)[0]
    shutil.rmtree(gone)
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", f"--data-root={ucf101}", "-m", "accuracy",
                       f"--accept-bad-items={gone.name}")
    result.assert_outcomes(passed=1)
    notes = _notes(result)
    assert notes == [f"left out as accepted with --accept-bad-items: {gone.name}"]


def test_an_n_frames_that_lies_fails_naming_the_frame(run_suite, ucf101):
    video = _videos(ucf101)[1]
    (video / "n_frames").write_text("99")
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", f"--data-root={ucf101}", "-m", "accuracy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*unreadable item {video.name} under *: *image_*.jpg missing; *n_frames says 99 frames*"])


def test_a_dataset_that_yields_no_sample_fails(run_suite, ucf101):
    annotation = ucf101 / "UCF101" / "annotation" / "ucf101_01.json"
    index = json.loads(annotation.read_text())
    for entry in index["database"].values():
        entry["subset"] = "training"  # nothing left in the validation subset
    annotation.write_text(json.dumps(index))
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", f"--data-root={ucf101}", "-m", "accuracy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nothing was judged: the dataset under * yielded no sample (0 item(s) listed, 0 read)*"])


@pytest.mark.parametrize("option", ["--weights-dir=", "--data-root="])
def test_an_empty_path_option_is_a_usage_error(run_suite, option):
    result = run_suite("--models=efficient3dcnn", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option[:-1]}: empty value*"])


def test_a_weights_dir_without_the_checkpoint_fails_naming_the_file(run_suite, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "ucf101_mobilenetv2_1.0x_RGB_16.pth").write_bytes(b"near miss")
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", f"--weights-dir={weights}", "-m", "accuracy")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{weights / 'ucf101_mobilenetv2_1.0x_RGB_16_best.pth'}*"])
    result.stdout.no_fnmatch_line("*passed*")


SCALED_CONV = '''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Every graph the runtime opens gets the weights of Conv {node!r} scaled by 1.5."""
    import tempfile
    import onnx
    from pathlib import Path
    from onnx import numpy_helper
    from harness.backends import onnxruntime as ort_backend

    real_open = ort_backend.OnnxRuntimeBackend.open
    def faulty_open(self, artifact, shapes):
        model = onnx.load(str(artifact))
        node = next(n for n in model.graph.node if n.name == {node!r})
        weight = next(i for i in model.graph.initializer if i.name == node.input[1])
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
        faulty = Path(tempfile.mkdtemp()) / "faulty.onnx"
        onnx.save(model, str(faulty))
        return real_open(self, faulty, shapes)
    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    undo.setattr(ort_backend.OnnxRuntimeBackend, "open", faulty_open)
'''


def test_a_faulty_node_is_named_where_the_divergence_starts(run_suite, suite_cache):
    from harness import stages

    spec = registry.get("efficient3dcnn")
    graph = __import__("onnx").load(str(stages.onnx_for(spec, "smoke", suite_cache)))
    convs = [n.name for n in graph.graph.node if n.op_type == "Conv"]
    target = convs[len(convs) // 2]
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy",
                       plugin=SCALED_CONV.format(node=target))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*divergence on onnxruntime (fp32) starts at node {target} (Conv, module *"])
    row = next(r for r in result.results["records"] if r.get("localisation"))
    assert target in row["localisation"] and Path(row["worst_sample_picture"]).is_file()


def test_the_ascend_path_runs_green_on_the_fake_toolkit(run_suite, fake_ascend_toolkit):
    """atc (arguments checked) compiles the .om per batch size, ais_bench (either generation)
    runs it; the run is judged at ATC's default precision, fp16, as the seeds ran."""
    result = run_suite("--soc=Ascend310P3", "--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy")
    result.assert_outcomes(passed=1)
    row = next(r for r in result.results["records"] if "accuracy" in r)
    assert (row["backend"], row["precision"], row["status"]) == ("ascend", "fp16", "pass")


STAGE_COUNTER = '''
import collections
import json
import pytest

CALLS = collections.Counter()
DECODED = []

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Counts each stage call by its input, and the items each pass over the data decoded."""
    from harness import stages

    keys = {
        "load_weights": lambda spec, *a: spec.name,
        "exported_onnx": lambda spec, *a: spec.name,
        "simplified_onnx": lambda spec, *a: spec.name,
        "compiled_model": lambda backend, spec, profile, bs, *a: f"{spec.name}/{backend.name}/bs{bs}",
        "reference_pass": lambda spec, *a: spec.name,
        "deployed_pass": lambda spec, profile, session, bs, *a: f"{spec.name}/{a[-1].root.name}",
    }
    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    for name, key in keys.items():
        real = getattr(stages, name)
        def counted(*args, _real=real, _name=name, _key=key):
            CALLS[f"{_name}:{_key(*args)}"] += 1
            result = _real(*args)
            if _name.endswith("_pass"):
                DECODED.append(result.dataset["this_pass"]["decoded"])
            return result
        undo.setattr(stages, name, counted)

def pytest_unconfigure(config):
    with open("stage_calls.json", "w") as f:
        json.dump({"calls": CALLS, "decoded": DECODED}, f)
'''


def test_each_stage_runs_once_per_input_and_each_item_is_decoded_once(run_suite, pytester, tmp_path):
    """Two backends x two batch sizes: every stage once per distinct input in the session, each
    dataset item decoded once; a second run over the same data decodes nothing and builds nothing."""
    options = ("--models=efficient3dcnn", "--backend=onnxruntime,openvino", "--batch-sizes=1,2",
               f"--cache-dir={tmp_path / 'cache'}", "-m", "accuracy or conformance")
    tests = ("test_accuracy.py", "test_conformance.py")
    for night in (1, 2):
        result = run_suite(*options, plugin=STAGE_COUNTER, tests=tests)
        result.assert_outcomes(passed=10, skipped=1)  # --seed-inputs not given
        counted = json.loads((pytester.path / "stage_calls.json").read_text())
        assert set(counted["calls"].values()) == {1}, counted["calls"]
        assert len(counted["calls"]) == 3 + 4 + 1 + 4  # weights/ONNX/simplified, 4 compiled, 1 + 4 passes
        videos = result.results["records"][0]["data"]["read"]
        assert sum(counted["decoded"]) == (videos if night == 1 else 0), counted["decoded"]
        # a row counts over every pass of the run: the cold night decoded them all in its first pass
        assert result.results["records"][0]["data"]["decoded"] == (videos if night == 1 else 0)
    assert result.results["artifacts_built"] == 0, "a warm rerun converts nothing"


def _generated(spec_name: str, root: Path) -> Path:
    spec = registry.get(spec_name)
    spec.generate_dataset(root / spec.dataset_dir, spec.profile("smoke"), spec.protocol_for("smoke"))
    return root


def test_a_corrupt_frame_fails_naming_the_item(run_suite, tmp_path):
    root = _generated("flavr", tmp_path / "data")
    frame = sorted((root / "ucf101_extracted").glob("*/frame2.png"))[0]
    frame.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_suite("--models=flavr", "--batch-sizes=1", f"--data-root={root}", "-m", "accuracy")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*unreadable item ucf101_extracted/{frame.parent.name} under *{frame.name}*"])


@pytest.mark.parametrize("damage", ["bad magic", "truncated"])
def test_a_broken_flo_fails_naming_the_pair(run_suite, tmp_path, damage):
    root = _generated("gma", tmp_path / "data")
    flo = sorted((root / "MPI-Sintel" / "training" / "flow").rglob("*.flo"))[0]
    data = flo.read_bytes()
    flo.write_bytes(b"HEIP" + data[4:] if damage == "bad magic" else data[: len(data) // 2])
    result = run_suite("--models=gma", "--batch-sizes=1", f"--data-root={root}", "-m", "accuracy")
    result.assert_outcomes(failed=1)
    scene = flo.parent.name
    result.stdout.fnmatch_lines([f"*unreadable item */{scene}/{flo.stem} under *{flo.name}*"])


def test_a_nan_weight_fails_at_load_naming_the_tensor_and_the_file(run_suite, tmp_path):
    import torch

    from harness import stages

    spec = registry.get("efficient3dcnn")
    state = stages.torch_network(spec, "smoke", stages.load_weights(spec, None)).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name].view(-1)[0] = float("nan")
    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, weights / spec.checkpoint.filename)
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", f"--weights-dir={weights}", "-m", "accuracy")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{weights / spec.checkpoint.filename}: tensor '{name}'* holds 1 NaN*"])


def test_the_in_run_gate_fails_rows_that_fell_behind_the_baseline(run_suite, tmp_path):
    """--baseline in the run: green against the night before as it was; red naming the row when
    the baseline was better (accuracy beyond its tolerance, FPS beyond --fps-regression)."""
    options = ("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy or perf", "--loop=3")
    night = run_suite(*options, tests=("test_accuracy.py", "test_perf.py"))
    night.assert_outcomes(passed=2)
    faithful = tmp_path / "faithful.json"
    faithful.write_text(json.dumps(night.results))
    better = json.loads(faithful.read_text())
    for figure in (f for record in better["records"] for f in record["figures"]):
        figure["value"] = {"top1": 50.0, "fps": 1e6, "best_fps": 1e6}.get(figure["name"], figure["value"])
    doctored = tmp_path / "better.json"
    doctored.write_text(json.dumps(better))
    run_suite(*options, f"--baseline={faithful}", "--fps-regression=0.9",
              tests=("test_accuracy.py", "test_perf.py")).assert_outcomes(passed=2)
    red = run_suite(*options, f"--baseline={doctored}", tests=("test_accuracy.py", "test_perf.py"))
    red.assert_outcomes(failed=2)
    red.stdout.fnmatch_lines(["*against the baseline*efficient3dcnn/onnxruntime/fp32/bs1*top1*",
                              "*against the baseline*efficient3dcnn/onnxruntime/fp32/bs1*fps*"], consecutive=False)


KNOWN_FAILURE = '''
import dataclasses
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """efficient3dcnn on onnxruntime fp32 bs1 is declared to fail with {declared}; opening a
    session raises {raised}."""
    from harness import registry
    from harness.backends import onnxruntime as ort_backend
    from harness.spec import KnownFailure

    spec = registry.get("efficient3dcnn")
    known = KnownFailure({declared}, "the runtime's Conv3d kernel crashes (issue #123)", backend="onnxruntime",
                         precision="fp32", batch_size=1)
    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    undo.setitem(registry._REGISTRY, "efficient3dcnn", dataclasses.replace(spec, known_failures=(known,)))
    if {raised} is not None:
        def failing_open(self, artifact, shapes):
            raise {raised}("EZ9999: AI Core exception")
        undo.setattr(ort_backend.OnnxRuntimeBackend, "open", failing_open)
'''


def test_a_declared_known_failure_is_expected_with_its_reason(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy",
                       plugin=KNOWN_FAILURE.format(declared="RuntimeError", raised="RuntimeError"))
    result.assert_outcomes(xfailed=1)
    row = result.results["records"][0]
    assert row["status"] == "expected failure" and "issue #123" in row["expected_failure"]


@pytest.mark.parametrize("raised, outcome, message", [
    ("None", {"failed": 1}, "*XPASS(strict)*the runtime's Conv3d kernel crashes (issue #123)*"),
    ("ValueError", {"errors": 1}, "*ValueError: EZ9999: AI Core exception*"),
])
def test_a_known_failure_that_passes_or_fails_otherwise_is_reported(run_suite, raised, outcome, message):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy",
                       plugin=KNOWN_FAILURE.format(declared="RuntimeError", raised=raised))
    result.assert_outcomes(**outcome)
    result.stdout.fnmatch_lines([message])
    row = result.results["records"][0]
    assert row["status"] in ("fail", "error"), row


LEAKING_PATCH = '''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from harness.backends import onnxruntime as ort_backend

    ort_backend.OnnxRuntimeBackend.reports_compute_time = "patched"  # and never undone
'''


def test_a_sandbox_plugin_that_leaves_the_project_patched_fails_and_is_undone(run_suite):
    """The sandboxed runs share this process: a patch a plugin leaves behind would change every
    later test, so the run that left it fails, naming it, and the project is restored."""
    from harness.backends.onnxruntime import OnnxRuntimeBackend

    declared = OnnxRuntimeBackend.__dict__.get("reports_compute_time")
    with pytest.raises(pytest.fail.Exception, match="left the project patched .*"
                       r"harness\.backends\.onnxruntime\.OnnxRuntimeBackend\.reports_compute_time"):
        run_suite("--models=efficient3dcnn", "--collect-only", plugin=LEAKING_PATCH)
    assert OnnxRuntimeBackend.__dict__.get("reports_compute_time") == declared
