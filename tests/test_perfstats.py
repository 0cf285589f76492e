"""The statistics behind a perf verdict on a shared runner (harness/perfstats.py): the ratio of
medians with its bootstrap interval and four outcomes, the Mann-Whitney U p-value, and the step
detector over nights with failed nights in between."""
from __future__ import annotations

import numpy as np
import pytest

from harness.perfstats import (Outcome, compare_rounds, compare_runs, detect_steps, fps_interval, mann_whitney_p,
                               median_interval, relative_spread)


def latencies(median_ms: float, spread: float, rounds: int, seed: int) -> list[float]:
    """Per-round latencies as a shared runner gives them: noise around the median, a few stalls."""
    rng = np.random.default_rng(seed)
    ms = median_ms * (1 + spread * rng.standard_normal(rounds))
    ms[rng.random(rounds) < 0.05] *= 1.5
    return ms.tolist()


def test_the_same_speed_is_no_change_over_many_pairs_of_runs():
    for seed in range(20):
        comparison = compare_rounds(latencies(40, 0.03, 40, seed), latencies(40, 0.03, 40, 100 + seed), 0.10)
        assert comparison.outcome is Outcome.NO_CHANGE, comparison.message()
        assert comparison.low <= comparison.ratio <= comparison.high


def test_a_slowdown_beyond_the_allowance_is_a_regression_named_with_its_interval():
    comparison = compare_rounds(latencies(40 / 0.85, 0.03, 40, 1), latencies(40, 0.03, 40, 2), 0.10)
    assert comparison.outcome is Outcome.REGRESSION
    assert comparison.high < 0.90 and comparison.ratio == pytest.approx(0.85, abs=0.02)
    message = comparison.message()
    assert message.startswith("regression: 0.8") and "95 % interval [0.8" in message
    assert "the whole interval lies below 0.90x" in message and "over 40 rounds now" in message
    assert "Mann-Whitney p=" in message


def test_a_speedup_beyond_the_allowance_is_an_improvement():
    comparison = compare_rounds(latencies(30, 0.02, 30, 3), latencies(40, 0.02, 30, 4), 0.10)
    assert comparison.outcome is Outcome.IMPROVEMENT and comparison.low > 1.10


def test_noise_wider_than_the_allowance_is_inconclusive_with_the_rounds_that_would_settle_it():
    now, then = latencies(40 / 0.85, 0.10, 5, 5), latencies(40, 0.10, 5, 6)
    comparison = compare_rounds(now, then, 0.10)
    assert comparison.outcome is Outcome.INCONCLUSIVE
    assert comparison.low < 0.90 < comparison.high
    assert comparison.rounds_to_settle > 5
    message = comparison.message()
    assert "straddles the allowance [0.90x, 1.10x]: the noise is wider than the allowance" in message
    assert f"about {comparison.rounds_to_settle} rounds a side would settle it" in message
    assert f"spread ±{comparison.spread_now:.1%} over 5 rounds now" in message
    # as many rounds as it names, from the same machine, do settle it
    settled = compare_rounds(latencies(40 / 0.85, 0.10, comparison.rounds_to_settle, 7),
                             latencies(40, 0.10, comparison.rounds_to_settle, 8), 0.10)
    assert settled.outcome is not Outcome.INCONCLUSIVE, settled.message()


def test_figures_that_grow_with_speed_are_compared_the_right_way_round():
    fps = [1000 / ms for ms in latencies(40 / 0.8, 0.02, 30, 9)]
    pinned = [1000 / ms for ms in latencies(40, 0.02, 30, 10)]
    comparison = compare_rounds(fps, pinned, 0.10, higher_is_better=True)
    assert comparison.outcome is Outcome.REGRESSION and comparison.ratio == pytest.approx(0.8, abs=0.02)


def test_the_verdict_is_the_same_every_time_it_is_made():
    now, then = latencies(41, 0.05, 12, 11), latencies(40, 0.05, 12, 12)
    assert compare_rounds(now, then, 0.10) == compare_rounds(now, then, 0.10)


@pytest.mark.parametrize("now, allowance, expected", [
    ([], 0.1, "now_ms: expected a non-empty list"),
    ([1.0, float("nan")], 0.1, "now_ms: every per-round time must be finite and above 0"),
    ([1.0, 0.0], 0.1, "now_ms: every per-round time must be finite and above 0"),
    ([1.0, 2.0], 1.5, "allowance 1.5: expected a fraction between 0 and 1"),
])
def test_bad_rounds_are_refused_by_name(now, allowance, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        compare_rounds(now, [1.0, 2.0], allowance)


def test_against_several_runs_the_load_between_runs_joins_the_interval():
    """A shared runner: each run's machine state moves its median (here by 0.8x to 1.25x), far more
    than its rounds' noise. Against one pinned run an unchanged run reads red; against the pin's
    three runs it is inconclusive, naming the runs' differences as what more runs would settle."""
    pinned = [latencies(40 * load, 0.03, 60, seed) for load, seed in ((1.0, 21), (0.92, 22), (1.25, 23))]
    unchanged_on_a_busy_night = latencies(40 * 1.3, 0.03, 60, 24)
    assert compare_rounds(unchanged_on_a_busy_night, pinned[0], 0.10).outcome is Outcome.REGRESSION
    comparison = compare_runs(unchanged_on_a_busy_night, pinned, 0.10)
    assert comparison.outcome is Outcome.INCONCLUSIVE and comparison.runs_then == 3
    assert comparison.rounds_to_settle is None
    assert "the 3 earlier runs differ between themselves: more runs would settle it" in comparison.message()
    assert "over 180 then in 3 runs" in comparison.message()


def test_against_several_close_runs_a_real_slowdown_is_a_regression():
    pinned = [latencies(40 * load, 0.03, 60, seed) for load, seed in ((1.0, 31), (1.02, 32), (0.98, 33))]
    comparison = compare_runs(latencies(40 / 0.6, 0.03, 60, 34), pinned, 0.10)
    assert comparison.outcome is Outcome.REGRESSION and comparison.ratio == pytest.approx(0.6, abs=0.03)
    with pytest.raises(ValueError, match="then_runs_ms: expected the rounds of at least one earlier run"):
        compare_runs([1.0], [], 0.10)


def test_mann_whitney_matches_the_normal_approximation_with_continuity_and_ties():
    # U = 0 for two separated groups of 5: z = (12.5 - 0.5) / sqrt(25 * 11 / 12), p = erfc(z / sqrt 2)
    assert mann_whitney_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(0.01219, abs=1e-4)
    assert mann_whitney_p([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert mann_whitney_p([1.0], [2.0, 3.0]) is None
    assert mann_whitney_p([2.0, 2.0], [2.0, 2.0]) is None


def test_the_median_interval_narrows_with_rounds_and_the_spread_ignores_a_stall():
    few, many = median_interval(latencies(40, 0.05, 10, 13)), median_interval(latencies(40, 0.05, 400, 13))
    assert few[1] <= few[0] <= few[2] and many[1] <= many[0] <= many[2]
    assert many[2] - many[1] < (few[2] - few[1]) / 2
    assert relative_spread([10, 10.1, 9.9, 10, 100]) == pytest.approx(0.0148, abs=1e-3)


def test_fps_comes_with_its_interval():
    fps, low, high = fps_interval([40.0] * 10 + [50.0] * 10 + [45.0], batch_size=2)
    assert fps == pytest.approx(2000 / 45) and low == pytest.approx(2000 / 50) and high == pytest.approx(2000 / 40)


# --------------------------------------------------------------------------------- steps over nights

def drifting(noise: float = 0.01, seed: int = 0) -> list[float | None]:
    """24 nights: level until night 7, then -24 % over the nine nights 8..16, then level again;
    nights 5, 10, 13 and 20 failed (None)."""
    rng = np.random.default_rng(seed)
    nights: list[float | None] = [100 * (1 - 0.24 * min(max(i - 7, 0), 9) / 9) * (1 + noise * rng.standard_normal())
                                  for i in range(24)]
    for failed in (5, 10, 13, 20):
        nights[failed] = None
    return nights


def test_a_slow_drift_over_nine_nights_with_failed_nights_is_one_change_named_by_its_first_night():
    [step] = detect_steps(drifting())
    assert step.index == 8
    assert step.change == pytest.approx(-0.24, abs=0.02)


def test_a_flat_noisy_series_with_failed_nights_has_no_step():
    """A false step is rare, not impossible: 1 of 1000 flat 30-night series at 3 % noise had one
    (seed 29: ten calm nights first make the noise look half its size)."""
    def flat(seed: int) -> list[float | None]:
        nights: list[float | None] = list(100 * (1 + 0.03 * np.random.default_rng(seed).standard_normal(30)))
        nights[4] = nights[17] = None
        return nights

    assert [seed for seed in range(200) if detect_steps(flat(seed))] == [29]


def test_a_step_right_after_failed_nights_is_named_at_the_first_night_that_shows_it():
    rng = np.random.default_rng(1)
    nights: list[float | None] = [(100 if i < 12 else 85) * (1 + 0.01 * rng.standard_normal()) for i in range(20)]
    nights[10] = nights[11] = None  # two failed nights, then the first that ran is slower
    [step] = detect_steps(nights)
    assert step.index == 12 and step.change == pytest.approx(-0.15, abs=0.02)


def test_the_nights_own_spread_keeps_a_move_inside_it_from_counting():
    nights = [100.0] * 8 + [96.0] * 8  # a clean 4 % move
    assert [s.index for s in detect_steps(nights)] == [8]
    assert detect_steps(nights, spreads=[0.05] * 16) == []  # each night measured to ±5 %: inside the noise


def test_spreads_must_match_the_nights():
    with pytest.raises(ValueError, match="3 spreads for 4 nights"):
        detect_steps([1.0, 2.0, 3.0, 4.0], spreads=[0.1] * 3)


def test_a_machine_is_named_by_its_cpu_and_the_cores_this_process_may_use():
    import os

    from harness.environment import cpu_name, machine_id, perf_machine

    here = perf_machine("openvino", {"openvino": "2025.1"})
    assert here == {"cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)), "runtime": "openvino",
                    "versions": {"openvino": "2025.1"}}
    assert machine_id({"cpu": "AMD EPYC", "cores": 1}) == "AMD EPYC, 1 core"  # under taskset -c 0
    assert machine_id({"cpu": "AMD EPYC", "cores": 2}) == "AMD EPYC, 2 cores"
