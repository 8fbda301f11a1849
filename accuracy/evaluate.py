"""Score a LoadGen accuracy log: decode, post-process like the reference, apply the official metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accuracy.loadgen_log import file_sha256, read_accuracy_log
from accuracy.postprocess import NO_ANSWER, predictions
from accuracy.squad_v1_1 import score
from common.files import save_atomically
from qsl.dataset import SHIPPED_VOCAB, load_dataset, read_examples
from qsl.features import SquadFeatures

REFERENCE_F1 = 90.874  # fp32 BERT-Large, the MLPerf reference
TARGETS = {"bert-99": 0.99, "bert-99.9": 0.999}


@dataclass
class AccuracyResult:
    """Scores over every dev question, as the reference scores any log, and over the answered ones only.

    The reference predicts "empty" for a question none of whose features the log holds, and divides by
    all 10,570 questions: that is the official line, whatever the log covers. For a partial log (a quick
    run, TEST01's sample) the scores over the answered questions are what say something about the model.
    """

    exact_match: float
    f1: float
    answered_exact_match: float
    answered_f1: float
    questions_answered: int
    questions_total: int
    samples_logged: int
    log_sha256: str
    setting: str = ""  # the featurisation, when it is not MLPerf's: no bert-99 verdict then

    @property
    def partial(self) -> bool:
        return self.questions_answered < self.questions_total

    def official_line(self) -> str:
        return json.dumps({"exact_match": self.exact_match, "f1": self.f1})

    def verdict_lines(self) -> list[str]:
        lines = []
        if self.partial:
            lines.append(f"PARTIAL LOG: {self.questions_answered} of {self.questions_total} questions answered "
                         f"({self.samples_logged} samples logged); the line above scores all {self.questions_total} "
                         f"as the reference does (\"{NO_ANSWER}\" for the others). Over the answered questions: "
                         f"F1 {self.answered_f1:.3f}, EM {self.answered_exact_match:.3f}; "
                         "no bert-99 verdict for a partial log")
        if self.setting:
            lines.append(f"NOT THE MLPERF SETTING ({self.setting}; bert-99 is max_seq_length 384, doc_stride 128, "
                         "max_query_length 64): no bert-99 verdict")
        if lines:
            return lines
        for name, fraction in TARGETS.items():
            target = REFERENCE_F1 * fraction
            verdict = "PASS" if self.f1 >= target else "FAIL"
            lines.append(f"{name}: {verdict} (F1 {self.f1:.3f} vs target {target:.3f}, "
                         f"{fraction:.1%} of {REFERENCE_F1})")
        return lines


def evaluate_log(log_path: Path, features: SquadFeatures, dataset_path: Path | None = None,
                 dtype: str = "float32", transposed: bool = False,
                 predictions_path: Path | None = None, setting: str = "") -> AccuracyResult:
    logits = read_accuracy_log(log_path, len(features), features.seq_length, dtype, transposed, features.lengths)
    return evaluate_logits(logits, features, file_sha256(log_path), dataset_path, predictions_path, setting)


def evaluate_logits(logits: dict[int, np.ndarray], features: SquadFeatures, log_sha256: str,
                    dataset_path: Path | None = None, predictions_path: Path | None = None,
                    setting: str = "") -> AccuracyResult:
    """F1/EM as the reference scores a log (sample index -> [seq_length, 2] logits); `setting` names a
    featurisation other than MLPerf's."""
    from qsl.tokenizer import load_tokenizer

    examples = read_examples(load_dataset(dataset_path) if dataset_path else load_dataset())
    vocabulary = SHIPPED_VOCAB.read_text(encoding="utf-8").splitlines()
    answered = predictions(features, examples, logits, load_tokenizer(), vocabulary)
    every = {example.qas_id: answered.get(example.qas_id, NO_ANSWER) for example in examples}
    if predictions_path is not None:  # byte for byte what the reference writes for the same log
        save_atomically(lambda name: Path(name).write_text(json.dumps(every, indent=4) + "\n"), predictions_path)
    gold = {example.qas_id: example.answers for example in examples}
    official = score(every, gold)
    answered_only = score(answered, {qas_id: gold[qas_id] for qas_id in answered})
    return AccuracyResult(official["exact_match"], official["f1"], answered_only["exact_match"],
                          answered_only["f1"], len(answered), len(examples), len(logits), log_sha256, setting)


def write_accuracy_txt(path: Path, result: AccuracyResult) -> None:
    """The official accuracy.txt: the scorer's JSON line, the verdicts, and the log's hash= line."""
    lines = [result.official_line(), *result.verdict_lines(), f"hash={result.log_sha256}"]
    save_atomically(lambda name: Path(name).write_text("\n".join(lines) + "\n"), path)  # never half a verdict
