"""Shared metric functions on hand-computable values, verdict rules and the regression gate."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness import gate, verdicts
from harness.checkpoint import Weights, seeded_weights
from harness.metrics import VideoClassificationScorer, softmax, topk_hits
from harness.spec import Metric, Sample


def test_topk_hits():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert topk_hits(scores, np.array([1, 2]), 1).tolist() == [True, False]
    assert topk_hits(scores, np.array([1, 2]), 3).tolist() == [True, True]


def test_video_scorer_averages_clip_probabilities():
    scorer = VideoClassificationScorer("class", logits=True)
    # video a: clips disagree; the mean of softmaxes favours class 0
    scorer.add(Sample("a/0", {}, ("a", 0)), {"class": np.array([4.0, 0.0, 0.0])})
    scorer.add(Sample("a/1", {}, ("a", 0)), {"class": np.array([0.0, 1.0, 0.0])})
    scorer.add(Sample("b/0", {}, ("b", 2)), {"class": np.array([0.0, 3.0, 0.0])})
    result = scorer.result()
    assert result["top1"] == pytest.approx(50.0)
    assert result["top5"] == pytest.approx(100.0)
    assert softmax(np.array([0.0, 0.0])).tolist() == [0.5, 0.5]


def test_delta_verdict_uses_the_precision_tolerance():
    metric = Metric("psnr", True, tolerance={"fp32": 0.01, "bf16": 0.5})
    assert verdicts.judge_delta(metric, 30.0, 30.005, "fp32")["verdict"] == "pass"
    assert verdicts.judge_delta(metric, 30.0, 30.2, "fp32")["verdict"] == "fail"
    assert verdicts.judge_delta(metric, 30.0, 30.2, "bf16")["verdict"] == "pass"
    with pytest.raises(KeyError):
        verdicts.judge_delta(metric, 30.0, 30.0, "fp16")


def test_published_verdict_is_two_sided():
    metric = Metric("top1", True, published=81.126, published_band=1.0)
    assert verdicts.judge_published(metric, 80.5)[0] == "pass"
    assert verdicts.judge_published(metric, 79.0)[0] == "fail"
    verdict, why = verdicts.judge_published(metric, 90.0)
    assert verdict == "fail" and "protocol" in why
    epe = Metric("epe_clean", False, published=2.15, published_band=0.1)
    assert verdicts.judge_published(epe, 2.2)[0] == "pass"
    assert verdicts.judge_published(epe, 2.4)[0] == "fail"


def test_published_not_applicable_names_what_is_missing(monkeypatch):
    from harness import registry

    spec = registry.all_specs()[0]
    reason = verdicts.published_not_applicable(spec, seeded_weights(), {"generated": True}, "smoke")
    assert spec.checkpoint.filename in reason and "generated data" in reason and "--profile full" in reason
    real = Weights({}, {"source": "checkpoint", "sha256": "ab"})
    partial = {"generated": False, "complete": False, "read": 1, "listed": 3783, "missing": 3782, "failed": {}}
    assert "1/3783" in verdicts.published_not_applicable(spec, real, partial, "full")
    whole = {"complete": True, "listed": spec.published_items}
    assert verdicts.published_not_applicable(spec, real, whole, "full") is None
    subset = {"complete": True, "listed": 1}  # an index that lists one video is complete, not whole
    assert "1 of the" in verdicts.published_not_applicable(spec, real, subset, "full")


def test_gate_fps_and_metric_findings():
    key = ("m", "onnxruntime", "fp32", 1)
    worse, better = gate.compare_fps(key, 80.0, 100.0, 0.10)
    assert worse and not better and "m/onnxruntime/fp32/bs1" in str(worse)
    assert gate.compare_fps(key, 95.0, 100.0, 0.10) == (None, None)
    assert gate.compare_fps(key, 120.0, 100.0, 0.10)[1] is not None
    worse, _ = gate.compare_metric(key, "epe", 2.5, 2.0, 0.1, higher_is_better=False)
    assert worse is not None
    assert gate.compare_metric(key, "top1", 80.0, 80.05, 0.1, True) == (None, None)
    assert math.isfinite(worse.current)


def _results(tmp_path, name, fps_scale=1.0, top1=80.0):
    records = [{"model": "m", "backend": "onnxruntime", "precision": "fp32", "batch_size": bs,
                "accuracy": {"top1": {"deployed": top1, "tolerance": 0.1, "verdict": "pass", "higher_is_better": True}},
                "perf": {"fps": 100.0 * bs * fps_scale, "best_fps": 110.0 * bs * fps_scale}}
               for bs in (1, 4)]
    path = tmp_path / f"{name}.json"
    path.write_text(__import__("json").dumps({"run_id": name, "records": records}))
    return path


def test_gate_command_fails_on_a_faster_baseline_and_passes_on_itself(tmp_path, capsys):
    run = _results(tmp_path, "run")
    assert gate.main([str(run), "--baseline", str(run)]) == 0
    faster = _results(tmp_path, "faster", fps_scale=1.2)
    assert gate.main([str(run), "--baseline", str(faster)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION m/onnxruntime/fp32/bs1 fps" in out and "REGRESSION m/onnxruntime/fp32/bs4 fps" in out
    better_accuracy = _results(tmp_path, "better", top1=81.0)
    assert gate.main([str(run), "--baseline", str(better_accuracy)]) == 1
    assert "top1" in capsys.readouterr().out
