"""`make sweep`: batch sizes x token budgets x precisions x backends, measured point by point, resumable.

    python -m benchmarks.sweep --batch-sizes 1 4 16 [--max-tokens none 4096] [--precisions fp32 bf16]
        [--backends pytorch onnxruntime] [--mode direct|loadgen] [--name NAME] [--optimal [--optimal-file F]]
        [--model M | --shape S] [--device D] [--system S] [--count N] [--data ... --seq-len ...]
    python -m benchmarks.sweep plot build/sweeps/<name>/results.jsonl

direct: the backend over the samples in the SUT's own batches (sut.sut.submit_batch), no LoadGen; one
row per point. loadgen: a quick Offline and a quick SingleStream LoadGen run per point; a row each.
Every point runs in a process of its own: LoadGen allows one run per process, and a point that runs out
of memory takes only itself down (its row says so). Rows are appended to build/sweeps/<name>/results.jsonl
as each point finishes: a rerun skips the finished ones, and Ctrl-C loses at most the running one. The
plots and, with --optimal, a system file for the best point are written beside them.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.cli import (
    ArgumentParser,
    given_options,
    run_main,
)
from common.errors import HarnessError
from common.variables import add_variables
from harness.energy import peak_memory
from qsl.samples import sample_source

REPO = Path(__file__).resolve().parents[1]
ROW = "SWEEP ROW "  # a point's process prints its rows behind this on stdout
LOADGEN_SCENARIOS = ("Offline", "SingleStream")
TARGET_QPS_HEADROOM = 1.1  # above the measured rate: a faster compliant run would end before 600 s


def parse_token_budget(text: str) -> int | None:
    if text == "none":
        return None
    if not text.isdigit() or int(text) < 1:
        raise HarnessError(f"--max-tokens {text} is not a token budget: give whole numbers of at least 1, or none")
    return int(text)


def grid(args: argparse.Namespace) -> list[dict]:
    """Every point of the grid, checked before anything runs."""
    from harness.run_config import check_backend_settings, check_choice
    from sut.backend import BACKENDS

    if args.precisions is None:
        from harness.settings import detect_system, load_system

        args.precisions = [load_system(args.system or detect_system()).precision]
    if not args.batch_sizes or not args.precisions or not args.backends or not args.max_tokens:
        raise HarnessError("the grid is empty: give at least one of each of BATCH_SIZES, PRECISIONS, BACKENDS "
                           "and MAX_TOKENS (none for no token budget)")
    for size in args.batch_sizes:
        if not size.isdigit() or int(size) < 1:
            raise HarnessError(f"BATCH_SIZES: {size} is not a batch size; give whole numbers of at least 1")
    budgets = [parse_token_budget(text) for text in args.max_tokens]
    for backend in args.backends:
        check_choice("BACKEND", backend, tuple(BACKENDS))
        for precision in args.precisions:
            check_backend_settings(backend, precision, {})
    return [{"backend": backend, "precision": precision, "batch_size": int(size), "max_tokens": budget}
            for backend, precision, size, budget in itertools.product(args.backends, args.precisions,
                                                                      args.batch_sizes, budgets)]


def identity(args: argparse.Namespace) -> dict:
    """What a sweep's rows are of: a rerun into the same folder must be of the same."""
    model = str(Path(args.model).resolve()) if args.model else None
    return {"model": model, "shape": args.shape, "device": args.device, "system": args.system, "count": args.count,
            "mode": args.mode, "data": sample_source(args).label or "squad (MLPerf)"}


def sweep_name(args: argparse.Namespace) -> str:
    model = Path(args.model).name if args.model else args.shape or "default-model"
    parts = [model, args.device or "device", sample_source(args).label.lstrip("-"), args.mode]
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", "-".join(part for part in parts if part))


def point_key(row: dict) -> tuple:
    return row["backend"], row["precision"], row["batch_size"], row["max_tokens"], row["scenario"]


def finished_keys(results: Path) -> set[tuple]:
    if not results.is_file():
        return set()
    keys = set()
    for number, line in enumerate(results.read_text().splitlines(), 1):
        try:
            keys.add(point_key(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise HarnessError(f"{results}, line {number}, is not a sweep row ({error}); remove the line or the "
                               "file") from error
    return keys


def point_arguments(args: argparse.Namespace, point: dict, scenario: str, folder: Path) -> list[str]:
    """The command line of one point's process: the sweep's settings, the point's, and where to log."""
    words = ["point", "--scenario", scenario, "--backend", point["backend"], "--precision", point["precision"],
             "--batch-size", str(point["batch_size"]), "--max-tokens", str(point["max_tokens"] or "none"),
             "--build-dir", str(args.build_dir), "--folder", str(folder)]
    return words + given_options(args, ("model", "shape", "device", "system", "count", "data", "seq_len",
                                        "doc_stride", "samples", "lengths", "seed"))


def run_point(args: argparse.Namespace, point: dict, scenario: str, folder: Path) -> list[dict]:
    """One point in its own process; its rows, or one row that says why it has none."""
    command = [sys.executable, "-m", "benchmarks.sweep", *point_arguments(args, point, scenario, folder)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                                             os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    rows = [json.loads(line[len(ROW):]) for line in result.stdout.splitlines() if line.startswith(ROW)]
    if rows:
        return rows
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {result.returncode}"
    status = "out of memory" if "out of memory" in result.stderr.lower() else "failed"
    return [{**point, "scenario": scenario, "status": status, "error": reason[:500]}]


def command_run(args: argparse.Namespace) -> int:
    points = grid(args)
    name = args.name or sweep_name(args)
    folder = args.build_dir / "sweeps" / name
    results = folder / "results.jsonl"
    wanted = identity(args)
    manifest = folder / "sweep.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != wanted:
        raise HarnessError(f"{folder} holds a sweep of {json.loads(manifest.read_text())}, not of {wanted}; give "
                           "NAME= another name, or remove that folder")
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(wanted, indent=2) + "\n")
    scenarios = LOADGEN_SCENARIOS if args.mode == "loadgen" else ("direct",)
    todo = [(point, scenario) for point in points for scenario in scenarios]
    done = finished_keys(results)
    remaining = [(point, scenario) for point, scenario in todo
                 if point_key({**point, "scenario": scenario}) not in done]
    if len(remaining) < len(todo):
        print(f"resuming {results}: {len(todo) - len(remaining)} of {len(todo)} points already measured")
    try:
        measure_points(args, remaining, len(todo), folder, name)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the points measured so far are kept in {results}; run the same command again to "
              "measure the rest", file=sys.stderr)
        return 130
    rows = read_rows(results)
    print(f"{len(rows)} rows in {results}")
    plot(rows, folder)
    if args.optimal:
        write_optimal(rows, args, args.optimal_file or args.build_dir / "systems" / f"{name}-optimal.json", folder)
    return 0


def measure_points(args: argparse.Namespace, remaining: list[tuple[dict, str]], total: int, folder: Path,
                   name: str) -> None:
    """Each point in turn, its rows appended to results.jsonl as it comes: an interrupted sweep keeps them."""
    from tqdm import tqdm

    with tqdm(total=total, initial=total - len(remaining), unit="point", desc=f"sweep {name}") as bar:
        for point, scenario in remaining:
            bar.set_postfix_str(f"{point['backend']} {point['precision']} batch {point['batch_size']} "
                                f"budget {point['max_tokens'] or 'none'} {scenario}")
            for row in run_point(args, point, scenario, folder):
                with open(folder / "results.jsonl", "a") as file:
                    file.write(json.dumps(row) + "\n")
                if row.get("status") != "ok":
                    tqdm.write(f"point {point} {scenario}: {row['status']}: {row.get('error', '')}")
            bar.update(1)


def read_rows(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


# --- one point (its own process) ---

def environment_fields(device: str) -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_name()
    return {"torch": torch.__version__, "device_name": name, "git_commit": commit or None,
            "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def cpu_name() -> str:
    from benchmarks.cpu import cpu_name as name

    return name()


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

    from harness.energy import energy_meter
    from harness.build import create_backend
    from harness.run_config import resolve_count, resolve_device, resolve_max_tokens
    from harness.settings import detect_system, load_system
    from qsl.samples import load_samples
    from sut.backend import backend_class
    from sut.batching import plan_batches
    from sut.models import load_model, parse_shape
    from sut.stages import StageTimes
    from sut.sut import submit_batch

    system = load_system(args.system or detect_system())
    device = resolve_device(args.device or system.device)
    max_tokens = resolve_max_tokens(args.max_tokens, system.max_tokens)
    features = load_samples(sample_source(args), args.build_dir, log=lambda *_: None)
    count = resolve_count(args.count, system.default_count) or len(features)
    model = load_model(args.model, args.build_dir, allow_random=True, log=lambda *_: None,
                       accept_onnx=backend_class(args.backend).takes_onnx,
                       shape=parse_shape(args.shape) if args.shape else None)
    backend = create_backend(args.backend, model, device, args.precision, features, args.build_dir, {},
                             log=lambda *_: None)
    subset = np.arange(count)
    batches = [subset[rows] for rows in plan_batches(features.lengths[subset], args.batch_size, max_tokens)]

    def one_pass(stages=None) -> list[float]:
        latencies = []
        for rows in batches:
            started = time.perf_counter()
            submit_batch(backend, features, rows, stages=stages)()
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
    one_pass(stages)
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
    from harness.run_config import RunOptions, resolve_device
    from harness.settings import detect_system, load_system
    from sut.stages import StageTimes

    system = load_system(args.system or detect_system())
    device = resolve_device(args.device or system.device)
    options = RunOptions.from_args(args, device=device,
                                   logs_dir=args.folder / "logs" / f"batch{args.batch_size}-tokens{args.max_tokens}")
    stages = StageTimes()  # without synchronisation: the measured run is not slowed
    meter = energy_meter(device)
    run_dir, resolved = run(options, accuracy=False, log=lambda *_: None, stages=stages, meter=meter)
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


def command_point(args: argparse.Namespace) -> int:
    row = direct_row(args) if args.scenario == "direct" else loadgen_row(args)
    print(ROW + json.dumps(row), flush=True)
    return 0


# --- plots and the optimal point ---

def plot(rows: list[dict], folder: Path) -> list[Path]:
    """samples/s, latency percentiles and joules per sample against batch size, and the stages; PNGs in `folder`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots need matplotlib: pip install '.[plot]' (then python -m benchmarks.sweep plot "
              f"{folder / 'results.jsonl'})")
        return []
    measured = [row for row in rows if row.get("status") == "ok"]
    if not measured:
        print("no measured points to plot")
        return []
    series: dict[tuple, list[dict]] = {}
    for row in measured:
        series.setdefault((row["scenario"], row["backend"], row["precision"], row["max_tokens"]), []).append(row)
    written = []

    def line_plot(filename: str, ylabel: str, value, title: str, missing: str = "not measured") -> None:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for (scenario, backend, precision, budget), points in sorted(series.items(), key=str):
            points = sorted(points, key=lambda row: row["batch_size"])
            values = [value(row) for row in points]
            if any(v is not None for v in values):
                axes.plot([row["batch_size"] for row in points], [np.nan if v is None else v for v in values],
                          marker="o", label=f"{backend} {precision}, budget {budget or 'none'}, {scenario}")
        axes.set_xscale("log", base=2)
        axes.set_xlabel("batch size")
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        if axes.lines:
            axes.legend(fontsize=7)
        else:
            axes.text(0.5, 0.5, missing, ha="center", wrap=True, transform=axes.transAxes)
        figure.tight_layout()
        figure.savefig(folder / filename, dpi=110)
        plt.close(figure)
        written.append(folder / filename)

    line_plot("samples_per_second.png", "samples/s", lambda row: row["samples_per_second"], "Throughput")
    for percentile in ("p50", "p90", "p99"):
        line_plot(f"latency_{percentile}.png", f"{percentile} latency, ms",
                  lambda row, p=percentile: next(iter(row["latency_ms"].values()), {}).get(p),
                  f"{percentile} latency (per batch in direct mode, per sample in SingleStream)")
    line_plot("joules_per_sample.png", "joules per sample", lambda row: row.get("joules_per_sample"),
              "Energy per sample", f"not measured: {measured[0].get('energy_source', '')}")
    figure, axes = plt.subplots(figsize=(max(7, len(measured) * 0.6), 4.5))
    names = sorted({name for row in measured for name in row["stages_ms"]})
    labels = [f"{row['backend']} {row['precision']}\nb{row['batch_size']} {row['scenario']}" for row in measured]
    bottom = np.zeros(len(measured))
    for name in names:
        heights = np.array([row["stages_ms"].get(name, 0.0) for row in measured])
        axes.bar(range(len(measured)), heights, bottom=bottom, label=name)
        bottom += heights
    axes.set_xticks(range(len(measured)), labels, fontsize=6, rotation=45, ha="right")
    axes.set_ylabel("ms per batch")
    axes.set_title("Where a batch's time goes, by stage")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "stages.png", dpi=110)
    plt.close(figure)
    written.append(folder / "stages.png")
    for path in written:
        print(f"wrote {path}")
    return written


def best_row(rows: list[dict], scenario: str) -> dict | None:
    """Offline/direct: the most samples/s; SingleStream: the lowest p90; ties to the lower energy per sample."""
    measured = [row for row in rows if row.get("status") == "ok" and row["scenario"] == scenario]
    if not measured:
        return None
    energy = lambda row: row.get("joules_per_sample") or float("inf")  # noqa: E731 - one sort key, named
    if scenario == "SingleStream":
        return min(measured, key=lambda row: (row["latency_ms"]["per_sample"]["p90"], energy(row)))
    return min(measured, key=lambda row: (-row["samples_per_second"], energy(row)))


def write_optimal(rows: list[dict], args: argparse.Namespace, path: Path, folder: Path) -> Path:
    """A system file with the best point's batching, precision and device, and LoadGen targets from its figures."""
    from harness.settings import detect_system, load_system

    throughput = best_row(rows, "Offline") or best_row(rows, "direct")
    if throughput is None:
        raise HarnessError("no measured point to choose from: every point failed (see the rows)")
    base = load_system(args.system or detect_system())
    loadgen = {scenario: dict(values) for scenario, values in base.loadgen.items()}
    target_qps = round(throughput["samples_per_second"] * TARGET_QPS_HEADROOM, 3)
    loadgen.setdefault("Offline", {})["target_qps"] = target_qps
    reasons = [f"batch size {throughput['batch_size']}, token budget {throughput['max_tokens'] or 'none'}, "
               f"{throughput['backend']} {throughput['precision']}: the most samples/s "
               f"({throughput['samples_per_second']:,.1f}) of the {throughput['scenario']} rows",
               f"Offline target_qps {target_qps}: {TARGET_QPS_HEADROOM:.0%} of the measured rate, so a compliant "
               "run asks for enough samples to last at least 600 s even if it runs a little faster"]
    latency = best_row(rows, "SingleStream")
    if latency is not None:
        p90 = latency["latency_ms"]["per_sample"]["p90"]
        loadgen.setdefault("SingleStream", {})["target_latency"] = round(p90, 3)
        reasons.append(f"SingleStream target_latency {p90:.3f} ms: the lowest p90 (batch size "
                       f"{latency['batch_size']})")
    system = {"description": f"make sweep OPTIMAL=1 from {folder}: " + "; ".join(reasons),
              "device": throughput["device"].partition(":")[0], "precision": throughput["precision"],
              "batch_size": throughput["batch_size"], "max_tokens": throughput["max_tokens"],
              "default_count": base.default_count, "loadgen": loadgen}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(system, indent=2) + "\n")
    print("optimal: " + "\n         ".join(reasons))
    same = [f"{variable}={shlex.quote(str(getattr(args, name)))}" for variable, name in (
        ("MODEL", "model"), ("SHAPE", "shape"), ("DATA", "data"), ("SEQ_LEN", "seq_len"), ("DOC_STRIDE", "doc_stride"),
        ("SAMPLES", "samples"), ("LENGTHS", "lengths"), ("SEED", "seed")) if getattr(args, name) is not None]
    print(f"wrote {path}; use it: make perf SYSTEM={shlex.quote(str(path))} BACKEND={throughput['backend']} "
          + " ".join(same))
    return path


# --- command line ---

MODEL_VARIABLES = ("MODEL", "SHAPE", "DEVICE", "SYSTEM", "COUNT", "BUILD", "DATA", "SEQ_LEN", "DOC_STRIDE", "SAMPLES",
                   "LENGTHS", "SEED")  # what a point shares with the sweep that started it


def run_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variables(parser, "sweep", max_tokens={"default": ["none"]})
    return parser


def point_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.sweep point",
                            description="one point of a sweep (the sweep starts these itself)")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--max-tokens", required=True)
    parser.add_argument("--folder", type=Path, required=True)
    add_variables(parser, "sweep", only=MODEL_VARIABLES)
    return parser


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "plot":
        parser = ArgumentParser(prog="python -m benchmarks.sweep plot",
                                description="draw a sweep's PNGs again from its results.jsonl")
        parser.add_argument("results", type=Path)
        args = parser.parse_args(sys.argv[2:])
        if not args.results.is_file():
            raise HarnessError(f"{args.results} not found; give a sweep's results.jsonl (build/sweeps/<name>/)")
        finished_keys(args.results)  # refuses a file that is not one
        plot(read_rows(args.results), args.results.parent)
        return 0
    if command == "point":
        return command_point(point_parser().parse_args(sys.argv[2:]))
    return command_run(run_parser().parse_args())


if __name__ == "__main__":
    run_main(main)
