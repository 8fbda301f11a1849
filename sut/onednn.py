"""Matrix products on CPU through oneDNN (fp32 or bf16), weights reordered once, GELU fused into ffn_in.

torch's nn.Linear on CPU calls MKL's sgemm. On the 2-core AMD EPYC development machine that ran the
encoder's products at 173-183 GFLOP/s, where oneDNN with reordered weights ran them at 394-421, and
with GELU in the same call instead of a pass of its own (docs/benchmarks.md). They are the operators
inductor's CPU weight-prepacking pass emits for fp32 linears whose row count varies; the results agree
with nn.Linear's to about 1e-5. In bf16, oneDNN's reordered products ran at 779 GFLOP/s there, against
458 for nn.Linear (which calls oneDNN too, without the reorder).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

LAYOUT_HINT_TOKENS = 2048  # picks oneDNN's blocked weight layout; any row count runs with it


@functools.cache
def onednn_available() -> bool:
    """Whether this torch has the operators and they give nn.Linear's result (tried once, on a small product)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.random.fork_rng(devices=[]), torch.inference_mode():  # leaves the caller's random state alone
            linear = nn.Linear(32, 48)
            hidden = torch.randn(5, 32)
            return torch.allclose(OneDnnLinear(linear)(hidden), linear(hidden), atol=1e-5)
    except (AttributeError, RuntimeError):  # an operator missing, or refused on this CPU
        return False


class OneDnnLinear(nn.Module):
    """A frozen nn.Linear in oneDNN's layout; with a `gelu` form ("none": exact, erf; "tanh"), GELU of the product."""

    def __init__(self, linear: nn.Linear, gelu: str | None = None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), LAYOUT_HINT_TOKENS)
        self.bias = linear.bias.detach()
        self.applies_gelu = gelu is not None  # PackedLayer then skips its own GELU
        self.attribute, self.algorithm = ("none", "") if gelu is None else ("gelu", gelu)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(hidden, self.weight, self.bias, self.attribute, [],
                                                  self.algorithm)


def use_onednn_linears(layers: nn.ModuleList) -> None:
    """Swap each layer's products; ffn_in takes the GELU form the layer uses (tanh below fp32)."""
    for layer in layers:
        for name in ("qkv", "attention_out", "ffn_out"):
            setattr(layer, name, OneDnnLinear(getattr(layer, name)))
        layer.ffn_in = OneDnnLinear(layer.ffn_in, gelu="tanh" if layer.approximate_gelu else "none")
