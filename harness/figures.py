"""A row's figures and findings: the types every part of the suite reads, in a module that
imports nothing heavy (the gate, references and history commands start with it alone).

A :class:`Figure` is one measured value with what it was judged against; a :class:`Finding` is
what failed, was noted or does not apply. ``harness.results`` builds them, ``harness.records``
keeps them in rows.
"""
from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass
from typing import Mapping


class FindingKind(str, enum.Enum):
    FAILURE = "failure"  # the row fails
    EXPECTED_FAILURE = "expected failure"  # a declared known failure, failing as declared
    NOT_APPLICABLE = "not applicable"  # a verdict that cannot be given here, and why
    NOTE = "note"  # said in the report, fails nothing


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    part: str  # 'accuracy', 'published', 'perf', 'row'
    what: str  # the figure or check: 'top1', 'element-wise', 'data', 'timings', 'audit', ...
    message: str

    def __str__(self) -> str:
        return f"{self.what}: {self.message}"

    def as_dict(self) -> dict:
        return {"kind": self.kind.value, "part": self.part, "what": self.what, "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Finding":
        return cls(FindingKind(data["kind"]), data["part"], data["what"], data["message"])


class Verdict(str, enum.Enum):
    """A figure's or a part's verdict (a str: results.json and the report read it as text)."""
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"

    @classmethod
    def of(cls, passed: bool) -> "Verdict":
        return cls.PASS if passed else cls.FAIL


class FigureKind(str, enum.Enum):
    ACCURACY = "accuracy"  # gated with an absolute band (the spec's tolerance for the precision)
    SPEED = "speed"  # gated with the run's relative --fps-regression
    INFO = "info"  # shown, never gated

    @property
    def gated(self) -> bool:
        """Judged by the gate and held by a pin."""
        return self is not FigureKind.INFO


@dataclass(frozen=True)
class Figure:
    """One measured value of a row, with what it was judged against."""

    part: str  # 'accuracy', 'published', 'perf'
    name: str
    value: float | None  # None: not measured, or measured and refused (a finding says why)
    unit: str = ""
    higher_is_better: bool = True
    kind: FigureKind = FigureKind.INFO
    tolerance: float | None = None  # the absolute band of an accuracy figure
    reference: float | None = None  # what it was judged against (PyTorch's value, a limit, the table)
    reference_name: str = ""  # 'PyTorch', 'limit', 'published', 'Ascend310P3 table'
    verdict: Verdict | None = None  # None: not judged

    def __post_init__(self):  # 'pass' is read as Verdict.PASS, whoever built the figure
        if self.verdict is not None:
            object.__setattr__(self, "verdict", Verdict(self.verdict))

    def as_dict(self) -> dict:
        return {**asdict(self), "kind": self.kind.value, "verdict": self.verdict.value if self.verdict else None}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Figure":
        return cls(**{**data, "kind": FigureKind(data["kind"])})


def finite(value) -> float | None:
    """A finite figure, or None (absent, NaN, infinite or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


