"""A second FLOP count, independent of harness/flops.py: the shapes each Conv, ConvTranspose,
MatMul and Gemm actually ran at, read from ONNX Runtime's profile of one batch-1 run with its
graph optimisations off (so the profiled nodes are the graph's own), and the multiply-adds
written from the weight's size rather than from the kernel geometry."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def profiled_gflops(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]], profile_dir: Path) -> float:
    """2 x the multiply-adds of one sample, every tap counted (fvcore's convention)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(profile_dir / "flops")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.random((1, *input_shapes[i.name])).astype(DTYPES[i.type]) for i in session.get_inputs()}
    session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    profiled = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    graph = onnx.load(str(onnx_path)).graph
    nodes, weights = {n.name: n for n in graph.node}, {i.name: list(i.dims) for i in graph.initializer}
    return 2.0 * sum(_macs(e["args"]["op_name"], *_shapes(e, nodes, weights)) for e in profiled) / 1e9


def _shapes(event: dict, nodes: dict, weights: dict) -> tuple[list[list[int]], list[list[int]]]:
    """The profiled input and output shapes; a weight the runtime pre-packed (and so left out of
    the profile, as its ConvTranspose does) is read from the graph's initializers."""
    inputs = [next(iter(t.values())) for t in event["args"]["input_type_shape"]]
    node = nodes[event["name"].removesuffix("_kernel_time")]
    if event["args"]["op_name"] in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] in weights:
        inputs = [inputs[0], weights[node.input[1]]]
    return inputs, [next(iter(t.values())) for t in event["args"]["output_type_shape"]]


def _macs(op: str, inputs: list[list[int]], outputs: list[list[int]]) -> int:
    size = lambda shape: int(np.prod(shape, dtype=np.int64))  # noqa: E731
    if op == "Conv":  # each output element: the weight's [Cin/g, k...] taps
        return size(outputs[0]) * size(inputs[1]) // inputs[1][0]
    if op == "ConvTranspose":  # each input element scatters to the weight's [Cout/g, k...] taps
        return size(inputs[0]) * size(inputs[1]) // inputs[1][0]
    if op == "MatMul":
        return size(outputs[0]) * inputs[0][-1]
    if op == "Gemm":  # A holds M x K whether transposed or not; the output's first axis is M
        return size(outputs[0]) * size(inputs[0]) // outputs[0][0]
    return 0
