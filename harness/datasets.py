"""A streamed dataset over an index of items, shared by every model's reader.

A reader lists the items its dataset's own index names (a split file, a folder scan), and
gives a function that turns one item into samples. :class:`IndexedDataset` streams them,
counts what was read, records each item that was missing or failed (by name, with the
reason) instead of dropping it, and says whether the run saw the whole dataset.

A reader's ``load`` returns an item's samples in their stored form: the last integer stage of
the preprocessing (uint8 pixels after resizing and cropping), and its ``finish`` does the float
arithmetic that follows (mean, std, scale), here on read, so that what is stored is compact and
what is served is bit-identical to doing it all at once.

With :meth:`IndexedDataset.preprocessed`, items are decoded in worker processes ahead of the
consumer (at most ``2 x workers`` items in flight, in index order) and stored in a
:class:`~harness.samples_cache.SampleCache`, so that each item is decoded once ever for the same
files and preprocessing; later passes map the stored arrays. ``load`` must then be picklable
(a module-level function or a ``functools.partial`` of one). The cache's disk budget decides
what is kept: an item that does not fit is decoded ahead all the same and served without being
stored, so a dataset larger than the budget is read correctly, its first items from the cache.
"""
from __future__ import annotations

import atexit
import functools
import json
import multiprocessing
import os
from collections import Counter, deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from harness import cache, cache_budget, samples_cache
from harness.digest import DamagedEntry
from harness.runstate import PassCounts, RunState
from harness.samples_cache import SampleCache
from harness.spec import DatasetLayoutError, Sample

# a pass over at least this many items shows a progress bar (on a terminal)
PROGRESS_MIN_ITEMS = 50


@dataclass(frozen=True)
class Item:
    id: str  # the item's name as the dataset names it
    path: Path  # the file or folder it lives in
    meta: object = None  # label, ground-truth path, ... as the reader needs


class ItemUnreadable(Exception):
    """Raised by a reader's ``load`` when one item cannot be read; recorded, not fatal."""


def read_json_index(path: Path) -> tuple[object, Counter]:
    """A json index and the keys it repeats within one object, with how often each appears.

    ``json.loads`` keeps the last of repeated keys without a word: an item listed twice would
    be read once, as whichever entry came last."""
    repeated: Counter = Counter()

    def unique(pairs: list[tuple[str, object]]) -> dict:
        counts = Counter(key for key, _ in pairs)
        repeated.update({key: n for key, n in counts.items() if n > 1})
        return dict(pairs)

    return json.loads(Path(path).read_text(), object_pairs_hook=unique), repeated


def listed_more_than_once(items: Sequence[Item], index: str) -> dict[str, str]:
    """Item id -> why, for each id that the index lists more than once: such an item is left
    out and fails the row (a repeated line would be scored twice, a repeated json key once as
    its last entry), unless accepted by name (--accept-bad-items)."""
    counts = Counter(item.id for item in items)
    return {i: f"listed {n} times in {index}" for i, n in counts.items() if n > 1}


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per worker count, kept for the process (a resource of the process, not of a run:
    it holds no tally): later passes and later runs in the process find it started.

    forkserver, not fork: the parent holds runtime thread pools (PyTorch, ONNX Runtime,
    OpenVINO) that a forked child would inherit mid-state.
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=samples_cache.init_worker)
    atexit.register(pool.shutdown, cancel_futures=True)
    return pool


class IndexedDataset:
    def __init__(
        self,
        root: Path,
        items: Sequence[Item],
        load: Callable[[Item], Iterable[Sample]],
        limit: int | None = None,
        generated: bool = False,
        finish: Callable[[Sample], Sample] | None = None,
        index: str = "the dataset's index",
    ):
        self.root = Path(root)
        # an item the index lists more than once is left out, failed by name
        self.repeated = listed_more_than_once(items, index)
        self.items = [item for item in items if item.id not in self.repeated]
        self._load = load
        self._finish_sample = finish
        self.limit = limit
        self.generated = generated
        self.cache: SampleCache | None = None
        self.budget: cache_budget.CacheBudget | None = None
        self.served: PassCounts | None = None  # the run's tally every pass adds to
        self.workers = 0
        self.read: int = 0
        self.samples: int = 0
        self.passes: int = 0
        self.this_pass = PassCounts()
        self.total = PassCounts()  # over every pass of this dataset in this process
        self.missing: list[str] = []
        self.failed: dict[str, str] = {}
        self.rebuilt: dict[str, str] = {}  # damaged cache entries rebuilt in this run: what -> why
        self._entry_bytes: list[int] = []  # sizes of this dataset's entries, to size the next
        self._reserved: dict[Path, int] = {}  # what the budget admitted for entries in flight

    @property
    def decoded(self) -> int:
        """Items this pass decoded."""
        return self.this_pass.decoded

    def finish(self, sample: Sample) -> Sample:
        """A sample in its stored form -> what the network takes (the reader's float step)."""
        return self._finish_sample(sample) if self._finish_sample is not None else sample

    def preprocessed(self, cache: SampleCache | None, workers: int | None = None,
                     state: RunState | None = None) -> "IndexedDataset":
        """Decode with ``workers`` processes (default: every core; 0: in this process) ahead of
        the consumer, storing each item's samples in ``cache`` (None: no cache) within the run's
        budget (``state``; without a run, a budget of the cache's own), every pass tallied in the
        run's ``state``. Returns self."""
        self.cache = cache
        if cache is not None:
            self.budget = state.budget if state is not None else cache_budget.CacheBudget(Path(cache.cache_dir).resolve())
        self.served = state.served if state is not None else None
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        return self

    def __iter__(self) -> Iterator[Sample]:
        self.read, self.samples, self.missing, self.failed = 0, 0, [], dict(self.repeated)
        self.this_pass = PassCounts()
        self.passes += 1
        items = self.items[: self.limit] if self.limit else self.items
        pending: deque = deque()  # (item, entry or None, "missing" | "stored" | Future)
        ahead = max(1, 2 * self.workers)
        progress = tqdm(total=len(items), unit="item", desc=f"preprocessing {self.root.name}",
                        leave=False, disable=None if len(items) >= PROGRESS_MIN_ITEMS else True)
        try:
            queued = iter(items)
            for item in queued:
                pending.append((item, *self._start(item)))
                while pending and (len(pending) >= ahead or not isinstance(pending[0][2], Future)
                                   or pending[0][2].done()):
                    yield from self._yield_item(*pending.popleft())
                    progress.update()
            while pending:
                yield from self._yield_item(*pending.popleft())
                progress.update()
        finally:
            for _, entry, state in pending:
                if isinstance(state, Future):
                    state.cancel()
                if entry is not None:
                    cache_budget.unpin(entry)
                    self.budget.release(self._reserved.pop(entry, 0))
            progress.close()
            self.total.add(self.this_pass)
            if self.served is not None:
                self.served.add(self.this_pass)

    def _start(self, item: Item) -> tuple[Path | None, str | Future]:
        """(entry, state): missing, already stored (and pinned until read), or submitted for
        decoding (inline when workers is 0, so that it runs in this process); entry is None when
        the item is not to be stored."""
        if not item.path.exists():
            return None, "missing"
        entry = self.cache.entry(item, self.root) if self.cache is not None else None
        if entry is not None and samples_cache.is_stored(entry) and cache_budget.pin(entry):
            cache_budget.touch(entry)
            return entry, "stored"
        if entry is not None:
            expected = self._expected_entry_bytes()
            if self.budget.admit(expected):
                self._reserved[entry] = expected
            else:
                entry = None  # decoded for this pass, not kept
                self.this_pass.not_kept += 1
        return entry, self._submit(item, entry)

    def _submit(self, item: Item, entry: Path | None) -> Future:
        self.this_pass.decoded += 1
        if self.workers > 0:
            return _pool(self.workers).submit(samples_cache.decode_item, self._load, item, entry)
        future: Future = Future()
        try:
            future.set_result(samples_cache.decode_item(self._load, item, entry))
        except (ItemUnreadable, OSError) as err:
            future.set_exception(err)
        return future

    def _expected_entry_bytes(self) -> int:
        sizes = self._entry_bytes[-20:]
        return sum(sizes) // len(sizes) if sizes else 0

    def _yield_item(self, item: Item, entry: Path | None, started: str | Future) -> Iterator[Sample]:
        """One queued item's samples, each in the network's form (or the item counted missing or failed)."""
        if started == "missing":
            self.missing.append(item.id)
            return
        try:
            produced = self._served(item, entry, started)
        except ItemUnreadable as err:
            self.failed[item.id] = str(err)
            return
        self.read += 1
        for sample in produced:
            self.samples += 1
            yield self.finish(sample)

    def _served(self, item: Item, entry: Path | None, state: str | Future) -> list[Sample]:
        """The item's samples in their stored form, counted by where they came from."""
        if not isinstance(state, Future):
            try:
                samples = samples_cache.read_entry(entry)
            except DamagedEntry as damage:
                return self._rebuild(item, entry, str(damage))
            finally:
                cache_budget.unpin(entry)
            self.this_pass.from_cache += 1
            return samples
        try:
            produced = state.result()
        except (ItemUnreadable, OSError) as err:
            if entry is not None:
                self.budget.release(self._reserved.pop(entry, 0))
            if cache.is_disk_full(err) and self.budget is not None:
                raise self.budget.disk_full(err, f"the samples of {item.id}") from err
            raise
        if entry is None:
            return produced
        within = self.budget.charge(produced, reserved=self._reserved.pop(entry, 0), only="samples")
        self._entry_bytes.append(produced)
        if not cache_budget.pin(entry):  # evicted meanwhile: decode it again here
            self.this_pass.decoded += 1
            return list(self._load(item))
        try:
            samples = samples_cache.read_entry(entry)  # memory-mapped: readable after a discard
        except DamagedEntry as damage:  # damaged between its write and this read
            return self._rebuild(item, entry, str(damage))
        finally:
            cache_budget.unpin(entry)
        if within:
            self.this_pass.kept += 1
        else:  # larger than the items before it: the budget holds, this one is not kept
            self.budget.discard(entry)
            self.this_pass.not_kept += 1
        return samples

    def _rebuild(self, item: Item, entry: Path, why: str) -> list[Sample]:
        """A damaged entry is never used: removed, the item decoded again here and stored anew
        (unless another process still holds the damaged one), and the rebuild noted."""
        self.note_rebuilt(f"the samples of {item.id}", why)
        cache_budget.unpin(entry)
        self.budget.discard(entry)
        self.this_pass.decoded += 1
        samples = list(self._load(item))
        if not entry.exists():
            self.budget.charge(samples_cache.write_entry(entry, samples), only="samples")
        return samples

    def note_rebuilt(self, what: str, why: str) -> None:
        """A damaged cache entry behind this dataset's rows was rebuilt (the rows say so)."""
        self.rebuilt[what] = why

    @property
    def complete(self) -> bool:
        return (
            not self.generated
            and self.read == len(self.items)
            and not self.missing
            and not self.failed
        )

    @property
    def summary(self) -> dict:
        """What was read, missing and failed; how the items were served, this pass and over
        every pass of the run (``decoded``, ``from_cache``, ``kept``, ``not_kept``: cumulative);
        and the cache's budget report."""
        return {
            "root": str(self.root),
            "generated": self.generated,
            "listed": len(self.items),
            "limit": self.limit,
            "read": self.read,
            "samples": self.samples,
            "passes": self.passes,
            **self.total.as_dict(),
            "this_pass": self.this_pass.as_dict(),
            "cache": self.budget.report() if self.budget is not None else None,
            "missing": len(self.missing),
            "missing_names": self.missing[:20],
            "failed": self.failed,
            "rebuilt": dict(self.rebuilt),
            "complete": self.complete,
        }


def require_layout(root: Path, required: Iterable[str], layout: str) -> None:
    """Raise a DatasetLayoutError naming what is absent and showing the expected tree."""
    root = Path(root)
    absent = [r for r in required if not (root / r).exists()]
    if absent:
        raise DatasetLayoutError(
            f"{root}: not the expected dataset layout; missing {', '.join(absent)}.\n"
            f"Expected:\n{layout}"
        )
