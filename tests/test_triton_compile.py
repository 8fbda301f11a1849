"""Our Triton kernels compile for an H100 (sm_90), down to a cubin, on a machine without a GPU.

Triton ships its own ptxas, so a CPU machine with Triton installed (`pip install triton==3.6.0`; CUDA
builds of torch bring it) checks what the GPU-only tests cannot: every kernel, in every precision and
every tile that benchmarks/tiles.py sweeps, compiles and fits the H100's shared memory. Nothing runs.
"""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks.tiles import ATTENTION_TILES, FFN_TILES

H100_SHARED_BYTES = 232_448  # per block, opted in: 227 KB


def triton_with_descriptors() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    return importlib.util.find_spec("triton.tools.tensor_descriptor") is not None  # Triton 3.4+


pytestmark = pytest.mark.skipif(not triton_with_descriptors(),
                                reason="needs Triton 3.4+ (pip install triton==3.6.0) to compile the kernels")


def compile_for_hopper(kernel, signature: dict[str, str], constants: dict[str, object], **options):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(signature)
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(names.index(name),): value for name, value in constants.items()})
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert compiled.asm["cubin"], "ptxas produced no cubin"
    assert compiled.metadata.shared <= H100_SHARED_BYTES, f"{compiled.metadata.shared} bytes of shared memory"
    return compiled


@pytest.mark.parametrize("tile", ATTENTION_TILES)
@pytest.mark.parametrize("dtype, output", [("fp16", "fp16"), ("bf16", "bf16"), ("fp16", "fp8e4nv")])
def test_attention_kernel_compiles(dtype, output, tile):
    from sut.triton_attention import _varlen_attention

    block_m, block_n, warps, stages = tile
    quantise = output == "fp8e4nv"
    signature = {"qkv": f"*{dtype}", "output": f"*{output}", "cu_seqlens": "*i32",
                 "output_scale": "*fp32" if quantise else f"*{dtype}", "qkv_stride": "i32", "output_stride": "i32",
                 "softmax_scale": "fp32", "WIDTH": "constexpr", "HEAD_DIM": "constexpr", "QUANTISE": "constexpr",
                 "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}
    compile_for_hopper(_varlen_attention, signature, {"WIDTH": 1024, "HEAD_DIM": 64, "QUANTISE": quantise,
                                                      "BLOCK_M": block_m, "BLOCK_N": block_n},
                       num_warps=warps, num_stages=stages)


@pytest.mark.parametrize("tile", FFN_TILES)
def test_ffn_input_kernel_compiles(tile):
    from sut.fp8_kernels import _product_gelu_quantise

    block_m, block_n, block_k, group_m, warps, stages = tile
    signature = {"inputs": f"tensordesc<fp8e4nv[{block_m}, {block_k}]>",
                 "weight": f"tensordesc<fp8e4nv[{block_n}, {block_k}]>",
                 "output": f"tensordesc<fp8e4nv[{block_m}, {block_n}]>", "bias": "*fp16", "input_scale": "*fp32",
                 "weight_scale": "*fp32", "output_scale": "*fp32", "M": "i32", "N": "i32", "K": "i32",
                 "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr", "GROUP_M": "constexpr",
                 "programs": "i32"}
    compile_for_hopper(_product_gelu_quantise, signature, {"BLOCK_M": block_m, "BLOCK_N": block_n,
                                                           "BLOCK_K": block_k, "GROUP_M": group_m},
                       num_warps=warps, num_stages=stages)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_add_norm_kernel_compiles(dtype):
    from sut.fp8_kernels import _add_norm_quantise

    signature = {"output": f"*{dtype}", "residual": f"*{dtype}", "weight": f"*{dtype}", "bias": f"*{dtype}",
                 "hidden": f"*{dtype}", "quantised": "*fp8e4nv", "scale": "*fp32", "eps": "fp32", "width": "i32",
                 "BLOCK": "constexpr"}
    compile_for_hopper(_add_norm_quantise, signature, {"BLOCK": 1024}, num_warps=4)


def test_shipped_tiles_are_among_those_swept():
    from sut import fp8_kernels, triton_attention

    assert triton_attention.TILE in ATTENTION_TILES and fp8_kernels.TILE in FFN_TILES
