"""Report writing, part merging across workers, batching and element-wise statistics."""
from __future__ import annotations

import json

import numpy as np

from harness import report
from harness.backends.base import looks_like_oom
from harness.pipeline import ElementwiseStats, batches
from harness.spec import Elementwise, Sample


def _row(bs, **fields):
    return {"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": bs, **fields}


def test_parts_from_several_workers_merge_into_one_row(tmp_path):
    report.PartWriter(tmp_path, "gw0").add(_row(1, accuracy={"top1": {"torch": 50.0, "deployed": 50.0, "verdict": "pass"}}))
    report.PartWriter(tmp_path, "gw1").add(_row(1, perf={"fps": 10.0}))
    report.PartWriter(tmp_path, "gw1").add(_row(2, perf={"fps": 18.0}))
    merged = report.merge_parts(tmp_path)
    assert [r["batch_size"] for r in merged] == [1, 2]
    assert merged[0]["accuracy"]["top1"]["verdict"] == "pass" and merged[0]["perf"]["fps"] == 10.0


def test_run_directory_has_results_summary_plots_and_latest(tmp_path):
    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    records = [
        _row(1, weights={"source": "seeded"}, data={"generated": True, "read": 3, "listed": 3},
             accuracy={"top1": {"torch": 50.0, "deployed": 40.0, "delta": -10.0, "tolerance": 0.1,
                                "verdict": "fail", "published": 81.1, "published_verdict": "n/a",
                                "published_reason": "seeded weights"}},
             perf={"fps": 10.0, "p50_ms": 100.0, "reference_fps": 1001.5, "rounds": 5, "warmup": 2}),
        _row(4, perf={"status": "oom", "reason": "out of memory", "reference_fps": "oom"}),
    ]
    header = {"run_id": "run1", "config": {"backends": ["onnxruntime"], "soc": "Ascend310P3"},
              "reference_fps": {"m": {"Ascend310P3": {"1": 1001.5, "4": "oom"}}}}
    summary = report.write_run(run_dir, header, records)
    text = summary.read_text()
    assert "❌ FAIL" in text and "out of memory" in text and "seeded weights" in text
    assert json.loads((run_dir / "results.json").read_text())["records"][0]["perf"]["fps"] == 10.0
    for png in ("fps.png", "accuracy.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "latest").resolve() == run_dir.resolve()


def test_last_batch_is_padded_and_only_real_samples_returned():
    samples = [Sample(str(i), {"x": np.full((2,), i, np.float32)}, None) for i in range(5)]
    got = list(batches(samples, 2, ["x"]))
    assert [len(group) for group, _ in got] == [2, 2, 1]
    assert got[-1][1]["x"].shape == (2, 2) and got[-1][1]["x"][1, 0] == 4.0


def test_elementwise_stats_count_outliers_and_nan():
    stats = ElementwiseStats(Elementwise(rtol=0.0, atol=0.1))
    stats.add("a", {"y": np.zeros(4)}, {"y": np.array([0.0, 0.05, 0.2, 0.0])})
    assert stats.outside == 1 and not stats.passed and abs(stats.max_abs - 0.2) < 1e-12
    nan = ElementwiseStats(Elementwise(rtol=0.0, atol=0.1))
    nan.add("b", {"y": np.zeros(2)}, {"y": np.array([np.nan, 0.0])})
    assert nan.outside == 1 and not nan.passed


def test_out_of_memory_messages_are_recognised():
    assert looks_like_oom("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer")
    assert looks_like_oom("std::bad_alloc")
    assert looks_like_oom("EE9999: aclrtMallocAsync failed, error code 207001")
    assert not looks_like_oom("Invalid input name: x3")
