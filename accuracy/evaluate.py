"""Score a LoadGen accuracy log: decode, post-process like the reference, apply the official metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accuracy.loadgen_log import file_sha256, read_accuracy_log
from accuracy.postprocess import predictions
from accuracy.squad_v1_1 import score
from qsl.dataset import SHIPPED_VOCAB, load_dataset, read_examples
from qsl.features import MAX_SEQ_LENGTH, SquadFeatures

REFERENCE_F1 = 90.874  # fp32 BERT-Large, the MLPerf reference
TARGETS = {"bert-99": 0.99, "bert-99.9": 0.999}


@dataclass
class AccuracyResult:
    exact_match: float
    f1: float
    questions_scored: int
    questions_total: int
    samples_logged: int
    log_sha256: str

    @property
    def partial(self) -> bool:
        return self.questions_scored < self.questions_total

    def official_line(self) -> str:
        return json.dumps({"exact_match": self.exact_match, "f1": self.f1})

    def verdict_lines(self) -> list[str]:
        if self.partial:
            return [f"PARTIAL LOG: scored {self.questions_scored} of {self.questions_total} questions "
                    f"({self.samples_logged} samples logged); no bert-99 verdict for a partial log"]
        lines = []
        for name, fraction in TARGETS.items():
            target = REFERENCE_F1 * fraction
            verdict = "PASS" if self.f1 >= target else "FAIL"
            lines.append(f"{name}: {verdict} (F1 {self.f1:.3f} vs target {target:.3f}, "
                         f"{fraction:.1%} of {REFERENCE_F1})")
        return lines


def evaluate_log(log_path: Path, features: SquadFeatures, dataset_path: Path | None = None,
                 dtype: str = "float32", transposed: bool = False,
                 predictions_path: Path | None = None) -> AccuracyResult:
    logits = read_accuracy_log(log_path, len(features), MAX_SEQ_LENGTH, dtype, transposed)
    return evaluate_logits(logits, features, file_sha256(log_path), dataset_path, predictions_path)


def evaluate_logits(logits: dict[int, np.ndarray], features: SquadFeatures, log_sha256: str,
                    dataset_path: Path | None = None, predictions_path: Path | None = None) -> AccuracyResult:
    """F1/EM over the questions with a feature in `logits` (sample index -> [384, 2]), as the reference scores a log."""
    from qsl.tokenizer import load_tokenizer

    examples = read_examples(load_dataset(dataset_path) if dataset_path else load_dataset())
    vocabulary = SHIPPED_VOCAB.read_text(encoding="utf-8").splitlines()
    answers = predictions(features, examples, logits, load_tokenizer(), vocabulary)
    if predictions_path is not None:
        predictions_path.write_text(json.dumps(answers, indent=4) + "\n")
    gold = {example.qas_id: example.answers for example in examples if example.qas_id in answers}
    metrics = score(answers, gold)
    return AccuracyResult(metrics["exact_match"], metrics["f1"], len(gold), len(examples), len(logits), log_sha256)


def write_accuracy_txt(path: Path, result: AccuracyResult) -> None:
    """The official accuracy.txt: the scorer's JSON line, the verdicts, and the log's hash= line."""
    lines = [result.official_line(), *result.verdict_lines(), f"hash={result.log_sha256}"]
    path.write_text("\n".join(lines) + "\n")
