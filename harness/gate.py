"""The nightly regression gate: this run's rows against a baseline run's results.json.

One comparison, :func:`compare_row`, judges a row; the in-run tests call it with their own
partial record (``--baseline``), and :func:`compare_runs` calls it for every row of two finished
runs, adding what only a whole run can show (rows and parts missing from the new run):

    python -m harness.gate reports/latest/results.json --baseline reports/<old>/results.json

Exit status: 0 pass, 1 a row regressed, is missing, errored or cannot be compared (each named),
2 nothing was comparable or the command was misused.
"""
from __future__ import annotations

import argparse
import enum
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.report import finite, out_of_memory, record_key

# the parts of a record the gate judges; conformance is judged by its own pass/fail
GATED_PARTS = ("accuracy", "perf", "conformance")


class Kind(enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"  # outside the band in the good direction: the reference needs a look
    WITHIN = "within"  # compared and inside the band
    MISSING = "missing"
    ERRORED = "errored"
    NOT_COMPARABLE = "not comparable"

    @property
    def failing(self) -> bool:
        return self not in (Kind.IMPROVEMENT, Kind.WITHIN)


@dataclass(frozen=True)
class Finding:
    kind: Kind
    row: str  # 'model/backend/precision/bsN'
    what: str  # a metric name, 'fps (best round)', 'conformance', a part, or 'row'
    detail: str  # the figures and the rule they were judged by, or why nothing was compared

    @property
    def failing(self) -> bool:
        return self.kind.failing

    def __str__(self) -> str:
        return f"{self.kind.value.upper()} {self.row} {self.what}: {self.detail}"


@dataclass(frozen=True)
class Run:
    """A finished run's results.json: its header (environment, config, ...) and rows by key."""
    path: Path
    header: dict
    records: dict[tuple, dict] = field(repr=False)


def load_run(path: Path) -> Run:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        records = {record_key(r): r for r in data["records"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a results.json written by this suite ({type(err).__name__}: {err})") from err
    return Run(path, {k: v for k, v in data.items() if k != "records"}, records)


def load_baseline(path: Path) -> dict[tuple, dict]:
    return load_run(path).records


def row_name(key: tuple) -> str:
    model, backend, precision, bs = key
    return f"{model}/{backend}/{precision}/bs{bs}"


def gate_fps(perf: dict) -> float | None:
    """The FPS the gate compares: from the fastest round where recorded (steadiest under noise)."""
    return perf.get("best_fps") or perf.get("fps")


def compare_row(key: tuple, current: dict | None, baseline: dict | None, fps_fraction: float) -> list[Finding]:
    """Every finding for one row: ``current`` is this run's record (or the part of it a test
    holds: a record without perf compares only its accuracy, and so on), ``baseline`` the
    baseline run's record for the same key, None where it has none.

    Fails (see :attr:`Finding.failing`) a row missing from this run, an errored row, an out-of-
    memory row the baseline ran, a figure that left its band, a figure the baseline has and this
    run lacks or cannot compare (NaN, absent), and a row run at other shapes than the baseline's.
    Rows out of memory in both runs (the seeds' expected rows) are fine."""
    row = row_name(key)
    if current is None:
        if baseline is None:
            return []
        return [Finding(Kind.MISSING, row, "row", "in the baseline, not in this run")]
    if current.get("status") == "error":
        return [Finding(Kind.ERRORED, row, "row", current.get("reason") or "errored (no reason recorded)")]
    if baseline is None:
        return []  # a new row: nothing to compare it with
    if out_of_memory(current) or out_of_memory(baseline):
        if out_of_memory(current) and out_of_memory(baseline):
            return []
        if out_of_memory(current):
            reason = current.get("reason") or (current.get("perf") or {}).get("reason") or "out of memory"
            return [Finding(Kind.ERRORED, row, "row", f"out of memory ({reason}); the baseline ran this row")]
        return [Finding(Kind.IMPROVEMENT, row, "row", "ran; the baseline was out of memory here")]
    if baseline.get("status") == "error":
        return []  # nothing to compare against; this run's row stands on its own verdicts
    now_profile, then_profile = current.get("profile"), baseline.get("profile")
    if now_profile and then_profile and now_profile != then_profile:
        return [Finding(Kind.NOT_COMPARABLE, row, "row",
                        f"run at {now_profile} profile shapes, the baseline at {then_profile}")]
    findings: list[Finding] = []
    if "accuracy" in current:
        findings += _compare_accuracy(row, current["accuracy"] or {}, baseline.get("accuracy") or {})
    if "perf" in current and baseline.get("perf"):
        findings.append(_compare_fps(row, current["perf"] or {}, baseline["perf"], fps_fraction))
    if "conformance" in current and baseline.get("conformance"):
        findings.append(_compare_conformance(row, current["conformance"] or {}, baseline["conformance"]))
    return findings


def _compare_accuracy(row: str, current: dict, baseline: dict) -> list[Finding]:
    findings = []
    for name, then in sorted(baseline.items()):
        then_value = finite(then.get("deployed"))
        if then_value is None:
            continue  # the baseline had no figure (a metric without samples there): nothing to hold it to
        now = current.get(name)
        if now is None:
            findings.append(Finding(Kind.MISSING, row, name, f"the baseline has {then_value:.6g}, this run no figure"))
            continue
        now_value = finite(now.get("deployed"))
        tolerance = finite(now.get("tolerance", then.get("tolerance")))
        if now_value is None or tolerance is None:
            findings.append(Finding(Kind.NOT_COMPARABLE, row, name,
                                    f"deployed {now.get('deployed')!r}, tolerance {now.get('tolerance')!r} "
                                    f"vs baseline {then_value:.6g}: needs a finite figure and tolerance"))
            continue
        higher_is_better = now.get("higher_is_better", then.get("higher_is_better", True))
        gain = now_value - then_value if higher_is_better else then_value - now_value
        kind = Kind.REGRESSION if gain < -tolerance else Kind.IMPROVEMENT if gain > tolerance else Kind.WITHIN
        findings.append(Finding(kind, row, name, f"{now_value:.6g} vs baseline {then_value:.6g} (tolerance ±{tolerance:g})"))
    return findings


def _compare_fps(row: str, current: dict, baseline: dict, fraction: float) -> Finding:
    what = "fps (best round)"
    then_fps = finite(gate_fps(baseline))
    now_fps = finite(gate_fps(current))
    if then_fps is None or now_fps is None or now_fps <= 0:
        return Finding(Kind.NOT_COMPARABLE, row, what,
                       f"{gate_fps(current)!r} vs baseline {gate_fps(baseline)!r}: needs a positive figure in both runs")
    kind = (Kind.REGRESSION if now_fps < then_fps * (1 - fraction)
            else Kind.IMPROVEMENT if now_fps > then_fps * (1 + fraction) else Kind.WITHIN)
    return Finding(kind, row, what, f"{now_fps:.6g} vs baseline {then_fps:.6g} (allowed drop {fraction:.0%})")


def _compare_conformance(row: str, current: dict, baseline: dict) -> Finding:
    passed = current.get("passed")
    detail = (f"passed {passed!r} ({current.get('outside_tolerance')} element(s) outside tolerance), "
              f"baseline passed {baseline.get('passed')!r}")
    if passed is True:
        return Finding(Kind.WITHIN, row, "conformance", detail)
    if passed is False:
        return Finding(Kind.REGRESSION if baseline.get("passed") else Kind.ERRORED, row, "conformance", detail)
    return Finding(Kind.NOT_COMPARABLE, row, "conformance", detail)


def _missing_parts(key: tuple, current: dict, baseline: dict) -> list[Finding]:
    """Parts (accuracy, perf, conformance) the baseline row has and this run's row lacks: a
    skipped or deselected test is not a pass."""
    if current.get("status") == "error" or out_of_memory(current) or out_of_memory(baseline):
        return []  # the row is judged as a whole by compare_row
    return [Finding(Kind.MISSING, row_name(key), part, "in the baseline row, not in this run's")
            for part in GATED_PARTS if baseline.get(part) and part not in current]


def compare_runs(current: dict[tuple, dict], baseline: dict[tuple, dict], fps_fraction: float) -> list[Finding]:
    """Every row of both runs through :func:`compare_row`, plus the parts missing from a row."""
    findings: list[Finding] = []
    for key in sorted(set(current) | set(baseline), key=row_name):
        now, then = current.get(key), baseline.get(key)
        findings += compare_row(key, now, then, fps_fraction)
        if now is not None and then is not None:
            findings += _missing_parts(key, now, then)
    return findings


def environment_differences(current: dict, baseline: dict) -> list[str]:
    """'key: baseline value -> this run's value' for every environment entry that differs
    (machine, CPU, tool versions): figures from different machines or tools need that caveat."""
    return [f"{key}: {baseline.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(current) | set(baseline)) if current.get(key) != baseline.get(key)]


def findings_record(findings: list[Finding]) -> dict:
    """What a report row keeps of its gate: failing findings and improvements, as text."""
    return {"regressions": [str(f) for f in findings if f.failing],
            "improvements": [str(f) for f in findings if f.kind is Kind.IMPROVEMENT]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.gate", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="this run's results.json")
    parser.add_argument("--baseline", type=Path, required=True, help="an earlier run's results.json")
    parser.add_argument("--fps-regression", type=float, default=0.10, help="allowed FPS drop (fraction)")
    args = parser.parse_args(argv)
    try:
        current, baseline = load_run(args.results), load_run(args.baseline)
    except ValueError as err:
        parser.error(str(err))
    differences = environment_differences(current.header.get("environment") or {},
                                          baseline.header.get("environment") or {})
    if differences:
        print(f"note: the two runs come from different machines or tool versions: {'; '.join(differences)}")
    for key in sorted(set(current.records) & set(baseline.records), key=row_name):
        row_differences = environment_differences(current.records[key].get("environment") or {},
                                                  baseline.records[key].get("environment") or {})
        if row_differences:
            print(f"note: {row_name(key)} ran with other runtime settings: {'; '.join(row_differences)}")
    findings = compare_runs(current.records, baseline.records, args.fps_regression)
    for finding in findings:
        if finding.kind is Kind.IMPROVEMENT:
            print(f"{finding} (the reference needs a look)")
        elif finding.failing:
            print(finding)
    failing = [f for f in findings if f.failing]
    compared = [f for f in findings if f.kind in (Kind.REGRESSION, Kind.IMPROVEMENT, Kind.WITHIN)]
    counts = {kind: sum(f.kind is kind for f in findings) for kind in Kind}
    print(f"{len(compared)} figure(s) compared over {len(set(current.records) & set(baseline.records))} common row(s): "
          + ", ".join(f"{n} {kind.value}" for kind, n in counts.items() if kind is not Kind.WITHIN))
    if failing:
        return 1
    if not compared:
        print(f"nothing of {args.results} could be compared with {args.baseline}: nothing was gated", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
