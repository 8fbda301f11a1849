"""Fine-tuning (train/): answer labels as the reference makes them, a trained model that `make accuracy` scores,
the comparison, bad input. The runs over several processes are in tests/test_train_parallel.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from common.errors import HarnessError
from tests.conftest import REPO, cli_environment, run_cli
from tests.training_runs import TINY, rows, train

# The reference's own training features (create_squad_data.py, is_training=True; mlcommons/inference b66003e1,
# transformers 5.24) for the even-indexed dev articles with each question's first answer: 5,455 features.
REFERENCE_INPUT_IDS_SHA256 = "ea528900ae8ca264050db9457cfd8de8a5c3f5227f3608b315fcf2d2e977ad95"
REFERENCE_POSITIONS_SHA256 = "fcd6f1be624fe7b690e89047ed56a14242ab075fa393161ba05d482e747cfb6d"


# -- labels -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def training_split(train_build):
    from qsl.dataset import VOCAB_SHA256
    from qsl.features import MLPERF
    from qsl.tokenizer import load_tokenizer
    from train.data import load_split

    return load_split("dev-split", "train", load_tokenizer(), VOCAB_SHA256, MLPERF, train_build / "labels",
                      log=lambda *_: None)


def test_answer_positions_equal_the_references(training_split):
    features = training_split.features
    assert len(training_split.examples) == 5397 and features.trainable.all()
    assert hashlib.sha256(np.ascontiguousarray(features.input_ids, np.int32).tobytes()).hexdigest() == \
        REFERENCE_INPUT_IDS_SHA256
    positions = np.stack([features.start_position, features.end_position]).astype(np.int64)
    assert hashlib.sha256(positions.tobytes()).hexdigest() == REFERENCE_POSITIONS_SHA256


def test_the_reference_itself_makes_the_same_positions(tmp_path, training_split):
    checkout, python = os.environ.get("MLPERF_INFERENCE_DIR"), os.environ.get("REFERENCE_PYTHON")
    if not checkout or not python:
        pytest.skip("set MLPERF_INFERENCE_DIR and REFERENCE_PYTHON to run the reference's training featurisation")
    from qsl.dataset import SHIPPED_VOCAB, load_dataset

    even = [article for index, article in enumerate(load_dataset()["data"]) if index % 2 == 0]
    for article in even:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["answers"] = qa["answers"][:1]  # the reference trains on exactly one answer per question
    source = tmp_path / "train.json"
    source.write_text(json.dumps({"data": even, "version": "1.1"}))
    run = subprocess.run([python, str(REPO / "tests" / "reference_train_labels.py"), checkout, str(source),
                          str(SHIPPED_VOCAB), str(tmp_path / "reference.npz")], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    reference = np.load(tmp_path / "reference.npz")
    features = training_split.features
    assert np.array_equal(reference["input_ids"], features.input_ids)
    assert np.array_equal(reference["start_position"], features.start_position)
    assert np.array_equal(reference["end_position"], features.end_position)


def test_a_window_without_the_whole_answer_points_at_cls(training_split):
    features = training_split.features
    windows = np.bincount(features.example_index)
    split = np.flatnonzero(windows[features.example_index] > 1)  # questions over long paragraphs
    assert (features.start_position[split] == 0).any() and (features.start_position[split] > 0).any()
    inside = features.start_position > 0
    assert (features.segment_ids[inside, features.start_position[inside]] == 1).all()  # always in the paragraph
    assert (features.end_position >= features.start_position).all()


# -- the loop's parts ---------------------------------------------------------------------------------------------

def test_layers_split_evenly_first_stages_take_the_extra():
    from train.model import layer_split

    assert layer_split(6, 4) == [range(0, 2), range(2, 4), range(4, 5), range(5, 6)]
    assert layer_split(2, 2) == [range(0, 1), range(1, 2)]
    with pytest.raises(HarnessError, match="STAGES=3: the model has 2 encoder layers, so at most 2 stages"):
        layer_split(2, 3)


def test_data_order_depends_on_seed_and_epoch_only():
    from train.loop import Order

    rows = np.arange(100)
    order = Order(rows, 32, seed=3)
    assert order.steps_per_epoch == 3
    first = [order.batch(step) for step in range(6)]
    again = Order(rows, 32, seed=3)
    assert all(np.array_equal(again.batch(step), first[step]) for step in (5, 0, 4))  # any order of asking
    assert len(set(np.concatenate(first[:3]).tolist())) == 96  # one epoch: no row twice
    assert not np.array_equal(first[0], first[3])  # a new permutation each epoch
    assert not np.array_equal(Order(rows, 32, seed=4).batch(0), first[0])


def test_learning_rate_warms_up_then_falls_to_zero():
    from train.loop import linear_schedule

    factor = linear_schedule(10, 2)
    assert [factor(step) for step in range(11)] == pytest.approx([0, 0.5, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8,
                                                                 2 / 8, 1 / 8, 0])


def test_fp16_loss_scale_halves_on_overflow_and_doubles_after_2000_clean_steps():
    from train.loop import LossScale

    scale = LossScale(enabled=True)
    scale.update(finite=False)
    assert scale.value == 2.0 ** 15
    for _ in range(2000):
        scale.update(finite=True)
    assert scale.value == 2.0 ** 16
    fixed = LossScale(enabled=False)
    fixed.update(finite=False)
    assert fixed.value == 1.0


def test_a_checkpoint_missing_a_stage_is_never_published(tmp_path):
    from train import checkpoint

    checkpoint.write_part(tmp_path, 4, 0, {"step": 4})
    with pytest.raises(HarnessError, match=r"lacks the parts of ranks \[1\]"):
        checkpoint.publish(tmp_path, 4, ranks=2)
    assert checkpoint.latest_step(tmp_path) is None
    checkpoint.write_part(tmp_path, 4, 1, {"step": 4})
    checkpoint.publish(tmp_path, 4, ranks=2)
    checkpoint.write_part(tmp_path, 8, 0, {"step": 8})
    assert checkpoint.latest_step(tmp_path) == 4  # step 8 was never published
    checkpoint.write_part(tmp_path, 8, 1, {"step": 8})
    checkpoint.publish(tmp_path, 8, ranks=2)
    assert checkpoint.latest_step(tmp_path) == 8 and not (tmp_path / "checkpoints" / "step-4").exists()


def test_a_resumed_run_drops_the_rows_past_its_checkpoint(tmp_path):
    from train.loop import Recorder

    (tmp_path / "steps.jsonl").write_text("".join(json.dumps({"step": step}) + "\n" for step in range(1, 8)))
    recorder = Recorder(tmp_path, resume_step=5)
    assert [row["step"] for row in recorder.steps] == [1, 2, 3, 4, 5]
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 5


# -- bad input: one clear line, before anything is loaded ---------------------------------------------------------

def run_main(monkeypatch, *arguments: str):
    from train.__main__ import main

    monkeypatch.setattr(sys, "argv", ["train", *arguments])
    return main()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--shape", "tiny", "--parallel", "tensor"], r"unknown PARALLEL=tensor; choose none, ddp, pipeline"),
    (["--shape", "layers=1,hidden=64,heads=1", "--parallel", "pipeline", "--stages", "2"],
     r"STAGES=2: the model has 1 encoder layers, so at most 1 stages"),
    (["--shape", "tiny", "--parallel", "ddp", "--workers", str((os.cpu_count() or 1) + 1), "--batch-size",
      str((os.cpu_count() or 1) + 1)],
     r"ranks on this machine, which has \d+ CPU cores: each rank needs one of its own"),
    (["--shape", "tiny", "--workers", "2"], r"WORKERS=2 with PARALLEL=none: one process trains"),
    (["--shape", "tiny", "--parallel", "pipeline", "--stages", "2", "--workers", "3"],
     r"one rank per stage: WORKERS=3 but STAGES=2"),
    (["--shape", "tiny", "--parallel", "ddp", "--batch-size", "9"], r"do not divide into WORKERS=2 equal parts"),
    (["--shape", "tiny", "--parallel", "ddp", "--zero", "1"], r"ZERO=1 is DeepSpeed's: for PARALLEL=deepspeed-"),
    (["--shape", "tiny", "--batch-size", "8", "--accumulate", "3"], r"does not divide into ACCUMULATE=3"),
    (["--shape", "tiny", "--precision", "int8"], r"unknown PRECISION=int8; choose fp32, bf16, fp16"),
    ([], r"nothing to train: give MODEL=.* or SHAPE="),
    (["--model", "/nonexistent/bert"], r"MODEL=/nonexistent/bert does not exist"),
])
def test_bad_settings_get_one_clear_error(monkeypatch, tmp_path, arguments, message):
    with pytest.raises(HarnessError, match=message):
        run_main(monkeypatch, *arguments, "--build-dir", str(tmp_path))


def test_a_model_that_is_not_bert_is_refused(monkeypatch, tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                              "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(HarnessError, match=r"is a gpt2 \(GPT2LMHeadModel\), not BERT"):
        run_main(monkeypatch, "--model", str(tmp_path / "gpt"), "--build-dir", str(tmp_path))


def test_a_bert_missing_encoder_weights_is_refused(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertForQuestionAnswering

    from train.model import load_for_training

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertForQuestionAnswering(config).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({key: value for key, value in weights.items() if ".layer.1." not in key}, tmp_path / "model.safetensors")
    with pytest.raises(HarnessError, match=r"lacks \d+ encoder weights \(bert\.encoder\.layer\.1\..*not a complete"):
        load_for_training(str(tmp_path), None, tmp_path, 0, log=lambda *_: None)
    assert torch.get_default_dtype() == torch.float32


def test_the_hub_datasets_fail_offline_with_the_way_out(tmp_path):
    """Its own process: the hub reads HF_HUB_OFFLINE once, at import (no waiting for connections to time out)."""
    environment = {**cli_environment(), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "HF_HOME": str(tmp_path / "hf")}  # no dataset cached from an earlier download
    result = subprocess.run([sys.executable, "-m", "train", *TINY, "--dataset", "squad", "--build-dir", str(tmp_path)],
                            cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert re.fullmatch(r"error: DATASET=squad: cannot load rajpurkar/squad .* leave DATASET unset to train on the "
                        r"shipped dev set's even articles offline\n", result.stderr), result.stderr
    assert not (tmp_path / "train").exists() or not any((tmp_path / "train").glob("*/run.json"))


def test_resume_needs_a_run_and_a_new_run_refuses_an_old_folder(monkeypatch, tmp_path):
    folder = tmp_path / "train" / "mine"
    with pytest.raises(HarnessError, match=r"RESUME=1 but .*mine holds no run to continue; drop RESUME"):
        run_main(monkeypatch, *TINY, "--run", "mine", "--resume", "--build-dir", str(tmp_path))
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(HarnessError, match=r"mine already holds a run: RESUME=1 continues it, RUN=<name> starts "
                                           "another"):
        run_main(monkeypatch, *TINY, "--run", "mine", "--build-dir", str(tmp_path))


# -- whole runs ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fine_tuning_a_pretrained_encoder_lowers_the_validation_loss(train_build, small_model, tmp_path):
    """The small model's encoder alone (as bert-base-uncased comes): a new head, trained for a few steps."""
    from transformers import BertModel

    encoder = tmp_path / "encoder"
    BertModel.from_pretrained(small_model).save_pretrained(encoder)
    result = train(train_build, "--model", str(encoder), "--seq-len", "128", "--steps", "6", "--batch-size", "8",
                   "--lr", "2e-4", "--warmup", "0", "--eval-every", "6", "--val-questions", "30",
                   "--run", "from-encoder")
    assert "no question-answering head, so a new one starts from random weights" in result.stdout
    evaluations = rows(train_build, "from-encoder", "evals")
    assert [row["step"] for row in evaluations] == [0, 6]
    assert evaluations[1]["loss"] < evaluations[0]["loss"] - 1.0  # 4.83 to 2.48 measured
    summary = json.loads((train_build / "train" / "from-encoder" / "summary.json").read_text())
    assert summary["mean_samples_per_s"] > 0 and summary["mean_tokens_per_s"] > 0 and summary["peak_memory_mb"] > 0


@pytest.mark.slow
def test_the_trained_model_scores_in_make_accuracy(train_build, small_model, build_dir, features):
    train(train_build, "--model", str(small_model), "--steps", "2", "--batch-size", "8", "--lr", "1e-5",
          "--val-questions", "100", "--run", "small-model")
    folder = train_build / "train" / "small-model"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["f1"] > 60 and summary["validation_questions"] == 100  # held-out articles; 71.4 measured
    training = json.loads((folder / "model" / "training.json").read_text())
    assert training["steps"] == 2 and training["model"] == str(small_model)
    accuracy = run_cli("harness", "accuracy", "--model", str(folder / "model"), "--count", "100", "--build-dir",
                       str(build_dir), cwd=REPO)
    assert accuracy.returncode == 0, accuracy.stderr[-3000:]
    assert "logs/small-model/pytorch/fp32-cpu" in accuracy.stdout  # logs named after the run, not "model"
    f1 = float(accuracy.stdout.split("Over the answered questions: F1 ")[1].split(",")[0])
    assert f1 > 85, accuracy.stdout  # the first 100 dev features, training articles
