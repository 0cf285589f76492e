"""SlowFast end to end through its seed's postprocess: the suite's run dumps its outputs with
``--save-layout ais_bench`` (SlowFast's ``.txt``, as its seed's ais_bench ``--outfmt TXT``), and
slowfast_postprocess.py's formula (tests/seed_postprocess.py) reads back the run's own top-1 and
top-5, deployed and PyTorch's."""
from __future__ import annotations

import numpy as np
import pytest
import seed_postprocess

from harness import aisbench, registry, stages

MODEL = "slowfast"


def test_the_txt_dump_reads_back_through_the_seeds_formula_as_the_runs_top_k(run_suite, tmp_path, suite_cache):
    out = tmp_path / "dump"
    result = run_suite(f"--models={MODEL}", "--batch-sizes=2", "-m", "accuracy", f"--save-outputs={out}",
                       "--save-layout=ais_bench")
    assert result.ret == 0, result.stdout.str()
    figures = {f["name"]: f for r in result.results["records"] for f in r["figures"] if f["part"] == "accuracy"}
    samples = list(stages.open_dataset(registry.get(MODEL), "smoke", None, suite_cache))
    # prep_dataset/kinetics400.info: one line per preprocessed file, its label second
    info = tmp_path / "kinetics400.info"
    info.write_text("".join(f"{s.target[0]} {int(s.target[1])}\n" for s in samples))
    read = {}
    for folder, side in ((out / MODEL / "onnxruntime" / "bs2", "value"), (out / MODEL / "torch", "reference")):
        assert aisbench.summary_path(folder).is_file()  # beside the folder, as ais_bench writes it
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}_0.txt" for i in range(len(samples)))
        for k in (1, 5):
            assert seed_postprocess.slowfast_seed_topk(folder, info, k) == pytest.approx(figures[f"top{k}"][side])
        read[side], labels = seed_postprocess.slowfast_seed_rows(folder, info)
        assert labels == [int(s.target[1]) for s in samples]
    # every class of every video read back (the head's softmax sums to 1), the same on both sides
    assert read["value"].shape == (len(samples), 400)
    np.testing.assert_allclose(read["value"].sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(read["value"], read["reference"], atol=1e-5)
