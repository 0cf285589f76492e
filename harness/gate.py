"""The nightly regression gate: each row against its pinned reference, and against the last night.

The pinned references (``harness.references``, ``references/pinned.yaml``) are what a team
accepted; judged against them, a slow drift adds up and goes red once it leaves the band. The
last night is the second comparison: beside a row's pin it is a noted finding that fails
nothing; for a row without a pin (reported as such), and without ``--references``, it is the gate.

One comparison, :func:`compare_row`, judges a row's gated figures (results.json format 2: the
record's ``figures``, kind ``accuracy`` with its absolute band, kind ``speed`` with the relative
``--fps-regression``) against one other record or pin; :class:`Baseline` composes the two
comparisons, and :func:`compare_runs` adds what only a whole run shows (rows missing from it):

    python -m harness.gate reports/latest/results.json --references references/pinned.yaml \\
        [--baseline reports/<last-night>/results.json] [--fps-regression 0.3 --fps-regression Ascend310P3=0.1]

Exit status: 0 pass, 1 a row regressed, is missing, errored or cannot be compared (each named),
2 nothing was comparable, a file could not be read, or the command was misused.
"""
from __future__ import annotations

import argparse
import enum
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from harness import references as refs
from harness.records import Run, load_run, row_name
from harness.references import gated_figures
from harness.results import finite
from video_model_conformance import DEFAULT_FPS_REGRESSION

PINNED, BASELINE = "pinned", "baseline"  # what a finding was judged against


class Kind(enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"  # outside the band in the good direction: the reference needs a look
    WITHIN = "within"  # compared and inside the band
    MISSING = "missing"
    ERRORED = "errored"
    NOT_COMPARABLE = "not comparable"
    NO_REFERENCE = "no pinned reference"  # reported; a new row is pinned by an explicit update

    @property
    def failing(self) -> bool:
        return self not in (Kind.IMPROVEMENT, Kind.WITHIN, Kind.NO_REFERENCE)


@dataclass(frozen=True)
class Finding:
    kind: Kind
    row: str  # 'model/backend/precision/bsN'
    what: str  # a figure 'part/name', or 'row'
    detail: str  # the figures and the rule they were judged by, or why nothing was compared
    against: str = BASELINE  # PINNED or BASELINE
    binding: bool = True  # False: a noted finding (the last night beside the pins), failing nothing

    @property
    def failing(self) -> bool:
        return self.binding and self.kind.failing

    @property
    def reference(self) -> str:
        """What the finding was judged against, in words."""
        return "the pinned reference" if self.against == PINNED else "the baseline"

    @property
    def compared(self) -> bool:
        return self.kind in (Kind.REGRESSION, Kind.IMPROVEMENT, Kind.WITHIN)

    def __str__(self) -> str:
        return f"{self.kind.value.upper()} {self.row} {self.what}: {self.detail}"


def _reason(record: dict) -> str:
    error = record.get("error")
    if isinstance(error, dict):
        return ": ".join(str(error[k]) for k in ("type", "message") if error.get(k)) or "errored (no reason recorded)"
    return record.get("reason") or "errored (no reason recorded)"


def _signed(change: float, digits: str = ".3g") -> str:
    return f"{change:+{digits}}"


def _compare_figure(row: str, name: str, now: dict | None, then: dict | None, fps_fraction: float,
                    against: str, source: str) -> Finding | None:
    now_value = finite((now or {}).get("value"))
    then_value = finite((then or {}).get("value"))
    if now_value is None and then_value is None:
        return None  # neither side has the figure (a metric without samples in both)
    if then_value is None:
        side = "no pinned value: pin it with `python -m harness.references update`" if against == PINNED \
            else f"the baseline has {(then or {}).get('value', 'no figure')!r}"
        return Finding(Kind.NOT_COMPARABLE, row, name, f"this run {now_value:.6g}, {side}{source}", against)
    if now is None:
        return Finding(Kind.MISSING, row, name, f"{against} {then_value:.6g}, this run has no figure{source}", against)
    if now_value is None:
        return Finding(Kind.NOT_COMPARABLE, row, name,
                       f"this run {now.get('value')!r} vs {against} {then_value:.6g}: "
                       f"a figure on one side only cannot be compared{source}", against)
    unit = now.get("unit") or then.get("unit") or ""
    higher_is_better = now.get("higher_is_better", then.get("higher_is_better", True))
    if (now.get("kind") or then.get("kind")) == "speed":
        change = now_value / then_value - 1 if then_value > 0 else float("nan")
        if not then_value > 0 or not now_value > 0:
            return Finding(Kind.NOT_COMPARABLE, row, name, f"this run {now_value:.6g} vs {against} {then_value:.6g}: "
                                                           f"a speed needs a positive figure on both sides{source}", against)
        gain = change if higher_is_better else -change
        kind = Kind.REGRESSION if gain < -fps_fraction else Kind.IMPROVEMENT if gain > fps_fraction else Kind.WITHIN
        return Finding(kind, row, name, f"{now_value:.4g} {unit} vs {against} {then_value:.4g} ({change:+.1%}, "
                                        f"allowed {'drop' if higher_is_better else 'rise'} {fps_fraction:.0%}){source}",
                       against)
    tolerance = finite(now.get("tolerance"))
    tolerance = finite(then.get("tolerance")) if tolerance is None else tolerance
    if tolerance is None:
        return Finding(Kind.NOT_COMPARABLE, row, name, f"this run {now_value:.6g} vs {against} {then_value:.6g}: "
                                                       f"no finite tolerance on either side{source}", against)
    change = now_value - then_value
    gain = change if higher_is_better else -change
    kind = Kind.REGRESSION if gain < -tolerance else Kind.IMPROVEMENT if gain > tolerance else Kind.WITHIN
    return Finding(kind, row, name, f"{now_value:.6g}{unit} vs {against} {then_value:.6g}{unit} "
                                    f"({_signed(change)}{unit}, tolerance ±{tolerance:g}){source}", against)


def compare_row(key: tuple, current: dict | None, baseline: dict | None, fps_fraction: float,
                against: str = BASELINE, parts: set[str] | None = None, source: str = "") -> list[Finding]:
    """Every finding for one row: ``current`` is this run's record (or the part of it a test
    holds), ``baseline`` the record or pinned entry it is judged against, None where there is
    none. Only figures of ``parts`` are judged; by default the parts ``current`` has figures of
    (a test holding only the accuracy part compares only that), :func:`compare_runs` passes
    every part so that a part missing from the row fails.

    Fails (see :attr:`Finding.failing`) a row missing from this run, an errored row, an out-of-
    memory row the baseline ran, a figure that left its band, a figure present on one side and
    absent or not finite on the other, and a row run at other shapes than the baseline's. Rows
    out of memory on both sides (the seeds' expected rows) are fine."""
    row = row_name(key)
    if current is None:
        return [] if baseline is None else [Finding(Kind.MISSING, row, "row", f"in the {against} rows, not in this run{source}", against)]
    if current.get("status") == "error":
        return [Finding(Kind.ERRORED, row, "row", _reason(current), against)]
    if baseline is None:
        return []  # a new row: nothing to compare it with
    now_oom, then_oom = current.get("status") == "oom", baseline.get("status") == "oom"
    if now_oom or then_oom:
        if now_oom and then_oom:
            return []
        if now_oom:
            return [Finding(Kind.ERRORED, row, "row", f"out of memory ({_reason(current)}); the {against} row ran", against)]
        return [Finding(Kind.IMPROVEMENT, row, "row", f"ran; the {against} row was out of memory", against)]
    if baseline.get("status") == "error":
        return []  # nothing to compare against; this run's row stands on its own verdicts
    now_profile, then_profile = current.get("profile"), baseline.get("profile")
    if now_profile and then_profile and now_profile != then_profile:
        return [Finding(Kind.NOT_COMPARABLE, row, "row",
                        f"run at {now_profile} profile shapes, the {against} row at {then_profile}", against)]
    now, then = gated_figures(current), gated_figures(baseline)
    judged = parts if parts is not None else {name.split("/")[0] for name in now}
    findings = []
    for name in sorted(set(now) | set(then)):
        if name.split("/")[0] in judged:
            finding = _compare_figure(row, name, now.get(name), then.get(name), fps_fraction, against, source)
            if finding is not None:
                findings.append(finding)
    return findings


@dataclass(frozen=True)
class Baseline:
    """What rows are judged against: a row's pinned reference (binding) and the last night's run
    (a noted finding beside a pin; binding for a row that has no pin)."""
    references: refs.References | None = None
    last_night: Run | None = None

    def __bool__(self) -> bool:
        return self.references is not None or self.last_night is not None

    def judge(self, key: tuple, current: dict | None, fps_fraction: float, parts: set[str] | None = None,
              pin: refs.Pin | None = None) -> list[Finding]:
        """Every finding for one row of this run (``current``, None: missing from it)."""
        findings = []
        if self.references is not None:
            pin = self.references.get(current) if current is not None else pin
            if pin is None and current is not None and current.get("status") not in ("error", "oom"):
                findings.append(Finding(Kind.NO_REFERENCE, row_name(key), "row",
                                        f"{refs.row_label(refs.row_key(current))} has no pinned reference in "
                                        f"{self.references.path}; pin it with `python -m harness.references update`",
                                        PINNED))
            findings += compare_row(key, current, pin.entry if pin else None, fps_fraction, PINNED, parts,
                                    f"; {pin.provenance()}" if pin else "")
        if self.last_night is not None:
            noted = pin is not None  # a row without a pin is gated against the last night until pinned
            for finding in compare_row(key, current, self.last_night.records.get(key), fps_fraction, BASELINE, parts):
                if not (noted and finding.kind is Kind.ERRORED):  # said once, against the pin
                    findings.append(replace(finding, binding=not noted))
        return findings

    def gate_result(self, key: tuple, record: dict, result, fps_fraction: float) -> dict:
        """The in-run gate of one test's typed result (``record``: its row so far): failing
        findings fail ``result``, the others worth saying are its notes; returns what the row
        keeps of the gate."""
        found = self.judge(key, record, fps_fraction)
        for finding in found:
            if finding.failing:
                result.fail("gate", f"against {finding.reference}: {finding}")
            elif finding.kind is not Kind.WITHIN:
                result.note("gate", f"against {finding.reference}{'' if finding.binding else ' (noted)'}: {finding}")
        return {"gate": {result.part: findings_record(found)}}


def load_baseline(last_night: Path | None = None, references: Path | None = None) -> Baseline:
    """The gate's baseline from the files given, or :class:`ReferencesError` naming the file that
    cannot be read (the in-run gate turns it into a usage error at start)."""
    return Baseline(refs.load(references) if references else None, load_run(last_night) if last_night else None)


def compare_runs(current: Run, baseline: Baseline, fps_fraction: float,
                 soc_fractions: dict[str, float] | None = None) -> list[Finding]:
    """Every row of this run, of its pins and of the last night through :meth:`Baseline.judge`,
    every part judged. Pins are expected for the (backend, profile, soc) this run ran; a soc's
    own allowed FPS drop comes from ``soc_fractions``."""
    soc_fractions = soc_fractions or {}
    findings: list[Finding] = []
    ran = {(r.get("backend"), r.get("profile"), r.get("soc")) for r in current.records.values()}
    pins = {}
    if baseline.references is not None:
        pins = {key[:4]: pin for key, pin in baseline.references.pins.items() if (key[1], key[4], key[5]) in ran}
    last = baseline.last_night.records if baseline.last_night is not None else {}
    for key in sorted(set(current.records) | set(pins) | set(last), key=row_name):
        record, pin = current.records.get(key), pins.get(key)
        soc = (record or last.get(key) or {}).get("soc") or (pin.key[5] if pin else None)
        parts = {name.split("/")[0] for source in (record, pin.entry if pin else None, last.get(key))
                 if source for name in gated_figures(source)}
        findings += baseline.judge(key, record, soc_fractions.get(soc, fps_fraction), parts, pin)
    return findings


def environment_differences(current: dict, baseline: dict) -> list[str]:
    """'key: baseline value -> this run's value' for every environment entry that differs
    (machine, CPU, tool versions): figures from different machines or tools need that caveat."""
    return [f"{key}: {baseline.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(current) | set(baseline)) if current.get(key) != baseline.get(key)]


def findings_record(findings: list[Finding]) -> dict:
    """What a report row keeps of its gate: failing findings, improvements and noted findings, as text."""
    return {"regressions": [str(f) for f in findings if f.failing],
            "improvements": [str(f) for f in findings if f.binding and f.kind is Kind.IMPROVEMENT],
            "noted": [f"against {f.reference}: {f}" for f in findings if not f.binding and f.kind is not Kind.WITHIN]}


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


def verdict_markdown(findings: list[Finding], results: Path, baseline: Baseline) -> str:
    """The gate's verdict for a job summary: one line, then each failing, improved and noted finding."""
    failing = [f for f in findings if f.failing]
    against = " and ".join(
        ([f"the pinned references `{baseline.references.path}`"] if baseline.references else [])
        + ([f"the last night `{baseline.last_night.path}`" + (" (noted)" if baseline.references else "")]
           if baseline.last_night else []))
    lines = ["## Gate", "",
             f"**{'RED' if failing else 'GREEN'}**: `{results}` against {against}: {len(failing)} failing finding(s), "
             f"{sum(f.compared and f.binding for f in findings)} figure(s) compared.", ""]
    for title, chosen in (("Failing", failing),
                          ("Improved (the reference needs a look)", [f for f in findings if f.binding and f.kind is Kind.IMPROVEMENT]),
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
        for key in sorted(set(current.records) & set(baseline.last_night.records), key=row_name):
            differences = environment_differences(current.records[key].get("environment") or {},
                                                  baseline.last_night.records[key].get("environment") or {})
            if differences:
                print(f"note: {row_name(key)} ran with other runtime settings than the baseline: {'; '.join(differences)}")


def _print_findings(findings: list[Finding], current: Run, baseline: Baseline) -> list[Finding]:
    """Each finding worth a line, and the counts; returns the binding comparisons made."""
    for finding in findings:
        if not finding.binding:
            if finding.kind is not Kind.WITHIN:
                print(f"note (against the last night, not gated): {finding}")
        elif finding.kind is Kind.IMPROVEMENT:
            print(f"{finding} (the reference needs a look)")
        elif finding.failing or finding.kind is Kind.NO_REFERENCE:
            print(finding)
    compared = [f for f in findings if f.compared and f.binding]
    counts = {kind: sum(f.kind is kind and f.binding for f in findings) for kind in Kind}
    print(f"{len(compared)} figure(s) compared over {len(current.records)} row(s) of this run: "
          + ", ".join(f"{n} {kind.value}" for kind, n in counts.items()
                      if kind is not Kind.WITHIN and (kind is not Kind.NO_REFERENCE or baseline.references)))
    return compared


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
    findings = compare_runs(current, baseline, fps_fraction, soc_fractions)
    compared = _print_findings(findings, current, baseline)
    if args.markdown:
        args.markdown.write_text(verdict_markdown(findings, args.results, baseline))
    if any(f.failing for f in findings):
        return 1
    if not compared:
        print(f"nothing of {args.results} could be compared: nothing was gated", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
