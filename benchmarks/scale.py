"""`make scale WORKERS="1 2 4 8" SCENARIOS="Offline Server"`: each scenario at each worker count, and its scaling.

    python -m benchmarks.scale --workers 1 2 4 8 [--scenarios Offline Server] [--launcher local|srun] [perf options]

Each count is an ordinary `python -m harness perf --workers N`, its logs kept apart under
build/scale/<timestamp>/logs/<scenario>/workers<N>/, its system file's LoadGen targets (target_qps) times N
(written beside them), so Server's schedule grows with the devices. Quick runs of COUNT x N samples (default:
the system file's quick count, or 1,024 on GPU systems, times N, so every count gives each rank the same
work; never more than the data set holds) unless COUNT=full. With --launcher srun (a SLURM allocation,
slurm/scale.sbatch) each count runs as `srun --ntasks N`, across nodes. BACKEND=simulated SYSTEM=simulated-h100
measures the harness at H100 speed without GPUs. Written beside the logs: results.jsonl (a row per scenario and
count: samples/s, speedup and efficiency against the smallest count, rank 0's CPU time per sample, LoadGen's
verdict, the log folder), scaling.md (the table) and scaling.png (throughput with the ideal line, efficiency).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from common.cli import ArgumentParser, backend_options, given_options, run_main
from common.errors import HarnessError
from common.variables import add_variables
from harness.run_config import RunConfig, RunOptions, resolve_count

PASSED_THROUGH = ("model", "shape", "device", "precision", "backend", "data", "seq_len", "doc_stride",
                  "samples", "lengths", "seed", "max_tokens", "batch_size", "rank0_computes", "worker_timeout")


def counts(texts: list[str]) -> list[int]:
    if not texts:
        raise HarnessError('give the worker counts to compare: WORKERS="1 2 4 8"')
    values = []
    for text in texts:
        if not text.isdigit() or int(text) < 1:
            raise HarnessError(f"WORKERS: {text} is not a worker count; give whole numbers of at least 1")
        values.append(int(text))
    return sorted(set(values))


def quick_count(args: argparse.Namespace, workers: int, available: int) -> str:
    """The samples of one count's run: COUNT (or full) as given, else a base per rank times the ranks, at most
    the `available` samples."""
    from harness.settings import chosen_system

    if args.count == "full":
        return "full"
    base = resolve_count(args.count, chosen_system(args.system).default_count) or 1024
    return str(min(base * workers, available))


def scaled_system(args: argparse.Namespace, workers: int, folder: Path) -> Path:
    """The system file with its LoadGen targets (target_qps) times `workers`: what N devices are asked to hold."""
    from harness.settings import chosen_system

    system = chosen_system(args.system)
    text = json.loads(system.path.read_text())
    for values in text["loadgen"].values():
        if "target_qps" in values:
            values["target_qps"] = values["target_qps"] * workers
    text["description"] = f"{system.name} with its target_qps times {workers} (make scale). {system.description}"
    path = folder / "systems" / f"{system.path.stem}-workers{workers}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(text, indent=2) + "\n")
    return path


def available_samples(args: argparse.Namespace) -> int:
    """How many samples the data set holds (the dev set's features are tokenised here once, if not yet)."""
    from qsl.samples import load_samples

    options = RunOptions.from_args(args, backend=args.backend or "pytorch", count=None, workers="1")
    return len(load_samples(RunConfig.from_options(options, accuracy=False).source, args.build_dir,
                            log=lambda *_: None))


def check_settings(args: argparse.Namespace, worker_counts: list[int], scenarios: list[str]) -> None:
    """Every run's settings, as the run would check them, before the first one starts."""
    from harness.settings import check_scenario

    if args.rank0_computes not in (None, "0", "1"):
        raise HarnessError(f"RANK0_COMPUTES={args.rank0_computes}: choose one of 0, 1")
    for scenario in scenarios:
        if check_scenario(scenario) not in ("Offline", "Server"):
            raise HarnessError(f"SCENARIOS: {scenario} does not scale with devices (one query at a time); "
                               "make scale takes Offline and Server")
    for workers in worker_counts:
        RunConfig.from_options(RunOptions.from_args(args, backend=args.backend or "pytorch",
                                                     count=quick_count(args, workers, 1), workers=str(workers)),
                               accuracy=False)


def perf_command(args: argparse.Namespace, scenario: str, workers: int, count: str, system: Path,
                 logs: Path) -> list[str]:
    words = ["-m", "harness", "perf", "--scenario", scenario, "--workers", str(workers), "--count", count,
             "--system", str(system), "--build-dir", str(args.build_dir), "--logs-dir", str(logs),
             *given_options(args, PASSED_THROUGH),
             *(word for pair in args.backend_option or [] for word in ("--backend-option", pair))]
    if args.launcher == "srun":
        return ["srun", f"--ntasks={workers}", "--kill-on-bad-exit=1", sys.executable, *words]
    return [sys.executable, *words]


def measure(args: argparse.Namespace, scenario: str, workers: int, count: str, folder: Path) -> dict:
    from harness.detail_log import read_detail_log

    logs = folder / "logs" / scenario / f"workers{workers}"
    system = scaled_system(args, workers, folder)
    command = perf_command(args, scenario, workers, count, system, logs)
    print(f"=== {scenario}, {workers} worker{'s' * (workers > 1)}: {shlex.join(command)}", flush=True)
    result = subprocess.run(command)
    infos = sorted(logs.glob(f"*/*/*/{scenario}/performance/run_1/run_info.json"))
    row = {"scenario": scenario, "workers": workers}
    if result.returncode != 0 or not infos:
        return {**row, "status": "failed", "exit_code": result.returncode}
    info = json.loads(infos[0].read_text())
    detail = read_detail_log(infos[0].parent / "mlperf_log_detail.txt")
    rate_key = "result_samples_per_second" if scenario == "Offline" else "result_scheduled_samples_per_sec"
    p99 = detail.get("result_99.00_percentile_latency_ns")
    return {**row, "status": "ok", "nodes": info["nodes"], "devices": info["devices"],
            "samples": info["samples_answered"], "samples_per_second": float(detail.get(rate_key)),
            "target_qps": json.loads(system.read_text())["loadgen"].get(scenario, {}).get("target_qps"),
            "p99_ms": p99 / 1e6 if p99 is not None else None,
            "rank0_us_per_sample": 1e6 * info["cpu_seconds"] / max(info["samples_answered"], 1),
            "loadgen_result": info["loadgen_result"], "log_folder": str(infos[0].parent)}


def with_efficiency(rows: list[dict]) -> list[dict]:
    """Per scenario, speedup and efficiency against its smallest count that ran: rate / (N / N0 x rate at N0)."""
    for scenario in {row["scenario"] for row in rows}:
        measured = [row for row in rows if row["scenario"] == scenario and row["status"] == "ok"]
        if not measured:
            continue
        base = min(measured, key=lambda row: row["workers"])
        per_worker = base["samples_per_second"] / base["workers"]
        for row in measured:
            row["speedup"] = row["samples_per_second"] / base["samples_per_second"] * base["workers"]
            row["efficiency"] = row["samples_per_second"] / (row["workers"] * per_worker)
            row["baseline_workers"] = base["workers"]
            if scenario == "Server" and row["loadgen_result"].split(",")[0] != "VALID":
                row["efficiency"] = None  # LoadGen's schedule, not held within the latency bound: no rate was reached
    return rows


def header(args: argparse.Namespace) -> list[str]:
    """What every row ran on: the backend (a simulated device's speed), the system file, this machine."""
    from common.cpu import cpu_name

    backend = args.backend or "pytorch"
    if backend == "simulated":
        from sut.simulated_backend import H100_SAMPLES_PER_SECOND

        speed = backend_options(args.backend_option or []).get("samples_per_second", H100_SAMPLES_PER_SECOND)
        backend = f"simulated devices of {int(speed):,} samples/s each (BACKEND=simulated)"
    return [f"- backend: {backend}; system {args.system or 'detected'} (target_qps times each count)",
            f"- rank 0 on {cpu_name()}, {os.cpu_count()} logical CPUs, shared with every rank started here"]


def table(rows: list[dict]) -> list[str]:
    lines = ["| scenario | workers | nodes | samples/s | speedup | efficiency | rank 0 CPU (us/sample) | "
             "target_qps | p99 (ms) | LoadGen | devices |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['scenario']} | {row['workers']} | | failed (exit {row['exit_code']}) | | | | | | | |")
            continue
        p99 = f"{row['p99_ms']:.1f}" if row["scenario"] == "Server" and row["p99_ms"] is not None else ""
        target = f"{row['target_qps']:,.0f}" if row["target_qps"] is not None else ""
        efficiency = "not held" if row["efficiency"] is None else f"{row['efficiency']:.1%}"
        devices = ", ".join(row["devices"]) if len(row["devices"]) <= 4 else f"{len(row['devices'])} devices"
        lines.append(f"| {row['scenario']} | {row['workers']} | {row['nodes']} | {row['samples_per_second']:,.1f} | "
                     f"{row['speedup']:.2f} | {efficiency} | {row['rank0_us_per_sample']:.1f} | "
                     f"{target} | {p99} | {row['loadgen_result']} | {devices} |")
    return lines


def plot(rows: list[dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("the plot needs matplotlib: pip install '.[plot]'")
        return None
    measured = [row for row in rows if row["status"] == "ok"]
    if not measured:
        return None
    figure, (throughput, efficiency) = plt.subplots(1, 2, figsize=(10, 4))
    for scenario in dict.fromkeys(row["scenario"] for row in measured):
        points = [row for row in measured if row["scenario"] == scenario]
        workers = [row["workers"] for row in points]
        ideal = [count * points[0]["samples_per_second"] / points[0]["workers"] for count in workers]
        line, = throughput.plot(workers, [row["samples_per_second"] for row in points], marker="o",
                                label=f"{scenario}, measured")
        throughput.plot(workers, ideal, linestyle="--", color=line.get_color(), alpha=0.6,
                        label=f"{scenario}, ideal (linear)")
        held = [row for row in points if row["efficiency"] is not None]
        efficiency.plot([row["workers"] for row in held], [row["efficiency"] for row in held], marker="o",
                        color=line.get_color(), label=scenario)
    efficiency.axhline(1.0, linestyle="--", color="grey", label="ideal")
    throughput.set_xlabel("workers")
    throughput.set_ylabel("samples/s (LoadGen; Server: scheduled)")
    throughput.legend()
    efficiency.set_ylim(0, 1.1)
    efficiency.set_xlabel("workers")
    efficiency.set_ylabel("scaling efficiency")
    efficiency.legend()
    for axes in (throughput, efficiency):
        axes.set_xticks(sorted({row["workers"] for row in measured}))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variables(result, "scale", workers={"default": ["1", "2"]})
    result.add_argument("--out", type=Path, default=None, help="default build/scale/<timestamp>")
    return result


def main() -> int:
    args = parser().parse_args()
    worker_counts = counts(args.workers)
    scenarios = args.scenarios or ["Offline"]
    check_settings(args, worker_counts, scenarios)
    available = available_samples(args)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = args.out or args.build_dir / "scale" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for scenario in scenarios:
        for workers in worker_counts:
            rows.append(measure(args, scenario, workers, quick_count(args, workers, available), folder))
            with open(folder / "results.jsonl", "w") as file:  # rewritten after each run: speedups move with it
                file.writelines(json.dumps(row) + "\n" for row in with_efficiency(rows))
    lines = [*header(args), "", *table(with_efficiency(rows))]
    (folder / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    written = plot(rows, folder / "scaling.png")
    print(f"wrote {folder / 'results.jsonl'}, {folder / 'scaling.md'}" + (f", {written}" if written else ""))
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    run_main(main)
