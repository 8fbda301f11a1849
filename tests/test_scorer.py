"""Official SQuAD v1.1 metric semantics."""

from __future__ import annotations

import pytest

from accuracy.squad_v1_1 import exact_match_score, f1_score, normalize_answer, score


def test_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_f1_counts_shared_tokens():
    assert f1_score("Denver Broncos", "the Denver Broncos") == 1.0
    assert f1_score("Broncos", "Denver Broncos") == pytest.approx(2 / 3)
    assert f1_score("Carolina Panthers", "Denver Broncos") == 0.0
    assert f1_score("a", "the") == 0.0  # both normalise to nothing


def test_best_of_several_gold_answers():
    answers = {"q1": ["Denver Broncos", "Broncos"], "q2": ["Santa Clara, California", "Levi's Stadium"]}
    predictions = {"q1": "Broncos", "q2": "Santa Clara"}
    result = score(predictions, answers)
    assert result["exact_match"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx((100 + 100 * 0.8) / 2)
    assert exact_match_score("broncos.", "Broncos") == 1.0


def test_missing_prediction_scores_zero():
    result = score({"q1": "Broncos"}, {"q1": ["Broncos"], "q2": ["x"]})
    assert result == {"exact_match": 50.0, "f1": 50.0}


def test_a_missing_prediction_anywhere_scores_zero_and_the_rest_still_count():
    result = score({"q1": "Broncos", "q3": "x"}, {"q1": ["Broncos"], "q2": ["y"], "q3": ["x"]})
    assert result == {"exact_match": pytest.approx(200 / 3), "f1": pytest.approx(200 / 3)}
