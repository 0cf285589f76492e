"""The Ascend path, right by construction: the seeds' graph passes (proved in ONNX Runtime), ATC's
command and what it requires (a fake atc checks it), both ais_bench generations (fakes that run
the .om's ONNX with ONNX Runtime), ais_bench's output layout and the seeds' preprocessed folders,
and a seed's postprocess formula over the suite's ais_bench-layout dump."""
from __future__ import annotations

import inspect
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import seed_postprocess
from onnx import TensorProto, helper, numpy_helper

from conftest import TINY_INPUTS, tiny_feeds
from fakes.real_surfaces import INSTANCE, STATIC, SURFACES, TENSOR_DESC_ATTRIBUTES
from harness import aisbench, cache, registry, stages
from harness.backends import onnx_passes
from harness.backends.ascend import (
    KEEP_DTYPE_CFG,
    AscendBackend,
    AtcOptions,
    atc_command,
    atc_options,
    npu_smi_versions,
    static_input_shapes,
)
from harness.backends.base import BackendUnavailable
from harness.config import RunConfig

FLOW_MODELS = ("flownet2", "gma")


def _spec(inputs: dict, input_format=None, keep_fp32=(), passes=()):
    """The fields of a ModelSpec the Ascend backend reads."""
    options = AtcOptions(input_format=input_format, keep_fp32=tuple(keep_fp32), graph_passes=tuple(passes))
    return SimpleNamespace(input_names=tuple(inputs), profiles={"full": SimpleNamespace(inputs=inputs)},
                           compile_options={"ascend": options})


# --- graph passes ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def flow_onnx(suite_cache) -> dict[str, Path]:
    """The smoke-profile simplified ONNX of the models whose seeds run graph passes (the run's own)."""
    return {name: stages.onnx_for(registry.get(name), "smoke", suite_cache) for name in FLOW_MODELS}


def _random_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    return {i.name: rng.uniform(0, 255, [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
                                ).astype(np.float32)
            for i in model.graph.input if i.name not in initializers}


def _ort(model: onnx.ModelProto | Path, feeds) -> list[np.ndarray]:
    """The graph run as written (a file is read as it is): ORT's own rewrites, or serialising a
    graph already on disk, would only take time (FlowNet2's weights are 650 MB)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("name", FLOW_MODELS)
def test_seed_graph_passes_keep_outputs_and_leave_no_int64(flow_onnx, name):
    spec = registry.get(name)
    assert "int64_to_int32" in atc_options(spec).graph_passes
    original = onnx.load(str(flow_onnx[name]))
    before = onnx_passes.unrequired_wide(original)
    assert before, "the exported graph has int64 constants the seed's fix narrows"
    passed = original
    for pass_name in atc_options(spec).graph_passes:
        passed = onnx_passes.PASSES[pass_name](passed)
    assert onnx_passes.unrequired_wide(passed) == []
    # what stays int64 is only what ONNX defines as int64 (Reshape's shape, Pad's pads ...)
    assert sum(t.data_type == TensorProto.INT64 for t in passed.graph.initializer) < \
        sum(t.data_type == TensorProto.INT64 for t in original.graph.initializer) / 3
    feeds = _random_feeds(original)
    for got, expected in zip(_ort(passed, feeds), _ort(flow_onnx[name], feeds)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_flownet2_graph_has_no_slice_chain_for_the_seeds_merge(flow_onnx):
    """fix_onnx.py also merges a Slice fed by a Slice; onnxsim leaves none, so there is nothing
    for that step to change in the suite's graph."""
    graph = onnx.load(str(flow_onnx["flownet2"])).graph
    producers = {o: n for n in graph.node for o in n.output}
    slices = [n for n in graph.node if n.op_type == "Slice"]
    assert slices
    assert not [n.name for n in slices if getattr(producers.get(n.input[0]), "op_type", "") == "Slice"]


def _integer_graph() -> onnx.ModelProto:
    """Shape arithmetic of the kind the exporters write: Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape, a Cast(to=int64) and a ConstantOfShape, an int64 graph output, and a constant past
    the int32 range that must clamp."""
    ints = lambda name, values: numpy_helper.from_array(np.array(values, dtype=np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["rows"], axis=0),
        helper.make_node("Unsqueeze", ["rows", "axes0"], ["rows1"]),
        helper.make_node("Concat", ["minus_one", "rows1"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["x", "new_shape"], ["y"]),
        helper.make_node("Cast", ["y"], ["y_int"], to=TensorProto.INT64),
        helper.make_node("Abs", ["new_shape"], ["new_shape_pos"]),
        helper.make_node("ConstantOfShape", ["new_shape_pos"], ["ones"],
                         value=numpy_helper.from_array(np.array([1], dtype=np.int64), "v")),
        helper.make_node("Add", ["y_int", "ones"], ["sum"]),
        helper.make_node("Min", ["sum", "huge"], ["count"]),
    ]
    graph = helper.make_graph(
        nodes, "ints", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("count", TensorProto.INT64, [8, 3]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 3])],
        initializer=[ints("one", 1), ints("axes0", [0]), ints("minus_one", [-1]),
                     ints("huge", [2 ** 40])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_narrow_keeps_types_required_by_onnx_and_the_interface():
    model = _integer_graph()
    onnx.checker.check_model(model, full_check=True)
    passed = onnx_passes.int64_to_int32(model)
    assert onnx_passes.unrequired_wide(passed) == []
    assert [o.type.tensor_type.elem_type for o in passed.graph.output] == [TensorProto.INT64,
                                                                             TensorProto.FLOAT]
    assert numpy_helper.to_array(next(t for t in passed.graph.initializer if t.name == "huge")
                                 ).tolist() == [2 ** 31 - 1]  # clamped, as the seeds do
    feeds = {"x": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}
    for got, expected in zip(_ort(passed, feeds), _ort(model, feeds)):
        np.testing.assert_array_equal(got, expected)


def test_narrowing_everything_as_fix_onnx_does_is_not_valid_onnx():
    """fix_onnx.py narrows Reshape's shape too: ATC takes that, ONNX does not; the pass's own
    check (strict type inference) is what rejects such a graph."""
    model = _integer_graph()
    for tensor in model.graph.initializer:
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.int32), tensor.name))
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.checker.check_model(onnx_passes._skeleton(model), full_check=True)
    assert onnx_passes.unrequired_wide(_integer_graph())  # and the leftover check sees the original


def test_unknown_graph_pass_is_named(tmp_path):
    onnx.save(_integer_graph(), str(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match=r"\['fold_everything'\].*onnx_passes.py"):
        onnx_passes.apply_passes(tmp_path / "m.onnx", ["fold_everything"], tmp_path / "out.onnx")


# --- the backend from the run's options, its key, its environment --------------------------------

def test_from_options_and_precision():
    backend = AscendBackend.from_options(RunConfig(backends=("ascend",), precision=None, soc="Ascend310P3",
                                                   devices=(3, 4)))
    assert (backend.requested_precision, backend.precision, backend.device, backend.soc) == \
        ("default", "fp16", 3, "Ascend310P3")  # the seeds ran ATC's default
    assert AscendBackend.from_options(RunConfig(precision="fp32")).precision == "fp32"
    assert AscendBackend.from_options(RunConfig(soc=None)).soc == "Ascend310P3"


def test_atc_precision_flags():
    spec = _spec({"video": (1, 3, 32, 224, 224)}, "ND")
    shapes = static_input_shapes(spec, "full", 1)
    assert "--precision_mode=force_fp32" in atc_command(spec, "m.onnx", shapes, "Ascend310P3",
                                                        "out", precision="fp32")
    default = atc_command(spec, "m.onnx", shapes, "Ascend310P3", "out", precision="default")
    assert not any(flag.startswith("--precision_mode") for flag in default)


def test_compile_key_covers_passes_and_their_source(monkeypatch):
    backend = AscendBackend("default")
    plain = backend.compile_key(_spec({"x": (3,)}))
    passed = backend.compile_key(_spec({"x": (3,)}, passes=("int64_to_int32",)))
    assert plain != passed and passed["atc_options"]["graph_passes"] == ("int64_to_int32",)
    monkeypatch.setattr(cache, "source_hash", lambda *modules: "edited")
    assert backend.compile_key(_spec({"x": (3,)}, passes=("int64_to_int32",))) != passed
    assert backend.compile_key(_spec({"x": (3,)}, keep_fp32=("OpType::InstanceNorm",))) != plain


def test_environment_reads_npu_smi_and_the_packages(fake_ascend_toolkit):
    env = AscendBackend("default", device=1).environment()
    expected = "0.0.2" if fake_ascend_toolkit.generation == "tools" else "7.0.0"
    assert env["ais_bench"] == env["aclruntime"] == expected
    assert (env["driver"], env["firmware"], env["device"], env["soc"]) == \
        ("23.0.rc1", "6.4.0.4.220", 1, "Ascend310P3")


def test_npu_smi_absent_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("harness.backends.ascend.DRIVER_VERSION_INFO", tmp_path / "version.info")
    assert npu_smi_versions(0) == {"driver": "absent", "firmware": "absent"}
    (tmp_path / "version.info").write_text("Version=23.0.0\n")
    assert npu_smi_versions(0)["driver"] == "23.0.0"


def test_ascend_availability_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ais_bench", None)
    ok, why = AscendBackend.availability()
    assert not ok
    assert "atc" in why and "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in why
    assert "ais_bench" in why and "ais-bench_workload" in why
    with pytest.raises(BackendUnavailable, match="set_env.sh"):
        AscendBackend("fp32").compile(Path("m.onnx"), {}, tmp_path / "m.om", spec=None)


# --- the fakes against the real ais_bench's recorded surface --------------------------------------

def _kind(cls, name: str) -> str:
    return STATIC if isinstance(inspect.getattr_static(cls, name), staticmethod) else INSTANCE


def test_fake_ais_bench_has_the_real_surface(fake_ascend_toolkit):
    """Names, signatures and static-ness as read in the real source of each generation
    (tests/fakes/real_surfaces.py), and what is absent there is absent in the fake."""
    import importlib.metadata

    from ais_bench.infer import interface

    surface = SURFACES[fake_ascend_toolkit.generation]
    for class_name in ("InferSession", "MemorySummary"):
        cls = getattr(interface, class_name)
        for name, (kind, signature) in surface[class_name].items():
            assert hasattr(cls, name), f"{class_name}.{name} ({surface['source']})"
            assert (_kind(cls, name), str(inspect.signature(getattr(cls, name)))) == (kind, signature), \
                f"{class_name}.{name}"
        assert [n for n in surface[f"{class_name}_absent"] if hasattr(cls, n)] == []
    assert importlib.metadata.version("ais_bench") == surface["distribution_version"]


def test_fake_ais_bench_returns_what_the_real_one_does(fake_ascend_toolkit, tiny_onnx, tmp_path):
    """get_inputs()/get_outputs() list aclruntime tensor_desc's; ``loop`` executes per infer, as
    many exec_time_list entries, each a float ms (Ascend/tools) or a (start, end) ms pair (msit);
    MemorySummary lists are process-wide until reset()."""
    from ais_bench.infer import interface

    surface = SURFACES[fake_ascend_toolkit.generation]
    spec = _spec(TINY_INPUTS, "NCDHW")
    om = AscendBackend().compile(tiny_onnx, static_input_shapes(spec, "full", 1), tmp_path / "t.om", spec)
    session = interface.InferSession(0, str(om), loop=3)
    for desc in [*session.get_inputs(), *session.get_outputs()]:
        assert all(hasattr(desc, a) for a in TENSOR_DESC_ATTRIBUTES)
        assert isinstance(desc.shape, list) and all(isinstance(d, int) for d in desc.shape)
    feeds = [tiny_feeds(1)[name] for name in TINY_INPUTS]
    session.infer(feeds, mode="static")
    summary = session.summary() if hasattr(session, "summary") else session.sumary()
    times = summary.exec_time_list
    assert len(times) == 3
    if surface["exec_time_entry"] == "(start, end)":
        assert all(len(t) == 2 and 0 <= t[0] <= t[1] for t in times)
        assert all(a[1] <= b[0] for a, b in zip(times, times[1:]))  # one execute after the other
    else:
        assert all(isinstance(t, float) and t > 0 for t in times)
    session.set_loop_count(1)
    session.infer(feeds)
    assert len((session.summary() if hasattr(session, "summary") else session.sumary()).exec_time_list) == 4
    memory = interface.MemorySummary
    h2d = getattr(memory, next(n for n in surface["MemorySummary"] if n.lower() == "get_h2d_time_list"))
    assert len(h2d()) == 2
    memory.reset()
    assert h2d() == []


# --- the whole path with the fake toolkit -------------------------------------------------------

def _om_contents(om: Path) -> tuple[onnx.ModelProto, dict]:
    with zipfile.ZipFile(om) as archive:
        return onnx.load_from_string(archive.read("model.onnx")), json.loads(archive.read("atc_args.json"))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_whole_path_compile_run_dump(fake_ascend_toolkit, tiny_onnx, tmp_path, batch_size):
    spec = _spec(TINY_INPUTS, "NCDHW", keep_fp32=("OpType::Conv3D",), passes=("int64_to_int32",))
    backend = AscendBackend("default", device=0)
    shapes = static_input_shapes(spec, "full", batch_size)
    (tmp_path / "cache").mkdir()
    om = backend.compile(tiny_onnx, shapes, tmp_path / "cache" / f"tiny_bs{batch_size}.om", spec)
    assert sorted(p.name for p in om.parent.iterdir()) == [om.name]  # ATC's litter stays out
    compiled, args = _om_contents(om)
    assert onnx_passes.unrequired_wide(compiled) == []  # atc got the passed graph
    assert onnx_passes.unrequired_wide(onnx.load(str(tiny_onnx)))  # which the export was not
    assert args["input_shapes"] == {n: list(s) for n, s in shapes.items()}
    assert args["keep_dtype_lines"] == ["OpType::Conv3D"] and args["soc_version"] == "Ascend310P3"

    import fake_om

    session = backend.open(om, shapes)
    assert session.io_shapes() == {"inputs": {n: tuple(s) for n, s in shapes.items()},
                                   "outputs": {"features": (batch_size, 4, 4, 8, 8), "mean": (batch_size, 1)}}
    feeds = tiny_feeds(batch_size)
    outputs = session.run(feeds)
    expected = ort.InferenceSession(str(tiny_onnx)).run(None, feeds)
    assert list(outputs) == ["features", "mean"]
    for got, want in zip(outputs.values(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    first = session.last_compute_ms()
    session.run(feeds)
    # one compute time per run, in ms, from a float (Ascend/tools) or a (start, end) pair (msit)
    assert all(isinstance(t, float) and t > 0 for t in (first, session.last_compute_ms()))
    summary = session._session.summary() if hasattr(session._session, "summary") else session._session.sumary()
    assert len(summary.exec_time_list) == 2
    del summary
    transfers = session.last_transfer_ms()  # MemorySummary in either spelling
    assert set(transfers) == {"h2d_ms", "d2h_ms"} and transfers["h2d_ms"] > 0
    assert len(fake_om.LOADED) == 1
    session.close()
    session.close()  # closing twice is harmless
    assert fake_om.LOADED == {}  # released, by free_resource() or the destructor

    dump = tmp_path / "out"
    paths = aisbench.write_outputs(dump, "0", list(outputs.values()))
    session_times = [1.0, 3.0]
    aisbench.write_summary(dump, batch_size, session_times, h2d_ms=[0.5])
    assert [p.name for p in paths] == ["0_0.bin", "0_1.bin"]
    summary = json.loads((tmp_path / "out_summary.json").read_text())  # beside the folder, as ais_bench
    assert summary["throughput"] == pytest.approx(1000 * batch_size / 2.0)
    assert summary["NPU_compute_time"]["count"] == 2 and summary["npu_compute_time_list"] == session_times
    np.testing.assert_array_equal(aisbench.read_output(dump, "0", 1, (-1, 1)), outputs["mean"])


def test_closing_one_session_leaves_the_others_open(fake_ascend_toolkit, tiny_onnx, tmp_path):
    """Both generations' finalize() destroys every device context of the process (msit's is
    static); the harness releases one session only, so another open one keeps running."""
    import fake_om

    spec = _spec(TINY_INPUTS, "NCDHW")
    shapes = static_input_shapes(spec, "full", 1)
    om = AscendBackend().compile(tiny_onnx, shapes, tmp_path / "t.om", spec)
    first, second = AscendBackend().open(om, shapes), AscendBackend().open(om, shapes)
    first.close()
    assert len(fake_om.LOADED) == 1
    assert list(second.run(tiny_feeds(1))) == ["features", "mean"]
    second.close()
    assert fake_om.LOADED == {}
    # what the harness avoids: the real finalize() ends every session of the process
    third, fourth = AscendBackend().open(om, shapes), AscendBackend().open(om, shapes)
    third._session.finalize()
    with pytest.raises(RuntimeError, match="no longer loaded: .*finalize"):
        fourth.run(tiny_feeds(1))


def test_what_an_ais_bench_cannot_give_is_said_once_in_the_environment(fake_ascend_toolkit, monkeypatch,
                                                                       tiny_onnx, tmp_path):
    from ais_bench.infer import interface

    backend = AscendBackend()
    notes = backend.environment().get("ais_bench_not_used", "")
    assert ("free_resource" in notes) == (fake_ascend_toolkit.generation == "tools")
    assert "h2d/d2h" not in notes
    monkeypatch.delattr(interface, "MemorySummary")  # an ais_bench without transfer timing
    assert "h2d/d2h: not reported by this ais_bench" in backend.environment()["ais_bench_not_used"]
    spec = _spec(TINY_INPUTS, "NCDHW")
    shapes = static_input_shapes(spec, "full", 1)
    session = backend.open(backend.compile(tiny_onnx, shapes, tmp_path / "t.om", spec), shapes)
    for _ in range(2):  # the timed loop runs on, without transfers
        session.run(tiny_feeds(1))
        assert session.last_compute_ms() > 0 and session.last_transfer_ms() is None
    session.close()


def test_io_shapes_expose_an_atc_that_ignored_the_batch_size(fake_ascend_toolkit_atc_ignoring_batch, tiny_onnx,
                                                             tmp_path):
    """tests/fakes/bin_ignoring_batch/atc writes a batch-1 .om whatever --input_shape asks; the
    session's io_shapes(), read back through get_inputs()/get_outputs(), show it."""
    spec = _spec(TINY_INPUTS, "NCDHW")
    shapes = static_input_shapes(spec, "full", 2)
    backend = AscendBackend()
    assert "bin_ignoring_batch" in backend.versions()["cann"]  # its own cache key
    session = backend.open(backend.compile(tiny_onnx, shapes, tmp_path / "t.om", spec), shapes)
    assert session.io_shapes() == {"inputs": {"clip": (1, 3, 4, 8, 8), "gain": (1, 1, 4, 8, 8)},
                                   "outputs": {"features": (1, 4, 4, 8, 8), "mean": (1, 1)}}
    session.close()


def test_fake_atc_rejects_what_the_real_one_does(fake_ascend_toolkit_tools, tiny_onnx, tmp_path):
    spec = _spec(TINY_INPUTS, "NCDHW")
    backend = AscendBackend("default")
    wrong = {"clip": (1, 3, 4, 8, 9), "gain": (1, 1, 4, 8, 8)}
    with pytest.raises(RuntimeError, match=r"--input_shape clip.*does not fit"):
        backend.compile(tiny_onnx, wrong, tmp_path / "a.om", spec)
    with pytest.raises(RuntimeError, match="not a valid ONNX model"):
        (tmp_path / "bad.onnx").write_text("not onnx")
        backend.compile(tmp_path / "bad.onnx", static_input_shapes(spec, "full", 1), tmp_path / "b.om", spec)
    with pytest.raises(RuntimeError, match=r"soc_version=310P3"):
        AscendBackend("default", soc="310P3").compile(tiny_onnx, static_input_shapes(spec, "full", 1),
                                                       tmp_path / "c.om", spec)


def test_session_rejects_shapes_the_om_was_not_compiled_for(fake_ascend_toolkit_msit, tiny_onnx, tmp_path):
    spec = _spec(TINY_INPUTS, "NCDHW")
    om = AscendBackend().compile(tiny_onnx, static_input_shapes(spec, "full", 2), tmp_path / "t.om", spec)
    session = AscendBackend().open(om, static_input_shapes(spec, "full", 2))
    with pytest.raises(RuntimeError, match="compiled for float32"):
        session.run(tiny_feeds(1))
    session.close()


def test_compile_failures_become_memory_or_runtime_errors(fake_ascend_toolkit_tools, monkeypatch, tmp_path):
    spec = _spec({"x1": (3, 448, 1024), "x2": (3, 448, 1024)}, "NCHW")
    shapes = static_input_shapes(spec, "full", 8)
    onnx_path = tmp_path / "flownet2.onnx"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    atc = bin_dir / "atc"
    atc.write_text('#!/bin/sh\necho "E19999: Inner Error! rtMalloc failed, out of memory" >&2\nexit 1\n')
    atc.chmod(0o755)
    with pytest.raises(MemoryError, match="out of memory"):
        AscendBackend().compile(onnx_path, shapes, tmp_path / "f.om", spec)
    atc.write_text('#!/bin/sh\necho "E10001: Value [x3] for parameter [--input_shape] is invalid" >&2\nexit 1\n')
    with pytest.raises(RuntimeError, match=re.escape(str(onnx_path))) as failure:
        AscendBackend().compile(onnx_path, shapes, tmp_path / "f.om", spec)
    assert "E10001" in str(failure.value) and not isinstance(failure.value, MemoryError)


def test_keep_dtype_file_is_written_where_atc_runs(fake_ascend_toolkit_tools, tiny_onnx, tmp_path):
    spec = _spec(TINY_INPUTS, None, keep_fp32=("OpType::InstanceNorm", "OpType::ReduceSum"))
    command = atc_command(spec, "m.onnx", static_input_shapes(spec, "full", 1), "Ascend310P3", "o")
    assert f"--keep_dtype={KEEP_DTYPE_CFG}" in command
    om = AscendBackend().compile(tiny_onnx, static_input_shapes(spec, "full", 1), tmp_path / "k.om", spec)
    assert _om_contents(om)[1]["keep_dtype_lines"] == list(atc_options(spec).keep_fp32)


# --- the seeds' preprocessed folders ------------------------------------------------------------

def test_reads_flownet2_batched_bins_and_gt(tmp_path):
    layout = registry.get("flownet2").seed_bin_layout
    rng = np.random.default_rng(0)
    sample = {"x1": (3, 8, 16), "x2": (3, 8, 16)}
    batches = [rng.standard_normal((2, 1, 3, 8, 16)).astype(np.float32) for _ in range(2)]
    for sub in ("image1", "image2"):
        (tmp_path / sub).mkdir()
        for i, batch in enumerate(batches):  # np.array(images1).tofile: (bs, 1, 3, H, W)
            batch.tofile(tmp_path / sub / f"{i}.bin")
    (tmp_path / "image1" / "notes.txt").write_text("ignored")
    read = list(aisbench.read_seed_inputs(tmp_path, layout, sample))
    assert [stem for stem, _ in read] == ["0", "1"]
    np.testing.assert_array_equal(read[1][1]["x2"], batches[1].reshape(2, 3, 8, 16))

    (tmp_path / "image2" / "1.bin").unlink()
    with pytest.raises(ValueError, match="list different <i>.bin files"):
        list(aisbench.read_seed_inputs(tmp_path, layout, sample))
    gt = SimpleNamespace(gt="gt", gt_shape=(1, 448, 1024, 2))
    (tmp_path / "gt").mkdir()
    np.zeros((448, 1024, 2), np.float32).tofile(tmp_path / "gt" / "0.bin")
    assert aisbench.read_gt(tmp_path, gt, 0).shape == (1, 448, 1024, 2)
    np.zeros(5, np.float32).tofile(tmp_path / "gt" / "1.bin")
    with pytest.raises(ValueError, match=r"1.bin: 5 float32 values"):
        aisbench.read_gt(tmp_path, gt, 1)


def test_reads_flavr_per_sample_bins_and_names_a_truncated_file(tmp_path):
    layout = registry.get("flavr").seed_bin_layout
    sample = {f"input_{i}": (3, 4, 4) for i in range(4)}
    for name in sample:
        (tmp_path / name).mkdir()
        for i in range(3):
            np.full((3, 4, 4), i, np.float32).tofile(tmp_path / name / f"{i}.bin")
    read = dict(aisbench.read_seed_inputs(tmp_path, layout, sample))
    assert list(read) == ["0", "1", "2"] and read["2"]["input_3"].shape == (1, 3, 4, 4)
    np.zeros(7, np.float32).tofile(tmp_path / "input_0" / "1.bin")
    with pytest.raises(ValueError, match=r"input_0/1.bin: 7 float32 values"):
        list(aisbench.read_seed_inputs(tmp_path, layout, sample))
    with pytest.raises(FileNotFoundError, match="preprocessed folder"):
        list(aisbench.read_seed_inputs(tmp_path / "absent", layout, sample))


def test_reads_slowfast_bins_and_info(tmp_path):
    layout = registry.get("slowfast").seed_bin_layout
    (tmp_path / "bin").mkdir()
    for i in range(2):
        np.zeros((1, 1, 3, 4, 8, 8), np.float32).tofile(tmp_path / "bin" / f"{i}.bin")
    (tmp_path / layout.info).write_text("0 5\n1 17\n")
    read = list(aisbench.read_seed_inputs(tmp_path, layout, {"video": (1, 3, 4, 8, 8)}))
    assert [a["video"].shape for _, a in read] == [(1, 1, 3, 4, 8, 8)] * 2
    assert [int(label) for _, label in aisbench.read_info(tmp_path / layout.info)] == [5, 17]


# --- a seed's postprocess formula over the suite's ais_bench-layout dump -------------------------

def test_efficient3dcnn_seed_postprocess_on_the_dump_gives_the_suites_top1(tmp_path):
    spec = registry.get("efficient3dcnn")
    profile, protocol = spec.profile("smoke"), spec.protocol_for("smoke")
    samples = list(stages.open_dataset(spec, "smoke", None, tmp_path / "cache"))
    assert len(samples) >= 3
    rng = np.random.default_rng(7)
    # the deployed model's logits: noise, with the true class lifted for the first video's clips
    # only, so the seed's figure and the suite's are neither 0 nor 100 and depend on every row
    first_video = samples[0].target[0]
    logits = {}
    for s in samples:
        row = rng.normal(0, 3, 101).astype(np.float32)
        row[int(s.target[1])] += 20.0 * (s.target[0] == first_video)
        logits[s.id] = row
    scorer = spec.new_scorer(profile, protocol)
    dump, info_lines, batch_size = tmp_path / "out1", [], 2
    for start in range(0, len(samples) - len(samples) % batch_size, batch_size):  # the seed drops a partial batch
        group = samples[start:start + batch_size]
        aisbench.write_outputs(dump, str(start // batch_size), [np.stack([logits[s.id] for s in group])])
        info_lines.append(" ".join(s.target[0] for s in group) + " ")
        for s in group:
            scorer.add(s, {"class": logits[s.id]})
    aisbench.write_summary(dump, batch_size, [1.0])  # beside the folder: the script reads every file in it
    (tmp_path / "ucf101_bs2.info").write_text("\n".join(info_lines) + "\n")
    labels = {s.target[0]: int(s.target[1]) for s in samples}
    seed_top1 = seed_postprocess.efficient3dcnn_seed_top1(dump, tmp_path / "ucf101_bs2.info", labels)
    assert seed_top1 == pytest.approx(scorer.result()["top1"])
    assert 0 < seed_top1 < 100  # neither all right nor all wrong: the figure depends on the rows


def test_fake_toolkit_reaches_subprocesses(fake_ascend_toolkit):
    """What a suite run in a subprocess (`pytest --soc Ascend310P3`, a sandboxed copy of the
    project) sees."""
    import subprocess

    probe = ("from harness.backends.ascend import AscendBackend; import ais_bench.infer.interface as i; "
             "print(AscendBackend.availability(), hasattr(i.InferSession, 'free_resource'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(True,", "'')", str(fake_ascend_toolkit.generation == "msit")]


def test_the_ascend_perf_path_times_compute_and_transfers_on_both_generations(run_suite, fake_ascend_toolkit):
    """compile, run, time with H2D/D2H, close, in a sandboxed `-m perf` run: each generation's
    compute times (floats, or (start, end) pairs) and its MemorySummary spelling reach the row."""
    result = run_suite("--soc=Ascend310P3", "--models=efficient3dcnn", "--batch-sizes=1", "-m", "perf",
                       "--loop=3", tests=("test_perf.py",))
    assert result.ret == 0, result.stdout.str()
    row = next(r for r in result.results["records"] if r.get("backend") == "ascend")
    figures = {f["name"]: f["value"] for f in row["figures"]}
    assert all(figures[name] > 0 for name in ("compute_ms", "compute_fps", "h2d_ms", "d2h_ms")), figures
    # the one thing the seeds' generation cannot do, said once in the environment
    assert ("ais_bench_not_used" in row["environment"]) == (fake_ascend_toolkit.generation == "tools")


def test_ais_bench_dump_of_an_ascend_run_holds_its_compute_times(run_suite, fake_ascend_toolkit_msit, tmp_path):
    """--save-layout ais_bench on the Ascend path: the summary beside the folder holds one compute
    time per batch as ais_bench's summary states it (msit's (start, end) pairs read as spans), and
    the folder only the outputs."""
    out = tmp_path / "dump"
    result = run_suite("--soc=Ascend310P3", "--models=efficient3dcnn", "--batch-sizes=2", "-m", "accuracy",
                       f"--save-outputs={out}", "--save-layout=ais_bench")
    assert result.ret == 0, result.stdout.str()
    folder = out / "efficient3dcnn" / "ascend" / "bs2"
    files = sorted(p.name for p in folder.iterdir())
    assert files and all(re.fullmatch(r"\d+_0\.bin", name) for name in files), files
    summary = json.loads(aisbench.summary_path(folder).read_text())
    times = summary["npu_compute_time_list"]
    assert len(times) == (len(files) + 1) // 2 and all(isinstance(t, float) and t > 0 for t in times)
    assert summary["throughput"] == pytest.approx(1000 * 2 / np.mean(times))
    assert len(summary["filesinfo"]) == len(files)
