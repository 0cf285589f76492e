"""Verdicts, each naming the reference it used. The tests, the report and the gate share them:

* :func:`accuracy_row` -- the deployed model against PyTorch on the same samples: the run judged
  something (samples read, every listed item readable), outputs are finite, element-wise within
  the precision's tolerance, task-level agreement within its limits, metrics within tolerance.
  A complete gate of the deployment whatever the weights.
* :func:`published_verdict` -- against the seed's published figures, only when they apply
  (the real checkpoint, the complete dataset, the full profile); two-sided.
* :func:`perf_row` -- FPS and latency of the timed loop, beside the reference table of --soc.
"""
from __future__ import annotations

import math
from typing import Sequence

from harness import agreement as agreement_stats
from harness.checkpoint import Weights
from harness.outputs import DeployedRun, ReferenceRun
from harness.spec import Metric, ModelSpec

NAMED = 10  # items named one by one in a message before "... and N more"


def _listing(names: Sequence[str]) -> str:
    more = f" ... and {len(names) - NAMED} more" if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def judge_delta(metric: Metric, torch_value: float, deployed_value: float, precision: str) -> dict:
    tolerance = metric.tolerance.get(precision)
    if tolerance is None:
        raise KeyError(f"metric {metric.name} declares no tolerance for precision {precision!r}")
    delta = deployed_value - torch_value
    if math.isnan(torch_value) and math.isnan(deployed_value):
        verdict = "n/a"  # no sample of the dataset feeds this metric (e.g. a pass it does not hold)
    else:
        verdict = "pass" if abs(delta) <= tolerance else "fail"  # NaN on one side fails
    return {"torch": torch_value, "deployed": deployed_value, "delta": delta, "tolerance": tolerance,
            "verdict": verdict, "higher_is_better": metric.higher_is_better, "unit": metric.unit,
            "reference": f"PyTorch on the same samples, tolerance for {precision}"}


def data_failures(dataset: dict, accepted: Sequence[str] = (), accept_missing: bool = False
                  ) -> tuple[list[str], list[str]]:
    """(failures, notes): every listed item that was missing or unreadable fails the run unless
    the user accepted it by name (--accept-bad-items), or accepted absent items as a partial
    copy of the dataset (--accept-missing); what was accepted is noted in the row."""
    failures, notes = [], []
    root = dataset.get("root", "?")
    named_missing = dataset.get("missing_names", [])
    missing = [m for m in named_missing if m not in accepted]
    failed = {k: v for k, v in (dataset.get("failed") or {}).items() if k not in accepted}
    unnamed = dataset.get("missing", 0) - len(named_missing)
    count = len(missing) + max(unnamed, 0)
    if count and accept_missing:
        notes.append(f"{count} listed item(s) absent under {root}, left out as a partial copy (--accept-missing): "
                     f"{_listing(missing)}")
    elif count:
        failures.append(f"{count} listed item(s) missing under {root}: {_listing(missing)} (a partial copy of "
                        "the dataset? say so with --accept-missing)")
    for item, why in list(failed.items())[:NAMED]:
        failures.append(f"unreadable item {item} under {root}: {why}")
    if len(failed) > NAMED:
        failures.append(f"... and {len(failed) - NAMED} more unreadable items")
    taken = [a for a in accepted if a in named_missing or a in (dataset.get("failed") or {})]
    if taken:
        notes.append(f"left out as accepted with --accept-bad-items: {_listing(taken)}")
    return failures, notes


def accuracy_row(spec: ModelSpec, precision: str, reference: ReferenceRun, deployed: DeployedRun,
                 accepted_bad_items: Sequence[str] = (), accept_missing: bool = False) -> dict:
    """The deployed model against PyTorch on the same samples. ``row['failures']`` names what
    failed (empty: pass); the row also carries every figure it was judged on, for the report."""
    failures: list[str] = []
    data = deployed.dataset or reference.dataset
    if not deployed.sample_ids:
        failures.append(f"nothing was judged: the dataset under {data.get('root', '?')} yielded no sample "
                        f"({data.get('listed', 0)} item(s) listed, {data.get('read', 0)} read)")
    data_fail, notes = data_failures(data, accepted_bad_items, accept_missing)
    failures += data_fail
    for where, bad in (("PyTorch", reference.nonfinite), ("the deployed model", deployed.nonfinite)):
        if bad:
            first = next(iter(bad))
            failures.append(f"{where} produced NaN or Inf on {len(bad)} sample(s), first {first} "
                            f"(outputs {', '.join(bad[first])})")
    stats = deployed.elementwise
    if deployed.sample_ids and not stats.passed:
        failures.append(f"element-wise vs PyTorch ({precision}): {stats.message()}")
    judged_agreement = agreement_stats.judge(spec.agreement, deployed.agreement, precision)
    for name, result in judged_agreement.items():
        if not result["passed"]:
            relation = ">=" if result["bound"] == "min" else "<="
            failures.append(f"{name} vs PyTorch {result['value']:.4g}{result['unit']}, expected {relation} "
                            f"{result['limit']:g}{result['unit']} for {precision}")
    metrics = {}
    for metric in spec.metrics:
        row = judge_delta(metric, reference.metrics.get(metric.name, math.nan),
                          deployed.metrics.get(metric.name, math.nan), precision)
        metrics[metric.name] = row
        if row["verdict"] == "fail":
            failures.append(f"{metric.name}: deployed {row['deployed']:.6g} vs PyTorch {row['torch']:.6g} "
                            f"(delta {row['delta']:.3g}, tolerance {row['tolerance']:g} for {precision})")
    return {"verdict": "fail" if failures else "pass", "failures": failures, "notes": notes,
            "accuracy": metrics, "elementwise": stats.as_dict(), "agreement": judged_agreement,
            "samples": len(deployed.sample_ids), "data": data}


def published_not_applicable(spec: ModelSpec, weights: Weights, data: dict | None, profile: str) -> str | None:
    """Why the published figure does not apply to this run, or None when it does.

    ``data`` is the dataset summary, or None before any data was read (then only the weights
    and the profile are judged)."""
    reasons = []
    if weights.seeded:
        reasons.append(f"seeded weights (no --weights-dir with {spec.checkpoint.filename})")
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
    if math.isnan(value):
        return "fail", "no value (NaN)"
    gap = value - metric.published if metric.higher_is_better else metric.published - value
    if gap < -metric.published_band:
        return "fail", f"worse than published {metric.published} by more than {metric.published_band}"
    if gap > metric.published_band:
        return "fail", f"better than published {metric.published} by more than {metric.published_band}: check the protocol"
    return "pass", f"within {metric.published_band} of published {metric.published}"


def published_verdict(spec: ModelSpec, weights: Weights, data: dict | None, profile: str,
                      deployed_metrics: dict[str, float] | None) -> dict:
    """{'applies': bool, 'reason': why not, 'metrics': {name: {published, value, verdict, why}}}."""
    reason = published_not_applicable(spec, weights, data, profile)
    judged = {}
    for metric in spec.metrics:
        if metric.published is None:
            continue
        value = (deployed_metrics or {}).get(metric.name, math.nan)
        verdict, why = ("n/a", reason) if reason else judge_published(metric, value)
        judged[metric.name] = {"published": metric.published, "value": value, "verdict": verdict, "why": why}
    return {"applies": reason is None, "reason": reason, "metrics": judged}


def perf_row(spec: ModelSpec, batch_size: int, timing_summary: dict, soc: str | None,
             gflops_per_sample: float | None, peak_gflops: float | None) -> dict:
    """The perf record: the timed loop's figures, the reference FPS of --soc and the ratio of
    like with like (the seeds' tables are ais_bench compute-only figures, so the ratio uses
    compute-only FPS where the runtime reports it, and says when it had to use end-to-end)."""
    row = dict(timing_summary)
    reference = spec.reference_fps.get(soc, {}).get(batch_size) if soc else None
    row["reference_soc"] = soc
    row["reference_fps"] = reference
    compared = row.get("compute_fps") or row["fps"]
    row["ratio_basis"] = "compute-only" if row.get("compute_fps") else "end-to-end (the runtime reports no compute time)"
    row["ratio"] = compared / reference if isinstance(reference, (int, float)) else None
    if gflops_per_sample:
        row["gflops_per_sample"] = gflops_per_sample
        row["gflops_per_s"] = gflops_per_sample * compared
        if peak_gflops:
            row["peak_gflops"] = peak_gflops
            row["fraction_of_peak"] = min(1.0, row["gflops_per_s"] / peak_gflops)
    return row
