"""Run configuration: what the command-line options resolve to, independent of pytest."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.defaults import DEFAULT_CACHE_DIR, DEFAULT_FPS_REGRESSION, DEFAULT_REPORT_DIR


@dataclass(frozen=True)
class RunConfig:
    backends: tuple[str, ...] = ("onnxruntime",)  # each deployed runtime is judged on its own
    # 'fp32' or 'default' (the runtime's own choice, e.g. bf16 / fp16); None: each backend's default
    precision: str | None = None
    soc: str | None = None
    devices: tuple[int, ...] = (0,)
    profile: str = "smoke"
    weights_dir: Path | None = None
    data_root: Path | None = None
    accept_bad_items: tuple[str, ...] = ()  # dataset items the user accepts to leave out (reported)
    accept_missing: bool = False  # a partial copy: listed items absent from disk are left out (reported)
    batch_sizes: tuple[int, ...] | None = None  # None: the profile's batch sizes per model
    models: tuple[str, ...] | None = None  # None: every registered model
    limit: int | None = None  # samples (items of the dataset index) per model
    # preprocessing worker processes (0: in the test process); the default uses every core
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    cache_dir: Path = Path(DEFAULT_CACHE_DIR)
    cache_budget: int | None = None  # bytes; None: harness.cache_budget.default_budget
    report_dir: Path = Path(DEFAULT_REPORT_DIR)
    save_outputs: Path | None = None
    save_layout: str = "npz"  # of --save-outputs: 'npz' per sample id, or 'ais_bench' (.bin, <folder>_summary.json)
    seed_inputs: Path | None = None  # the seeds' preprocessed folders, <dir>/<model>/
    baseline: Path | None = None
    references: Path | None = None  # pinned references the in-run gate judges rows against
    fps_regression: float = DEFAULT_FPS_REGRESSION  # the gate fails when FPS drops by more than this fraction
    warmup: int | None = None  # untimed runs per perf row; None: ais_bench's default (1)
    loop: int | None = None  # timed runs per perf row; None: the seed's loop (full) or 5 (smoke)
    latest: bool = False  # make this run reports/latest even when it is partial (--limit, -k, --models, ...)
    perf_budget: float | None = None  # seconds of extra timed rounds per perf row; None: the profile's (harness.perf)
    keep_fp32: Path | None = None  # --keep-fp32: ATC's --keep_dtype file; None: each model card's own list

    @property
    def device(self) -> int:
        return self.devices[0]


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected comma-separated integers, e.g. 1,4,8") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{what} {text!r}: expected comma-separated non-negative integers")
    return values
