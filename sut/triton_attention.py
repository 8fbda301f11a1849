"""Varlen attention in Triton that reads the fused QKV product in place and, in fp8, writes fp8.

Flash attention (torch's varlen_attn) takes query, key and value as separate tensors and returns the
context in fp16; in fp8 a separate pass then quantises that context for the attention-output product
(5.0% of an fp8 batch in the measured profile, docs/benchmarks.md). This kernel does the same maths,
one program per (query block, head, sequence), with the quantisation in its epilogue.
Opt-in (BACKEND_OPTIONS triton_attention=1) until timed against flash attention on a GPU.
Imported only where it runs: CUDA with Triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sut.fp8_format import FP8, FP8_MAX

# (query rows, key rows per step, warps, stages). Tiles cover whole blocks, so a 176-token sequence (the dev
# set's mean) costs more: over the dev set's lengths, 64 x 64 tiles compute 1.34 times the attention work
# that is needed, 128 x 64 1.54 times, 128 x 128 1.81. benchmarks/tiles.py times the choices.
TILE = (64, 64, 4, 2)
LIMIT = tl.constexpr(FP8_MAX)  # saturate rather than overflow to NaN
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _varlen_attention(qkv, output, cu_seqlens, output_scale, qkv_stride, output_stride, softmax_scale,
                      WIDTH: tl.constexpr, HEAD_DIM: tl.constexpr, QUANTISE: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    query_block, head, sequence = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    start = tl.load(cu_seqlens + sequence)
    length = tl.load(cu_seqlens + sequence + 1) - start
    if query_block * BLOCK_M >= length:  # short sequences and zero-length padding leave most programs idle
        return
    rows = query_block * BLOCK_M + tl.arange(0, BLOCK_M)
    columns = tl.arange(0, HEAD_DIM)
    tokens = (start + rows).to(tl.int64)
    query = tl.load(qkv + tokens[:, None] * qkv_stride + head * HEAD_DIM + columns[None, :],
                    mask=(rows < length)[:, None], other=0.0)
    scale = softmax_scale * LOG2E  # exp2 instead of exp
    row_max = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    row_sum = tl.zeros((BLOCK_M,), tl.float32)
    accumulator = tl.zeros((BLOCK_M, HEAD_DIM), tl.float32)
    for key_start in range(0, length, BLOCK_N):
        keys = key_start + tl.arange(0, BLOCK_N)
        key_tokens = (start + keys).to(tl.int64)
        inside = (keys < length)[:, None]
        key = tl.load(qkv + key_tokens[:, None] * qkv_stride + WIDTH + head * HEAD_DIM + columns[None, :],
                      mask=inside, other=0.0)
        value = tl.load(qkv + key_tokens[:, None] * qkv_stride + 2 * WIDTH + head * HEAD_DIM + columns[None, :],
                        mask=inside, other=0.0)
        scores = tl.dot(query, tl.trans(key)) * scale
        scores = tl.where((keys < length)[None, :], scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 1))
        weights = tl.math.exp2(scores - new_max[:, None])
        correction = tl.math.exp2(row_max - new_max)
        row_sum = row_sum * correction + tl.sum(weights, 1)
        accumulator = accumulator * correction[:, None] + tl.dot(weights.to(value.dtype), value)
        row_max = new_max
    context = accumulator / row_sum[:, None]
    if QUANTISE:
        context = tl.clamp(context / tl.load(output_scale), -LIMIT, LIMIT)
    tl.store(output + tokens[:, None] * output_stride + head * HEAD_DIM + columns[None, :],
             context.to(output.dtype.element_ty), mask=(rows < length)[:, None])


@torch.compiler.disable  # a Triton launch; compiled layers call it as it is
def varlen_attention_from_qkv(qkv: torch.Tensor, cu_seqlens: torch.Tensor, heads: int, max_length: int,
                              output_scale: torch.Tensor | None = None) -> torch.Tensor:
    """[tokens, 3 * width] fused Q/K/V product -> [tokens, width] context: in qkv's dtype, or fp8 at `output_scale`."""
    tokens, width = qkv.shape[0], qkv.shape[1] // 3
    head_dim = width // heads
    output = torch.empty((tokens, width), dtype=FP8 if output_scale is not None else qkv.dtype, device=qkv.device)
    block_m, block_n, warps, stages = TILE
    grid = (triton.cdiv(max_length, block_m), heads, cu_seqlens.numel() - 1)
    _varlen_attention[grid](qkv, output, cu_seqlens, output_scale if output_scale is not None else qkv,
                            qkv.stride(0), output.stride(0), head_dim ** -0.5, WIDTH=width, HEAD_DIM=head_dim,
                            QUANTISE=output_scale is not None, BLOCK_M=block_m, BLOCK_N=block_n,
                            num_warps=warps, num_stages=stages)
    return output
