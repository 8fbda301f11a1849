"""The packed encoder (our `pytorch` backend) against the Hugging Face model it loads its weights from."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from common.errors import HarnessError
from qsl.features import MAX_SEQ_LENGTH
from sut import pytorch_backend
from sut.batching import batch_inputs
from sut.cuda_graphs import graph_families, graph_shape
from sut.fp8 import Fp8AddNorm, Fp8GeluLinear, fp8_kernels_supported, fp8_supported, quantise
from sut.fp8_format import FP8
from sut.huggingface_backend import HuggingFaceBackend
from sut.models import load_model
from sut.onednn import OneDnnLinear, onednn_available
from sut.packed_bert import AddNorm
from sut.pytorch_backend import TOKEN_MULTIPLE, PackedBackend, pack
from tests.conftest import F1_QUESTIONS, MIXED_ROWS, mixed_batch, subset_f1

QUESTIONS = F1_QUESTIONS


def test_pack_keeps_only_real_tokens_and_pads_with_a_dummy_sequence(features):
    input_ids, input_mask, segment_ids = mixed_batch(features)
    lengths = features.lengths[MIXED_ROWS]
    assert len(set(lengths.tolist())) > 5, "the batch must mix lengths"
    batch = pack(input_ids, input_mask, segment_ids)
    real = int(lengths.sum())
    assert batch.real_tokens == real and batch.tokens % TOKEN_MULTIPLE == 0 and batch.tokens - real < TOKEN_MULTIPLE
    tokens = batch.tokens
    cu_seqlens = batch.flat[3 * tokens:]
    assert cu_seqlens[:len(lengths) + 1].tolist() == [0, *np.cumsum(lengths).tolist()]
    assert cu_seqlens[-1] == tokens
    second = slice(int(lengths[0]), int(lengths[:2].sum()))
    assert batch.flat[second].tolist() == input_ids[1, :lengths[1]].tolist()
    assert batch.flat[2 * tokens:3 * tokens][second].tolist() == list(range(lengths[1]))


@pytest.fixture(scope="module")
def tiny_model(tiny_random_model, build_dir):
    return load_model(str(tiny_random_model), build_dir, allow_random=False, log=lambda *_: None)


@pytest.mark.parametrize("rows", [MIXED_ROWS[:8], list(range(0, 10833, 360))], ids=["8 mixed", "31 spread"])
def test_graph_bucket_layout_gives_the_same_logits(tiny_model, features, rows):
    """A small batch padded to its CUDA graph bucket (dummy and zero-length sequences) answers as unpadded."""
    encoder = PackedBackend(tiny_model, "cpu", "fp32").encoder
    inputs = batch_inputs(features, np.array(rows))
    plain, bucketed = pack(*inputs), pack(*inputs, graph_buckets=True)
    assert bucketed.graphed and not plain.graphed
    cu_seqlens = bucketed.flat[3 * bucketed.tokens:]
    assert (bucketed.tokens, len(cu_seqlens)) == graph_shape(bucketed.real_tokens, len(rows))
    assert cu_seqlens[-1] == bucketed.tokens
    padding = np.diff(cu_seqlens[len(rows):])
    assert (padding >= 0).all() and (padding <= MAX_SEQ_LENGTH).all() and padding.sum() > 0
    too_many = np.arange(graph_families()[-1].sequences + 1)
    assert not pack(*batch_inputs(features, too_many), graph_buckets=True).graphed

    def logits(batch):
        with torch.inference_mode():
            return encoder.forward_flat(torch.from_numpy(batch.flat), batch.tokens)[:batch.real_tokens].numpy()

    np.testing.assert_allclose(logits(bucketed), logits(plain), atol=1e-5, rtol=0)


def test_graph_buckets_of_shorter_samples_keep_every_sequence_within_their_length(tiny_model, features):
    """At SEQ_LEN=128 the padding's dummy sequences are at most 128 tokens, as attention's max length says."""
    from qsl.features import SquadFeatures

    short = SquadFeatures(**{name: array[:, :128] if array.ndim == 2 else array
                             for name, array in features.as_arrays().items()})
    encoder = PackedBackend(tiny_model, "cpu", "fp32", calibration=short).encoder
    assert encoder.max_length == 128
    inputs = batch_inputs(short, np.array(MIXED_ROWS[:8]))
    plain, bucketed = pack(*inputs, max_length=128), pack(*inputs, graph_buckets=True, max_length=128)
    cu_seqlens = bucketed.flat[3 * bucketed.tokens:]
    assert (bucketed.tokens, len(cu_seqlens)) == graph_shape(bucketed.real_tokens, 8, 128)
    assert (np.diff(cu_seqlens) <= 128).all() and cu_seqlens[-1] == bucketed.tokens
    with torch.inference_mode():
        logits = [encoder.forward_flat(torch.from_numpy(batch.flat), batch.tokens)[:batch.real_tokens].numpy()
                  for batch in (plain, bucketed)]
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-5, rtol=0)


def reference_attention_from_qkv(qkv, cu_seqlens, max_length, heads):
    from sut.packed_bert import varlen_attention

    tokens, width = qkv.shape[0], qkv.shape[1] // 3
    query, key, value = qkv.view(tokens, 3, heads, width // heads).unbind(1)
    return varlen_attention(query, key, value, cu_seqlens, max_length).reshape(tokens, width)


def test_fused_attention_takes_the_qkv_product_and_gives_the_context(tiny_model, features):
    """The hook the Triton kernel plugs into: given the same maths, the same logits (runs without a GPU)."""
    backend = PackedBackend(tiny_model, "cpu", "fp32")
    inputs = batch_inputs(features, np.array(MIXED_ROWS))
    expected = backend.predict(*inputs)
    calls = []
    for layer in backend.encoder.layers:
        def fused(qkv, cu_seqlens, max_length, heads=layer.heads):
            calls.append(qkv.shape)
            return reference_attention_from_qkv(qkv, cu_seqlens, max_length, heads)
        layer.fused_attention = fused
    np.testing.assert_allclose(backend.predict(*inputs), expected, atol=1e-6, rtol=0)
    width = backend.encoder.layers[0].qkv.out_features
    assert len(calls) == len(backend.encoder.layers) and all(shape[1] == width for shape in calls)


def test_triton_attention_needs_cuda_and_half_precision(tiny_model):
    with pytest.raises(HarnessError, match="triton_attention=1 needs a CUDA device"):
        PackedBackend(tiny_model, "cpu", "fp32", options={"triton_attention": "1"})


def test_graphs_need_cuda_and_half_precision(tiny_model):
    with pytest.raises(HarnessError, match="graphs=1 needs a CUDA device"):
        PackedBackend(tiny_model, "cpu", "fp32", options={"graphs": "1"})


def test_packed_logits_match_huggingface_padded_fp32(model, features):
    arguments = mixed_batch(features)
    expected = HuggingFaceBackend(model, "cpu", "fp32").predict(*arguments)
    packed = PackedBackend(model, "cpu", "fp32").predict(*arguments)
    real = arguments[1].astype(bool)
    np.testing.assert_allclose(packed[real], expected[real], atol=1e-4, rtol=0)
    assert (packed[~real] == -10000.0).all()


@pytest.mark.skipif(not onednn_available(), reason="this torch has no oneDNN (torch.backends.mkldnn)")
def test_onednn_products_are_the_cpu_default_and_give_the_same_logits(model, features):
    """fp32 on CPU runs its products through oneDNN unless told not to; both give nn.Linear's logits."""
    arguments = mixed_batch(features)
    default = PackedBackend(model, "cpu", "fp32")
    plain = PackedBackend(model, "cpu", "fp32", options={"onednn": "0"})
    assert isinstance(default.encoder.layers[0].ffn_in, OneDnnLinear)
    assert isinstance(plain.encoder.layers[0].ffn_in, nn.Linear)
    real = arguments[1].astype(bool)
    np.testing.assert_allclose(default.predict(*arguments)[real], plain.predict(*arguments)[real], atol=1e-4, rtol=0)


def test_onednn_is_refused_outside_cpu_fp32_and_beside_compile(tiny_model):
    with pytest.raises(HarnessError, match="onednn=1 needs DEVICE=cpu, PRECISION fp32 or bf16"):
        PackedBackend(tiny_model, "cpu", "fp16", options={"onednn": "1"})
    with pytest.raises(HarnessError, match="onednn=1 and compile=1 exclude each other"):
        PackedBackend(tiny_model, "cpu", "fp32", options={"onednn": "1", "compile": "1"})
    compiled = PackedBackend(tiny_model, "cpu", "fp32", options={"compile": "1"})
    assert isinstance(compiled.encoder.layers[0].ffn_in, nn.Linear)


@pytest.mark.slow
def test_packed_f1_equals_huggingface_f1(small_model_f1):
    huggingface, packed = small_model_f1["huggingface"], small_model_f1["pytorch"]
    assert huggingface > 50, "the small model should answer well above chance"
    assert packed == pytest.approx(huggingface, abs=0.1)


@pytest.mark.slow
def test_tanh_gelu_of_the_half_precision_paths_keeps_f1(model, features, examples):
    exact = PackedBackend(model, "cpu", "fp32", options={"onednn": "0"})  # PackedLayer's own GELU, as on CUDA
    exact_f1 = subset_f1(exact, features, examples, QUESTIONS)
    exact.encoder.use_tanh_gelu()
    assert subset_f1(exact, features, examples, QUESTIONS) == pytest.approx(exact_f1, abs=0.2)


def test_tanh_gelu_switch_changes_the_function_used(tiny_model):
    encoder = PackedBackend(tiny_model, "cpu", "fp32", options={"onednn": "0"}).encoder
    layer = encoder.layers[0]
    hidden = torch.randn(64, layer.ffn_in.in_features) * 40  # pre-activations of about +-3, where the forms differ
    with torch.inference_mode():
        product = layer.ffn_in(hidden)
        exact, tanh = F.gelu(product), F.gelu(product, approximate="tanh")
        assert (exact - tanh).abs().max() > 1e-4
        torch.testing.assert_close(layer._gelu_ffn_in(hidden), exact)
        encoder.use_tanh_gelu()
        torch.testing.assert_close(layer._gelu_ffn_in(hidden), tanh)


@pytest.mark.skipif(not onednn_available(), reason="this torch has no oneDNN (torch.backends.mkldnn)")
@pytest.mark.parametrize(("precision", "approximate"), [("fp32", "none"), ("bf16", "tanh")])
def test_onednn_fuses_the_gelu_of_the_precision(tiny_model, precision, approximate):
    layer = PackedBackend(tiny_model, "cpu", precision).encoder.layers[0]
    assert isinstance(layer.ffn_in, OneDnnLinear)
    plain = nn.Linear(layer.ffn_in.in_features, layer.ffn_in.out_features)
    fused = OneDnnLinear(plain, gelu=approximate)
    hidden = torch.randn(16, plain.in_features) * 40
    with torch.inference_mode():
        torch.testing.assert_close(fused(hidden), F.gelu(plain(hidden), approximate=approximate), atol=1e-4, rtol=1e-4)
    assert layer.ffn_in.algorithm == approximate


def test_bf16_on_cpu_computes_in_bf16(tiny_model, features):
    backend = PackedBackend(tiny_model, "cpu", "bf16")
    dtypes = []
    backend.encoder.layers[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output[0].dtype))
    backend.predict(*mixed_batch(features))
    assert dtypes == [torch.bfloat16]


@pytest.mark.slow
def test_bf16_on_cpu_keeps_f1(model, features, examples, small_model_f1):
    """bf16 on CPU (oneDNN's bf16 products with tanh GELU fused, where torch has oneDNN): within 0.5% of fp32's
    F1, the bound that lets configs/systems/cpu.json pick it by default."""
    bf16 = PackedBackend(model, "cpu", "bf16")
    assert isinstance(bf16.encoder.layers[0].ffn_in, OneDnnLinear) == onednn_available()
    fp32 = small_model_f1["pytorch"]
    bf16_f1 = subset_f1(bf16, features, examples, QUESTIONS)
    assert abs(bf16_f1 - fp32) <= 0.005 * fp32, f"bf16 F1 {bf16_f1:.2f} vs fp32 {fp32:.2f}"


@pytest.mark.slow
def test_fp8_emulated_f1_within_one_percent_of_fp32(model, features, examples, small_model_f1):
    fp32 = small_model_f1["pytorch"]
    fp8_backend = PackedBackend(model, "cpu", "fp8", calibration=features, log=lambda *_: None)
    assert type(fp8_backend.encoder.layers[0].ffn_in).__name__ == "Fp8GeluLinear"
    fp8 = subset_f1(fp8_backend, features, examples, QUESTIONS)
    assert abs(fp8 - fp32) <= 0.01 * fp32, f"fp8 F1 {fp8:.2f} vs fp32 {fp32:.2f}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "fp8"])
def test_packed_cuda_keeps_f1(model, features, examples, precision):
    cpu = subset_f1(PackedBackend(model, "cpu", "fp32"), features, examples, QUESTIONS)
    cuda = PackedBackend(model, "cuda", precision, calibration=features, log=lambda *_: None)
    assert subset_f1(cuda, features, examples, QUESTIONS) == pytest.approx(cpu, abs=0.01 * cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "fp8"])
@pytest.mark.parametrize("batch_size", [1, 8, 48])
def test_cuda_graphs_keep_f1(model, features, examples, batch_size, precision):
    if precision == "fp8" and not fp8_supported(torch.device("cuda")):
        pytest.skip("needs a CUDA GPU with fp8 (compute capability 8.9+)")
    eager = PackedBackend(model, "cuda", precision, calibration=features, options={"graphs": "0"},
                          log=lambda *_: None)
    graphed = PackedBackend(model, "cuda", precision, calibration=features, log=lambda *_: None)
    assert graphed.graphs is not None and eager.graphs is None
    expected = subset_f1(eager, features, examples, QUESTIONS, batch_size)
    assert subset_f1(graphed, features, examples, QUESTIONS, batch_size) == pytest.approx(expected, abs=0.2)


needs_fp8_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and fp8_kernels_supported(torch.device("cuda"))),
    reason="needs a CUDA GPU the fp8 Triton kernels run on (compute capability 9.0+)")


@needs_fp8_kernels
def test_fp8_gelu_kernel_matches_its_emulation():
    """The Triton product + bias + GELU + quantise kernel against the same maths in fp32 torch ops."""
    torch.manual_seed(0)
    linear = nn.Linear(1024, 4096).cuda().half()
    inputs = torch.randn(1000, 1024, device="cuda", dtype=torch.float16)  # not a whole number of tiles
    output_scale = torch.tensor(4.0 / 448, device="cuda")
    amax = float(inputs.abs().max())
    native = Fp8GeluLinear(linear, amax, native=True, output_scale=output_scale, fused=True)
    emulated = Fp8GeluLinear(linear.float(), amax, native=False, output_scale=output_scale, fused=False)
    quantised = quantise(inputs, native.input_scale)  # both take the same fp8 inputs as they are
    kernel, emulated = native(quantised), emulated(quantised)
    assert kernel.dtype == emulated.dtype == FP8 and kernel.shape == (1000, 4096)
    kernel, emulated = kernel.float(), emulated.float()
    # fp8 products accumulate in less than fp32: a few outputs land one fp8 step apart, and near zero,
    # where the sum cancels, a little more (measured on an H100: 0.1% beyond one step, all under 0.1).
    assert (kernel == emulated).float().mean() > 0.98
    torch.testing.assert_close(kernel, emulated, rtol=0.135, atol=0.125)


@needs_fp8_kernels
def test_fp8_add_norm_kernel_matches_its_emulation():
    """The Triton residual + LayerNorm + quantise kernel against the same maths in fp32 torch ops."""
    torch.manual_seed(0)
    norm = AddNorm(1024, eps=1e-12).cuda().half()
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.1)
        norm.bias.normal_(0.0, 0.1)
    output, residual = (torch.randn(1000, 1024, device="cuda", dtype=torch.float16) * scale for scale in (3, 1))
    output_scale = torch.tensor(8.0 / 448, device="cuda")
    hidden, quantised = Fp8AddNorm(norm, output_scale, fused=True)(output, residual)
    expected_hidden, expected_quantised = Fp8AddNorm(copy.deepcopy(norm).float(), output_scale, fused=False)(
        output.float(), residual.float())
    assert hidden.dtype == torch.float16 and quantised.dtype == FP8
    torch.testing.assert_close(hidden.float(), expected_hidden, rtol=1e-3, atol=1e-3)  # fp16 rounding
    assert (quantised.float() == expected_quantised.float()).float().mean() > 0.999


@pytest.mark.skipif(importlib.util.find_spec("triton") is not None, reason="Triton is installed here")
def test_fp8_without_triton_names_the_fix(tiny_model, features, monkeypatch):
    for check in ("fp8_supported", "fp8_kernels_supported"):
        monkeypatch.setattr(pytorch_backend, check, lambda device: True)  # as on an H100
    with pytest.raises(HarnessError, match=r"needs Triton 3\.4 or newer.*pip install 'torch>=2\.8'"):
        PackedBackend(tiny_model, "cpu", "fp8", calibration=features)


needs_triton_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and importlib.util.find_spec("triton") is not None),
    reason="needs a CUDA GPU with Triton")


@needs_triton_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_attention_matches_flash_attention(dtype):
    from sut.triton_attention import varlen_attention_from_qkv

    torch.manual_seed(0)
    lengths = [0, 5, 130, 384, 1, 64, 0, 200]  # zero-length: the padding sequences of graph buckets
    cu_seqlens = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device="cuda")
    qkv = torch.randn(sum(lengths), 3 * 1024, device="cuda", dtype=dtype) * 2
    expected = reference_attention_from_qkv(qkv, cu_seqlens, 384, 16)
    context = varlen_attention_from_qkv(qkv, cu_seqlens, 16, 384)
    assert context.dtype == dtype and context.shape == expected.shape
    torch.testing.assert_close(context, expected, atol=2e-2 if dtype == torch.bfloat16 else 2e-3, rtol=0)
    scale = expected.abs().max().float() / 448
    quantised = varlen_attention_from_qkv(qkv, cu_seqlens, 16, 384, output_scale=scale)
    assert quantised.dtype == FP8
    assert (quantised.float() == quantise(expected.float(), scale).float()).float().mean() > 0.99


@needs_triton_cuda
@pytest.mark.parametrize("precision", ["fp16", "fp8"])
def test_triton_attention_keeps_f1(model, features, examples, precision):
    if precision == "fp8" and not fp8_supported(torch.device("cuda")):
        pytest.skip("needs a CUDA GPU with fp8 (compute capability 8.9+)")
    flash = PackedBackend(model, "cuda", precision, calibration=features, log=lambda *_: None)
    triton = PackedBackend(model, "cuda", precision, calibration=features, options={"triton_attention": "1"},
                           log=lambda *_: None)
    assert triton.encoder.layers[0].fused_attention is not None
    expected = subset_f1(flash, features, examples, QUESTIONS)
    assert subset_f1(triton, features, examples, QUESTIONS) == pytest.approx(expected, abs=0.3)
