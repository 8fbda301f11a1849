"""`python -m benchmarks.fp8_tiles`: the fused FFN-input kernel (sut/fp8_kernels.py) at other tile shapes.

On the FFN-input product of the profiled batch ([tokens, 1024] x [1024, 4096]), times the shipped
TILE and each candidate, against torch._scaled_mm doing the product alone (no GELU, no quantisation):
CUDA events, median of --repeats runs after a warm-up. In the profile the kernel ran at about 940
TFLOP/s and cuBLASLt's products of the same inner size at 1,140 (docs/benchmarks.md); a tile that
closes that gap goes into TILE, with its measured time. Needs a Hopper GPU (compute capability 9.0+).
"""

from __future__ import annotations

import argparse
import statistics

from harness.cli_common import run_main
from harness.errors import HarnessError

# (block_m, block_n, block_k, group_m, warps, stages): each fits Hopper's 228 KB of shared memory.
CANDIDATES = [(128, 256, 64, 8, 8, 3), (128, 256, 64, 8, 8, 4), (128, 256, 128, 8, 8, 2),
              (128, 128, 128, 8, 4, 4), (128, 128, 128, 8, 8, 4), (256, 128, 128, 8, 8, 3),
              (128, 256, 128, 16, 8, 3), (128, 256, 128, 4, 8, 3)]


def median_ms(run, repeats: int) -> float:
    import torch

    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(prog="python -m benchmarks.fp8_tiles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=90_112, help="rows of the product (default 90,112)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per tile; the median is reported")
    args = parser.parse_args()
    if not (torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0)):
        raise HarnessError("the fp8 kernels run on a CUDA GPU of compute capability 9.0+ (Hopper); none is here")
    from sut import fp8_kernels
    from sut.fp8 import FP8

    torch.manual_seed(0)
    inputs = torch.randn(args.tokens, 1024, device="cuda").div(4).to(FP8)
    weight = torch.randn(4096, 1024, device="cuda").div(4).to(FP8)
    bias = torch.randn(4096, device="cuda", dtype=torch.float16)
    scale = torch.tensor(1.0, device="cuda")
    flop = 2 * args.tokens * 1024 * 4096

    def row(label: str, milliseconds: float) -> str:
        return f"| {label} | {milliseconds:.3f} | {flop / milliseconds / 1e9:,.0f} |"

    lines = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}, [{args.tokens}, 1024] x [1024, 4096], "
             f"median of {args.repeats}", "", "| kernel | ms | TFLOP/s |", "|---|---:|---:|"]
    baseline = median_ms(lambda: torch._scaled_mm(inputs, weight.t(), scale_a=scale, scale_b=scale, bias=bias,
                                                  out_dtype=torch.float16, use_fast_accum=True), args.repeats)
    lines.append(row("torch._scaled_mm, product only", baseline))
    shipped = fp8_kernels.TILE
    for tile in [shipped, *(tile for tile in CANDIDATES if tile != shipped)]:
        fp8_kernels.TILE = tile
        label = f"fused kernel, tile {tile}{' (shipped)' if tile == shipped else ''}"
        try:
            lines.append(row(label, median_ms(lambda: fp8_kernels.product_gelu_quantise(
                inputs, weight, bias, scale, scale, scale), args.repeats)))
        except Exception as error:  # noqa: BLE001 - a tile that does not fit is a row, not the end of the sweep
            lines.append(f"| {label} | failed: {type(error).__name__} | |")
        print(lines[-1], flush=True)
    fp8_kernels.TILE = shipped
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
