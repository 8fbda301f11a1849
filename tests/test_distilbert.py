"""DistilBERT as itself: a directory saved by transformers runs in every backend, without segment ids."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from common.errors import HarnessError
from qsl.features import PAD_LOGIT
from sut.huggingface_backend import HuggingFaceBackend
from sut.models import DISTILBERT, SHAPES, load_model, random_bert
from sut.pytorch_backend import PackedBackend
from tests.conftest import mixed_batch, run_cli, subset_f1

QUESTIONS = 100


@pytest.fixture(scope="session")
def distilbert_dir(tmp_path_factory) -> Path:
    """A randomly initialised DistilBertForQuestionAnswering as transformers saves it (its own weight names).

    Its head is scaled up: logits spread over a few units instead of hundredths, so that rounding at 1e-7
    never reorders the best spans and F1 can be compared exactly.
    """
    import torch
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering

    torch.manual_seed(0)
    model = DistilBertForQuestionAnswering(DistilBertConfig(n_layers=2, dim=64, n_heads=2, hidden_dim=256))
    with torch.no_grad():
        model.qa_outputs.weight.mul_(100)
    path = tmp_path_factory.mktemp("models") / "distilbert-tiny"
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def distilbert(distilbert_dir, build_dir):
    return load_model(str(distilbert_dir), build_dir, allow_random=False, log=lambda *_: None)


def test_a_distilbert_directory_loads_as_distilbert(distilbert, distilbert_dir):
    assert type(distilbert.module).__name__ == "DistilBertForQuestionAnswering"
    assert distilbert.name == "distilbert-tiny" and not distilbert.is_random
    saved = json.loads((distilbert_dir / "config.json").read_text())
    assert saved["model_type"] == "distilbert" and "token_type_ids" not in str(saved)


def backends(model, onnx_cache):
    yield "huggingface", HuggingFaceBackend(model, "cpu", "fp32")
    yield "pytorch", PackedBackend(model, "cpu", "fp32")
    if importlib.util.find_spec("onnxruntime"):
        from sut.onnxruntime_backend import OnnxRuntimeBackend

        yield "onnxruntime", OnnxRuntimeBackend(model, "cpu", "fp32", cache_dir=onnx_cache, log=lambda *_: None)
    if importlib.util.find_spec("openvino"):
        from sut.openvino_backend import OpenVinoBackend

        yield "openvino", OpenVinoBackend(model, "cpu", "fp32", cache_dir=onnx_cache, log=lambda *_: None)


def test_every_backend_gives_transformers_logits_and_reads_no_segment_ids(distilbert, features, onnx_cache):
    input_ids, input_mask, segment_ids = mixed_batch(features)
    real = input_mask.astype(bool)
    expected = None
    for name, backend in backends(distilbert, onnx_cache):
        logits = backend.predict(input_ids, input_mask, segment_ids)
        if expected is None:
            expected = logits  # transformers' own model, first
        np.testing.assert_allclose(logits[real], expected[real], atol=1e-4, rtol=0, err_msg=name)
        flipped = backend.predict(input_ids, input_mask, 1 - segment_ids)
        np.testing.assert_array_equal(flipped, logits, err_msg=f"{name} read the segment ids")


class PaddingMasked:
    """transformers' logits with padding's set to PAD_LOGIT, as the packed backend writes them: a random model's
    padding logits are as large as any, and would otherwise crowd real tokens out of the 20 best."""

    def __init__(self, backend):
        self.backend = backend

    def predict(self, input_ids, input_mask, segment_ids):
        logits = self.backend.predict(input_ids, input_mask, segment_ids)
        logits[input_mask == 0] = PAD_LOGIT
        return logits


def test_packed_distilbert_f1_equals_transformers_f1(distilbert, features, examples):
    huggingface = subset_f1(PaddingMasked(HuggingFaceBackend(distilbert, "cpu", "fp32")), features, examples,
                            QUESTIONS)
    packed = subset_f1(PackedBackend(distilbert, "cpu", "fp32"), features, examples, QUESTIONS)
    assert packed == pytest.approx(huggingface, abs=1e-6)


def test_shape_distilbert_is_a_distilbert_of_its_size():
    shape = SHAPES["distilbert"]
    assert shape.family is DISTILBERT
    model = random_bert(shape)
    config = model.module.config
    assert type(model.module).__name__ == "DistilBertForQuestionAnswering"
    assert (config.n_layers, config.dim, config.n_heads, config.hidden_dim) == (6, 768, 12, 3072)
    assert model.source.endswith("family=distilbert")


def test_training_a_distilbert_shape_names_the_bert_of_its_size():
    from train.model import outline

    with pytest.raises(HarnessError, match="SHAPE=layers=6,hidden=768,heads=12,intermediate=3072"):
        outline(None, SHAPES["distilbert"])


@pytest.mark.slow
def test_an_accuracy_run_of_a_distilbert_directory(tmp_path, build_dir, features, distilbert_dir):
    result = run_cli("harness", "accuracy", "--model", str(distilbert_dir), "--count", "24", "--build-dir",
                     str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = build_dir / "logs" / "distilbert-tiny" / "pytorch" / "fp32-cpu" / "Offline"
    entries = json.loads((runs / "accuracy" / "mlperf_log_accuracy.json").read_text())
    assert sorted(entry["qsl_idx"] for entry in entries) == list(range(24))
    assert (runs / "accuracy" / "accuracy.txt").read_text().startswith('{"exact_match": ')
