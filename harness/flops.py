"""The work of one sample counted from an ONNX graph: FLOPs, and the bytes a roofline divides
them by (the device's peak is harness/peak.py, the roofline harness/roofline.py).

The headline count is the common convention (fvcore, ptflops, thop, papers' tables): every
multiply-add of a Conv, ConvTranspose, MatMul or Gemm is 2 FLOPs, and every kernel tap counts,
those on zero padding included (im2col convolutions, ONNX Runtime's among them, multiply them).
The "useful" count beside it leaves out the taps that read or write zero padding: the work a
direct convolution cannot avoid. Other ops (activations, pooling, normalisation, resampling,
elementwise products) are memory-bound and left out of both, as those tables do; so is a
contraction the export spelled out in elementwise ops (FlowNet2's correlation: Mul, ReduceMean).

Every node of a counted type is counted. A node whose shapes cannot be known, or a contraction
of a type this counter has no rule for (Einsum, the quantised convolutions), is named in
``GraphCount.uncounted``, never counted as 0.

Shapes come from ONNX Runtime's symbolic shape inference: it propagates the values of the shape
subgraphs (Shape -> Gather -> Concat -> Reshape) that ONNX's own inference gives up on (all of
GMA's attention and correlation MatMuls), without running the network (running it with every
intermediate exposed would hold all activations of a full-size sample in memory at once).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, shape_inference

from harness import cache

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# contractions with no rule here: named as uncounted wherever they appear
NO_RULE = ("Einsum", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul")
FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)


@dataclass(frozen=True)
class GraphCount:
    """One sample's work at batch size 1. ``gflops``: the standard count (every tap);
    ``useful_gflops``: without the taps on zero padding; ``uncounted``: 'node (op): why' of each
    node left out of both; ``weight_elements``: the graph's float initializers and constants;
    ``activation_elements``: the float tensors its nodes produce."""

    gflops: float
    useful_gflops: float
    uncounted: tuple[str, ...]
    weight_elements: int
    activation_elements: int

    @classmethod
    def from_dict(cls, data: dict) -> "GraphCount":
        return cls(**{**data, "uncounted": tuple(data["uncounted"])})


def count(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]], cache_dir: Path | None = None) -> GraphCount:
    """The :class:`GraphCount` of the graph at ``input_shapes`` (per sample, no batch axis). With
    ``cache_dir`` it is an artifact like any other (``<cache_dir>/flops/``), keyed by the graph's
    content, the shapes and this code: shape inference over a large graph takes seconds, once."""
    if cache_dir is None:
        return _count(onnx_path, input_shapes)
    parts = {"onnx": cache.artifact_identity(onnx_path), "inputs": {n: list(s) for n, s in input_shapes.items()},
             "counter": cache.source_hash(__name__)}
    stored = cache.build_once(cache_dir, "flops", parts, lambda out: out.write_text(
        json.dumps(asdict(_count(onnx_path, input_shapes)))), ".json")
    return GraphCount.from_dict(json.loads(stored.read_text()))


def gflops_per_sample(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]],
                      cache_dir: Path | None = None) -> float:
    """The standard count of :func:`count`."""
    return count(onnx_path, input_shapes, cache_dir).gflops


def _count(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]]) -> GraphCount:
    model = _inferred(onnx.load(str(onnx_path)), input_shapes)
    shapes, floats = {}, set()
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        shape = _shape(value)
        if shape is not None:
            shapes[value.name] = shape
        if value.type.tensor_type.elem_type in FLOATS:
            floats.add(value.name)
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    standard = useful = 0
    uncounted = []
    for node in model.graph.node:
        if node.op_type in NO_RULE:
            uncounted.append(f"{node.name or node.output[0]} ({node.op_type}): no counting rule for this op")
        elif node.op_type in COUNTED:
            macs = _macs(node, shapes)
            if isinstance(macs, str):
                uncounted.append(f"{node.name or node.output[0]} ({node.op_type}): {macs}")
            else:
                standard, useful = standard + macs[0], useful + macs[1]
    produced = [o for n in model.graph.node if n.op_type != "Constant" for o in n.output if o in floats]
    return GraphCount(2.0 * standard / 1e9, 2.0 * useful / 1e9, tuple(uncounted), _weight_elements(model),
                      int(sum(np.prod(shapes[o]) for o in produced if o in shapes)))


def _inferred(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """The model with the inputs fixed at batch 1 and ``input_shapes``, shapes inferred
    (ONNX Runtime's symbolic inference; ONNX's with data propagation where that one refuses)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    for value in model.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for d, size in zip(dims, (1, *input_shapes[value.name])):
                d.ClearField("dim_param")
                d.dim_value = size
    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=False, guess_output_rank=False)
    except Exception:  # it raises bare Exceptions on ops it cannot follow; the nodes left unknown are named
        return shape_inference.infer_shapes(model, data_prop=True)


def _shape(value_info) -> list[int] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape") or not all(d.HasField("dim_value") for d in tensor.shape.dim):
        return None
    return [d.dim_value for d in tensor.shape.dim]


def _weight_elements(model: onnx.ModelProto) -> int:
    tensors = [*model.graph.initializer,
               *(a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value")]
    return int(sum(np.prod(t.dims) for t in tensors if t.data_type in FLOATS))


def _macs(node, shapes: dict) -> tuple[int, int] | str:
    """(every tap, taps off the padding) multiply-adds of a counted node, or why it has none."""
    missing = [name for name in node.input[:2] if name not in shapes]
    if missing or node.output[0] not in shapes:
        return f"shape of {', '.join(missing or node.output[:1])} unknown"
    out = shapes[node.output[0]]
    if node.op_type in ("Conv", "ConvTranspose"):
        return _conv_macs(node, shapes[node.input[0]], shapes[node.input[1]], out)
    a = shapes[node.input[0]]
    transposed = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
    k = a[0] if transposed or len(a) == 1 else a[-1]
    macs = int(np.prod(out)) * k
    return macs, macs


def _conv_macs(node, inp: list[int], weight: list[int], out: list[int]) -> tuple[int, int]:
    """A Conv's every output element gathers all its taps; a ConvTranspose's every input element
    scatters to all its taps. The useful count keeps the taps that read or write inside the tensor."""
    kernel = weight[2:]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    strides = attributes.get("strides") or [1] * len(kernel)
    dilations = attributes.get("dilations") or [1] * len(kernel)
    gather = node.op_type == "Conv"
    steps, bounds = (out[2:], inp[2:]) if gather else (inp[2:], out[2:])
    begins = _pad_begins(attributes, steps, bounds, kernel, strides, dilations)
    inside = np.prod([_taps_inside(*axis) for axis in zip(steps, bounds, kernel, strides, dilations, begins)])
    # the weight shape carries the per-group channel count: Conv [Cout, Cin/g, k...], ConvTranspose [Cin, Cout/g, k...]
    per_tap = (out[0] * out[1] if gather else inp[0] * inp[1]) * weight[1]
    return int(per_tap * np.prod(steps) * np.prod(kernel)), int(per_tap * inside)


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
