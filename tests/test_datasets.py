"""Every registered model's reader: the generated default and the real files stream samples
with the profile's input names and shapes, and a wrong layout stops with the expected tree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.spec import DatasetLayoutError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _check_samples(model, samples, profile="smoke"):
    assert samples, f"{model.name}: no samples"
    shapes = model.profile(profile).inputs
    assert len({s.id for s in samples}) == len(samples), "sample ids must be unique"
    for sample in samples:
        assert list(sample.inputs) == list(shapes)
        for name, shape in shapes.items():
            array = sample.inputs[name]
            assert array.shape == tuple(shape) and array.dtype == np.float32, (sample.id, name, array.shape)
            assert np.isfinite(array).all(), (sample.id, name)


def test_generated_default_streams_profile_shaped_samples(model, reference_pipeline):
    dataset = reference_pipeline.dataset(model)
    samples = list(dataset)
    _check_samples(model, samples, reference_pipeline.config.profile)
    summary = dataset.summary
    assert summary["generated"] and not summary["missing"] and not summary["failed"]
    assert not dataset.complete, "generated data never satisfies the published gate"


def test_wrong_layout_shows_the_expected_tree(model, tmp_path):
    (tmp_path / "unrelated.txt").write_text("not a dataset")
    with pytest.raises(DatasetLayoutError) as err:
        list(model.open_dataset(tmp_path, model.profile("smoke"), model.protocol_for("smoke"), None, False))
    message = str(err.value)
    assert str(tmp_path) in message
    first_line = next(line for line in model.dataset_layout.splitlines() if line.strip())
    assert first_line.strip() in message, f"the message should show the expected tree:\n{message}"


def test_real_files_read(model):
    root = SHARED_DATA / model.dataset_dir
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    dataset = model.open_dataset(root, model.profile("smoke"), model.protocol_for("smoke"), 1, False)
    _check_samples(model, list(dataset))
    from harness import verdicts
    from harness.checkpoint import Weights

    reason = verdicts.published_not_applicable(model, Weights({}, {"sha256": "x"}), dataset.summary, "full")
    assert reason, "a few test files must not count as the published evaluation set"
