"""Cutting a set of samples into batches: longest first, each padded only to its own longest sample."""

from __future__ import annotations

import numpy as np

from qsl.features import ModelInputs

PAD_MULTIPLE = 8  # batches are padded to a multiple of this many tokens
SHRINK = 2  # with a pool of W workers, each batch holds at most 1 / (SHRINK x W) of the tokens still to plan
SMALLEST_SHARE = 64  # ... and at least 1 / (SMALLEST_SHARE x W) of the query's (a batch's own cost bounds it below)


def plan_batches(lengths: np.ndarray, max_batch_size: int, max_tokens: int | None = None,
                 workers: int = 1) -> list[np.ndarray]:
    """Positions into `lengths`, grouped so that batch size * longest length stays within `max_tokens`.

    Sorting by length keeps padding small; longest first means a batch that does not fit in memory
    fails at once rather than at the end of a long run. For a pool of workers (sut/workers.py) batches
    shrink as the query is used up (guided self-scheduling): the big ones go first, and the last worker
    to finish is at most one small batch behind the first, however the work was dealt.
    """
    order = np.argsort(-lengths, kind="stable")
    remaining = int(lengths.sum())
    smallest = remaining // (SMALLEST_SHARE * workers)
    batches = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        budget = max_tokens
        if workers > 1:
            share = max(smallest, -(-remaining // (SHRINK * workers)))
            budget = share if max_tokens is None else min(max_tokens, share)
        size = max_batch_size if budget is None else max(1, min(max_batch_size, budget // max(longest, 1)))
        batch = order[start:start + size]
        batches.append(batch)
        remaining -= int(lengths[batch].sum())
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
