"""`make scale WORKERS="1 2 4 8"`: Offline at each worker count, and how well it scales.

    python -m benchmarks.scale --workers 1 2 4 8 [--launcher local|srun] [make perf's options ...]

Each count is an ordinary `python -m harness perf --workers N` (LoadGen Offline), its logs kept apart
under build/scale/<timestamp>/logs/workers<N>/; quick runs of COUNT x N samples (default: the system
file's quick count, or 1,024 on GPU systems, times N, so every count gives each rank the same work)
unless COUNT=full. With --launcher srun (a SLURM allocation, slurm/scale.sbatch) each count runs as
`srun --ntasks N`, across nodes. Written beside the logs: results.jsonl (a row per count: workers,
nodes, devices, samples/s, speedup and efficiency against the smallest count, LoadGen's verdict, the
log folder), scaling.md (the table) and scaling.png (throughput and efficiency, ideal lines drawn).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path

from common.cli import ArgumentParser, given_options, run_main
from common.errors import HarnessError
from common.variables import add_variables
from harness.run_config import RunConfig, RunOptions, resolve_count

PASSED_THROUGH = ("model", "shape", "device", "precision", "system", "backend", "data", "seq_len", "doc_stride",
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


def quick_count(args: argparse.Namespace, workers: int) -> str:
    """The samples of one count's run: COUNT (or full) as given, else a base per rank times the ranks."""
    from harness.settings import chosen_system

    if args.count == "full":
        return "full"
    base = resolve_count(args.count, chosen_system(args.system).default_count) or 1024
    return str(base * workers)


def check_settings(args: argparse.Namespace, worker_counts: list[int]) -> None:
    """Every count's settings, as its run would check them, before the first run starts."""
    if args.rank0_computes not in (None, "0", "1"):
        raise HarnessError(f"RANK0_COMPUTES={args.rank0_computes}: choose one of 0, 1")
    for workers in worker_counts:
        RunConfig.from_options(RunOptions.from_args(args, backend=args.backend or "pytorch",
                                                     count=quick_count(args, workers), workers=str(workers)),
                               accuracy=False)


def perf_command(args: argparse.Namespace, workers: int, logs: Path) -> list[str]:
    words = ["-m", "harness", "perf", "--scenario", "Offline", "--workers", str(workers), "--count",
             quick_count(args, workers), "--build-dir", str(args.build_dir), "--logs-dir", str(logs),
             *given_options(args, PASSED_THROUGH)]
    if args.launcher == "srun":
        return ["srun", f"--ntasks={workers}", "--kill-on-bad-exit=1", sys.executable, *words]
    return [sys.executable, *words]


def measure(args: argparse.Namespace, workers: int, folder: Path) -> dict:
    from harness.detail_log import read_detail_log

    logs = folder / "logs" / f"workers{workers}"
    command = perf_command(args, workers, logs)
    print(f"=== {workers} worker{'s' * (workers > 1)}: {shlex.join(command)}", flush=True)
    result = subprocess.run(command)
    infos = sorted(logs.glob("*/*/*/Offline/performance/run_1/run_info.json"))
    if result.returncode != 0 or not infos:
        return {"workers": workers, "status": "failed", "exit_code": result.returncode}
    info = json.loads(infos[0].read_text())
    detail = read_detail_log(infos[0].parent / "mlperf_log_detail.txt")
    return {"workers": workers, "status": "ok", "nodes": info["nodes"], "devices": info["devices"],
            "samples": info["samples_answered"], "samples_per_second": float(detail.get("result_samples_per_second")),
            "loadgen_result": info["loadgen_result"], "log_folder": str(infos[0].parent)}


def with_efficiency(rows: list[dict]) -> list[dict]:
    """Speedup and efficiency against the smallest count that ran: efficiency = rate / (N / N0 x rate at N0)."""
    measured = [row for row in rows if row["status"] == "ok"]
    if not measured:
        return rows
    base = min(measured, key=lambda row: row["workers"])
    per_worker = base["samples_per_second"] / base["workers"]
    for row in measured:
        row["speedup"] = row["samples_per_second"] / base["samples_per_second"] * base["workers"]
        row["efficiency"] = row["samples_per_second"] / (row["workers"] * per_worker)
        row["baseline_workers"] = base["workers"]
    return rows


def table(rows: list[dict]) -> list[str]:
    lines = ["| workers | nodes | samples/s | speedup | efficiency | LoadGen | devices |",
             "|---:|---:|---:|---:|---:|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['workers']} | | failed (exit {row['exit_code']}) | | | | |")
            continue
        lines.append(f"| {row['workers']} | {row['nodes']} | {row['samples_per_second']:,.1f} | "
                     f"{row['speedup']:.2f} | {row['efficiency']:.1%} | {row['loadgen_result']} | "
                     f"{', '.join(row['devices'])} |")
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
    workers = [row["workers"] for row in measured]
    figure, (throughput, efficiency) = plt.subplots(1, 2, figsize=(10, 4))
    ideal = [row["workers"] * measured[0]["samples_per_second"] / measured[0]["workers"] for row in measured]
    throughput.plot(workers, [row["samples_per_second"] for row in measured], marker="o", label="measured")
    throughput.plot(workers, ideal, linestyle="--", color="grey", label="ideal (linear)")
    throughput.set_xlabel("workers")
    throughput.set_ylabel("samples/s (LoadGen Offline)")
    throughput.legend()
    efficiency.plot(workers, [row["efficiency"] for row in measured], marker="o", label="measured")
    efficiency.axhline(1.0, linestyle="--", color="grey", label="ideal")
    efficiency.set_ylim(0, 1.1)
    efficiency.set_xlabel("workers")
    efficiency.set_ylabel("scaling efficiency")
    efficiency.legend()
    for axes in (throughput, efficiency):
        axes.set_xticks(workers)
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
    check_settings(args, worker_counts)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = args.out or args.build_dir / "scale" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for workers in worker_counts:
        rows.append(measure(args, workers, folder))
        with open(folder / "results.jsonl", "w") as file:  # rewritten after each count: speedups move with it
            file.writelines(json.dumps(row) + "\n" for row in with_efficiency(rows))
    lines = table(with_efficiency(rows))
    (folder / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    written = plot(rows, folder / "scaling.png")
    print(f"wrote {folder / 'results.jsonl'}, {folder / 'scaling.md'}" + (f", {written}" if written else ""))
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    run_main(main)
