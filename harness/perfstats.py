"""Statistics for speed figures measured on a shared runner: the noise of one row's timed rounds,
a verdict between two rows' rounds that says when it cannot tell, and a step detector over nights.

- :func:`median_interval`, :func:`fps_interval`: the 95 % interval of the median of one row's
  rounds (what the adaptive perf loop calibrates against, as pyperf calibrates its runs).
- :func:`compare_rounds`: the ratio of medians of two rows' rounds with its bootstrap interval, the
  Mann-Whitney U p-value that Google Benchmark's ``compare.py`` reports, and one of four outcomes;
  :func:`compare_runs` the same against several earlier runs, whose differences join the interval.
  A regression is declared only when the whole interval lies beyond the allowance; when the
  interval straddles the allowance the noise is wider than the allowance and the outcome says so,
  with the rounds that would settle it (the interval narrows as 1/sqrt(rounds)).
- :func:`detect_steps`: asv's idea (a penalised piecewise-constant fit) over a series of nights;
  failed or missing nights (None) are skipped, not read as a change.

Pure functions over numpy; the resampling is seeded, so a verdict is the same every time it is made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np

RESAMPLES = 2000  # bootstrap resamples: the 95 % bounds move by well under 1 % of the ratio between seeds
CONFIDENCE = 0.95
SEED = 0
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of normal noise times this is its standard deviation


class Outcome(str, Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NO_CHANGE = "no change"
    INCONCLUSIVE = "inconclusive"


def _rounds(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected a non-empty list of per-round times, got {list(values)!r}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name}: every per-round time must be finite and above 0, got {array.tolist()!r}")
    return array


def relative_spread(values: Sequence[float]) -> float:
    """The rounds' robust relative standard deviation: 1.4826 x their median absolute deviation
    over their median (one stalled round does not move it, as it would a plain standard deviation)."""
    array = _rounds(values, "relative_spread")
    median = float(np.median(array))
    return MAD_TO_SIGMA * float(np.median(np.abs(array - median))) / median


def _bootstrap_medians(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # in chunks of about 2 million draws: a 30 s row of 5 ms rounds holds 6,000 rounds
    step = max(1, 2_000_000 // array.size)
    return np.concatenate([np.median(array[rng.integers(0, array.size, size=(min(step, RESAMPLES - start), array.size))],
                                     axis=1) for start in range(0, RESAMPLES, step)])


def _bounds(samples: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def median_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, low, high): the rounds' median and its distribution-free 95 % interval, the order
    statistics at n/2 ± 1.96 sqrt(n)/2 (what the perf loop looks at after every batch of rounds:
    no resampling, so cheap at thousands of rounds)."""
    ordered = np.sort(_rounds(values, "median_interval"))
    n = ordered.size
    reach = 1.96 * math.sqrt(n) / 2
    low, high = max(int(math.floor(n / 2 - reach)), 0), min(int(math.ceil(n / 2 + reach)), n - 1)
    return float(np.median(ordered)), float(ordered[low]), float(ordered[high])


def fps_interval(rounds_ms: Sequence[float], batch_size: int) -> tuple[float, float, float]:
    """(fps, low, high): samples per second at the rounds' median and its 95 % interval (what a
    summary shows beside the figure)."""
    median, low, high = median_interval(rounds_ms)
    return 1000.0 * batch_size / median, 1000.0 * batch_size / high, 1000.0 * batch_size / low


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The two-sided Mann-Whitney U p-value (normal approximation with the tie correction, as
    scipy's ``mannwhitneyu(method='asymptotic')`` that Google Benchmark's compare.py calls); None
    with fewer than 2 rounds a side, or when every round is the same time."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = x.size, y.size
    if n1 < 2 or n2 < 2:
        return None
    both = np.concatenate([x, y])
    ranks = _average_ranks(both)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, counts = np.unique(both, return_counts=True)
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - float(np.sum(counts ** 3 - counts)) / (n * (n - 1)))
    if variance <= 0:
        return None
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)  # with the continuity correction
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last copy
    return (last - (counts - 1) / 2)[inverse]


@dataclass(frozen=True)
class Comparison:
    """Now against then. ``ratio`` is now's speed over then's (the ratio of medians, oriented so
    that below 1 is slower whichever way the rounds point); ``low``/``high`` its 95 % interval."""
    outcome: Outcome
    ratio: float
    low: float
    high: float
    allowance: float
    spread_now: float  # relative spread of each side's rounds (relative_spread)
    spread_then: float
    rounds_now: int
    rounds_then: int
    p_value: float | None  # Mann-Whitney U, two-sided; None where it cannot be computed
    rounds_to_settle: int | None  # INCONCLUSIVE against one run: rounds a side that would narrow the interval enough
    runs_then: int = 1  # earlier runs compared against (compare_runs)

    def message(self) -> str:
        change = f"{self.ratio:.3f}x the speed ({self.ratio - 1:+.1%})"
        interval = f"95 % interval [{self.low:.3f}x, {self.high:.3f}x]"
        runs = f" in {self.runs_then} runs" if self.runs_then > 1 else ""
        noise = (f"spread ±{self.spread_now:.1%} over {self.rounds_now} rounds now, "
                 f"±{self.spread_then:.1%} over {self.rounds_then} then{runs}")
        p = f"; Mann-Whitney p={self.p_value:.2g}" if self.p_value is not None else ""
        band = f"[{1 - self.allowance:.2f}x, {1 + self.allowance:.2f}x]"
        verdict = {
            Outcome.REGRESSION: f"slower beyond the allowance: the whole interval lies below {1 - self.allowance:.2f}x",
            Outcome.IMPROVEMENT: f"faster beyond the allowance: the whole interval lies above {1 + self.allowance:.2f}x",
            Outcome.NO_CHANGE: f"the whole interval lies inside the allowance {band}",
            Outcome.INCONCLUSIVE: f"the interval straddles the allowance {band}: the noise is wider than the "
                                  f"allowance; {self._settle()}",
        }[self.outcome]
        return f"{self.outcome.value}: {change}, {interval}; {verdict}; {noise}{p}"

    def _settle(self) -> str:
        if self.runs_then > 1:
            return f"the {self.runs_then} earlier runs differ between themselves: more runs would settle it, not more rounds"
        if self.rounds_to_settle is None:
            return "no number of rounds settles it: the ratio sits on the allowance"
        return f"about {self.rounds_to_settle} rounds a side would settle it"


def _outcome(low: float, high: float, allowance: float) -> Outcome:
    floor, ceiling = 1 - allowance, 1 + allowance
    if high < floor:
        return Outcome.REGRESSION
    if low > ceiling:
        return Outcome.IMPROVEMENT
    if low >= floor and high <= ceiling:
        return Outcome.NO_CHANGE
    return Outcome.INCONCLUSIVE


def _rounds_to_settle(ratio: float, low: float, high: float, allowance: float, rounds: int) -> int | None:
    """Rounds a side for the interval (its half-width shrinking as 1/sqrt(rounds)) to clear the
    allowance boundary nearest the ratio; None when the ratio sits on the boundary."""
    distance = min(abs(ratio - (1 - allowance)), abs(ratio - (1 + allowance)))
    half_width = (high - low) / 2
    if distance < 1e-3:
        return None
    return max(rounds + 1, math.ceil(rounds * (half_width / distance) ** 2))


def compare_rounds(now_ms: Sequence[float], then_ms: Sequence[float], allowance: float, *,
                   higher_is_better: bool = False, seed: int = SEED) -> Comparison:
    """Compare two rows' per-round figures (by default latencies, lower is better; FPS per round
    with ``higher_is_better=True``) at one batch size. ``allowance``: the fraction of speed a
    change may move either way before it counts (the gate's --fps-regression). One run a side:
    the interval holds the rounds' noise, not what changes between runs (compare_runs does)."""
    return compare_runs(now_ms, [then_ms], allowance, higher_is_better=higher_is_better, seed=seed)


def compare_runs(now_ms: Sequence[float], then_runs_ms: Sequence[Sequence[float]], allowance: float, *,
                 higher_is_better: bool = False, seed: int = SEED) -> Comparison:
    """One run's rounds against several earlier runs' (a pin taken over runs): then's figure is
    the median of its runs' medians, and the interval also holds how far one run's median strays
    from the others (on a shared runner the load changes between runs more than within one), drawn
    from then's runs and applied to now's single run, as pyperf spreads its figure over processes."""
    if not 0 < allowance < 1:
        raise ValueError(f"allowance {allowance!r}: expected a fraction between 0 and 1 (0.10 = 10 %)")
    if not then_runs_ms:
        raise ValueError("then_runs_ms: expected the rounds of at least one earlier run")
    now = _rounds(now_ms, "now_ms")
    runs = [_rounds(r, f"then_runs_ms[{i}]") for i, r in enumerate(then_runs_ms)]
    rng = np.random.default_rng(seed)
    now_medians = _bootstrap_medians(now, rng)
    run_medians = np.stack([_bootstrap_medians(r, rng) for r in runs])  # runs x resamples
    picks = rng.integers(0, len(runs), size=(RESAMPLES, len(runs)))
    then_medians = np.median(run_medians[picks, rng.integers(0, RESAMPLES, size=picks.shape)], axis=1)
    centres = np.array([np.median(r) for r in runs])
    then_centre = float(np.median(centres))
    strays = centres[rng.integers(0, len(runs), size=RESAMPLES)] / then_centre  # one run off the others
    speed = (lambda a, b: a / b) if higher_is_better else (lambda a, b: b / a)
    low, high = _bounds(speed(now_medians / strays, then_medians))
    ratio = float(speed(np.median(now), then_centre))
    outcome = _outcome(low, high, allowance)
    # rounds narrow the rounds' share of the interval only: over several runs, more runs settle it
    settle = (_rounds_to_settle(ratio, low, high, allowance, min(now.size, runs[0].size))
              if outcome is Outcome.INCONCLUSIVE and len(runs) == 1 else None)
    then_all = np.concatenate(runs)
    return Comparison(outcome, ratio, low, high, allowance, relative_spread(now), relative_spread(then_all),
                      now.size, then_all.size, mann_whitney_p(now, then_all), settle, len(runs))


# ------------------------------------------------------------------------------- steps over nights

STEP_PENALTY = 8.0  # a step must explain 8 sigma^2 log(nights) of squared error: no step in 200 flat noisy series
BEYOND_NOISE = 2.0  # a night counts as changed when it lies more than 2 sigma past the level before
RAMP_NIGHTS = 5  # same-direction steps fewer nights apart than this are one change (a slow drift)


@dataclass(frozen=True)
class Step:
    """A change in the nights' level: ``index`` is the night (position in the series given) where
    it began; ``before``/``after`` the fitted levels on either side."""
    index: int
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after / self.before - 1 if self.before else math.inf


def noise_sigma(values: Sequence[float], spreads: Sequence[float | None] | None = None) -> float:
    """The night-to-night noise of a series without gaps: the robust spread of its successive
    differences (a step or a drift moves few of them), floored by the nights' own measured noise
    (``spreads``: each night's relative noise of its figure, None where unknown)."""
    y = np.asarray(values, dtype=float)
    diffs = np.diff(y)
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2) if diffs.size else 0.0
    own = [s * abs(v) for s, v in zip(spreads or (), y) if s is not None]
    if own:
        sigma = max(sigma, float(np.median(own)))
    return sigma if sigma > 0 else 1e-9 * max(float(np.median(np.abs(y))), 1.0)


def _segment_starts(y: np.ndarray, penalty: float) -> list[int]:
    """The optimal piecewise-constant fit (least squares plus ``penalty`` per segment; exact, by
    dynamic programming over the segment ends): the start of every segment after the first."""
    n = y.size
    s1, s2 = np.concatenate([[0.0], np.cumsum(y)]), np.concatenate([[0.0], np.cumsum(y * y)])
    best, last = np.zeros(n + 1), np.zeros(n + 1, dtype=int)
    for end in range(1, n + 1):
        starts = np.arange(end)
        length = end - starts
        error = (s2[end] - s2[starts]) - (s1[end] - s1[starts]) ** 2 / length
        total = best[starts] + error + penalty
        last[end] = int(np.argmin(total))
        best[end] = total[last[end]]
    cuts, end = [], n
    while end > 0:
        end = int(last[end])
        cuts.append(end)
    return sorted(c for c in cuts if c > 0)


def _fit(y: np.ndarray, sigma: float, penalty: float) -> tuple[list[tuple[int, int, float]], float]:
    """The fitted segments (start, end, level) at noise ``sigma``, and the robust standard
    deviation of the nights about their segment's median."""
    bounds = [0, *_segment_starts(y, penalty * sigma ** 2 * math.log(y.size)), y.size]
    segments = [(a, b, float(np.mean(y[a:b]))) for a, b in zip(bounds, bounds[1:])]
    residuals = np.concatenate([y[a:b] - np.median(y[a:b]) for a, b, _ in segments])
    return segments, MAD_TO_SIGMA * float(np.median(np.abs(residuals)))


def _changes(segments: list[tuple[int, int, float]]) -> list[tuple[int, int]]:
    """(first segment, last segment) of each change: consecutive steps the same way, with fewer
    than RAMP_NIGHTS nights between them, are one drift."""
    changes: list[tuple[int, int]] = []
    for k in range(1, len(segments)):
        direction = np.sign(segments[k][2] - segments[k - 1][2])
        if changes:
            first, previous = changes[-1]
            same_way = np.sign(segments[previous][2] - segments[first - 1][2]) == direction
            if previous == k - 1 and same_way and segments[k - 1][1] - segments[k - 1][0] < RAMP_NIGHTS:
                changes[-1] = (first, k)
                continue
        changes.append((k, k))
    return changes


def detect_steps(values: Sequence[float | None], spreads: Sequence[float | None] | None = None, *,
                 penalty: float = STEP_PENALTY, min_change: float = 0.0) -> list[Step]:
    """The changes of level in a series of nights (None: a failed or missing night, skipped:
    it neither starts nor resets anything), each named by the night it began: the first night
    past the noise of the level before (a drift over several nights begins where it first shows).
    ``spreads``: each night's relative noise, a floor for the noise estimated from the series;
    ``min_change``: the smallest relative change worth naming."""
    if spreads is not None and len(spreads) != len(values):
        raise ValueError(f"detect_steps: {len(spreads)} spreads for {len(values)} nights; give one per night (None where unknown)")
    nights = [i for i, v in enumerate(values) if v is not None]
    y = np.asarray([values[i] for i in nights], dtype=float)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"detect_steps: every night's value must be finite or None, got {list(values)!r}")
    if y.size < 3:  # two nights are a difference, for the gate; a step needs a level on each side
        return []
    sigma = noise_sigma(y, [spreads[i] for i in nights] if spreads is not None else None)
    segments, within = _fit(y, sigma, penalty)
    if within > sigma:  # the differences underrated the noise (a few calm pairs): fit again with the fit's own
        segments, within = _fit(y, within, penalty)
    steps = []
    for first, last in _changes(segments):
        start, end, _ = segments[first - 1]
        # where the change first shows: against the robust level and spread of the fitted segments
        # (the difference-based sigma counts a drift's nights as noise)
        before, after = float(np.median(y[start:end])), segments[last][2]
        began, direction = segments[first][0], np.sign(after - before)
        while began - 1 > start and (y[began - 1] - before) * direction > BEYOND_NOISE * max(within, 1e-12):
            began -= 1
        step = Step(nights[began], before, after)
        if abs(step.change) >= min_change:
            steps.append(step)
    return steps
