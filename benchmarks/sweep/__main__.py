"""`make sweep`: the driver; each point runs in its own process (benchmarks/sweep/point.py)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import benchmarks.sweep
from benchmarks.sweep.grid import finished_keys, grid, identity, point_key, read_rows, sweep_name
from benchmarks.sweep.optimal import write_optimal
from benchmarks.sweep.plots import plot
from benchmarks.sweep.point import REPO, ROW
from common.cli import ArgumentParser, given_options, run_main
from common.errors import HarnessError
from common.variables import add_variables

LOADGEN_SCENARIOS = ("Offline", "SingleStream")


def point_arguments(args: argparse.Namespace, point: dict, scenario: str, folder: Path) -> list[str]:
    """The command line of one point's process: the sweep's settings, the point's, and where to log."""
    words = ["--scenario", scenario, "--backend", point["backend"], "--precision", point["precision"],
             "--batch-size", str(point["batch_size"]), "--max-tokens", str(point["max_tokens"] or "none"),
             "--build-dir", str(args.build_dir), "--folder", str(folder)]
    return words + given_options(args, ("model", "shape", "device", "system", "count", "data", "seq_len",
                                        "doc_stride", "samples", "lengths", "seed"))


def run_point(args: argparse.Namespace, point: dict, scenario: str, folder: Path) -> list[dict]:
    """One point in its own process; its rows, or one row that says why it has none."""
    command = [sys.executable, "-m", "benchmarks.sweep.point", *point_arguments(args, point, scenario, folder)]
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


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m benchmarks.sweep", description=benchmarks.sweep.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variables(result, "sweep", max_tokens={"default": ["none"]})
    return result


def plot_parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m benchmarks.sweep plot",
                            description="draw a sweep's PNGs again from its results.jsonl")
    result.add_argument("results", type=Path)
    return result


def main() -> int:
    if sys.argv[1:2] == ["plot"]:
        args = plot_parser().parse_args(sys.argv[2:])
        if not args.results.is_file():
            raise HarnessError(f"{args.results} not found; give a sweep's results.jsonl (build/sweeps/<name>/)")
        finished_keys(args.results)  # refuses a file that is not one
        plot(read_rows(args.results), args.results.parent)
        return 0
    return command_run(parser().parse_args())


if __name__ == "__main__":
    run_main(main)
