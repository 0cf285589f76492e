"""The nightly regression gate: this run's rows against a baseline run's results.json."""
from __future__ import annotations

import json
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


def compare_fps(key: tuple, current: float, baseline: float, fraction: float
                ) -> tuple[Finding | None, Finding | None]:
    finding = Finding(row_name(key), "fps", current, baseline, f"allowed drop {fraction:.0%}")
    if current < baseline * (1 - fraction):
        return finding, None
    if current > baseline * (1 + fraction):
        return None, finding
    return None, None
