"""Accuracy: the deployed model against PyTorch on the same samples (always: a complete gate of
the deployment whatever the weights). The published figures: tests/test_published.py."""
from __future__ import annotations

import pytest

from harness import results

pytestmark = pytest.mark.accuracy


def test_deployed_model_matches_pytorch(model, backend, reference_outputs, deployed_outputs, weights, run, record,
                                        divergence):
    result = results.accuracy_result(model, backend.precision, reference_outputs, deployed_outputs,
                                     run.accept_bad_items, run.accept_missing)
    localised = divergence.localise() if result.diverged and deployed_outputs.sample_ids else ""
    record(result, weights=weights.provenance, data=result.data, environment=backend.environment(model),
           worst_sample_picture=divergence.picture(), localisation=localised)
    result.raise_if_failed(record.row, localised)
