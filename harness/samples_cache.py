"""Preprocessed samples cached on disk, one entry per dataset item, read back memory-mapped.

This is the seeds' ``.bin`` step done once: an item (a video, a frame folder, a Sintel pair) is
decoded and preprocessed the first time any run needs it, and every later pass -- another batch
size, another backend, the next night -- maps the stored tensors instead.

Key of an entry, a sha256 over:

* the dataset-level parts the caller gives (:class:`SampleCache` ``key_parts``): the model, the
  profile's input shapes, the protocol, and :func:`harness.cache.source_hash` of the model's
  package, i.e. the source of its data module and of every project module it imports
  (``harness.sintel``, ``harness.datasets``, ...), so that a change to preprocessing code
  invalidates the entries (see :func:`harness.stages.sample_cache_key`);
* the item: its id, its ``meta`` (label, with paths made relative to the root), and the identity
  of every file it reads: ``item.path`` (a file, or each regular file directly inside a folder of
  frames) and each path in ``item.meta`` (Sintel's second frame and ``.flo``), each as
  (path relative to the root, size, mtime_ns).

File identity is size + modification time, the quick check of make and rsync: hashing the content
would read every byte, the cost the cache exists to avoid. A rewrite that keeps both size and
mtime_ns is not seen; delete ``<cache-dir>/samples`` to force a re-read.

An entry is a folder ``<key>/`` holding each item's samples in the reader's stored form: the last
integer stage of its preprocessing (uint8 pixels after resizing and cropping; the reader's
``finish`` redoes the float arithmetic on read, :class:`~harness.datasets.IndexedDataset`), so an
entry is about a quarter of the float32 tensors. Integer arrays are ``.npy`` files read back
memory-mapped; float arrays (what has no integer stage, e.g. a ground-truth flow) are stored
losslessly compressed (bytes regrouped by significance, then zlib: 1.6x on Sintel's flow).
``samples.pkl`` names the samples (id, arrays and how each is stored, non-array targets; pickled:
the cache is written by this suite only); ``digests.json`` holds an xxHash digest of every other
file (:mod:`harness.digest`), checked on every read: a damaged entry is removed and its item
decoded again (:class:`~harness.datasets.IndexedDataset` says so in the row). It is written in ``.tmp/`` and renamed into place
(:func:`harness.cache.atomic_write`), so concurrent ``pytest -n`` workers and killed runs never
leave a partial entry under its final name; the temporary folders of dead processes are removed
when a cache is opened. Only items that loaded are stored: a missing or unreadable item is never
an entry. Entries count against the cache's budget (:mod:`harness.cache_budget`).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness import digest
from harness.cache import atomic_write, tree_size
from harness.cache_budget import pid_alive
from harness.digest import DamagedEntry
from harness.spec import Sample

_INDEX = "samples.pkl"
_DIGESTS = "digests.json"  # harness.digest.of_tree of every other file, written with them
_TMP = ".tmp"
_TARGET = "__target__"  # file name part of an array target, never an ONNX input name here
_PROJECT_PACKAGES = ("harness", "models")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _meta_paths(meta: Any) -> list[Path]:
    if isinstance(meta, Path):
        return [meta]
    if isinstance(meta, (tuple, list)):
        return [p for m in meta for p in _meta_paths(m)]
    return []


def _canonical_meta(meta: Any, root: Path) -> Any:
    if isinstance(meta, Path):
        return _relative(meta, root)
    if isinstance(meta, (tuple, list)):
        return [_canonical_meta(m, root) for m in meta]
    return meta


def file_identity(item, root: Path) -> list[tuple[str, int, int]] | None:
    """(relative path, size, mtime_ns) of each file the item reads, or None when one of them
    cannot be stat'ed (the reader then reports the item as it would without a cache)."""
    files: list[Path] = []
    try:
        if item.path.is_dir():
            files += sorted(p for p in Path(item.path).iterdir() if p.is_file())
        else:
            files.append(Path(item.path))
        files += _meta_paths(item.meta)
        stats = [(f, f.stat()) for f in files]
    except OSError:
        return None
    return [(_relative(f, root), s.st_size, s.st_mtime_ns) for f, s in stats]


class SampleCache:
    """The entries of one dataset under one preprocessing, in ``directory``.

    ``key_parts`` is what determines the preprocessing besides the item itself
    (:func:`harness.stages.sample_cache_key`); ``cache_dir`` is the cache whose budget the
    entries count against (default: ``directory`` itself).
    """

    def __init__(self, directory: Path, key_parts: Mapping[str, Any], cache_dir: Path | None = None):
        self.directory = Path(directory)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.directory
        self._prefix = json.dumps(key_parts, sort_keys=True, default=str)
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        tmp = self.directory / _TMP
        if not tmp.is_dir():
            return
        for leftover in tmp.iterdir():
            pid = leftover.name.rsplit(".", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)

    def entry(self, item, root: Path) -> Path | None:
        """Where this item's samples are (or will be) stored; None when its files cannot be
        identified, so that it is read without the cache."""
        identity = file_identity(item, Path(root))
        if identity is None:
            return None
        text = json.dumps([self._prefix, item.id, _canonical_meta(item.meta, Path(root)), identity],
                          default=str)
        key = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self.directory / key[:2] / key


def is_stored(entry: Path) -> bool:
    """An entry's folder is renamed into place whole: one under its final name was stored, and
    what it lacks now (a lost index, a truncated file) is damage that :func:`read_entry` names."""
    return entry.is_dir()


_NPY, _ZLIB = "npy", "zlib"


def _save(folder: Path, stem: str, array: np.ndarray) -> str:
    """Store one array: integers as .npy (memory-mapped on read), floats compressed."""
    array = np.ascontiguousarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        np.save(folder / f"{stem}.npy", array, allow_pickle=False)
        return _NPY
    # a float's bytes of equal significance side by side: sign and exponent bytes repeat, and
    # zlib finds them (1.6x on Sintel's flow, against 1.1x on the interleaved bytes)
    planes = np.ascontiguousarray(array.reshape(-1).view(np.uint8).reshape(-1, array.itemsize).T)
    header = pickle.dumps((array.dtype.str, array.shape))
    (folder / f"{stem}.zlib").write_bytes(len(header).to_bytes(4, "little") + header
                                          + zlib.compress(planes.tobytes(), 1))
    return _ZLIB


def _load(folder: Path, stem: str, storage: str) -> np.ndarray:
    if storage == _NPY:
        return np.load(folder / f"{stem}.npy", mmap_mode="r")
    raw = (folder / f"{stem}.zlib").read_bytes()
    length = int.from_bytes(raw[:4], "little")
    dtype, shape = pickle.loads(raw[4:4 + length])
    dtype = np.dtype(dtype)
    planes = np.frombuffer(zlib.decompress(raw[4 + length:]), np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(shape)


def write_entry(entry: Path, samples: Sequence[Sample]) -> int:
    """Store samples under ``entry`` atomically (a concurrent writer of the same entry wins);
    returns the bytes the entry takes."""
    def write(tmp: Path) -> None:
        tmp.mkdir()
        index = []
        for k, sample in enumerate(samples):
            stored = {name: _save(tmp, f"{k}.{name}", array) for name, array in sample.inputs.items()}
            array_target = isinstance(sample.target, np.ndarray)
            target = _save(tmp, f"{k}.{_TARGET}", sample.target) if array_target else sample.target
            index.append((sample.id, stored, array_target, target))
        with open(tmp / _INDEX, "wb") as f:
            pickle.dump(index, f, protocol=pickle.HIGHEST_PROTOCOL)
        (tmp / _DIGESTS).write_text(json.dumps(digest.of_tree(tmp, leave_out=_DIGESTS)))

    atomic_write(entry, write, entry.parent.parent / _TMP / f"{entry.name}.{os.getpid()}")
    return tree_size(entry)


def read_entry(entry: Path) -> list[Sample]:
    """The stored samples: integer arrays memory-mapped read-only, float arrays decompressed,
    after checking every file against the digests written with them; a damaged entry (a flipped
    bit, a truncated or missing file) raises :class:`~harness.digest.DamagedEntry` naming it."""
    try:
        recorded = json.loads((entry / _DIGESTS).read_text())
    except (OSError, ValueError):
        recorded = None
    why = digest.problem(entry, recorded, leave_out=_DIGESTS)
    if why is not None:
        raise DamagedEntry(why)
    return _read_index(entry)


def _read_index(entry: Path) -> list[Sample]:
    with open(entry / _INDEX, "rb") as f:
        index = pickle.load(f)
    samples = []
    for k, (sample_id, stored, array_target, target) in enumerate(index):
        inputs = {n: _load(entry, f"{k}.{n}", storage) for n, storage in stored.items()}
        if array_target:
            target = _load(entry, f"{k}.{_TARGET}", target)
        samples.append(Sample(sample_id, inputs, target))
    return samples


def decode_item(load, item, entry: Path | None) -> list[Sample] | int:
    """Run a reader's ``load`` on one item (in a worker process or inline).

    With an entry, the samples are stored there and the entry's size in bytes is returned (the
    caller maps them, so that no tensor is pickled between processes); without, the samples
    are returned (in their stored form).
    """
    samples = list(load(item))
    if entry is None:
        return samples
    return write_entry(entry, samples)


def init_worker() -> None:
    """Initializer of a preprocessing worker process: one thread each, the pool uses every core."""
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass


def entries_in(directory: Path) -> Iterable[Path]:
    """Every stored entry of a cache directory (for tests and the benchmark)."""
    return (p.parent for p in Path(directory).glob(f"??/*/{_INDEX}"))
