"""The seeds' own folder names are taken as the seeds write them: GMA's guide runs its preprocess
as ``--output ./data_preprocessed_clean`` and ``./data_preprocessed_final``; ``--seed-inputs``
takes those folders as they are, and a name it does not take is refused listing those it does."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from harness import aisbench, registry, stages

GMA = registry.get("gma")
ACCEPTED = "clean/, data_preprocessed_clean/, final/, data_preprocessed_final/"


def _sintel_samples(shape=(3, 4, 8)) -> list:
    from harness.spec import Sample

    rng = np.random.default_rng(5)
    ids = [f"{p}/{scene}/frame_{i:04d}" for p in ("clean", "final") for scene, i in (("alley_1", 1), ("cave_2", 3))]
    return [Sample(sid, {n: rng.standard_normal(shape).astype(np.float32) for n in ("image1", "image2")}, None)
            for sid in ids]


def _as_the_guide_writes(root, samples) -> None:
    aisbench.write_seed_inputs(root, GMA.seed_bin_layout, samples)
    for p in ("clean", "final"):
        (root / p).rename(root / f"data_preprocessed_{p}")


def test_the_guides_folder_names_are_judged_against_their_pass(tmp_path):
    samples, shapes = _sintel_samples(), {"image1": (3, 4, 8), "image2": (3, 4, 8)}
    _as_the_guide_writes(tmp_path, samples)
    comparison = aisbench.compare_seed_inputs(tmp_path, GMA.seed_bin_layout, samples, shapes)
    assert comparison.passed, comparison.message()
    assert comparison.judged == {
        str(tmp_path / "data_preprocessed_clean"): "2 file(s) per input against the suite's clean pass "
                                                   "(clean/alley_1/frame_0001 .. clean/cave_2/frame_0003)",
        str(tmp_path / "data_preprocessed_final"): "2 file(s) per input against the suite's final pass "
                                                   "(final/alley_1/frame_0001 .. final/cave_2/frame_0003)"}
    assert comparison.not_given == {}


def test_a_name_not_taken_is_refused_listing_the_names_that_are(tmp_path):
    samples, shapes = _sintel_samples(), {"image1": (3, 4, 8), "image2": (3, 4, 8)}
    _as_the_guide_writes(tmp_path, samples)
    (tmp_path / "data_preprocessed_final").rename(tmp_path / "sintel_final")
    with pytest.raises(ValueError, match=rf"sintel_final/: not a name of a Sintel pass folder of this seed "
                                         rf"\(accepted names: {ACCEPTED}\)"):
        aisbench.compare_seed_inputs(tmp_path, GMA.seed_bin_layout, samples, shapes)
    shutil.copytree(tmp_path / "data_preprocessed_clean", tmp_path / "clean")
    shutil.rmtree(tmp_path / "sintel_final")
    with pytest.raises(ValueError, match="clean/ and data_preprocessed_clean/ both hold the clean pass"):
        aisbench.compare_seed_inputs(tmp_path, GMA.seed_bin_layout, samples, shapes)
    with pytest.raises(FileNotFoundError, match=f"no pass folder .*named {ACCEPTED}"):
        aisbench.compare_seed_inputs(tmp_path / "empty", GMA.seed_bin_layout, samples, shapes)


def test_seed_inputs_under_the_guides_names_pass_conformance(run_suite, tmp_path, suite_cache):
    """As a user gives them: the suite's GMA samples written where the guide's preprocess writes."""
    samples = list(stages.open_dataset(GMA, "smoke", None, suite_cache))
    _as_the_guide_writes(tmp_path / "seeds" / "gma", samples)
    result = run_suite("--models=gma", "-m", "conformance", "-k", "seed_preprocessing", "-rP",
                       f"--seed-inputs={tmp_path / 'seeds'}", tests=("test_conformance.py",))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*data_preprocessed_clean: * file(s) per input against the suite's clean pass*",
                                 "*data_preprocessed_final: * file(s) per input against the suite's final pass*"])


def test_flownet2s_folder_in_its_guides_name_is_refused_saying_where_it_goes(tmp_path):
    """FlowNet2's guide writes ./data_preprocessed_bs1 for the clean pass: given as a subfolder it is
    refused, saying the folder itself is taken as it is written."""
    layout = registry.get("flownet2").seed_bin_layout
    samples = [type(s)(s.id, {"x1": s.inputs["image1"], "x2": s.inputs["image2"]}, None) for s in _sintel_samples()]
    aisbench.write_seed_inputs(tmp_path, layout, samples)
    (tmp_path / "clean").rename(tmp_path / "data_preprocessed_bs1")
    shutil.rmtree(tmp_path / "final")
    with pytest.raises(ValueError, match=rf"data_preprocessed_bs1/: not a name .*\(accepted names: clean/, final/, "
                                         rf"or {tmp_path} itself for the clean pass"):
        aisbench.compare_seed_inputs(tmp_path, layout, samples, {"x1": (3, 4, 8), "x2": (3, 4, 8)})
    given_as_written = aisbench.compare_seed_inputs(tmp_path / "data_preprocessed_bs1", layout, samples,
                                                    {"x1": (3, 4, 8), "x2": (3, 4, 8)})
    assert given_as_written.passed, given_as_written.message()
