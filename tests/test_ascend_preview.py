"""The Ascend fp16 preview: ATC's default arithmetic emulated on ONNX Runtime's CPU. The known
case (an InstanceNorm whose sum of squares leaves fp16's range) is red and localised at the
InstanceNorm with nothing kept, green with ``OpType::InstanceNorm`` kept and green in plain fp32;
the emulation's own steps are checked on small graphs; a sandboxed suite run shows its rows."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import instance_norm_model as known
from harness.backends.ascend import AtcOptions, KeepList
from harness.backends.ascend_preview import PREVIEW, AscendPreviewBackend, ascend_type, emulate_fp16
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.localise import deployed_run, localise
from harness.outputs import ElementwiseStats


@pytest.fixture(scope="module")
def known_case(tmp_path_factory):
    return known.build(tmp_path_factory.mktemp("known"))


def _stats(backend, known_case, tmp_path, spec=known.SPEC) -> ElementwiseStats:
    onnx_path, feeds, reference = known_case
    stats = ElementwiseStats(spec.elementwise[backend.precision])
    stats.add("batch", reference, deployed_run(backend, onnx_path, feeds, tmp_path, spec))
    return stats


def _preview(*keep: str) -> AscendPreviewBackend:
    return AscendPreviewBackend(keep_fp32=KeepList(keep, "test"))


def test_known_case_red_with_nothing_kept_and_localised_at_the_instance_norm(known_case, tmp_path):
    stats = _stats(_preview(), known_case, tmp_path)
    assert not stats.passed and stats.max_abs > 0.5, stats.message()
    onnx_path, feeds, _ = known_case
    found = localise(onnx_path, _preview(), feeds, work_dir=tmp_path)
    assert found.precision == "fp16" and found.first_divergent.op_type == "InstanceNormalization"
    assert "starts at node /norm/InstanceNormalization (InstanceNormalization" in found.summary()


def test_known_case_green_with_instance_norm_kept_and_in_plain_fp32(known_case, tmp_path):
    kept = _stats(_preview("OpType::InstanceNorm"), known_case, tmp_path)
    assert kept.passed and kept.max_abs < 0.01, kept.message()
    by_name = _stats(_preview("/norm/InstanceNormalization"), known_case, tmp_path)
    assert by_name.passed, "a node name keeps that node: " + by_name.message()
    plain = _stats(OnnxRuntimeBackend("fp32"), known_case, tmp_path)
    assert plain.passed and plain.max_abs < 1e-5, plain.message()


def test_the_card_list_is_the_default_and_a_given_list_replaces_it(known_case, tmp_path):
    card = SimpleNamespace(**{**vars(known.SPEC),
                              "compile_options": {"ascend": AtcOptions(keep_fp32=("OpType::InstanceNorm",))}})
    assert _stats(AscendPreviewBackend(), known_case, tmp_path, card).passed
    assert not _stats(AscendPreviewBackend(keep_fp32=KeepList((), "--keep-fp32 empty.cfg")), known_case, tmp_path,
                      card).passed
    onnx_path, feeds, _ = known_case
    with_card = localise(onnx_path, AscendPreviewBackend(), feeds, work_dir=tmp_path, spec=card)
    assert with_card.first_divergent is None, "localisation compiles the model as its failing run did: " + \
        with_card.summary()
    env = AscendPreviewBackend().environment(card)
    assert env["keep_fp32"] == ["OpType::InstanceNorm"] and env["keep_fp32_from"] == "the model card"
    assert env["preview"] == PREVIEW and "not the Ascend device" in PREVIEW


def _graph(nodes, inputs, outputs, initializers=(), opset=12) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, feeds) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _mean_or_norm(op_type: str, opset: int) -> tuple[onnx.ModelProto, dict]:
    """``op_type`` over 4 values of 20000 (their fp32 sum, 80000, is beyond fp16's 65504)."""
    node = {"ReduceMean": helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], name="n"),
            "GlobalAveragePool": helper.make_node("GlobalAveragePool", ["x"], ["y"], name="n"),
            "InstanceNormalization": helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["y"], name="n"),
            "LayerNormalization": helper.make_node("LayerNormalization", ["x", "s4", "b4"], ["y"], axis=2,
                                                   name="n")}[op_type]
    weights = [numpy_helper.from_array(value, name) for name, value in (
        ("scale", np.ones(2, np.float32)), ("bias", np.zeros(2, np.float32)),
        ("s4", np.ones((2, 2), np.float32)), ("b4", np.zeros((2, 2), np.float32)))]
    model = _graph([node], [_value("x", (1, 2, 2, 2))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   weights, opset=opset)
    return model, {"x": np.full((1, 2, 2, 2), 20000.0, np.float32)}


@pytest.mark.parametrize("op_type,opset", [("ReduceMean", 12), ("ReduceMean", 13), ("GlobalAveragePool", 12),
                                           ("InstanceNormalization", 12), ("LayerNormalization", 17)])
def test_means_and_norms_sum_in_fp16_and_saturate_unless_kept(op_type, opset):
    """The fp16 sum saturates at 65504 (the 310P's saturation mode): a mean of 16376, not 20000;
    a norm of a constant plane 28.3, not 0."""
    model, x = _mean_or_norm(op_type, opset)
    shapes = {"x": (1, 2, 2, 2)}
    emulated, exact = _run(emulate_fp16(model, shapes), x)[0], _run(model, x)[0]
    assert np.isfinite(emulated).all() and np.abs(emulated - exact).max() > 20
    np.testing.assert_array_equal(_run(emulate_fp16(model, shapes, [f"OpType::{ascend_type(op_type)}"]), x)[0],
                                  _run(model, x)[0])


def test_overflow_saturates_and_nan_is_zero():
    """Ascend 310P's saturation mode: an Inf result is the largest fp16, a NaN result 0."""
    model = _graph([helper.make_node("Div", ["x", "d"], ["y"], name="div")],
                   [_value("x", (3,)), _value("d", (3,))], [_value("y", (3,))])
    feeds = {"x": np.array([1e6, -1.0, 0.0], np.float32), "d": np.array([1.0, 0.0, 0.0], np.float32)}
    np.testing.assert_array_equal(_run(emulate_fp16(model, {"x": (3,), "d": (3,)}), feeds)[0], [65504, -65504, 0])


def test_tensors_between_nodes_and_weights_are_rounded_but_kept_weights_are_not():
    weight = np.array([[1.0001]], np.float32)  # fp16 rounds it to 1.0
    model = _graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                    helper.make_node("Add", ["h", "b"], ["y"], name="add")],
                   [_value("x", (1, 1))], [_value("y", (1, 1))],
                   [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array([0.0], np.float32), "b")])
    x = {"x": np.array([[3.0]], np.float32)}
    assert _run(emulate_fp16(model, {"x": (1, 1)}), x)[0][0, 0] == 3.0
    kept = _run(emulate_fp16(model, {"x": (1, 1)}, ["mm", "add"]), x)[0][0, 0]
    assert kept == np.float32(np.float16(np.float32(3.0) * weight[0, 0])), "kept: fp32 weight, output rounded"
    assert ascend_type("Conv", 5) == "Conv3D" and ascend_type("InstanceNormalization") == "InstanceNorm"


def test_force_fp32_rounds_only_the_cube_operands():
    """--precision fp32 (ATC's force_fp32): MatMul reads fp16 operands, the Add after it is fp32."""
    model = _graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                    helper.make_node("Add", ["h", "b"], ["y"], name="add")],
                   [_value("x", (1, 1))], [_value("y", (1, 1))],
                   [numpy_helper.from_array(np.array([[1.0001]], np.float32), "w"),
                    numpy_helper.from_array(np.array([0.0002], np.float32), "b")])
    x = {"x": np.array([[3.0]], np.float32)}
    assert _run(emulate_fp16(model, {"x": (1, 1)}, precision_mode="force_fp32"), x)[0][0, 0] == np.float32(3.0002)
    assert _run(emulate_fp16(model, {"x": (1, 1)}), x)[0][0, 0] == 3.0, "force_fp16 rounds 3.0002 to 3.0"
    assert AscendPreviewBackend("fp32").precision == "fp32" and AscendPreviewBackend().precision == "fp16"


def test_sandboxed_suite_rows_are_fp16_previews_with_their_keep_list(run_suite, tmp_path):
    keep = tmp_path / "keep.cfg"
    keep.write_text("OpType::Conv3D\n")
    result = run_suite("--backend=ascend-preview", "--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy",
                       f"--keep-fp32={keep}")
    result.assert_outcomes(passed=1)
    (row,) = [r for r in result.results["records"] if "accuracy" in r]
    assert row["backend"] == "ascend-preview" and row["precision"] == "fp16"
    assert row["environment"]["preview"] == PREVIEW
    assert row["environment"]["keep_fp32"] == ["OpType::Conv3D"]
    assert row["environment"]["keep_fp32_from"] == f"--keep-fp32 {keep}"
