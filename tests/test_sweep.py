"""make sweep: rows with every field, plots, resuming, the optimal system file, energy measured or explained."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from harness.energy import EnergyReading, RaplMeter, energy_meter, rapl_domains
from tests.conftest import cli_environment, run_cli

ROW_FIELDS = {"backend", "precision", "device", "batch_size", "max_tokens", "scenario", "status", "samples",
              "samples_per_second", "latency_ms", "stages_ms", "peak_memory_bytes", "power_w", "joules_per_sample",
              "energy_source", "torch", "device_name", "git_commit", "time_utc"}
PLOTS = ("samples_per_second.png", "latency_p50.png", "latency_p90.png", "latency_p99.png", "joules_per_sample.png",
         "stages.png")


def fake_powercap(root, energy: int, maximum: int = 1000):
    domain = root / "intel-rapl:0"
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "name").write_text("package-0\n")
    (domain / "energy_uj").write_text(f"{energy}\n")
    (domain / "max_energy_range_uj").write_text(f"{maximum}\n")
    (root / "intel-rapl:0:0").mkdir(exist_ok=True)  # a subdomain (core): not counted twice
    return domain


def test_rapl_counts_energy_across_a_wrap_around(tmp_path):
    domain = fake_powercap(tmp_path, energy=900)
    domains, reason = rapl_domains(tmp_path)
    assert [path.name for path in domains] == ["intel-rapl:0"] and reason == ""
    meter = RaplMeter(domains)
    meter.start()
    (domain / "energy_uj").write_text("150\n")  # 900 -> 1000 wraps to 0 -> 150: 251 microjoules
    reading = meter.stop()
    assert reading.joules == pytest.approx(251e-6) and reading.source.startswith("RAPL (package-0")


def test_energy_is_never_invented(tmp_path):
    meter = energy_meter("cpu", powercap=tmp_path / "absent")
    meter.start()
    reading = meter.stop()
    assert reading.joules is None and reading.watts is None and "no RAPL" in reading.source
    unreadable = fake_powercap(tmp_path / "locked", energy=5)
    (unreadable / "energy_uj").write_text("not a number\n")  # as a counter only root may read looks to others
    meter = energy_meter("cpu", powercap=tmp_path / "locked")
    meter.start()
    assert meter.stop().joules is None
    assert EnergyReading(10.0, 4.0, "x").watts == 2.5


def rows_of(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, path


@pytest.mark.slow  # points run as processes of their own, with a real model
def test_direct_sweep_writes_rows_plots_and_resumes(tmp_path, build_dir, features, small_model):
    arguments = ("benchmarks.sweep", "--batch-sizes", "1", "4", "--model", str(small_model), "--device", "cpu",
                 "--count", "16", "--build-dir", str(build_dir), "--name", "direct-test")
    result = run_cli(*arguments, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = build_dir / "sweeps" / "direct-test"
    rows = rows_of(folder)
    assert [(row["batch_size"], row["scenario"], row["status"]) for row in rows] == [(1, "direct", "ok"),
                                                                                    (4, "direct", "ok")]
    for row in rows:
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["samples"] == 16 and row["samples_per_second"] > 0
        assert set(row["latency_ms"]["per_batch"]) == {"p50", "p90", "p99"}
        assert {"host_batch", "pack", "forward", "scatter"} <= set(row["stages_ms"])
        assert row["peak_memory_bytes"] > 100e6
        assert (row["joules_per_sample"] is None) == (row["power_w"] is None) and row["energy_source"]
    for name in PLOTS:
        assert_png(folder / name)
    again = run_cli(*arguments, cwd=tmp_path)
    assert again.returncode == 0 and "2 of 2 points already measured" in again.stdout
    assert rows_of(folder) == rows
    replot = run_cli("benchmarks.sweep", "plot", str(folder / "results.jsonl"), cwd=tmp_path)
    assert replot.returncode == 0 and f"wrote {folder / 'stages.png'}" in replot.stdout


@pytest.mark.slow
def test_loadgen_sweep_and_its_optimal_system_file(tmp_path, build_dir, features):
    result = run_cli("benchmarks.sweep", "--batch-sizes", "1", "4", "--mode", "loadgen", "--shape", "tiny",
                     "--device", "cpu", "--count", "64", "--build-dir", str(build_dir), "--name", "loadgen-test",
                     "--optimal", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = build_dir / "sweeps" / "loadgen-test"
    rows = rows_of(folder)
    assert sorted((row["batch_size"], row["scenario"]) for row in rows) == [
        (1, "Offline"), (1, "SingleStream"), (4, "Offline"), (4, "SingleStream")]
    assert all(row["loadgen_result"] == "VALID" and "respond" in row["stages_ms"] for row in rows)
    single = [row for row in rows if row["scenario"] == "SingleStream"]
    assert all(set(row["latency_ms"]["per_sample"]) == {"p50", "p90", "p99"} for row in single)
    system_file = build_dir / "systems" / "loadgen-test-optimal.json"
    system = json.loads(system_file.read_text())
    best = max((row for row in rows if row["scenario"] == "Offline"), key=lambda row: row["samples_per_second"])
    assert system["batch_size"] == best["batch_size"] and system["precision"] == "fp32"
    assert system["loadgen"]["Offline"]["target_qps"] == pytest.approx(best["samples_per_second"] * 1.1, abs=1e-3)
    assert f"batch size {best['batch_size']}" in result.stdout and "target_qps" in result.stdout
    perf = run_cli("harness", "perf", "--shape", "tiny", "--system", str(system_file), "--count", "16",
                   "--build-dir", str(build_dir), cwd=tmp_path)
    assert perf.returncode == 0, perf.stderr
    assert re.search(rf"system {re.escape(str(system_file))}, batch {best['batch_size']}", perf.stdout)


@pytest.mark.slow
def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path, build_dir, features):
    result = run_cli("benchmarks.sweep", "--batch-sizes", "2", "--backends", "tensorrt", "pytorch",
                     "--data", "synthetic", "--shape", "tiny", "--seq-len", "128", "--device", "cpu",
                     "--count", "8", "--build-dir", str(build_dir), "--name", "failing-test", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = rows_of(build_dir / "sweeps" / "failing-test")
    assert [(row["backend"], row["status"]) for row in rows] == [("tensorrt", "failed"), ("pytorch", "ok")]
    assert "pip install '.[tensorrt]'" in rows[0]["error"]
    assert rows[1]["model"] == "tiny-random" and rows[1]["samples"] == 8


@pytest.mark.slow
@pytest.mark.parametrize(("arguments", "message"), [
    (["--batch-sizes"], "the grid is empty"),
    (["--batch-sizes", "0"], "BATCH_SIZES: 0 is not a batch size"),
    (["--backends", "onnxruntime", "--precisions", "bf16"], "BACKEND=onnxruntime runs PRECISION=fp32, fp16, int8"),
    (["--max-tokens", "lots"], "--max-tokens lots is not a token budget"),
])
def test_bad_grids(tmp_path, build_dir, arguments, message):
    result = run_cli("benchmarks.sweep", *arguments, "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.slow
def test_a_sweep_folder_of_another_model_is_refused(tmp_path, build_dir):
    folder = build_dir / "sweeps" / "taken"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"model": "/elsewhere/other-model"}))
    result = run_cli("benchmarks.sweep", "--name", "taken", "--shape", "tiny", "--build-dir", str(build_dir),
                     cwd=tmp_path)
    assert result.returncode == 2 and "holds a sweep of {'model': '/elsewhere/other-model'}" in result.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_the_measured_points_and_a_rerun_measures_the_rest(tmp_path, build_dir, features):
    arguments = [sys.executable, "-m", "benchmarks.sweep", "--batch-sizes", "1", "2", "4", "--shape", "tiny",
                 "--data", "synthetic", "--device", "cpu", "--count", "16", "--build-dir", str(build_dir),
                 "--name", "interrupted"]
    results = build_dir / "sweeps" / "interrupted" / "results.jsonl"
    sweep = subprocess.Popen(arguments, cwd=tmp_path, env=cli_environment(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    for _ in range(240):  # until the first point's row is written
        time.sleep(0.25)
        if results.is_file() and results.read_text().strip():
            break
    os.killpg(sweep.pid, signal.SIGINT)  # as Ctrl-C reaches the sweep and its running point
    _, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130 and "the points measured so far are kept" in stderr
    kept = results.read_text().splitlines()
    assert 1 <= len(kept) < 3
    rerun = subprocess.run(arguments, cwd=tmp_path, env=cli_environment(), capture_output=True, text=True)
    assert rerun.returncode == 0 and f"{len(kept)} of 3 points already measured" in rerun.stdout
    assert results.read_text().splitlines()[:len(kept)] == kept and len(results.read_text().splitlines()) == 3


class FakeNvml:
    """pynvml's calls the meter makes, for a GPU with (or without) an energy counter."""

    class NVMLError(Exception):
        pass

    def __init__(self, counter: bool):
        self.counter, self.millijoules = counter, 0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.counter:
            raise self.NVMLError("not supported")
        self.millijoules += 5000  # 5 J between any two reads
        return self.millijoules

    def nvmlDeviceGetPowerUsage(self, handle):
        return 200_000  # milliwatts


@pytest.mark.parametrize("counter", [True, False])
def test_nvml_energy_from_the_counter_or_sampled_power(counter):
    from harness.energy import NvmlMeter

    meter = NvmlMeter(FakeNvml(counter), handle=None, name="Fake GPU")
    meter.start()
    time.sleep(0.3)
    reading = meter.stop()
    if counter:
        assert reading.joules == 5.0 and reading.source.startswith("NVML energy counter, Fake GPU")
    else:  # 200 W for about 0.3 s, sampled at 20 Hz
        assert reading.joules == pytest.approx(200 * reading.seconds, rel=0.35)
        assert reading.source.startswith("NVML power sampled at 20 Hz")
