"""Pinned references: the figures a team accepted for each row, kept in the repository.

A row is a :class:`harness.records.RowKey` (model x backend x precision x batch size x profile x
soc x, for a CPU row, the machine). Its pin holds every gated figure of a run that was looked at
and accepted (accuracy figures with their absolute band, speed figures judged by the gate's
relative --fps-regression, with the timed rounds they came from), what the figures were taken
from (weights, data), and the run, commit, date and environment that set it. The gate judges
each night against the pin (``harness.gate``), so a slow drift adds up against a fixed point
instead of against a night that already drifted.

The pins change only by an explicit command that writes the file for review in a pull request,
never as a side effect of a run:

    python -m harness.references update reports/<run>/results.json [--rows 'flavr/*/bs1' ...]

The file (``references/pinned.yaml``) is YAML, read strictly: a duplicate key or an unknown
field is refused, naming its line.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from harness import records
from harness.records import Row, RowKey, Status
from harness.figures import Figure, FigureKind, finite

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = PROJECT / "references" / "pinned.yaml"
FORMAT = 2  # of the pinned-references file; 1: rows without machine and provenance
FIGURE_FIELDS = ("value", "unit", "higher_is_better", "kind", "tolerance")
PIN_FIELDS = {*RowKey.names(), "run", "weights", "data", "environment", "figures", "rounds_ms", "left_out"}
TOP_FIELDS = {"format", "runs", "rows"}
RUN_FIELDS = {"commit", "date", "results", "environment"}
HEADER = """\
# Pinned references: the figures accepted for each row (model x backend x precision x batch size
# x profile x soc x machine), what they were taken from, and the run that set them. The nightly
# gate judges every row against these. Written by
# `python -m harness.references update reports/<run>/results.json [--rows PATTERN]`;
# change it only through that command, in a pull request that says why the new figures are right.
# A row without a pin is reported as such and gated against the last night until it is pinned.
"""


class ReferencesError(ValueError):
    """A references or results file that cannot be read: the message names the file and why."""


def published_values(row: Row) -> dict[str, float]:
    """The seed's published figure per metric name, where the row holds one and it applies
    (the published part's figures carry the published value as their reference)."""
    if not row.part("published").get("applies"):
        return {}
    return {f.name: f.reference for f in row.figures if f.part == "published" and finite(f.reference) is not None}


def provenance(row: Row, header: dict) -> dict[str, str]:
    """What a row's figures were taken from: the weights (a checkpoint's sha256 or 'seeded') and
    the data (generated, a complete index, a partial copy or a --limit run)."""
    weights = row.part("weights")
    data = row.part("data")
    limit = (header.get("config") or {}).get("limit")
    if weights.get("source") == "seeded":
        taken_weights = "seeded"
    else:
        taken_weights = f"sha256:{weights['sha256']}" if weights.get("sha256") else "unknown"
    if not data:
        taken_data = "not read (timed inputs)"
    elif data.get("generated"):
        taken_data = "generated"
    elif limit or data.get("missing") or data.get("failed"):
        taken_data = f"partial: {data.get('read')} of {data.get('listed')} listed items" + (f", --limit {limit}" if limit else "")
    else:
        taken_data = f"complete index ({data.get('listed')} items)"
    return {"weights": taken_weights, "data": taken_data}


def weak(taken_from: dict[str, str]) -> list[str]:
    """Why figures taken from this are not the published conditions (seeded weights, generated
    or partial data); [] when they are."""
    return ([f"weights {taken_from['weights']}"] if taken_from["weights"] in ("seeded", "unknown") else []) + \
        ([f"data {taken_from['data']}"] if taken_from["data"].startswith(("generated", "partial")) else [])


# -- reading, strictly ---------------------------------------------------------------------------

class DuplicateKey(ValueError):
    """A key given twice in one YAML mapping: the message names it and both lines."""


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (PyYAML keeps the last, so a
    second ``value:`` would win in silence and a second ``rows:`` drop every pin)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKey(f"duplicate key {key!r} on line {key_node.start_mark.line + 1} "
                                   f"(first on line {seen[key] + 1}): each key once")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def strict_yaml(path: Path, text: str):
    """``text`` parsed, or :class:`ReferencesError` naming ``path`` and the line at fault."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except DuplicateKey as err:
        _fail(path, str(err))
    except yaml.YAMLError as err:
        _fail(path, f"not YAML ({err}); expected a pinned-references file")


@dataclass(frozen=True)
class Pin:
    """One row's accepted figures, what they were taken from and who set them."""
    key: RowKey
    figures: dict[str, Figure]  # by 'part/name'
    run: str
    taken_from: dict[str, str]  # {'weights', 'data'}
    environment: dict  # the row's runtime environment when pinned
    set_by: dict  # commit, date, results file and environment of the run that set the pin
    rounds_ms: tuple[float, ...] = ()  # the timed rounds its speed figures came from: the gate compares distributions
    left_out: dict[str, str] = field(default_factory=dict)  # gated figures deliberately not pinned: name -> why

    @property
    def row(self) -> Row:
        """The pin as a row the gate compares with: its own verdict passed when it was pinned."""
        details = {"perf": {"rounds_ms": list(self.rounds_ms)}} if self.rounds_ms else {}
        return Row(self.key, Status.PASS, tuple(self.figures.values()),
                   details={**details, "left_out": dict(self.left_out)} if self.left_out else details)

    def provenance(self) -> str:
        return (f"pinned from run {self.run} (commit {self.set_by.get('commit', '?')}, {self.set_by.get('date', '?')}; "
                f"weights {self.taken_from['weights']}, data {self.taken_from['data']})")

    def entry(self) -> dict:
        """The pin as the file holds it."""
        return {**self.key.as_dict(), "run": self.run, **self.taken_from, "environment": self.environment,
                "figures": {name: {k: (v.value if isinstance(v, FigureKind) else v)
                                   for k, v in f.as_dict().items() if k in FIGURE_FIELDS}
                            for name, f in sorted(self.figures.items())},
                **({"rounds_ms": [round(r, 4) for r in self.rounds_ms]} if self.rounds_ms else {}),
                **({"left_out": dict(self.left_out)} if self.left_out else {})}


@dataclass(frozen=True)
class Match:
    """What the pins hold for a row: its own pin, or the pins of the same row taken otherwise
    (another precision, machine, soc or profile)."""
    key: RowKey
    pin: Pin | None
    elsewhere: tuple[Pin, ...] = ()

    def why_not(self) -> str:
        """The pins that do not apply here and what differs, in words ('' when there are none):
        'pinned on profile 'full', soc 'Ascend310P3'; this run on profile 'smoke', soc None'."""
        said = []
        for pin in self.elsewhere:
            differs = [name for name in RowKey.names() if getattr(pin.key, name) != getattr(self.key, name)]
            said.append(f"pinned on {', '.join(f'{n} {getattr(pin.key, n)!r}' for n in differs)}; this run on "
                        f"{', '.join(f'{n} {getattr(self.key, n)!r}' for n in differs)}")
        return " | ".join(said)


@dataclass(frozen=True)
class References:
    path: Path
    pins: dict[RowKey, Pin] = field(repr=False)

    def match(self, key: RowKey) -> Match:
        pin = self.pins.get(key)
        if pin is not None:
            return Match(key, pin)
        return Match(key, None, tuple(p for p in self.pins.values() if p.key.model_row == key.model_row))


def _fail(path: Path, message: str):
    raise ReferencesError(f"{path}: {message}")


def _unknown(path: Path, where: str, found: dict, known: set[str]) -> None:
    unknown = sorted(set(found) - known)
    if unknown:
        _fail(path, f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")


def _figure(path: Path, label: str, name: str, data) -> Figure:
    part, _, short = str(name).partition("/")
    if not isinstance(data, dict) or finite(data.get("value")) is None or data.get("kind") not in \
            [k.value for k in FigureKind if k.gated] or not short:
        _fail(path, f"row {label} figure {name}: expected a finite value and a kind of "
                    f"{', '.join(k.value for k in FigureKind if k.gated)}, named 'part/name', found {data!r}")
    _unknown(path, f"row {label} figure {name}", data, set(FIGURE_FIELDS))
    return Figure(part, short, float(data["value"]), data.get("unit") or "", bool(data.get("higher_is_better", True)),
                  FigureKind(data["kind"]), finite(data.get("tolerance")))


def _pin(path: Path, number: int, entry, runs: dict) -> Pin:
    if not isinstance(entry, dict):
        _fail(path, f"row {number}: expected a mapping, found {entry!r}")
    try:
        key = RowKey.of(entry)
    except KeyError as err:
        _fail(path, f"row {number} lacks {err.args[0]}")
    _unknown(path, f"row {key.label}", entry, PIN_FIELDS)
    figures = entry.get("figures")
    if not isinstance(figures, dict) or not figures:
        _fail(path, f"row {key.label} has no figures")
    if entry.get("run") not in runs:
        _fail(path, f"row {key.label} names run {entry.get('run')!r}, which the file's runs do not list")
    missing = [k for k in ("weights", "data") if not isinstance(entry.get(k), str)]
    if missing:
        _fail(path, f"row {key.label} does not say what it was taken from ({', '.join(missing)}); pin it again "
                    "with `python -m harness.references update`")
    rounds = entry.get("rounds_ms") or []
    if not isinstance(rounds, list) or any(finite(r) is None or r <= 0 for r in rounds):
        _fail(path, f"row {key.label} rounds_ms: expected a list of positive times in ms, found {rounds!r}")
    return Pin(key, {name: _figure(path, key.label, name, f) for name, f in figures.items()}, entry["run"],
               {"weights": entry["weights"], "data": entry["data"]}, entry.get("environment") or {}, runs[entry["run"]],
               tuple(float(r) for r in rounds), {str(k): str(v) for k, v in (entry.get("left_out") or {}).items()})


def load(path: Path) -> References:
    """The pinned references in ``path``, or :class:`ReferencesError` naming the file and what is
    wrong (unreadable, not YAML, a duplicate key or unknown field with its line, another format,
    an entry without its row fields or provenance, a pinned value that is not a finite number)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        _fail(path, f"cannot be read ({err.strerror or err}); expected a pinned-references file")
    data = strict_yaml(path, text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        _fail(path, f"pinned-references format {found!r}, this suite reads format {FORMAT} "
                    "(written by `python -m harness.references update`)")
    _unknown(path, "the file", data, TOP_FIELDS)
    runs, pins = data.get("runs") or {}, {}
    for run, described in runs.items():
        _unknown(path, f"run {run}", described or {}, RUN_FIELDS)
    for number, entry in enumerate(data.get("rows") or []):
        pin = _pin(path, number, entry, runs)
        if pin.key in pins:
            _fail(path, f"row {pin.key.label} is pinned twice")
        pins[pin.key] = pin
    return References(path, pins)


# -- the explicit update ---------------------------------------------------------------------------

def _document(runs: dict, pins: dict[RowKey, Pin]) -> str:
    ordered = [pins[key].entry() for key in sorted(pins, key=RowKey.sort_key)]
    used = {entry["run"] for entry in ordered}
    body = {"format": FORMAT, "runs": {run: runs[run] for run in sorted(used)}, "rows": ordered}
    return HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


@dataclass
class Update:
    """What an update did, line by line, and what it refused (a non-zero exit)."""
    changes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _pin_row(row: Row, header: dict, run_id: str, before: Pin | None, allow_weak: bool, done: Update) -> Pin | None:
    if row.status is not Status.PASS:
        done.changes.append(f"not pinned {row.key.label}: its own verdict is {row.status.value!r}")
        return None
    not_finite = sorted(name for name, f in row.gated.items() if finite(f.value) is None)
    if not_finite:
        done.refused.append(f"{row.key.label}: {', '.join(not_finite)} not a finite figure: a pin would drop it "
                            "and the gate would be silent on it")
        return None
    if not row.gated:
        done.changes.append(f"not pinned {row.key.label}: no gated figure")
        return None
    taken_from = provenance(row, header)
    weakness = weak(taken_from)
    if weakness and not allow_weak:
        done.refused.append(f"{row.key.label}: taken from {', '.join(weakness)}; pin such figures only on purpose, "
                            "with --allow-weak-run")
        return None
    figures, left_out = dict(sorted(row.gated.items())), []
    if taken_from["weights"] == "seeded":
        # a metric of seeded weights at zero (top-1 0 % of random weights on generated clips)
        # cannot fall: the run holds the deployment to PyTorch's own value of it every night
        left_out = [name for name, f in figures.items() if f.kind is FigureKind.ACCURACY and f.value == 0
                    and f.higher_is_better]
        figures = {name: f for name, f in figures.items() if name not in left_out}
    if not figures:
        done.changes.append(f"not pinned {row.key.label}: only metrics of seeded weights at zero, which cannot "
                            "fall (the run judges them against PyTorch)")
        return None
    rounds = tuple(r for r in row.part("perf").get("rounds_ms") or [] if finite(r) is not None)
    pin = Pin(row.key, figures, run_id, taken_from, row.details.get("environment") or {}, {}, rounds,
              {name: "a metric of seeded weights at zero: it cannot fall" for name in left_out})
    old = before.figures if before else {}
    moved = [f"{n} {_value(old.get(n))} -> {_value(f)}" for n, f in pin.figures.items() if _value(old.get(n)) != _value(f)]
    dropped = [f"{n} {_value(old[n])} -> (none)" for n in sorted(set(old) - set(pin.figures))]
    done.changes.append(f"pinned {row.key.label}: " + ("; ".join(moved + dropped) or "unchanged")
                        + (f" (taken from {', '.join(weakness)})" if weakness else "")
                        + (f" (not pinned, metrics of seeded weights at zero: {', '.join(left_out)})" if left_out else ""))
    return pin


def update(results_path: Path, references_path: Path, patterns: list[str] | None = None,
           allow_weak: bool = False) -> Update:
    """Pin the rows of ``results_path`` that match ``patterns`` ('model/backend/precision/bsN'
    globs; all rows without) into ``references_path``, replacing their earlier pins and keeping
    every other row. Rows whose own verdict did not pass are left unpinned (named). A row with a
    gated figure that is not finite, or taken from seeded weights or generated, partial or
    limited data without ``allow_weak``, is refused: the file is then not written."""
    run = records.load_run(results_path)
    references_path = Path(references_path)
    existing = load(references_path) if references_path.exists() else References(references_path, {})
    runs = {pin.run: pin.set_by for pin in existing.pins.values()}
    pins = dict(existing.pins)
    run_id = str(run.header.get("run_id") or Path(results_path).parent.name)
    set_by = {"commit": run.header.get("commit"), "date": run.header.get("started") or run.header.get("finished"),
              "results": str(results_path), "environment": run.header.get("environment") or {}}
    done, matched = Update(), 0
    for row in run.rows.values():
        if patterns and not any(fnmatch.fnmatchcase(row.key.name, p) for p in patterns):
            continue
        matched += 1
        pin = _pin_row(row, run.header, run_id, pins.get(row.key), allow_weak, done)
        if pin is not None:
            pins[row.key] = replace(pin, set_by=set_by)
            runs[run_id] = set_by
    if patterns and not matched:
        raise ReferencesError(f"{results_path}: no row matches {', '.join(patterns)}")
    if done.refused:
        return done
    references_path.parent.mkdir(parents=True, exist_ok=True)
    references_path.write_text(_document(runs, pins))
    load(references_path)  # what was written reads back
    return done


def _value(figure: Figure | None) -> str:
    return "(none)" if figure is None or figure.value is None or not math.isfinite(figure.value) else f"{figure.value:.6g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.references", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pin = commands.add_parser("update", help="pin rows of a run's results.json (writes the file for review)")
    pin.add_argument("results", type=Path, help="the accepted run's results.json")
    pin.add_argument("--rows", nargs="+", metavar="PATTERN",
                     help="only rows matching these 'model/backend/precision/bsN' globs (default: every row)")
    pin.add_argument("--file", type=Path, default=DEFAULT_PATH, help=f"the references file (default {DEFAULT_PATH.relative_to(PROJECT)})")
    pin.add_argument("--allow-weak-run", action="store_true",
                     help="also pin rows taken from seeded weights or generated, partial or --limit data "
                          "(the CPU nightly's own rows); each is said so")
    args = parser.parse_args(argv)
    try:
        done = update(args.results, args.file, args.rows, args.allow_weak_run)
    except ValueError as err:  # a references or results file that cannot be read, a pattern matching nothing
        parser.error(str(err))
    print("\n".join(done.changes))
    if done.refused:
        print("refused, nothing written:\n" + "\n".join(f"  {line}" for line in done.refused), file=sys.stderr)
        return 1
    print(f"wrote {args.file}: review the change and commit it in a pull request that says why")
    return 0


if __name__ == "__main__":
    sys.exit(main())
