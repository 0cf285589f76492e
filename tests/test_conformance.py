"""Conformance: the exported ONNX keeps the seed's I/O contract and uses standard ops only, and the
deployed outputs match PyTorch element-wise at every batch size."""
from __future__ import annotations

import pytest

from harness import export

pytestmark = pytest.mark.conformance


def _expected_contract(model, profile: str) -> dict:
    shapes = model.profile(profile)
    return {
        "inputs": {n: {"dtype": "float32", "shape": (export.BATCH_AXIS, *s)} for n, s in shapes.inputs.items()},
        "outputs": {n: {"dtype": "float32", "shape": (export.BATCH_AXIS, *s)} for n, s in shapes.outputs.items()},
    }


def test_onnx_io_contract(model, reference_pipeline, onnx_model):
    """Names, dtypes and shapes as the profile declares them; the batch axis is dynamic."""
    assert export.io_contract(onnx_model) == _expected_contract(model, reference_pipeline.config.profile)


def test_onnx_has_only_standard_ops(model, onnx_model):
    custom = {op: domain for op, domain in export.op_types(onnx_model).items() if domain not in ("", "ai.onnx")}
    assert not custom, f"{model.name}: custom ops in the exported graph: {custom}"


def test_full_profile_declares_seed_contract(model):
    """The full profile is the seed's contract: its names and per-sample shapes are declared
    data that ``--profile full`` exports; the smoke profile keeps the same names and ranks."""
    full, smoke = model.profile("full"), model.profile("smoke")
    assert list(smoke.inputs) == list(full.inputs) and list(smoke.outputs) == list(full.outputs)
    assert all(len(smoke.inputs[n]) == len(full.inputs[n]) for n in full.inputs)
    assert all(len(smoke.outputs[n]) == len(full.outputs[n]) for n in full.outputs)


def test_deployed_outputs_match_pytorch(model, batch_size, pipeline, evaluation, record):
    stats = evaluation.elementwise
    record(conformance=stats.as_dict(), weights=pipeline.weights(model).provenance, data=evaluation.dataset)
    assert stats.elements > 0, f"{model.name}: the dataset produced no samples"
    assert stats.passed, (
        f"{model.name} bs{batch_size} on {pipeline.backend.name} ({pipeline.backend.precision}): "
        f"{stats.outside}/{stats.elements} elements outside |d| <= {stats.tolerance.atol} + {stats.tolerance.rtol}|ref|, "
        f"max |d| {stats.max_abs:.3g} at {stats.worst}")
