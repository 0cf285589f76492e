"""The artifact cache: content keys, build-once, atomic writes, concurrent builders."""
from __future__ import annotations

import multiprocessing
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
