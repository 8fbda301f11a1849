"""Timing shared by the benchmarks: a stopwatch that waits for the GPU, backend passes, a row and its table."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    path: str
    precision: str
    batching: str
    samples: int
    samples_per_second: float
    host_share: float | None = None
    note: str = ""


def timer(device: str):
    """A stopwatch that waits for the GPU: CUDA events there, perf_counter on CPU."""
    import torch

    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()

        def stop() -> float:
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000

        return stop
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


def run_batches(backend, features, batches: list[np.ndarray], pad_to: int | None) -> None:
    """Each batch as the SUT hands it to a backend (or padded to `pad_to`, as the reference pads)."""
    from sut.batching import batch_inputs

    for rows in batches:
        backend.predict(*(features.model_inputs(rows, pad_to) if pad_to else batch_inputs(features, rows)))


def host_seconds(features, batches: list[np.ndarray]) -> float:
    """What the packed path does on the host per batch, without the model: pack, then scatter logits back."""
    from benchmarks.host import PackedZeroBackend

    backend = PackedZeroBackend()
    started = time.perf_counter()
    run_batches(backend, features, batches, None)
    return time.perf_counter() - started


def measure(backend, features, batches, device: str, passes: int, pad_to: int | None = None) -> float:
    """Median samples/s over `passes` timed passes, after one untimed warm-up pass."""
    samples = sum(len(rows) for rows in batches)
    run_batches(backend, features, batches, pad_to)
    rates = []
    for _ in range(passes):
        stop = timer(device)
        run_batches(backend, features, batches, pad_to)
        rates.append(samples / stop())
    return statistics.median(rates)


def timed_passes(passes: int) -> str:
    return "one timed pass" if passes == 1 else f"median of {passes} passes"


def table(rows: list[Row], ratio_label: str = "× reference style") -> list[str]:
    reference = rows[0].samples_per_second
    lines = [f"| path | precision | batching | samples | samples/s | {ratio_label} | host share |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        host = f"{row.host_share:.1%}" if row.host_share is not None else ""
        rate = (f"{row.samples_per_second:,.{1 if row.samples_per_second < 100 else 0}f}"
                if row.samples_per_second == row.samples_per_second else row.note)
        ratio = row.samples_per_second / reference
        ratio_text = f"{ratio:,.1f}" if ratio == ratio else ""
        lines.append(f"| {row.path} | {row.precision} | {row.batching} | {row.samples} | {rate} | {ratio_text} "
                     f"| {host} |")
    return lines
