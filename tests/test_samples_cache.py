"""The preprocessed-sample cache and the worker pool behind IndexedDataset: each item decoded
once for the same files and preprocessing, missing and unreadable items recorded as before and
never stored, order kept, look-ahead bounded."""
from __future__ import annotations

import multiprocessing
import os
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from float32_preprocess import FLOAT32_PATH
from harness import cache, cache_budget, samples_cache, stages
from harness.datasets import IndexedDataset, Item, ItemUnreadable
from harness.outputs import batches
from harness.runstate import RunState
from harness.samples_cache import SampleCache
from harness.spec import Sample

KEY = {"model": "fake", "inputs": {"x": (2, 3)}, "protocol": {"scale": 2.0}, "code": "v1"}


def load_counted(item: Item, calls: Path) -> list[Sample]:
    """A reader's load: one line per call appended to ``calls`` (counts across processes)."""
    with open(calls, "a") as f:
        f.write(f"{item.id}\n")
    text = item.path.read_text()
    if text == "corrupt":
        raise ItemUnreadable(f"{item.path}: not a number")
    value = float(text)
    return [Sample(f"{item.id}/{k}", {"x": np.full((2, 3), value + k, np.uint8)}, (item.id, k))
            for k in range(2)]


def load_with_array_target(item: Item) -> list[Sample]:
    flow = np.array([[0.5, -0.0], [np.nan, 3e38]], np.float32)
    return [Sample(item.id, {"x": np.ones((2, 3), np.uint8)}, flow)]


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(5):
        (root / f"item{i}.txt").write_text(str(10 * i))
    (root / "item5.txt").write_text("corrupt")
    items = [Item(f"item{i}", root / f"item{i}.txt", i) for i in range(6)]
    items.insert(2, Item("absent", root / "absent.txt", 99))
    return root, items, tmp_path / "calls.txt", tmp_path / "cache"


def open_fake(tree, workers=0, key=KEY):
    root, items, calls, cache_dir = tree
    dataset = IndexedDataset(root, items, partial(load_counted, calls=calls))
    return dataset.preprocessed(SampleCache(cache_dir, key), workers)


def calls_of(tree) -> list[str]:
    calls = tree[2]
    return calls.read_text().split() if calls.exists() else []


def test_second_pass_decodes_nothing_and_maps_the_same_samples(tree):
    first = open_fake(tree)
    cold = [(s.id, s.inputs["x"].copy(), s.target) for s in first]
    assert first.decoded == 6 and len(calls_of(tree)) == 6  # 5 good + the corrupt one
    second = open_fake(tree)
    warm = list(second)
    # only the unreadable item is read again: a failure is never stored
    assert second.decoded == 1 and calls_of(tree)[6:] == ["item5"]
    assert [(s.id, s.target) for s in warm] == [(i, t) for i, _, t in cold]
    for sample, (_, array, _) in zip(warm, cold):
        assert isinstance(sample.inputs["x"], np.memmap) and not sample.inputs["x"].flags.writeable
        np.testing.assert_array_equal(sample.inputs["x"], array)
    assert second.summary["read"] == first.summary["read"] == 5
    assert second.summary["samples"] == 10


def test_missing_and_unreadable_items_are_recorded_and_never_stored(tree):
    for _ in range(2):
        dataset = open_fake(tree)
        list(dataset)
        assert dataset.missing == ["absent"]
        assert dataset.failed == {"item5": f"{tree[0] / 'item5.txt'}: not a number"}
        assert not dataset.complete
    assert len(list(samples_cache.entries_in(tree[3]))) == 5


@pytest.mark.parametrize("damage", ["flipped bit", "truncated array", "empty index", "lost index", "no digests"])
def test_a_damaged_entry_is_decoded_again_never_used_and_noted(tree, damage):
    first = open_fake(tree)
    cold = [(s.id, s.inputs["x"].copy()) for s in first]
    entry = next(p for p in samples_cache.entries_in(tree[3]) if np.load(p / "0.x.npy")[0, 0] == 10)  # item1
    npy = entry / "0.x.npy"
    if damage == "flipped bit":
        npy.write_bytes(npy.read_bytes()[:-1] + bytes([npy.read_bytes()[-1] ^ 1]))
    elif damage == "truncated array":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "empty index":
        (entry / "samples.pkl").write_bytes(b"")
    elif damage == "lost index":
        (entry / "samples.pkl").unlink()
    else:
        (entry / "digests.json").unlink()
    second = open_fake(tree)
    warm = [(s.id, s.inputs["x"]) for s in second]
    assert [i for i, _ in warm] == [i for i, _ in cold]
    for (_, got), (_, expected) in zip(warm, cold):
        np.testing.assert_array_equal(got, expected)
    assert calls_of(tree)[6:] == ["item1", "item5"]  # the damaged one decoded again (and the unreadable)
    (what, why), = second.summary["rebuilt"].items()
    assert what == "the samples of item1" and why.startswith(f"{entry}: ")
    assert why.endswith({"flipped bit": "0.x.npy does not match the xxh3_128 digest written with it",
                         "truncated array": "0.x.npy does not match the xxh3_128 digest written with it",
                         "empty index": "samples.pkl does not match the xxh3_128 digest written with it",
                         "lost index": "samples.pkl is gone",
                         "no digests": "no xxh3_128 digest recorded with it (written by an earlier version or "
                                       "interrupted)"}[damage])
    third = open_fake(tree)
    list(third)
    assert third.decoded == 1 and not third.summary["rebuilt"], "stored again, intact"


def test_several_batch_sizes_and_backends_decode_each_item_once(tree):
    for batch_size in (1, 4):
        for _backend in ("onnxruntime", "openvino"):  # each evaluation opens the dataset anew
            served = [s.id for group, _ in batches(open_fake(tree), batch_size, ["x"]) for s in group]
            assert len(served) == 10
    decoded = calls_of(tree)
    assert sorted(set(decoded)) == [f"item{i}" for i in range(6)]
    assert decoded.count("item0") == 1 and decoded.count("item5") == 4  # unreadable: every pass


def test_a_changed_file_or_preprocessing_is_decoded_again(tree):
    list(open_fake(tree))
    item1 = tree[0] / "item1.txt"
    item1.write_text("11")  # new size and mtime
    dataset = open_fake(tree)
    values = {s.id: float(s.inputs["x"][0, 0]) for s in dataset}
    assert values["item1/0"] == 11.0 and dataset.decoded == 2  # item1 and the unreadable item5
    other = open_fake(tree, key={**KEY, "protocol": {"scale": 3.0}})
    list(other)
    assert other.decoded == 6


def test_workers_keep_the_index_order_and_the_records(tree):
    inline = [(s.id, s.inputs["x"].copy()) for s in open_fake(tree, workers=0, key={**KEY, "code": "a"})]
    pooled_dataset = open_fake(tree, workers=2, key={**KEY, "code": "b"})
    pooled = [(s.id, np.asarray(s.inputs["x"])) for s in pooled_dataset]
    assert [i for i, _ in pooled] == [i for i, _ in inline]
    for (_, a), (_, b) in zip(pooled, inline):
        np.testing.assert_array_equal(a, b)
    assert pooled_dataset.missing == ["absent"] and list(pooled_dataset.failed) == ["item5"]
    assert pooled_dataset.decoded == 6 and len(calls_of(tree)) == 12


def test_workers_without_a_cache_stream_the_samples_back(tree):
    root, items, calls, _ = tree
    dataset = IndexedDataset(root, items, partial(load_counted, calls=calls)).preprocessed(None, 2)
    assert [s.id for s in dataset][:3] == ["item0/0", "item0/1", "item1/0"]
    assert dataset.decoded == 6 and dataset.read == 5


def test_look_ahead_is_bounded_by_the_workers(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    items = []
    for i in range(40):
        (root / f"{i}.txt").write_text(str(i))
        items.append(Item(str(i), root / f"{i}.txt"))
    calls = tmp_path / "calls.txt"
    dataset = IndexedDataset(root, items, partial(load_counted, calls=calls))
    stream = iter(dataset.preprocessed(SampleCache(tmp_path / "cache", KEY), workers=2))
    next(stream)
    assert dataset.decoded <= 2 * 2 + 1, "decoding must run at most 2 x workers items ahead"
    stream.close()


def test_array_targets_are_stored_integers_mapped_floats_compressed(tmp_path):
    """Integer arrays come back memory-mapped; float arrays (no integer stage) losslessly
    compressed, bit for bit, NaN and signed zero included."""
    (tmp_path / "a.txt").write_text("x")
    items = [Item("a", tmp_path / "a.txt")]
    flow = np.array([[0.5, -0.0], [np.nan, 3e38]], np.float32)
    for _ in range(2):
        dataset = IndexedDataset(tmp_path, items, load_with_array_target).preprocessed(
            SampleCache(tmp_path / "cache", KEY), 0)
        (sample,) = list(dataset)
        assert sample.target.tobytes() == flow.tobytes() and sample.target.shape == (2, 2)
    assert isinstance(sample.inputs["x"], np.memmap) and dataset.decoded == 0
    (entry,) = samples_cache.entries_in(tmp_path / "cache")
    assert sorted(p.suffix for p in entry.iterdir()) == [".json", ".npy", ".pkl", ".zlib"]  # .json: digests


def test_identity_covers_every_file_of_a_frame_folder_and_the_meta_paths(tmp_path):
    folder = tmp_path / "video"
    folder.mkdir()
    (folder / "image_00001.jpg").write_bytes(b"a")
    (folder / "n_frames").write_text("1")
    flo = tmp_path / "gt.flo"
    flo.write_bytes(b"abc")
    cache = SampleCache(tmp_path / "cache", KEY)
    item = Item("video", folder, (flo, 3))
    before = cache.entry(item, tmp_path)
    assert [name for name, _, _ in samples_cache.file_identity(item, tmp_path)] == [
        "video/image_00001.jpg", "video/n_frames", "gt.flo"]
    (folder / "image_00002.jpg").write_bytes(b"b")
    assert cache.entry(item, tmp_path) != before, "a frame added to the folder must change the key"
    assert cache.entry(Item("video", folder, (tmp_path / "absent.flo", 3)), tmp_path) is None


def test_concurrent_writers_of_one_entry_leave_one_valid_entry(tmp_path):
    entry = tmp_path / "cache" / "ab" / "abcd"
    samples = [Sample("s", {"x": np.zeros((2, 2), np.uint8)}, 1)]
    samples_cache.write_entry(entry, samples)
    samples_cache.write_entry(entry, [Sample("s", {"x": np.ones((2, 2), np.uint8)}, 1)])  # lost race
    (stored,) = samples_cache.read_entry(entry)
    assert stored.target == 1 and float(stored.inputs["x"].sum()) == 0.0
    assert not any((tmp_path / "cache" / ".tmp").iterdir())


def test_temporary_folders_of_dead_processes_are_removed(tmp_path):
    tmp = tmp_path / "cache" / ".tmp"
    tmp.mkdir(parents=True)
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a pid that surely is not running any more
    (tmp / f"abcd.{child}").mkdir()
    (tmp / f"efgh.{os.getpid()}").mkdir()  # a live writer's folder stays
    SampleCache(tmp_path / "cache", KEY)
    assert [p.name for p in tmp.iterdir()] == [f"efgh.{os.getpid()}"]




# --- the compact store: the last integer stage, finished on read -------------------------------

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _assert_identical(got: Sample, expected: Sample) -> None:
    assert got.id == expected.id and list(got.inputs) == list(expected.inputs)
    for name, array in expected.inputs.items():
        assert got.inputs[name].dtype == np.float32 and got.inputs[name].shape == array.shape
        assert np.array_equal(got.inputs[name], array), (
            f"{got.id}/{name}: max |diff| {np.abs(got.inputs[name] - array).max()}, expected 0")
    if isinstance(expected.target, np.ndarray):
        assert got.target.dtype == expected.target.dtype and np.array_equal(got.target, expected.target)
    else:
        assert got.target == expected.target


@pytest.mark.parametrize("source,profile", [("generated", "smoke"), ("real", "smoke"), ("real", "full")])
def test_stored_samples_are_compact_and_finish_bit_identical_to_the_float32_path(
        model, source, profile, suite_cache, tmp_path):
    """Each item is stored at its last integer stage (uint8 pixels; a float target compressed),
    and the samples served cold and warm equal the whole-float32 preprocessing exactly."""
    legacy = FLOAT32_PATH.get(model.name)
    if legacy is None:
        pytest.skip(f"{model.name} came after the float32 cache: no earlier path to compare with")
    if source == "real":
        root = SHARED_DATA / model.dataset_dir
        if not root.is_dir():
            pytest.skip(f"{root} absent")
    else:
        root = stages.generated_dataset_root(model, profile, suite_cache)
    shapes, protocol = model.profile(profile), model.protocol_for(profile)
    dataset = model.open_dataset(root, shapes, protocol, None, source == "generated")
    present = [item for item in dataset.items if item.path.exists()]
    expected = [s for item in present for s in legacy(item, shapes, protocol)]
    assert expected, f"no item of {root} to compare"
    dataset.preprocessed(SampleCache(tmp_path, stages.sample_cache_key(model, profile)), workers=0)
    for decoded in (len(present), 0):
        served = list(dataset)
        assert dataset.decoded == decoded and len(served) == len(expected)
        for got, want in zip(served, expected):
            _assert_identical(got, want)
    # what the float32 cache stored: the inputs and any array target (a frame, a flow) raw
    before = sum(a.nbytes for s in expected for a in [*s.inputs.values(), s.target] if isinstance(a, np.ndarray))
    stored = sum(cache.tree_size(e) for e in samples_cache.entries_in(tmp_path))
    # pixels: a quarter; a float flow compressed about 1.6x (Sintel: 0.34 of before in all)
    assert stored < 0.4 * before, f"stored {stored} bytes where the float32 cache stored {before}"


# --- a dataset larger than the cache's budget ---------------------------------------------------

def load_frame_block(item: Item) -> list[Sample]:
    """A reader's stored form: 20 kB of uint8 pixels per item, derived from the item's number."""
    value = int(item.path.read_text())
    return [Sample(item.id, {"x": np.full((100, 200), value, np.uint8)}, value)]


def to_float(sample: Sample) -> Sample:
    return Sample(sample.id, {"x": sample.inputs["x"].astype(np.float32) / 255}, sample.target)


@pytest.fixture
def twenty_items(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(20):
        (root / f"{i}.txt").write_text(str(i))
    return root, [Item(str(i), root / f"{i}.txt", i) for i in range(20)]


def test_a_dataset_larger_than_the_budget_is_served_whole_and_keeps_what_fits(twenty_items, tmp_path):
    """20 items of 20 kB against a 100 kB budget, decoded ahead by 2 workers: every pass serves
    every sample right and in order; the first pass keeps what fits (the run's own entries are
    not evicted for later ones), the next reads those from the cache and decodes the rest; the
    cache stays within its budget and the summary says how each item was served."""
    root, items = twenty_items
    expected = [to_float(s) for item in items for s in load_frame_block(item)]
    cache_dir = tmp_path / "cache"
    dataset = IndexedDataset(root, items, load_frame_block, finish=to_float).preprocessed(
        SampleCache(cache_dir / "samples" / "m", KEY, cache_dir), workers=2, state=RunState.start(cache_dir, 100_000))
    for _ in range(2):
        served = list(dataset)
        assert [s.id for s in served] == [s.id for s in expected]
        for got, want in zip(served, expected):
            assert np.array_equal(got.inputs["x"], want.inputs["x"]) and got.target == want.target
        assert cache_budget.scan(cache_dir).total <= 100_000
    first, total = dataset.summary["this_pass"], dataset.summary
    kept = len(list(samples_cache.entries_in(cache_dir / "samples" / "m")))
    assert 3 <= kept < 20
    assert first == {"decoded": 20 - kept, "from_cache": kept, "kept": 0, "not_kept": 20 - kept}
    assert (total["decoded"], total["from_cache"], total["kept"], total["not_kept"], total["passes"]) == (
        20 + 20 - kept, kept, kept, 40 - 2 * kept, 2)
    assert total["cache"]["budget_bytes"] == 100_000 and total["cache"]["used_bytes"] <= 100_000


def test_a_full_disk_while_storing_an_item_names_the_cache_and_the_budget(twenty_items, tmp_path, monkeypatch):
    root, items = twenty_items
    cache_dir = tmp_path / "cache"
    state = RunState.start(cache_dir, 5 * 10**9)
    real_save = samples_cache._save

    def disk_fills_up(folder, stem, array):
        real_save(folder, stem, array)  # a part of the entry is written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(samples_cache, "_save", disk_fills_up)
    dataset = IndexedDataset(root, items, load_frame_block, finish=to_float).preprocessed(
        SampleCache(cache_dir / "samples" / "m", KEY, cache_dir), workers=0, state=state)
    with pytest.raises(cache_budget.CacheDiskFull) as err:
        list(dataset)
    message = str(err.value)
    assert str(cache_dir) in message and "5.0 GB budget" in message and "the samples of 0" in message
    assert not list(samples_cache.entries_in(cache_dir / "samples" / "m")), "no entry, whole or partial"
    assert not any((cache_dir / "samples" / "m" / ".tmp").iterdir())


def _private_cache_with_the_models_onnx(spec, suite_cache: Path, private: Path) -> None:
    """The model's ONNX artifacts copied from the suite's cache (content-keyed: the run finds
    them), and its generated dataset: everything but the samples and the reference outputs."""
    weights = stages.load_weights(spec, None)
    exported = stages.exported_onnx(spec, "smoke", weights, lambda: stages.torch_network(spec, "smoke", weights),
                                    suite_cache)
    for artifact in (exported, stages.simplified_onnx(spec, exported, suite_cache)):
        for path in (artifact, artifact.parent / f"{artifact.name[:24]}.key.json"):
            target = private / path.relative_to(suite_cache)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    stages.generated_dataset_root(spec, "smoke", private)


def test_a_run_with_a_small_budget_is_green_holds_it_and_says_what_it_kept(run_suite, suite_cache, tmp_path):
    """Efficient-3DCNNs' 3 generated videos (2, 2 and 3 clips of 192 kB) with room for one: the
    run is green, the cache stays within the budget, and the row and the terminal say what was
    decoded, read from the cache, kept and not kept over the run's two passes."""
    from harness.registry import get

    private = tmp_path / "cache"
    _private_cache_with_the_models_onnx(get("efficient3dcnn"), suite_cache, private)
    budget = cache_budget.scan(private).total + 450_000  # one video's entry and the reference outputs
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy", f"--cache-dir={private}",
                       f"--cache-budget={budget}")
    assert result.ret == 0, result.stdout.str()
    row = next(r for r in result.results["records"] if "accuracy" in r)
    assert row["accuracy"]["verdict"] == "pass"
    data = row["data"]
    # the reference pass decodes all 3 and keeps the first; the deployed pass reads it, decodes 2
    assert {k: data[k] for k in ("passes", "decoded", "from_cache", "kept", "not_kept")} == {
        "passes": 2, "decoded": 5, "from_cache": 1, "kept": 1, "not_kept": 4}, data
    assert data["cache"]["budget_bytes"] == budget and data["cache"]["used_bytes"] <= budget
    assert cache_budget.scan(private).total <= budget
    result.stdout.fnmatch_lines([f"cache {private}: * of a * budget; evicted 0 entries (0 B); dataset items "
                                 "decoded 5, read from the cache 1, kept 1, not kept 4"])


@pytest.mark.parametrize("value", ["lots", "0"])
def test_a_bad_cache_budget_is_a_usage_error_naming_the_option(run_suite, value):
    result = run_suite("--models=efficient3dcnn", f"--cache-budget={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--cache-budget '{value}': *"])


def _pass_in_a_process(root, items, cache_dir, queue):
    dataset = IndexedDataset(root, items, load_frame_block, finish=to_float).preprocessed(
        SampleCache(cache_dir / "samples" / "m", KEY, cache_dir), workers=0, state=RunState.start(cache_dir, 100_000))
    served = [(s.id, float(s.inputs["x"][0, 0]), s.target) for s in dataset]
    queue.put((served, dataset.this_pass.as_dict()))


def test_processes_sharing_a_cache_and_its_budget_each_serve_every_sample(twenty_items, tmp_path):
    """What `pytest -n` does: two processes read one dataset through one cache at once."""
    root, items = twenty_items
    cache_dir = tmp_path / "cache"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_pass_in_a_process, args=(root, items, cache_dir, queue)) for _ in range(2)]
    for process in workers:
        process.start()
    results = [queue.get(timeout=120) for _ in workers]
    for process in workers:
        process.join()
    expected = [(str(i), np.float32(i) / 255, i) for i in range(20)]
    for served, counts in results:
        assert [(i, pytest.approx(v), t) for i, v, t in served] == expected
        assert counts["decoded"] + counts["from_cache"] == 20
    assert cache_budget.scan(cache_dir).total <= 100_000
    assert 1 <= len(list(samples_cache.entries_in(cache_dir / "samples" / "m"))) <= 5
