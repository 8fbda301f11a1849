"""Triton kernels that make fp8 inputs where their producer already has the data in registers.

- The FFN's first product with bias, tanh-GELU and the second product's quantisation in its epilogue.
  Before, the product wrote [tokens, 4096] in fp16 and another kernel read it back to apply GELU and
  quantise: the largest activation of the layer crossed memory three times.
- Residual add + LayerNorm writing both the fp16 result (the next residual) and its fp8 copy (the next
  product's input). Inductor did not fuse the quantisation into its LayerNorm kernel: a separate pass
  read the result again.
Imported only where they run: CUDA compute capability 9.0+ (sut/fp8.py: fp8_kernels_supported); Triton
ships with CUDA builds of torch.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from sut.fp8_format import FP8, FP8_MAX

# Tile shape and pipelining: (block_m, block_n, block_k, group_m, warps, stages). Measured on an H100 for
# [90112, 1024] x [1024, 4096]: 0.75 ms, against 1.20 ms for torch._scaled_mm and inductor's GELU +
# quantise kernel (0.66 ms for the product alone); 0.96 ms with one program per tile instead of persistent.
TILE = (128, 256, 128, 8, 8, 3)
LIMIT = tl.constexpr(FP8_MAX)  # saturate rather than overflow to NaN
SQRT_8_OVER_PI = tl.constexpr(1.5957691216057308)  # tanh-GELU: x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))


@triton.jit
def _product_gelu_quantise(inputs, weight, output, bias, input_scale, weight_scale, output_scale, M, N, K,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                           GROUP_M: tl.constexpr, programs):
    # Persistent: each program walks tiles `programs` apart; the flattened loop lets one tile's epilogue
    # overlap the next tile's loads. Grouped order: GROUP_M row blocks share a weight block while it is in L2.
    row_blocks, column_blocks = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * column_blocks
    product_scale = tl.load(input_scale) * tl.load(weight_scale)
    output_inverse = 1.0 / tl.load(output_scale)
    for tile in tl.range(tl.program_id(0), row_blocks * column_blocks, programs, flatten=True):
        first_row_block = (tile // per_group) * GROUP_M
        group_rows = min(row_blocks - first_row_block, GROUP_M)
        row = (first_row_block + (tile % per_group) % group_rows) * BLOCK_M
        column = ((tile % per_group) // group_rows) * BLOCK_N

        accumulator = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, K, BLOCK_K):
            accumulator = tl.dot(inputs.load([row, k]), weight.load([column, k]).T, accumulator)

        columns = column + tl.arange(0, BLOCK_N)
        x = accumulator * product_scale
        x += tl.load(bias + columns, mask=columns < N, other=0.0).to(tl.float32)[None, :]
        gelu = x * tl.sigmoid(SQRT_8_OVER_PI * (x + 0.044715 * x * x * x))
        output.store([row, column], tl.clamp(gelu * output_inverse, -LIMIT, LIMIT).to(output.dtype))


@torch.compiler.disable  # a Triton launch with tensor descriptors; compiled code calls it as it is
def product_gelu_quantise(quantised: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          input_scale: torch.Tensor, weight_scale: torch.Tensor, output_scale: torch.Tensor
                          ) -> torch.Tensor:
    """fp8 [tokens, K] x fp8 [N, K]^T -> fp8 [tokens, N] = quantise(gelu(product * scales + bias), output_scale)."""
    block_m, block_n, block_k, group_m, warps, stages = TILE
    tokens, inner = quantised.shape
    width = weight.shape[0]
    output = torch.empty((tokens, width), dtype=quantised.dtype, device=quantised.device)
    tiles = triton.cdiv(tokens, block_m) * triton.cdiv(width, block_n)
    programs = min(tiles, _multiprocessors(quantised.device))
    _product_gelu_quantise[(programs,)](
        TensorDescriptor.from_tensor(quantised, [block_m, block_k]),
        TensorDescriptor.from_tensor(weight, [block_n, block_k]),
        TensorDescriptor.from_tensor(output, [block_m, block_n]),
        bias, input_scale, weight_scale, output_scale, tokens, width, inner, programs=programs,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=group_m,
        num_warps=warps, num_stages=stages)
    return output


@functools.cache
def _multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


@triton.jit
def _add_norm_quantise(output, residual, weight, bias, hidden, quantised, scale, eps, width,
                       BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * width  # one row (token) per program
    columns = tl.arange(0, BLOCK)
    inside = columns < width
    x = (tl.load(output + start + columns, mask=inside, other=0.0).to(tl.float32)
         + tl.load(residual + start + columns, mask=inside, other=0.0).to(tl.float32))
    centred = tl.where(inside, x - tl.sum(x, axis=0) / width, 0.0)
    normalised = centred * tl.rsqrt(tl.sum(centred * centred, axis=0) / width + eps)
    y = (normalised * tl.load(weight + columns, mask=inside, other=0.0).to(tl.float32)
         + tl.load(bias + columns, mask=inside, other=0.0).to(tl.float32))
    tl.store(hidden + start + columns, y.to(hidden.dtype.element_ty), mask=inside)
    fp8 = tl.clamp(y / tl.load(scale), -LIMIT, LIMIT).to(quantised.dtype.element_ty)
    tl.store(quantised + start + columns, fp8, mask=inside)


@torch.compiler.disable
def add_norm_quantise(output: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      eps: float, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """layer_norm(output + residual) -> (it in the inputs' dtype, it quantised to fp8 at `scale`)."""
    tokens, width = output.shape
    hidden = torch.empty_like(output)
    quantised = torch.empty((tokens, width), dtype=FP8, device=output.device)
    _add_norm_quantise[(tokens,)](output, residual, weight, bias, hidden, quantised, scale, eps, width,
                                  BLOCK=triton.next_power_of_2(width), num_warps=4)
    return hidden, quantised
