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
    """2 x multiply-adds of Conv, ConvTranspose, MatMul and Gemm at batch size 1; a convolution's
    kernel taps that fall on zero padding are left out (no runtime multiplies them, and on the
    smoke profile's small maps they are up to half of the taps: counted, the rate a runtime reaches
    read above the device's peak).

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
            macs += _conv_macs(node, shapes, out)
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            if a:
                k = a[-1] if not (node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)) else a[0]
                macs += int(np.prod(out)) * k
    return 2.0 * macs / 1e9


def _conv_macs(node, shapes: dict, out: list[int]) -> int:
    """Multiply-adds of a Conv (every output element gathers its taps) or a ConvTranspose (every
    input element scatters to its taps), over the taps that read or write inside the tensor."""
    weight, inp = shapes.get(node.input[1]), shapes.get(node.input[0])
    if not weight or not inp:
        return 0
    kernel = weight[2:]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    strides = attributes.get("strides") or [1] * len(kernel)
    dilations = attributes.get("dilations") or [1] * len(kernel)
    gather = node.op_type == "Conv"
    steps, bounds = (out[2:], inp[2:]) if gather else (inp[2:], out[2:])
    begins = _pad_begins(attributes, steps, bounds, kernel, strides, dilations)
    pairs = np.prod([_taps_inside(*axis) for axis in zip(steps, bounds, kernel, strides, dilations, begins)])
    # the weight shape carries the per-group channel count: Conv [Cout, Cin/g, k...], ConvTranspose [Cin, Cout/g, k...]
    return int((out[0] * out[1] if gather else inp[0] * inp[1]) * weight[1] * pairs)


def _pad_begins(attributes: dict, steps, bounds, kernel, strides, dilations) -> list[int]:
    """The padding before each spatial axis: ``pads``, or what ``auto_pad`` SAME_* adds."""
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad.startswith("SAME"):
        totals = [max(0, (n - 1) * s + (k - 1) * d + 1 - b)
                  for n, b, k, s, d in zip(steps, bounds, kernel, strides, dilations)]
        return [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
    return list(attributes.get("pads") or [0] * 2 * len(kernel))[:len(kernel)]


def _taps_inside(steps: int, bound: int, kernel: int, stride: int, dilation: int, begin: int) -> int:
    """(position, tap) pairs of one axis whose element ``position*stride - begin + tap*dilation``
    lies in [0, bound): in the input for a Conv, in the output for a ConvTranspose."""
    at = np.arange(steps)[:, None] * stride - begin + np.arange(kernel)[None, :] * dilation
    return int(((at >= 0) & (at < bound)).sum())
