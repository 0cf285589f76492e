"""Content-addressed artifact cache: each artifact is built once, written atomically.

The key is a hash over everything that determines the artifact (checkpoint sha256, spec fields,
shapes, opset, tool versions). A per-key file lock makes concurrent ``pytest -n`` workers build
each artifact once; the others wait and reuse it. The builder writes to a temporary sibling that
is renamed into place (:func:`atomic_write`, the one helper every writer of a file or folder that
others may read at any time uses), so a crash never leaves a half-written artifact under the final
name; the temporaries of a killed build are removed by the next build in the same folder. Every
artifact counts against the cache's disk budget (:mod:`harness.cache_budget`): a hit marks it as
used and pins it for this process, a build is charged and may evict older entries.

:func:`source_hash` keys an artifact by the code that makes it: a model package and every
project module it imports, so that a change to a shared module (e.g. the Sintel reader a flow
model imports) invalidates what was built with the old one.
"""
from __future__ import annotations

import ast
import errno
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import types
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from harness import cache_budget, digest
from harness.cache_budget import pid_alive

if TYPE_CHECKING:
    from harness.runstate import RunState

# The repository root: source_hash follows imports only into files under it.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# build_once's temporaries: '.<key>.tmp<pid><suffix>', and what a builder derives from that name
# (the pipeline's '<tmp>.raw.onnx')
_TEMPORARY = re.compile(r"^\.(?P<key>[0-9a-f]{24})\.tmp(?P<pid>\d+)")


class CacheEntryRebuilt(UserWarning):
    """A cached entry did not match the digest written with it and was built again."""


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


def _lock_free(lock_path: Path) -> bool:
    """True when no process holds the build lock of that key (nobody is building it now)."""
    if not lock_path.exists():
        return True
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def remove_orphans(folder: Path) -> list[Path]:
    """Remove the temporaries of builds that were killed: files or folders named after a
    build_once temporary whose process is gone and whose key nobody is building. Returns them."""
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in Path(folder).iterdir():
        match = _TEMPORARY.match(path.name)
        if (match and not pid_alive(int(match["pid"]))
                and _lock_free(path.parent / f".{match['key']}.lock")):
            _remove(path)
            removed.append(path)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def atomic_write(final: Path, write: Callable[[Path], None], tmp: Path | None = None) -> None:
    """Call ``write(tmp)`` to write a file or a folder at a temporary path, then rename it to
    ``final`` (atomic on one filesystem): a reader sees the whole thing or nothing, and a failed
    or killed writer leaves no partial ``final``. ``tmp`` defaults to ``.<name>.tmp<pid>`` beside
    it. A folder that another writer renamed into place first is kept (the race is lost, not
    failed); a file is replaced."""
    final = Path(final)
    tmp = Path(tmp) if tmp is not None else final.with_name(f".{final.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, final)
        except OSError as err:
            if not (err.errno in (errno.ENOTEMPTY, errno.EEXIST) and final.is_dir()):
                raise
    finally:
        _remove(tmp)


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno == errno.ENOSPC


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    path = Path(path)
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_once(
    cache_dir: Path,
    kind: str,
    parts: Mapping[str, Any],
    build: Callable[[Path], None],
    suffix: str = "",
    state: "RunState | None" = None,
) -> Path:
    """Return the cached artifact for ``parts``, calling ``build(tmp_path)`` only if absent.

    ``build`` writes a file or a directory at the path it is given. The artifact is pinned for
    this process's life (the session uses what it asked for); a full disk raises
    :class:`~harness.cache_budget.CacheDiskFull` naming the cache and its budget. A build is
    tallied in, and charged to the budget of, the run's ``state`` (:class:`harness.runstate.RunState`);
    without one (a script, a measurement) it is charged to a budget of the cache's own.
    """
    key = content_key(parts)
    final = Path(cache_dir) / kind / f"{key}{suffix}"
    remove_orphans(final.parent)
    budget = state.budget if state is not None else cache_budget.CacheBudget(Path(cache_dir).resolve())
    if _reuse(final, budget, state):
        return final
    with _locked(final.parent / f".{key}.lock"):
        if _reuse(final, budget, state):  # another worker built it while this one waited
            return final
        sidecar = final.parent / f"{key}.key.json"

        def build_and_record(tmp: Path) -> None:
            build(tmp)
            # the key and the digest of what was built before the rename: an artifact under its
            # final name always has both beside it
            record = {"key": parts, "digest": digest.of_tree(tmp)}
            atomic_write(sidecar, lambda out: out.write_text(json.dumps(record, indent=1, sort_keys=True, default=str)),
                         final.parent / f".{key}.tmp{os.getpid()}.key.json")

        try:
            atomic_write(final, build_and_record, final.parent / f".{key}.tmp{os.getpid()}{suffix}")
        except BaseException as err:
            sidecar.unlink(missing_ok=True)
            if is_disk_full(err):
                raise budget.disk_full(err, f"{kind}/{final.name}") from err
            raise
        cache_budget.pin(final)
    if state is not None:
        state.built.append(f"{kind}/{final.name}")
    budget.charge(tree_size(final))
    return final


def _reuse(final: Path, budget: cache_budget.CacheBudget, state: "RunState | None") -> bool:
    """Whether the artifact is there, intact, and now pinned for this process. A damaged one (its
    content is not what its digest says) is never used: removed, to be built again, said so in
    the run's ``state.rebuilt`` and as a warning."""
    if not cache_budget.pin(final):
        return False
    why = digest.problem(final, _recorded_digest(final))
    if why is None:
        cache_budget.touch(final)
        return True
    cache_budget.unpin(final)
    budget.discard(final)
    if state is not None:
        state.rebuilt.append(why)
    warnings.warn(CacheEntryRebuilt(f"rebuilding the cache artifact {why}"))
    return False


def _recorded_digest(final: Path) -> dict | None:
    try:
        record = json.loads((final.parent / f"{final.name[:24]}.key.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("digest") if isinstance(record, dict) else None


def artifact_identity(path: Path) -> str:
    """What identifies a file's content: the content key a build_once artifact is named by (its
    key sidecar beside it), else the file's sha256."""
    path = Path(path)
    key = path.name[:24]
    if re.fullmatch(r"[0-9a-f]{24}", key) and (path.parent / f"{key}.key.json").is_file():
        return key
    return file_sha256(path)


def source_files(*objects: Any, root: Path = PROJECT_ROOT) -> list[Path]:
    """The source files behind ``objects`` (modules, dotted module names, or anything with a
    ``__module__``): for a package every .py file in it, and transitively every module they
    import whose file lies under ``root``; third-party and standard-library modules are left out
    (their versions go into cache keys separately)."""
    root = Path(root).resolve()
    files: set[Path] = set()
    # what the caller names counts whole (a package: all its modules); what they import, the
    # imported module only (a package: its __init__)
    pending = [(_module_name(obj), True) for obj in objects]
    seen: set[str] = set()
    while pending:
        name, whole = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for path in _files_of(name, root, whole):
            if path not in files:
                files.add(path)
                package = _package_of(path, root)
                stat = path.stat()
                imported = _imports(path, package, stat.st_mtime_ns, stat.st_size)
                pending.extend((module, False) for module in imported)
    return sorted(files)


def source_hash(*objects: Any, root: Path = PROJECT_ROOT) -> str:
    """Hash of :func:`source_files` (paths relative to ``root`` and contents): a change to any of
    them, or a new import of another project module, gives another hash."""
    root = Path(root).resolve()
    digest = hashlib.sha256()
    for path in source_files(*objects, root=root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _module_name(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = inspect.getmodule(obj)
    if module is None:
        raise TypeError(f"source_hash: {obj!r} is neither a module, a module name nor defined in one")
    return module.__name__


def _files_of(name: str, root: Path, whole: bool) -> list[Path]:
    """The project files of module ``name``: its file, or with ``whole`` all .py files of a package."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # 'from pkg import attribute': not a module
        return []
    if found is None or not found.origin or not found.has_location:
        return []
    origin = Path(found.origin).resolve()
    if not _in_project(origin, root):
        return []
    if whole and found.submodule_search_locations:
        return sorted(p for location in found.submodule_search_locations
                      for p in Path(location).resolve().rglob("*.py") if _in_project(p, root))
    return [origin]


def _package_of(path: Path, root: Path) -> str:
    """The dotted package a project file belongs to, for resolving its relative imports."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1])


def _in_project(path: Path, root: Path) -> bool:
    try:
        relative = path.relative_to(root)
    except ValueError:
        return False
    # a virtual environment or other hidden folder inside the checkout is not project code
    return not any(part.startswith(".") or part == "site-packages" for part in relative.parts)


@functools.lru_cache(maxsize=1024)
def _imports(path: Path, package: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    """Module names ``path`` imports, relative imports resolved against ``package``, with the
    parent packages an import runs; for ``from a import b`` both 'a' and 'a.b' (b may be a
    submodule). Parsed once per file version (``mtime_ns`` and ``size`` key it): every cache key
    of a run asks for the sources behind it."""
    names = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return tuple(".".join(parts[:i]) for n in names if n for parts in [n.split(".")]
                 for i in range(1, len(parts) + 1))
