"""Accuracy: the deployed model against PyTorch on the same samples (always), and against the
seed's published figure when the real checkpoint and the complete dataset are given."""
from __future__ import annotations

import pytest

from harness import gate, verdicts

pytestmark = pytest.mark.accuracy


def test_deployed_metrics_match_pytorch(model, batch_size, pipeline, evaluation, record, baseline):
    precision = pipeline.backend.precision
    weights = pipeline.weights(model)
    not_applicable = verdicts.published_not_applicable(model, weights, evaluation.dataset, pipeline.config.profile)
    rows, failures, regressions, improvements = {}, [], [], []
    for metric in model.metrics:
        row = verdicts.judge_delta(metric, evaluation.torch_metrics[metric.name],
                                   evaluation.deployed_metrics[metric.name], precision)
        row["published"] = metric.published
        if not_applicable or metric.published is None:
            row["published_verdict"], row["published_reason"] = "n/a", not_applicable or "no published figure"
        else:
            row["published_verdict"], row["published_reason"] = verdicts.judge_published(metric, row["deployed"])
        rows[metric.name] = row
        if row["verdict"] == "fail":
            failures.append(f"{metric.name}: deployed {row['deployed']:.6g} vs PyTorch {row['torch']:.6g} "
                            f"(delta {row['delta']:.3g}, tolerance {row['tolerance']:g} for {precision})")
        base = baseline.get((model.name, pipeline.backend.name, precision, batch_size), {})
        base_value = base.get("accuracy", {}).get(metric.name, {}).get("deployed")
        if base_value is not None and row["verdict"] != "n/a":
            worse, better = gate.compare_metric((model.name, pipeline.backend.name, precision, batch_size),
                                                metric.name, row["deployed"], base_value,
                                                metric.tolerance[precision], metric.higher_is_better)
            regressions += [str(worse)] if worse else []
            improvements += [str(better)] if better else []
    record(accuracy=rows, weights=weights.provenance, data=evaluation.dataset,
           gate={"accuracy": {"regressions": regressions, "improvements": improvements}} if baseline else {})
    assert not failures, f"{model.name} bs{batch_size} on {pipeline.backend.name}: " + "; ".join(failures)
    assert not regressions, "accuracy regressions against the baseline: " + "; ".join(regressions)


def test_published_figure(model, pipeline):
    """Judged at the smallest batch size, as the seeds publish accuracy at batch size 1."""
    batch_size = min(pipeline.batch_sizes(model))
    weights = pipeline.weights(model)
    if weights.seeded:  # decided before any data is read: say what is missing at once
        pytest.skip(verdicts.published_not_applicable(model, weights, None, pipeline.config.profile))
    evaluation = pipeline.evaluation(model, batch_size)
    reason = verdicts.published_not_applicable(model, weights, evaluation.dataset, pipeline.config.profile)
    if reason:
        pytest.skip(f"published figures do not apply: {reason}")
    judged = {m.name: verdicts.judge_published(m, evaluation.deployed_metrics[m.name])
              for m in model.metrics if m.published is not None}
    failed = {name: why for name, (verdict, why) in judged.items() if verdict == "fail"}
    assert not failed, f"{model.name}: " + "; ".join(f"{n} {evaluation.deployed_metrics[n]:.4g}: {w}" for n, w in failed.items())
