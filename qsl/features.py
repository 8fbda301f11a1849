"""SQuAD examples -> fixed-length BERT features, bit-identical to the MLPerf reference's.

The reference (create_squad_data.py) tokenises every whitespace word on its own, then slides a
window of `max_seq_length - len(query) - 3` doc tokens with stride `doc_stride`. We tokenise each
paragraph once, in one batched call with the words pre-split, which yields the same word pieces.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from qsl.dataset import Example

MAX_SEQ_LENGTH = 384
DOC_STRIDE = 128
MAX_QUERY_LENGTH = 64
PAD_LOGIT = -10000.0  # the logit of a position past a sample's end: the reference pads shorter outputs with it
CLS_ID, SEP_ID = 101, 102


@dataclass(frozen=True)
class Featurisation:
    """The reference's windowing parameters; MLPerf's are the defaults, any other is not the bert-99 setting."""

    seq_length: int = MAX_SEQ_LENGTH
    doc_stride: int = DOC_STRIDE
    max_query_length: int = MAX_QUERY_LENGTH

    @property
    def is_mlperf(self) -> bool:
        return self == Featurisation()

    @property
    def cache_name(self) -> str:
        """The features cache's file name under build/data (MLPerf's keeps the name it always had)."""
        if self.is_mlperf:
            return "squad_features.npz"
        return f"squad_features-seq{self.seq_length}-stride{self.doc_stride}-query{self.max_query_length}.npz"

    def describe(self) -> str:
        return (f"max_seq_length {self.seq_length}, doc_stride {self.doc_stride}, "
                f"max_query_length {self.max_query_length}")


MLPERF = Featurisation()


@dataclass
class ModelInputs:
    """What the SUT and every backend read of a sample set: three int32 [N, seq_length] arrays.

    SQuAD features (below) and generated samples (qsl/synthetic.py) are both this.
    """

    input_ids: np.ndarray  # int32 [N, seq_length]
    input_mask: np.ndarray  # int32 [N, seq_length]
    segment_ids: np.ndarray  # int32 [N, seq_length]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def seq_length(self) -> int:
        """Positions per sample (384 for MLPerf): the length of every answer the SUT gives LoadGen."""
        return self.input_ids.shape[1]

    @cached_property
    def lengths(self) -> np.ndarray:
        """Real (unpadded) tokens per feature; summed once, as batching looks them up per batch."""
        return self.input_mask.sum(axis=1, dtype=np.int32)

    def model_inputs(self, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """input_ids, input_mask, segment_ids of `rows`, cut to their first `length` positions."""
        return self.input_ids[rows, :length], self.input_mask[rows, :length], self.segment_ids[rows, :length]


@dataclass
class SquadFeatures(ModelInputs):
    """Model inputs plus what post-processing needs, one row per feature.

    `token_to_orig[f, p]` is the paragraph word index of position p (-1 outside the document part);
    `max_context[f, p]` marks positions whose best context is this feature's window.
    """

    token_to_orig: np.ndarray  # int32 [N, seq_length]
    max_context: np.ndarray  # bool [N, seq_length]
    example_index: np.ndarray  # int32 [N]

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


def doc_spans(num_doc_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) windows over the document tokens, as the reference slides them."""
    spans = []
    start = 0
    while start < num_doc_tokens:
        length = min(num_doc_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_doc_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_flags(spans: list[tuple[int, int]], span_index: int) -> np.ndarray:
    """For each token of span `span_index`: is this the span where it has the most context?

    Score = min(left, right context) + 0.01 * span length; the first span wins ties.
    """
    start, length = spans[span_index]
    positions = np.arange(start, start + length)
    scores = np.full((len(spans), length), -np.inf)
    for index, (other_start, other_length) in enumerate(spans):
        end = other_start + other_length - 1
        inside = (positions >= other_start) & (positions <= end)
        score = np.minimum(positions - other_start, end - positions) + 0.01 * other_length
        scores[index, inside] = score[inside]
    return scores.argmax(axis=0) == span_index


def featurize(examples: list[Example], tokenizer, max_seq_length: int = MAX_SEQ_LENGTH,
              doc_stride: int = DOC_STRIDE, max_query_length: int = MAX_QUERY_LENGTH,
              progress=None) -> SquadFeatures:
    """Build the features of `examples`, in the reference's order (example, then window)."""
    backend = tokenizer.backend_tokenizer
    questions = backend.encode_batch([e.question for e in examples], add_special_tokens=False)

    paragraphs: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id(doc_tokens) -> (ids, word index)
    unique_docs = list({id(e.doc_tokens): e.doc_tokens for e in examples}.items())
    encoded_docs = backend.encode_batch([words for _, words in unique_docs], is_pretokenized=True,
                                        add_special_tokens=False)
    for (key, _), encoding in zip(unique_docs, encoded_docs, strict=True):
        paragraphs[key] = (np.array(encoding.ids, np.int32), np.array(encoding.word_ids, np.int32))

    rows: dict[str, list] = {name: [] for name in SquadFeatures.__dataclass_fields__}
    for example_index, (example, question) in enumerate(zip(examples, questions, strict=True)):
        query_ids = question.ids[:max_query_length]
        doc_ids, doc_word = paragraphs[id(example.doc_tokens)]
        spans = doc_spans(len(doc_ids), max_seq_length - len(query_ids) - 3, doc_stride)
        doc_offset = len(query_ids) + 2
        for span_index, (start, length) in enumerate(spans):
            input_ids = np.zeros(max_seq_length, np.int32)
            segment_ids = np.zeros(max_seq_length, np.int32)
            token_to_orig = np.full(max_seq_length, -1, np.int32)
            max_context = np.zeros(max_seq_length, bool)
            end = doc_offset + length
            input_ids[:end + 1] = [CLS_ID, *query_ids, SEP_ID, *doc_ids[start:start + length], SEP_ID]
            segment_ids[doc_offset:end + 1] = 1
            token_to_orig[doc_offset:end] = doc_word[start:start + length]
            max_context[doc_offset:end] = max_context_flags(spans, span_index)
            input_mask = (np.arange(max_seq_length) <= end).astype(np.int32)
            for name, value in (("input_ids", input_ids), ("input_mask", input_mask),
                                ("segment_ids", segment_ids), ("token_to_orig", token_to_orig),
                                ("max_context", max_context), ("example_index", example_index)):
                rows[name].append(value)
        if progress is not None:
            progress.update(1)
    arrays = {name: np.array(values) for name, values in rows.items()}
    arrays["example_index"] = arrays["example_index"].astype(np.int32)
    return SquadFeatures(**arrays)
