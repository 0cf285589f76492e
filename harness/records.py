"""Run records: ``reports/<run-id>/results.json`` written and read here, and nowhere else.

A record is one row (model x backend x precision x batch size). Tests add partial records (the
parts of a :class:`harness.results.Result`, an error, an expected failure) through a
:class:`PartWriter` per process (safe under xdist); the run's controller merges them per key,
each row's figures and findings gathered from every part, and derives the row's status from its
findings. The file carries :data:`FORMAT`; a file of another format is refused by name.
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from harness.cache import atomic_write
from harness.results import Figure, Finding, FindingKind
from harness.spec import OOM

FORMAT = 2  # results.json's layout; 1 (no "format" key): rows without figures and findings
RECORD_KEY = ("model", "backend", "precision", "batch_size")
LISTS = ("figures", "findings")  # gathered from every part of a row, not overwritten


class ResultsFormatError(ValueError):
    """A results.json that this suite cannot read: the message names the file and why."""


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"


def record_key(record: dict) -> tuple:
    return tuple(record[k] for k in RECORD_KEY)


def row_name(key: tuple) -> str:
    model, backend, precision, bs = key
    return f"{model}/{backend}/{precision}/bs{bs}"


def _identity(item: dict) -> tuple:
    return (item.get("part"), item.get("name") or item.get("what"), item.get("message"))


def merge_record(into: dict, update: dict) -> dict:
    """Fields of ``update`` into ``into``: nested dicts merged, figures and findings gathered
    (a later figure of the same part and name replaces the earlier one)."""
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


def status(record: dict) -> str:
    """The row's status from what it holds: 'error', 'oom', 'fail', 'expected failure' or 'pass'."""
    if record.get("error"):
        if record.get("expected_failure"):
            return "expected failure"
        return OOM if record["error"].get("type") == "MemoryError" else "error"
    kinds = {f["kind"] for f in record.get("findings", [])}
    if FindingKind.FAILURE.value in kinds:
        return "fail"
    if FindingKind.EXPECTED_FAILURE.value in kinds:
        return "expected failure"
    return "pass"


def out_of_memory(record: dict) -> bool:
    return status(record) == OOM


def finalise(record: dict) -> dict:
    record["status"] = status(record)
    return record


def figures(record: dict) -> list[Figure]:
    return [Figure.from_dict(f) for f in record.get("figures", [])]


def findings(record: dict, kind: FindingKind | None = None) -> list[Finding]:
    found = [Finding.from_dict(f) for f in record.get("findings", [])]
    return [f for f in found if kind is None or f.kind is kind]


def figure(record: dict, part: str, name: str) -> Figure | None:
    return next((f for f in figures(record) if f.part == part and f.name == name), None)


class PartWriter:
    """Appends partial records for one process; one JSON object per line."""

    def __init__(self, run_dir: Path, worker: str):
        self.path = run_dir / "parts" / f"{worker}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, record: dict) -> None:
        missing = [k for k in RECORD_KEY if k not in record]
        if missing:
            raise ValueError(f"report record lacks {missing}")
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


def _sorted(merged: dict[tuple, dict]) -> list[dict]:
    return [finalise(r) for r in sorted(merged.values(), key=record_key)]


def merge_parts(run_dir: Path) -> list[dict]:
    merged: dict[tuple, dict] = {}
    for part in sorted((run_dir / "parts").glob("*.jsonl")):
        for line in part.read_text().splitlines():
            record = json.loads(line)
            merge_record(merged.setdefault(record_key(record), {}), record)
    return _sorted(merged)


def write_results(run_dir: Path, header: dict, records: list[dict], notes: Iterable[str] = ()) -> dict:
    results = {"format": FORMAT, **header, "notes": list(notes), "records": records}
    text = json.dumps(measured(results), indent=1, default=_jsonable, allow_nan=False)
    atomic_write(run_dir / "results.json", lambda tmp: tmp.write_text(text))
    return results


@dataclass(frozen=True)
class Run:
    """A finished run's results.json: its header (environment, config, ...) and rows by key."""
    path: Path
    header: dict
    records: dict[tuple, dict] = field(repr=False)


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
        missing = [k for k in RECORD_KEY if k not in record]
        if missing:
            raise ResultsFormatError(f"{path}: record {number} lacks {', '.join(missing)}")
    return data


def load_run(path: Path) -> Run:
    data = load_results(path)
    return Run(Path(path), {k: v for k, v in data.items() if k != "records"},
               {record_key(r): r for r in data["records"]})


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
            merge_record(merged.setdefault(record_key(record), {}), copy.deepcopy(record))
        merge_record(reference_fps, copy.deepcopy(run.get("reference_fps") or {}))
    header = {k: v for k, v in runs[0].items() if k not in ("records", "notes", "format")}
    header.update(
        run_id="+".join(r.get("run_id", "?") for r in runs),
        finished=runs[-1].get("finished"),
        exit_status=max(r.get("exit_status", 0) for r in runs),
        artifacts_built=sum(r.get("artifacts_built", 0) for r in runs),
        reference_fps=reference_fps,
        merged_from=[r.get("run_id") for r in runs])
    notes = [f"merged from {len(runs)} runs: {', '.join(str(r.get('run_id')) for r in runs)}"]
    for section in ("environment", "config"):
        for key in sorted({k for r in runs for k in (r.get(section) or {})}):
            values = [(r.get(section) or {}).get(key) for r in runs]
            if any(v != values[0] for v in values):
                notes.append(f"{section} {key} differs between the merged runs: {values}")
    notes += [f"{r.get('run_id')}: {note}" for r in runs for note in r.get("notes", [])]
    return header, _sorted(merged), notes
