"""The pipeline's reference cache: PyTorch runs once per network and sample inputs."""
from __future__ import annotations

import numpy as np

from harness import pipeline, registry
from harness.config import RunConfig


def test_reference_outputs_are_computed_once_and_reused(tmp_path, monkeypatch):
    spec = registry.get("efficient3dcnn")
    run = pipeline.Pipeline(RunConfig(cache_dir=tmp_path))
    group, feeds = next(pipeline.batches(run.dataset(spec), 2, spec.input_names))
    calls = []
    real_forward = pipeline.torch_forward

    def counting_forward(*args, **kwargs):
        calls.append(1)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(pipeline, "torch_forward", counting_forward)
    first = run.reference_outputs(spec, group, feeds)
    again = pipeline.Pipeline(RunConfig(cache_dir=tmp_path)).reference_outputs(spec, group, feeds)
    assert len(calls) == 1, "a second pipeline (another run, backend or batch size) must reuse the cache"
    for a, b in zip(first["class"], again["class"]):
        np.testing.assert_array_equal(a, b)
    changed = dict(feeds, image=feeds["image"] + 1.0)
    group[0].inputs["image"] = group[0].inputs["image"] + 1.0  # other inputs: another key
    run.reference_outputs(spec, group, changed)
    assert len(calls) == 2
