"""``ascend-preview``: ATC's default fp16 arithmetic, emulated on ONNX Runtime's CPU provider.

A preview of what an Ascend inference SoC does to a network's numbers, before any ``.om`` runs on
a card: the ONNX is rewritten so that ONNX Runtime computes what ATC's default precision mode
computes, and rows are judged at the fp16 tolerances. It is not the device: no ATC fusion, no
device kernels or their accumulation order; every row says so (:meth:`environment`).

What it emulates, from the CANN documentation:

* ``--precision_mode`` defaults to ``force_fp16`` for inference: an operator that supports both
  float16 and float32 runs in float16
  (https://www.hiascend.com/document/detail/en/canncommercial/850/devaids/atctool/atlasatcparam_16_0067.html;
  ``--precision_mode_v2``'s default ``fp16``, the same mode, for Atlas inference products incl.
  Ascend 310P: https://www.hiascend.com/doc_center/source/zh/canncommercial/63RC2/inferapplicationdev/atctool/atctool_000093.html).
  So weights, graph inputs and every float tensor between nodes are rounded to float16 (a
  ``Cast`` to float16 and back).
* Overflow saturates: Atlas inference products (Ascend 310P) support only the saturation mode,
  which turns an Inf result into the largest value and a NaN result into 0
  (https://www.hiascend.com/document/detail/en/CANNCommunityEdition/910/API/runtimeapi/aclcppdevg_03_1389.html);
  each rounding therefore maps NaN to 0 and clamps to +-65504 first.
* Cube operators (Conv, ConvTranspose, MatMul, Gemm) multiply float16 operands and accumulate in
  float32 (the cube unit's fp16 path, whose fp32 output ``force_fp32``/``cube_fp16in_fp32out``
  keep; in ``force_fp16`` it is rounded to float16 again): here they read the rounded operands,
  compute in fp32 and their output is rounded.
* Vector operators compute in float16. An elementwise operator computed in fp32 and rounded once
  gives the float16 result (fp32 holds more than twice fp16's significand). Reductions and
  normalisations do not, and ONNX Runtime's CPU provider has no float16 kernels for them, so
  InstanceNormalization, LayerNormalization, ReduceMean and GlobalAveragePool are decomposed into
  ReduceSum, Sub, Mul, Div, Sqrt and Add, each result rounded to float16: a sum (of squares)
  beyond 65504 saturates, the variance comes out too small, and the normalised output is
  wrong. (Each ReduceSum here accumulates in fp32 and rounds its total once: it saturates where
  the total leaves fp16's range, and its rounding error is a lower bound of an fp16
  accumulation's.)
* ``--precision fp32`` emulates ``--precision_mode=force_fp32`` as the ascend backend passes it:
  cube operators read float16 operands and keep their fp32 result, everything else is fp32.
* ``--keep_dtype`` keeps listed operators at their original precision (fp32): one per line,
  ``OpType::<TypeName>`` with the type as Ascend IR names it, or an operator's name in the
  original model
  (https://www.hiascend.com/document/detail/en/canncommercial/850/devaids/atctool/atlasatcparam_16_0074.html,
  https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/80RC2alpha002/devaids/auxiliarydevtool/atlasatc_16_0105.html).
  A kept node is neither decomposed nor rounded inside, and its own weights stay fp32; its
  inputs arrive rounded from its fp16 neighbours and its output is rounded for them, unless
  every consumer is kept too. The keep list is the card's (``AtcOptions.keep_fp32``, as the
  ascend backend passes it to atc) unless the run gives one (``--keep-fp32 FILE``).

Ascend IR type names differ from ONNX's for some operators; :data:`ASCEND_IR_TYPES` holds the
ones this project relies on (``InstanceNormalization`` is ``InstanceNorm``, as GMA's guide keeps
it; ``Conv`` is ``Conv2D`` or ``Conv3D`` by rank); any other type is matched and written under
its ONNX name, which ATC may call otherwise (its operator mapping lists each).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from harness import cache
from harness.backends.ascend import DEFAULT_SOC, AscendTarget, keep_environment, keep_list
from harness.backends.base import Session
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.peak import Peak

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
PREVIEW = ("a CPU preview of ATC's precision mode (the ONNX rewritten to its arithmetic, run on ONNX "
           "Runtime's CPU provider), not the Ascend device: no ATC fusion, no device kernels")
# ONNX op type -> Ascend IR op type, where they differ (keyed also by rank where the name does)
ASCEND_IR_TYPES = {"InstanceNormalization": "InstanceNorm", "LayerNormalization": "LayerNorm",
                   ("Conv", 4): "Conv2D", ("Conv", 5): "Conv3D",
                   ("ConvTranspose", 4): "Conv2DTranspose", ("ConvTranspose", 5): "Conv3DTranspose"}
CUBE = ("Conv", "ConvTranspose", "MatMul", "Gemm")
DECOMPOSED = ("InstanceNormalization", "LayerNormalization", "ReduceMean", "GlobalAveragePool")


def ascend_type(op_type: str, rank: int | None = None) -> str:
    """The Ascend IR type an ONNX operator becomes (its ONNX name where not in the table)."""
    return ASCEND_IR_TYPES.get((op_type, rank), ASCEND_IR_TYPES.get(op_type, op_type))


def keep_line(node: onnx.NodeProto, rank: int | None) -> str:
    """The ``OpType::`` line that keeps ``node``'s operator type in fp32."""
    return f"OpType::{ascend_type(node.op_type, rank)}"


def is_kept(node: onnx.NodeProto, rank: int | None, keep: Sequence[str]) -> bool:
    return node.name in keep or keep_line(node, rank) in keep or f"OpType::{node.op_type}" in keep


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _inferred(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """``model`` with its inputs pinned to ``input_shapes`` and every tensor's type inferred."""
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    for value in pinned.graph.input:
        if value.name in input_shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, input_shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    return onnx.shape_inference.infer_shapes(pinned, data_prop=True)


def _types(model: onnx.ModelProto) -> dict[str, tuple[int, tuple | None]]:
    """tensor -> (element type, static dims or None)."""
    found = {}
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        found[value.name] = (tensor.elem_type, dims if tensor.HasField("shape") and None not in dims else None)
    for init in model.graph.initializer:
        found[init.name] = (init.data_type, tuple(init.dims))
    return found


class _Emitter:
    """Builds the rewritten node list: each primitive's float result rounded to fp16."""

    def __init__(self, opset: int):
        self.opset, self.nodes, self.initializers, self._count, self._constants = opset, [], [], 0, set()

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}__p{self._count}"

    def constant(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def _shared(self, name: str, value: float) -> str:
        if name not in self._constants:
            self._constants.add(name)
            self.initializers.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def round(self, source: str, target: str) -> None:
        """``target`` = ``source`` as the device's float16 holds it (kept as float32): saturated
        (NaN -> 0, beyond +-65504 -> +-65504), then rounded."""
        zero = self._shared("ascend_preview__zero", 0.0)
        low = self._shared("ascend_preview__fp16_min", -FP16_MAX)
        high = self._shared("ascend_preview__fp16_max", FP16_MAX)
        nan, finite, clipped, half = (f"{target}__{step}" for step in ("isnan", "nan0", "sat", "fp16"))
        clip = (helper.make_node("Clip", [finite, low, high], [clipped], name=f"{clipped}/Clip") if self.opset >= 11
                else helper.make_node("Clip", [finite], [clipped], name=f"{clipped}/Clip", min=-FP16_MAX, max=FP16_MAX))
        self.nodes += [helper.make_node("IsNaN", [source], [nan], name=f"{nan}/IsNaN"),
                       helper.make_node("Where", [nan, zero, source], [finite], name=f"{finite}/Where"), clip,
                       helper.make_node("Cast", [clipped], [half], name=f"{half}/Cast", to=FLOAT16),
                       helper.make_node("Cast", [half], [target], name=f"{target}/Cast", to=FLOAT)]

    def op(self, stem: str, op_type: str, inputs: Sequence[str], **attrs) -> str:
        """One primitive, its result rounded; returns the rounded tensor's name."""
        raw = self.fresh(f"{stem}/{op_type}")
        self.nodes.append(helper.make_node(op_type, list(inputs), [raw], name=raw, **attrs))
        rounded = f"{raw}__r"
        self.round(raw, rounded)
        return rounded

    def reduce_sum(self, stem: str, x: str, axes: Sequence[int], keepdims: int) -> str:
        if self.opset >= 13:  # axes moved from an attribute to an input
            return self.op(stem, "ReduceSum", [x, self.constant(stem, np.array(axes, np.int64))],
                           keepdims=keepdims)
        return self.op(stem, "ReduceSum", [x], axes=list(axes), keepdims=keepdims)

    def mean(self, stem: str, x: str, axes: Sequence[int], count: int) -> str:
        total = self.reduce_sum(stem, x, axes, keepdims=1)
        return self.op(stem, "Div", [total, self.constant(stem, np.array(count, np.float32))])

    def normalise(self, stem: str, x: str, axes: Sequence[int], count: int, epsilon: float) -> str:
        """(x - mean) / sqrt(mean((x - mean)^2) + epsilon) over ``axes``, in fp16 steps."""
        centred = self.op(stem, "Sub", [x, self.mean(stem, x, axes, count)])
        variance = self.mean(stem, self.op(stem, "Mul", [centred, centred]), axes, count)
        shifted = self.op(stem, "Add", [variance, self.constant(stem, np.array(epsilon, np.float32))])
        return self.op(stem, "Div", [centred, self.op(stem, "Sqrt", [shifted])])


def _attr(node: onnx.NodeProto, name: str, default):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def _count(dims: tuple | None, axes: Sequence[int], node: onnx.NodeProto) -> int:
    if dims is None:
        raise ValueError(f"ascend-preview: node {node.name or node.op_type} ({node.op_type}) has no static "
                         f"input shape after shape inference; the preview needs static shapes to emulate it")
    return int(np.prod([dims[a] for a in axes], dtype=np.int64))


def _decompose(emit: _Emitter, node: onnx.NodeProto, dims: tuple | None, out: str) -> None:
    """``node`` as fp16 primitives, its result written (unrounded) to ``out``."""
    stem, x = node.name or node.op_type, node.input[0]
    rank = len(dims) if dims is not None else 0
    if node.op_type == "InstanceNormalization":
        axes = list(range(2, rank))
        y = emit.normalise(stem, x, axes, _count(dims, axes, node), _attr(node, "epsilon", 1e-5))
        per_channel = emit.constant(stem, np.array([-1] + [1] * (rank - 2), np.int64))
        scale = emit.op(stem, "Reshape", [node.input[1], per_channel])
        bias = emit.op(stem, "Reshape", [node.input[2], per_channel])
        emit.nodes.append(helper.make_node("Add", [emit.op(stem, "Mul", [y, scale]), bias], [out], name=out))
    elif node.op_type == "LayerNormalization":
        axis = _attr(node, "axis", -1) % rank
        axes = list(range(axis, rank))
        y = emit.normalise(stem, x, axes, _count(dims, axes, node), _attr(node, "epsilon", 1e-5))
        scaled = emit.op(stem, "Mul", [y, node.input[1]])
        has_bias = len(node.input) > 2 and node.input[2]
        emit.nodes.append(helper.make_node("Add" if has_bias else "Identity",
                                           [scaled, node.input[2]] if has_bias else [scaled], [out], name=out))
    else:  # ReduceMean, GlobalAveragePool
        axes = _mean_axes(node, rank)
        keepdims = 1 if node.op_type == "GlobalAveragePool" else _attr(node, "keepdims", 1)
        total = emit.reduce_sum(stem, x, axes, keepdims)
        count = emit.constant(stem, np.array(_count(dims, axes, node), np.float32))
        emit.nodes.append(helper.make_node("Div", [total, count], [out], name=out))


def _mean_axes(node: onnx.NodeProto, rank: int) -> list[int]:
    if node.op_type == "GlobalAveragePool":
        return list(range(2, rank))
    axes = _attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        raise ValueError(f"ascend-preview: {node.name} ReduceMean takes its axes as an input (opset 18); "
                         f"only the attribute form is emulated")
    return [a % rank for a in axes] if axes is not None else list(range(rank))


def _decomposable(node: onnx.NodeProto, types) -> bool:
    if node.op_type not in DECOMPOSED or len([o for o in node.output if o]) != 1:
        return False
    return types.get(node.input[0], (None, None))[0] == FLOAT


def _rank(node: onnx.NodeProto, types) -> int | None:
    """The rank of ``node``'s first input (Conv2D or Conv3D), None where unknown."""
    dims = types.get(node.input[0], (None, None))[1] if node.input else None
    return len(dims) if dims is not None else None


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def emulate_fp16(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]],
                 keep: Sequence[str] = (), precision_mode: str = "force_fp16") -> onnx.ModelProto:
    """``model`` rewritten to compute what ATC's ``precision_mode`` computes (module docstring),
    with the nodes ``keep`` names (``OpType::<type>`` or node names) in fp32. Tensor names are
    kept: every original tensor holds its rounded value under its own name. ``force_fp32``:
    only the cube operators' operands are rounded (fp16 in, fp32 out), everything else is fp32."""
    inferred = _inferred(model, input_shapes)
    types, consumers = _types(inferred), _consumers(inferred)
    kept = {id(n) for n in inferred.graph.node if is_kept(n, _rank(n, types), keep)}
    emit = _Emitter(_opset(inferred))
    if precision_mode == "force_fp32":
        _round_cube_operands(inferred, types, kept, emit)
    else:
        _round_everything(inferred, types, consumers, kept, emit)
    graph = inferred.graph
    graph.ClearField("node")
    graph.node.extend(emit.nodes)
    graph.initializer.extend(emit.initializers)
    graph.ClearField("value_info")  # the runtime infers the rewritten graph's own
    return inferred


def _round_everything(model: onnx.ModelProto, types, consumers, kept: set, emit: _Emitter) -> None:
    """force_fp16: inputs, weights and each float output rounded; norms and means decomposed."""
    weights, inputs = _round_inputs_and_weights(model, types, consumers, kept, emit)
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        # read before the inputs are renamed to their rounded copies
        decomposed = id(node) not in kept and _decomposable(node, types)
        dims = types.get(node.input[0], (None, None))[1] if node.input else None
        renamed = inputs if id(node) in kept else {**weights, **inputs}
        node.input[:] = [renamed.get(name, name) for name in node.input]
        floats = [o for o in node.output if o and types.get(o, (None,))[0] == FLOAT]
        wide = [o for o in floats if id(node) in kept and o not in outputs
                and all(id(c) in kept for c in consumers.get(o, ()))]  # fp32 from kept to kept
        rounded = [o for o in floats if o not in wide]
        node.output[:] = [f"{o}__fp32" if o in rounded else o for o in node.output]
        if decomposed:
            _decompose(emit, node, dims, node.output[0])
        else:
            emit.nodes.append(node)
        for name in rounded:
            emit.round(f"{name}__fp32", name)


def _round_cube_operands(model: onnx.ModelProto, types, kept: set, emit: _Emitter) -> None:
    """force_fp32: each float operand of a cube operator read as fp16, the rest untouched."""
    rounded: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in CUBE and id(node) not in kept:
            for i, name in enumerate(node.input):
                if name and types.get(name, (None,))[0] == FLOAT:
                    if name not in rounded:
                        rounded[name] = f"{name}__cube16"
                        emit.round(name, rounded[name])
                    node.input[i] = rounded[name]
        emit.nodes.append(node)


def _round_inputs_and_weights(model: onnx.ModelProto, types, consumers, kept: set, emit: _Emitter
                              ) -> tuple[dict[str, str], dict[str, str]]:
    """Float initializers rounded in place, or into a copy where kept nodes also read them; float
    graph inputs rounded into new tensors. Returns the renames (weights for non-kept readers
    only, inputs for every reader)."""
    weights, inputs = {}, {}
    for init in model.graph.initializer:
        readers = consumers.get(init.name, [])
        if init.data_type != FLOAT or not readers or all(id(r) in kept for r in readers):
            continue
        value = numpy_helper.to_array(init).astype(np.float16).astype(np.float32)
        if any(id(r) in kept for r in readers):
            weights[init.name] = f"{init.name}__fp16"
            emit.initializers.append(numpy_helper.from_array(value, weights[init.name]))
        else:
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    for value in model.graph.input:
        if types.get(value.name, (None,))[0] == FLOAT:
            inputs[value.name] = f"{value.name}__fp16r"
            emit.round(value.name, inputs[value.name])
    return weights, inputs


class AscendPreviewBackend(AscendTarget):
    name = "ascend-preview"
    artifact_suffix = ".onnx"  # the rewritten ONNX, cached by content like any compiled model

    @classmethod
    def target_soc(cls, soc: str | None) -> str:
        # the preview runs beside the backends of any --soc (a T4's too): it emulates an Ascend one
        return soc if soc and soc.startswith("Ascend") else DEFAULT_SOC

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return OnnxRuntimeBackend.availability()  # the preview runs on ONNX Runtime's CPU provider

    def versions(self) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "emulates": f"ATC --precision_mode={self._mode} ({self.soc})"}

    @property
    def _mode(self) -> str:
        return "force_fp32" if self.requested_precision == "fp32" else "force_fp16"

    def compile_key(self, spec) -> dict:
        return {**super().compile_key(spec), "keep_fp32": keep_list(self.keep_fp32, spec).lines,
                "emulation": cache.source_hash(Path(__file__))}

    def environment(self, spec=None) -> dict:
        env = {**self.versions(), "device": "host CPU", "preview": PREVIEW}
        return {**env, **keep_environment(keep_list(self.keep_fp32, spec))} if spec is not None else env

    def peak(self, precision: str, cache_dir: Path | None = None) -> Peak:
        return Peak("host CPU (ascend-preview)", precision, None,
                    "an emulation on the CPU: no device peak applies to its speed")

    def compile(self, onnx_path: Path, input_shapes: Mapping[str, tuple[int, ...]],
                out_path: Path, spec) -> Path:
        model = emulate_fp16(onnx.load(str(onnx_path)), input_shapes, keep_list(self.keep_fp32, spec).lines,
                             self._mode)
        onnx.save(model, str(out_path))
        return Path(out_path)

    def open(self, artifact: Path, input_shapes: Mapping[str, tuple[int, ...]]) -> Session:
        import onnxruntime as ort

        from harness.backends.onnxruntime import _OrtSession

        self.require()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # the CPU provider always: a GPU provider would compute the fp32 steps otherwise
        return _OrtSession(ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"]))


BACKEND = AscendPreviewBackend  # what harness.backends.backend_class('ascend-preview') gives
