"""Generated samples, model shapes and sequence lengths: any BERT, benchmarked without data or a checkpoint."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pytest

from common.errors import HarnessError
from qsl.cache import load_features
from qsl.features import CLS_ID, SEP_ID, Featurisation
from qsl.samples import resolve_samples
from qsl.synthetic import layout_featurisation, synthetic_samples
from sut.models import SHAPES, parse_shape
from tests.conftest import run_cli

# The reference's own create_squad_data.convert_examples_to_features at max_seq_length 128, doc_stride 42,
# max_query_length 64 (mlcommons/inference b66003e1, run 2026-11-29): the count and int32 arrays' sha256.
REFERENCE_128 = {
    "count": 28564,
    "input_ids": "bb378ec7f6811f017d74f4af1b9d5c4b7a73ce6aacf0ba67761e84bcab9699c5",
    "input_mask": "4d56c115d4182f9950adeecbd8ab0820cbd7aa8905a324ead07daead2e511d37",
    "segment_ids": "91096335bf040b8049329e1315e9c96766696400a25ec5748b1823bb166dffb6",
}


@pytest.fixture(scope="module")
def squad_128(build_dir):
    featurisation = Featurisation(128, 42, 64)
    return load_features(build_dir / "data" / featurisation.cache_name, log=lambda *_: None,
                         featurisation=featurisation)


def test_squad_at_128_tokens_is_the_reference_algorithms(squad_128):
    assert len(squad_128) == REFERENCE_128["count"] and squad_128.seq_length == 128
    for name in ("input_ids", "input_mask", "segment_ids"):
        array = np.ascontiguousarray(getattr(squad_128, name), np.int32)
        assert hashlib.sha256(array.tobytes()).hexdigest() == REFERENCE_128[name], name


def test_generated_samples_are_seeded_and_laid_out_like_squad(features):
    samples = synthetic_samples(features, 2000, seed=3)
    again = synthetic_samples(features, 2000, seed=3)
    other = synthetic_samples(features, 2000, seed=4)
    assert np.array_equal(samples.input_ids, again.input_ids) and not np.array_equal(samples.input_ids,
                                                                                     other.input_ids)
    for row in range(50):
        length = samples.lengths[row]
        ids, segments = samples.input_ids[row], samples.segment_ids[row]
        query_end = int(np.argmax(segments)) - 1  # the [SEP] after the query
        assert ids[0] == CLS_ID and ids[query_end] == SEP_ID and ids[length - 1] == SEP_ID
        assert (ids[1:query_end] >= 999).all() and (ids[query_end + 1:length - 1] >= 999).all()
        assert (ids[length:] == 0).all() and segments[:query_end + 1].sum() == 0
        assert (segments[query_end + 1:length] == 1).all() and (segments[length:] == 0).all()


def test_generated_lengths_follow_squads(features):
    samples = synthetic_samples(features, 10833, seed=0)
    bins = np.arange(0, 385, 32)
    ours = np.histogram(samples.lengths, bins)[0] / len(samples)
    squad = np.histogram(features.lengths, bins)[0] / len(features)
    assert np.abs(ours - squad).max() < 0.02
    full = synthetic_samples(features, 100, lengths="full")
    assert (full.lengths == 384).all()


def test_layouts_at_every_length():
    assert layout_featurisation(384) == Featurisation()  # MLPerf's own
    assert layout_featurisation(128) == Featurisation(128, 42, 64)  # SQuAD's at 128
    assert layout_featurisation(32) == Featurisation(32, 10, 14)  # query capped: some context in every window


@pytest.mark.parametrize(("text", "expected"), [
    ("bert-base", (12, 768, 12, 3072)),
    ("distilbert", (6, 768, 12, 3072)),
    ("layers=3,hidden=768,heads=12", (3, 768, 12, 3072)),
    ("layers=3,hidden=96,heads=4,intermediate=200", (3, 96, 4, 200)),
])
def test_shapes(text, expected):
    shape = parse_shape(text)
    assert (shape.layers, shape.hidden, shape.heads, shape.intermediate) == expected
    assert SHAPES["bert-large"].spec == "layers=24,hidden=1024,heads=16,intermediate=4096"


@pytest.mark.parametrize(("text", "message"), [
    ("bert-huge", "is not a shape: give one of bert-large, bert-base"),
    ("layers=3,hidden=770,heads=12", "hidden (770) must divide into heads (12) equal parts"),
    ("layers=0,hidden=768,heads=12", "layers must be a whole number of at least 1"),
    ("layers=3,hidden=768", "lacks heads"),
    ("layers=3,hidden=768,heads=12,width=4", "is not a shape"),
])
def test_bad_shapes(text, message):
    with pytest.raises(HarnessError, match=re.escape(message)):
        parse_shape(text)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"data": "imagenet"}, "unknown DATA=imagenet"),
    ({"seq_len": "31"}, "SEQ_LEN=31 must be a whole number from 32 to 512"),
    ({"seq_len": "513"}, "SEQ_LEN=513 must be a whole number from 32 to 512"),
    ({"seq_len": "64"}, "SQuAD features need SEQ_LEN=68 or more"),
    ({"doc_stride": "0"}, "DOC_STRIDE=0 must be a whole number of at least 1"),
    ({"samples": "100"}, "SAMPLES describe generated samples"),
    ({"data": "synthetic", "doc_stride": "40"}, "DOC_STRIDE= windows SQuAD's paragraphs"),
    ({"data": "synthetic", "lengths": "long"}, "unknown LENGTHS=long"),
    ({"data": "synthetic", "samples": "0"}, "SAMPLES=0 must be a whole number of at least 1"),
])
def test_bad_data_options(arguments, message):
    with pytest.raises(HarnessError, match=re.escape(message)):
        resolve_samples(**arguments)


def test_sources_name_their_logs():
    assert resolve_samples().label == "" and resolve_samples().is_mlperf
    assert resolve_samples(seq_len="128").label == "-squad-seq128-stride42"
    assert resolve_samples(data="synthetic", seq_len="128", lengths="full", seed="2").label == \
        "-synthetic-seq128-full-seed2"


def test_packed_path_matches_hugging_face_for_another_shape_and_length(features):
    from sut.huggingface_backend import HuggingFaceBackend
    from sut.models import random_bert
    from sut.pytorch_backend import PackedBackend

    model = random_bert(parse_shape("layers=3,hidden=96,heads=4,intermediate=200"))
    samples = synthetic_samples(load_features_128_layout(features), 64, seed=1)
    rows = np.arange(16)
    inputs = samples.model_inputs(rows, int(samples.lengths[rows].max()))
    expected = HuggingFaceBackend(model, "cpu", "fp32").predict(*inputs)
    packed = PackedBackend(model, "cpu", "fp32", calibration=samples).predict(*inputs)
    real = inputs[1].astype(bool)
    np.testing.assert_allclose(packed[real], expected[real], atol=1e-4, rtol=0)


def load_features_128_layout(features):
    """Generated samples need layouts; cutting the 384 features to 128 tokens gives some for these tests."""
    from qsl.features import SquadFeatures

    return SquadFeatures(**{name: array[:, :128] if array.ndim == 2 else array
                            for name, array in features.as_arrays().items()})


def test_fp8_calibrates_on_generated_samples(features):
    from sut.models import random_bert
    from sut.pytorch_backend import PackedBackend

    samples = synthetic_samples(features, 300, seed=2)
    backend = PackedBackend(random_bert(SHAPES["tiny"]), "cpu", "fp8", calibration=samples, log=lambda *_: None)
    logits = backend.predict(*samples.model_inputs(np.arange(8), 384))
    assert logits.shape == (8, 384, 2) and np.isfinite(logits).all()


def test_a_batch_wider_than_the_backend_was_built_for_is_refused(features):
    from sut.models import random_bert
    from sut.pytorch_backend import PackedBackend

    samples = synthetic_samples(load_features_128_layout(features), 20)
    backend = PackedBackend(random_bert(SHAPES["tiny"]), "cpu", "fp32", calibration=samples)
    with pytest.raises(ValueError, match="built for samples of at most 128"):
        backend.predict(*features.model_inputs(np.arange(2), 384))


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["tiny", "layers=3,hidden=768,heads=12"])
@pytest.mark.parametrize("seq_len", ["128", "384"])
def test_quick_offline_runs_of_any_shape_and_length(tmp_path, build_dir, features, shape, seq_len):
    result = run_cli("harness", "perf", "--data", "synthetic", "--shape", shape, "--seq-len", seq_len,
                     "--device", "cpu", "--count", "16", "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LoadGen result: VALID, NOT COMPLIANT (quick run, COUNT=16), SYNTHETIC DATA" in result.stdout
    name = parse_shape(shape).name
    run_dir = build_dir / "logs" / f"{name}-random" / "pytorch" / f"fp32-cpu-synthetic-seq{seq_len}" / "Offline" / \
        "performance" / "run_1"
    assert "SYNTHETIC DATA: 10833 generated samples" in (run_dir / "mlperf_log_summary.txt").read_text()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert (info["data"], info["seq_len"], info["shape"]) == ("synthetic", int(seq_len), shape)


@pytest.mark.slow
def test_accuracy_at_128_tokens_is_scored_without_a_verdict(tmp_path, build_dir, features, small_model):
    result = run_cli("harness", "accuracy", "--model", str(small_model), "--seq-len", "128", "--count", "200",
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "NOT THE MLPERF SETTING (max_seq_length 128, doc_stride 42, max_query_length 64" in result.stdout
    assert "bert-99: " not in result.stdout
    answered_f1 = float(result.stdout.split("Over the answered questions: F1 ")[1].split(",")[0])
    assert answered_f1 > 80.0  # the first questions are the model's training articles


@pytest.mark.slow
@pytest.mark.parametrize(("arguments", "message"), [
    (["accuracy", "--data", "synthetic"], "generated samples have no answers to score"),
    (["accuracy", "--shape", "tiny"], "SHAPE=tiny gives random weights, which an accuracy run refuses"),
    (["perf", "--shape", "tiny", "--model", "x"], "give MODEL= or SHAPE=, not both"),
    (["perf", "--shape", "layers=2,hidden=10,heads=3"], "must divide into heads"),
])
def test_refusals(tmp_path, build_dir, features, arguments, message):
    result = run_cli("harness", *arguments, "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_a_sequence_longer_than_the_model_takes_is_refused(tmp_path, build_dir, features):
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=256)
    BertForQuestionAnswering(config).save_pretrained(tmp_path / "short-positions")
    result = run_cli("harness", "perf", "--model", str(tmp_path / "short-positions"), "--seq-len", "384",
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "SEQ_LEN=384 is longer than short-positions takes (256 positions)" in result.stderr


@pytest.mark.slow
def test_submission_refuses_runs_on_generated_data(tmp_path, build_dir, features):
    build = tmp_path / "build"
    shutil.copytree(build_dir / "data", build / "data")
    perf = run_cli("harness", "perf", "--data", "synthetic", "--shape", "tiny", "--count", "16",
                   "--build-dir", str(build), cwd=tmp_path)
    assert perf.returncode == 0, perf.stderr
    result = run_cli("submission", "--short", "--build-dir", str(build), cwd=tmp_path)
    assert result.returncode == 2 and "on generated data (DATA=synthetic)" in result.stderr
