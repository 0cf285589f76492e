"""Content-addressed artifact cache: each artifact is built once, written atomically.

The key is a hash over everything that determines the artifact (checkpoint sha256, spec fields,
shapes, opset, tool versions). A per-key file lock makes concurrent ``pytest -n`` workers build
each artifact once; the others wait and reuse it. The builder writes to a temporary sibling that
is renamed into place, so a crash never leaves a half-written artifact under the final name.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

# Artifacts built by this process, for the report ("a warm rerun converts nothing").
BUILT: list[str] = []


def content_key(parts: Mapping[str, Any]) -> str:
    canonical = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def build_once(
    cache_dir: Path,
    kind: str,
    parts: Mapping[str, Any],
    build: Callable[[Path], None],
    suffix: str = "",
) -> Path:
    """Return the cached artifact for ``parts``, calling ``build(tmp_path)`` only if absent.

    ``build`` writes a file or a directory at the path it is given.
    """
    key = content_key(parts)
    final = Path(cache_dir) / kind / f"{key}{suffix}"
    if final.exists():
        return final
    with _locked(final.parent / f".{key}.lock"):
        if final.exists():  # another worker built it while this one waited
            return final
        tmp = final.parent / f".{key}.tmp{os.getpid()}{suffix}"
        _remove(tmp)
        try:
            build(tmp)
            (final.parent / f"{key}.key.json").write_text(json.dumps(parts, indent=1, sort_keys=True, default=str))
            os.replace(tmp, final)
        except BaseException:
            _remove(tmp)
            raise
    BUILT.append(f"{kind}/{final.name}")
    return final
