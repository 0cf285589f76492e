"""The stages as plain functions: the PyTorch reference runs once per network and sample inputs."""
from __future__ import annotations

import numpy as np

from harness import outputs, registry, stages


def test_reference_outputs_are_computed_once_and_reused(tmp_path):
    spec = registry.get("efficient3dcnn")
    weights = stages.load_weights(spec, None)
    built = []

    def network():
        built.append(1)
        return stages.torch_network(spec, "smoke", weights)

    samples = list(stages.open_dataset(spec, "smoke", None, tmp_path))[:2]
    first = stages.reference_pass(spec, "smoke", weights, network, samples, tmp_path, batch_size=2)
    again = stages.reference_pass(spec, "smoke", weights, network, samples, tmp_path, batch_size=1)
    assert len(built) == 1 and first.computed == 2 and again.computed == 0, (
        "another run, backend or batch size must reuse the cached reference")
    for sample in samples:
        np.testing.assert_array_equal(first.store.get(sample.id)["class"], again.store.get(sample.id)["class"])
    samples[0].inputs["image"] = samples[0].inputs["image"] + 1.0  # other inputs: another key
    changed = stages.reference_pass(spec, "smoke", weights, network, samples, tmp_path)
    assert changed.computed == 1 and first.metrics.keys() == changed.metrics.keys()


def test_batches_pad_the_last_batch_with_its_last_sample():
    from harness.spec import Sample

    samples = [Sample(str(i), {"x": np.full((2,), i, np.float32)}, None) for i in range(3)]
    got = list(outputs.batches(samples, 2, ["x"]))
    assert [len(group) for group, _ in got] == [2, 1]
    np.testing.assert_array_equal(got[1][1]["x"], [[2, 2], [2, 2]])


def test_the_network_key_covers_the_protocol_and_the_code_it_imports(tmp_path, monkeypatch):
    """GMA builds its network from protocol['iters']; FlowNet2 and GMA import harness/sintel.py:
    a change to either must reach the ONNX and the reference outputs' keys."""
    import dataclasses

    from harness import cache

    spec = registry.get("gma")
    weights = stages.load_weights(spec, None)
    key = stages.network_key(spec, "smoke", weights)
    smoke = spec.profile("smoke")
    fewer_iters = dataclasses.replace(smoke, protocol={**smoke.protocol, "iters": smoke.protocol["iters"] - 1})
    fewer = dataclasses.replace(spec, profiles={**spec.profiles, "smoke": fewer_iters})
    assert stages.network_key(fewer, "smoke", weights) != key
    assert "harness/sintel.py" in {str(p.relative_to(cache.PROJECT_ROOT)) for p in
                                   cache.source_files(stages.model_package(spec))}
