"""Graph passes the seeds run on their ONNX before ``atc``, written with onnx's own API.

ATC on the 310P handles int64 poorly (host-side emulation, or a rejected operator), so two seeds
narrow the graph's integers before converting:

* FlowNet2's ``fix_onnx.py`` turns int64 ``Constant`` values, initializers, ``ConstantOfShape``
  values and ``Cast(to=int64)`` into int32, clamping values to the int32 range. It also merges a
  ``Slice`` that feeds another ``Slice`` into one; the suite's simplified FlowNet2 graph holds no
  such chain (onnxsim folds them), which tests/test_ascend.py checks.
* GMA's ``python -m auto_optimizer optimize ... -k 4``: knowledge 4 of auto-optimizer's pool (the
  registration order of ``auto_optimizer/pattern/knowledges/__init__.py``, Ascend/msadvisor, early
  2023) is ``KnowledgeTypeCast``: int64 -> int32 and float64 -> float32 over every operator whose
  ONNX schema accepts both types, with a ``Cast`` where such a region meets an operand that must
  stay wide.

One pass, :func:`narrow`, does what both do in a way that keeps the graph valid ONNX: a wide tensor
becomes narrow wherever the consuming operand's schema allows the narrow type; operands that ONNX
defines as int64 only (``Reshape``'s shape, ``Pad``'s pads, ``ConstantOfShape``'s input,
``Expand``'s shape, ``Unsqueeze``'s axes ...) keep int64, fed through a ``Cast`` where their value
now comes narrow. fix_onnx.py narrows those too, which ATC accepts but no ONNX runtime does; ATC
folds them into static shapes at compile time either way, so no int64 reaches the device through
them. The result therefore runs in ONNX Runtime, which is how the suite proves a pass keeps the
outputs (tests/test_ascend.py). :func:`unrequired_wide` lists what a pass left wide that no
schema requires: empty after :func:`narrow`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT64, INT32 = TensorProto.INT64, TensorProto.INT32
DOUBLE, FLOAT = TensorProto.DOUBLE, TensorProto.FLOAT
_TYPE_STR = {INT64: "tensor(int64)", INT32: "tensor(int32)", DOUBLE: "tensor(double)",
             FLOAT: "tensor(float)"}
_NUMPY = {INT64: np.int64, INT32: np.int32, DOUBLE: np.float64, FLOAT: np.float32}

# a consumer operand's need: 'narrow', 'wide', or 'any' (Cast reads every type)
NARROW, WIDE, ANY = "narrow", "wide", "any"


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _schema(node: onnx.NodeProto, opset: int):
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None  # a custom domain: nothing is known, so every operand keeps its type


def _formal(params, index: int):
    """The schema parameter an actual input/output binds to (the last one when variadic)."""
    if not params:
        return None
    if index < len(params):
        return params[index]
    last = params[-1]
    return last if last.option == onnx.defs.OpSchema.FormalParameterOption.Variadic else None


def _allowed(schema, formal) -> tuple[str, set[str]]:
    """(type variable or fixed type string, allowed type strings) of a schema parameter."""
    for constraint in schema.type_constraints:
        if constraint.type_param_str == formal.type_str:
            return formal.type_str, set(constraint.allowed_type_strs)
    return formal.type_str, {formal.type_str}


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its floating-point initializers turned into typed graph inputs: the same
    types for inference and checking, without serializing hundreds of MB of weights."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(model)
    graph = skeleton.graph
    weights = [t for t in graph.initializer if t.data_type not in (INT64, INT32)]
    kept = [t for t in graph.initializer if t.data_type in (INT64, INT32)]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in weights)
    return skeleton


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(_skeleton(model))
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.input, *graph.value_info, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def _constant_value(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == "value"), None)


def _narrowed_tensor(tensor: onnx.TensorProto, narrow: int, name: str | None = None) -> onnx.TensorProto:
    values = numpy_helper.to_array(tensor)
    target = _NUMPY[narrow]
    info = np.iinfo(target) if np.issubdtype(target, np.integer) else np.finfo(target)
    # the seeds clamp into the narrow range instead of letting values wrap (e.g. INT64_MAX ends)
    clipped = np.clip(values, info.min, info.max).astype(target)
    return numpy_helper.from_array(clipped, tensor.name if name is None else name)


class _Plan:
    """Which wide tensors a pass makes narrow: producers, consumers' needs, per tensor name."""

    def __init__(self, model: onnx.ModelProto, wide: int, narrow: int):
        self.wide, self.narrow = wide, narrow
        self.graph = model.graph
        self.opset = _opset(model)
        self.types = _value_types(model)
        self.initializers = {t.name: t for t in self.graph.initializer}
        # node index -> type variables of its schema that the pass narrows on that node
        self.narrowed_vars: dict[int, set[str]] = {}
        for i, node in enumerate(self.graph.node):
            if node.op_type in ("Cast", "Constant", "ConstantOfShape"):
                continue  # handled as producers whose output type is an attribute
            variables = self._narrowable_vars(node)
            if variables:
                self.narrowed_vars[i] = variables

    def _bindings(self, node: onnx.NodeProto):
        """(is_input, index, tensor name, type variable, allowed) per actual operand."""
        schema = _schema(node, self.opset)
        if schema is None:
            return
        for is_input, names, params in ((True, node.input, schema.inputs),
                                        (False, node.output, schema.outputs)):
            for index, name in enumerate(names):
                formal = _formal(params, index)
                if name and formal is not None:
                    yield (is_input, index, name, *_allowed(schema, formal))

    def _narrowable_vars(self, node: onnx.NodeProto) -> set[str]:
        wide_s, narrow_s = _TYPE_STR[self.wide], _TYPE_STR[self.narrow]
        return {var for _, _, name, var, allowed in self._bindings(node)
                if wide_s in allowed and narrow_s in allowed and self.types.get(name) == self.wide}

    def need(self, node_index: int, input_index: int) -> str:
        """What a consumer operand needs when its tensor is wide now."""
        node = self.graph.node[node_index]
        if node.op_type == "Cast":
            return ANY
        for is_input, index, _, var, _ in self._bindings(node):
            if is_input and index == input_index:
                return NARROW if var in self.narrowed_vars.get(node_index, ()) else WIDE
        return WIDE

    def produces_narrow(self, node_index: int, output_index: int) -> bool:
        node = self.graph.node[node_index]
        return any(not is_input and index == output_index
                   and var in self.narrowed_vars.get(node_index, ())
                   for is_input, index, _, var, _ in self._bindings(node))

    def flexible(self, node: onnx.NodeProto) -> bool:
        """A producer whose output type is data the pass can rewrite: a wide literal or cast."""
        if node.op_type == "Cast":
            return helper.get_attribute_value(node.attribute[0]) == self.wide
        if node.op_type in ("Constant", "ConstantOfShape"):
            value = _constant_value(node)
            return value is not None and value.t.data_type == self.wide
        return False


def narrow(model: onnx.ModelProto, wide: int = INT64, narrow_to: int = INT32) -> onnx.ModelProto:
    """A copy of ``model`` computing in ``narrow_to`` wherever ONNX allows it instead of ``wide``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    plan = _Plan(copy, wide, narrow_to)
    rewrite = _Rewrite(copy.graph, plan)
    for name, uses in _wide_uses(copy.graph, plan).items():
        rewrite.tensor(name, uses)
    rewrite.insert_casts()
    del copy.graph.value_info[:]  # types changed; runtimes infer them again
    # strict type inference over every node: a pass that broke a type constraint fails here
    onnx.checker.check_model(_skeleton(copy), full_check=True)
    return copy


# one consumer operand of a wide tensor: (node index, input index, its need: NARROW, WIDE or ANY)
_Use = tuple[int, int, str]


def _wide_uses(graph: onnx.GraphProto, plan: _Plan) -> dict[str, list[_Use]]:
    """Each wide tensor -> the operands reading it and what they need; a wide graph output is
    listed even where no node reads it (it may have to be cast back to the interface's type)."""
    uses: dict[str, list[_Use]] = {}
    for i, node in enumerate(graph.node):
        for k, name in enumerate(node.input):
            if name and plan.types.get(name) == plan.wide:
                uses.setdefault(name, []).append((i, k, plan.need(i, k)))
    for output in graph.output:
        if plan.types.get(output.name) == plan.wide:
            uses.setdefault(output.name, [])
    return uses


class _Rewrite:
    """Applies a :class:`_Plan` to ``graph`` one wide tensor at a time: narrowed literals and
    casts, rewired operands, and the ``Cast`` nodes to insert after their producers."""

    def __init__(self, graph: onnx.GraphProto, plan: _Plan):
        self.graph, self.plan = graph, plan
        self.producer = {name: (i, k) for i, node in enumerate(graph.node)
                         for k, name in enumerate(node.output)}
        self.graph_outputs = {o.name for o in graph.output}
        self.wide_name = TensorProto.DataType.Name(plan.wide)
        self.narrow_name = TensorProto.DataType.Name(plan.narrow)
        self.casts_after: dict[int | None, list[onnx.NodeProto]] = {}  # producer index (None: start)

    def tensor(self, name: str, uses: list[_Use]) -> None:
        want_narrow = [u for u in uses if u[2] == NARROW]
        if name in self.plan.initializers:
            self._initializer(name, want_narrow, [u for u in uses if u[2] == WIDE])
        elif name not in self.producer:  # a graph input: the interface keeps its type
            if want_narrow:
                self._cast(name, f"{name}_{self.narrow_name}", self.plan.narrow, None, want_narrow)
        else:
            self._produced(name, uses)

    def _initializer(self, name: str, want_narrow: list[_Use], want_wide: list[_Use]) -> None:
        initializer = self.plan.initializers[name]
        if not want_narrow:
            return
        if want_wide:  # a narrow copy for the narrow operands; the wide one stays for the rest
            copy = _narrowed_tensor(initializer, self.plan.narrow, f"{name}_{self.narrow_name}")
            self.graph.initializer.append(copy)
            self._rewire(want_narrow, copy.name)
        else:
            initializer.CopyFrom(_narrowed_tensor(initializer, self.plan.narrow))

    def _produced(self, name: str, uses: list[_Use]) -> None:
        want_narrow = [u for u in uses if u[2] == NARROW]
        want_wide = [u for u in uses if u[2] == WIDE]
        i, k = self.producer[name]
        node = self.graph.node[i]
        if self.plan.flexible(node) and want_narrow:
            self._narrow_literal(node)
            becomes_narrow = True
        else:
            becomes_narrow = self.plan.produces_narrow(i, k)
        if becomes_narrow and name in self.graph_outputs:
            # the interface keeps its types: the narrow value gets a new name, cast back to this one
            inner = f"{name}_{self.narrow_name}"
            node.output[k] = inner
            self._rewire([u for u in uses if u[2] != WIDE], inner)
            self._cast(inner, name, self.plan.wide, i, [])
        elif becomes_narrow and want_wide:
            self._cast(name, f"{name}_{self.wide_name}", self.plan.wide, i, want_wide)
        elif not becomes_narrow and want_narrow:
            self._cast(name, f"{name}_{self.narrow_name}", self.plan.narrow, i, want_narrow)

    def _narrow_literal(self, node: onnx.NodeProto) -> None:
        """A wide ``Cast`` target or ``Constant``/``ConstantOfShape`` value made narrow."""
        if node.op_type == "Cast":
            node.attribute[0].i = self.plan.narrow
        else:
            value = _constant_value(node)
            value.t.CopyFrom(_narrowed_tensor(value.t, self.plan.narrow))

    def _cast(self, source: str, target: str, to: int, after: int | None,
              readers: list[_Use]) -> None:
        """A ``Cast`` of ``source`` to ``target`` inserted after node ``after``; ``readers``
        read ``target`` from now on."""
        self.casts_after.setdefault(after, []).append(
            helper.make_node("Cast", [source], [target], to=to, name=f"{target}_cast"))
        self._rewire(readers, target)

    def _rewire(self, uses: Iterable[_Use], new_name: str) -> None:
        for i, k, _ in uses:
            self.graph.node[i].input[k] = new_name

    def insert_casts(self) -> None:
        """The new ``Cast`` nodes placed right after their producers (topological order kept)."""
        ordered = list(self.casts_after.get(None, ()))
        for i, node in enumerate(self.graph.node):
            ordered.append(node)
            ordered.extend(self.casts_after.get(i, ()))
        del self.graph.node[:]
        self.graph.node.extend(ordered)


def unrequired_wide(model: onnx.ModelProto, wide: int = INT64, narrow_to: int = INT32) -> list[str]:
    """Wide literals and casts (initializers, ``Constant``, ``ConstantOfShape`` values,
    ``Cast(to=wide)``: what fix_onnx.py narrows) read by an operand whose schema allows the narrow
    type: each is something a narrowing pass should have narrowed. Empty after :func:`narrow`."""
    plan = _Plan(model, wide, narrow_to)
    narrow_s = _TYPE_STR[narrow_to]
    sources: dict[str, str] = {t.name: f"initializer {t.name}" for t in model.graph.initializer
                               if t.data_type == wide}
    for node in model.graph.node:
        if plan.flexible(node):
            sources[node.output[0]] = f"{node.op_type} {node.name or node.output[0]}"
    found = []
    for node in model.graph.node:
        readers = {index: allowed for is_input, index, _, _, allowed in plan._bindings(node) if is_input}
        for k, name in enumerate(node.input):
            if name in sources and (node.op_type == "Cast" or narrow_s in readers.get(k, ())):
                found.append(f"{sources[name]} -> {node.op_type} {node.name} input {k}")
    return found


def int64_to_int32(model: onnx.ModelProto) -> onnx.ModelProto:
    return narrow(model, INT64, INT32)


def float64_to_float32(model: onnx.ModelProto) -> onnx.ModelProto:
    return narrow(model, DOUBLE, FLOAT)


# what a spec's atc_graph_passes may name, in the order the spec lists them
PASSES: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "int64_to_int32": int64_to_int32,
    "float64_to_float32": float64_to_float32,
}


def apply_passes(onnx_path: Path, names: Iterable[str], out_path: Path) -> Path:
    """Run the named passes over ``onnx_path`` and write the result to ``out_path``."""
    names = tuple(names)
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise ValueError(f"atc_graph_passes {unknown}: expected names from {sorted(PASSES)} "
                         f"(harness/backends/onnx_passes.py)")
    model = onnx.load(str(onnx_path))
    for name in names:
        model = PASSES[name](model)
    onnx.save(model, str(out_path))
    return Path(out_path)
