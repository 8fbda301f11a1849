"""`python -m benchmarks.tiles`: our Triton kernels at other tile shapes, against what they replace.

    python -m benchmarks.tiles [--kernel attention|ffn|both] [--repeats 20]

- attention (sut/triton_attention.py, any CUDA GPU): on the sequence lengths of the largest Offline
  batch of the detected system file, random fused QKV in fp16, against flash attention (torch's
  varlen_attn, what the packed path runs by default); also with its fp8 output.
- ffn (sut/fp8_kernels.py, compute capability 9.0+): the FFN-input product + GELU + quantisation on
  that batch's shape, [tokens, 1024] x [1024, 4096], against torch._scaled_mm doing the product alone.
  In the profile it ran at about 940 TFLOP/s, cuBLASLt's products of the same inner size at 1,140.
CUDA events, median of --repeats runs after a warm-up. A faster tile goes into the module's TILE with
its measured time; a faster attention than flash makes triton_attention=1 the default.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.timing import timer
from common.cli import ArgumentParser, run_main
from common.errors import HarnessError

ATTENTION_TILES = [(64, 64, 4, 2), (64, 64, 4, 3), (64, 32, 4, 2), (32, 64, 2, 2), (128, 64, 4, 2), (128, 64, 8, 2),
                   (64, 128, 4, 2), (128, 128, 8, 2)]  # (block_m, block_n, warps, stages)
FFN_TILES = [(128, 256, 128, 8, 8, 3), (128, 256, 64, 8, 8, 3), (128, 256, 64, 8, 8, 4), (128, 256, 128, 8, 8, 2),
             (128, 128, 128, 8, 4, 4), (128, 128, 128, 8, 8, 4), (256, 128, 128, 8, 8, 3),
             (128, 256, 128, 16, 8, 3), (128, 256, 128, 4, 8, 3)]  # (block_m, block_n, block_k, group_m, warps, stages)


def median_ms(run, repeats: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        stop = timer("cuda")
        run()
        times.append(stop() * 1e3)
    return statistics.median(times)


def sweep(module, tiles: list[tuple], run, repeats: int, row) -> list[str]:
    """Each tile in turn as `module.TILE` (the shipped one first), timed; the shipped tile is put back."""
    shipped = module.TILE
    lines = []
    for tile in [shipped, *(tile for tile in tiles if tile != shipped)]:
        module.TILE = tile
        label = f"tile {tile}{' (shipped)' if tile == shipped else ''}"
        try:
            lines.append(row(label, median_ms(run, repeats)))
        except Exception as error:  # noqa: BLE001 - a tile that does not fit is a row, not the end of the sweep
            lines.append(f"| {label} | failed: {type(error).__name__} | |")
        print(lines[-1], flush=True)
    module.TILE = shipped
    return lines


def attention_rows(lengths, repeats: int) -> list[str]:
    import numpy as np
    import torch

    from sut import triton_attention
    from sut.packed_bert import varlen_attention

    heads, width = 16, 1024
    cu_seqlens = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device="cuda")
    qkv = torch.randn(int(lengths.sum()), 3 * width, device="cuda", dtype=torch.float16)
    flop = 4 * float((lengths.astype(np.float64) ** 2).sum()) * width  # QK^T and PV over the real tokens only

    def row(label: str, milliseconds: float) -> str:
        return f"| attention, {label} | {milliseconds:.3f} | {flop / milliseconds / 1e9:,.0f} |"

    def flash() -> None:
        query, key, value = qkv.view(-1, 3, heads, width // heads).unbind(1)
        varlen_attention(query, key, value, cu_seqlens, 384)

    lines = [row("flash (varlen_attn), fp16 out", median_ms(flash, repeats))]
    print(lines[-1], flush=True)
    lines += sweep(triton_attention, ATTENTION_TILES,
                   lambda: triton_attention.varlen_attention_from_qkv(qkv, cu_seqlens, heads, 384), repeats, row)
    scale = torch.tensor(0.01, device="cuda")
    lines.append(row("Triton, shipped tile, fp8 out", median_ms(
        lambda: triton_attention.varlen_attention_from_qkv(qkv, cu_seqlens, heads, 384, scale), repeats)))
    return lines


def ffn_rows(tokens: int, repeats: int) -> list[str]:
    import torch

    if torch.cuda.get_device_capability() < (9, 0):
        return ["| FFN input: needs compute capability 9.0+ | | |"]
    from sut import fp8_kernels
    from sut.fp8_format import FP8

    inputs = torch.randn(tokens, 1024, device="cuda").div(4).to(FP8)
    weight = torch.randn(4096, 1024, device="cuda").div(4).to(FP8)
    bias = torch.randn(4096, device="cuda", dtype=torch.float16)
    scale = torch.tensor(1.0, device="cuda")
    flop = 2 * tokens * 1024 * 4096

    def row(label: str, milliseconds: float) -> str:
        return f"| FFN input, {label} | {milliseconds:.3f} | {flop / milliseconds / 1e9:,.0f} |"

    lines = [row("torch._scaled_mm, product only", median_ms(lambda: torch._scaled_mm(
        inputs, weight.t(), scale_a=scale, scale_b=scale, bias=bias, out_dtype=torch.float16,
        use_fast_accum=True), repeats))]
    print(lines[-1], flush=True)
    return lines + sweep(fp8_kernels, FFN_TILES, lambda: fp8_kernels.product_gelu_quantise(
        inputs, weight, bias, scale, scale, scale), repeats, row)


def main() -> None:
    import torch

    from benchmarks.batch_profile import largest_batch
    from harness.settings import chosen_system
    from qsl.cache import load_features

    parser = ArgumentParser(prog="python -m benchmarks.tiles", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", choices=("attention", "ffn", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per row; the median is reported")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise HarnessError("the Triton kernels run on a CUDA GPU; none is visible here")
    system = chosen_system(None)
    features = load_features(args.build_dir / "data" / "squad_features.npz")
    lengths = features.lengths[largest_batch(features, system.batch_size, system.max_tokens)]
    torch.manual_seed(0)
    lines = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}; the largest Offline batch of system "
             f"{system.name}: {len(lengths)} sequences, {int(lengths.sum()):,} tokens", "",
             "| kernel | ms | TFLOP/s |", "|---|---:|---:|"]
    if args.kernel in ("attention", "both"):
        lines += attention_rows(lengths, args.repeats)
    if args.kernel in ("ffn", "both"):
        lines += ffn_rows(int(lengths.sum()), args.repeats)
    print("\n".join(lines))


if __name__ == "__main__":
    run_main(main)
