"""ONNX Runtime backend on CPU against the PyTorch model it was exported from; TensorRT only where it exists."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
import torch

from common.errors import HarnessError
from sut.huggingface_backend import HuggingFaceBackend
from sut.models import load_model
from sut.onnx_model import export_onnx
from sut.onnxruntime_backend import OnnxRuntimeBackend, providers_for
from tests.conftest import F1_QUESTIONS, mixed_batch, subset_f1

pytestmark = pytest.mark.slow  # ONNX export and real-model F1: not in make test-fast

QUESTIONS = F1_QUESTIONS
QUIET = {"log": lambda *_: None}


@pytest.fixture(scope="module")
def plain(model, onnx_cache):
    return OnnxRuntimeBackend(model, "cpu", "fp32", cache_dir=onnx_cache, options={"optimize": "0"}, **QUIET)


@pytest.fixture(scope="module")
def optimised(model, onnx_cache):
    return OnnxRuntimeBackend(model, "cpu", "fp32", cache_dir=onnx_cache, **QUIET)


def test_plain_onnx_matches_pytorch_fp32(model, plain, features):
    arguments = mixed_batch(features)
    real = arguments[1].astype(bool)
    expected = HuggingFaceBackend(model, "cpu", "fp32").predict(*arguments)
    np.testing.assert_allclose(plain.predict(*arguments)[real], expected[real], atol=1e-3, rtol=0)


def test_optimised_graph_is_fused_and_matches_plain(plain, optimised, features):
    operators = {node.op_type for node in onnx.load(str(optimised.path)).graph.node}
    assert {"Attention", "SkipLayerNormalization", "BiasGelu"} <= operators
    arguments = mixed_batch(features)
    real = arguments[1].astype(bool)
    np.testing.assert_allclose(optimised.predict(*arguments)[real], plain.predict(*arguments)[real],
                               atol=1e-3, rtol=0)


def test_export_is_cached_by_key(model, onnx_cache):
    first = export_onnx(model, onnx_cache / "onnx", **QUIET)
    modified = first.stat().st_mtime_ns
    assert export_onnx(model, onnx_cache / "onnx", **QUIET) == first and first.stat().st_mtime_ns == modified


def test_optimised_f1_equals_pytorch_and_int8_stays_within_1_5(model, optimised, onnx_cache, features, examples,
                                                                small_model_f1):
    pytorch = small_model_f1["huggingface"]
    assert subset_f1(optimised, features, examples, QUESTIONS) == pytest.approx(pytorch, abs=0.1)
    int8 = OnnxRuntimeBackend(model, "cpu", "int8", cache_dir=onnx_cache, **QUIET)
    operators = {node.op_type for node in onnx.load(str(int8.path)).graph.node}
    assert operators & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}
    int8_f1 = subset_f1(int8, features, examples, QUESTIONS)
    assert abs(int8_f1 - pytorch) <= 1.5, f"INT8 F1 {int8_f1:.2f} vs fp32 {pytorch:.2f}"


def rename_like_reference_int8(source, target):
    """The reference models' interface: attention_mask/token_type_ids, another order, a static 384 axis."""
    model = onnx.load(str(source))
    renames = {"input_mask": "attention_mask", "segment_ids": "token_type_ids"}
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    for value in model.graph.input:
        value.name = renames.get(value.name, value.name)
        value.type.tensor_type.shape.dim[1].dim_value = 384
    inputs = list(model.graph.input)
    del model.graph.input[:]
    model.graph.input.extend(reversed(inputs))
    onnx.save(model, str(target))


def test_reference_input_names_are_mapped_by_name(tmp_path, build_dir, tiny_random_model, features):
    tiny = load_model(str(tiny_random_model), build_dir, allow_random=False, **QUIET)
    exported = export_onnx(tiny, tmp_path / "onnx", **QUIET)
    renamed = tmp_path / "renamed.onnx"
    rename_like_reference_int8(exported, renamed)
    as_reference = load_model(str(renamed), build_dir, allow_random=False, accept_onnx=True, **QUIET)
    assert as_reference.onnx_path == renamed
    backend = OnnxRuntimeBackend(as_reference, "cpu", "fp32", cache_dir=tmp_path, options={"optimize": "0"}, **QUIET)
    assert [item.name for item in backend.session.get_inputs()][0] == "token_type_ids"
    assert backend.fixed_length == 384
    arguments = mixed_batch(features)
    expected = HuggingFaceBackend(tiny, "cpu", "fp32").predict(*arguments)
    real = arguments[1].astype(bool)
    np.testing.assert_allclose(backend.predict(*arguments)[real], expected[real], atol=1e-4, rtol=0)


def test_missing_execution_provider_names_the_package():
    with pytest.raises(HarnessError, match=r"no CUDAExecutionProvider.*pip install '\.\[onnx-gpu\]'"):
        providers_for("cuda", None, ["CPUExecutionProvider"])
    assert providers_for("cuda:1", None, ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == \
        ("CUDAExecutionProvider", {"device_id": 1})


def test_unknown_backend_option_lists_the_accepted_ones(model, onnx_cache):
    with pytest.raises(HarnessError, match="accepts: optimize, providers, intra_threads, inter_threads"):
        OnnxRuntimeBackend(model, "cpu", "fp32", cache_dir=onnx_cache, options={"optimise": "1"}, **QUIET)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
                    reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_fp16_keeps_f1(model, build_dir, features, examples, small_model_f1):
    from sut.tensorrt_backend import TensorRTBackend

    pytorch = small_model_f1["huggingface"]
    engine = TensorRTBackend(model, "cuda", "fp16", cache_dir=build_dir / "cache", **QUIET)
    assert subset_f1(engine, features, examples, QUESTIONS) == pytest.approx(pytorch, abs=0.01 * pytorch)
