"""`make profile`: where one Offline batch of our packed path spends its time, kernel by kernel.

    python -m benchmarks.batch_profile [--model DIR] [--precision fp8] [--device cuda] [--iterations 3]

Runs the largest batch of the system file's Offline plan (its token budget full) through the packed
backend's `predict`, warmed up, under torch.profiler; sums each kernel's time (GPU kernels on CUDA,
operators on CPU) and groups the kernels by what they do. It is the measurement that picks the next
kernel to write: docs/benchmarks.md shows one and works out what a target rate needs from it.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from benchmarks.bench import record
from common.cli import ArgumentParser, run_main
from common.cpu import cpu_name
from common.variables import add_variables

CATEGORIES = (  # first match wins; names as CUDA kernels and CPU operators are called
    ("FFN input product, GELU, quantise (Triton)", r"_product_gelu_quantise"),
    ("residual + LayerNorm + quantise (Triton)", r"_add_norm_quantise"),
    ("attention", r"flash|fmha|attention|attn|softmax|bmm"),
    ("matrix products", r"gemm|cutlass|cublas|sm90_xmma|scaled_mm|addmm|matmul|\bmm\b|aten::mm|aten::linear"
                        r"|_linear_pointwise"),
    ("LayerNorm", r"layer_norm|layernorm"),
    ("GELU", r"gelu"),
    ("copies, casts, quantisation", r"to_fp8|float8|e4m3|clamp|aten::to|_to_copy|copy|convert"),
    ("embeddings", r"embedding|index_select|gather"),
)
OTHER = "everything else"


@dataclass
class KernelTime:
    name: str
    calls: int
    seconds: float


def category(name: str) -> str:
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return OTHER


def kernel_times(profiler, on_device: bool, iterations: int) -> list[KernelTime]:
    """Per-iteration time of each GPU kernel (on CUDA) or each operator's own CPU time (on CPU)."""
    times = []
    for event in profiler.key_averages():
        if on_device:
            seconds = getattr(event, "self_device_time_total", None)
            if seconds is None:  # torch before 2.4 called it cuda
                seconds = event.self_cuda_time_total
            if event.device_type.name != "CUDA":
                continue
        else:
            seconds = event.self_cpu_time_total
        if seconds > 0:
            times.append(KernelTime(event.key, event.count // iterations, seconds / 1e6 / iterations))
    return sorted(times, key=lambda kernel: -kernel.seconds)


def largest_batch(features, batch_size: int, max_tokens: int | None) -> np.ndarray:
    from sut.batching import plan_batches

    batches = plan_batches(features.lengths, batch_size, max_tokens)
    return max(batches, key=lambda rows: int(features.lengths[rows].sum()))


def report(kernels: list[KernelTime], tokens: int, samples: int, top: int) -> list[str]:
    total = sum(kernel.seconds for kernel in kernels)
    groups: dict[str, list[KernelTime]] = defaultdict(list)
    for kernel in kernels:
        groups[category(kernel.name)].append(kernel)
    lines = [f"One batch: {tokens:,} tokens, {samples:,} samples; {total * 1e3:.1f} ms of kernel time "
             f"({samples / total:,.0f} samples/s if nothing else ran)", "",
             "| what | kernels | calls | ms | share |", "|---|---:|---:|---:|---:|"]
    for label, members in sorted(groups.items(), key=lambda item: -sum(k.seconds for k in item[1])):
        seconds = sum(kernel.seconds for kernel in members)
        lines.append(f"| {label} | {len(members)} | {sum(k.calls for k in members)} | {seconds * 1e3:.2f} "
                     f"| {seconds / total:.1%} |")
    lines += ["", f"Longest {top} kernels:", "", "| kernel | what | calls | ms | share |", "|---|---|---:|---:|---:|"]
    for kernel in kernels[:top]:
        name = kernel.name if len(kernel.name) <= 90 else kernel.name[:87] + "..."
        lines.append(f"| `{name}` | {category(kernel.name)} | {kernel.calls} | {kernel.seconds * 1e3:.2f} "
                     f"| {kernel.seconds / total:.1%} |")
    return lines


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m benchmarks.batch_profile", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_variables(result, "profile")
    result.add_argument("--iterations", type=int, default=3, help="profiled runs of the batch, averaged")
    result.add_argument("--top", type=int, default=15, help="kernels listed by name")
    return result


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from harness.build import build_run
    from harness.run_config import RunConfig, RunOptions
    from sut.batching import batch_inputs

    args = parser().parse_args()
    config = RunConfig.from_options(RunOptions.from_args(args), accuracy=False)
    built = build_run(config)
    system, device, precision, features, model = (config.system, config.device, config.precision, built.features,
                                                  built.model)
    options = config.options.backend_options
    backend = built.backend()
    rows = largest_batch(features, system.batch_size, system.max_tokens)
    inputs = batch_inputs(features, rows)
    for _ in range(2):  # warm-up: compiled code and allocator settle
        backend.predict(*inputs)
    on_device = device.startswith("cuda")
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_device else [])]
    with profile(activities=activities) as profiler:
        for _ in range(args.iterations):
            backend.predict(*inputs)
        if on_device:
            torch.cuda.synchronize()
    kernels = kernel_times(profiler, on_device, args.iterations)
    chosen = "".join(f", {key}={value}" for key, value in options.items())
    machine = torch.cuda.get_device_name(device) if on_device else f"CPU {cpu_name()}"
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = (f"{model.name}, pytorch backend{chosen}, {device}, {precision}, system {system.name} "
             f"(batch <= {system.batch_size}, token budget {system.max_tokens or 'none'})")
    lines = report(kernels, int(features.lengths[rows].sum()), len(rows), args.top)
    print(f"{title}, {args.iterations} profiled runs after 2 warm-up runs")
    print("\n".join(lines))
    header = [f"## Profile: {title}, measured {started}", "",
              f"- {machine}, torch {torch.__version__}, Python {platform.python_version()}",
              f"- Command: `{' '.join(['python -m benchmarks.batch_profile', *sys.argv[1:]])}`; {args.iterations} "
              "profiled runs of the batch after 2 warm-up runs, torch.profiler", ""]
    section = f"profile-{device.partition(':')[0]}-{precision}{''.join(f'-{k}{v}' for k, v in options.items())}"
    record(section, header + lines, args.build_dir, args.update_docs)


if __name__ == "__main__":
    run_main(main)
