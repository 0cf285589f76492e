"""ais_bench's conventions both ways, end to end: ``--save-outputs DIR --save-layout ais_bench``
writes what a seed's postprocess reads back to the suite's metric, and ``--seed-inputs DIR``
compares a seed's preprocessed folder with the suite's own samples, naming the files that differ."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import seed_postprocess

from harness import aisbench, registry, stages

MODEL = "efficient3dcnn"  # the fastest model whose seed postprocess the suite reimplements


@pytest.fixture(scope="module")
def suite_samples(suite_cache) -> list:
    """The suite's own smoke samples of MODEL, in dataset order (generated data is deterministic,
    so a sandboxed suite run sees the same ones)."""
    return list(stages.open_dataset(registry.get(MODEL), "smoke", None, suite_cache))


# --- the dump ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", aisbench.OUTFMTS)
def test_dump_numbers_samples_in_order_and_reads_them_back(tmp_path, fmt):
    shapes = {"flow": (2, 3, 4), "score": (5,)}
    rng = np.random.default_rng(0)
    outputs = {sid: {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()} for sid in "abc"}
    root = tmp_path / "bs2"
    root.mkdir()
    (root / "7_0.bin").write_bytes(b"stale")  # an earlier, longer run's file
    dump = aisbench.AisBenchDump(root, shapes, fmt)
    for sid, out in outputs.items():
        dump.put(sid, out)
    dump.finish(2, [1.0, 3.0])
    ext = fmt.lower()
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"{i}_{k}.{ext}" for i in range(3) for k in range(2)] + ["sumary.json"])
    for sid, out in outputs.items():
        for name, array in dump.get(sid).items():
            np.testing.assert_array_equal(array, out[name])  # TXT too: 9 digits give float32 back
    assert (tmp_path / "bs2.sample_ids.txt").read_text() == "0 a\n1 b\n2 c\n"
    summary = json.loads((root / "sumary.json").read_text())
    assert summary["throughput"] == pytest.approx(1000.0 * 2 / 2.0) and len(summary["filesinfo"]) == 3
    with pytest.raises(KeyError, match="'d'"):
        dump.get("d")
    with pytest.raises(ValueError, match="'NPY': expected one of BIN, TXT"):
        aisbench.AisBenchDump(root, shapes, "NPY")


def test_txt_dump_reads_back_through_the_slowfast_formula(tmp_path):
    """slowfast_postprocess.py drops the field after each line's last space: a dump that ended
    lines without one would lose the last class, and top-5 would move."""
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 400)).astype(np.float32)
    labels = [int(np.argsort(row)[-1 - 2 * i]) for i, row in enumerate(logits)]  # ranks 0, 2, 4 ...
    logits[5, 399] = logits[5].max() + 1.0
    labels[5] = 399  # the last class, which only a trailing space keeps
    dump = aisbench.AisBenchDump(tmp_path / "result_bs1", {"class": (400,)}, "TXT")
    for i, row in enumerate(logits):
        dump.put(f"video{i}", {"class": row})
    dump.finish(1, [1.0])
    (tmp_path / "kinetics400.info").write_text("".join(f"{i} {label}\n" for i, label in enumerate(labels)))
    expected = {k: 100.0 * np.mean([label in np.argsort(row)[::-1][:k] for row, label in zip(logits, labels)])
                for k in (1, 5)}
    for k in (1, 5):
        assert seed_postprocess.slowfast_seed_topk(tmp_path / "result_bs1", tmp_path / "kinetics400.info", k) == \
            pytest.approx(expected[k])
    assert 0 < expected[1] < expected[5] < 100


def test_save_layout_ais_bench_is_read_by_the_seed_postprocess_as_the_suites_top1(run_suite, tmp_path,
                                                                                  suite_samples):
    out = tmp_path / "dump"
    result = run_suite(f"--models={MODEL}", "--batch-sizes=2", "-m", "accuracy", f"--save-outputs={out}",
                       "--save-layout=ais_bench")
    assert result.ret == 0, result.stdout.str()
    top1 = next(r["accuracy"]["top1"] for r in result.results["records"] if "accuracy" in r)
    # the seed's preprocess numbers its files in dataset order, one clip each: its .info line i
    # names file i's video (Efficient-3DCNNs_preprocess.py --inference_batch_size=1)
    info = tmp_path / "ucf101_bs1.info"
    info.write_text("".join(f"{s.target[0]} \n" for s in suite_samples))
    labels = {s.target[0]: int(s.target[1]) for s in suite_samples}
    for folder, figure in ((out / MODEL / "onnxruntime" / "bs2", top1["deployed"]), (out / MODEL / "torch", top1["torch"])):
        assert (folder / "sumary.json").is_file()
        assert len(list(folder.glob("*_0.bin"))) == len(suite_samples)
        assert seed_postprocess.efficient3dcnn_seed_top1(folder, info, labels) == pytest.approx(figure)


def test_save_layout_needs_save_outputs(run_suite):
    result = run_suite(f"--models={MODEL}", "--save-layout=ais_bench")
    result.stderr.fnmatch_lines(["*--save-layout ais_bench: it lays out --save-outputs DIR; give that too*"])
    assert result.ret != 0


# --- the seed's preprocessed folder ----------------------------------------------------------------

def _seed_folder(root: Path, samples) -> Path:
    folder = root / MODEL
    assert aisbench.write_seed_inputs(folder, registry.get(MODEL).seed_bin_layout, samples) == len(samples)
    return folder


def test_comparison_names_the_file_that_differs_and_the_unpaired(tmp_path, suite_samples):
    layout, shapes = registry.get(MODEL).seed_bin_layout, registry.get(MODEL).profile("smoke").inputs
    folder = _seed_folder(tmp_path, suite_samples)
    same = aisbench.compare_seed_inputs(folder, layout, suite_samples, shapes)
    assert same.passed and same.compared == len(suite_samples), same.message()

    clip = np.fromfile(folder / "bin1" / "2.bin", dtype=np.float32)
    clip[:100] += 0.5  # e.g. another resize on one corner
    clip.tofile(folder / "bin1" / "2.bin")
    changed = aisbench.compare_seed_inputs(folder, layout, suite_samples, shapes)
    assert not changed.passed and [d.file for d in changed.differences] == ["bin1/2.bin"]
    assert changed.differences[0].sample_id == suite_samples[2].id
    assert changed.differences[0].max_abs == pytest.approx(0.5)
    assert "bin1/2.bin vs " in changed.message() and "max |diff| 0.5" in changed.message()

    clip[:7].tofile(folder / "bin1" / "2.bin")
    truncated = aisbench.compare_seed_inputs(folder, layout, suite_samples, shapes)
    assert "another --profile?" in truncated.message()
    assert "no seed file" in aisbench.compare_seed_inputs(folder, layout, suite_samples + suite_samples[:1],
                                                          shapes).message()
    assert "no suite sample" in aisbench.compare_seed_inputs(folder, layout, suite_samples[:-1], shapes).message()


def test_seed_inputs_conformance_green_then_red_naming_the_file(run_suite, tmp_path, suite_samples):
    _seed_folder(tmp_path / "seeds", suite_samples)
    options = (f"--models={MODEL}", "-m", "conformance", "-k", "seed_preprocessing",
               f"--seed-inputs={tmp_path / 'seeds'}")
    green = run_suite(*options, tests=("test_conformance.py",))
    green.assert_outcomes(passed=1)

    path = tmp_path / "seeds" / MODEL / "bin1" / "1.bin"
    clip = np.fromfile(path, dtype=np.float32)
    clip[::3] *= 1.01
    clip.tofile(path)
    red = run_suite(*options, tests=("test_conformance.py",))
    red.assert_outcomes(failed=1)
    red.stdout.fnmatch_lines([f"*1 of {len(suite_samples)} seed file(s) differ from the suite's preprocessing*",
                              f"*bin1/1.bin vs {suite_samples[1].id}: max |diff|*"])


def test_seed_inputs_without_a_model_folder_is_a_usage_error(run_suite, tmp_path):
    result = run_suite(f"--models={MODEL}", f"--seed-inputs={tmp_path}")
    expected = f"*--seed-inputs {tmp_path}: no folder for any selected model; expected {tmp_path / MODEL}/*"
    result.stderr.fnmatch_lines([expected])
    assert result.ret != 0
