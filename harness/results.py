"""One typed result per row kind, built by one function each from the stage outputs.

A row is one model x backend x precision x batch size. Three kinds of result fill it:

* :class:`AccuracyResult` (:func:`accuracy_result`) -- the deployed model against PyTorch on the
  same samples: data read completely, outputs finite, element-wise within the precision's
  tolerance, task-level agreement within its limits, metrics within tolerance;
* the published verdict (``harness.published``) -- against the seed's figures where they apply;
* :class:`PerfResult` (:func:`perf_result`) -- the timed loop's figures beside the reference
  table, each timing checked before it is believed, every timed round audited.

Each result carries its :class:`Figure` list (what the gate compares, the pinned references hold
and the report draws) and its :class:`Finding` list (what failed, what was noted, what does not
apply). A test builds the result, records it, and raises :class:`RowFailed` if it failed; the
report, the gate and the history read the same figures and findings and decide nothing anew.
Adding a metric or a finding kind is an edit here and in the one builder that makes it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from harness import agreement as agreement_stats
from harness.figures import Figure, FigureKind, Finding, FindingKind, Verdict, finite
from harness import published
from harness.outputs import DeployedRun, ReferenceRun
from harness.spec import Metric, ModelSpec

NAMED = 10  # items named one by one in a message before "... and N more"


class RowFailed(AssertionError):
    """A row's verdict is red; the message names the row and each failing finding."""


@dataclass
class Result:
    part: str
    figures: list[Figure] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.kind is FindingKind.FAILURE]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> Verdict:
        if any(f.kind is FindingKind.NOT_APPLICABLE for f in self.findings):
            return Verdict.NOT_APPLICABLE
        return Verdict.of(self.passed)

    def fail(self, what: str, message: str) -> None:
        self.findings.append(Finding(FindingKind.FAILURE, self.part, what, message))

    def note(self, what: str, message: str) -> None:
        self.findings.append(Finding(FindingKind.NOTE, self.part, what, message))

    def details(self) -> dict:
        """The part's own fields for results.json besides figures and findings."""
        return {}

    def record(self) -> dict:
        """What a row keeps of this result (fixtures/report.py writes it; harness/records.py reads it)."""
        return {self.part: {**self.details(), "verdict": self.verdict},
                "figures": [f.as_dict() for f in self.figures],
                "findings": [f.as_dict() for f in self.findings]}

    def raise_if_failed(self, row: str, extra: str = "") -> None:
        if self.failures:
            raise RowFailed(f"{row}: " + "; ".join(str(f) for f in self.failures) + (f"\n{extra}" if extra else ""))


def listing(names: Sequence[str], count: int | None = None) -> str:
    """The first names, then how many of the ``count`` items (default: the names) are not shown:
    a dataset summary keeps only some of the names, so its count can exceed them."""
    shown = list(names[:NAMED])
    rest = (len(names) if count is None else count) - len(shown)
    return ", ".join(shown) + (f" ... and {rest} more" if rest > 0 else "")


# ---------------------------------------------------------------------------------------- accuracy

@dataclass
class AccuracyResult(Result):
    part: str = "accuracy"
    elementwise: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    samples: int = 0

    @property
    def diverged(self) -> bool:
        """The deployed outputs left PyTorch's (element-wise or in the task's terms): where the
        divergence starts is worth localising."""
        return any(f.what == "element-wise" or f.part == "accuracy" and f.what in agreement_stats.STATISTICS
                   for f in self.failures)

    def details(self) -> dict:
        return {"elementwise": self.elementwise, "samples": self.samples}


def judge_delta(metric: Metric, torch_value: float, deployed_value: float, precision: str) -> Figure:
    """A metric of the deployed model against PyTorch's on the same samples."""
    tolerance = metric.tolerance.get(precision)
    if tolerance is None:
        raise KeyError(f"metric {metric.name} declares no tolerance for precision {precision!r}")
    if math.isnan(torch_value) and math.isnan(deployed_value):
        verdict = None  # no sample of the dataset feeds this metric (e.g. a pass it does not hold)
    else:
        verdict = Verdict.of(abs(deployed_value - torch_value) <= tolerance)  # NaN on one side fails
    return Figure("accuracy", metric.name, finite(deployed_value), metric.unit, metric.higher_is_better,
                  FigureKind.ACCURACY, tolerance, finite(torch_value), "PyTorch", verdict)


def data_findings(result: Result, dataset: dict, accepted: Sequence[str] = (), accept_missing: bool = False) -> None:
    """Every listed item that was missing or unreadable fails the row unless the user accepted it
    by name (--accept-bad-items), or accepted absent items as a partial copy of the dataset
    (--accept-missing); what was accepted is noted in the row."""
    root = dataset.get("root", "?")
    named_missing = dataset.get("missing_names", [])
    missing = [m for m in named_missing if m not in accepted]
    failed = {k: v for k, v in (dataset.get("failed") or {}).items() if k not in accepted}
    count = len(missing) + max(dataset.get("missing", 0) - len(named_missing), 0)
    if count and accept_missing:
        result.note("data", f"{count} listed item(s) absent under {root}, left out as a partial copy "
                            f"(--accept-missing): {listing(missing, count)}")
    elif count:
        result.fail("data", f"{count} listed item(s) missing under {root}: {listing(missing, count)} "
                            "(a partial copy of the dataset? say so with --accept-missing)")
    for item, why in list(failed.items())[:NAMED]:
        result.fail("data", f"unreadable item {item} under {root}: {why}")
    if len(failed) > NAMED:
        result.fail("data", f"... and {len(failed) - NAMED} more unreadable items")
    taken = [a for a in accepted if a in named_missing or a in (dataset.get("failed") or {})]
    if taken:
        result.note("data", f"left out as accepted with --accept-bad-items: {listing(taken)}")
    rebuilt = dataset.get("rebuilt") or {}
    if rebuilt:  # a damaged cache entry is never used: rebuilt from the dataset and the network
        result.note("data", f"rebuilt {len(rebuilt)} cache entries: {'; '.join(list(rebuilt.values())[:NAMED])}")


def accuracy_result(spec: ModelSpec, precision: str, reference: ReferenceRun, deployed: DeployedRun,
                    accepted_bad_items: Sequence[str] = (), accept_missing: bool = False) -> AccuracyResult:
    """The deployed model against PyTorch on the same samples: a complete gate of the deployment
    whatever the weights."""
    data = deployed.dataset or reference.dataset
    result = AccuracyResult(data=data, samples=len(deployed.sample_ids), elementwise=deployed.elementwise.as_dict())
    if not deployed.sample_ids:
        result.fail("data", f"nothing was judged: the dataset under {data.get('root', '?')} yielded no sample "
                            f"({data.get('listed', 0)} item(s) listed, {data.get('read', 0)} read)")
    data_findings(result, data, accepted_bad_items, accept_missing)
    for where, bad in (("PyTorch", reference.nonfinite), ("the deployed model", deployed.nonfinite)):
        if bad:
            first = next(iter(bad))
            result.fail("finite", f"{where} produced NaN or Inf on {len(bad)} sample(s), first {first} "
                                  f"(outputs {', '.join(bad[first])})")
    for problem in deployed.output_problems:
        result.fail("outputs", problem)
    stats = deployed.elementwise
    if deployed.sample_ids and not stats.passed:
        result.fail("element-wise", f"{stats.message()} (vs PyTorch, {precision} tolerance)")
    result.figures.append(Figure("accuracy", "max_abs_diff", finite(stats.max_abs), "", False, FigureKind.INFO,
                                 reference=stats.tolerance.atol, reference_name="atol",
                                 verdict=Verdict.of(stats.passed)))
    for name, judged in agreement_stats.judge(spec.agreement, deployed.agreement, precision).items():
        higher = judged["bound"] == "min"
        result.figures.append(Figure("accuracy", name, finite(judged["value"]), judged["unit"], higher,
                                     FigureKind.INFO, reference=judged["limit"], reference_name="limit",
                                     verdict=Verdict.of(judged["passed"])))
        if not judged["passed"]:
            relation = ">=" if higher else "<="
            result.fail(name, f"{judged['value']:.4g}{judged['unit']} vs PyTorch, expected {relation} "
                              f"{judged['limit']:g}{judged['unit']} for {precision}")
    for metric in spec.metrics:
        figure = judge_delta(metric, reference.metrics.get(metric.name, math.nan),
                             deployed.metrics.get(metric.name, math.nan), precision)
        result.figures.append(figure)
        if figure.verdict is Verdict.FAIL:
            result.fail(metric.name, f"deployed {_fmt(figure.value)} vs PyTorch {_fmt(figure.reference)} "
                                     f"(tolerance {figure.tolerance:g} for {precision})")
    return result


def conformance_result(precision: str, deployed: DeployedRun) -> Result:
    """The deployed outputs element-wise against PyTorch's at one batch size (``-m conformance``)."""
    stats = deployed.elementwise
    result = Result("conformance")
    result.figures.append(Figure("conformance", "outside_tolerance", float(stats.outside), "elements", False,
                                 reference=0.0, reference_name="allowed", verdict=Verdict.of(stats.passed)))
    for problem in deployed.output_problems:
        result.fail("outputs", problem)
    if not stats.passed:
        result.fail("element-wise", f"{stats.message()} (vs PyTorch, {precision} tolerance)")
    return result


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.6g}"


# ---------------------------------------------------------------------------------------- perf

@dataclass
class PerfResult(Result):
    part: str = "perf"
    timing: dict = field(default_factory=dict)  # how the figures were measured: rounds, warm-up, timer, audit
    peak: dict | None = None  # {'gflops', 'source', 'precision'} of the device, or None with a reason

    def details(self) -> dict:
        return {**self.timing, "peak": self.peak}


def perf_result(spec: ModelSpec, batch_size: int, loop, soc: str | None, graph_count, peak) -> PerfResult:
    """The perf row from a checked timed loop (:class:`harness.perf.TimedLoop`): FPS and latency,
    the reference FPS of --soc and the ratio of like with like (the seeds' tables are ais_bench
    compute-only figures, so the ratio uses compute-only FPS where the runtime reports it), the
    GFLOP/s of ``graph_count`` (:class:`harness.flops.GraphCount`, None: no count), the fraction
    of the device's peak (no peak, no fraction) and of the row's roofline (harness/roofline.py)."""
    result = PerfResult(timing=loop.description(), peak=asdict(peak) if peak is not None else None)
    result.findings += loop.findings
    figures = loop.figures(batch_size)
    result.figures += figures.values()
    reference = spec.reference_fps.get(soc, {}).get(batch_size) if soc else None
    compared_name = "compute_fps" if "compute_fps" in figures else "fps"
    compared = figures.get(compared_name)
    basis = "compute-only" if compared_name == "compute_fps" else "end-to-end (the runtime reports no compute time)"
    result.timing["ratio_basis"] = basis
    if isinstance(reference, (int, float)):
        ratio = compared.value / reference if compared is not None and compared.value is not None else None
        result.figures.append(Figure("perf", "reference_ratio", ratio, "", True, FigureKind.INFO,
                                     reference=float(reference), reference_name=f"{soc} table ({basis})"))
    if graph_count is not None and compared is not None and compared.value is not None:
        from harness.roofline import add_efficiency

        add_efficiency(result, graph_count, compared.value, batch_size, peak)
    return result


# ---------------------------------------------------------------------------------------- published

@dataclass
class PublishedResult(Result):
    part: str = "published"
    reason: str | None = None  # why the published figures do not apply; None when they do
    _why: dict = field(default_factory=dict, repr=False)  # metric -> the rule's own words

    @property
    def applies(self) -> bool:
        return self.reason is None

    def details(self) -> dict:
        """The row's published part as the report reads it: {applies, reason, metrics: {name:
        {published, value, verdict, why}}}."""
        metrics = {f.name: {"published": f.reference, "value": f.value, "verdict": (f.verdict or Verdict.NOT_APPLICABLE).value,
                            "why": self._why.get(f.name, self.reason)} for f in self.figures}
        return {"applies": self.applies, "reason": self.reason, "metrics": metrics}


def published_result(spec: ModelSpec, weights, data: dict | None, profile: str,
                     deployed_metrics: Mapping[str, float] | None) -> PublishedResult:
    """The deployed model's metrics against the seed's published figures, where they apply
    (harness/published.py decides where, and judges each metric two-sided)."""
    result = PublishedResult(reason=published.published_not_applicable(spec, weights, data, profile))
    if result.reason:
        result.findings.append(Finding(FindingKind.NOT_APPLICABLE, "published", "published", result.reason))
    for metric in spec.metrics:
        if metric.published is None:
            continue
        value = (deployed_metrics or {}).get(metric.name, math.nan)
        verdict, why = (None, result.reason) if result.reason else published.judge_published(metric, value)
        result._why[metric.name] = why
        result.figures.append(Figure("published", metric.name, finite(value), metric.unit, metric.higher_is_better,
                                     FigureKind.INFO, metric.published_band, metric.published, "published",
                                     verdict))
        if verdict is Verdict.FAIL:
            result.fail("published", why)
    return result
