"""Shared metric functions on hand-computable values and verdict rules (the gate: test_gate.py)."""
from __future__ import annotations

import numpy as np
import pytest

from harness import published, registry, results
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
    assert results.judge_delta(metric, 30.0, 30.005, "fp32").verdict == "pass"
    assert results.judge_delta(metric, 30.0, 30.2, "fp32").verdict == "fail"
    assert results.judge_delta(metric, 30.0, 30.2, "bf16").verdict == "pass"
    with pytest.raises(KeyError):
        results.judge_delta(metric, 30.0, 30.0, "fp16")


def test_published_verdict_is_two_sided():
    metric = Metric("top1", True, published=81.126, published_band=1.0)
    assert published.judge_published(metric, 80.5)[0] == "pass"
    assert published.judge_published(metric, 79.0)[0] == "fail"
    verdict, why = published.judge_published(metric, 90.0)
    assert verdict == "fail" and "protocol" in why
    epe = Metric("epe_clean", False, published=2.15, published_band=0.1)
    assert published.judge_published(epe, 2.2)[0] == "pass"
    assert published.judge_published(epe, 2.4)[0] == "fail"


@pytest.mark.parametrize("spec", registry.all_specs(), ids=lambda spec: spec.name)
def test_published_not_applicable_names_what_is_missing(spec):
    assert spec.published_items, f"{spec.name}: no published_items, so a subset index would count as whole"
    reason = published.published_not_applicable(spec, seeded_weights(), {"generated": True}, "smoke")
    assert reason == (f"seeded weights (no --weights-dir with {spec.checkpoint.filename}); "
                      "generated data (no --data-root); smoke profile shapes (use --profile full)")
    real = Weights({}, {"source": "checkpoint", "sha256": "ab"})
    listed = spec.published_items
    partial = {"generated": False, "complete": False, "read": 1, "listed": listed, "missing": listed - 1,
               "failed": {}, "limit": None}
    assert published.published_not_applicable(spec, real, partial, "full") == (
        f"partial copy: {listed - 1} of the {listed} listed items absent")
    whole = {"complete": True, "listed": listed}
    assert published.published_not_applicable(spec, real, whole, "full") is None
    subset = {"complete": True, "listed": listed - 1}  # an index short of one item is complete, not whole
    assert published.published_not_applicable(spec, real, subset, "full") == (
        f"incomplete index: the dataset's index lists {listed - 1} of the {listed} items the published figure was "
        "measured on")
