"""Where a deployed model starts to disagree: the first node whose output leaves the reference.

Both runs execute the same simplified ONNX with its intermediate tensors marked as graph outputs:
the reference on ONNX Runtime's CPU provider in fp32, the deployed one through the suite's own
backend (``Backend.compile`` + ``Backend.open``, so the same provider, precision hint and
compile options as the run that failed). Walking the nodes in the graph's topological order, the
first whose output differs from the reference by more than the precision allows is where the
divergence starts; the errors of the nodes on the path from it to the worst graph output show how
it grows.

The error of a tensor is ``max|deployed - reference| / max|reference|`` (a plain ``max|d|`` when
the reference is all zeros): relative to the tensor's own scale, so a Conv output in the
hundreds and a normalised feature map in [0, 1] are judged alike, and a single wrong region (a
fault) counts fully instead of being averaged away as an rms ratio would. Thresholds per
precision (:data:`THRESHOLDS`) sit well above what rounding alone produces through a deep graph
and below what one faulty op produces:

* fp32 1e-4: ONNX Runtime against itself is bitwise equal; OpenVINO f32 against ONNX Runtime
  peaks at 3.1e-5 (efficient3dcnn) and 1.5e-5 (gma) over the smoke graphs' nodes (different
  accumulation orders); an output rounded to fp16 alone gives 2.4e-4..4.9e-4 (half an fp16 ulp
  relative to the top binade).
* fp16 1e-2: about 20 fp16 half-ulps, room for rounding accumulated over a few hundred ops.
* bf16 5e-2: bf16 has 8 fewer mantissa bits than fp16 (half-ulp 3.9e-3).

Marking a tensor as an output keeps a runtime from fusing across it (a Conv feeding a marked Clip
cannot become one fused kernel), so the marked deployment is slightly less fused than the real
one; the summary shows the marked run's error at the graph outputs, which should match the
failure being explained. A tensor the deployed runtime does not return under its ONNX name
(merged into another tensor's port, renamed) is skipped with a note instead of guessed at.

Polygraphy (NVIDIA, on PyPI) fits the marking: ``polygraphy.backend.onnx.ModifyOutputs`` is what
``polygraphy run --onnx-outputs mark all`` uses, and it carries the shape-inferred types onto the
new outputs, which OpenVINO needs. Its runners and comparators do not fit the rest: it has no
OpenVINO or Ascend runner, and ``CompareFunc.simple`` reports pass/fail per output against one
elementwise rtol/atol in output order, not a scale-relative error per tensor in topological order
nor where the first divergence is; that part is here. Ascend is not localised: on Ascend the
per-operator data comes from the CANN dump facility (``acl.json`` dump config or ATC/ais_bench
``--dump``) compared with ``msit compare`` (formerly ait), whose dumps name fused operators, not
ONNX tensors.

Cost is bounded: one batch, tensors larger than ``max_tensor_bytes`` and tensors past
``max_total_bytes`` (in topological order, so the start of the graph is always covered) are not
marked, and ``time_limit_s`` is checked between the stages (reference run, deployed compile and
run, comparison); a stage already running is not interrupted.

The table (json, markdown) and the plot are written by :mod:`harness.localise_report`. Run
alone: ``python -m harness.localise MODEL --backend openvino --precision default``
(:mod:`harness.localise_cli`) writes them and the worst-sample picture under ``--report-dir``.
"""
from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np
import onnx

from harness import localise_report
from harness.backends import Backend

THRESHOLDS = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                onnx.TensorProto.DOUBLE}


def module_scope(node_name: str, module_names: Collection[str] | None = None) -> str:
    """The PyTorch module a node came from, from the legacy exporter's scoped node name.

    ``torch.onnx.export(..., dynamo=False)`` names nodes ``/<scope>/.../<Op>[_<n>]``. Each scope
    segment is the child's attribute name (``/fnet/conv1/Conv``), or below a Sequential or
    ModuleList its parent's segment dotted with the index (``/fnet/layer3/layer3.1/conv1/Conv``,
    ``/features/features.0/features.0.0/Conv``). Folding a segment that extends the previous one
    into it gives the ``named_modules()`` path: ``fnet.layer3.1.conv1``, ``features.0.0``. A
    module called more than once gets ``_<n>`` on its later calls (``relu_1``); with
    ``module_names`` (the network's ``named_modules()`` keys) such a suffix is dropped where
    that names a module. '' for unscoped names (graph-level ops, onnxsim's own nodes).
    """
    parts: list[str] = []
    previous = ""
    for segment in [s for s in node_name.split("/") if s][:-1]:  # the last one names the op
        if previous and segment.startswith(previous + "."):
            parts[-1] = segment
        else:
            parts.append(segment)
        previous = segment
    path = ".".join(parts)
    if module_names is not None and path not in module_names:
        stripped = re.sub(r"_\d+$", "", path)
        if stripped in module_names:
            return stripped
    return path


@dataclass(frozen=True)
class NodeError:
    index: int  # position in the graph's topological order
    node: str
    op_type: str
    module: str
    tensor: str  # the node output this row compares (the worst of its float outputs)
    shape: tuple[int, ...]
    rel_error: float  # max|d| / max|ref|
    max_abs_diff: float
    max_abs_reference: float


@dataclass
class Localisation:
    onnx_path: str
    backend: str
    precision: str  # what the deployed runtime ran at
    threshold: float
    nodes_in_graph: int
    compared: list[NodeError] = field(default_factory=list)  # topological order
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (tensor or node, why)
    path: list[NodeError] = field(default_factory=list)  # first divergent node -> worst output
    outputs: dict[str, float] = field(default_factory=dict)  # graph output -> rel error
    unavailable: str | None = None  # why this backend could not be localised
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    label: str = ""  # the model, for titles

    @property
    def first_divergent(self) -> NodeError | None:
        return next((n for n in self.compared if not n.rel_error <= self.threshold), None)

    @property
    def worst(self) -> NodeError | None:
        return max(self.compared, key=lambda n: _sortable(n.rel_error), default=None)

    def summary(self) -> str:
        if self.unavailable:
            return f"localisation on {self.backend} skipped: {self.unavailable}"
        counted = (f"compared {len(self.compared)} of {self.nodes_in_graph} nodes against the "
                   f"fp32 ONNX Runtime reference")
        if self.skipped:
            counted += f", {len(self.skipped)} tensors skipped (see the table)"
        outputs = ", ".join(f"{name} {err:.2g}" for name, err in self.outputs.items())
        first = self.first_divergent
        if first is None:
            worst = self.worst
            where = (f"; largest rel err {worst.rel_error:.2g} at {_describe(worst)}"
                     if worst else "")
            return (f"no node of {self.backend} ({self.precision}) diverges beyond rel err "
                    f"{self.threshold:.0e}{where}; graph outputs: {outputs or 'not compared'}; "
                    f"{counted}.{_notes(self.notes)}")
        growth = _along_the_path(self.path)
        return (f"divergence on {self.backend} ({self.precision}) starts at node {first.node} "
                f"({first.op_type}, module {first.module or '<graph>'}, #{first.index} in "
                f"topological order): rel err {first.rel_error:.2g} vs threshold "
                f"{self.threshold:.0e}{growth}; graph outputs: {outputs or 'not compared'}; "
                f"{counted}.{_notes(self.notes)}")

    def as_dict(self) -> dict:
        first = self.first_divergent
        return {
            "model": self.label, "onnx": self.onnx_path, "backend": self.backend, "precision": self.precision,
            "reference": "onnxruntime CPU fp32, same ONNX, intermediate tensors marked",
            "metric": "max|deployed - reference| / max|reference| per tensor",
            "threshold": self.threshold, "nodes_in_graph": self.nodes_in_graph,
            "first_divergent": asdict(first) if first else None,
            "path": [asdict(n) for n in self.path], "outputs": self.outputs,
            "nodes": [asdict(n) for n in self.compared],
            "skipped": [{"tensor": t, "why": why} for t, why in self.skipped],
            "unavailable": self.unavailable, "elapsed_s": round(self.elapsed_s, 3),
            "notes": self.notes, "summary": self.summary(),
        }


def _sortable(value: float) -> float:
    return float("inf") if not np.isfinite(value) else value


def _describe(node: NodeError) -> str:
    return f"{node.node} ({node.op_type}, module {node.module or '<graph>'})"


def _notes(notes: Sequence[str]) -> str:
    return "".join(f" {n}" for n in notes)


def _along_the_path(path: Sequence[NodeError]) -> str:
    """How the error reads on the way from the first divergent node to the worst graph output, as
    it is: through a normalisation or a softmax it may shrink as well as grow, so the message
    states the values and, last, the output's error as a multiple of the first node's."""
    if len(path) < 2:
        return ""
    steps = ", ".join(f"{n.rel_error:.2g} at {n.node}" for n in _spread(path[1:], 3))
    first, last = path[0].rel_error, path[-1].rel_error
    change = ""
    if math.isfinite(first) and math.isfinite(last) and first > 0:
        change = f" ({last / first:.2g}x the first node's)"
    return f"; then along the path to the worst output: {steps}{change}"


def _spread(items: Sequence, count: int) -> list:
    """Up to ``count`` items evenly spread over ``items``, always including the last."""
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in sorted(set(picks))]


def relative_error(deployed: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """(max|d| / max|ref|, max|d|, max|ref|) over one tensor: NaN on both sides agrees, on one
    side is an infinite difference; a shape mismatch is an infinite error; an all-zero (or
    non-finite) reference gives the plain max|d|."""
    got = np.asarray(deployed, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf"), float("inf"), 0.0
    both_nan = np.isnan(got) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.abs(got - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only is a full mismatch
    max_diff = float(diff.max()) if diff.size else 0.0
    finite_ref = np.abs(ref[np.isfinite(ref)])
    scale = float(finite_ref.max()) if finite_ref.size else 0.0
    return (max_diff / scale if scale > 0 else max_diff), max_diff, scale


def _static_shapes(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
                   ) -> dict[str, tuple[int | None, tuple]]:
    """tensor name -> (elem_type, dims) after shape inference at the feeds' shapes."""
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    for value in pinned.graph.input:
        if value.name in feeds:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, feeds[value.name].shape):
                dim.Clear()
                dim.dim_value = int(size)
    inferred = onnx.shape_inference.infer_shapes(pinned, data_prop=True)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
        shapes[value.name] = (tensor_type.elem_type or None,
                              dims if tensor_type.HasField("shape") else None)
    return shapes, inferred


def _choose_tensors(model: onnx.ModelProto, shapes, max_tensor_bytes: int, max_total_bytes: int
                    ) -> tuple[list[str], list[tuple[str, str]]]:
    chosen, skipped, total = [], [], 0
    seen = {i.name for i in model.graph.initializer} | {i.name for i in model.graph.input}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue  # equal on every runtime by construction
        for name in node.output:
            if not name or name in seen:
                continue
            seen.add(name)
            elem_type, dims = shapes.get(name, (None, None))
            if elem_type is None:
                skipped.append((name, "type unknown after shape inference"))
                continue
            if elem_type not in _FLOAT_TYPES:
                continue  # shapes, indices, masks: exact or not compared
            if dims is None or None in dims:
                chosen.append(name)  # its size is checked once the reference run has it
                continue
            size = int(np.prod(dims, dtype=np.int64)) * 4
            if size > max_tensor_bytes:
                skipped.append((name, f"{size / 2**20:.0f} MiB exceeds max_tensor_bytes"))
                continue
            if total + size > max_total_bytes:
                skipped.append((name, "past the max_total_bytes budget of marked tensors"))
                continue
            total += size
            chosen.append(name)
    return chosen, skipped


def mark_outputs(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are its own outputs plus ``tensors``."""
    from polygraphy.backend.onnx import ModifyOutputs

    keep = [o.name for o in model.graph.output]
    wanted = keep + [t for t in tensors if t not in set(keep)]
    return ModifyOutputs(model, outputs=wanted, copy=True)()


def _reference_run(marked_path: Path, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(marked_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feeds))))


def deployed_run(backend: Backend, onnx_path: Path, feeds: Mapping[str, np.ndarray],
                 work_dir: Path, spec=None) -> dict[str, np.ndarray]:
    """``onnx_path`` compiled and run through the suite's own ``backend`` at the feeds' shapes
    (with ``spec``'s compile options where given, e.g. the Ascend preview's keep list)."""
    shapes = {name: tuple(array.shape) for name, array in feeds.items()}
    artifact = work_dir / f"marked{backend.artifact_suffix}"
    artifact = backend.compile(onnx_path, shapes, artifact, spec)
    session = backend.open(artifact, shapes)
    try:
        return session.run(feeds)
    finally:
        session.close()


def _growth_path(model: onnx.ModelProto, compared: Sequence[NodeError], start: NodeError,
                 output_errors: Mapping[str, float]) -> list[NodeError]:
    """Compared nodes on the shortest path from ``start`` to the worst graph output it feeds."""
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    nodes = model.graph.node
    came_from = {start.index: None}
    queue = deque([start.index])
    while queue:
        i = queue.popleft()
        for out in nodes[i].output:
            for j in consumers.get(out, ()):
                if j not in came_from:
                    came_from[j] = i
                    queue.append(j)
    producers = {out: i for i, node in enumerate(nodes) for out in node.output}
    reachable = [o for o in output_errors if producers.get(o) in came_from]
    if not reachable:
        return [start]
    target = max(reachable, key=lambda o: _sortable(output_errors[o]))
    chain, i = [], producers[target]
    while i is not None:
        chain.append(i)
        i = came_from[i]
    by_index = {n.index: n for n in compared}
    return [by_index[i] for i in reversed(chain) if i in by_index]


class _Clock:
    """The time limit, checked between the stages (a stage already running is not interrupted)."""

    def __init__(self, limit_s: float):
        self.started, self.limit_s = time.monotonic(), limit_s

    def stop_after(self, stage: str, result: Localisation) -> bool:
        """Record the time spent in ``result``; past the limit, note where it stopped."""
        result.elapsed_s = time.monotonic() - self.started
        if result.elapsed_s > self.limit_s:
            result.notes.append(f"Stopped after {stage}: time limit {self.limit_s:.0f} s reached.")
            return True
        return False


def localise(onnx_path: Path, backend: Backend, feeds: Mapping[str, np.ndarray], *,
             threshold: float | None = None, time_limit_s: float = 300.0,
             max_tensor_bytes: int = 256 * 2**20, max_total_bytes: int = 2 * 2**30,
             work_dir: Path | None = None, module_names: Collection[str] | None = None,
             label: str | None = None, spec=None) -> Localisation:
    """Localise where ``backend`` running ``onnx_path`` on ``feeds`` leaves the fp32 reference.

    ``backend`` is the suite's backend object as the failing run used it (requested precision and
    device included); ``feeds`` one batch at the run's shapes. ``threshold`` defaults to
    ``THRESHOLDS[backend.precision]``. A backend that declares it is not localised
    (``Backend.not_localised``) or is not available here gives a Localisation with
    ``unavailable`` set instead of raising. ``module_names``
    (the network's ``named_modules()`` keys) refines the module scopes (:func:`module_scope`);
    ``label`` names the model in the plot and table (default: the ONNX file name); ``spec``
    gives the backend the model's compile options, as the failing run compiled it.
    """
    clock = _Clock(time_limit_s)
    model = onnx.load(str(onnx_path))
    result = Localisation(str(onnx_path), backend.name, "", 0.0, len(model.graph.node),
                          label=label or Path(onnx_path).name)
    result.unavailable = _why_not_localised(backend)
    if result.unavailable:
        return result
    shapes, inferred = _static_shapes(model, feeds)
    tensors, result.skipped = _choose_tensors(inferred, shapes, max_tensor_bytes, max_total_bytes)
    runs = _run_both(inferred, tensors, backend, feeds, work_dir, clock, result, spec)
    if runs is None:
        return result
    reference, deployed = runs
    result.precision = backend.precision
    result.threshold = threshold if threshold is not None else THRESHOLDS[result.precision]
    if clock.stop_after("the deployed run", result):
        return result
    wanted = _within_size(set(tensors) | {o.name for o in model.graph.output}, reference,
                          max_tensor_bytes, result.skipped)
    result.compared = _compare(model, wanted, reference, deployed, backend.name, module_names,
                               result.skipped)
    by_tensor = {n.tensor: n for n in result.compared}
    result.outputs = {o.name: by_tensor[o.name].rel_error for o in model.graph.output
                      if o.name in by_tensor}
    first = result.first_divergent
    if first is not None:
        result.path = _growth_path(model, result.compared, first, result.outputs)
    result.elapsed_s = time.monotonic() - clock.started
    return result


def _why_not_localised(backend: Backend) -> str | None:
    """What the backend declares (``Backend.not_localised``), or why it cannot run here."""
    if not backend.localises:
        return backend.not_localised
    available, why = backend.availability()
    return None if available else why


def _run_both(inferred: onnx.ModelProto, tensors: Sequence[str], backend: Backend,
              feeds: Mapping[str, np.ndarray], work_dir: Path | None, clock: _Clock,
              result: Localisation, spec=None) -> tuple[dict, dict] | None:
    """The marked graph's outputs on the reference and on ``backend``; None when the time
    limit stopped it after the reference run (noted in ``result``)."""
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="localise-") as tmp:
        marked_path = Path(tmp) / "marked.onnx"
        onnx.save(mark_outputs(inferred, tensors), str(marked_path))
        reference = _reference_run(marked_path, feeds)
        if clock.stop_after("the reference run", result):
            return None
        return reference, deployed_run(backend, marked_path, feeds, Path(tmp), spec)


def _within_size(wanted: set[str], reference: Mapping[str, np.ndarray], max_tensor_bytes: int,
                 skipped: list[tuple[str, str]]) -> set[str]:
    """``wanted`` less the tensors the reference run shows to be over ``max_tensor_bytes`` (their
    size was unknown before it), each added to ``skipped``."""
    for name in [n for n in wanted if n in reference]:
        if reference[name].nbytes > max_tensor_bytes:
            wanted.discard(name)
            skipped.append((name, f"{reference[name].nbytes / 2**20:.0f} MiB exceeds "
                                  f"max_tensor_bytes"))
    return wanted


def _compare(model: onnx.ModelProto, wanted: Collection[str], reference: Mapping[str, np.ndarray],
             deployed: Mapping[str, np.ndarray], backend_name: str,
             module_names: Collection[str] | None, skipped: list[tuple[str, str]]
             ) -> list[NodeError]:
    """One row per node with a compared output (its worst), in topological order; an output the
    deployed run does not return under its name is added to ``skipped``."""
    compared = []
    for index, node in enumerate(model.graph.node):
        rows = []
        for name in node.output:
            if name not in wanted or name not in reference:
                continue
            if name not in deployed:
                skipped.append((name, f"not among {backend_name}'s outputs under this "
                                      f"name (fused into another tensor or renamed)"))
                continue
            rel, max_diff, scale = relative_error(deployed[name], reference[name])
            rows.append(NodeError(index, node.name, node.op_type,
                                  module_scope(node.name, module_names), name,
                                  tuple(int(d) for d in reference[name].shape), rel, max_diff,
                                  scale))
        if rows:
            compared.append(max(rows, key=lambda r: _sortable(r.rel_error)))
    return compared


def localise_failure(spec, onnx_path: Path, backend: Backend, feeds: Mapping[str, np.ndarray],
                     report_dir: Path, *, time_limit_s: float = 300.0) -> str:
    """On a failed comparison with PyTorch: localise, write the table and plot into
    ``report_dir``, and return the text to append to the failure message.

    The threshold is the precision's own (:data:`THRESHOLDS`) or the model's element-wise rtol
    for that precision where that is tighter, so a failure the spec's tolerance calls is not
    explained away as 'no node diverges'. Never raises: a localisation that cannot run says why
    in the returned text, since it must not hide the failure it was called for.
    """
    try:
        precision = backend.precision
        threshold = THRESHOLDS.get(precision)
        if threshold is not None and precision in spec.elementwise:
            threshold = min(threshold, spec.elementwise[precision].rtol)
        result = localise(onnx_path, backend, feeds, threshold=threshold,
                          time_limit_s=time_limit_s, label=spec.name, spec=spec)
        if result.unavailable:
            return result.summary()
        paths = localise_report.write(result, report_dir)
        return f"{result.summary()} Table and plot: {Path(paths['json']).parent}"
    except Exception as error:  # diagnostics only: report it, keep the original failure
        return f"localisation of {spec.name} on {backend.name} failed: {type(error).__name__}: {error}"


if __name__ == "__main__":
    from harness.localise_cli import main

    sys.exit(main())
