"""The perf stage: ais_bench's loop (warm-up, then timed rounds of one batch), every figure it
hands over checked before it is believed, every round's outputs audited.

:func:`timed_loop` runs the loop through a ``runner`` (pytest-benchmark's ``pedantic`` in the
suite, a plain loop in scripts) and returns a :class:`TimedLoop`: the per-round wall and compute
times, checked (finite, positive, compute not above the wall of the same round), and the audit
(MLPerf TEST01-style: the first timed round's outputs equal PyTorch's for the same inputs within
the precision's element-wise tolerance, and every other round's equal the first's). The checks
run between rounds, outside the timed call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from harness.outputs import ElementwiseStats, output_contract_problems, split
from harness.results import Figure, FigureKind, Finding, FindingKind, finite
from harness.spec import Elementwise

TIMER = "time.perf_counter around one session.run(feeds) with inputs prepared in memory"
# msit's ais_bench keeps each run's (start, end) as float32 ms since the session opened: a step of
# about 0.06 ms after 1,000 s, so a compute span may read a hair above a tight wall time
COMPUTE_SLACK_MS = 0.1


def plain_runner(call: Callable[[], object], rounds: int, warmup_rounds: int, setup: Callable[[], None]) -> None:
    """The loop without pytest-benchmark: ``setup`` before each round, untimed."""
    for _ in range(warmup_rounds + rounds):
        setup()
        call()


@dataclass
class TimedLoop:
    runtime: str  # 'onnxruntime (fp32)': named in every finding
    warmup: int
    reports_compute_time: bool = False  # the backend declares device compute times
    wall_ms: list[float] = field(default_factory=list)  # timed rounds only
    compute_ms: list[float] = field(default_factory=list)
    transfers_ms: list[dict[str, float]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    audited_rounds: int = 0
    audit: str = ""

    def fail(self, what: str, message: str) -> None:
        self.findings.append(Finding(FindingKind.FAILURE, "perf", what, f"{self.runtime}: {message}"))

    @property
    def trusted(self) -> bool:
        return not any(f.kind is FindingKind.FAILURE and f.what in ("timings", "compute time")
                       for f in self.findings)

    def description(self) -> dict:
        return {"rounds": len(self.wall_ms), "warmup": self.warmup, "timer": TIMER, "audit": self.audit,
                "audited_rounds": self.audited_rounds}

    def figures(self, batch_size: int) -> dict[str, Figure]:
        """FPS and latency from checked timings; no figure from timings that were refused."""
        if not self.wall_ms or not self.trusted:
            return {}
        ms = np.asarray(self.wall_ms)
        out = {"fps": _speed("fps", 1000.0 * batch_size / float(np.median(ms)), FigureKind.INFO),
               # the fastest round, least disturbed by other load: what the gate holds to its tolerance
               "best_fps": _speed("best_fps", 1000.0 * batch_size / float(ms.min()), FigureKind.SPEED),
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


def timed_loop(session, feeds: Mapping[str, np.ndarray], batch_size: int, warmup: int, rounds: int, *,
               reference: Sequence[Mapping[str, np.ndarray]], tolerance: Elementwise, declared_outputs,
               precision: str, runtime: str, reports_compute_time: bool = False, runner=plain_runner) -> TimedLoop:
    """Time ``rounds`` runs of one prepared batch after ``warmup`` untimed ones and check every
    figure and every round's outputs; ``reference`` holds PyTorch's outputs per real sample of
    the batch (padding rows are not audited). A runtime that declares compute times
    (``reports_compute_time``) must report one for every timed round."""
    loop = TimedLoop(runtime, warmup, reports_compute_time=reports_compute_time)
    state = {"round": 0, "pending": None, "first": None, "stats": ElementwiseStats(tolerance),
             "rounds_stats": ElementwiseStats(tolerance)}

    def one_round():
        start = time.perf_counter()
        outputs = session.run(feeds)
        wall = (time.perf_counter() - start) * 1000.0
        state["pending"] = (wall, session.last_compute_ms(), session.last_transfer_ms(), outputs)
        return outputs

    def check_pending():  # between rounds: untimed
        if state["pending"] is None:
            return
        wall, compute, transfers, outputs = state["pending"]
        state["pending"] = None
        index, state["round"] = state["round"], state["round"] + 1
        timed = index >= warmup
        if timed:
            _check_timing(loop, index - warmup, wall, compute, transfers)
        _audit_round(loop, state, outputs, reference, declared_outputs, batch_size, precision)

    def setup():
        check_pending()

    runner(one_round, rounds, warmup, setup)
    check_pending()
    if not loop.wall_ms:
        loop.fail("timings", f"no timed round ran ({rounds} asked for after {warmup} warm-up)")
    _conclude_audit(loop, state, precision)
    return loop


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


SMOKE_LOOP = 5  # timed runs per row at smoke shapes: figures to compare runs, not the seed's
AIS_BENCH_WARMUP = 1  # ais_bench's --warmup_count default


def perf_row(spec, run, backend, session, dataset, weights, batch_size: int, graph_count,
             network: Callable, runner=plain_runner):
    """The perf stage of one row: the first batch of the dataset, PyTorch's outputs for it (the
    reference cache, ``network()`` only on a miss), the checked loop, the result."""
    from harness import results, stages
    from harness.outputs import batches

    first = next(batches(dataset, batch_size, spec.input_names), None)
    if first is None:
        result = results.PerfResult()
        result.fail("data", f"the dataset under {dataset.summary.get('root', '?')} produced no samples")
        return result
    group, feeds = first
    reference = stages.reference_pass(spec, run.profile, weights, network, group, run.cache_dir)
    loop = timed_loop(
        session, feeds, batch_size,
        warmup=AIS_BENCH_WARMUP if run.warmup is None else run.warmup,
        rounds=run.loop or (spec.seed_loop if run.profile == "full" else SMOKE_LOOP),
        reference=[reference.get(s.id) for s in group], tolerance=spec.elementwise[backend.precision],
        declared_outputs=spec.profile(run.profile).outputs, precision=backend.precision,
        runtime=f"{backend.name} ({backend.precision})", reports_compute_time=backend.reports_compute_time,
        runner=runner)
    return results.perf_result(spec, batch_size, loop, run.soc, graph_count,
                               backend.peak(backend.precision, run.cache_dir))


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
