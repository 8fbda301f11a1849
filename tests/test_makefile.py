"""The Makefile's own behaviour, with stand-ins for the slow tools it calls."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/bin/sh
# Stands in for python3 and the venv's python: records each call, and takes a while, as pip does.
echo "$*" >> "$CALLS"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
sleep 1
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux) for the setup lock")
def test_jobs_started_together_build_the_venv_once(tmp_path):
    """A SLURM array on a fresh checkout: every job runs `make setup` at once; one builds, the others wait."""
    for name in ("Makefile", "variables.mk", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "python3").write_text(FAKE_PYTHON)
    (tools / "python3").chmod(0o755)
    environment = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    jobs = [subprocess.Popen(["make", "--no-print-directory", "setup"], cwd=tmp_path, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    for job in jobs:
        assert job.wait(timeout=60) == 0, job.stdout.read()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["-m venv .venv", "-m pip install --quiet --upgrade pip",
                     "-m pip install --quiet torch==2.13.0",
                     "-m pip install --quiet -e .[test,onnx,openvino,deepspeed]", "-m train.deepspeed_kernels"]
    assert (tmp_path / ".venv" / ".installed").is_file()


STEP_PYTHON = """#!/bin/sh
# Stands in for the harness: records each step, answers --required-scenarios, fails where told to.
echo "$*" >> "$CALLS"
case "$*" in *--required-scenarios*) echo "Offline SingleStream" ;; esac
case "$*" in *"$FAIL"*) exit 1 ;; esac
"""


def make_all(tmp_path: Path, *variables: str, fail: str = "never") -> tuple[int, list[str]]:
    """`make all` with the harness stood in: its exit code and the steps it ran, as `<command> <scenario>`."""
    for name in ("Makefile", "variables.mk"):
        shutil.copy(REPO / name, tmp_path / name)
    python = tmp_path / "python"
    python.write_text(STEP_PYTHON)
    python.chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    environment = {**os.environ, "CALLS": str(calls), "FAIL": fail}
    result = subprocess.run(["make", "--no-print-directory", "all", f"PYTHON={python}", *variables], cwd=tmp_path,
                            env=environment, capture_output=True, text=True, timeout=60)
    steps = []
    for call in calls.read_text().splitlines():
        words = call.split()
        scenario = words[words.index("--scenario") + 1] if "--scenario" in words else ""
        steps.append(" ".join([*words[1:3], scenario]).strip())
    return result.returncode, steps


def test_make_all_runs_each_required_scenario_then_packages(tmp_path):
    code, steps = make_all(tmp_path)
    assert code == 0
    assert steps == ["submission --required-scenarios", "harness accuracy Offline", "harness perf Offline",
                     "harness accuracy SingleStream", "harness perf SingleStream", "submission --scenarios"]


def test_make_all_adds_test01_for_a_full_submission_and_takes_the_scenarios_given(tmp_path):
    code, steps = make_all(tmp_path, "SHORT=0", "SCENARIOS=Server Offline")
    assert code == 0
    assert steps == ["harness accuracy Server", "harness perf Server", "harness compliance Server",
                     "harness accuracy Offline", "harness perf Offline", "harness compliance Offline",
                     "submission --scenarios"]
    assert make_all(tmp_path, "SCENARIO=Server")[1][:2] == ["harness accuracy Server", "harness perf Server"]


def test_make_all_stops_at_the_first_failing_step(tmp_path):
    """A missing model fails the accuracy run, which comes first: no performance run is spent before it."""
    code, steps = make_all(tmp_path, fail="accuracy --scenario Offline")
    assert code != 0
    assert steps == ["submission --required-scenarios", "harness accuracy Offline"]


def test_make_pretrain_takes_data_as_its_dataset():
    """DATA= as pre-training recipes name it, never ignored: make pretrain hands it on as --dataset."""
    given = subprocess.run(["make", "-n", "--no-print-directory", "pretrain", "PYTHON=python3", "SHAPE=tiny",
                            "DATA=corpus.txt"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert '--task pretrain --dataset "corpus.txt"' in given
