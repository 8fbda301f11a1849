"""Seeded LoadGen accuracy logs that exercise post-processing hard, for parity with the reference's own scorer.

`random` spreads the n-best candidates over every kind of position (question, padding, other windows);
`peaked` puts a strong start and a nearby end inside each window's context, so nearly every question gets
a real span whose text must be mapped back onto the original words; `ties` draws logits from four values,
so candidates tie and only the reference's tie-breaking order picks the answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qsl.features import MAX_SEQ_LENGTH, SquadFeatures

KINDS = ("random", "peaked", "ties")


def synthetic_logits(features: SquadFeatures, kind: str, seed: int = 0) -> np.ndarray:
    """float32 [N, 384, 2] logits of one kind for every feature."""
    rng = np.random.default_rng(seed)
    count = len(features)
    if kind == "random":
        return rng.standard_normal((count, MAX_SEQ_LENGTH, 2), dtype=np.float32)
    if kind == "ties":
        return rng.integers(0, 4, (count, MAX_SEQ_LENGTH, 2)).astype(np.float32)
    if kind != "peaked":
        raise ValueError(f"unknown kind {kind}; choose one of {', '.join(KINDS)}")
    logits = rng.standard_normal((count, MAX_SEQ_LENGTH, 2), dtype=np.float32)
    for row in range(count):
        context = np.flatnonzero(features.token_to_orig[row] >= 0)
        start = int(rng.choice(context))
        end = min(start + int(rng.integers(0, 12)), int(context[-1]))
        logits[row, start, 0] += 8.0
        logits[row, end, 1] += 8.0
    return logits


def partial_rows(count: int, size: int = 600, seed: int = 1) -> np.ndarray:
    """A seeded sample of feature rows, in order: what a partial log (a quick run, TEST01) answers."""
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def write_accuracy_log(path: Path, logits: np.ndarray, rows: np.ndarray | None = None) -> Path:
    """mlperf_log_accuracy.json as LoadGen writes it: one upper-case hex float32 buffer per answered sample."""
    rows = np.arange(len(logits)) if rows is None else rows
    entries = [{"seq_id": position, "qsl_idx": int(row), "data": logits[row].astype(np.float32).tobytes().hex().upper()}
               for position, row in enumerate(rows)]
    path.write_text(json.dumps(entries))
    return path
