"""The run's report directory: ``reports/<run-id>/results.json`` (harness/records.py), its
``summary.md`` and plots (harness/render.py), and ``reports/latest`` -> the newest run.

    python -m harness.report A/results.json B/results.json --out reports/night

merges several invocations of one night (the CPU matrix, the Ascend job) into one report.
"""
from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from harness import records, render


def write_run(run_dir: Path, header: dict, rows: list[dict], notes: Iterable[str] = (), latest: bool = True) -> Path:
    """results.json, summary.md and the plots in ``run_dir``; ``reports/latest`` points at it
    when ``latest`` (a partial run leaves it on the last whole one)."""
    results = records.write_results(run_dir, header, rows, notes)
    plots = render.write_plots(run_dir, [records.Row.of(r) for r in results["records"]],
                               header.get("reference_fps", {}), header.get("config", {}).get("soc"))
    (run_dir / "summary.md").write_text(render.summary_markdown(results, plots, results["notes"]))
    if latest:
        _point_latest(run_dir)
    return run_dir / "summary.md"


def _point_latest(run_dir: Path) -> None:
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)


def fresh(results: Path, hours: float, now: datetime | None = None) -> str:
    """'' when ``results`` finished within the last ``hours``, else why it cannot join tonight's
    night (a report of a self-hosted job that ran days ago says nothing about tonight)."""
    try:
        finished = datetime.fromisoformat(str(records.load_results(results).get("finished")))
    except records.ResultsFormatError as err:
        return str(err)
    except ValueError:
        return f"{results}: no 'finished' time"
    age = ((now or datetime.now(timezone.utc)) - finished).total_seconds() / 3600
    return "" if age <= hours else f"{results}: finished {age:.1f} h ago, more than {hours:g} h"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report",
                                     description="merge the results.json of several invocations into one report")
    parser.add_argument("results", type=Path, nargs="+", help="results.json files of the invocations, in order")
    parser.add_argument("--out", type=Path, help="the merged run's directory (created)")
    parser.add_argument("--fresh", type=float, metavar="HOURS",
                        help="only check that the one results.json given finished within HOURS (exit 1 if not)")
    args = parser.parse_args(argv)
    if args.fresh is not None:
        stale = fresh(args.results[0], args.fresh)
        print(stale or f"{args.results[0]}: finished within {args.fresh:g} h")
        return 1 if stale else 0
    if args.out is None:
        parser.error("give --out DIR for the merged report (or --fresh HOURS to check one report's age)")
    try:
        header, rows, notes = records.merge_runs(args.results)
    except records.ResultsFormatError as err:
        parser.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_run(args.out, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
