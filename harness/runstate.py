"""One run's state: every tally and budget a run keeps, in one object a run owns.

The suite keeps it on ``config.stash`` (``fixtures/options.py``) and passes it to what tallies or
spends: the artifact builds (:func:`harness.cache.build_once`), the datasets' passes
(:meth:`harness.datasets.IndexedDataset.preprocessed`). A script makes its own. Nothing here
lives in a module: two runs in one process (pytest's in-process ``pytester`` runs) each count
their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from harness.cache_budget import CacheBudget


@dataclass
class PassCounts:
    """Items of one or more dataset passes: how each was served."""

    decoded: int = 0  # decoded by a reader (not found in the cache)
    from_cache: int = 0  # read from the cache
    kept: int = 0  # decoded and stored in the cache
    not_kept: int = 0  # decoded and served without being stored: the budget had no room

    def add(self, other: "PassCounts") -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class RunState:
    budget: CacheBudget  # the cache directory's disk budget (--cache-budget), measured from the run's start
    built: list[str] = field(default_factory=list)  # artifacts this run converted: 'kind/name'
    rebuilt: list[str] = field(default_factory=list)  # artifacts found damaged (not their digest) and built again: why
    served: PassCounts = field(default_factory=PassCounts)  # every dataset pass of this process's run
    worker_reports: list[dict] = field(default_factory=list)  # xdist workers' budget reports, on the controller

    @classmethod
    def start(cls, cache_dir: Path, budget_bytes: int | None = None) -> "RunState":
        """A new run over ``cache_dir`` (``budget_bytes`` None: the default budget)."""
        return cls(CacheBudget(Path(cache_dir).resolve(), budget_bytes))

    @property
    def cache_dir(self) -> Path:
        return self.budget.cache_dir
