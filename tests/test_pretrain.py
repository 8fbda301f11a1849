"""Pre-training (make pretrain): samples laid out as BERT's recipe does, transformers' loss, the loss falling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import HarnessError
from qsl.features import CLS_ID, SEP_ID
from qsl.synthetic import FIRST_WORD_ID
from sut.models import parse_shape
from tests.conftest import run_cli
from train.pretrain import (
    IGNORED,
    MASK_ID,
    PretrainingBatches,
    PretrainStage,
    load_samples,
    pretraining_loss,
    pretraining_model,
    synthetic_samples,
    text_samples,
)

TEXT = Path(__file__).parent / "data" / "pretraining.txt"
TINY = "layers=2,hidden=64,heads=2,intermediate=128"


def unmasked(samples) -> np.ndarray:
    """The word pieces before masking."""
    ids = samples.input_ids.astype(np.int64)
    for row, (positions, labels) in enumerate(zip(samples.masked_positions, samples.masked_labels, strict=True)):
        used = labels != IGNORED
        ids[row, positions[used]] = labels[used]
    return ids


def test_synthetic_samples_are_laid_out_and_masked_as_bert_pretraining():
    samples = synthetic_samples(64, 128, 20, seed=3)
    assert np.array_equal(samples.input_ids, synthetic_samples(64, 128, 20, seed=3).input_ids)  # seeded
    assert (samples.lengths == 128).all()  # sentence pairs fill the sequence
    ids = unmasked(samples)
    for row in range(len(samples)):
        separators = np.flatnonzero(ids[row] == SEP_ID)
        assert ids[row, 0] == CLS_ID and len(separators) == 2 and separators[1] == 127
        assert (samples.segment_ids[row, :separators[0] + 1] == 0).all()
        assert (samples.segment_ids[row, separators[0] + 1:] == 1).all()
    used = samples.masked_labels != IGNORED
    assert (used.sum(axis=1) == 19).all()  # 15% of 125 word pieces, rounded, within MAX_PREDICTIONS
    assert (samples.masked_labels[used] >= FIRST_WORD_ID).all()  # never [CLS] or [SEP]
    masked = np.take_along_axis(samples.input_ids, samples.masked_positions, axis=1)[used]
    assert 0.75 < (masked == MASK_ID).mean() < 0.85
    assert 0.3 < samples.next_sentence.mean() < 0.7
    assert (synthetic_samples(4, 384, 20, seed=0).masked_labels != IGNORED).sum(axis=1).max() == 20  # the cap


def test_text_pairs_follow_their_documents_or_come_from_another():
    # Word j of sentence i of document d is FIRST_WORD_ID + 1000 d + 10 i + j: every id says where it came from.
    documents = [[[FIRST_WORD_ID + 1000 * d + 10 * i + j for j in range(6)] for i in range(8)] for d in range(4)]
    samples = text_samples(documents, 32, 5, seed=0)
    ids = unmasked(samples)
    assert len(samples) >= 8 and set(samples.next_sentence.tolist()) == {0, 1}
    for row, label in enumerate(samples.next_sentence):
        first = ids[row][(samples.segment_ids[row] == 0) & (ids[row] >= FIRST_WORD_ID)] - FIRST_WORD_ID
        second = ids[row][(samples.segment_ids[row] == 1) & (ids[row] >= FIRST_WORD_ID)] - FIRST_WORD_ID
        same_document = first[0] // 1000 == second[0] // 1000
        assert same_document == (label == 0)
        if label == 0:  # B goes on from where A stopped
            assert (second[0] % 1000) // 10 == (first[-1] % 1000) // 10 + 1


def test_the_shipped_text_tokenises_into_pairs():
    from qsl.tokenizer import load_tokenizer

    samples = load_samples(str(TEXT), load_tokenizer(), 32, 5, count=0, seed=0, log=lambda *_: None)
    assert len(samples) >= 8 and (samples.lengths <= 32).all()
    assert (unmasked(samples)[samples.input_mask == 1] != 100).all()  # no [UNK]: the text is in the vocabulary


def test_pretraining_loss_equals_transformers_bert_for_pretraining():
    samples = synthetic_samples(6, 128, 20, seed=1)
    model = pretraining_model(parse_shape(TINY), seed=0).eval()
    inputs, targets = PretrainingBatches(samples, torch.device("cpu")).tensors(np.arange(6))
    ours = pretraining_loss(PretrainStage(model, None)(*inputs), targets).detach()
    labels = torch.full(inputs[0].shape, IGNORED)
    used = targets[0] != IGNORED
    for row in range(6):
        labels[row, inputs[3][row][used[row]]] = targets[0][row][used[row]]
    theirs = model(input_ids=inputs[0], token_type_ids=inputs[1], attention_mask=inputs[2], labels=labels,
                   next_sentence_label=targets[1])
    assert float(ours[0]) == pytest.approx(float(theirs.loss.detach()), abs=1e-5)
    assert float(ours[1] + ours[2]) == pytest.approx(float(ours[0]), abs=1e-6)


def pretrain(tmp_path: Path, *extra: str):
    tmp_path.mkdir(exist_ok=True)
    result = run_cli("train", "--task", "pretrain", "--shape", TINY, "--seq-len", "128", "--build-dir",
                     str(tmp_path / "build"), *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = Path(re.search(r"summary: (\S+)", result.stdout).group(1)).parent
    return result, folder, [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_make_pretrain_reports_throughput_and_a_falling_loss(tmp_path):
    result, folder, steps = pretrain(tmp_path, "--steps", "50", "--micro-batch", "4", "--accumulate", "2", "--lr",
                                     "1e-3", "--steps-per-log", "25")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["task"] == "pretrain" and summary["batch_size"] == 8 and len(steps) == 50
    assert summary["final_loss"] < summary["first_loss"] - 0.5, "the loss should fall over 50 steps"
    assert summary["final_mlm_loss"] + summary["final_nsp_loss"] == pytest.approx(summary["final_loss"], rel=1e-6)
    assert summary["mean_samples_per_s"] > 0 and summary["mean_tokens_per_s"] == pytest.approx(
        summary["mean_samples_per_s"] * 128, rel=1e-3)
    assert "step 25: loss" in result.stdout and ", mlm " in result.stdout
    assert not (folder / "checkpoints").exists() and not (folder / "model").exists()  # a benchmark: neither
    assert summary["validation_loss"] is None and summary["model_dir"] is None


@pytest.mark.slow
def test_two_ddp_replicas_with_accumulation_and_lamb_follow_the_single_process(tmp_path):
    common = ("--steps", "4", "--batch-size", "8", "--accumulate", "2", "--dropout", "0", "--lr", "1e-2",
              "--optimizer", "lamb")
    _, _, single = pretrain(tmp_path / "single", *common)
    _, _, replicas = pretrain(tmp_path / "ddp", *common, "--parallel", "ddp", "--workers", "2")
    for ours, theirs in zip(single, replicas, strict=True):
        for key in ("loss", "mlm_loss", "nsp_loss"):
            assert theirs[key] == pytest.approx(ours[key], abs=1e-5), (ours["step"], key)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--model", "x"], "give SHAPE=<bert-large"),
    (["--shape", "distilbert"], "pre-training here is BERT's"),
    (["--shape", "tiny", "--parallel", "pipeline"], "pipelines are for fine-tuning so far"),
    (["--shape", "tiny", "--dataset", "squad"], "DATASET=squad is SQuAD, for fine-tuning"),
    (["--shape", "tiny", "--dataset", "missing.txt"], "DATASET=missing.txt: no such file"),
    (["--shape", "tiny", "--eval-every", "5"], "EVAL_EVERY=5 is for fine-tuning"),
    (["--shape", "tiny", "--seq-len", "128", "--max-predictions", "200"], "MAX_PREDICTIONS=200 is more than the 125"),
    (["--shape", "tiny", "--micro-batch", "8", "--batch-size", "32", "--accumulate", "2"],
     "MICRO_BATCH=8 x ACCUMULATE=2 x 1 replica is 16"),
])
def test_pretraining_settings_refused_with_the_fix(arguments, message):
    from train.__main__ import parser
    from train.config import resolve_and_check

    with pytest.raises(HarnessError, match=re.escape(message)):
        resolve_and_check(parser().parse_args(["--task", "pretrain", *arguments]))


def test_max_predictions_is_refused_for_fine_tuning():
    from train.__main__ import parser
    from train.config import resolve

    with pytest.raises(HarnessError, match="MAX_PREDICTIONS=20 is for TASK=pretrain"):
        resolve(parser().parse_args(["--shape", "tiny", "--max-predictions", "20"]))


def test_a_hub_corpus_offline_says_what_to_give_instead(monkeypatch):
    from train.pretrain import hub_documents

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HarnessError, match="needs internet once, or give DATASET=<a text file>"):
        hub_documents("wikitext:wikitext-2-raw-v1")


@pytest.mark.slow
def test_the_micro_batch_sweep_runs_each_size_once(tmp_path):
    arguments = ["benchmarks.pretrain_sweep", "--shape", TINY, "--seq-len", "128", "--steps", "3",
                 "--micro-batches", "2", "1", "--build-dir", str(tmp_path / "build")]
    first = run_cli(*arguments, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "build" / "train" / "pretrain-sweep" / "default"
    rows = json.loads((folder / "results.json").read_text())
    assert [(row["configuration"], row["status"], row["batch_size"]) for row in rows] == [("m1", "ok", 1),
                                                                                         ("m2", "ok", 2)]
    assert "| 1 | 1 | " in (folder / "sweep.md").read_text() and "| 2 | 2 | " in first.stdout
    again = run_cli(*arguments, cwd=tmp_path)
    assert again.stdout.count("finished before, reusing") == 2


def test_lamb_moves_every_tensor_by_the_learning_rate_times_its_norm():
    """The trust ratio: on the first step each weight moves by lr x its own norm, whatever its gradient's size;
    a tensor of norm 0 (a fresh bias) takes Adam's step itself."""
    from train.lamb import Lamb

    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(8, 4) * scale) for scale in (0.02, 1.0, 30.0)]
    bias = torch.nn.Parameter(torch.zeros(4))
    before = [weight.detach().clone() for weight in [*weights, bias]]
    loss = sum((weight * torch.randn_like(weight) * 100 ** index).sum() for index, weight in enumerate(weights))
    (loss + (bias * torch.randn(4)).sum()).backward()
    Lamb([*weights, bias], lr=0.01, weight_decay=0.0).step()
    for weight, start in zip(weights, before, strict=False):
        assert float((weight.detach() - start).norm() / start.norm()) == pytest.approx(0.01, rel=1e-4)
    assert float((bias.detach() - before[-1]).abs().max()) == pytest.approx(0.01, rel=1e-3)  # |g| / (|g| + eps) = 1


def test_a_static_loss_scale_stays_put_where_the_dynamic_one_halves():
    from train.loop import LossScale

    static, dynamic = LossScale(True, 1024.0), LossScale(True)
    for scale in (static, dynamic):
        scale.update(finite=False)
    assert static.value == 1024.0 and dynamic.value == 2.0 ** 15
    assert LossScale(False, None).value == 1.0
