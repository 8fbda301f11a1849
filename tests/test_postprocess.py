"""Reference post-processing: candidate spans, tie-breaking, text alignment, on real features."""

from __future__ import annotations

import numpy as np
import pytest

from accuracy.postprocess import best_span, final_text, predictions
from accuracy.squad_v1_1 import score
from qsl.dataset import SHIPPED_VOCAB
from qsl.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def vocabulary():
    return SHIPPED_VOCAB.read_text(encoding="utf-8").splitlines()


def flat_logits(length: int = 384) -> np.ndarray:
    return np.zeros(length, np.float64)


def test_best_span_respects_validity_rules():
    token_to_orig = np.full(384, -1)
    token_to_orig[30:130] = np.arange(100)  # positions 0-29 are [CLS] and the question
    max_context = np.zeros(384, bool)
    max_context[30:130] = True
    start, end = flat_logits(), flat_logits()
    start[60], end[65] = 10, 10  # the valid answer, score 20
    # stronger candidates, each invalid, and invalid in every combination with the others:
    start[5], end[6] = 50, 50  # inside the question
    start[100], end[95] = 40, 40  # end before start
    start[32], end[90] = 30, 30  # longer than 30 tokens
    start[150], end[155] = 45, 45  # past the feature's real length
    assert best_span(start, end, token_to_orig, max_context, 140) == (20.0, 60, 65)
    max_context[60] = False  # a start must have its maximum context in this window
    assert best_span(start, end, token_to_orig, max_context, 140) is None


def test_ties_go_to_the_earliest_candidate():
    token_to_orig = np.arange(384)
    max_context = np.ones(384, bool)
    start, end = flat_logits(), flat_logits()
    start[[50, 60]] = 5.0
    end[[55, 65]] = 5.0
    # (50,55), (50,65), (60,65) all score 10; the reference keeps the first in start-rank order
    assert best_span(start, end, token_to_orig, max_context, 384) == (10.0, 50, 55)


def test_final_text_trims_to_the_predicted_characters(tokenizer):
    assert final_text(tokenizer, "steve smith", "Steve Smith's") == "Steve Smith"
    assert final_text(tokenizer, "1895", "(1895-1943).") == "1895"
    assert final_text(tokenizer, "not there", "Denver") == "Denver"


@pytest.fixture(scope="module")
def answer_words():
    """qas_id -> (first, last) paragraph word of its first gold answer, from the character offset."""
    from qsl.dataset import load_dataset, split_whitespace

    spans = {}
    for article in load_dataset()["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answer = qa["answers"][0]
                first_char = answer["answer_start"]
                last_char = first_char + len(answer["text"]) - 1
                spans[qa["id"]] = (len(split_whitespace(context[:first_char + 1])) - 1,
                                   len(split_whitespace(context[:last_char + 1])) - 1)
    return spans


def gold_logits(features, examples, answer_words, rows) -> dict[int, np.ndarray]:
    """Logits that point at the words of the first gold answer, in each feature holding them."""
    logits = {}
    for row in rows:
        first_word, last_word = answer_words[examples[features.example_index[row]].qas_id]
        word_of = features.token_to_orig[row]
        result = np.full((384, 2), -5.0)
        first = np.flatnonzero(word_of == first_word)
        last = np.flatnonzero(word_of == last_word)
        if len(first) and len(last):
            result[first[0], 0] = 10.0
            result[last[-1], 1] = 10.0
        logits[int(row)] = result
    return logits


def test_gold_pointing_logits_recover_the_answers(features, examples, answer_words, tokenizer, vocabulary):
    rows = np.arange(600)
    logits = gold_logits(features, examples, answer_words, rows)
    answers = predictions(features, examples, logits, tokenizer, vocabulary)
    gold = {example.qas_id: example.answers for example in examples if example.qas_id in answers}
    assert len(gold) == len(set(features.example_index[rows]))
    result = score(answers, gold)
    # whole-word answers come back as written; answers inside a word ("gold" in "\"golden") cannot
    assert result["exact_match"] >= 94.0
    assert result["f1"] >= 95.0


def test_feature_without_valid_span_gives_empty(features, examples, tokenizer, vocabulary):
    nothing = np.full((384, 2), -10000.0)
    nothing[200:220] = 10.0  # the top 20 starts and ends all lie in the padding of a 171-token feature
    answers = predictions(features, examples, {0: nothing}, tokenizer, vocabulary)
    assert answers == {examples[0].qas_id: "empty"}
