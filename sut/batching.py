"""Cutting a set of samples into batches: longest first, each padded only to its own longest sample."""

from __future__ import annotations

import numpy as np

from qsl.features import ModelInputs

PAD_MULTIPLE = 8  # batches are padded to a multiple of this many tokens


def plan_batches(lengths: np.ndarray, max_batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Positions into `lengths`, grouped so that batch size * longest length stays within `max_tokens`.

    Sorting by length keeps padding small; longest first means a batch that does not fit in memory
    fails at once rather than at the end of a long run.
    """
    order = np.argsort(-lengths, kind="stable")
    batches = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max_batch_size
        if max_tokens is not None:
            size = max(1, min(size, max_tokens // max(longest, 1)))
        batches.append(order[start:start + size])
        start += size
    return batches


def padded_length(longest: int, multiple: int, limit: int) -> int:
    """Round a batch's sequence length up to a multiple (friendlier kernel shapes), never past `limit`."""
    return min(limit, -(-longest // multiple) * multiple)


def batch_inputs(features: ModelInputs, rows: np.ndarray, pad_multiple: int = PAD_MULTIPLE
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch as a backend receives it: padded only to its longest sample, rounded up to `pad_multiple`."""
    length = padded_length(int(features.lengths[rows].max()), pad_multiple, features.seq_length)
    return features.model_inputs(rows, length)
