"""Run records: ``reports/<run-id>/results.json`` written and read here, and nowhere else.

A record is one row (model x backend x precision x batch size). Tests add partial records (the
parts of a :class:`harness.results.Result`, an error, an expected failure) through a
:class:`PartWriter` per process (safe under xdist); the run's controller merges them per key,
each row's figures and findings gathered from every part, and derives the row's status from its
findings. The file carries :data:`FORMAT`; a file of another format is refused by name.
"""
from __future__ import annotations

import copy
import enum
import json
import math
import os
from dataclasses import asdict, astuple, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.cache import atomic_write
from harness.figures import Figure, FigureKind, Finding, FindingKind, Verdict


FORMAT = 3  # results.json's layout; 2: rows without 'profile', 'soc', 'machine' and gate findings as text
LISTS = ("figures", "findings", "gate")  # gathered from every part of a row, not overwritten


class ResultsFormatError(ValueError):
    """A results.json that this suite cannot read: the message names the file and why."""


class Status(str, enum.Enum):
    """A row's status, derived from what it holds (a str: results.json reads it as text)."""
    PASS = "pass"
    FAIL = "fail"  # a finding of its own failed
    ERROR = "error"  # a stage raised
    OOM = "oom"  # the runtime ran out of memory (harness.spec.OOM, as the seeds' tables write it)
    EXPECTED_FAILURE = "expected failure"  # failed as the card declares

    @property
    def red(self) -> bool:
        """The row's own verdict is red, whatever any gate says."""
        return self in (Status.FAIL, Status.ERROR)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"


@dataclass(frozen=True)
class RowKey:
    """What a row is: the one place its identity is stated. Pins, the gate, the history and the
    report key rows by it; adding a field here adds it to every one of them."""
    model: str
    backend: str
    precision: str
    batch_size: int
    profile: str | None = None
    soc: str | None = None
    machine: str | None = None  # the CPU a CPU row ran on ('<model>, N cores'); None: an accelerator row (its soc)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, record: Mapping) -> "RowKey":
        """The key of a results.json record or pinned entry (KeyError naming a missing field)."""
        missing = [name for name in cls.names()[:4] if name not in record]
        if missing:
            raise KeyError(", ".join(missing))
        return cls(**{name: record.get(name) for name in cls.names()})

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def in_run(self) -> "RowKey":
        """The row within one run, where profile, soc and machine are the run's: the key an
        earlier night's row is found by (a difference there is then named, not a new row)."""
        return replace(self, profile=None, soc=None, machine=None)

    @property
    def model_row(self) -> tuple[str, str, int]:
        """(model, backend, batch size): the row whatever it ran at or where, to name what differs."""
        return self.model, self.backend, self.batch_size

    @property
    def name(self) -> str:
        return f"{self.model}/{self.backend}/{self.precision}/bs{self.batch_size}"

    @property
    def label(self) -> str:
        where = ", ".join([f"{self.profile} profile", self.soc or "no soc"] + ([self.machine] if self.machine else []))
        return f"{self.name} ({where})"

    def differences(self, other: "RowKey") -> list[str]:
        """'field: other's value -> this one's' for each field that differs."""
        return [f"{name}: {getattr(other, name)!r} -> {getattr(self, name)!r}"
                for name in self.names() if getattr(self, name) != getattr(other, name)]

    def sort_key(self) -> tuple:
        return tuple("" if v is None else str(v) for v in astuple(self))


@dataclass(frozen=True)
class Row:
    """One finished row of results.json, typed: its key, status, figures, findings, the gate's
    findings as written (``harness.gate.GateFinding.from_dict`` reads them), and the parts'
    own details (``accuracy``, ``perf``, ``published``, ``data``, ``weights``, ``environment``,
    ``error``, ...) as the result types wrote them."""
    key: RowKey
    status: Status
    figures: tuple[Figure, ...] = ()
    findings: tuple[Finding, ...] = ()
    gate: tuple[dict, ...] = ()
    details: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, record: Mapping) -> "Row":
        return cls(RowKey.of(record), Status(record.get("status") or status(record)),
                   tuple(Figure.from_dict(f) for f in record.get("figures") or ()),
                   tuple(Finding.from_dict(f) for f in record.get("findings") or ()),
                   tuple(record.get("gate") or ()),
                   {k: v for k, v in record.items() if k not in (*RowKey.names(), *LISTS, "status")})

    def record(self) -> dict:
        """The row as results.json holds it."""
        return {**self.key.as_dict(), "status": self.status.value, **self.details,
                "figures": [f.as_dict() for f in self.figures], "findings": [f.as_dict() for f in self.findings],
                "gate": list(self.gate)}

    def part(self, name: str) -> dict:
        """A part's own details ('accuracy', 'perf', 'published', 'data', 'weights', ...), {} if absent."""
        value = self.details.get(name)
        return value if isinstance(value, dict) else {}

    def figure(self, part: str, name: str) -> Figure | None:
        return next((f for f in self.figures if f.part == part and f.name == name), None)

    def findings_of(self, kind: FindingKind | None = None) -> list[Finding]:
        return [f for f in self.findings if kind is None or f.kind is kind]

    @property
    def gated(self) -> dict[str, Figure]:
        """The figures the gate judges and a pin holds, by 'part/name'."""
        return {f"{f.part}/{f.name}": f for f in self.figures if f.kind.gated}

    @property
    def error(self) -> str:
        """Why the row errored, in words ('' when it did not)."""
        error = self.details.get("error")
        if not isinstance(error, dict):
            return ""
        return ": ".join(str(error[k]) for k in ("type", "message") if error.get(k)) or "errored (no reason recorded)"


def _identity(item: dict) -> tuple:
    return (item.get("part"), item.get("name") or item.get("what"), item.get("message") or item.get("detail"),
            item.get("against"))


def merge_record(into: dict, update: dict) -> dict:
    """Fields of ``update`` into ``into``: nested dicts merged, figures, findings and gate
    findings gathered (a later figure of the same part and name replaces the earlier one)."""
    for key, value in update.items():
        if key in LISTS:
            kept = {_identity(item): item for item in into.get(key, [])}
            kept.update({_identity(item): item for item in value})
            into[key] = list(kept.values())
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_record(into[key], value)
        else:
            into[key] = value
    return into


def status(record: Mapping) -> Status:
    """The row's status from what it holds."""
    if record.get("error"):
        if record.get("expected_failure"):
            return Status.EXPECTED_FAILURE
        return Status.OOM if record["error"].get("type") == "MemoryError" else Status.ERROR
    kinds = {f["kind"] for f in record.get("findings", [])}
    if FindingKind.FAILURE.value in kinds:
        return Status.FAIL
    if FindingKind.EXPECTED_FAILURE.value in kinds:
        return Status.EXPECTED_FAILURE
    return Status.PASS


def finalise(record: dict) -> dict:
    record["status"] = status(record).value
    return record


class PartWriter:
    """Appends partial records for one process; one JSON object per line."""

    def __init__(self, run_dir: Path, worker: str):
        self.path = run_dir / "parts" / f"{worker}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, record: dict) -> None:
        try:
            RowKey.of(record)
        except KeyError as err:
            raise ValueError(f"report record lacks {err}") from None
        with open(self.path, "a") as f:
            f.write(json.dumps(measured(record), default=_jsonable, allow_nan=False) + "\n")


def measured(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, in nested dicts and lists: a
    figure that is not a number is refused where it enters (a finding says why), and results.json
    never carries one as a measured value."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: measured(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [measured(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return measured(value.item())
    return value


def _jsonable(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _sorted(merged: dict[RowKey, dict]) -> list[dict]:
    return [finalise(merged[key]) for key in sorted(merged, key=RowKey.sort_key)]


def merge_parts(run_dir: Path) -> list[dict]:
    merged: dict[tuple, dict] = {}
    for part in sorted((run_dir / "parts").glob("*.jsonl")):
        for line in part.read_text().splitlines():
            record = json.loads(line)
            merge_record(merged.setdefault(RowKey.of(record), {}), record)
    return _sorted(merged)


def write_results(run_dir: Path, header: dict, records: list[dict], notes: Iterable[str] = ()) -> dict:
    results = {"format": FORMAT, **header, "notes": list(notes), "records": records}
    text = json.dumps(measured(results), indent=1, default=_jsonable, allow_nan=False)
    atomic_write(run_dir / "results.json", lambda tmp: tmp.write_text(text))
    return results


@dataclass(frozen=True)
class Run:
    """A finished run's results.json: its header (environment, config, ...) and its rows."""
    path: Path
    header: dict
    rows: dict[RowKey, Row] = field(repr=False)

    @classmethod
    def of_rows(cls, path: Path, rows: Iterable[Row], header: dict | None = None) -> "Run":
        return cls(Path(path), header or {}, {row.key: row for row in rows})

    def row(self, key: RowKey) -> Row | None:
        """This run's row of ``key``, found by its identity within a run (another profile, soc
        or machine is the same row run elsewhere: the caller names the difference)."""
        exact = self.rows.get(key)
        return exact or next((r for r in self.rows.values() if r.key.in_run == key.in_run), None)


def load_results(path: Path) -> dict:
    """The whole results.json, or :class:`ResultsFormatError` naming the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ResultsFormatError(f"{path}: cannot be read ({err.strerror or err})") from err
    except ValueError as err:
        raise ResultsFormatError(f"{path}: not JSON ({err}); expected a results.json written by this suite") from err
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ResultsFormatError(f"{path}: no 'records' list; expected a results.json written by this suite")
    found = data.get("format", 1)
    if found != FORMAT:
        raise ResultsFormatError(f"{path}: results.json format {found}, this suite reads format {FORMAT} "
                                 "(rerun that night with this version, or compare with the version that wrote it)")
    for number, record in enumerate(data["records"]):
        try:
            RowKey.of(record)
        except KeyError as err:
            raise ResultsFormatError(f"{path}: record {number} lacks {err.args[0]}") from None
    _validate(path, data)
    return data


_NUMBER = {"type": ["number", "null"]}
_TEXT = {"type": ["string", "null"]}
# what each record of results.json holds, as the gate, the pins and the history read it: a field
# renamed or retyped by hand (or by another version) is named where it enters, never read as absent
RECORD_SCHEMA = {
    "type": "object",
    "required": list(RowKey.names()[:4]),
    "properties": {
        "model": {"type": "string"}, "backend": {"type": "string"}, "precision": {"type": "string"},
        "batch_size": {"type": "integer", "minimum": 0}, "profile": _TEXT, "soc": _TEXT, "machine": _TEXT,
        "status": {"enum": [s.value for s in Status]},
        "figures": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["part", "name", "value", "unit", "higher_is_better", "kind"],
            "properties": {"part": {"type": "string"}, "name": {"type": "string"}, "value": _NUMBER,
                           "unit": {"type": "string"}, "higher_is_better": {"type": "boolean"},
                           "kind": {"enum": [k.value for k in FigureKind]}, "tolerance": _NUMBER,
                           "reference": _NUMBER, "reference_name": {"type": "string"},
                           "verdict": {"enum": [v.value for v in Verdict] + [None]}}}},
        "findings": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["kind", "part", "what", "message"],
            "properties": {"kind": {"enum": [k.value for k in FindingKind]}, "part": {"type": "string"},
                           "what": {"type": "string"}, "message": {"type": "string"}}}},
        "gate": {"type": "array", "items": {
            "type": "object", "required": ["kind", "row", "what", "detail", "against", "binding"]}},
    },
}


def _validate(path: Path, data: dict) -> None:
    """Every record against :data:`RECORD_SCHEMA` (jsonschema), or :class:`ResultsFormatError`
    naming the record, the field and what was expected."""
    import jsonschema  # what reads a results.json imports it; the suite's start does not need it

    validator = jsonschema.Draft202012Validator(RECORD_SCHEMA)
    for number, record in enumerate(data["records"]):
        error = jsonschema.exceptions.best_match(validator.iter_errors(record))
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or " itself"
            raise ResultsFormatError(f"{path}: record {number} ({RowKey.of(record).name}){where}: {error.message}")


def load_run(path: Path) -> Run:
    data = load_results(path)
    return Run.of_rows(path, (Row.of(r) for r in data["records"]), {k: v for k, v in data.items() if k != "records"})


def merge_runs(results_files: list[Path]) -> tuple[dict, list[dict], list[str]]:
    """One night from several invocations' results.json (e.g. accuracy under ``-n`` and perf
    without it): rows merged per key, later files winning where both hold the same field.
    Returns (header, records, notes); the notes name the merged runs and every environment or
    config entry that differs between them, since the rows then did not all run alike."""
    runs = [load_results(path) for path in results_files]
    if not runs:
        raise ResultsFormatError("merge needs at least one results.json")
    merged: dict[tuple, dict] = {}
    reference_fps: dict = {}
    for run in runs:
        for record in run["records"]:
            merge_record(merged.setdefault(RowKey.of(record), {}), copy.deepcopy(record))
        merge_record(reference_fps, copy.deepcopy(run.get("reference_fps") or {}))
    header = {k: v for k, v in runs[0].items() if k not in ("records", "notes", "format")}
    # a night merged from its jobs is partial where one of them was limited or narrowed; a job
    # with no accuracy or perf row of its own (a conformance-only leg) is whole within the night
    reasons = {reason for r in runs for reason in r.get("partial") or [] if not reason.startswith("no accuracy or perf row")}
    header.update(
        run_id="+".join(r.get("run_id", "?") for r in runs),
        finished=runs[-1].get("finished"),
        exit_status=max(r.get("exit_status", 0) for r in runs),
        artifacts_built=sum(r.get("artifacts_built", 0) for r in runs),
        reference_fps=reference_fps,
        merged_from=[r.get("run_id") for r in runs],
        partial=sorted(reasons))
    notes = [f"merged from {len(runs)} runs: {', '.join(str(r.get('run_id')) for r in runs)}"]
    for section in ("environment", "config"):
        for key in sorted({k for r in runs for k in (r.get(section) or {})}):
            values = [(r.get(section) or {}).get(key) for r in runs]
            if any(v != values[0] for v in values):
                notes.append(f"{section} {key} differs between the merged runs: {values}")
    notes += [f"{r.get('run_id')}: {note}" for r in runs for note in r.get("notes", [])]
    return header, _sorted(merged), notes
