"""Digests of what the suite stores and reads back: written with an entry, verified on read.

A cached entry (a preprocessed item, a PyTorch reference output, a built artifact) feeds a
verdict the next time it is read; a flipped bit or a truncated file would change it silently, or
end in a raw ``EOFError`` deep in a loader. Each writer records a digest of what it wrote; each
reader checks it first (:func:`problem`) and treats a mismatch as a damaged entry: removed and
rebuilt, and said so in the row.

xxHash's XXH3-128 (the ``xxhash`` package): tens of GB/s, so checking an entry costs far less
than reading it from disk. It guards against damage, not against a forger; the cache is this
suite's own.
"""
from __future__ import annotations

from pathlib import Path

import xxhash

_CHUNK = 1 << 22
ALGORITHM = "xxh3_128"


class DamagedEntry(Exception):
    """A stored entry whose content is not what was written: named with the file and why."""


def of_file(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def of_tree(path: Path, leave_out: str = "") -> dict[str, str]:
    """Digest of a file (under the name ".", so that it survives a rename) or of every file in a
    folder by relative path, but ``leave_out`` (the file the digests themselves are kept in)."""
    path = Path(path)
    if not path.is_dir():
        return {".": of_file(path)}
    return {str(f.relative_to(path)): of_file(f) for f in sorted(path.rglob("*"))
            if f.is_file() and f.name != leave_out}


def problem(path: Path, recorded: dict[str, str] | None, leave_out: str = "") -> str | None:
    """Why ``path`` (a file or a folder) is not what ``recorded`` (:func:`of_tree` at write time)
    says, or None when it is."""
    if not recorded:
        return f"{path}: no {ALGORITHM} digest recorded with it (written by an earlier version or interrupted)"
    try:
        found = of_tree(path, leave_out)
    except OSError as err:
        return f"{path}: unreadable ({err})"
    for name, expected in recorded.items():
        what = "its content" if name == "." else name
        if name not in found:
            return f"{path}: {what} is gone"
        if found[name] != expected:
            return f"{path}: {what} does not match the {ALGORITHM} digest written with it"
    extra = sorted(set(found) - set(recorded))
    return f"{path}: {extra[0]} was not written with it" if extra else None
