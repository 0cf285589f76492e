"""The artifact cache: content keys, build-once, atomic writes, concurrent builders, the cleanup
of killed builds, and source hashes that follow a module's project imports."""
from __future__ import annotations

import fcntl
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cache


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
