"""Our BERT encoder for question answering, run on packed tokens: no padding is ever computed.

A batch is one flat row of real tokens plus `cu_seqlens` (where each sequence starts), so the
matrix products see only real tokens and attention runs per sequence. It loads the weights of a
Hugging Face Bert- or DistilBertForQuestionAnswering and gives the same logits (tests/test_packed.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qsl.features import MAX_SEQ_LENGTH
from sut.models import as_bert


def varlen_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor,
                     max_length: int) -> torch.Tensor:
    """[tokens, heads, head_dim] each -> same shape; each token attends only within its own sequence.

    CUDA in fp16/bf16 uses the flash-attention varlen kernel; anything else (CPU, fp32) loops over
    sequences with scaled_dot_product_attention, which is the same maths and fine for tests.
    """
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(query, key, value, cu_seqlens, cu_seqlens, max_length, max_length)
    output = torch.empty_like(query)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end > start:
            window = [tensor[start:end].transpose(0, 1).unsqueeze(0) for tensor in (query, key, value)]
            output[start:end] = F.scaled_dot_product_attention(*window)[0].transpose(0, 1)
    return output


@torch.compiler.disable  # keep inductor from splitting it back into a product and a separate GELU kernel
def linear_tanh_gelu(hidden: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Bias and tanh-GELU in the matrix product's epilogue (cuBLASLt on CUDA): one pass less over [tokens, 4096].

    Only on CUDA: on CPU torch's _addmm_activation applies the exact (erf) GELU, so there the tanh form
    is computed after the product, and every device runs the same function.
    """
    if hidden.is_cuda:
        return torch._addmm_activation(linear.bias, hidden, linear.weight.t(), use_gelu=True)
    return F.gelu(linear(hidden), approximate="tanh")


class AddNorm(nn.LayerNorm):
    """LayerNorm of a sublayer's output plus its residual.

    Returns the result twice: as the next residual and as the next product's input. fp8 swaps in a
    fused kernel whose second result is already quantised (sut/fp8.py).
    """

    def forward(self, output: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = super().forward(output + residual)
        return hidden, hidden


class PackedLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.heads = heads
        self.approximate_gelu = False  # tanh GELU: within 5e-4 of exact, and fusable
        self.fused_attention = None  # (qkv, cu_seqlens, max_length) -> context: the Triton kernel, when chosen
        self.qkv = nn.Linear(hidden, 3 * hidden)  # one product instead of three
        self.attention_out = nn.Linear(hidden, hidden)
        self.attention_norm = AddNorm(hidden, eps=eps)
        self.ffn_in = nn.Linear(hidden, intermediate)
        self.ffn_out = nn.Linear(intermediate, hidden)
        self.ffn_norm = AddNorm(hidden, eps=eps)

    def forward(self, hidden: torch.Tensor, product_input: torch.Tensor, cu_seqlens: torch.Tensor,
                max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Takes and returns (hidden, product_input): the latter is hidden itself, or in fp8 its quantised copy."""
        tokens, width = hidden.shape
        qkv = self.qkv(product_input)
        if self.fused_attention is not None:
            context = self.fused_attention(qkv, cu_seqlens, max_length=max_length)
        else:
            query, key, value = qkv.view(tokens, 3, self.heads, width // self.heads).unbind(1)
            context = varlen_attention(query, key, value, cu_seqlens, max_length).reshape(tokens, width)
        hidden, product_input = self.attention_norm(self.attention_out(context), hidden)
        return self.ffn_norm(self.ffn_out(self._gelu_ffn_in(product_input)), hidden)

    def _gelu_ffn_in(self, hidden: torch.Tensor) -> torch.Tensor:
        if getattr(self.ffn_in, "applies_gelu", False):  # fp8: GELU and the next quantisation are in the product
            return self.ffn_in(hidden)
        if self.approximate_gelu:
            return linear_tanh_gelu(hidden, self.ffn_in)
        return F.gelu(self.ffn_in(hidden))


class PackedBert(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden, eps = config.hidden_size, config.layer_norm_eps
        if config.hidden_act != "gelu":
            raise ValueError(f"packed BERT implements exact GELU only, the model uses {config.hidden_act}")
        self.word_embeddings = nn.Embedding(config.vocab_size, hidden)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        # DistilBERT has none: its segment ids are laid out with the others and never read.
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden) if config.type_vocab_size else None
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            PackedLayer(hidden, config.num_attention_heads, config.intermediate_size, eps)
            for _ in range(config.num_hidden_layers))
        self.qa_outputs = nn.Linear(hidden, 2)
        self.max_length = MAX_SEQ_LENGTH  # longest sequence it is given (samples and padding's dummies alike)

    @classmethod
    def from_huggingface(cls, model) -> PackedBert:
        """The same weights as a transformers Bert- or DistilBertForQuestionAnswering, Q/K/V concatenated."""
        config, weights = as_bert(model)
        packed = cls(config)

        def load(module: nn.Module, prefix: str) -> None:
            module.load_state_dict({name: weights[prefix + name] for name in module.state_dict()})

        with torch.no_grad():
            load(packed.word_embeddings, "bert.embeddings.word_embeddings.")
            load(packed.position_embeddings, "bert.embeddings.position_embeddings.")
            if packed.token_type_embeddings is not None:
                load(packed.token_type_embeddings, "bert.embeddings.token_type_embeddings.")
            load(packed.embedding_norm, "bert.embeddings.LayerNorm.")
            for index, layer in enumerate(packed.layers):
                theirs = f"bert.encoder.layer.{index}."
                for part in ("weight", "bias"):
                    layer.qkv.get_parameter(part).copy_(torch.cat(
                        [weights[f"{theirs}attention.self.{name}.{part}"] for name in ("query", "key", "value")]))
                load(layer.attention_out, theirs + "attention.output.dense.")
                load(layer.attention_norm, theirs + "attention.output.LayerNorm.")
                load(layer.ffn_in, theirs + "intermediate.dense.")
                load(layer.ffn_out, theirs + "output.dense.")
                load(layer.ffn_norm, theirs + "output.LayerNorm.")
            load(packed.qa_outputs, "qa_outputs.")
        return packed.eval()

    def use_tanh_gelu(self, enabled: bool = True) -> PackedBert:
        for layer in self.layers:
            layer.approximate_gelu = enabled
        return self

    def forward_flat(self, flat: torch.Tensor, tokens: int) -> torch.Tensor:
        """One flat int32 row as the packer lays it out: token ids, segment ids, positions (`tokens` each),
        then cu_seqlens. The constant max length keeps compiled layers from recompiling."""
        return self(flat[:tokens], flat[tokens:2 * tokens], flat[2 * tokens:3 * tokens], flat[3 * tokens:],
                    self.max_length)

    def forward(self, token_ids: torch.Tensor, segment_ids: torch.Tensor, position_ids: torch.Tensor,
                cu_seqlens: torch.Tensor, max_length: int) -> torch.Tensor:
        """Flat [tokens] ids -> [tokens, 2] (start, end) logits."""
        hidden = self.word_embeddings(token_ids) + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            hidden = hidden + self.token_type_embeddings(segment_ids)
        hidden = product_input = self.embedding_norm(hidden)
        for layer in self.layers:
            hidden, product_input = layer(hidden, product_input, cu_seqlens, max_length)
        return self.qa_outputs(hidden)
