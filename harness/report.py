"""The run's report directory: ``reports/<run-id>/results.json`` (harness/records.py), its
``summary.md`` and plots (harness/render.py), and ``reports/latest`` -> the newest run.

    python -m harness.report A/results.json B/results.json --out reports/night

merges several invocations of one night (the CPU matrix, the Ascend job) into one report.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Iterable

from harness import records, render


def write_run(run_dir: Path, header: dict, rows: list[dict], notes: Iterable[str] = ()) -> Path:
    results = records.write_results(run_dir, header, rows, notes)
    plots = render.write_plots(run_dir, rows, header.get("reference_fps", {}), header.get("config", {}).get("soc"))
    (run_dir / "summary.md").write_text(render.summary_markdown(results, plots, results["notes"]))
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)
    return run_dir / "summary.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report",
                                     description="merge the results.json of several invocations into one report")
    parser.add_argument("results", type=Path, nargs="+", help="results.json files of the invocations, in order")
    parser.add_argument("--out", type=Path, required=True, help="the merged run's directory (created)")
    args = parser.parse_args(argv)
    try:
        header, rows, notes = records.merge_runs(args.results)
    except records.ResultsFormatError as err:
        parser.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_run(args.out, header, rows, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
