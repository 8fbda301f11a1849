"""The official SQuAD v1.1 metrics (exact match and token F1), with the official normalisation."""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop English articles, collapse whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    same = sum((Counter(prediction_tokens) & Counter(truth_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def score(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """Mean best-over-answers EM and F1 (in %) over every question in `answers`; missing ones score 0."""
    exact_match = f1 = 0.0
    for qas_id, ground_truths in answers.items():
        if qas_id not in predictions:
            continue
        prediction = predictions[qas_id]
        exact_match += max(exact_match_score(prediction, truth) for truth in ground_truths)
        f1 += max(f1_score(prediction, truth) for truth in ground_truths)
    total = len(answers)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
