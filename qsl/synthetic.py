"""Generated samples laid out like SQuAD features (DATA=synthetic): benchmark any BERT without data.

Each sample takes the layout of a real SQuAD feature at the same sequence length, drawn with a seeded
generator: [CLS], a query of that feature's length, [SEP], context to that feature's length, [SEP], then
padding; the ids in between are random word pieces. So lengths follow the dev set's distribution at
that length (LENGTHS=squad), or every sample is SEQ_LEN long (LENGTHS=full). There are no answers:
nothing here can be scored.
"""

from __future__ import annotations

import numpy as np

from qsl.features import CLS_ID, SEP_ID, Featurisation, ModelInputs, SquadFeatures

FIRST_WORD_ID = 999  # below: [PAD], [UNK], [CLS], [SEP], [MASK] and the [unusedN] slots
LENGTHS = ("squad", "full")
MAX_QUERY_LENGTH = 64


def layout_featurisation(seq_length: int) -> Featurisation:
    """The SQuAD featurisation whose features give the layouts: the reference algorithm at this length
    (DATA=squad's default), with the query capped at about half the length below 128 tokens so that
    every window keeps some context."""
    query = MAX_QUERY_LENGTH if seq_length >= 2 * MAX_QUERY_LENGTH else (seq_length - 4) // 2
    return Featurisation(seq_length, max(1, seq_length // 3), query)


def synthetic_samples(layouts: SquadFeatures, count: int, lengths: str = "squad", seed: int = 0,
                      vocab_size: int = 30522) -> ModelInputs:
    """`count` samples, each in the layout of a seeded draw of the SQuAD features `layouts`."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(layouts), count)
    seq_length = layouts.seq_length
    sample_lengths = layouts.lengths[rows] if lengths == "squad" else np.full(count, seq_length, np.int32)
    query_ends = ((layouts.segment_ids[rows] == 0) & (layouts.input_mask[rows] == 1)).sum(axis=1) - 1  # [SEP]
    positions = np.arange(seq_length)
    input_mask = (positions < sample_lengths[:, None]).astype(np.int32)
    segment_ids = ((positions > query_ends[:, None]) & (input_mask == 1)).astype(np.int32)
    input_ids = rng.integers(FIRST_WORD_ID, vocab_size, (count, seq_length), dtype=np.int32)
    input_ids[:, 0] = CLS_ID
    input_ids[np.arange(count), query_ends] = SEP_ID
    input_ids[np.arange(count), sample_lengths - 1] = SEP_ID
    input_ids *= input_mask
    return ModelInputs(input_ids, input_mask, segment_ids)
