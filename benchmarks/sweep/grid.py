"""A sweep's grid of points, what its rows are of, and the rows measured so far (results.jsonl)."""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path

from common.errors import HarnessError
from qsl.samples import sample_source


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

    if args.precisions is None:  # what a run of every backend would take by default (on a CPU, as its flags pick)
        from harness.settings import chosen_system, default_precision
        from sut.backend import backend_class

        system = chosen_system(args.system)
        runs_everywhere = (set.intersection(*(set(backend_class(name).precisions) for name in args.backends))
                           if args.backends else set())
        args.precisions = [default_precision(system, args.device or system.device, tuple(runs_everywhere))[0]]
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
    parts = [model, args.device, sample_source(args).label.lstrip("-"), args.mode]  # no DEVICE: the system's
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


def read_rows(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
