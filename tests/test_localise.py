"""The localisation names the node a fault was injected into, and nothing on a faithful run.

A fault is injected into the deployed graph only: a wrapping backend rewrites the (marked) ONNX it
is given before compiling it, exactly where a runtime's own bug would act, while the reference
runs the untouched graph.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from harness import export, localise_report, pictures, registry, stages
from harness.backends import Backend, backend_class
from harness.localise import (
    THRESHOLDS,
    Localisation,
    NodeError,
    localise,
    localise_failure,
    module_scope,
)

MODELS = ("efficient3dcnn", "gma")  # the smallest smoke graphs: 102 and ~1700 nodes
RUNTIMES = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def smoke_onnx(suite_cache) -> dict[str, Path]:
    return {name: stages.onnx_for(registry.get(name), "smoke", suite_cache) for name in MODELS}


def _feeds(name: str) -> dict[str, np.ndarray]:
    return export.random_feeds(registry.get(name), "smoke", batch_size=1)


def _target_conv(model: onnx.ModelProto) -> onnx.NodeProto:
    """The Conv nearest the middle of the graph whose weight no other node reads (an unrolled
    loop shares one weight among several Convs, and a fault there starts at the first of them)."""
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    middle = len(model.graph.node) / 2
    convs = [(abs(i - middle), node) for i, node in enumerate(model.graph.node)
             if node.op_type == "Conv" and readers[node.input[1]] == 1]
    return min(convs, key=lambda c: c[0])[1]


# The low precision an op is forced to on ONNX Runtime: a Cast to fp16 and back (its CPU Cast
# takes no bfloat16 at the models' opset 11). OpenVINO folds such a Convert pair away, for f16 and
# (openvino 2025 on an AMX CPU, measured: the fault vanished) for bf16 too, so there the output is
# rounded to a fixed grid of 1/64 by arithmetic it must compute: a precision it cannot fold away.
GRID = 64.0


def scale_weight(model: onnx.ModelProto, node_name: str, runtime: str, factor: float = 1.5) -> None:
    node = next(n for n in model.graph.node if n.name == node_name)
    weight = next(i for i in model.graph.initializer if i.name == node.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * factor, weight.name))


def round_output(model: onnx.ModelProto, node_name: str, runtime: str) -> None:
    """The node's output is rounded to a low precision and back: the op 'ran' in it."""
    index, node = next((i, n) for i, n in enumerate(model.graph.node) if n.name == node_name)
    tensor = node.output[0]
    node.output[0] = f"{tensor}__fp32"
    if runtime == "onnxruntime":
        rounding = [helper.make_node("Cast", [f"{tensor}__fp32"], [f"{tensor}__low"], to=onnx.TensorProto.FLOAT16,
                                     name=f"{node_name}__to_low"),
                    helper.make_node("Cast", [f"{tensor}__low"], [tensor], to=onnx.TensorProto.FLOAT,
                                     name=f"{node_name}__to_fp32")]
    else:
        model.graph.initializer.append(numpy_helper.from_array(np.array(GRID, np.float32), f"{node_name}__grid"))
        rounding = [helper.make_node("Mul", [f"{tensor}__fp32", f"{node_name}__grid"], [f"{tensor}__scaled"],
                                     name=f"{node_name}__scale"),
                    helper.make_node("Round", [f"{tensor}__scaled"], [f"{tensor}__rounded"], name=f"{node_name}__round"),
                    helper.make_node("Div", [f"{tensor}__rounded", f"{node_name}__grid"], [tensor],
                                     name=f"{node_name}__unscale")]
    for offset, added in enumerate(rounding, start=1):
        model.graph.node.insert(index + offset, added)


FAULTS = {"faithful": None, "scaled_conv_weight": scale_weight, "low_precision_output": round_output}


class FaultyBackend(Backend):
    """A suite backend whose compile injects ``fault(model, node_name, runtime)`` first."""

    def __init__(self, inner: Backend, fault, node_name: str):
        self.inner, self.fault, self.node_name = inner, fault, node_name
        self.name, self.artifact_suffix = inner.name, inner.artifact_suffix
        self.requested_precision, self.device = inner.requested_precision, inner.device

    def availability(self):
        return self.inner.availability()

    def versions(self):
        return self.inner.versions()

    @property
    def precision(self):
        return self.inner.precision

    def compile(self, onnx_path, input_shapes, out_path, spec):
        model = onnx.load(str(onnx_path))
        self.fault(model, self.node_name, self.name)
        faulty = Path(out_path).with_name("faulty.onnx")
        onnx.save(model, str(faulty))
        return self.inner.compile(faulty, input_shapes, out_path, spec)

    def open(self, artifact, input_shapes):
        return self.inner.open(artifact, input_shapes)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("model", MODELS)
def test_localisation_names_the_faulty_node_first(smoke_onnx, model, runtime, fault, tmp_path):
    onnx_path = smoke_onnx[model]
    target = _target_conv(onnx.load(str(onnx_path), load_external_data=False)).name
    backend = backend_class(runtime)(precision="fp32")
    if FAULTS[fault] is not None:
        backend = FaultyBackend(backend, FAULTS[fault], target)
    result = localise(onnx_path, backend, _feeds(model), work_dir=tmp_path, label=model)

    assert result.precision == "fp32" and result.threshold == THRESHOLDS["fp32"]
    assert len(result.compared) > 0.6 * result.nodes_in_graph, result.summary()
    if FAULTS[fault] is None:
        assert result.first_divergent is None, result.summary()
        assert result.summary().startswith(f"no node of {runtime} (fp32) diverges")
        return
    first = result.first_divergent
    assert first is not None and first.node == target, result.summary()
    assert first.op_type == "Conv" and first.module == module_scope(target)
    assert f"starts at node {target} (Conv" in result.summary()
    assert result.path[0] == first and result.path[-1].tensor in result.outputs


def test_openvino_default_precision_shows_where_bf16_error_enters(smoke_onnx, tmp_path):
    backend = backend_class("openvino")(precision="default")
    if backend.precision != "bf16":
        pytest.skip(f"OpenVINO's default CPU precision here is {backend.precision}, not bf16 "
                    f"(needs AMX or AVX512-BF16)")
    result = localise(smoke_onnx["efficient3dcnn"], backend, _feeds("efficient3dcnn"),
                      work_dir=tmp_path, label="efficient3dcnn")
    paths = localise_report.write(result, tmp_path / "report")

    table = json.loads(paths["json"].read_text())
    assert table["precision"] == "bf16" and table["threshold"] == THRESHOLDS["bf16"]
    assert len(table["nodes"]) > 0.9 * table["nodes_in_graph"]
    errors = [n["rel_error"] for n in table["nodes"]]
    # bf16 error enters at the first nodes (above fp32's threshold, below bf16's) and grows
    assert THRESHOLDS["fp32"] < errors[0] < THRESHOLDS["bf16"]
    assert table["first_divergent"] is not None and table["path"]
    assert table["outputs"]["class"] > errors[0]
    assert "divergence on openvino (bf16) starts at node" in table["summary"]
    assert "**first divergent**" in paths["markdown"].read_text()
    image = __import__("matplotlib.image").image.imread(paths["plot"])
    assert image.shape[0] > 400 and image.shape[1] > 1000 and image.std() > 0.05


def test_localise_failure_returns_the_message_and_writes_the_report(smoke_onnx, tmp_path):
    spec = registry.get("efficient3dcnn")
    onnx_path = smoke_onnx["efficient3dcnn"]
    target = _target_conv(onnx.load(str(onnx_path), load_external_data=False)).name
    faulty = FaultyBackend(backend_class("onnxruntime")(precision="fp32"), scale_weight, target)
    text = localise_failure(spec, onnx_path, faulty, _feeds("efficient3dcnn"), tmp_path / "loc")
    assert f"starts at node {target}" in text and str(tmp_path / "loc") in text
    assert (tmp_path / "loc" / "localisation.png").exists()
    # the threshold is the spec's fp32 rtol where that is tighter than the precision's own
    table = json.loads((tmp_path / "loc" / "localisation.json").read_text())
    assert table["threshold"] == min(THRESHOLDS["fp32"], spec.elementwise["fp32"].rtol)
    broken = localise_failure(spec, tmp_path / "missing.onnx", faulty, {}, tmp_path / "x")
    assert broken.startswith("localisation of efficient3dcnn on onnxruntime failed:")


def test_unsupported_and_unavailable_backends_say_why(smoke_onnx):
    ascend = backend_class("ascend")(precision="default")
    result = localise(smoke_onnx["efficient3dcnn"], ascend, _feeds("efficient3dcnn"))
    assert result.unavailable == ascend.not_localised and "msit compare" in result.summary()
    assert not result.compared


def test_module_scope_follows_the_legacy_exporter_names():
    assert module_scope("/features/features.0/features.0.0/Conv") == "features.0.0"
    assert module_scope("/fnet/layer3/layer3.1/conv1/Conv") == "fnet.layer3.1.conv1"
    assert module_scope("/fnet/layer3/layer3.1/relu_1/Relu") == "fnet.layer3.1.relu_1"
    assert module_scope("/fnet/layer3/layer3.1/relu_1/Relu", {"fnet.layer3.1.relu"}) == \
        "fnet.layer3.1.relu"
    assert module_scope("/Div") == "" and module_scope("Constant_0") == ""


class _Spec:
    name = "synthetic"

    def __init__(self, *names):
        self.output_names = names


def test_pictures_choose_the_kind_from_the_output_shape(tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.random((3, 32, 40), dtype=np.float32)
    flow = rng.normal(size=(2, 32, 40)).astype(np.float32)
    scores = rng.normal(size=101).astype(np.float32)
    reference = {"frame": frame, "flow": flow, "class": scores, "mask": np.zeros((4, 8, 8))}
    deployed = {"frame": frame + 0.1, "flow": flow * 1.2, "class": scores[::-1].copy(),
                "mask": np.zeros((4, 8, 8))}
    path, left_out = pictures.worst_sample(_Spec("frame", "flow", "class", "mask"), reference,
                                           deployed, tmp_path / "worst.png", "sample/0")
    assert path.exists() and left_out == ["mask (4, 8, 8)"]
    assert [pictures.picture_kind(a.shape) for a in reference.values()] == \
        ["frame", "flow", "classes", None]
    assert pictures.worst_sample(_Spec("mask"), reference, deployed, tmp_path / "none.png")[0] is None


def test_flow_colour_code_is_middlebury():
    # rightward flow is red, leftward cyan two steps towards blue, zero flow white, NaN black
    flow = np.array([[[1.0, -1.0, 0.0, np.nan]], [[0.0, 0.0, 0.0, 0.0]]])
    colour = pictures.flow_to_colour(flow, max_radius=1.0)[0]
    np.testing.assert_allclose(colour[0], [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(colour[1], [0, 1 - 2 / 11, 1], atol=1e-9)
    np.testing.assert_allclose(colour[2], [1, 1, 1])
    np.testing.assert_allclose(colour[3], [0, 0, 0])


def _node(index: int, rel_error: float) -> NodeError:
    return NodeError(index, f"n{index}", "Conv", "", f"t{index}", (1,), rel_error, rel_error, 1.0)


@pytest.mark.parametrize("errors, change", [((0.053, 0.048), "0.91x"), ((0.03, 0.06, 0.9), "30x")],
                         ids=["shrinks", "grows"])
def test_the_message_states_the_error_along_the_path_as_it_is(errors, change):
    """An error that shrinks after the first divergent node (a normalisation) is no growth."""
    path = [_node(i, e) for i, e in enumerate(errors)]
    result = Localisation("m.onnx", "openvino", "bf16", 0.02, 10, compared=path, path=path)
    message = result.summary()
    assert "grows" not in message
    tail = ", ".join(f"{e:.2g} at n{i}" for i, e in enumerate(errors) if i)
    assert f"rel err {errors[0]:.2g} vs threshold 2e-02; then along the path to the worst output: {tail} " \
           f"({change} the first node's)" in message
