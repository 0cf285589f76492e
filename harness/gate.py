"""The nightly regression gate: this run's rows against a baseline run's results.json.

In a run, ``--baseline`` makes each accuracy and perf test compare its own row. Standalone, it
compares two finished runs without rerunning anything:

    python -m harness.gate reports/latest/results.json --baseline reports/<old>/results.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.report import record_key


@dataclass(frozen=True)
class Finding:
    row: str  # 'model/backend/precision/bsN'
    what: str  # 'top1' or 'fps'
    current: float
    baseline: float
    limit: str  # the rule it was judged by

    def __str__(self) -> str:
        return f"{self.row} {self.what}: {self.current:.6g} vs baseline {self.baseline:.6g} ({self.limit})"


def load_baseline(path: Path) -> dict[tuple, dict]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return {record_key(r): r for r in data["records"]}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a results.json written by this suite ({err})") from err


def row_name(key: tuple) -> str:
    model, backend, precision, bs = key
    return f"{model}/{backend}/{precision}/bs{bs}"


def compare_metric(key: tuple, name: str, current: float, baseline: float, tolerance: float,
                   higher_is_better: bool) -> tuple[Finding | None, Finding | None]:
    """(regression, improvement): outside ``tolerance`` of the baseline in the bad / good direction."""
    delta = current - baseline if higher_is_better else baseline - current
    finding = Finding(row_name(key), name, current, baseline, f"tolerance ±{tolerance:g}")
    if delta < -tolerance:
        return finding, None
    if delta > tolerance:
        return None, finding
    return None, None


def gate_fps(perf: dict) -> float | None:
    """The FPS the gate compares: from the fastest round where recorded (steadiest under noise)."""
    return perf.get("best_fps") or perf.get("fps")


def compare_fps(key: tuple, current: float, baseline: float, fraction: float
                ) -> tuple[Finding | None, Finding | None]:
    finding = Finding(row_name(key), "fps (best round)", current, baseline, f"allowed drop {fraction:.0%}")
    if current < baseline * (1 - fraction):
        return finding, None
    if current > baseline * (1 + fraction):
        return None, finding
    return None, None


def compare_runs(current: dict[tuple, dict], baseline: dict[tuple, dict], fps_fraction: float
                 ) -> tuple[list[Finding], list[Finding]]:
    """Every row present in both runs: its accuracy metrics and its FPS."""
    regressions: list[Finding] = []
    improvements: list[Finding] = []
    for key in sorted(set(current) & set(baseline)):
        now, then = current[key], baseline[key]
        for name, row in (now.get("accuracy") or {}).items():
            old = (then.get("accuracy") or {}).get(name)
            if not old or row.get("verdict") == "n/a":
                continue
            worse, better = compare_metric(key, name, row["deployed"], old["deployed"], row["tolerance"],
                                           row.get("higher_is_better", True))
            regressions += [worse] if worse else []
            improvements += [better] if better else []
        now_fps, then_fps = gate_fps(now.get("perf") or {}), gate_fps(then.get("perf") or {})
        if now_fps and then_fps:
            worse, better = compare_fps(key, now_fps, then_fps, fps_fraction)
            regressions += [worse] if worse else []
            improvements += [better] if better else []
    return regressions, improvements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.gate", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="this run's results.json")
    parser.add_argument("--baseline", type=Path, required=True, help="an earlier run's results.json")
    parser.add_argument("--fps-regression", type=float, default=0.10, help="allowed FPS drop (fraction)")
    args = parser.parse_args(argv)
    try:
        current, baseline = load_baseline(args.results), load_baseline(args.baseline)
    except ValueError as err:
        parser.error(str(err))
    regressions, improvements = compare_runs(current, baseline, args.fps_regression)
    compared = len(set(current) & set(baseline))
    for finding in regressions:
        print(f"REGRESSION {finding}")
    for finding in improvements:
        print(f"improvement (reference needs a look) {finding}")
    print(f"{compared} rows compared: {len(regressions)} regression(s), {len(improvements)} improvement(s)")
    if not compared:
        print("no row of this run is in the baseline: nothing was gated", file=sys.stderr)
        return 2
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
