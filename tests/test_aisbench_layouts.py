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
from harness.aisbench import SeedBinLayout

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
    dump = aisbench.AisBenchDump(root, shapes, SeedBinLayout(inputs={}, outfmt=fmt))
    for ms, batch in ((1.0, "ab"), (3.0, "c")):
        dump.new_run(ms)
        for sid in batch:
            dump.put(sid, outputs[sid])
    assert dump.finish(2) == [tmp_path / "bs2_summary.json"]
    ext = fmt.lower()
    # nothing but outputs in the folder: the seeds' postprocess scripts read every file in it
    assert sorted(p.name for p in root.iterdir()) == sorted(f"{i}_{k}.{ext}" for i in range(3) for k in range(2))
    for sid, out in outputs.items():
        for name, array in dump.get(sid).items():
            np.testing.assert_array_equal(array, out[name])  # TXT too: 9 digits give float32 back
    assert (tmp_path / "bs2.sample_ids.txt").read_text() == "0 a\n1 b\n2 c\n"
    summary = json.loads((tmp_path / "bs2_summary.json").read_text())
    assert summary["throughput"] == pytest.approx(1000.0 * 2 / 2.0) and len(summary["filesinfo"]) == 3
    assert summary["npu_compute_time_list"] == [1.0, 3.0] and summary["NPU_compute_time"]["count"] == 2
    with pytest.raises(KeyError, match="'d'"):
        dump.get("d")
    with pytest.raises(ValueError, match="'NPY': expected one of BIN, TXT"):
        aisbench.AisBenchDump(root, shapes, SeedBinLayout(inputs={}, outfmt="NPY"))


def test_sintel_dump_has_one_folder_per_pass_numbered_from_zero(tmp_path):
    """As GMA's guide runs ais_bench once per pass (--output output_clean / output_final): the
    clean and final pairs never share a folder, each numbered from 0, each with its own summary of
    the runs that wrote into it (a batch across the boundary counts in both)."""
    layout = registry.get("gma").seed_bin_layout
    ids = ["clean/alley_1/frame_0001", "clean/alley_1/frame_0002", "clean/bamboo_1/frame_0001",
           "final/alley_1/frame_0001", "final/alley_1/frame_0002", "final/bamboo_1/frame_0001"]
    flows = {sid: np.full((2, 4, 8), n, np.float32) for n, sid in enumerate(ids)}
    root = tmp_path / "bs2"
    dump = aisbench.AisBenchDump(root, {"out1": (2, 4, 8)}, layout)
    for run, batch in enumerate((ids[0:2], ids[2:4], ids[4:6])):
        dump.new_run(10.0 * (run + 1))
        for sid in batch:
            dump.put(sid, {"out1": flows[sid]})
    dump.finish(2)
    assert sorted(p.name for p in root.iterdir()) == ["clean", "clean.sample_ids.txt", "clean_summary.json",
                                                      "final", "final.sample_ids.txt", "final_summary.json"]
    for name, first in (("clean", 0), ("final", 3)):
        folder = root / name
        assert sorted(p.name for p in folder.iterdir()) == ["0_0.bin", "1_0.bin", "2_0.bin"]
        for i in range(3):
            np.testing.assert_array_equal(np.fromfile(folder / f"{i}_0.bin", np.float32), flows[ids[first + i]].ravel())
        assert (root / f"{name}.sample_ids.txt").read_text().split("\n")[:3] == \
            [f"{i} {ids[first + i]}" for i in range(3)]
    assert json.loads((root / "clean_summary.json").read_text())["npu_compute_time_list"] == [10.0, 20.0]
    assert json.loads((root / "final_summary.json").read_text())["npu_compute_time_list"] == [20.0, 30.0]
    with pytest.raises(ValueError, match="'alley_1': expected '<pass>/...'"):
        aisbench.AisBenchDump(tmp_path / "other", {"out1": (2, 4, 8)}, layout).put("alley_1", {"out1": flows[ids[0]]})


def test_txt_dump_reads_back_through_the_slowfast_formula(tmp_path):
    """slowfast_postprocess.py drops the field after each line's last space: a dump that ended
    lines without one would lose the last class, and top-5 would move."""
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 400)).astype(np.float32)
    labels = [int(np.argsort(row)[-1 - 2 * i]) for i, row in enumerate(logits)]  # ranks 0, 2, 4 ...
    logits[5, 399] = logits[5].max() + 1.0
    labels[5] = 399  # the last class, which only a trailing space keeps
    dump = aisbench.AisBenchDump(tmp_path / "result_bs1", {"class": (400,)}, registry.get("slowfast").seed_bin_layout)
    for i, row in enumerate(logits):
        dump.new_run(1.0)
        dump.put(f"video{i}", {"class": row})
    dump.finish(1)
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
    top1 = next({"deployed": f["value"], "torch": f["reference"]} for r in result.results["records"] for f in r["figures"]
                if f["part"] == "accuracy" and f["name"] == "top1")
    # the seed's preprocess numbers its files in dataset order, one clip each: its .info line i
    # names file i's video (Efficient-3DCNNs_preprocess.py --inference_batch_size=1)
    info = tmp_path / "ucf101_bs1.info"
    info.write_text("".join(f"{s.target[0]} \n" for s in suite_samples))
    labels = {s.target[0]: int(s.target[1]) for s in suite_samples}
    for folder, figure in ((out / MODEL / "onnxruntime" / "bs2", top1["deployed"]), (out / MODEL / "torch", top1["torch"])):
        assert aisbench.summary_path(folder).is_file()  # beside the folder, where ais_bench writes it
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}_0.bin" for i in range(len(suite_samples)))
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


# --- Sintel: the seeds' preprocess writes one pass per folder ------------------------------------

def _sintel_samples(shape=(3, 4, 8)) -> list:
    """Suite samples of a Sintel model in dataset order: clean, then final, as the index sorts."""
    from harness.spec import Sample

    rng = np.random.default_rng(3)
    ids = [f"{p}/{scene}/frame_{i:04d}" for p in ("clean", "final") for scene, i in
           (("alley_1", 1), ("alley_1", 2), ("bamboo_1", 1))]
    return [Sample(sid, {n: rng.standard_normal(shape).astype(np.float32) for n in ("image1", "image2")}, None)
            for sid in ids]


def test_gma_pass_folders_are_taken_as_its_preprocess_writes_them(tmp_path):
    """GMA_preprocess.py --status clean|final: one --output per pass, each numbered from 0. Each
    folder is judged against the suite's samples of its own pass, and the comparison says so."""
    layout, samples = registry.get("gma").seed_bin_layout, _sintel_samples()
    shapes = {"image1": (3, 4, 8), "image2": (3, 4, 8)}
    assert aisbench.write_seed_inputs(tmp_path, layout, samples) == 6
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/image1/*.bin")) == \
        [f"{p}/image1/{i}.bin" for p in ("clean", "final") for i in range(3)]
    same = aisbench.compare_seed_inputs(tmp_path, layout, samples, shapes)
    assert same.passed, same.message()
    assert same.judged == {
        str(tmp_path / "clean"): "3 file(s) per input against the suite's clean pass "
                                 "(clean/alley_1/frame_0001 .. clean/bamboo_1/frame_0001)",
        str(tmp_path / "final"): "3 file(s) per input against the suite's final pass "
                                 "(final/alley_1/frame_0001 .. final/bamboo_1/frame_0001)"}

    pair = np.fromfile(tmp_path / "final" / "image2" / "1.bin", np.float32)
    (pair + 0.25).tofile(tmp_path / "final" / "image2" / "1.bin")
    changed = aisbench.compare_seed_inputs(tmp_path, layout, samples, shapes)
    assert [(d.file, d.sample_id) for d in changed.differences] == [("final/image2/1.bin", "final/alley_1/frame_0002")]

    # the clean pass alone (the user preprocessed only that one): judged, and final said not compared
    import shutil
    shutil.rmtree(tmp_path / "final")
    clean_only = aisbench.compare_seed_inputs(tmp_path, layout, samples, shapes)
    assert clean_only.passed and clean_only.not_given == {"final": 3}
    assert "final pass: no seed folder, its 3 sample(s) not compared" in clean_only.coverage()
    # the pass folder's content given directly: which pass is it? GMA's preprocess writes either
    with pytest.raises(ValueError, match=r"each Sintel pass into its own folder: give them as .*/clean/ and .*/final/"):
        aisbench.compare_seed_inputs(tmp_path / "clean", layout, samples, shapes)


def test_flownet2_clean_folder_is_taken_as_its_preprocess_writes_it(tmp_path):
    """Flownet2_preprocess.py writes the clean pass only, straight into --output: that folder is
    judged against the suite's clean samples, the final ones are reported as not compared."""
    layout, samples = registry.get("flownet2").seed_bin_layout, _sintel_samples()
    renamed = [type(s)(s.id, {"x1": s.inputs["image1"], "x2": s.inputs["image2"]}, None) for s in samples]
    aisbench.write_seed_inputs(tmp_path / "written", layout, renamed)
    seed_output = tmp_path / "written" / "clean"  # what the seed's script writes: image1/ image2/ gt/
    comparison = aisbench.compare_seed_inputs(seed_output, layout, renamed, {"x1": (3, 4, 8), "x2": (3, 4, 8)})
    assert comparison.passed, comparison.message()
    assert comparison.judged[str(seed_output)].startswith("3 file(s) per input against the suite's clean pass")
    assert comparison.not_given == {"final": 3}
    (seed_output / "image1" / "3.bin").write_bytes(np.zeros(96, np.float32).tobytes())
    extra = aisbench.compare_seed_inputs(seed_output, layout, renamed, {"x1": (3, 4, 8), "x2": (3, 4, 8)})
    assert "1 file(s) from 3.bin on have no suite sample (the suite has 3 in the clean pass)" in extra.message()
