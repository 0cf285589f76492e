"""Fabricated nights in results.json (the suite's format) (rows carrying their ``figures``), for the gate, the
pinned references and the history: a night as the nightly's merged report writes it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness import records as records_format

ENVIRONMENT = {"python": "3.11.9", "cpu": "Intel Xeon", "cores": 2, "torch": "2.13.0", "onnxruntime": "1.22.0"}
FIRST_NIGHT = datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
CHECKPOINT_SHA256 = "73547d2b" + "0" * 56  # the rows' weights: a checkpoint, as the published nights run


def figure(part: str, name: str, value, unit: str = "", higher_is_better: bool = True, kind: str = "accuracy",
           tolerance: float | None = None, **more) -> dict:
    return {"part": part, "name": name, "value": value, "unit": unit, "higher_is_better": higher_is_better,
            "kind": kind, "tolerance": tolerance, **more}


def record(bs: int = 1, top1: float | None = 80.0, epe: float | None = 2.0, fps: float | None = 100.0,
           model: str = "m", backend: str = "onnxruntime", soc: str | None = None, profile: str = "smoke",
           status: str = "pass", published_top1: float | None = None, **fields) -> dict:
    """One row: two accuracy figures (one lower-is-better), an info figure the gate never judges,
    FPS as the speed figure; a figure given as None is left out of the row."""
    figures = [figure("accuracy", "max_abs_diff", 1e-6, kind="info", higher_is_better=False)]
    if top1 is not None:
        figures.append(figure("accuracy", "top1", top1, "%", True, "accuracy", 0.1, reference=top1, reference_name="PyTorch"))
    if epe is not None:
        figures.append(figure("accuracy", "epe", epe, "px", False, "accuracy", 0.05))
    if published_top1 is not None:
        figures.append(figure("published", "top1", top1, "%", True, "info", reference=published_top1,
                              reference_name="published"))
        fields.setdefault("published", {"applies": True, "reason": None})
    if fps is not None:
        figures.append(figure("perf", "fps", fps * bs, "fps", True, "speed"))
    taken_from = {"weights": {"source": "checkpoint", "sha256": CHECKPOINT_SHA256},
                  "data": {"generated": False, "listed": 10, "read": 10, "missing": 0, "failed": {}}}
    return {"model": model, "backend": backend, "precision": "fp32", "batch_size": bs, "profile": profile, "soc": soc,
            "status": status, "figures": figures, **taken_from, **fields}


def set_value(row: dict, name: str, value) -> dict:
    """Row with the figure 'part/name' set to ``value`` (NaN, None, a string: a broken figure)."""
    part, _, short = name.partition("/")
    for f in row["figures"]:
        if f["part"] == part and f["name"] == short:
            f["value"] = value
            return row
    raise KeyError(name)


def drop(row: dict, name: str) -> dict:
    part, _, short = name.partition("/")
    row["figures"] = [f for f in row["figures"] if (f["part"], f["name"]) != (part, short)]
    return row


def write_night(directory: Path, run_id: str, records: list[dict], night: int = 0,
                environment: dict | None = None, exit_status: int = 0, commit: str = "abc1234") -> Path:
    """reports/<run_id>/results.json of a night ``night`` days after the first."""
    started = FIRST_NIGHT + timedelta(days=night)
    path = Path(directory) / run_id / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": records_format.FORMAT, "run_id": run_id, "started": started.isoformat(),
                                "finished": (started + timedelta(hours=1)).isoformat(), "commit": commit,
                                "environment": environment or ENVIRONMENT, "config": {"profile": "smoke"},
                                "exit_status": exit_status, "notes": [], "records": records}))
    return path


FPS_DROP_PER_NIGHT = 0.08  # inside the last-night allowance of 10 %, every night
TOP1_DROP_PER_NIGHT = 0.04  # inside the tolerance of 0.1, every night


def drifting_nights(directory: Path, count: int = 8) -> list[Path]:
    """A slow drift: each night the bs1 row loses 8 % FPS and 0.04 top-1 against the night
    before (inside every last-night band); the bs2 row stays where it was."""
    paths = []
    for night in range(count):
        rows = [record(1, top1=round(80.0 - TOP1_DROP_PER_NIGHT * night, 4), fps=100.0 * (1 - FPS_DROP_PER_NIGHT) ** night,
                       published_top1=81.126),
                record(2, published_top1=81.126)]
        paths.append(write_night(directory, f"night-{night}", rows, night))
    return paths
