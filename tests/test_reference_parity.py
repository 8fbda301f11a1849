"""Scoring parity with the MLPerf reference's own accuracy-squad.py and evaluate_v1.1.py, run, not re-typed.

The expected values below are what the reference itself printed and wrote for these seeded logs
(mlcommons/inference language/bert at b66003e1 with its DeepLearningExamples submodule at b03375bd,
transformers 5.24): its predictions.json, pinned by sha256, must equal ours byte for byte, and its
official line must equal ours to the last digit. docs/parity.md says how they were made. With
MLPERF_INFERENCE_DIR (a checkout holding that submodule) and REFERENCE_PYTHON (a Python with the
reference's imports: numpy, six, transformers, torch, boto3, setuptools<81), the reference is also
run here on a log it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from accuracy.evaluate import evaluate_log
from qsl.dataset import SHIPPED_VOCAB, load_dataset
from tests.synthetic_logs import partial_rows, synthetic_logits, write_accuracy_log

LOGITS_SHA256 = {  # the seeded logits themselves: a changed generator must not pass for a scoring change
    "random": "338c9d136753bc91584f4df95fbc91327d2161dfcaaf6d8309c26d3eaaadb7f4",
    "peaked": "9b2175e4f35266f35d462d10f589a1b8ca4ba86d344dfaaf8b20dc178f87328d",
    "ties": "878792f17505ec8add8a7168a2b2a2803c602547cc790b626b4c4659908485b2",
}
REFERENCE = {  # (kind, coverage) -> (sha256 of the reference's predictions.json, exact_match, f1)
    ("random", "full"): ("79b087ebc8f74f944cf39e76e21f41bb4eb2d2723e9e7248d1d75ce459f74012",
                         0.14191106906338694, 6.913439897604498),
    ("peaked", "full"): ("7b137d56d6c54266b35867aae31d88dbd64b3d62648cffd4b74c0de42835af0d",
                         0.17975402081362346, 5.581095308276581),
    ("ties", "full"): ("0eccb965fdd01727d9ef8886e0874bb1d181ced631816e47c8fff76fdfd3ddfe",
                       0.6244087038789026, 4.864982339029324),
    ("random", "partial"): ("14eb44f4ed140f2eb4545beaee897480de5cbffdce0b27ad06bfa87e9ef1900b",
                            0.0, 0.4267027111608246),
    ("peaked", "partial"): ("5b9b39921f355157f79498392a6b943ac4a302eb6c6e60996c0a59003d0d7b3e",
                            0.01892147587511826, 0.32496654491119864),
}


def seeded_log(features, kind: str, coverage: str, path: Path, seed: int = 0) -> Path:
    logits = synthetic_logits(features, kind, seed)
    if seed == 0:
        assert hashlib.sha256(logits.tobytes()).hexdigest() == LOGITS_SHA256[kind], \
            "numpy's seeded generator gives other logits: rerun the reference on the new logs (docs/parity.md)"
    rows = partial_rows(len(features)) if coverage == "partial" else None
    return write_accuracy_log(path, logits, rows)


@pytest.mark.parametrize(("kind", "coverage"), [pytest.param(*key, marks=[pytest.mark.slow] if key[1] == "full" else [])
                                                for key in sorted(REFERENCE)])
def test_scores_and_predictions_equal_the_reference(tmp_path, features, kind, coverage):
    log = seeded_log(features, kind, coverage, tmp_path / "mlperf_log_accuracy.json")
    predictions = tmp_path / "predictions.json"
    result = evaluate_log(log, features, predictions_path=predictions)
    expected_sha256, exact_match, f1 = REFERENCE[kind, coverage]
    assert hashlib.sha256(predictions.read_bytes()).hexdigest() == expected_sha256
    assert result.official_line() == json.dumps({"exact_match": exact_match, "f1": f1})
    assert result.partial == (coverage == "partial")


def reference_command() -> tuple[list[str], Path]:
    checkout = os.environ.get("MLPERF_INFERENCE_DIR")
    python = os.environ.get("REFERENCE_PYTHON")
    if not checkout or not python:
        pytest.skip("set MLPERF_INFERENCE_DIR (an mlcommons/inference checkout with language/bert's "
                    "DeepLearningExamples submodule) and REFERENCE_PYTHON to run the reference scorer itself")
    bert = Path(checkout) / "language" / "bert"
    if not (bert / "DeepLearningExamples" / "PyTorch" / "LanguageModeling" / "BERT" / "tokenization.py").is_file():
        pytest.skip(f"{bert}/DeepLearningExamples is empty: `git submodule update --init language/bert/"
                    "DeepLearningExamples` in the checkout")
    return [python, str(bert / "accuracy-squad.py")], bert


def test_reference_scorer_itself_on_a_fresh_log(tmp_path, features):
    command, bert = reference_command()
    log = seeded_log(features, "peaked", "partial", tmp_path / "mlperf_log_accuracy.json", seed=7)
    dataset = tmp_path / "dev-v1.1.json"
    dataset.write_text(json.dumps(load_dataset()))
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    result = evaluate_log(log, features, predictions_path=ours)
    run = subprocess.run([*command, "--vocab_file", str(SHIPPED_VOCAB), "--val_data", str(dataset),
                          "--log_file", str(log), "--out_file", str(theirs),
                          "--features_cache_file", str(tmp_path / "eval_features.pickle")],
                         cwd=bert, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    official = next(line for line in run.stdout.splitlines() if line.startswith("{"))
    assert json.loads(official) == json.loads(result.official_line())
    assert ours.read_bytes() == theirs.read_bytes()
