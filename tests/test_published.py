"""The deployed model against the seed's published figures, where they apply (harness/published.py):
the published checkpoint, the complete dataset, the seed's shapes. Every other run records in its
row, and says in the skip, precisely why they do not apply.

Judged for every deployed backend at the smallest batch size of the run: every seed publishes its
accuracy at batch size 1 (the smallest of both profiles; SlowFast's guide adds batch 8, 0.01 apart,
declared in its card), and the protocols score each sample alone, so batch size does not move it."""
from __future__ import annotations

import pytest

from harness import results

pytestmark = pytest.mark.accuracy


@pytest.mark.smallest_batch_size
def test_published_figure(model, backend_name, batch_size, backend, weights, deployed_outputs, run, record):
    result = results.published_result(model, weights, deployed_outputs.dataset, run.profile,
                                      deployed_outputs.metrics)
    record(result)
    if not result.applies:
        pytest.skip(f"{model.name}: published figures do not apply: {result.reason}")
    result.raise_if_failed(f"{record.row} against the published figures")
