"""GFLOPs per sample counted from an ONNX graph (the device's peak is harness/peak.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference

from harness import cache


def _shape(value_info) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def gflops_per_sample(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]],
                      cache_dir: Path | None = None) -> float:
    """2 x multiply-adds of Conv, ConvTranspose, MatMul and Gemm at batch size 1.

    Other ops (activations, pooling, resampling) are memory-bound and left out, as FLOP counts
    in papers and ModelZoo tables usually do. With ``cache_dir`` the count is an artifact like
    any other (``<cache_dir>/flops/``), keyed by the graph's content, the shapes and this code:
    shape inference over a large graph takes seconds (FlowNet2: 4 s), once.
    """
    if cache_dir is None:
        return _count(onnx_path, input_shapes)
    parts = {"onnx": cache.artifact_identity(onnx_path), "inputs": {n: list(s) for n, s in input_shapes.items()},
             "counter": cache.source_hash(__name__)}
    stored = cache.build_once(cache_dir, "flops", parts, lambda out: out.write_text(
        json.dumps({"gflops_per_sample": _count(onnx_path, input_shapes)})), ".json")
    return float(json.loads(stored.read_text())["gflops_per_sample"])


def _count(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]]) -> float:
    model = onnx.load(str(onnx_path))
    for value in model.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for d, size in zip(dims, (1, *input_shapes[value.name])):
                d.ClearField("dim_param")
                d.dim_value = size
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: _shape(v) for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    macs = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes.get(node.input[1])
            if not weight:
                continue
            kernel = int(np.prod(weight[2:]))
            # the weight shape already carries the per-group channel count
            if node.op_type == "Conv":  # weight [Cout, Cin/g, k...]: every output element
                macs += int(np.prod(out)) * weight[1] * kernel
            else:  # weight [Cin, Cout/g, k...]: every input element scatters to Cout/g * k
                inp = shapes.get(node.input[0])
                if inp:
                    macs += int(np.prod(inp)) * weight[1] * kernel
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            if a:
                k = a[-1] if not (node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)) else a[0]
                macs += int(np.prod(out)) * k
    return 2.0 * macs / 1e9
