"""What dealing batches to workers costs rank 0, and how well it scales, without GPUs.

    python -m benchmarks.dispatch [--samples-per-second 9100] [--workers 1 2 4 8] [--repeat 3] [--update-docs]

Real LoadGen (Offline, all 10,833 dev features), the real SUT and WorkerPool (sut/workers.py), real
Gloo ranks on this machine; only the devices are simulated (sut/simulated_backend.py). Dispatch: 4
workers answering zeros at once, rank 0 computing nothing: LoadGen's own rate (first sample issued to
last answered) is what rank 0 (LoadGen, the SUT, dealing, receiving) can feed, its inverse rank 0's cost
per sample. Scaling: workers that sleep as a GPU of the given speed would (time proportional to tokens),
H100 batching; efficiency = rate at N / (N x rate at 1), LoadGen's rates, the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch.multiprocessing as mp

from common.cli import ArgumentParser, run_main
from harness.distributed import free_port
from sut.simulated_backend import H100_SAMPLES_PER_SECOND, SimulatedBackend


def rank_main(rank: int, world: int, port: int, samples_per_second: float, build_dir: Path, batch_size: int,
              max_tokens, results):
    import mlperf_loadgen as lg
    import torch.distributed as dist

    from harness.settings import test_settings
    from qsl.cache import load_features
    from qsl.loadgen_qsl import SquadQSL
    from sut.sut import SUT
    from sut.workers import Peer, WorkerPool, serve

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    features = load_features(build_dir / "data" / "squad_features.npz", log=lambda *_: None)
    backend = SimulatedBackend(calibration=features, options={"samples_per_second": str(samples_per_second)})
    if rank:
        serve(backend, features)
        dist.destroy_process_group()
        return
    pool = WorkerPool(None, features, [Peer(index, "localhost", "stand-in") for index in range(world)], 600)
    user_conf = build_dir / "dispatch-user.conf"
    user_conf.write_text("")
    settings = test_settings(user_conf, "Offline", accuracy=False, count=len(features))
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(build_dir / "dispatch-logs")
    (build_dir / "dispatch-logs").mkdir(exist_ok=True)
    qsl, sut = SquadQSL(features, len(features)), SUT(pool, features, batch_size, max_tokens)
    started, cpu_started = time.perf_counter(), time.process_time()
    lg.StartTestWithLogSettings(sut.handle, qsl.handle, settings, log_settings)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    sut.close()
    qsl.close()
    pool.close()
    dist.destroy_process_group()
    summary = (build_dir / "dispatch-logs" / "mlperf_log_summary.txt").read_text()
    rate = float(summary.split("Samples per second:")[1].split()[0])
    results.put((sut.samples_done, seconds, rate, cpu_seconds, sut.error))


def timed_run(workers: int, samples_per_second: int, build_dir: Path, batch_size: int,
              max_tokens) -> tuple[int, float, float, float]:
    """Samples answered, the wall seconds of LoadGen's run, LoadGen's samples/s, and rank 0's CPU seconds (all
    its threads, LoadGen's included): what it costs whatever else shares the cores."""
    context = mp.get_context("spawn")
    results = context.Queue()
    port = free_port()
    world = workers + 1  # rank 0 deals, computes nothing
    processes = [context.Process(target=rank_main, args=(rank, world, port, samples_per_second, build_dir, batch_size,
                                                         max_tokens, results)) for rank in range(world)]
    for process in processes:
        process.start()
    samples, seconds, rate, cpu_seconds, error = results.get(timeout=3600)
    for process in processes:
        process.join(timeout=60)
    if error is not None:
        raise RuntimeError(f"the run failed: {error!r}")
    return samples, seconds, rate, cpu_seconds


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def spread(values: list[float], digits: int = 0) -> str:
    """median (min-max) of several runs."""
    return f"{median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def main() -> None:
    from benchmarks.bench import record
    from harness.settings import load_system
    from qsl.cache import load_features

    parser = ArgumentParser(prog="python -m benchmarks.dispatch", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples-per-second", type=int, default=H100_SAMPLES_PER_SECOND,
                        help=f"each simulated device's speed (default {H100_SAMPLES_PER_SECOND:,}: one H100)")
    parser.add_argument("--workers", nargs="*", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each count (default 3): median, min, max")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--update-docs", action="store_true", help="also record the tables in docs/benchmarks.md")
    args = parser.parse_args()
    load_features(args.build_dir / "data" / "squad_features.npz")  # built once, before the ranks read it
    h100 = load_system("h100")
    dispatch = [timed_run(4, 0, args.build_dir, h100.batch_size, h100.max_tokens)
                for _ in range(args.repeat)]
    dispatch_rates = [rate for _, _, rate, _ in dispatch]
    costs = [1e6 / rate for rate in dispatch_rates]
    cpu = [cpu_seconds / samples * 1e6 for samples, _, _, cpu_seconds in dispatch]
    print(f"dispatch: 4 zero workers, LoadGen's rate {spread(dispatch_rates)} samples/s: "
          f"{spread(costs, 2)} us per sample; rank 0's CPU time {spread(cpu, 2)} us per sample")
    rows = []
    for workers in args.workers:
        rates = [timed_run(workers, args.samples_per_second, args.build_dir, h100.batch_size,
                           h100.max_tokens)[2] for _ in range(args.repeat)]
        rows.append((workers, rates))
        one = median(rows[0][1]) / rows[0][0]  # per device, at the first count
        print(f"  {workers} simulated devices: {spread(rates)} samples/s, efficiency "
              f"{spread([100 * rate / (workers * one) for rate in rates], 1)}%", flush=True)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## Workers: dispatch and scaling without GPUs, measured {started}", "",
             f"- {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}; `{' '.join(['python -m benchmarks.dispatch', *sys.argv[1:]])}`",
             "- Real LoadGen (Offline, 10,833 dev features), SUT, WorkerPool and Gloo ranks on this machine; rank 0 "
             f"deals only; H100 batching (configs/systems/h100.json); LoadGen's rates, median (min-max) of "
             f"{args.repeat} runs", "",
             f"Dispatch, 4 workers answering zeros at once: {spread(costs, 2)} us per sample (LoadGen's rate "
             f"{spread(dispatch_rates)} samples/s); rank 0's CPU time, all its threads: "
             f"{spread(cpu, 2)} us per sample", "",
             f"Scaling, workers sleeping as a device of {args.samples_per_second:,.0f} samples/s would:", "",
             "| workers | samples/s | efficiency (%) |", "|---:|---:|---:|"]
    lines += [f"| {workers} | {spread(rates)} | {spread([100 * rate / (workers * one) for rate in rates], 1)} |"
              for workers, rates in rows]
    record(f"dispatch-{args.samples_per_second:.0f}", lines, args.build_dir, args.update_docs)


if __name__ == "__main__":
    run_main(main)
