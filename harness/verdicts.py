"""Verdicts, each naming the reference it used: deployed vs PyTorch, and vs the published figure."""
from __future__ import annotations

import math

from harness.checkpoint import Weights
from harness.spec import Metric, ModelSpec


def judge_delta(metric: Metric, torch_value: float, deployed_value: float, precision: str) -> dict:
    tolerance = metric.tolerance.get(precision)
    if tolerance is None:
        raise KeyError(f"metric {metric.name} declares no tolerance for precision {precision!r}")
    delta = deployed_value - torch_value
    if math.isnan(torch_value) and math.isnan(deployed_value):
        verdict = "n/a"  # the metric had no samples in this dataset (e.g. a pass it does not hold)
    else:
        verdict = "pass" if abs(delta) <= tolerance else "fail"
    return {"torch": torch_value, "deployed": deployed_value, "delta": delta, "tolerance": tolerance,
            "verdict": verdict, "higher_is_better": metric.higher_is_better, "unit": metric.unit, "reference": f"PyTorch on the same samples, tolerance for {precision}"}


def published_not_applicable(spec: ModelSpec, weights: Weights, data: dict | None, profile: str) -> str | None:
    """Why the published figure does not apply to this run, or None when it does.

    ``data`` is the dataset summary, or None before any data was read (then only the weights
    and the profile are judged)."""
    reasons = []
    if weights.seeded:
        reasons.append(f"seeded weights (no {spec.checkpoint.filename} in --weights-dir)")
    elif not weights.published_file:
        reasons.append(f"checkpoint sha256 does not start with {spec.checkpoint.sha256_prefix}: not the published file")
    if data is not None and data.get("generated"):
        reasons.append("generated data (no --data-root)")
    elif data is not None and spec.published_items and data.get("listed", 0) < spec.published_items:
        reasons.append(f"the dataset's index lists {data.get('listed')} of the {spec.published_items} items "
                       "the published figure was measured on")
    elif data is not None and not data.get("complete"):
        reasons.append(f"incomplete dataset ({data.get('read')}/{data.get('listed')} items read, "
                       f"{data.get('missing')} missing, {len(data.get('failed') or {})} failed, limit {data.get('limit')})")
    if profile != "full":
        reasons.append(f"{profile} profile shapes (use --profile full)")
    return "; ".join(reasons) or None


def judge_published(metric: Metric, value: float) -> tuple[str, str]:
    """Two-sided: far better than published usually means a wrong protocol, so it fails too."""
    if metric.published is None:
        return "n/a", "no published figure"
    gap = value - metric.published if metric.higher_is_better else metric.published - value
    if gap < -metric.published_band:
        return "fail", f"worse than published {metric.published} by more than {metric.published_band}"
    if gap > metric.published_band:
        return "fail", f"better than published {metric.published} by more than {metric.published_band}: check the protocol"
    return "pass", f"within {metric.published_band} of published {metric.published}"
