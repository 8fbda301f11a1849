"""fp32 matrix products on CPU through oneDNN, weights reordered once, exact GELU fused into ffn_in.

torch's nn.Linear on CPU calls MKL's sgemm. On the 2-core AMD EPYC development machine that ran the
encoder's products at 173-183 GFLOP/s, where oneDNN with reordered weights ran them at 394-421, and
with GELU in the same call instead of a pass of its own (docs/benchmarks.md). They are the operators
inductor's CPU weight-prepacking pass emits for fp32 linears whose row count varies; the results agree
with nn.Linear's to about 1e-5.
"""

from __future__ import annotations

import torch
from torch import nn

LAYOUT_HINT_TOKENS = 2048  # picks oneDNN's blocked weight layout; any row count runs with it


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and all(
        hasattr(torch.ops.mkldnn, name) for name in ("_linear_pointwise", "_reorder_linear_weight"))


class OneDnnLinear(nn.Module):
    """A frozen nn.Linear in oneDNN's layout; with `gelu`, it returns GELU (exact, erf) of the product."""

    def __init__(self, linear: nn.Linear, gelu: bool = False):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), LAYOUT_HINT_TOKENS)
        self.bias = linear.bias.detach()
        self.applies_gelu = gelu  # PackedLayer then skips its own GELU
        self.attribute, self.algorithm = ("gelu", "none") if gelu else ("none", "")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(hidden, self.weight, self.bias, self.attribute, [],
                                                  self.algorithm)


def use_onednn_linears(layers: nn.ModuleList) -> None:
    for layer in layers:
        for name in ("qkv", "attention_out", "ffn_out"):
            setattr(layer, name, OneDnnLinear(getattr(layer, name)))
        layer.ffn_in = OneDnnLinear(layer.ffn_in, gelu=True)
