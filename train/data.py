"""SQuAD for fine-tuning: question records through `datasets`, features made by the QSL's own rules, answer labels.

Offline (the default) the shipped dev set is split by article: even-indexed articles train, odd-indexed
validate (the shared small model was made this way, so its held-out half stays held out). DATASET=squad or
squad_v2 loads the real train and validation sets from the Hugging Face hub.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from common.errors import HarnessError, reason
from qsl.cache import save_npz
from qsl.dataset import DATASET_SHA256, SHIPPED_DATASET, Example, load_dataset, split_whitespace_with_offsets
from qsl.features import SEP_ID, Featurisation, SquadFeatures, doc_spans, featurize

DATASETS = ("dev-split", "squad", "squad_v2")
HUB_NAMES = {"squad": "rajpurkar/squad", "squad_v2": "rajpurkar/squad_v2"}
FORMAT_VERSION = 1


@dataclass
class TrainingFeatures(SquadFeatures):
    """Features plus the answer's token positions in each (0, the [CLS] position, where the window lacks it).

    `trainable` is False for the features of a question whose answer text is not in its paragraph's words
    (the reference leaves those questions out of training).
    """

    start_position: np.ndarray  # int64 [N]
    end_position: np.ndarray  # int64 [N]
    trainable: np.ndarray  # bool [N]


@dataclass
class Split:
    examples: list[Example]
    features: TrainingFeatures


def shipped_records(split: str, path: Path = SHIPPED_DATASET):
    """The shipped dev set's questions as a `datasets.Dataset`, in SQuAD's hub layout; even articles train."""
    from datasets import Dataset

    keep = 0 if split == "train" else 1
    records = [{"id": qa["id"], "title": article["title"], "context": paragraph["context"],
                "question": qa["question"],
                "answers": {"text": [answer["text"] for answer in qa["answers"]],
                            "answer_start": [answer["answer_start"] for answer in qa["answers"]]}}
               for index, article in enumerate(load_dataset(path)["data"]) if index % 2 == keep
               for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    return Dataset.from_list(records)


def hub_records(name: str, split: str):
    """SQuAD v1.1 or v2.0 from the hub (cached by `datasets` after the first download)."""
    import datasets

    try:
        return datasets.load_dataset(HUB_NAMES[name], split=split)
    except (ConnectionError, OSError, datasets.exceptions.DatasetNotFoundError) as error:
        raise HarnessError(f"DATASET={name}: cannot load {HUB_NAMES[name]} ({type(error).__name__}: "
                           f"{reason(error)}); it needs the Hugging Face hub (internet) once, "
                           "or leave DATASET unset to train on the shipped dev set's even articles offline") from error


def records(name: str, split: str):
    if name not in DATASETS:
        raise HarnessError(f"DATASET={name} is not one of {', '.join(DATASETS)} (dev-split, the default, needs "
                           "no internet)")
    return shipped_records(split) if name == "dev-split" else hub_records(name, split)


Answer = tuple[int, int, str] | None  # (first word, last word, text) of a question's first answer; None: unanswerable


def examples_and_answers(rows) -> tuple[list[Example], list[Answer], list[bool]]:
    """Examples in the QSL's form, each one's first answer, and whether that answer can be found in its words."""
    examples: list[Example] = []
    answers: list[Answer] = []
    usable: list[bool] = []
    paragraphs: dict[str, tuple[list[str], list[int]]] = {}  # one word list per paragraph, shared by its questions
    for row in rows:
        if row["context"] not in paragraphs:
            paragraphs[row["context"]] = split_whitespace_with_offsets(row["context"])
        words, word_of_char = paragraphs[row["context"]]
        texts = row["answers"]["text"]
        examples.append(Example(row["id"], row["question"], words, list(texts)))
        if not texts:  # SQuAD v2's unanswerable questions: trained to point at [CLS]
            answers.append(None)
            usable.append(True)
            continue
        start = row["answers"]["answer_start"][0]
        first_word, last_word = word_of_char[start], word_of_char[start + len(texts[0]) - 1]
        answers.append((first_word, last_word, texts[0]))
        usable.append(" ".join(texts[0].split()) in " ".join(words[first_word:last_word + 1]))
    return examples, answers, usable


def _token_span(doc_word: np.ndarray, doc_ids: np.ndarray, answer: tuple[int, int, str], tokenizer) -> tuple[int, int]:
    """The answer's first and last document token: its words' tokens, narrowed to the answer text's own tokens
    where those lie inside (an answer of "1895" within the word "(1895-1943)")."""
    first_word, last_word, text = answer
    start = int(np.searchsorted(doc_word, first_word))  # word ids never decrease along the document
    end = int(np.searchsorted(doc_word, last_word + 1)) - 1
    wanted = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if doc_ids[new_start:new_end + 1].tolist() == wanted:
                return new_start, new_end
    return start, end


def answer_positions(examples: list[Example], answers: list[Answer], features: SquadFeatures, tokenizer,
                     featurisation: Featurisation) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's answer start and end position: the window's own, or 0 ([CLS]) where it does not hold all of it."""
    backend = tokenizer.backend_tokenizer
    starts = np.zeros(len(features), np.int64)
    ends = np.zeros(len(features), np.int64)
    encoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    first_feature = np.searchsorted(features.example_index, np.arange(len(examples)))
    for example_index, (example, answer) in enumerate(zip(examples, answers, strict=True)):
        if answer is None:
            continue
        key = id(example.doc_tokens)
        if key not in encoded:
            encoding = backend.encode(example.doc_tokens, is_pretokenized=True, add_special_tokens=False)
            encoded[key] = (np.array(encoding.ids), np.array(encoding.word_ids))
        doc_ids, doc_word = encoded[key]
        token_start, token_end = _token_span(doc_word, doc_ids, answer, tokenizer)
        feature = int(first_feature[example_index])
        query_length = int(np.flatnonzero(features.input_ids[feature] == SEP_ID)[0]) - 1  # [CLS] query [SEP]
        spans = doc_spans(len(doc_ids), featurisation.seq_length - query_length - 3, featurisation.doc_stride)
        for offset, (span_start, span_length) in enumerate(spans):
            if span_start <= token_start and token_end < span_start + span_length:
                starts[feature + offset] = token_start - span_start + query_length + 2
                ends[feature + offset] = token_end - span_start + query_length + 2
    return starts, ends


def cache_key(name: str, split: str, rows, featurisation: Featurisation, vocab_sha256: str) -> str:
    source = DATASET_SHA256 if name == "dev-split" else rows._fingerprint
    parameters = {"dataset": name, "split": split, "source": source, "vocab": vocab_sha256,
                  "featurisation": [featurisation.seq_length, featurisation.doc_stride, featurisation.max_query_length],
                  "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]


def load_split(name: str, split: str, tokenizer, vocab_sha256: str, featurisation: Featurisation, cache_dir: Path,
               log=print) -> Split:
    """One split's examples and labelled features, features cached under `cache_dir` by everything they depend on."""
    rows = records(name, split)
    examples, answers, usable = examples_and_answers(rows)
    path = cache_dir / f"{name}-{split}-{cache_key(name, split, rows, featurisation, vocab_sha256)}.npz"
    names = [field.name for field in fields(TrainingFeatures)]
    if path.is_file():
        with np.load(path) as cached:
            return Split(examples, TrainingFeatures(**{key: cached[key] for key in names}))
    log(f"featurising {len(examples)} {split} questions of {name} ({featurisation.describe()})")
    features = featurize(examples, tokenizer, featurisation.seq_length, featurisation.doc_stride,
                         featurisation.max_query_length)
    starts, ends = answer_positions(examples, answers, features, tokenizer, featurisation)
    labelled = TrainingFeatures(**features.as_arrays(), start_position=starts, end_position=ends,
                                trainable=np.array(usable)[features.example_index])
    save_npz(path, {key: getattr(labelled, key) for key in names})
    return Split(examples, labelled)
