"""PyTorch -> ONNX (the seed's names, dynamic batch) -> simplified ONNX, and the I/O contract."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from harness.spec import ModelSpec

BATCH_AXIS = "batch"


def export_onnx(spec: ModelSpec, network: torch.nn.Module, profile: str, out_path: Path) -> None:
    shapes = spec.profile(profile)
    generator = torch.Generator().manual_seed(0)
    args = tuple(torch.rand((1, *shape), generator=generator) for shape in shapes.inputs.values())
    names = list(shapes.inputs) + list(shapes.outputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(
            network,
            args,
            str(out_path),
            dynamo=False,
            opset_version=spec.opset,
            input_names=list(shapes.inputs),
            output_names=list(shapes.outputs),
            dynamic_axes={name: {0: BATCH_AXIS} for name in names},
            do_constant_folding=True,
        )


def simplify(onnx_path: Path, out_path: Path) -> None:
    """onnxsim with its own output check, then onnx.checker on the result."""
    import onnxsim

    model = onnx.load(str(onnx_path))
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError(f"{onnx_path}: onnxsim could not validate the simplified model")
    onnx.checker.check_model(simplified)
    onnx.save(simplified, str(out_path))


def _dims(value_info) -> tuple:
    return tuple(
        d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim
    )


def io_contract(onnx_path: Path) -> dict[str, dict[str, dict]]:
    """{'inputs': {name: {dtype, shape}}, 'outputs': {...}} as the graph declares them."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def describe(values):
        return {
            v.name: {
                "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
                "shape": _dims(v),
            }
            for v in values
            if v.name not in initializers
        }

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


def op_types(onnx_path: Path) -> dict[str, str]:
    """op type -> domain for every node ('' is the standard ONNX domain)."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return {node.op_type: node.domain for node in graph.node}


def random_feeds(spec: ModelSpec, profile: str, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: rng.random((batch_size, *shape), dtype=np.float32)
        for name, shape in spec.profile(profile).inputs.items()
    }
