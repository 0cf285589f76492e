"""A disk budget for everything under ``--cache-dir``: least-recently-used eviction, pins, reports.

Entries, the units that are evicted whole:

* an artifact of :func:`harness.cache.build_once`: ``<kind>/<key><suffix>`` (its ``<key>.key.json``
  goes with it): ONNX graphs, compiled models, generated datasets, FLOP counts;
* a preprocessed item: ``samples/<model>/<xx>/<key>/`` (:mod:`harness.samples_cache`);
* the PyTorch reference outputs of one network: ``reference/<model>/<key>/``.

Last use is the entry's modification time: every reader touches what it uses (one ``utime``),
so the cache itself is the ledger and any process, or a later night, sees the same order.

What the running session still needs is never evicted:

* pinned entries: a shared ``flock`` on the entry, held while this process uses it (artifacts
  for the process's life, a preprocessed item while it is in flight). The evictor takes the
  lock exclusively without waiting and skips the entry when it cannot; a lock dies with its
  process, so a killed run pins nothing. An entry is renamed away under the exclusive lock, so
  a reader that pins it afterwards finds it gone and rebuilds or re-decodes it;
* the run's working set: entries used since this budget was opened (their time is newer).

A built artifact evicts the least recently used entries of any kind outside those. A new
preprocessed item is stored only when the budget has room after evicting older preprocessed
items (:meth:`CacheBudget.admit`: an artifact costs far more to rebuild than an item to decode,
and the run may need one it has not asked for yet); otherwise it is decoded for this pass and
not kept. So a dataset larger than the budget keeps its first items cached and streams the rest
from the workers, instead of each pass evicting the items the next one needs first; an item
whose entry turns out larger than the room left is removed again once read, so preprocessed
items never take the cache past its budget. Artifacts and the reference outputs a run needs are
kept even beyond it, and the report says so (``over_budget``).

Several processes (``pytest -n``, a second run) share one cache: each keeps its own estimate
(the last scan plus its own writes) and rescans after writing a twentieth of the budget, or
whenever its estimate crosses it; one evicts at a time (a lock file), the others wait, rescan.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

# what a build_once artifact is named: its content key, then a suffix
_ARTIFACT = re.compile(r"^[0-9a-f]{24}(?!\.key\.json$)")
_EVICTED = ".evicted"  # where entries are renamed to before they are removed
_EVICTION_LOCK = ".eviction.lock"
EVICT_TO = 0.9  # an eviction round frees down to this fraction of the budget
RESCAN_AFTER = 0.05  # a process rescans the cache after writing this fraction of the budget
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class CacheDiskFull(OSError):
    """The disk holding the cache is full: named with the cache and its budget."""


def parse_size(text: str) -> int:
    """'40GB', '512MiB', '1.5T', '1000000' -> bytes (K/M/G/T powers of 1000, KiB... of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", str(text), re.IGNORECASE)
    unit = (match and (match[2] or "").lower()) or ""
    if unit and unit not in _UNITS:
        unit = unit.rstrip("b")  # '40GB' -> 'g'
    if not match or unit not in _UNITS:
        raise ValueError(f"{text!r}: expected a size such as 40GB, 512MiB or 1.5T")
    size = int(float(match[1]) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r}: the budget must be larger than 0")
    return size


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"


def default_budget(cache_dir: Path, used: int) -> int:
    """Half of what the cache could occupy: its own size plus the free space of its disk.

    The runner's disk also holds the checkout, the virtual environment, the reports and other
    jobs; half leaves them room, and is derived again each run, so a disk that filled up with
    something else shrinks the cache (oldest entries first) instead of failing the run.
    """
    existing = Path(cache_dir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return max(1, (shutil.disk_usage(existing).free + used) // 2)


# --- pins -----------------------------------------------------------------------------------

_PINS: dict[str, int] = {}  # path -> descriptor holding a shared flock


def pin(path: Path) -> bool:
    """Pin an entry for this process (until :func:`unpin`): True, or False when it is not there
    (absent, or evicted while this process waited for the evictor's lock)."""
    key = str(path)
    if key in _PINS:
        return True
    try:
        fd = os.open(key, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except PermissionError:  # unreadable to this user: nobody here can evict it either
        return os.path.exists(key)
    fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while an evictor renames it away
    try:
        still_there = os.path.samestat(os.fstat(fd), os.stat(key))
    except FileNotFoundError:
        still_there = False
    if not still_there:
        os.close(fd)
        return False
    _PINS[key] = fd
    return True


def unpin(path: Path) -> None:
    fd = _PINS.pop(str(path), None)
    if fd is not None:
        os.close(fd)


def touch(path: Path) -> None:
    """Mark an entry as used now (its place in the least-recently-used order)."""
    try:
        os.utime(path)
    except OSError:  # gone, or a cache this user may read but not write: its order stays
        pass


# --- the scan ---------------------------------------------------------------------------------

def entry_of(relative: tuple[str, ...]) -> tuple[str, ...] | None:
    """The entry a file under the cache belongs to (path parts relative to the cache), or None
    for files that are no entry's (locks, key sidecars, temporaries, the evictor's own)."""
    if not relative or relative[0].startswith("."):
        return None
    if relative[0] == "samples":
        return relative[:4] if len(relative) > 4 and not relative[2].startswith(".") else None
    if relative[0] == "reference":
        return relative[:3] if len(relative) > 3 else None
    for depth, part in enumerate(relative):
        if _ARTIFACT.match(part):
            return relative[:depth + 1]
    return None


@dataclass
class Scan:
    total: int = 0  # bytes of every file under the cache
    entries: dict[tuple[str, ...], int] = field(default_factory=dict)  # entry -> bytes


def scan(cache_dir: Path) -> Scan:
    result = Scan()
    root = Path(cache_dir)
    for folder, _, files in os.walk(root):
        parts = Path(folder).relative_to(root).parts
        for name in files:
            try:
                size = os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while walking
                continue
            result.total += size
            entry = entry_of((*parts, name))
            if entry is not None:
                result.entries[entry] = result.entries.get(entry, 0) + size
    return result


# --- the budget -----------------------------------------------------------------------------

@dataclass
class CacheBudget:
    """The budget of one cache directory in this process. ``limit`` None: :func:`default_budget`."""

    cache_dir: Path
    limit: int | None = None
    since: float = field(default_factory=time.time)  # entries used after this: the run's working set
    used: int = 0  # the estimate: the last scan plus this process's writes and admissions since
    reserved: int = 0  # admitted by this process, not yet charged (possibly not on disk yet)
    written_since_scan: int = 0
    scanned: bool = False
    evicted_entries: int = 0
    evicted_bytes: int = 0
    over_budget: bool = False  # the run's working set and pinned entries alone exceed it

    @property
    def budget(self) -> int:
        if self.limit is None:
            self._ensure_scanned()
            self.limit = default_budget(self.cache_dir, self.used)
        return self.limit

    def _ensure_scanned(self) -> None:
        if not self.scanned:
            self.used, self.written_since_scan, self.scanned = scan(self.cache_dir).total, 0, True

    def charge(self, size: int, reserved: int = 0, only: str | None = None) -> bool:
        """This process stored ``size`` bytes (``reserved`` of them admitted before); evict older
        entries (of the top folder ``only``, see :meth:`enforce`) when that crosses the budget.
        Returns whether the cache is within it."""
        self._ensure_scanned()
        self.used += size - reserved
        self.written_since_scan += size - reserved
        self.reserved -= reserved
        if self.used > self.budget or self.written_since_scan > RESCAN_AFTER * self.budget:
            self.enforce(only=only)
        return self.used <= self.budget

    def release(self, reserved: int) -> None:
        """An admitted entry that was not stored after all (unreadable, cancelled)."""
        self.used -= reserved
        self.written_since_scan -= reserved
        self.reserved -= reserved

    def discard(self, path: Path) -> None:
        """Remove an entry this process stored but the budget cannot hold (unless pinned)."""
        root = Path(self.cache_dir)
        parts = Path(path).relative_to(root).parts
        self.used -= _remove_entry(root, parts, sum(
            f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).is_dir() else 0)

    def admit(self, size: int) -> bool:
        """Whether a new preprocessed item of about ``size`` bytes may be stored (evicting older
        items); if so, the size is reserved until :meth:`charge` says what it took."""
        self._ensure_scanned()
        if self.used + size > self.budget or self.written_since_scan > RESCAN_AFTER * self.budget:
            self.enforce(room=size, only="samples")
            if self.used + size > self.budget:
                return False
        self.used += size
        self.written_since_scan += size
        self.reserved += size
        return True

    def enforce(self, room: int = 0, only: str | None = None) -> None:
        """Rescan, then evict the least recently used entries outside the run's working set that
        no process has pinned, until the cache is at EVICT_TO of the budget (``room`` free).
        ``only``: evict entries of that top folder only (a preprocessed item, decoded again in
        well under a second, never evicts an artifact that took minutes to build and that the
        run may not have asked for yet)."""
        lock = Path(self.cache_dir) / _EVICTION_LOCK
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # one evictor at a time; the others wait, then rescan
            _remove_dead_evictions(Path(self.cache_dir) / _EVICTED)
            found = scan(self.cache_dir)
            # what this process admitted and is still writing counts too (perhaps twice: safe)
            self.used, self.written_since_scan, self.scanned = found.total + self.reserved, 0, True
            target = min(EVICT_TO * self.budget, self.budget - room)
            if self.used > target:
                self._evict(found, target, only)
        self.over_budget = self.used > self.budget

    def _evict(self, found: Scan, target: float, only: str | None) -> None:
        root = Path(self.cache_dir)
        dated = []
        for parts, size in found.entries.items():
            if only is not None and parts[0] != only:
                continue
            try:
                dated.append((os.stat(root.joinpath(*parts)).st_mtime, parts, size))
            except FileNotFoundError:
                continue
        for mtime, parts, size in sorted(dated):
            if self.used <= target or mtime >= self.since:
                break  # the rest is the run's working set
            freed = _remove_entry(root, parts, size)
            if freed:
                self.used -= freed
                self.evicted_entries += 1
                self.evicted_bytes += freed

    def report(self) -> dict:
        """What the run's cache holds against its budget, and what this process evicted."""
        self._ensure_scanned()
        return {"dir": str(self.cache_dir), "budget_bytes": self.budget, "used_bytes": self.used,
                "evicted_entries": self.evicted_entries, "evicted_bytes": self.evicted_bytes,
                "over_budget": self.over_budget}

    def disk_full(self, err: OSError, what: str) -> CacheDiskFull:
        """The error for a write that found the disk full (the temporary is already gone)."""
        free = shutil.disk_usage(self.cache_dir).free if Path(self.cache_dir).exists() else 0
        return CacheDiskFull(
            errno.ENOSPC,
            f"{self.cache_dir}: no space left on the disk while storing {what} ({human(free)} free; "
            f"the cache holds {human(self.used)} of its {human(self.budget)} budget, --cache-budget): "
            f"give a budget the disk can hold, or free space on it")


def _remove_entry(root: Path, parts: tuple[str, ...], size: int) -> int:
    """Remove one entry of ``size`` bytes unless a process has pinned it: lock it exclusively
    without waiting, rename it out of the way under that lock (readers pinning it later find it
    gone), remove it. Returns the bytes freed (0: pinned or gone)."""
    path = root.joinpath(*parts)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    trash = root / _EVICTED / f"{path.name}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # pinned
        trash.parent.mkdir(exist_ok=True)
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return 0
    finally:
        os.close(fd)
    sidecar = path.parent / f"{path.name[:24]}.key.json"
    if parts[0] not in ("samples", "reference") and sidecar.exists():
        size += sidecar.stat().st_size
        sidecar.unlink(missing_ok=True)
    if trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)
    return size


def _remove_dead_evictions(folder: Path) -> None:
    """What an evictor killed between its rename and its removal left ('<name>.<pid>.<ns>')."""
    if not folder.is_dir():
        return
    for leftover in folder.iterdir():
        pid = leftover.name.rsplit(".", 2)[-2] if leftover.name.count(".") >= 2 else ""
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a temporary named after a dead one is an orphan)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
