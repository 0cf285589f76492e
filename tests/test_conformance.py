"""Conformance: the exported ONNX keeps the declared I/O contract and uses standard ops only,
and the deployed outputs match PyTorch element-wise at every batch size."""
from __future__ import annotations

import pytest

from harness import export, results

pytestmark = pytest.mark.conformance


def test_onnx_outputs_keep_the_declared_contract(model, run, onnx_model):
    """The network's outputs, as exported and simplified, have the names, dtypes and per-sample
    shapes the spec declares (the seed's contract at --profile full) behind a dynamic batch axis.
    (Input names and shapes are the exporter's own arguments; the full profile's are checked
    against the seed in test_model_cards.py.)"""
    shapes = model.profile(run.profile)
    declared = {n: {"dtype": "float32", "shape": (export.BATCH_AXIS, *s)} for n, s in shapes.outputs.items()}
    assert export.io_contract(onnx_model)["outputs"] == declared


def test_onnx_has_only_standard_ops(model, onnx_model):
    custom = {op: domain for op, domain in export.op_types(onnx_model).items() if domain not in ("", "ai.onnx")}
    assert not custom, f"{model.name}: custom ops in the exported graph: {custom}"


def test_deployed_outputs_match_pytorch(backend, deployed_outputs, weights, record):
    result = results.conformance_result(backend.precision, deployed_outputs)
    record(result, conformance=deployed_outputs.elementwise.as_dict(), weights=weights.provenance,
           data=deployed_outputs.dataset)
    result.raise_if_failed(record.row)


def test_seed_preprocessing_matches_the_suites(model, run, dataset, seed_inputs):
    """--seed-inputs: the seed's *_preprocess.py output and the suite's samples, item by item
    (file <i>.bin <-> the suite's i-th sample, of its pass where the seed preprocesses each Sintel
    pass into its own folder), element-wise; red names the files that differ, green says which
    pass each folder was judged against."""
    from harness import aisbench

    comparison = aisbench.compare_seed_inputs(seed_inputs, model.seed_bin_layout, dataset,
                                              model.profile(run.profile).inputs)
    assert comparison.passed, f"{model.name}: --seed-inputs {seed_inputs}: {comparison.message()}"
    print(f"{model.name}: --seed-inputs {seed_inputs}:\n{comparison.coverage()}")  # shown by -rP
