"""Every registered model's reader: the generated default and the real files stream samples
with the profile's input names and shapes, and a wrong layout stops with the expected tree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness import stages
from harness.samples_cache import SampleCache
from harness.spec import DatasetLayoutError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def generated_cache(suite_cache) -> Path:
    """Where the generated defaults are written: the run's own cache."""
    return suite_cache


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


def test_generated_default_streams_profile_shaped_samples(model, generated_cache):
    dataset = stages.open_dataset(model, "smoke", None, generated_cache)
    samples = list(dataset)
    _check_samples(model, samples, "smoke")
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
    from harness import published
    from harness.checkpoint import Weights

    reason = published.published_not_applicable(model, Weights({}, {"sha256": "x"}), dataset.summary, "full")
    assert reason, "a few test files must not count as the published evaluation set"


def test_workers_and_cache_give_the_readers_own_samples(model, generated_cache, tmp_path):
    """Every reader's load is picklable: decoded in 2 worker processes and stored, it yields what
    the reader yields in this process; a second pass maps the stored samples, decoding nothing."""
    profile = "smoke"

    def open_():  # the reader alone, without the suite's cache
        root = stages.generated_dataset_root(model, profile, generated_cache)
        return model.open_dataset(root, model.profile(profile), model.protocol_for(profile), 2, True)

    direct = list(open_())
    key = stages.sample_cache_key(model, profile)
    for decoded in (2, 0):
        dataset = open_().preprocessed(SampleCache(tmp_path, key), workers=2)
        samples = list(dataset)
        assert dataset.summary["decoded"] == decoded and dataset.read == 2
        assert [s.id for s in samples] == [s.id for s in direct]
        for got, expected in zip(samples, direct):
            for name in expected.inputs:
                np.testing.assert_array_equal(got.inputs[name], expected.inputs[name])
            if isinstance(expected.target, np.ndarray):
                np.testing.assert_array_equal(got.target, expected.target)
            else:
                assert got.target == expected.target


def test_an_item_listed_twice_is_left_out_and_failed_by_name(tmp_path):
    from harness.datasets import IndexedDataset, Item, read_json_index

    index = tmp_path / "split.json"
    index.write_text('{"database": {"a": 1, "b": 2, "a": 3}, "labels": ["x"]}')
    parsed, repeated = read_json_index(index)
    assert parsed["database"] == {"a": 3, "b": 2} and repeated == {"a": 2}

    items = [Item(i, tmp_path) for i in ("a", "b", "a", "c", "a")]
    dataset = IndexedDataset(tmp_path, items, lambda item: [item.id], index=str(index))
    assert list(dataset) == ["b", "c"]
    assert dataset.failed == {"a": f"listed 3 times in {index}"} and not dataset.complete
    assert list(dataset) == ["b", "c"] and dataset.summary["failed"] == {"a": f"listed 3 times in {index}"}


def test_a_split_json_repeating_any_other_key_is_refused(tmp_path, suite_cache):
    from harness import registry

    spec = registry.get("efficient3dcnn")
    root = tmp_path / "UCF101"
    spec.generate_dataset(root, spec.profile("smoke"), spec.protocol_for("smoke"))
    annotation = root / spec.protocol_for("smoke")["annotation"]
    annotation.write_text(annotation.read_text().replace('"labels": [', '"labels": ["Archery"], "labels": [', 1))
    with pytest.raises(DatasetLayoutError, match=r"key\(s\) 'labels' repeated within one object; expected each once"):
        spec.open_dataset(root, spec.profile("smoke"), spec.protocol_for("smoke"), None, False)
