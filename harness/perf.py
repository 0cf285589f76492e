"""The perf stage: ais_bench's loop (warm-up, then timed rounds of one batch), every figure it
hands over checked before it is believed, every round's outputs audited.

:func:`timed_loop` runs the loop and returns a :class:`TimedLoop`: the per-round wall and compute
times, checked (finite, positive, compute not above the wall of the same round), and the audit
(MLPerf TEST01-style: the first timed round's outputs equal PyTorch's for the same inputs within
the precision's element-wise tolerance, and every other round's equal the first's). The checks
run between rounds, outside the timed call.

The number of timed rounds is calibrated, as pyperf and Google Benchmark calibrate theirs: after
a floor (the seed's ``--loop`` at full shapes, 5 at smoke), rounds go on until the 95 %
interval of the median lies within ±1 % of it or the row's time budget (``--perf-budget``) is
spent. The row keeps every round's time and what stopped the loop, so that a later verdict can
tell noise from change (:mod:`harness.perfstats`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from harness import perfstats
from harness.outputs import ElementwiseStats, output_contract_problems, split
from harness.results import Figure, FigureKind, Finding, FindingKind, finite
from harness.spec import Elementwise

TIMER = "time.perf_counter around one session.run(feeds) with inputs prepared in memory"
# msit's ais_bench keeps each run's (start, end) as float32 ms since the session opened: a step of
# about 0.06 ms after 1,000 s, so a compute span may read a hair above a tight wall time
COMPUTE_SLACK_MS = 0.1


# the median's 95 % interval within ±1 % of it: two such rows' ratio is then known to about ±1.5 %,
# so a change 5 % past the gate's allowance is told from noise (at ±2 %, 15 % against 0.10 was not)
TARGET_PRECISION = 0.01
BUDGET_S = {"smoke": 2.0, "full": 30.0}  # per row, timed rounds and their audit; --perf-budget overrides


@dataclass(frozen=True)
class Calibration:
    """How many timed rounds a row runs: at least ``floor``; beyond it, until the median's 95 %
    interval is within ±``target`` of it or ``budget_s`` seconds of the loop are spent."""
    floor: int
    budget_s: float
    target: float = TARGET_PRECISION


@dataclass
class TimedLoop:
    runtime: str  # 'onnxruntime (fp32)': named in every finding
    warmup: int
    calibration: Calibration
    reports_compute_time: bool = False  # the backend declares device compute times
    wall_ms: list[float] = field(default_factory=list)  # timed rounds only
    compute_ms: list[float] = field(default_factory=list)
    transfers_ms: list[dict[str, float]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    audited_rounds: int = 0
    audit: str = ""
    precision_reached: float | None = None  # the median's 95 % interval, half its width over the median
    budget_spent: bool = False  # the budget stopped the rounds before the target was reached

    def fail(self, what: str, message: str) -> None:
        self.findings.append(Finding(FindingKind.FAILURE, "perf", what, f"{self.runtime}: {message}"))

    @property
    def trusted(self) -> bool:
        return not any(f.kind is FindingKind.FAILURE and f.what in ("timings", "compute time")
                       for f in self.findings)

    def description(self) -> dict:
        """How the figures were measured, every timed round's wall time (``rounds_ms``) included."""
        return {"rounds": len(self.wall_ms), "warmup": self.warmup, "timer": TIMER, "audit": self.audit,
                "audited_rounds": self.audited_rounds, "rounds_ms": [round(ms, 4) for ms in self.wall_ms],
                "floor_rounds": self.calibration.floor, "precision_target": self.calibration.target,
                "precision_reached": self.precision_reached, "budget_s": self.calibration.budget_s,
                "budget_spent": self.budget_spent}

    def figures(self, batch_size: int) -> dict[str, Figure]:
        """FPS and latency from checked timings; no figure from timings that were refused."""
        if not self.wall_ms or not self.trusted:
            return {}
        ms = np.asarray(self.wall_ms)
        # the median round's FPS is what the gate holds to its allowance: with the rounds beside it,
        # it compares their distributions (harness.gate); the fastest round is shown, not gated
        out = {"fps": _speed("fps", 1000.0 * batch_size / float(np.median(ms)), FigureKind.SPEED),
               "best_fps": _speed("best_fps", 1000.0 * batch_size / float(ms.min()), FigureKind.INFO),
               "mean_fps": _speed("mean_fps", 1000.0 * batch_size / float(ms.mean()), FigureKind.INFO)}
        for q in (50, 90, 99):
            out[f"p{q}_ms"] = Figure("perf", f"p{q}_ms", float(np.percentile(ms, q)), "ms", False)
        if self.compute_ms:
            mean = float(np.mean(self.compute_ms))  # ais_bench: throughput = 1000 * bs / mean compute ms
            out["compute_ms"] = Figure("perf", "compute_ms", mean, "ms", False)
            out["compute_fps"] = _speed("compute_fps", 1000.0 * batch_size / mean, FigureKind.INFO)
        for name in ("h2d_ms", "d2h_ms"):
            values = [t[name] for t in self.transfers_ms if name in t]
            if values:
                out[name] = Figure("perf", name, float(np.mean(values)), "ms", False)
        return out


def _speed(name: str, value: float, kind: FigureKind) -> Figure:
    return Figure("perf", name, value, "samples/s", True, kind)


def timed_loop(session, feeds: Mapping[str, np.ndarray], batch_size: int, warmup: int, calibration: Calibration, *,
               reference: Sequence[Mapping[str, np.ndarray]], tolerance: Elementwise, declared_outputs,
               precision: str, runtime: str, reports_compute_time: bool = False) -> TimedLoop:
    """Time runs of one prepared batch after ``warmup`` untimed ones, as many as ``calibration``
    asks for, and check every figure and every round's outputs; ``reference`` holds PyTorch's
    outputs per real sample of the batch (padding rows are not audited). A runtime that declares
    compute times (``reports_compute_time``) must report one for every timed round."""
    loop = TimedLoop(runtime, warmup, calibration, reports_compute_time=reports_compute_time)
    state = {"round": 0, "first": None, "stats": ElementwiseStats(tolerance), "rounds_stats": ElementwiseStats(tolerance)}

    def one_round() -> None:
        # One stopwatch per round: this pair of perf_counter reads around session.run is the
        # round's time in the row (rounds_ms, the figures, the gate) and in pytest-benchmark's
        # table, which is handed these times (tests/test_perf.py) instead of timing the call again.
        # The loop keeps its own clock because it decides the number of rounds as it goes, where
        # benchmark.pedantic fixes it before the first round.
        start = time.perf_counter()
        outputs = session.run(feeds)
        wall = (time.perf_counter() - start) * 1000.0
        index, state["round"] = state["round"], state["round"] + 1
        if index >= warmup:  # the checks and the audit run after the stopwatch stopped
            _check_timing(loop, index - warmup, wall, session.last_compute_ms(), session.last_transfer_ms())
        _audit_round(loop, state, outputs, reference, declared_outputs, batch_size, precision)

    for _ in range(warmup):
        one_round()
    started, goal = time.perf_counter(), calibration.floor
    while len(loop.wall_ms) < goal:
        one_round()
        if len(loop.wall_ms) == goal:
            goal = _next_goal(loop, time.perf_counter() - started)
    _conclude_audit(loop, state, precision)
    return loop


def _next_goal(loop: TimedLoop, elapsed_s: float) -> int:
    """The round count to reach before the next look: the count so far where the target is met,
    the budget is spent or a timing was refused; else what the interval's width asks for (it
    narrows as 1/sqrt(rounds)), at most double (few rounds estimate their noise roughly) and no
    more than the rest of the budget affords at the pace so far."""
    rounds, calibration = len(loop.wall_ms), loop.calibration
    if not loop.trusted:
        return rounds
    median, low, high = perfstats.median_interval(loop.wall_ms)
    loop.precision_reached = (high - low) / 2 / median
    if loop.precision_reached <= calibration.target:
        return rounds
    affordable = int((calibration.budget_s - elapsed_s) / max(elapsed_s / rounds, 1e-9))
    if affordable < 1:
        loop.budget_spent = True
        return rounds
    wanted = math.ceil(rounds * (loop.precision_reached / calibration.target) ** 2)
    return rounds + min(max(wanted - rounds, 1), rounds, affordable)


def _check_timing(loop: TimedLoop, index: int, wall: float, compute, transfers) -> None:
    loop.wall_ms.append(wall)
    if finite(wall) is None or wall <= 0:
        loop.fail("timings", f"timed round {index} took {wall!r} ms of wall time: not a possible time")
    if compute is None and loop.reports_compute_time:
        loop.fail("compute time", f"timed round {index} reports no compute time, although the backend declares "
                                  "that its runtime reports one")
    if compute is not None:
        value = finite(compute)
        if value is None or value <= 0:
            loop.fail("compute time", f"timed round {index} reports {compute!r} ms of compute time: "
                                      "expected a finite time above 0")
        elif value > wall + COMPUTE_SLACK_MS:
            loop.fail("compute time", f"timed round {index} reports {value:.4g} ms of compute time, more than "
                                      f"the {wall:.4g} ms the whole call took")
        loop.compute_ms.append(compute)
    if transfers is not None:
        bad = {k: v for k, v in transfers.items() if finite(v) is None or v < 0}
        if bad:
            loop.fail("compute time", f"timed round {index} reports transfer times {bad}: expected finite times >= 0")
        loop.transfers_ms.append(transfers)


def _audit_round(loop: TimedLoop, state: dict, outputs, reference, declared_outputs, batch_size: int,
                 precision: str) -> None:
    problems = output_contract_problems(outputs, declared_outputs, batch_size, precision)
    if problems:
        if not any(f.what == "outputs" for f in loop.findings):
            loop.fail("outputs", f"round {state['round'] - 1}: {'; '.join(problems)}")
        return
    per_sample = split(outputs, len(reference))
    loop.audited_rounds += 1
    if state["first"] is None:  # the first round (warm-up included) against PyTorch
        state["first"] = per_sample
        for i, (ref, got) in enumerate(zip(reference, per_sample)):
            state["stats"].add(f"sample {i}", ref, got)
        return
    for i, (first, got) in enumerate(zip(state["first"], per_sample)):
        state["rounds_stats"].add(f"round {state['round'] - 1} sample {i}", first, got)


def _conclude_audit(loop: TimedLoop, state: dict, precision: str) -> None:
    checked, against_torch, across = loop.audited_rounds, state["stats"], state["rounds_stats"]
    if not checked:
        loop.audit = "no round audited: no round's outputs kept the declared contract"
        return
    if not against_torch.passed:
        loop.fail("audit", f"the timed outputs are not PyTorch's for the same inputs ({precision}): "
                           f"{against_torch.message()}")
    if across.elements and not across.passed:
        loop.fail("audit", f"the rounds' outputs differ from the first round's ({precision}): {across.message()}")
    loop.audit = (f"{checked} round(s) audited: the first against PyTorch, every other against the first, "
                  f"within the {precision} element-wise tolerance")


SMOKE_LOOP = 5  # the floor of timed runs per row at smoke shapes: figures to compare runs, not the seed's
AIS_BENCH_WARMUP = 1  # ais_bench's --warmup_count default


def calibration(spec, run) -> Calibration:
    """The floor is --loop, else the seed's loop (full) or SMOKE_LOOP; the budget --perf-budget,
    else the profile's, except that an explicit --loop alone is the exact count (no budget)."""
    floor = run.loop or (spec.seed_loop if run.profile == "full" else SMOKE_LOOP)
    if run.perf_budget is not None:
        return Calibration(floor, run.perf_budget)
    return Calibration(floor, 0.0 if run.loop else BUDGET_S.get(run.profile, BUDGET_S["smoke"]))


def perf_row(spec, run, backend, session, dataset, weights, batch_size: int, graph_count,
             network: Callable):
    """The perf stage of one row: the first batch of the dataset, PyTorch's outputs for it (the
    reference cache, ``network()`` only on a miss), the checked loop, the result with the loop's
    rounds and the machine they ran on."""
    from harness import results, stages
    from harness.environment import perf_machine
    from harness.outputs import batches

    first = next(batches(dataset, batch_size, spec.input_names), None)
    if first is None:
        result = results.PerfResult()
        result.fail("data", f"the dataset under {dataset.summary.get('root', '?')} produced no samples")
        return result
    group, feeds = first
    reference = stages.reference_pass(spec, run.profile, weights, network, group, run.cache_dir)
    loop = timed_loop(
        session, feeds, batch_size, warmup=AIS_BENCH_WARMUP if run.warmup is None else run.warmup,
        calibration=calibration(spec, run),
        reference=[reference.get(s.id) for s in group], tolerance=spec.elementwise[backend.precision],
        declared_outputs=spec.profile(run.profile).outputs, precision=backend.precision,
        runtime=f"{backend.name} ({backend.precision})", reports_compute_time=backend.reports_compute_time)
    result = results.perf_result(spec, batch_size, loop, run.soc, graph_count,
                                 backend.peak(backend.precision, run.cache_dir))
    result.timing["machine"] = perf_machine(backend.name, backend.versions())
    return result


def benchmark_params(params: Mapping[str, object]) -> dict:
    """pytest-benchmark's ``params`` of a perf row as JSON holds them: a model by its name (its
    ModelSpec would be written as ``UNSERIALIZABLE[...]``, which ``pytest-benchmark compare``
    cannot group or show)."""
    return {key: getattr(value, "name", value) for key, value in params.items()}


def benchmark_extra_info(row: Mapping[str, object], reference_ratio: Figure | None, profile: str) -> dict:
    """pytest-benchmark's ``extra_info`` of a perf row: its fields and figures flat, with the
    reference of --soc beside them only where the row ran at the seeds' shapes (``--profile
    full``): the reference FPS, the ratio and what was compared. A smoke-shape FPS is not
    comparable with the seeds' tables, so such a row carries no ratio, only why."""
    info = {key: value for key, value in row.items() if key != "reference_ratio"}
    if reference_ratio is None:
        return info
    if profile == "full":
        info.update(reference_fps=reference_ratio.reference, reference_ratio=reference_ratio.value,
                    reference_compared=reference_ratio.reference_name)
    else:
        info["reference"] = (f"not comparable: {profile}-profile shapes, while the {reference_ratio.reference_name} "
                             "was measured at the seed's shapes (--profile full)")
    return info
