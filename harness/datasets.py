"""A streamed dataset over an index of items, shared by every model's reader.

A reader lists the items its dataset's own index names (a split file, a folder scan), and
gives a function that turns one item into samples. :class:`IndexedDataset` streams them,
counts what was read, records each item that was missing or failed (by name, with the
reason) instead of dropping it, and says whether the run saw the whole dataset.

With :meth:`IndexedDataset.preprocessed`, items are decoded in worker processes ahead of the
consumer (at most ``2 x workers`` items in flight, in index order) and stored in a
:class:`~harness.samples_cache.SampleCache`, so that each item is decoded once ever for the same
files and preprocessing; later passes map the stored tensors. ``load`` must then be picklable
(a module-level function or a ``functools.partial`` of one).
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from tqdm import tqdm

from harness import samples_cache
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


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per worker count, kept for the process: later passes find it started.

    forkserver, not fork: the parent holds runtime thread pools (PyTorch, ONNX Runtime,
    OpenVINO) that a forked child would inherit mid-state.
    """
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("forkserver"),
            initializer=samples_cache.init_worker)
    return _POOLS[workers]


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown(cancel_futures=True)
    _POOLS.clear()


class IndexedDataset:
    def __init__(
        self,
        root: Path,
        items: Sequence[Item],
        load: Callable[[Item], Iterable[Sample]],
        limit: int | None = None,
        generated: bool = False,
    ):
        self.root = Path(root)
        self.items = list(items)
        self._load = load
        self.limit = limit
        self.generated = generated
        self.cache: SampleCache | None = None
        self.workers = 0
        self.read: int = 0
        self.samples: int = 0
        self.decoded: int = 0  # items this pass decoded (not found in the cache)
        self.missing: list[str] = []
        self.failed: dict[str, str] = {}

    def preprocessed(self, cache: SampleCache | None, workers: int | None = None) -> "IndexedDataset":
        """Decode with ``workers`` processes (default: every core; 0: in this process) ahead of
        the consumer, storing each item's samples in ``cache`` (None: no cache). Returns self."""
        self.cache = cache
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        return self

    def __iter__(self) -> Iterator[Sample]:
        self.read, self.samples, self.decoded, self.missing, self.failed = 0, 0, 0, [], {}
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
                    yield from self._finish(*pending.popleft())
                    progress.update()
            while pending:
                yield from self._finish(*pending.popleft())
                progress.update()
        finally:
            for _, _, state in pending:
                if isinstance(state, Future):
                    state.cancel()
            progress.close()

    def _start(self, item: Item) -> tuple[Path | None, str | Future]:
        """(entry, state): missing, already stored, or submitted for decoding (inline when
        workers is 0, so that it runs in this process)."""
        if not item.path.exists():
            return None, "missing"
        entry = self.cache.entry(item, self.root) if self.cache is not None else None
        if entry is not None and samples_cache.is_stored(entry):
            return entry, "stored"
        self.decoded += 1
        if self.workers <= 0:
            future: Future = Future()
            try:
                future.set_result(samples_cache.decode_item(self._load, item, entry))
            except ItemUnreadable as err:
                future.set_exception(err)
        else:
            future = _pool(self.workers).submit(samples_cache.decode_item, self._load, item, entry)
        return entry, future

    def _finish(self, item: Item, entry: Path | None, state: str | Future) -> Iterator[Sample]:
        if state == "missing":
            self.missing.append(item.id)
            return
        produced = None
        if isinstance(state, Future):
            try:
                produced = state.result()
            except ItemUnreadable as err:
                self.failed[item.id] = str(err)
                return
        if produced is None:
            produced = samples_cache.read_entry(entry)
        self.read += 1
        for sample in produced:
            self.samples += 1
            yield sample

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
        return {
            "root": str(self.root),
            "generated": self.generated,
            "listed": len(self.items),
            "limit": self.limit,
            "read": self.read,
            "samples": self.samples,
            "decoded": self.decoded,
            "missing": len(self.missing),
            "missing_names": self.missing[:20],
            "failed": self.failed,
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
