"""The published verdict: the deployed model's metrics against the seed's published figures.

It applies only where the run measured what the seed measured: the published checkpoint (its
sha256 prefix checked where the file name carries one), the dataset whose own index lists every
item the figure was measured on, every one of them read (no --limit, no absent or unreadable item
left out), and the seed's shapes (``--profile full``). Otherwise it says which of these is missing,
each reason on its own. Where it applies it is two-sided: far better than published usually means
a different protocol, so it fails too, naming the metric, the value and the band.
"""
from __future__ import annotations

import math

from harness.checkpoint import Weights
from harness.figures import Verdict
from harness.spec import Metric, ModelSpec


def published_not_applicable(spec: ModelSpec, weights: Weights, data: dict | None, profile: str) -> str | None:
    """Why the published figure does not apply to this run ("; "-joined), or None when it does.

    ``data`` is the dataset summary (``IndexedDataset.summary``), or None before any data was
    read (then only the weights and the profile are judged)."""
    reasons = []
    if weights.seeded:
        reasons.append(f"seeded weights (no --weights-dir with {spec.checkpoint.filename})")
    elif not weights.published_file:
        sha = weights.provenance.get("sha256", "")
        reasons.append(f"checkpoint sha256 {sha[:8]}... does not start with {spec.checkpoint.sha256_prefix}: "
                       "not the published file")
    if data is not None:
        reasons += _data_reasons(spec, data)
    if profile != "full":
        reasons.append(f"{profile} profile shapes (use --profile full)")
    return "; ".join(reasons) or None


def _data_reasons(spec: ModelSpec, data: dict) -> list[str]:
    if data.get("generated"):
        return ["generated data (no --data-root)"]
    reasons = []
    listed = data.get("listed", 0)
    if spec.published_items and listed < spec.published_items:
        reasons.append(f"incomplete index: the dataset's index lists {listed} of the {spec.published_items} items "
                       "the published figure was measured on")
    limit = data.get("limit")
    if limit and limit < listed:
        reasons.append(f"--limit {limit}: {limit} of the {listed} listed items taken")
    if data.get("missing"):
        where = f" under {data['root']}" if data.get("root") else ""
        reasons.append(f"partial copy: {data['missing']} of the {listed} listed items absent{where}")
    failed = data.get("failed") or {}
    if failed:
        reasons.append(f"{len(failed)} listed item(s) unreadable: {', '.join(list(failed)[:3])}"
                       + (" ..." if len(failed) > 3 else ""))
    if not reasons and not data.get("complete"):  # a reader's own completeness rule, stated as it reported
        reasons.append(f"incomplete dataset ({data.get('read')} of {listed} listed items read)")
    return reasons


def judge_published(metric: Metric, value: float) -> tuple[Verdict, str]:
    """(verdict, why) of one metric against its published band, two-sided; ``why`` names the
    metric, the value and the band."""
    if metric.published is None:
        return Verdict.NOT_APPLICABLE, "no published figure"
    band = f"published {metric.published:g} ± {metric.published_band:g}{metric.unit}"
    if math.isnan(value):
        return Verdict.FAIL, f"{metric.name}: no value (NaN) to judge against the {band}"
    low, high = metric.published - metric.published_band, metric.published + metric.published_band
    said = f"{metric.name} {value:.6g}{metric.unit}"
    if value < low or value > high:
        worse = (value < low) == metric.higher_is_better
        side = "below" if value < low else "above"
        meaning = "worse than published" if worse else "better than published: check the protocol"
        return Verdict.FAIL, f"{said} lies {side} the {band} ({low:g} to {high:g}): {meaning}"
    return Verdict.PASS, f"{said} lies within the {band}"
