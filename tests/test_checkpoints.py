"""Every registered model: an upstream-format checkpoint loads strictly and reproduces the
network; corrupt, foreign and mismatched files fail naming the file and the keys."""
from __future__ import annotations

import pytest
import torch

from harness import checkpoint
from harness.spec import CheckpointError


def _upstream_file(spec, state_dict: dict, path):
    """Write ``state_dict`` the way the upstream project saves it (nesting, prefix)."""
    prefix = spec.checkpoint.strip_prefix or ""
    payload = {prefix + k: v for k, v in state_dict.items()}
    if spec.checkpoint.nesting:
        payload = {spec.checkpoint.nesting: payload, "epoch": 1}
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def seeded_networks():
    return {}


def _seeded(spec, cache):
    if spec.name not in cache:
        cache[spec.name] = checkpoint.build_network(spec, "smoke", checkpoint.seeded_weights())
    return cache[spec.name]


def test_upstream_key_and_parameter_counts(model, seeded_networks):
    net = _seeded(model, seeded_networks)
    if model.checkpoint.keys is not None:
        assert len(net.state_dict()) == model.checkpoint.keys
    if model.checkpoint.parameters is not None:
        assert sum(p.numel() for p in net.parameters()) == model.checkpoint.parameters


def test_upstream_format_loads_strictly(model, seeded_networks, tmp_path):
    net = _seeded(model, seeded_networks)
    # perturb so that a silent fall-back to seeded weights would be caught
    state = {k: (v + 0.5 if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    path = _upstream_file(model, state, tmp_path / model.checkpoint.filename)
    weights = checkpoint.load_checkpoint(model, path)
    assert weights.provenance["sha256"] and not weights.seeded
    loaded = checkpoint.build_network(model, "smoke", weights)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_corrupt_file_names_the_file(model, tmp_path):
    path = tmp_path / model.checkpoint.filename
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=model.checkpoint.filename) as err:
        checkpoint.load_checkpoint(model, path)
    assert "expected" in str(err.value)


def test_non_checkpoint_object_is_rejected(model, tmp_path):
    path = tmp_path / model.checkpoint.filename
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="expected"):
        checkpoint.load_checkpoint(model, path)


def test_mismatched_keys_are_listed(model, seeded_networks, tmp_path):
    state = dict(_seeded(model, seeded_networks).state_dict())
    dropped = sorted(state)[0]
    del state[dropped]
    state["head.not_upstream.weight"] = torch.zeros(3)
    path = _upstream_file(model, state, tmp_path / model.checkpoint.filename)
    with pytest.raises(CheckpointError) as err:
        checkpoint.build_network(model, "smoke", checkpoint.load_checkpoint(model, path))
    message = str(err.value)
    assert str(path) in message and dropped in message and "head.not_upstream.weight" in message


def test_sha256_prefix_in_the_name_decides_the_published_gate(model, seeded_networks, tmp_path):
    """Where the published file name carries its sha256 prefix, a different file under that name
    still runs but the published gate says why it does not apply; without a prefix, any file
    with the right keys counts as the published checkpoint."""
    from harness import verdicts

    path = _upstream_file(model, _seeded(model, seeded_networks).state_dict(), tmp_path / model.checkpoint.filename)
    weights = checkpoint.load_checkpoint(model, path)
    checkpoint.build_network(model, "smoke", weights)  # usable either way
    whole = {"complete": True, "listed": model.published_items}
    reason = verdicts.published_not_applicable(model, weights, whole, "full")
    if model.checkpoint.sha256_prefix:
        assert weights.provenance["sha256_matches_name"] is False and not weights.published_file
        assert reason and "not the published file" in reason
    else:
        assert "sha256_matches_name" not in weights.provenance and weights.published_file
        assert reason is None


def test_python_objects_refused_by_safe_loading_are_named(model, tmp_path):
    import argparse

    path = tmp_path / model.checkpoint.filename
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="argparse.Namespace.*re-save the state_dict alone"):
        checkpoint.load_checkpoint(model, path)
