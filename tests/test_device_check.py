"""make device-check: refuses without a GPU, keeps to its time limit, and reads what its LoadGen steps measured."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from benchmarks.device_check import Runner, Step, collect, plan, write_results
from tests.conftest import REPO, SMALL_MODEL, cli_environment

SLEEP = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
QUICK = [sys.executable, "-c", "print('measured')"]


def assert_stopped(log: Path) -> None:
    """The step's process is gone, not left running beside the next step."""
    with pytest.raises(ProcessLookupError):
        os.kill(int(log.read_text().split()[0]), 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_refuses_without_a_gpu_before_anything_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.device_check", "--out", str(tmp_path / "out")],
                            cwd=REPO, env=cli_environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: make device-check measures a CUDA GPU and this machine has none (torch.cuda.is_available() "
        "is False); run it on the lent H100/H200 with PYTHON=python3"]
    assert not (tmp_path / "out").exists()


def test_every_planned_command_is_one_the_makefile_or_python_knows():
    """A typo in a step would cost device minutes: make expands each target, python finds each module."""
    steps = plan(SMALL_MODEL)
    assert [step.name for step in steps][:4] == ["environment", "cuda-tests", "offline-fp8", "offline-fp16"]
    for step in steps:
        if step.command[0] == "make":
            expanded = subprocess.run([*step.command, "-n"], cwd=REPO, capture_output=True, text=True, timeout=60)
            assert expanded.returncode == 0, expanded.stderr
            assert "-m harness" in expanded.stdout or "-m benchmarks" in expanded.stdout
        else:
            module = step.command[step.command.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, module


def test_a_step_past_its_cap_is_stopped_and_the_next_still_runs(tmp_path):
    steps = [Step("first", QUICK, 30, ""), Step("stuck", SLEEP, 1, ""), Step("after", QUICK, 30, "")]
    started = time.monotonic()
    outcomes = Runner(tmp_path, time.monotonic() + 120).run(steps)
    assert [outcome.status for outcome in outcomes] == ["ok", "stopped at its cap (1 s)", "ok"]
    assert time.monotonic() - started < 30
    assert (tmp_path / "first.log").read_text() == "measured\n"
    assert_stopped(tmp_path / "stuck.log")


def test_the_time_limit_stops_the_running_step_and_skips_the_rest(tmp_path):
    steps = [Step("first", QUICK, 30, ""), Step("long", SLEEP, 60, ""), Step("never", QUICK, 30, "")]
    outcomes = Runner(tmp_path, time.monotonic() + 3).run(steps)
    assert [outcome.status for outcome in outcomes] == ["ok", "stopped at the time limit", "skipped: time limit"]
    assert outcomes[1].seconds < 20
    assert_stopped(tmp_path / "long.log")


def test_an_interrupt_stops_the_step_and_keeps_what_was_measured(tmp_path):
    runner = Runner(tmp_path, time.monotonic() + 120)
    threading.Timer(2, runner.interrupt).start()  # what SIGINT and SIGTERM call
    outcomes = runner.run([Step("first", QUICK, 30, ""), Step("long", SLEEP, 60, ""), Step("never", QUICK, 30, "")])
    assert [outcome.status for outcome in outcomes] == ["ok", "interrupted", "skipped: interrupted"]
    assert outcomes[1].seconds < 20
    assert_stopped(tmp_path / "long.log")
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    out = tmp_path / "out"
    out.mkdir()
    write_results(outcomes, "NVIDIA H200", 420, out, docs)
    assert "| long | interrupted |" in (out / "device_check.md").read_text()
    assert (out / "benchmarks.md").read_text().startswith("# Benchmarks\n\n## make device-check, NVIDIA H200, ")


def test_loadgen_steps_give_their_figures_and_logs(tmp_path, tiny_random_model, build_dir, features):
    """The same make targets the device runs, on CPU with a tiny model: the figure read from LoadGen's summary."""
    common = [f"PYTHON={sys.executable}", f"BUILD={build_dir}", f"MODEL={tiny_random_model}", "DEVICE=cpu", "COUNT=64"]
    steps = [Step("offline-fp32", ["make", "--no-print-directory", "perf", "SCENARIO=Offline", *common], 300, ""),
             Step("accuracy-fp32", ["make", "--no-print-directory", "accuracy", *common], 300, "")]
    runner = Runner(tmp_path, time.monotonic() + 600, lambda step, outcome: collect(step, outcome, tmp_path),
                    cli_environment())
    outcomes = runner.run(steps)
    assert [outcome.status for outcome in outcomes] == ["ok", "ok"], [
        (tmp_path / f"{step.name}.log").read_text()[-2000:] for step in steps]
    offline, accuracy = (outcome.figure for outcome in outcomes)
    assert offline.endswith(" samples/s, VALID") and float(offline.split()[0].replace(",", "")) > 0, offline
    assert "F1" in accuracy, accuracy
    assert (tmp_path / "logs" / "offline-fp32" / "mlperf_log_summary.txt").is_file()
    assert (tmp_path / "logs" / "accuracy-fp32" / "mlperf_log_accuracy.json").is_file()
