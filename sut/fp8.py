"""FP8 (e4m3) matrix products with static per-tensor scales calibrated on real features.

Static scales keep the hot loop free of amax reductions, which cost more than fp8 saves. Each
encoder linear keeps its weight in fp8 with one scale and quantises its input with a scale fixed
at calibration. Where the producer of that input can write fp8 itself (the FFN's first product,
the LayerNorms), it does, with the consumer's scale, and the separate quantisation pass disappears.
CUDA runs `torch._scaled_mm` (compute capability 8.9+) and, from 9.0, the Triton kernels of
sut/fp8_kernels.py; elsewhere the same rounding is emulated in the model's dtype, which is how the
CPU tests measure the accuracy cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from sut.fp8_format import FP8, FP8_MAX
from sut.packed_bert import AddNorm

QUANTISED_LINEARS = ("qkv", "attention_out", "ffn_in", "ffn_out")
# Input scales cover 4x the largest calibration input, so inputs larger than any seen in calibration
# do not clip; e4m3's normal range spans 15 binades, so two spent on headroom cost little. Small real
# model, first 2000 dev questions, emulated: fp32 F1 80.56; fp8 with no headroom 79.56, 2x 80.04,
# 4x 80.19, 8x 80.00, 16x 80.05.
INPUT_HEADROOM = 4.0


def fp8_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def fp8_kernels_supported(device: torch.device) -> bool:
    """The Triton kernels' tiles need Hopper's shared memory (228 KB; Ada has 100 KB): measured on an H100.

    On Ada the products still run in fp8, with GELU, LayerNorm and quantisation in separate kernels.
    """
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (9, 0)


class Fp8Linear(nn.Module):
    def __init__(self, linear: nn.Linear, input_amax: float, native: bool):
        super().__init__()
        weight = linear.weight.detach().float()
        weight_scale = weight.abs().max().clamp(min=1e-12) / FP8_MAX
        self.native = native
        self.register_buffer("weight", (weight / weight_scale).to(FP8))
        self.register_buffer("weight_scale", weight_scale.reshape(()))
        self.register_buffer("input_scale", torch.tensor(max(input_amax, 1e-12) * INPUT_HEADROOM / FP8_MAX,
                                                         dtype=torch.float32, device=weight.device))
        self.register_buffer("bias", linear.bias.detach().clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        quantised = quantise(inputs, self.input_scale)
        dtype = self.bias.dtype
        if self.native:  # shapes must be multiples of 16: the packer pads the token count
            return torch._scaled_mm(quantised, self.weight.t(), scale_a=self.input_scale,
                                    scale_b=self.weight_scale, bias=self.bias, out_dtype=dtype,
                                    use_fast_accum=True)  # measured: F1 unchanged, products faster
        return nn.functional.linear(quantised.to(dtype) * self.input_scale.to(dtype),
                                    self.weight.to(dtype) * self.weight_scale.to(dtype), self.bias)


class Fp8GeluLinear(Fp8Linear):
    """The FFN's first product, returning tanh-GELU of it already quantised for the FFN's second product.

    `fused`: one Triton kernel does it all (sut/fp8_kernels.py). Otherwise torch ops do, GELU in fp32
    as the kernel's epilogue computes it.
    """

    applies_gelu = True

    def __init__(self, linear: nn.Linear, input_amax: float, native: bool, output_scale: torch.Tensor, fused: bool):
        super().__init__(linear, input_amax, native)
        self.fused = fused
        self.register_buffer("output_scale", output_scale)  # the next linear's input scale, shared

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.fused:
            from sut.fp8_kernels import product_gelu_quantise  # Triton: imported only where fused

            return product_gelu_quantise(quantise(inputs, self.input_scale), self.weight, self.bias,
                                         self.input_scale, self.weight_scale, self.output_scale)
        return quantise(nn.functional.gelu(super().forward(inputs).float(), approximate="tanh"), self.output_scale)


class Fp8AddNorm(nn.Module):
    """AddNorm whose second result is quantised for the product it feeds (`fused`: in one Triton kernel)."""

    def __init__(self, norm: AddNorm, output_scale: torch.Tensor, fused: bool):
        super().__init__()
        self.norm = norm
        self.fused = fused
        self.register_buffer("output_scale", output_scale)  # the next linear's input scale, shared

    def forward(self, output: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:
            from sut.fp8_kernels import add_norm_quantise  # Triton: imported only where fused

            return add_norm_quantise(output, residual, self.norm.weight, self.norm.bias, self.norm.eps,
                                     self.output_scale)
        hidden, _ = self.norm(output, residual)
        return hidden, quantise(hidden, self.output_scale)


def quantise(inputs: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """To fp8 at a fixed scale, saturating; a tensor already in fp8 was quantised at this scale by its producer."""
    if inputs.dtype == FP8:
        return inputs
    return (inputs / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)


@torch.inference_mode()
def calibrate_input_amax(layers: nn.ModuleList, run_batches: Callable[[], Iterable]) -> dict[str, float]:
    """Largest |input| each quantisable linear sees while `run_batches` runs the model."""
    amax: dict[str, float] = {}
    hooks = []
    for index, layer in enumerate(layers):
        for name in QUANTISED_LINEARS:
            key = f"{index}.{name}"

            def record(_module, args, key=key):
                amax[key] = max(amax.get(key, 0.0), float(args[0].abs().max()))

            hooks.append(getattr(layer, name).register_forward_pre_hook(record))
    try:
        for _ in run_batches():
            pass
    finally:
        for hook in hooks:
            hook.remove()
    return amax


def quantise_layers(layers: nn.ModuleList, amax: dict[str, float], native: bool, fused: bool) -> None:
    """Swap each encoder linear for its fp8 form, and each LayerNorm feeding one for a quantising one.

    Call after the model is on its device and dtype. The last layer's output feeds the fp16 QA head.
    """
    for index, layer in enumerate(layers):
        for name in ("qkv", "attention_out", "ffn_out"):
            setattr(layer, name, Fp8Linear(getattr(layer, name), amax[f"{index}.{name}"], native))
        layer.ffn_in = Fp8GeluLinear(layer.ffn_in, amax[f"{index}.ffn_in"], native, layer.ffn_out.input_scale,
                                     fused)
        layer.attention_norm = Fp8AddNorm(layer.attention_norm, layer.ffn_in.input_scale, fused)
    for layer, following in zip(layers[:-1], layers[1:], strict=True):
        layer.ffn_norm = Fp8AddNorm(layer.ffn_norm, following.qkv.input_scale, fused)
