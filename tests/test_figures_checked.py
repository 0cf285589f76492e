"""Every figure a runtime hands over is checked before it is believed: the suite run against a
runtime that lies about its outputs on some rounds, its compute times, its output contract or
the device's peak goes red naming the row and the figure, and the row is recorded whatever
failed in it; the faithful runtime stays green. Smoke shapes, Efficient-3DCNNs (the fastest)."""
from __future__ import annotations

import math

import pytest

from conftest import ort_session_patch

# right on the warm-up and on the last timed round, wrong on the rounds between
SOME_ROUNDS_WRONG = """    real_run = session.run
    def run(feeds):
        state["calls"] = state.get("calls", 0) + 1
        outputs = real_run(feeds)
        if state["calls"] in (3, 4):
            return {n: a + 1.0 for n, a in outputs.items()}
        return outputs
    session.run = run"""


def compute_ms(value: str) -> str:
    return f"    session.last_compute_ms = lambda: {value}"


FLOAT64_OUTPUTS = """    real_run = session.run
    session.run = lambda feeds: {n: a.astype(np.float64) for n, a in real_run(feeds).items()}"""

EXTRA_OUTPUT = """    real_run = session.run
    session.run = lambda feeds: {**real_run(feeds), "debug": np.zeros(1, np.float32)}"""

# a device whose declared peak is far below what the runtime measurably does
TINY_PEAK = '''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from harness.backends import onnxruntime as ort_backend
    from harness.peak import Peak

    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    undo.setattr(ort_backend.OnnxRuntimeBackend, "peak",
                 lambda self, precision, cache_dir=None: Peak("a device", precision, 0.001, "a wrong table"))
'''

PERF = ("--models=efficient3dcnn", "--batch-sizes=1", "-m", "perf", "--loop=5")


def _perf_row(result) -> dict:
    rows = [r for r in result.results["records"] if "perf" in r or r.get("error")]
    assert len(rows) == 1, rows
    return rows[0]


def _measured(row) -> list[float]:
    return [f["value"] for f in row.get("figures", []) if f["part"] == "perf" and f["value"] is not None]


def test_the_faithful_runtime_is_green_with_every_round_audited(run_suite):
    result = run_suite(*PERF, tests=("test_perf.py",))
    result.assert_outcomes(passed=1)
    row = _perf_row(result)
    assert row["status"] == "pass"
    assert row["perf"]["audited_rounds"] == 6 and row["perf"]["audit"].startswith("6 round(s) audited")
    assert all(math.isfinite(v) and v > 0 for v in _measured(row))


def test_wrong_outputs_on_some_timed_rounds_fail_the_audit(run_suite):
    result = run_suite(*PERF, tests=("test_perf.py",), plugin=ort_session_patch(SOME_ROUNDS_WRONG))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*efficient3dcnn bs1 on onnxruntime (fp32): audit: onnxruntime (fp32): the rounds' "
                                 "outputs differ from the first round's (fp32): * elements outside*round 2 sample 0*"])
    row = _perf_row(result)  # recorded although its audit failed
    assert row["status"] == "fail" and any(f["what"] == "audit" for f in row["findings"])


@pytest.mark.parametrize("value, message", [
    ("0.0", "timed round 0 reports 0.0 ms of compute time: expected a finite time above 0"),
    ("-2.5", "timed round 0 reports -2.5 ms of compute time: expected a finite time above 0"),
    ("float('nan')", "timed round 0 reports nan ms of compute time: expected a finite time above 0"),
    ("1e6", "timed round 0 reports 1e+06 ms of compute time, more than the * ms the whole call took"),
])
def test_impossible_compute_times_fail_and_leave_no_figure(run_suite, value, message):
    result = run_suite(*PERF, tests=("test_perf.py",), plugin=ort_session_patch(compute_ms(value)))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*efficient3dcnn bs1 on onnxruntime (fp32): compute time: onnxruntime (fp32): {message}*"])
    row = _perf_row(result)
    assert row["status"] == "fail" and _measured(row) == []  # no FPS, ratio or fraction from refused timings


def test_a_fraction_of_peak_above_one_fails_naming_the_peak(run_suite):
    result = run_suite(*PERF, tests=("test_perf.py",), plugin=TINY_PEAK)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*fraction_of_peak: * GFLOP/s is *x the device's peak 0.001 GFLOP/s "
                                 "(a wrong table): the timing is suspect*or the count: a fast algorithm such "
                                 "as Winograd*"])


@pytest.mark.parametrize("body, message", [
    (FLOAT64_OUTPUTS, "output class has dtype float64, declared float32"),
    (EXTRA_OUTPUT, "output names ['class', 'debug'], declared ['class']"),
])
def test_outputs_off_the_declared_contract_fail_accuracy_and_perf(run_suite, body, message):
    result = run_suite("--models=efficient3dcnn", "--batch-sizes=1", "-m", "accuracy or perf", "--loop=2",
                       tests=("test_accuracy.py", "test_perf.py"), plugin=ort_session_patch(body))
    result.assert_outcomes(failed=2)
    literal = message.replace("[", "[[]")  # fnmatch reads [...] as a set
    result.stdout.fnmatch_lines([f"*outputs: the batch of *: {literal}*"])
    result.stdout.fnmatch_lines([f"*outputs: onnxruntime (fp32): round 0: {literal}"])


DECLARES_COMPUTE_TIME = '''
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from harness.backends import onnxruntime as ort_backend

    from fakes.sandbox_patch import patch_for_the_run

    undo = patch_for_the_run(config)
    undo.setattr(ort_backend.OnnxRuntimeBackend, "reports_compute_time", True)  # its sessions report none
'''


def test_a_runtime_declaring_compute_times_that_reports_none_fails(run_suite):
    result = run_suite(*PERF, tests=("test_perf.py",), plugin=DECLARES_COMPUTE_TIME)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*compute time: onnxruntime (fp32): timed round 0 reports no compute time, although "
                                 "the backend declares that its runtime reports one*"])
