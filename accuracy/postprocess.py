"""Logits -> answer text, as the MLPerf reference post-processes them (n-best 20, max answer 30).

The reference keeps an n-best list, but only its first entry becomes the prediction, and that is
the valid (start, end) pair with the highest start + end logit, ties going to the earliest
candidate in (feature, start rank, end rank) order. We compute that pair directly.
"""

from __future__ import annotations

import numpy as np

from qsl.dataset import Example
from qsl.features import SquadFeatures

N_BEST = 20
MAX_ANSWER_LENGTH = 30
NO_ANSWER = "empty"  # the reference's "nonce prediction" for a question with no valid span


def top_indices(logits: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` largest logits, equal values in position order (a stable sort, as the reference)."""
    return np.argsort(-logits, kind="stable")[:count]


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, token_to_orig: np.ndarray,
              max_context: np.ndarray, length: int) -> tuple[float, int, int] | None:
    """(score, start, end) of the best valid span within one feature, or None."""
    starts = top_indices(start_logits, N_BEST)
    ends = top_indices(end_logits, N_BEST)
    start_ok = (starts < length) & (token_to_orig[starts] >= 0) & max_context[starts]
    end_ok = (ends < length) & (token_to_orig[ends] >= 0)
    span = ends[None, :] - starts[:, None] + 1
    valid = start_ok[:, None] & end_ok[None, :] & (span >= 1) & (span <= MAX_ANSWER_LENGTH)
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[starts][:, None] + end_logits[ends][None, :], -np.inf)
    flat = int(np.argmax(scores))  # first maximum in row-major order = the reference's stable sort
    row, column = divmod(flat, len(ends))
    return float(scores[row, column]), int(starts[row]), int(ends[column])


def _strip_spaces(text: str) -> tuple[str, list[int]]:
    positions = [index for index, char in enumerate(text) if char != " "]
    return "".join(text[index] for index in positions), positions


def basic_tokens(tokenizer, text: str) -> list[str]:
    """BERT's basic tokenisation (clean, lower case, strip accents, split off punctuation), no WordPiece.

    The tokenizer's own normaliser and pre-tokeniser are exactly the reference's BasicTokenizer steps.
    """
    backend = tokenizer.backend_tokenizer
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]


def final_text(tokenizer, predicted: str, original: str) -> str:
    """Map the normalised predicted text back onto the original words, or keep them whole.

    Like the reference, the original text goes through the basic tokenizer only: WordPiece's `##`
    pieces would break the character alignment. The alignment falls back to the original words
    whenever it fails.
    """
    tokenized = " ".join(basic_tokens(tokenizer, original))
    start = tokenized.find(predicted)
    if start == -1:
        return original
    end = start + len(predicted) - 1
    original_chars, original_positions = _strip_spaces(original)
    tokenized_chars, tokenized_positions = _strip_spaces(tokenized)
    if len(original_chars) != len(tokenized_chars):
        return original
    to_stripped = {position: index for index, position in enumerate(tokenized_positions)}
    if start not in to_stripped or end not in to_stripped:
        return original
    return original[original_positions[to_stripped[start]]:original_positions[to_stripped[end]] + 1]


def span_text(tokenizer, vocabulary: list[str], features: SquadFeatures, example: Example,
              feature_index: int, start: int, end: int) -> str:
    tokens = [vocabulary[token_id] for token_id in features.input_ids[feature_index, start:end + 1]]
    predicted = " ".join(tokens).replace(" ##", "").replace("##", "")
    predicted = " ".join(predicted.strip().split())
    first_word = features.token_to_orig[feature_index, start]
    last_word = features.token_to_orig[feature_index, end]
    original = " ".join(example.doc_tokens[first_word:last_word + 1])
    return final_text(tokenizer, predicted, original)


def predictions(features: SquadFeatures, examples: list[Example], logits: dict[int, np.ndarray],
                tokenizer, vocabulary: list[str]) -> dict[str, str]:
    """qas_id -> answer text for every question with at least one feature in `logits`."""
    lengths = features.lengths
    best: dict[int, tuple[float, int, int, int]] = {}  # example -> (score, feature, start, end)
    for feature_index in sorted(logits):
        example_index = int(features.example_index[feature_index])
        result = logits[feature_index]
        span = best_span(result[:, 0], result[:, 1], features.token_to_orig[feature_index],
                         features.max_context[feature_index], int(lengths[feature_index]))
        current = best.get(example_index)
        if span is not None and (current is None or span[0] > current[0]):
            best[example_index] = (span[0], feature_index, span[1], span[2])
        elif current is None:
            best[example_index] = (-np.inf, -1, 0, 0)
    answers = {}
    for example_index, (_, feature_index, start, end) in best.items():
        example = examples[example_index]
        if feature_index < 0:
            answers[example.qas_id] = NO_ANSWER
        else:
            answers[example.qas_id] = span_text(tokenizer, vocabulary, features, example, feature_index, start, end)
    return answers
