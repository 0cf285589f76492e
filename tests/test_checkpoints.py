"""Every registered model: an upstream-format checkpoint loads strictly and reproduces the
network; corrupt, text, non-finite, foreign and mismatched files fail naming the file and the
keys; a --weights-dir without the model's file fails naming what it holds instead."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from harness import checkpoint
from harness.spec import CheckpointError
from upstream_checkpoints import upstream_payload


def _upstream_file(spec, state_dict: dict, path):
    """Write ``state_dict`` the way the upstream project saves it (nesting, prefix, the entries
    its training code stores beside the weights: tests/upstream_checkpoints.py)."""
    torch.save(upstream_payload(spec.name, spec.checkpoint, state_dict), path)
    return path


@pytest.fixture(scope="module")
def seeded_networks():
    return {}


def _seeded(spec, cache):
    if spec.name not in cache:
        cache[spec.name] = checkpoint.build_network(spec, "smoke", checkpoint.seeded_weights())
    return cache[spec.name]


def test_upstream_key_and_parameter_counts(model, seeded_networks):
    # every card declares upstream's counts: they are what makes a seeded network upstream's
    assert model.checkpoint.keys and model.checkpoint.parameters
    net = _seeded(model, seeded_networks)
    assert len(net.state_dict()) == model.checkpoint.keys
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


@pytest.mark.parametrize("prefix", ["matching", "other", None])
def test_sha256_prefix_in_the_name_decides_the_published_gate(model, tmp_path, prefix):
    """Where the published file name carries its sha256 prefix, a different file under that name
    still loads but the published gate says why it does not apply; without a prefix, any file
    with the right keys counts as the published checkpoint. (The verdict reads the file's
    provenance only, so a two-tensor file in the upstream format stands for the whole.)"""
    from harness import published
    from harness.cache import file_sha256

    path = _upstream_file(model, {"w": torch.ones(3), "b": torch.zeros(1)}, tmp_path / model.checkpoint.filename)
    sha = file_sha256(path)
    declared = {"matching": sha[:8], "other": "0" * 8 if sha[0] != "0" else "f" * 8, None: None}[prefix]
    spec = dataclasses.replace(model, checkpoint=dataclasses.replace(model.checkpoint, sha256_prefix=declared))
    weights = checkpoint.load_checkpoint(spec, path)
    whole = {"complete": True, "listed": spec.published_items}
    reason = published.published_not_applicable(spec, weights, whole, "full")
    if prefix == "other":
        assert weights.provenance["sha256_matches_name"] is False and not weights.published_file
        assert f"does not start with {declared}: not the published file" in reason
    else:
        assert weights.provenance.get("sha256_matches_name", True) is True and weights.published_file
        assert reason is None


def test_python_objects_refused_by_safe_loading_are_named(model, tmp_path):
    import argparse

    path = tmp_path / model.checkpoint.filename
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="argparse.Namespace.*re-save the state_dict alone"):
        checkpoint.load_checkpoint(model, path)


def test_text_file_names_the_file_and_what_it_holds(model, tmp_path):
    path = tmp_path / model.checkpoint.filename
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 97\n")
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_checkpoint(model, path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a PyTorch checkpoint: a text file starting 'version https://git-lfs")
    assert f"expected {model.name}'s upstream checkpoint" in message


def test_empty_file_is_named(model, tmp_path):
    path = tmp_path / model.checkpoint.filename
    path.touch()
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint: an empty file"):
        checkpoint.load_checkpoint(model, path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weight_is_refused_at_load_naming_the_tensor(model, tmp_path, bad):
    # the check runs at load, before the keys are matched: two tensors in the upstream format do
    tensor = torch.ones(2, 3)
    tensor[1, 2] = bad
    path = _upstream_file(model, {"first.weight": torch.ones(4), "second.weight": tensor},
                          tmp_path / model.checkpoint.filename)
    nan, inf = (1, 0) if bad != bad else (0, 1)
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_checkpoint(model, path)
    assert str(err.value) == f"{path}: tensor 'second.weight' (2, 3) holds {nan} NaN and {inf} Inf of 6 values; expected finite weights"


def test_the_provenance_records_stored_dtypes_and_notes_half_precision(model, tmp_path):
    full = checkpoint.load_checkpoint(model, _upstream_file(model, {"w": torch.ones(3), "n": torch.tensor(2)},
                                                              tmp_path / "full.pth"))
    assert full.provenance["stored_dtypes"] == {"float32": 1, "int64": 1} and "note" not in full.provenance
    half = checkpoint.load_checkpoint(model, _upstream_file(model, {"w": torch.ones(3, dtype=torch.float16),
                                                                    "b": torch.ones(2, dtype=torch.float16)},
                                                              tmp_path / "half.pth"))
    assert half.provenance["stored_dtypes"] == {"float16": 2}
    assert half.provenance["note"].startswith(
        "half-precision checkpoint (2 tensor(s) as float16), upcast to float32 on load: PyTorch and the deployment "
        "run the same upcast values, so the element-wise tolerances hold as for float32 weights; against a "
        "full-precision original")
    assert "up to 0.00049 relative (float16 rounding)" in half.provenance["note"]


def test_a_half_precision_checkpoint_builds_the_float32_network(model, seeded_networks, tmp_path):
    state = {k: v.half() if v.is_floating_point() else v for k, v in _seeded(model, seeded_networks).state_dict().items()}
    weights = checkpoint.load_checkpoint(model, _upstream_file(model, state, tmp_path / model.checkpoint.filename))
    net = checkpoint.build_network(model, "smoke", weights)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert "half-precision checkpoint" in weights.provenance["note"]


def test_no_weights_dir_means_seeded(model):
    assert checkpoint.find_checkpoint(model, None) is None


def test_weights_dir_with_the_file_finds_it(model, tmp_path):
    (tmp_path / model.checkpoint.filename).write_bytes(b"")
    assert checkpoint.find_checkpoint(model, tmp_path) == tmp_path / model.checkpoint.filename


def test_weights_dir_without_the_file_names_the_near_miss(model, tmp_path):
    near = model.checkpoint.filename.replace(".", "_copy.", 1)  # e.g. a browser's renamed download
    (tmp_path / near).write_bytes(b"")
    (tmp_path / "README.txt").write_text("weights")
    with pytest.raises(CheckpointError) as err:
        checkpoint.find_checkpoint(model, tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / model.checkpoint.filename}: no such file for {model.name}")
    assert f"holds near-miss name(s) {near}" in message


def test_weights_dir_without_the_file_lists_what_it_holds(model, tmp_path):
    (tmp_path / "zzz.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"holds 1 other file\(s\): zzz\.bin"):
        checkpoint.find_checkpoint(model, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"holds nothing \(the directory is empty\)"):
        checkpoint.find_checkpoint(model, empty)


def test_weights_dir_that_is_no_directory_or_empty_is_an_error(model, tmp_path):
    with pytest.raises(CheckpointError, match=rf"--weights-dir {tmp_path / 'absent'}: not a directory"):
        checkpoint.find_checkpoint(model, tmp_path / "absent")
    with pytest.raises(CheckpointError, match="--weights-dir is empty"):
        checkpoint.find_checkpoint(model, "")
