"""One point of a sweep, measured in a process of its own: `python -m benchmarks.sweep.point`, one JSON row
on stdout behind ROW.

direct: the backend over the samples in the SUT's own batches (Backend.submit_rows), no LoadGen.
loadgen: a quick LoadGen run of one scenario, its logs under the sweep's folder.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser, run_main
from common.cpu import cpu_name
from common.variables import add_variables
from harness.energy import peak_memory

REPO = Path(__file__).resolve().parents[2]
ROW = "SWEEP ROW "  # the point's rows follow this on stdout
MODEL_VARIABLES = ("MODEL", "SHAPE", "DEVICE", "SYSTEM", "COUNT", "BUILD", "DATA", "SEQ_LEN", "DOC_STRIDE", "SAMPLES",
                   "LENGTHS", "SEED")  # what a point shares with the sweep that started it


def quiet(*_) -> None:
    pass


def environment_fields(device: str) -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_name()
    return {"torch": torch.__version__, "device_name": name, "git_commit": commit or None,
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def percentiles_ms(seconds: list[float]) -> dict:
    values = np.array(seconds) * 1000
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99))}


def energy_fields(reading, samples: int) -> dict:
    return {"power_w": reading.watts, "joules_per_sample": reading.joules / samples if reading.joules else None,
            "energy_source": reading.source}


def direct_row(args: argparse.Namespace) -> dict:
    """The backend over the samples in the SUT's own batches: a warm-up pass, a timed pass, a pass by stages."""
    import torch

    from harness.build import build_run
    from harness.energy import energy_meter
    from harness.run_config import RunConfig, RunOptions
    from sut.batching import plan_batches
    from sut.stages import StageTimes

    config = RunConfig.from_options(RunOptions.from_args(args, scenario="Offline"), accuracy=False)
    built = build_run(config, log=quiet)
    backend = built.backend(log=quiet)
    device, max_tokens, features, model = config.device, config.max_tokens, built.features, built.model
    count = config.count or len(features)
    subset = np.arange(count)
    batches = [subset[rows] for rows in plan_batches(features.lengths[subset], args.batch_size, max_tokens)]

    def one_pass() -> list[float]:
        latencies = []
        for rows in batches:
            started = time.perf_counter()
            backend.submit_rows(features, rows)()
            latencies.append(time.perf_counter() - started)
        return latencies

    one_pass()  # warm-up: compiled code, caches, the allocator
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    meter = energy_meter(device)
    meter.start()
    latencies = one_pass()
    reading = meter.stop()
    synchronize = (lambda: torch.cuda.synchronize(device)) if device.startswith("cuda") else None
    stages = StageTimes(synchronize)
    backend.stages = stages
    one_pass()
    return {"backend": args.backend, "precision": args.precision, "device": device, "batch_size": args.batch_size,
            "max_tokens": max_tokens, "scenario": "direct", "status": "ok", "model": model.name,
            "samples": count, "batches": len(batches), "samples_per_second": count / reading.seconds,
            "latency_ms": {"per_batch": percentiles_ms(latencies)},
            "stages_ms": stages.milliseconds_per_batch(), "stages_synchronised": True,
            "peak_memory_bytes": peak_memory(device), **energy_fields(reading, count),
            **environment_fields(device)}


def loadgen_row(args: argparse.Namespace) -> dict:
    """A quick LoadGen run of one scenario, its logs under the sweep's folder."""
    from harness.detail_log import read_detail_log
    from harness.energy import energy_meter
    from harness.run import run
    from harness.run_config import RunConfig, RunOptions
    from sut.stages import StageTimes

    logs_dir = args.folder / "logs" / f"batch{args.batch_size}-tokens{args.max_tokens}"
    options = RunOptions.from_args(args, logs_dir=logs_dir)
    device = RunConfig.from_options(options, accuracy=False).device
    stages = StageTimes()  # without synchronisation: the measured run is not slowed
    meter = energy_meter(device)
    run_dir, resolved = run(options, accuracy=False, log=quiet, stages=stages, meter=meter)
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    samples = resolved.samples_answered
    if args.scenario == "Offline":
        rate = float(detail.get("result_samples_per_second") or 0)
        latency = {}
    else:
        rate = float(detail.get("result_qps_with_loadgen_overhead") or 0)
        latency = {"per_sample": {name: float(detail.get(f"result_{key}_percentile_latency_ns") or 0) / 1e6
                                  for name, key in (("p50", "50.00"), ("p90", "90.00"), ("p99", "99.00"))}}
    joules, duration = resolved.energy_joules, samples / rate if rate else None
    return {"backend": args.backend, "precision": args.precision, "device": device, "batch_size": args.batch_size,
            "max_tokens": resolved.max_tokens, "scenario": args.scenario, "status": "ok", "model": resolved.model_name,
            "samples": samples, "samples_per_second": rate, "latency_ms": latency,
            "stages_ms": stages.milliseconds_per_batch(), "stages_synchronised": False,
            "peak_memory_bytes": peak_memory(device),
            "power_w": joules / duration if joules is not None and duration else None,
            "joules_per_sample": joules / samples if joules is not None and samples else None,
            "energy_source": resolved.energy_source, "loadgen_result": resolved.loadgen_result,
            "log_folder": str(run_dir), **environment_fields(device)}


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m benchmarks.sweep.point",
                            description="one point of a sweep (the sweep starts these itself)")
    result.add_argument("--scenario", required=True)
    result.add_argument("--backend", required=True)
    result.add_argument("--precision", required=True)
    result.add_argument("--batch-size", type=int, required=True)
    result.add_argument("--max-tokens", required=True)
    result.add_argument("--folder", type=Path, required=True)
    add_variables(result, "sweep", only=MODEL_VARIABLES)
    return result


def main() -> int:
    args = parser().parse_args()
    row = direct_row(args) if args.scenario == "direct" else loadgen_row(args)
    print(ROW + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
