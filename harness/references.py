"""Pinned references: the figures a team accepted for each row, kept in the repository.

A row is model x backend x precision x batch size x profile x soc. Its pin holds every gated
figure of a run that was looked at and accepted (accuracy figures with their absolute band,
speed figures judged by the gate's relative --fps-regression), and the run, commit, date and
environment that set it. The gate judges each night against the pin (``harness.gate``), so a
slow drift adds up against a fixed point instead of against a night that already drifted.

The pins change only by an explicit command that writes the file for review in a pull request,
never as a side effect of a run:

    python -m harness.references update reports/<run>/results.json [--rows 'flavr/*/bs1' ...]

The file (``references/pinned.yaml``) is YAML, one entry per row, figures as ``part/name``.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness import records
from harness.results import finite

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = PROJECT / "references" / "pinned.yaml"
FORMAT = 1  # of the pinned-references file
GATED_KINDS = ("accuracy", "speed")  # figures of kind "info" are shown, never gated nor pinned
ROW_FIELDS = ("model", "backend", "precision", "batch_size", "profile", "soc")
FIGURE_FIELDS = ("value", "unit", "higher_is_better", "kind", "tolerance")
HEADER = """\
# Pinned references: the figures accepted for each row (model x backend x precision x batch size
# x profile x soc), and the run that set them. The nightly gate judges every row against these.
# Written by `python -m harness.references update reports/<run>/results.json [--rows PATTERN]`;
# change it only through that command, in a pull request that says why the new figures are right.
# A row without a pin is reported as such and gated against the last night until it is pinned.
"""


class ReferencesError(ValueError):
    """A references or results file that cannot be read: the message names the file and why."""


def gated_figures(record: dict) -> dict[str, dict]:
    """The figures of a record (or of a pinned entry) the gate judges, by 'part/name'.

    The one place that reads a record's figures: results.json format 2 carries a flat list
    ``[{part, name, value, unit, higher_is_better, kind, tolerance, ...}]``; a pinned entry
    carries them already by 'part/name'."""
    figures = record.get("figures") or []
    if isinstance(figures, dict):
        return {name: dict(figure) for name, figure in figures.items() if figure.get("kind") in GATED_KINDS}
    return {f"{f['part']}/{f['name']}": {k: v for k, v in f.items() if k not in ("part", "name")}
            for f in figures if f.get("kind") in GATED_KINDS}


def published_values(record: dict) -> dict[str, float]:
    """The seed's published figure per metric name, where the record holds one (the reference
    of a figure judged against 'published', or of the 'published' part)."""
    found = {}
    for f in record.get("figures") or []:
        if isinstance(f, dict) and (f.get("part") == "published" or "published" in str(f.get("reference_name") or "")):
            value = finite(f.get("reference"))
            if value is not None:
                found[f["name"]] = value
    return found


def row_key(record: dict) -> tuple:
    """(model, backend, precision, batch size, profile, soc) of a record or pinned entry."""
    return tuple(record.get(k) for k in ROW_FIELDS)


def row_label(key: tuple) -> str:
    model, backend, precision, batch_size, profile, soc = key
    return f"{model}/{backend}/{precision}/bs{batch_size} ({profile} profile, {soc or 'no soc'})"


# -- reading ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    """One row's accepted figures and who set them."""
    key: tuple
    entry: dict  # as in the file: row fields, run, the row's runtime environment, figures
    set_by: dict  # commit, date, results file and environment of the run that set the pin

    @property
    def figures(self) -> dict[str, dict]:
        return self.entry["figures"]

    @property
    def run(self) -> str:
        return self.entry["run"]

    def provenance(self) -> str:
        return f"pinned from run {self.run} (commit {self.set_by.get('commit', '?')}, {self.set_by.get('date', '?')})"


@dataclass(frozen=True)
class References:
    path: Path
    pins: dict[tuple, Pin] = field(repr=False)

    def get(self, record: dict) -> Pin | None:
        return self.pins.get(row_key(record))


def _fail(path: Path, message: str):
    raise ReferencesError(f"{path}: {message}")


def load(path: Path) -> References:
    """The pinned references in ``path``, or :class:`ReferencesError` naming the file and what is
    wrong (unreadable, not YAML, another format, an entry without its row fields, a pinned value
    that is not a finite number)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        _fail(path, f"cannot be read ({err.strerror or err}); expected a pinned-references file")
    except yaml.YAMLError as err:
        _fail(path, f"not YAML ({err}); expected a pinned-references file")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        _fail(path, f"pinned-references format {found!r}, this suite reads format {FORMAT} "
                    "(written by `python -m harness.references update`)")
    runs, pins = data.get("runs") or {}, {}
    for number, entry in enumerate(data.get("rows") or []):
        missing = [k for k in ROW_FIELDS if not isinstance(entry, dict) or k not in entry]
        if missing:
            _fail(path, f"row {number} lacks {', '.join(missing)}")
        key = row_key(entry)
        figures = entry.get("figures")
        if not isinstance(figures, dict) or not figures:
            _fail(path, f"row {row_label(key)} has no figures")
        for name, figure in figures.items():
            if finite(figure.get("value")) is None or figure.get("kind") not in GATED_KINDS:
                _fail(path, f"row {row_label(key)} figure {name}: expected a finite value and a kind of "
                            f"{', '.join(GATED_KINDS)}, found {figure!r}")
        if entry.get("run") not in runs:
            _fail(path, f"row {row_label(key)} names run {entry.get('run')!r}, which the file's runs do not list")
        if key in pins:
            _fail(path, f"row {row_label(key)} is pinned twice")
        pins[key] = Pin(key, entry, runs[entry["run"]])
    return References(path, pins)


# -- the explicit update ---------------------------------------------------------------------------

def _document(runs: dict, pins: dict[tuple, dict]) -> str:
    ordered = [pins[key] for key in sorted(pins, key=lambda k: tuple(str(v) for v in k))]
    used = {entry["run"] for entry in ordered}
    body = {"format": FORMAT, "runs": {run: runs[run] for run in sorted(used)}, "rows": ordered}
    return HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


def _entry(record: dict, run_id: str) -> dict:
    return {**{k: record.get(k) for k in ROW_FIELDS}, "run": run_id,
            "environment": record.get("environment") or {},
            "figures": {name: {k: figure.get(k) for k in FIGURE_FIELDS}
                        for name, figure in sorted(gated_figures(record).items()) if finite(figure.get("value")) is not None}}


def update(results_path: Path, references_path: Path, patterns: list[str] | None = None) -> list[str]:
    """Pin the rows of ``results_path`` that match ``patterns`` ('model/backend/precision/bsN'
    globs; all rows without) into ``references_path``, replacing their earlier pins and keeping
    every other row. Returns what changed, line by line. Rows whose own verdict did not pass are
    left unpinned (named): a pin is a figure someone accepted."""
    results = records.load_results(results_path)
    references_path = Path(references_path)
    if references_path.exists():
        existing = load(references_path)
        runs = {pin.run: pin.set_by for pin in existing.pins.values()}
        pins = {key: pin.entry for key, pin in existing.pins.items()}
    else:
        runs, pins = {}, {}
    run_id = str(results.get("run_id") or Path(results_path).parent.name)
    runs[run_id] = {"commit": results.get("commit"), "date": results.get("started") or results.get("finished"),
                    "results": str(results_path), "environment": results.get("environment") or {}}
    changes, matched = [], 0
    for record in results["records"]:
        name = records.row_name(records.record_key(record))
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        matched += 1
        key = row_key(record)
        status = record.get("status", "pass")
        if status != "pass":
            changes.append(f"not pinned {row_label(key)}: its own verdict is {status!r}")
            continue
        entry = _entry(record, run_id)
        left_out = sorted(set(gated_figures(record)) - set(entry["figures"]))
        if not entry["figures"]:
            changes.append(f"not pinned {row_label(key)}: no finite gated figure")
            continue
        before = pins.get(key, {}).get("figures", {})
        pins[key] = entry
        moved = [f"{n} {_value(before.get(n))} -> {_value(f)}" for n, f in entry["figures"].items()
                 if _value(before.get(n)) != _value(f)]
        dropped = [f"{n} {_value(before[n])} -> (none)" for n in sorted(set(before) - set(entry["figures"]))]
        changes.append(f"pinned {row_label(key)}: " + ("; ".join(moved + dropped) or "unchanged")
                       + (f" (left out, not finite: {', '.join(left_out)})" if left_out else ""))
    if patterns and not matched:
        raise ReferencesError(f"{results_path}: no row matches {', '.join(patterns)}")
    references_path.parent.mkdir(parents=True, exist_ok=True)
    references_path.write_text(_document(runs, pins))
    load(references_path)  # what was written reads back
    return changes


def _value(figure: dict | None) -> str:
    return "(none)" if figure is None else f"{figure['value']:.6g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.references", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pin = commands.add_parser("update", help="pin rows of a run's results.json (writes the file for review)")
    pin.add_argument("results", type=Path, help="the accepted run's results.json")
    pin.add_argument("--rows", nargs="+", metavar="PATTERN",
                     help="only rows matching these 'model/backend/precision/bsN' globs (default: every row)")
    pin.add_argument("--file", type=Path, default=DEFAULT_PATH, help=f"the references file (default {DEFAULT_PATH.relative_to(PROJECT)})")
    args = parser.parse_args(argv)
    try:
        changes = update(args.results, args.file, args.rows)
    except ValueError as err:  # a references or results file that cannot be read, a pattern matching nothing
        parser.error(str(err))
    print("\n".join(changes))
    print(f"wrote {args.file}: review the change and commit it in a pull request that says why")
    return 0


if __name__ == "__main__":
    sys.exit(main())
