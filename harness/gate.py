"""The nightly regression gate: each row against its pinned reference, and against the last night.

The pinned references (``harness.references``, ``references/pinned.yaml``) are what a team
accepted; judged against them, a slow drift adds up and goes red once it leaves the band. The
last night is the second comparison: beside a row's pin it is a noted finding that fails
nothing; for a row without a pin (reported as such), and without ``--references``, it is the gate.

One comparison, :func:`compare_row`, judges a row's gated figures (kind ``accuracy`` with its
absolute band, kind ``speed`` with the relative ``--fps-regression``) against one other row or
pin; :class:`Baseline` composes the two comparisons and the row's own verdict, and
:func:`compare_runs` adds what only a whole run shows (pinned rows missing from it):

    python -m harness.gate reports/latest/results.json --references references/pinned.yaml \\
        [--baseline reports/<last-night>/results.json] [--fps-regression 0.3 --fps-regression Ascend310P3=0.1]

Exit status: 0 pass, 1 a row regressed, is missing, errored, is red on its own verdict or cannot
be compared (each named), 2 nothing was gated (nothing pinned yet, or nothing comparable), a
file could not be read, or the command was misused.
"""
from __future__ import annotations

import argparse
import enum
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness import perfstats
from harness import references as refs
from harness.defaults import DEFAULT_FPS_REGRESSION
from harness.figures import Figure, FigureKind, FindingKind, finite
from harness.records import Row, RowKey, Run, Status, load_run


class Against(str, enum.Enum):
    """What a finding was judged against."""
    PINNED = "pinned"
    BASELINE = "baseline"

    @property
    def words(self) -> str:
        return "the pinned reference" if self is Against.PINNED else "the baseline"


class Kind(str, enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"  # outside the band in the good direction: the reference needs a look
    WITHIN = "within"  # compared and inside the band
    MISSING = "missing"
    ABSENT = "absent"  # a pinned backend with no row in this run at all (a job that did not report)
    NOT_ASKED = "not asked"  # pinned rows this run was not asked to run (another model, batch size, backend)
    ERRORED = "errored"
    RED = "red"  # the row's own verdict failed, whatever its figures
    INCONCLUSIVE = "inconclusive"  # the rounds' noise is wider than the allowance: said, with what would settle it
    NOT_COMPARABLE = "not comparable"
    NO_REFERENCE = "no pinned reference"  # reported; a new row is pinned by an explicit update
    PIN_ELSEWHERE = "pin does not apply"  # pinned on another machine, soc, profile or weights: named

    @property
    def failing(self) -> bool:
        return self in (Kind.REGRESSION, Kind.MISSING, Kind.ERRORED, Kind.RED, Kind.NOT_COMPARABLE)

    @property
    def compared(self) -> bool:
        return self in (Kind.REGRESSION, Kind.IMPROVEMENT, Kind.WITHIN)


@dataclass(frozen=True)
class GateFinding:
    kind: Kind
    row: str  # 'model/backend/precision/bsN'
    what: str  # a figure 'part/name', or 'row'
    detail: str  # the figures and the rule they were judged by, or why nothing was compared
    against: Against = Against.BASELINE
    binding: bool = True  # False: a noted finding (the last night beside the pins), failing nothing

    @property
    def failing(self) -> bool:
        return self.binding and self.kind.failing

    @property
    def compared(self) -> bool:
        return self.binding and self.kind.compared

    def __str__(self) -> str:
        return f"{self.kind.value.upper()} {self.row} {self.what}: {self.detail}"

    def as_dict(self) -> dict:
        """As a row keeps it (results.json's ``gate`` list); ``part`` lets parts of a row merge."""
        return {**asdict(self), "kind": self.kind.value, "against": self.against.value,
                "part": self.what.split("/")[0]}

    @classmethod
    def from_dict(cls, data: dict) -> "GateFinding":
        return cls(Kind(data["kind"]), data["row"], data["what"], data["detail"], Against(data["against"]),
                   bool(data["binding"]))


def findings_of(row: Row) -> list[GateFinding]:
    """The gate's findings a row keeps (the in-run gate wrote them)."""
    return [GateFinding.from_dict(f) for f in row.gate]


# the perf rounds' outcome, as the gate's kind of finding
_OUTCOMES = {perfstats.Outcome.REGRESSION: Kind.REGRESSION, perfstats.Outcome.IMPROVEMENT: Kind.IMPROVEMENT,
             perfstats.Outcome.NO_CHANGE: Kind.WITHIN, perfstats.Outcome.INCONCLUSIVE: Kind.INCONCLUSIVE}
MIN_ROUNDS = 5  # fewer timed rounds on a side: the figures alone are compared, as before rounds were kept


def rounds_of(row: Row | None) -> list[float]:
    """The timed rounds (ms per batch) a row's speed figures come from: a perf row's
    ``perf.rounds_ms``, a pin's own."""
    return [] if row is None else [r for r in row.part("perf").get("rounds_ms") or [] if finite(r) is not None]


def _compare_speed(now: Figure, then: Figure, fps_fraction: float,
                   now_rounds: list[float], then_rounds: list[float]) -> tuple[Kind, str]:
    """With the rounds of both sides, their distributions (the bootstrap interval of the ratio
    of medians, harness.perfstats): a regression only where the whole interval lies beyond the
    allowance, inconclusive where it straddles it. Without, the two figures."""
    now_value, then_value = finite(now.value), finite(then.value)
    if not then_value > 0 or not now_value > 0:
        return Kind.NOT_COMPARABLE, "a speed needs a positive figure on both sides"
    if len(now_rounds) >= MIN_ROUNDS and len(then_rounds) >= MIN_ROUNDS:
        compared = perfstats.compare_rounds(now_rounds, then_rounds, fps_fraction)
        return _OUTCOMES[compared.outcome], f"({compared.message()})"
    change = now_value / then_value - 1
    gain = change if now.higher_is_better else -change
    kind = Kind.REGRESSION if gain < -fps_fraction else Kind.IMPROVEMENT if gain > fps_fraction else Kind.WITHIN
    return kind, f"({change:+.1%}, allowed {'drop' if now.higher_is_better else 'rise'} {fps_fraction:.0%})"


def _compare_accuracy(now: Figure, then: Figure) -> tuple[Kind, str]:
    tolerance = finite(now.tolerance)
    tolerance = finite(then.tolerance) if tolerance is None else tolerance
    if tolerance is None:
        return Kind.NOT_COMPARABLE, "no finite tolerance on either side"
    change = finite(now.value) - finite(then.value)
    gain = change if now.higher_is_better else -change
    kind = Kind.REGRESSION if gain < -tolerance else Kind.IMPROVEMENT if gain > tolerance else Kind.WITHIN
    return kind, f"({change:+.3g}{now.unit}, tolerance ±{tolerance:g})"


def _compare_figure(row: str, name: str, now: Figure | None, then: Figure | None, fps_fraction: float,
                    against: Against, source: str, rounds: tuple[list[float], list[float]] = ([], [])) -> GateFinding | None:
    now_value = finite(now.value) if now else None
    then_value = finite(then.value) if then else None
    if now_value is None and then_value is None:
        return None  # neither side has the figure (a metric without samples in both)
    if then_value is None:
        side = "no pinned value: pin it with `python -m harness.references update`" if against is Against.PINNED \
            else ("the baseline has no such figure" if then is None else f"the baseline has {then.value!r}")
        return GateFinding(Kind.NOT_COMPARABLE, row, name, f"this run {now_value:.6g}, {side}{source}", against)
    if now is None:
        return GateFinding(Kind.MISSING, row, name, f"{against.value} {then_value:.6g}, this run has no figure{source}",
                           against)
    if now_value is None:
        return GateFinding(Kind.NOT_COMPARABLE, row, name, f"this run {now.value!r} vs {against.value} {then_value:.6g}: "
                                                           f"a figure on one side only cannot be compared{source}", against)
    speed = FigureKind.SPEED in (now.kind, then.kind)
    kind, rule = _compare_speed(now, then, fps_fraction, *rounds) if speed else _compare_accuracy(now, then)
    if kind is Kind.NOT_COMPARABLE:
        return GateFinding(kind, row, name, f"this run {now_value:.6g} vs {against.value} {then_value:.6g}: {rule}{source}",
                           against)
    unit = now.unit or then.unit
    shown = f"{now_value:.4g} {unit} vs {against.value} {then_value:.4g}" if speed else \
        f"{now_value:.6g}{unit} vs {against.value} {then_value:.6g}{unit}"
    return GateFinding(kind, row, name, f"{shown} {rule}{source}", against)


def compare_row(current: Row | None, baseline: Row | None, fps_fraction: float, against: Against = Against.BASELINE,
                parts: set[str] | None = None, source: str = "") -> list[GateFinding]:
    """Every finding for one row: ``current`` is this run's row (or the part of it a test holds),
    ``baseline`` the row or pin it is judged against, None where there is none. Only figures of
    ``parts`` are judged; by default the parts ``current`` has figures of (a test holding only
    the accuracy part compares only that), :func:`compare_runs` passes every part so that a part
    missing from the row fails.

    Fails (see :attr:`GateFinding.failing`) a row missing from this run, an errored row, an out-
    of-memory row the baseline ran, a figure that left its band, a figure present on one side and
    absent or not finite on the other, and a row run at other shapes than the baseline's. Rows
    out of memory on both sides (the seeds' expected rows) are fine."""
    if current is None:
        return [] if baseline is None else [GateFinding(Kind.MISSING, baseline.key.name, "row",
                                                        f"in the {against.value} rows, not in this run{source}", against)]
    row = current.key.name
    if current.status is Status.ERROR:
        return [GateFinding(Kind.ERRORED, row, "row", current.error, against)]
    if baseline is None:
        return []  # a new row: nothing to compare it with
    now_oom, then_oom = current.status is Status.OOM, baseline.status is Status.OOM
    if now_oom or then_oom:
        if now_oom and then_oom:
            return []
        if now_oom:
            return [GateFinding(Kind.ERRORED, row, "row", f"out of memory ({current.error}); the {against.value} row ran",
                                against)]
        return [GateFinding(Kind.IMPROVEMENT, row, "row", f"ran; the {against.value} row was out of memory", against)]
    if baseline.status is Status.ERROR:
        return []  # nothing to compare against; this run's row stands on its own verdicts
    if current.key.profile and baseline.key.profile and current.key.profile != baseline.key.profile:
        return [GateFinding(Kind.NOT_COMPARABLE, row, "row", f"run at {current.key.profile} profile shapes, the "
                                                             f"{against.value} row at {baseline.key.profile}", against)]
    now, then = current.gated, baseline.gated
    judged = parts if parts is not None else {name.split("/")[0] for name in now}
    left_out = baseline.details.get("left_out") or {}  # a pin's figures deliberately not pinned
    findings = []
    for name in sorted(set(now) | set(then)):
        if name.split("/")[0] in judged and name not in left_out:
            finding = _compare_figure(row, name, now.get(name), then.get(name), fps_fraction, against, source,
                                      (rounds_of(current), rounds_of(baseline)))
            if finding is not None:
                findings.append(finding)
    return findings


def _own_verdict(current: Row) -> list[GateFinding]:
    """A row red on its own verdict is red in the gate, even with every figure inside its pin."""
    if current.status is not Status.FAIL:
        return []
    failures = [str(f) for f in current.findings_of(FindingKind.FAILURE)]
    return [GateFinding(Kind.RED, current.key.name, "row", "its own verdict is fail: " + "; ".join(failures[:3])
                        + (f" ... and {len(failures) - 3} more" if len(failures) > 3 else ""), Against.PINNED)]


def _weights_differ(current: Row, pin: refs.Pin, header: dict) -> str:
    """'' when the pin's weights are this row's, else what differs (a pin from other weights
    does not apply: its figures measured another network)."""
    if not current.part("weights"):
        return ""
    now = refs.provenance(current, header)["weights"]
    return "" if now == pin.taken_from["weights"] else f"weights {pin.taken_from['weights']} -> {now}"


@dataclass(frozen=True)
class Baseline:
    """What rows are judged against: a row's pinned reference (binding) and the last night's run
    (a noted finding beside a pin; binding for a row that has no pin)."""
    references: refs.References | None = None
    last_night: Run | None = None

    def __bool__(self) -> bool:
        return self.references is not None or self.last_night is not None

    def pin_of(self, current: Row, header: dict) -> tuple[refs.Pin | None, GateFinding | None]:
        """The row's pin where one applies, else the finding that says why there is none."""
        match = self.references.match(current.key)
        pin, elsewhere = match.pin, match.why_not()
        differs = _weights_differ(current, pin, header) if pin is not None else ""
        if differs:
            pin, elsewhere = None, f"pinned from {differs}"
        if pin is not None or current.status in (Status.ERROR, Status.OOM):
            return pin, None
        if elsewhere:
            return None, GateFinding(Kind.PIN_ELSEWHERE, current.key.name, "row",
                                     f"{current.key.label}: {elsewhere}; treated as unpinned here", Against.PINNED)
        return None, GateFinding(Kind.NO_REFERENCE, current.key.name, "row",
                                 f"{current.key.label} has no pinned reference in {self.references.path}; pin it with "
                                 "`python -m harness.references update`", Against.PINNED)

    def judge(self, current: Row | None, fps_fraction: float, parts: set[str] | None = None,
              pin: refs.Pin | None = None, header: dict | None = None, own_verdict: bool = True,
              key: RowKey | None = None) -> list[GateFinding]:
        """Every finding for one row of this run (``current``; None: the pinned row ``pin`` or the
        last night's row ``key`` is missing from it)."""
        findings = []
        if current is not None and own_verdict:
            findings += _own_verdict(current)
        if self.references is not None:
            if current is not None:
                pin, why = self.pin_of(current, header or {})
                findings += [why] if why else []
            findings += compare_row(current, pin.row if pin else None, fps_fraction, Against.PINNED, parts,
                                    f"; {pin.provenance()}" if pin else "")
        if self.last_night is not None:
            noted = pin is not None  # a row without a pin is gated against the last night until pinned
            last = self.last_night.row(current.key if current is not None else pin.key if pin else key)
            for finding in compare_row(current, last, fps_fraction, Against.BASELINE, parts):
                if not (noted and finding.kind in (Kind.ERRORED, Kind.MISSING)):  # said once, against the pin
                    findings.append(replace(finding, binding=not noted))
        return findings

    def gate_result(self, record: dict, result, fps_fraction: float, header: dict | None = None) -> dict:
        """The in-run gate of one test's typed result (``record``: its row so far): failing
        findings fail ``result``, the others worth saying are its notes; returns what the row
        keeps of the gate. The row's own verdict is the test's, not judged twice here."""
        found = self.judge(Row.of(record), fps_fraction, header=header, own_verdict=False)
        for finding in found:
            if finding.failing:
                result.fail("gate", f"against {finding.against.words}: {finding}")
            elif finding.kind is not Kind.WITHIN:
                result.note("gate", f"against {finding.against.words}{'' if finding.binding else ' (noted)'}: {finding}")
        return {"gate": [f.as_dict() for f in found if f.kind is not Kind.WITHIN]}


def load_baseline(last_night: Path | None = None, references: Path | None = None) -> Baseline:
    """The gate's baseline from the files given, or :class:`ReferencesError` naming the file that
    cannot be read (the in-run gate turns it into a usage error at start)."""
    return Baseline(refs.load(references) if references else None, load_run(last_night) if last_night else None)


def _absent(current: Run, baseline: Baseline, judged_elsewhere: set[RowKey]) -> tuple[list[refs.Pin], list[GateFinding]]:
    """The pins this run must show (their backend ran) and, per pinned backend with no row in
    this run at all, one finding naming it: a job that did not report is named, not failed row
    by row (the night's summary says which report is absent)."""
    if baseline.references is None:
        return [], []
    ran = {key.backend for key in current.rows}
    expected, absent = [], {}
    for key, pin in baseline.references.pins.items():
        if key in current.rows or key in judged_elsewhere:
            continue
        if key.backend in ran:
            expected.append(pin)
        else:
            absent.setdefault(key.backend, []).append(key)
    return expected, [GateFinding(Kind.ABSENT, backend, "rows", f"{len(keys)} pinned row(s) of {backend}, no row of it in "
                                                                f"this run: {', '.join(k.name for k in keys[:5])}"
                                                                + (" ..." if len(keys) > 5 else ""), Against.PINNED)
                      for backend, keys in sorted(absent.items())]


def unrun_pins(references: refs.References, ran: set[RowKey], asked: set[RowKey]) -> list[GateFinding]:
    """The in-run gate's completeness: every pinned row the run was asked for (``asked``: its
    models, batch sizes, backends, profile, soc and machine) but did not run is missing; the pins
    it was not asked for are named in one line, not judged (the night gates them all)."""
    missing = [pin for key, pin in references.pins.items() if key in asked and key not in ran]
    others = [key for key in references.pins if key not in asked and key not in ran]
    found = [GateFinding(Kind.MISSING, pin.key.name, "row", f"pinned ({pin.provenance()}) and asked for, but this run "
                                                            "has no row of it", Against.PINNED) for pin in missing]
    if others:
        names = sorted(key.name for key in others)
        found.append(GateFinding(Kind.NOT_ASKED, f"{len(others)} pinned row(s)", "rows",
                                 "not asked in this run, so not gated here: " + ", ".join(names[:8])
                                 + (f" ... and {len(names) - 8} more" if len(names) > 8 else ""), Against.PINNED))
    return found


def _run_otherwise(current: Run, gone: list[Row], baseline: Baseline) -> list[GateFinding]:
    """A last-night row this run ran at another precision (or profile, soc, machine): named as
    such, not as a missing row beside a new one; it cannot be compared (binding where the row
    has no pin, noted beside one)."""
    found = []
    for then in gone:
        now = next((r for r in current.rows.values() if r.key.model_row == then.key.model_row), None)
        if now is not None:
            found.append(GateFinding(Kind.NOT_COMPARABLE, now.key.name, "row",
                                     "this run and the baseline ran it otherwise: " + "; ".join(now.key.differences(then.key))
                                     + f" (the baseline row {then.key.name})", Against.BASELINE,
                                     binding=baseline.references is None or baseline.references.match(now.key).pin is None))
    return found


def compare_runs(current: Run, baseline: Baseline, fps_fraction: float,
                 soc_fractions: dict[str, float] | None = None) -> list[GateFinding]:
    """Every row of this run, every pin and every row of the last night, every part judged
    (:meth:`Baseline.judge`); a pinned row absent from a backend that ran is missing, a pinned
    backend absent from the run is named. A soc's own allowed FPS drop comes from ``soc_fractions``."""
    soc_fractions = soc_fractions or {}
    findings: list[GateFinding] = []
    elsewhere = {p.key for row in current.rows.values() if baseline.references is not None
                 for p in baseline.references.match(row.key).elsewhere}
    expected, absent = _absent(current, baseline, elsewhere)
    last = baseline.last_night.rows.values() if baseline.last_night is not None else ()
    gone = [r for r in last if current.row(r.key) is None and
            not any(p.key.in_run == r.key.in_run for p in expected)]
    findings += _run_otherwise(current, gone, baseline)
    gone = [r for r in gone if not any(row.key.model_row == r.key.model_row for row in current.rows.values())]
    cases = [(row, None) for row in current.rows.values()] + [(None, pin) for pin in expected] + \
        [(None, r) for r in gone]
    for row, other in sorted(cases, key=lambda c: (c[0] or c[1]).key.sort_key()):
        key = (row or other).key
        sources = [row, other.row if isinstance(other, refs.Pin) else other,
                   baseline.last_night.row(key) if baseline.last_night is not None else None]
        parts = {name.split("/")[0] for source in sources if source is not None for name in source.gated}
        pin = other if isinstance(other, refs.Pin) else None
        findings += baseline.judge(row, soc_fractions.get(key.soc, fps_fraction), parts, pin, current.header, key=key)
    return findings + absent


def environment_differences(current: dict, baseline: dict) -> list[str]:
    """'key: baseline value -> this run's value' for every environment entry that differs
    (machine, CPU, tool versions): figures from different machines or tools need that caveat."""
    return [f"{key}: {baseline.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(current) | set(baseline)) if current.get(key) != baseline.get(key)]


def parse_fps_regression(values: list[str]) -> tuple[float, dict[str, float]]:
    default, per_soc = DEFAULT_FPS_REGRESSION, {}
    for value in values:
        soc, _, number = value.rpartition("=")
        try:
            fraction = float(number)
        except ValueError:
            raise ValueError(f"--fps-regression {value}: expected a fraction (0.1) or SOC=fraction (Ascend310P3=0.1)") from None
        if not 0 < fraction < 1:
            raise ValueError(f"--fps-regression {value}: the fraction must lie between 0 and 1")
        if soc:
            per_soc[soc] = fraction
        else:
            default = fraction
    return default, per_soc


@dataclass(frozen=True)
class Verdict:
    """The gate's one verdict over a run: the exit status and its words agree by construction."""
    findings: tuple[GateFinding, ...]

    @property
    def failing(self) -> list[GateFinding]:
        return [f for f in self.findings if f.failing]

    @property
    def compared(self) -> int:
        return sum(f.compared for f in self.findings)

    @property
    def exit_status(self) -> int:
        return 1 if self.failing else 0 if self.compared else 2

    @property
    def headline(self) -> str:
        if self.failing:
            return "RED"
        return "GREEN" if self.compared else "NOT GATED"

    def why_not_gated(self, references: refs.References | None) -> str:
        if references is not None and not references.pins:
            return f"nothing pinned yet in {references.path}: pin an accepted night with `python -m harness.references update`"
        return "no figure of this run could be compared with a pin or the baseline"


def verdict_markdown(verdict: Verdict, results: Path, baseline: Baseline) -> str:
    """The gate's verdict for a job summary: one line, then each failing, improved and noted finding."""
    findings = verdict.findings
    against = " and ".join(
        ([f"the pinned references `{baseline.references.path}`"] if baseline.references else [])
        + ([f"the last night `{baseline.last_night.path}`" + (" (noted)" if baseline.references else "")]
           if baseline.last_night else []))
    line = f"**{verdict.headline}**: `{results}` against {against}: {len(verdict.failing)} failing finding(s), " \
           f"{verdict.compared} figure(s) compared."
    if verdict.exit_status == 2:
        line += f" {verdict.why_not_gated(baseline.references)}."
    lines = ["## Gate", "", line, ""]
    improved = "Improved (the pin needs a look)" if baseline.references else "Improved against the baseline"
    for title, chosen in (("Failing", verdict.failing),
                          (improved, [f for f in findings if f.binding and f.kind is Kind.IMPROVEMENT]),
                          ("Inconclusive: the noise is wider than the allowance", [f for f in findings if f.kind is Kind.INCONCLUSIVE]),
                          ("Absent from this run", [f for f in findings if f.kind is Kind.ABSENT]),
                          ("Pins that do not apply here", [f for f in findings if f.kind is Kind.PIN_ELSEWHERE]),
                          ("Without a pinned reference", [f for f in findings if f.kind is Kind.NO_REFERENCE]),
                          ("Noted against the last night", [f for f in findings if not f.binding and f.kind is not Kind.WITHIN])):
        if chosen:
            lines += [f"### {title}", ""] + [f"- {f}" for f in chosen] + [""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.gate", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="this run's results.json")
    parser.add_argument("--references", type=Path, help=f"pinned references (e.g. {refs.DEFAULT_PATH.relative_to(refs.PROJECT)})")
    parser.add_argument("--baseline", type=Path, help="the last night's results.json")
    parser.add_argument("--fps-regression", action="append", default=[], metavar="F|SOC=F",
                        help=f"allowed FPS drop as a fraction (default {DEFAULT_FPS_REGRESSION}); SOC=F for the rows of one soc")
    parser.add_argument("--markdown", type=Path, help="also write the verdict as markdown (a job summary)")
    return parser


def _print_environment_notes(current: Run, baseline: Baseline, args) -> None:
    """Where this run and what it is judged against ran differently (machine, tool versions)."""
    sources = ([(f"the pinned references {args.references}", pin.set_by.get("environment") or {})
                for pin in {p.run: p for p in baseline.references.pins.values()}.values()] if baseline.references else []) \
        + ([(f"the baseline {args.baseline}", baseline.last_night.header.get("environment") or {})]
           if baseline.last_night else [])
    for what, environment in sources:
        differences = environment_differences(current.header.get("environment") or {}, environment)
        if differences:
            print(f"note: this run and {what} come from different machines or tool versions: {'; '.join(differences)}")
    if baseline.last_night:
        for row in sorted(current.rows.values(), key=lambda r: r.key.sort_key()):
            last = baseline.last_night.row(row.key)
            differences = environment_differences(row.details.get("environment") or {},
                                                  last.details.get("environment") or {}) if last else []
            if differences:
                print(f"note: {row.key.name} ran with other runtime settings than the baseline: {'; '.join(differences)}")


def _print_findings(verdict: Verdict, current: Run, baseline: Baseline) -> None:
    """Each finding worth a line, and the counts."""
    for finding in verdict.findings:
        if not finding.binding:
            if finding.kind is not Kind.WITHIN:
                print(f"note (against the last night, not gated): {finding}")
        elif finding.kind is Kind.IMPROVEMENT:
            print(f"{finding}" + (" (the pin needs a look)" if finding.against is Against.PINNED else ""))
        elif finding.kind is not Kind.WITHIN:
            print(finding)
    counts = {kind: sum(f.kind is kind and f.binding for f in verdict.findings) for kind in Kind}
    print(f"{verdict.compared} figure(s) compared over {len(current.rows)} row(s) of this run: "
          + ", ".join(f"{n} {kind.value}" for kind, n in counts.items()
                      if kind is not Kind.WITHIN and (n or kind.failing)))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.references is None and args.baseline is None:
        parser.error("give --references FILE (the pinned references), --baseline FILE (the last night), or both")
    try:
        fps_fraction, soc_fractions = parse_fps_regression(args.fps_regression)
        current = load_run(args.results)
        baseline = load_baseline(args.baseline, args.references)
    except ValueError as err:
        parser.error(str(err))
    _print_environment_notes(current, baseline, args)
    verdict = Verdict(tuple(compare_runs(current, baseline, fps_fraction, soc_fractions)))
    _print_findings(verdict, current, baseline)
    if args.markdown:
        args.markdown.write_text(verdict_markdown(verdict, args.results, baseline))
    if verdict.exit_status == 2:
        print(f"{args.results}: {verdict.why_not_gated(baseline.references)}: nothing was gated", file=sys.stderr)
    return verdict.exit_status


if __name__ == "__main__":
    sys.exit(main())
