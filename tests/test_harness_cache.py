"""The artifact cache: content keys, build-once, atomic writes, concurrent builders, the cleanup
of killed builds, and source hashes that follow a module's project imports."""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import cache
from harness.runstate import RunState


def test_key_depends_on_every_part_and_not_on_order():
    a = cache.content_key({"opset": 11, "shapes": [1, 3]})
    assert a == cache.content_key({"shapes": [1, 3], "opset": 11})
    assert a != cache.content_key({"opset": 12, "shapes": [1, 3]})
    assert a != cache.content_key({"opset": 11, "shapes": [1, 4]})


def test_builds_once_and_reuses(tmp_path):
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        out.write_text("artifact")

    first = cache.build_once(tmp_path, "onnx/m", {"k": 1}, build, ".onnx")
    second = cache.build_once(tmp_path, "onnx/m", {"k": 1}, build, ".onnx")
    assert first == second and first.read_text() == "artifact" and len(calls) == 1
    assert calls[0] != first, "the builder writes to a temporary name, renamed into place"
    assert (first.parent / f"{first.stem}.key.json").exists()


def test_failed_build_leaves_nothing_under_the_final_name(tmp_path):
    def broken(out: Path) -> None:
        out.write_text("half")
        raise RuntimeError("converter crashed")

    with pytest.raises(RuntimeError):
        cache.build_once(tmp_path, "x", {"k": 2}, broken, ".bin")
    assert not [p for p in (tmp_path / "x").iterdir() if p.suffix == ".bin"]


def _concurrent_build(args):
    cache_dir, counter = args

    def build(out: Path) -> None:
        with open(counter, "a") as f:
            f.write("built\n")
        out.write_text("shared")

    return str(cache.build_once(Path(cache_dir), "k", {"same": True}, build))


def test_concurrent_processes_build_once(tmp_path):
    counter = tmp_path / "count.txt"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        paths = pool.map(_concurrent_build, [(str(tmp_path), str(counter))] * 8)
    assert len(set(paths)) == 1
    assert counter.read_text().count("built") == 1


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_of_a_killed_build_are_removed_by_the_next_build(tmp_path):
    kind = tmp_path / "onnx" / "m"
    kind.mkdir(parents=True)
    dead, key = _dead_pid(), "0123456789abcdef01234567"
    # what a build killed mid-export leaves: the temporary and the pipeline's raw export beside it
    orphans = [kind / f".{key}.tmp{dead}.onnx", kind / f".{key}.tmp{dead}.onnx.raw.onnx"]
    ir_dir = kind / f".{key}.tmp{dead}.ovir"  # backends that write a folder
    for path in orphans:
        path.write_bytes(b"half")
    ir_dir.mkdir()
    (ir_dir / "model.xml").write_text("<half/>")
    live = kind / f".{'f' * 24}.tmp{os.getpid()}.onnx"  # a build running now, in this process
    live.write_bytes(b"in progress")
    unrelated = kind / "notes.txt"
    unrelated.write_text("kept")

    cache.build_once(tmp_path, "onnx/m", {"other": "key"}, lambda out: out.write_text("x"), ".onnx")
    assert not any(p.exists() for p in (*orphans, ir_dir))
    assert live.exists() and unrelated.exists()


def test_temporary_whose_key_is_being_built_is_kept(tmp_path):
    """A dead pid with a held lock: another host's builder over a shared cache, say."""
    kind = tmp_path / "k"
    kind.mkdir()
    key = "abcdefabcdefabcdefabcdef"
    temporary = kind / f".{key}.tmp{_dead_pid()}.bin"
    temporary.write_bytes(b"being written")
    with open(kind / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second open file description conflicts even in-process
        assert cache.remove_orphans(kind) == []
        assert temporary.exists()
    assert cache.remove_orphans(kind) == [temporary] and not temporary.exists()


def _package(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def project_copy(tmp_path, monkeypatch):
    """A small project: a model package importing a shared reader module, a module it does not
    import, and a third-party import that must not count."""
    _package(tmp_path, {
        "srcharness/__init__.py": "",
        "srcharness/reader.py": "import numpy\nLAYOUT = 'a/b'\n",
        "srcharness/unrelated.py": "X = 1\n",
        "srcmodel/__init__.py": "from srcmodel.spec import SPEC\n",
        "srcmodel/spec.py": "from srcharness.reader import LAYOUT\nfrom . import network\nSPEC = LAYOUT\n",
        "srcmodel/network.py": "import torch\n",
        "srcmodel/sub/__init__.py": "",
        "srcmodel/sub/extra.py": "Y = 2\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    # find_spec imported the parent packages; the next test's copy must be found afresh
    for name in [n for n in sys.modules if n.split(".")[0] in ("srcmodel", "srcharness")]:
        del sys.modules[name]


def test_source_files_follow_project_imports_only(project_copy):
    files = {str(p.relative_to(project_copy)) for p in cache.source_files("srcmodel", root=project_copy)}
    assert files == {"srcmodel/__init__.py", "srcmodel/spec.py", "srcmodel/network.py",
                     "srcmodel/sub/__init__.py", "srcmodel/sub/extra.py",
                     "srcharness/__init__.py", "srcharness/reader.py"}


def test_source_hash_changes_with_an_imported_module_and_not_with_others(project_copy):
    before = cache.source_hash("srcmodel", root=project_copy)
    assert cache.source_hash("srcmodel", root=project_copy) == before
    (project_copy / "srcharness/unrelated.py").write_text("X = 2\n")
    assert cache.source_hash("srcmodel", root=project_copy) == before
    (project_copy / "srcharness/reader.py").write_text("import numpy\nLAYOUT = 'a/c'\n")
    assert cache.source_hash("srcmodel", root=project_copy) != before


def test_source_hash_of_this_project_covers_shared_modules_not_the_venv():
    from harness import export

    files = {p.relative_to(cache.PROJECT_ROOT).as_posix() for p in cache.source_files(export.export_onnx)}
    assert {"harness/export.py", "harness/spec.py"} <= files
    assert all(not part.startswith(".") for f in files for part in f.split("/"))
    with pytest.raises(TypeError, match="neither a module"):
        cache.source_hash(42)


# --- the disk budget -------------------------------------------------------------------------

from harness import cache_budget  # noqa: E402
from harness.cache_budget import CacheBudget, CacheDiskFull  # noqa: E402


def test_atomic_write_leaves_the_whole_file_or_folder_or_nothing(tmp_path):
    cache.atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
    cache.atomic_write(tmp_path / "a.json", lambda tmp: tmp.write_text("[1]"))  # a file is replaced
    assert (tmp_path / "a.json").read_text() == "[1]"

    def folder(content):
        def write(tmp):
            tmp.mkdir()
            (tmp / "x").write_text(content)
        return write

    cache.atomic_write(tmp_path / "d", folder("first"))
    cache.atomic_write(tmp_path / "d", folder("second"))  # a folder renamed first wins the race
    assert (tmp_path / "d" / "x").read_text() == "first"

    def crash(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        cache.atomic_write(tmp_path / "b.json", crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]


@pytest.mark.parametrize("text,size", [("40GB", 40 * 10**9), ("512MiB", 512 * 2**20), ("1.5t", 1.5e12),
                                       ("1000", 1000), ("2 G", 2 * 10**9)])
def test_sizes_parse(text, size):
    assert cache_budget.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1GB", "0", "ten", "4 parsecs", "1e9"])
def test_bad_sizes_say_what_is_expected(text):
    with pytest.raises(ValueError, match="expected a size such as 40GB|larger than 0"):
        cache_budget.parse_size(text)


def _artifact(cache_dir: Path, name: str, size: int, age_s: float) -> Path:
    path = cache.build_once(cache_dir, "kind", {"name": name}, lambda out: out.write_bytes(b"x" * size), ".bin")
    cache_budget.unpin(path)  # as if another, finished run had built it
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime - age_s))
    return path


def test_least_recently_used_entries_are_evicted_first_and_the_runs_own_kept(tmp_path):
    old = [_artifact(tmp_path, f"old{i}", 1000, age_s=1000 - i) for i in range(4)]
    samples = tmp_path / "samples" / "m" / "ab" / ("ab" + "0" * 30)
    samples.mkdir(parents=True)
    (samples / "samples.pkl").write_bytes(b"s" * 1000)
    os.utime(samples, (0, old[1].stat().st_mtime + 0.5))  # used between old1 and old2
    cache_budget.touch(old[0])  # old0 used again by an earlier run: now the newest of them
    os.utime(old[0], (0, old[3].stat().st_mtime + 1))
    budget = CacheBudget(tmp_path, limit=3700)  # a run starts now
    mine = cache.build_once(tmp_path, "kind", {"name": "this run's"}, lambda out: out.write_bytes(b"y" * 1000))
    budget.enforce()
    # 5 entries of 1000 bytes (plus key-and-digest sidecars) against 3700: the least recently used go until
    # the cache is at 90 %; this run's artifact stays
    assert not old[1].exists() and not samples.exists() and not old[2].exists()
    assert old[3].exists() and old[0].exists() and mine.exists()
    assert not (old[1].parent / f"{old[1].stem}.key.json").exists(), "an evicted artifact's key goes with it"
    assert budget.used <= 0.9 * 3700 and budget.evicted_entries == 3 and not budget.over_budget
    assert cache_budget.scan(tmp_path).total == budget.used


def _hold_pin(path, ready, release):
    cache_budget.pin(Path(path))
    ready.set()
    release.wait(30)


def test_an_entry_another_process_pinned_is_never_evicted(tmp_path):
    pinned, free = (_artifact(tmp_path, name, 1000, age_s=100) for name in ("pinned", "free"))
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_pin, args=(str(pinned), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        budget = CacheBudget(tmp_path, limit=100)
        budget.enforce()
        assert pinned.exists() and not free.exists() and budget.over_budget
    finally:
        release.set()
        holder.join()
    budget.enforce()  # the pin died with its process
    assert not pinned.exists() and not budget.over_budget


def test_a_reader_that_pins_after_an_eviction_finds_the_entry_gone(tmp_path):
    entry = _artifact(tmp_path, "gone", 10, age_s=100)
    CacheBudget(tmp_path, limit=1).enforce()
    assert not cache_budget.pin(entry)
    rebuilt = cache.build_once(tmp_path, "kind", {"name": "gone"}, lambda out: out.write_bytes(b"z"), ".bin")
    assert rebuilt == entry and rebuilt.read_bytes() == b"z", "build_once builds an evicted artifact again"


def test_a_full_disk_names_the_cache_and_the_budget_and_leaves_no_entry(tmp_path):
    state = RunState.start(tmp_path, 10**9)

    def full(out: Path) -> None:
        out.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(CacheDiskFull) as err:
        cache.build_once(tmp_path, "onnx/m", {"k": "full"}, full, ".onnx", state)
    message = str(err.value)
    assert str(tmp_path) in message and "1.0 GB budget" in message and "--cache-budget" in message
    assert "onnx/m/" in message
    assert [p.name for p in (tmp_path / "onnx" / "m").iterdir() if not p.name.endswith(".lock")] == []


def test_a_damaged_artifact_is_built_again_with_a_warning(tmp_path):
    built = []

    def build(out: Path) -> None:
        built.append(out)
        out.mkdir()
        (out / "graph.bin").write_bytes(b"weights" * 100)

    first = cache.build_once(tmp_path, "kind", {"name": "a"}, build)
    cache_budget.unpin(first)  # as a later run finds it
    assert cache.build_once(tmp_path, "kind", {"name": "a"}, build) == first and len(built) == 1
    cache_budget.unpin(first)
    (first / "graph.bin").write_bytes(b"weights" * 99)  # an interrupted copy
    state = RunState.start(tmp_path)
    with pytest.warns(cache.CacheEntryRebuilt, match=rf"rebuilding the cache artifact {first}: graph.bin does not "
                                                     r"match the xxh3_128 digest written with it"):
        again = cache.build_once(tmp_path, "kind", {"name": "a"}, build, state=state)
    assert again == first and len(built) == 2 and (first / "graph.bin").read_bytes() == b"weights" * 100
    assert state.rebuilt == [state.rebuilt[0]] and state.rebuilt[0].startswith(f"{first}: graph.bin")
    assert state.built == [f"kind/{first.name}"], "the run counts the rebuild as a conversion"


def test_a_damaged_reference_output_is_not_in_the_store_and_says_why(tmp_path):
    from harness.outputs import OutputStore

    store = OutputStore(tmp_path, verified=True)
    store.put("s1", {"out": np.arange(6, dtype=np.float32)})
    assert "s1" in OutputStore(tmp_path, verified=True)
    data = bytearray(store.path("s1").read_bytes())
    data[-30] ^= 0x10
    store.path("s1").write_bytes(bytes(data))
    later = OutputStore(tmp_path, verified=True)  # the next run
    assert "s1" not in later and not store.path("s1").exists()
    assert later.damaged == {"s1": f"{store.path('s1')}: its content does not match the xxh3_128 digest written with it"}
    with pytest.raises(KeyError, match="no intact outputs stored for sample 's1'"):
        later.get("s1")
    assert OutputStore(tmp_path).ids() == [], "the digest beside it is no sample"
