"""The artifact is what was asked for: after opening, each runtime's own input and output shapes
are read back and compared with the requested ones; a compiler that ignored the batch size
makes that row red, naming the tensor and both shapes. (The Ascend flavour, a fake atc that
ignores --input_shape, is in test_ascend.py.)"""
from __future__ import annotations

from conftest import TINY_INPUTS
from harness.backends.base import io_shape_mismatches
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.openvino import OpenVinoBackend

REQUESTED = {"inputs": {"clip": (2, 3, 4, 8, 8)}, "outputs": {"features": (2, 4, 4, 8, 8)}}


def test_a_dynamic_dimension_matches_and_a_static_one_must_equal():
    assert io_shape_mismatches(REQUESTED, {"inputs": {"clip": (None, 3, 4, 8, 8)},
                                           "outputs": {"features": (2, 4, None, 8, 8)}}) == []
    assert io_shape_mismatches(REQUESTED, {"inputs": {"clip": (1, 3, 4, 8, 8)},
                                           "outputs": {"features": (1, 4, 4, 8, 8)}}) == [
        "input clip: requested (2, 3, 4, 8, 8), the artifact has (1, 3, 4, 8, 8)",
        "output features: requested (2, 4, 4, 8, 8), the artifact has (1, 4, 4, 8, 8)"]
    assert io_shape_mismatches(REQUESTED, {"inputs": {"clip": (2, 3, 4, 8)},
                                           "outputs": {"features": (2, 4, 4, 8, 8)}}) == [
        "input clip: requested (2, 3, 4, 8, 8), the artifact has (2, 3, 4, 8)"]


def test_a_missing_or_extra_tensor_is_named():
    found = io_shape_mismatches(REQUESTED, {"inputs": {"clip": (2, 3, 4, 8, 8), "gain": (2, 1)},
                                            "outputs": {"mean": (2, 1)}})
    assert found == [
        "input gain: not requested, the artifact has it with shape (2, 1)",
        "output features: requested (2, 4, 4, 8, 8), the artifact has no such tensor (it has mean)",
        "output mean: not requested, the artifact has it with shape (2, 1)"]


def test_onnxruntime_reads_the_dynamic_batch_back_as_none(tiny_onnx):
    session = OnnxRuntimeBackend("fp32").open(tiny_onnx, {})
    shapes = session.io_shapes()
    assert shapes["inputs"] == {name: (None, *shape) for name, shape in TINY_INPUTS.items()}
    assert shapes["outputs"]["features"][0] is None and shapes["outputs"]["mean"] == (None, 1)


def test_openvino_reads_back_the_batch_it_compiled(tiny_onnx, tmp_path):
    backend = OpenVinoBackend("fp32")
    requested = {name: (3, *shape) for name, shape in TINY_INPUTS.items()}
    session = backend.open(backend.compile(tiny_onnx, requested, tmp_path / "tiny.ovir", None), requested)
    try:
        shapes = session.io_shapes()
    finally:
        session.close()
    assert shapes == {"inputs": requested, "outputs": {"features": (3, 4, 4, 8, 8), "mean": (3, 1)}}


# Both CPU runtimes "compile" ignoring the batch size: ONNX Runtime gets an ahead-of-time step that
# writes the ONNX with every graph input's and output's batch fixed to 1, OpenVINO reshapes its IR
# to batch 1 whatever it is asked. Their cache keys say so, so no faithful run reads the artifacts.
IGNORES_BATCH = '''
import onnx
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from harness.backends.onnxruntime import OnnxRuntimeBackend
    from harness.backends.openvino import OpenVinoBackend

    def batch_one(shapes):
        return {name: (1, *shape[1:]) for name, shape in shapes.items()}

    def ort_compile(self, onnx_path, input_shapes, out_path, spec):
        model = onnx.load(str(onnx_path))
        for value in [*model.graph.input, *model.graph.output]:
            value.type.tensor_type.shape.dim[0].dim_value = 1
        onnx.save(model, str(out_path))
        return out_path

    real_ov_compile = OpenVinoBackend.compile
    def ov_compile(self, onnx_path, input_shapes, out_path, spec):
        return real_ov_compile(self, onnx_path, batch_one(input_shapes), out_path, spec)

    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    for backend, compile in ((OnnxRuntimeBackend, ort_compile), (OpenVinoBackend, ov_compile)):
        real_key = backend.compile_key
        undo.setattr(backend, "compile_key",
                     lambda self, spec, real_key=real_key: {**real_key(self, spec), "fault": "batch 1"})
        undo.setattr(backend, "compile", compile)
    undo.setattr(OnnxRuntimeBackend, "artifact_suffix", ".onnx")
'''

RUNTIMES = "--backend=onnxruntime,openvino"


def test_a_compiler_that_ignores_the_batch_size_fails_that_row(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1,2", RUNTIMES, "--precision=fp32",
                       "-m", "accuracy", plugin=IGNORES_BATCH)
    # bs 1 is what was asked for on both runtimes; bs 2 is an error of its row on each
    result.stdout.fnmatch_lines_random([
        f"*ArtifactMismatch: {runtime}: efficient3dcnn bs2: * is not the model that was asked for: "
        f"input image: requested (2, 3, 16, 64, 64), the artifact has (1, 3, 16, 64, 64); "
        f"output class: requested (2, 101), the artifact has (1, 101)*"
        for runtime in ("onnxruntime", "openvino")])
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("failed", 0) == 2, outcomes
    assert outcomes.get("passed") == 2, outcomes
    result.stdout.no_fnmatch_line("*bs1: * is not the model that was asked for*")


def test_the_faithful_compilers_stay_green(run_suite):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1,2", RUNTIMES, "--precision=fp32",
                       "-m", "accuracy")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 4 and not outcomes.get("failed") and not outcomes.get("errors"), outcomes
    result.stdout.no_fnmatch_line("*ArtifactMismatch*")


def test_an_om_compiled_for_another_batch_size_fails_the_row(run_suite, fake_ascend_toolkit_atc_ignoring_batch):
    """ATC that ignores the batch size in --input_shape (a batch-1 .om for every batch size): the
    ais_bench session's own get_inputs()/get_outputs() give it away at bs 2."""
    result = run_suite("--soc=Ascend310P3", "--models=efficient3dcnn", "--batch-sizes=1,2", "-m", "accuracy")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ArtifactMismatch: ascend: efficient3dcnn bs2: * is not the model that was asked "
                                 "for: input image: requested (2, 3, 16, 64, 64), the artifact has (1, 3, 16, 64, 64)*"])
    rows = {r["batch_size"]: r for r in result.results["records"]}
    assert rows[2]["status"] == "error" and rows[2]["error"]["type"] == "ArtifactMismatch"
