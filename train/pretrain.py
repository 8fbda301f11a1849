"""Pre-training (TASK=pretrain): BERT's masked-language-model and next-sentence heads, on generated or real text.

As BERT's own recipe lays samples out: [CLS] A [SEP] B [SEP] filling SEQ_LEN, B the text after A or (half the
time) a random stretch of another document, 15% of the word pieces masked (80% [MASK], 10% a random word
piece, 10% kept) and at most MAX_PREDICTIONS of them, which alone the MLM head scores.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from common.errors import HarnessError, reason
from qsl.features import CLS_ID, SEP_ID
from qsl.synthetic import FIRST_WORD_ID

MASK_ID = 103
MASK_RATE = 0.15
TOPICS = 64
ZIPF_EXPONENT = 1.3  # generated words' frequencies by rank, about as skewed as text's
IGNORED = -100  # a label cross-entropy skips: unused prediction slots
LOSS_PARTS = ("mlm_loss", "nsp_loss")


@dataclass
class PretrainingSamples:
    input_ids: np.ndarray  # int32 [N, L], masked
    segment_ids: np.ndarray  # int32 [N, L]
    input_mask: np.ndarray  # int32 [N, L]
    masked_positions: np.ndarray  # int64 [N, P]; 0 in unused slots
    masked_labels: np.ndarray  # int64 [N, P]: the original word pieces; IGNORED in unused slots
    next_sentence: np.ndarray  # int64 [N]: 0 when B follows A, 1 when B is random (transformers' convention)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return self.input_mask.sum(axis=1)

    @property
    def seq_length(self) -> int:
        return self.input_ids.shape[1]


def laid_out(pairs: list[tuple[list[int], list[int], int]], seq_length: int, max_predictions: int,
             rng: np.random.Generator, vocab_size: int) -> PretrainingSamples:
    """(A's ids, B's ids, next-sentence label) pairs as samples, masked."""
    count = len(pairs)
    input_ids = np.zeros((count, seq_length), np.int32)
    segment_ids = np.zeros((count, seq_length), np.int32)
    positions = np.zeros((count, max_predictions), np.int64)
    labels = np.full((count, max_predictions), IGNORED, np.int64)
    for row, (first, second, _) in enumerate(pairs):
        ids = [CLS_ID, *first, SEP_ID, *second, SEP_ID]
        input_ids[row, :len(ids)] = ids
        segment_ids[row, len(first) + 2:len(ids)] = 1
        words = np.flatnonzero((input_ids[row] != CLS_ID) & (input_ids[row] != SEP_ID) & (input_ids[row] != 0))
        chosen = np.sort(rng.choice(words, min(max_predictions, max(1, round(len(words) * MASK_RATE))),
                                    replace=False))
        positions[row, :len(chosen)] = chosen
        labels[row, :len(chosen)] = input_ids[row, chosen]
        draw = rng.random(len(chosen))
        input_ids[row, chosen[draw < 0.8]] = MASK_ID
        randomised = chosen[(draw >= 0.8) & (draw < 0.9)]
        input_ids[row, randomised] = rng.integers(FIRST_WORD_ID, vocab_size, len(randomised))
    input_mask = (input_ids != 0).astype(np.int32)
    next_sentence = np.array([label for _, _, label in pairs], np.int64)
    return PretrainingSamples(input_ids, segment_ids, input_mask, positions, labels, next_sentence)


def synthetic_samples(count: int, seq_length: int, max_predictions: int, seed: int,
                      vocab_size: int = 30522) -> PretrainingSamples:
    """Sequences that fill SEQ_LEN with generated word pieces that can be learnt, as text can: each segment has a
    topic (one of TOPICS offsets into the vocabulary) and Zipf-distributed words after it; B shares A's topic when it
    follows A and has another when it is random. A's length and the label are drawn at random (seeded)."""
    rng = np.random.default_rng([seed, 1])
    room, span = seq_length - 3, vocab_size - FIRST_WORD_ID
    pairs = []
    for _ in range(count):
        split, label = int(rng.integers(1, room)), int(rng.integers(0, 2))
        topics = rng.integers(0, TOPICS, 2) * (span // TOPICS)
        topic_of = np.where(np.arange(room) < split, topics[0], topics[label])
        words = FIRST_WORD_ID + (rng.zipf(ZIPF_EXPONENT, room) - 1 + topic_of) % span
        pairs.append((words[:split].tolist(), words[split:].tolist(), label))
    return laid_out(pairs, seq_length, max_predictions, rng, vocab_size)


def text_samples(documents: list[list[list[int]]], seq_length: int, max_predictions: int, seed: int,
                 vocab_size: int = 30522) -> PretrainingSamples:
    """Documents (lists of tokenised sentences) cut into sentence pairs that fill SEQ_LEN, as BERT's
    create_pretraining_data does: A is a run of whole sentences; B the sentences after it, or those of
    another document."""
    if sum(len(document) > 1 for document in documents) < 2:
        raise HarnessError("the text needs at least two documents of two or more sentences each (documents are "
                           "separated by a blank line, one sentence per line) to make sentence pairs")
    rng = np.random.default_rng([seed, 2])
    room = seq_length - 3
    pairs = []
    for index, document in enumerate(documents):
        chunk: list[list[int]] = []
        for position, sentence in enumerate(document):
            chunk.append(sentence)
            if sum(map(len, chunk)) < room and position < len(document) - 1:
                continue  # not full yet, and the document goes on
            split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
            first = [word for sentence in chunk[:split] for word in sentence]
            if split == len(chunk) or rng.random() < 0.5:  # B: another document, from a random sentence on
                other = documents[(index + int(rng.integers(1, len(documents)))) % len(documents)]
                second, label = [word for sentence in other[int(rng.integers(0, len(other))):] for word in sentence], 1
            else:
                second, label = [word for sentence in chunk[split:] for word in sentence], 0
            while len(first) + len(second) > room:  # trim the longer one at a random end
                longer = first if len(first) > len(second) else second
                del longer[0 if rng.random() < 0.5 else -1]
            if first and second:
                pairs.append((first, second, label))
            chunk = []
    return laid_out(pairs, seq_length, max_predictions, rng, vocab_size)


def read_documents(path: Path) -> list[list[str]]:
    """BERT's pre-training text format: one sentence per line, a blank line between documents."""
    documents, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            documents.append(current)
            current = []
    return [*documents, current] if current else documents


def hub_documents(name: str) -> list[list[str]]:
    """A `datasets` text corpus, `name` or `name:config` with a "text" column; each record one document whose
    sentences end at ., ! or ?."""
    import datasets

    repository, _, config = name.partition(":")
    try:
        records = datasets.load_dataset(repository, config or None, split="train")
    except (ConnectionError, OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        raise HarnessError(f"DATASET={name}: cannot load it from the Hugging Face hub ({type(error).__name__}: "
                           f"{reason(error)}); it needs internet once, or give DATASET=<a text file> (one sentence "
                           "per line, a blank line between documents) or DATASET=synthetic") from error
    if "text" not in records.column_names:
        raise HarnessError(f"DATASET={name} has no text column (it has {', '.join(records.column_names)})")
    split = re.compile(r"(?<=[.!?])\s+")
    return [sentences for text in records["text"] if (sentences := [part for part in split.split(text.strip())
                                                                     if part])]


def load_samples(dataset: str, tokenizer, seq_length: int, max_predictions: int, count: int, seed: int,
                 log=print) -> PretrainingSamples:
    """DATASET=synthetic, a text file, or a hub corpus, as pre-training samples."""
    if dataset == "synthetic":
        return synthetic_samples(count, seq_length, max_predictions, seed)
    path = Path(dataset).expanduser()
    texts = read_documents(path) if path.is_file() else hub_documents(dataset)
    sentences = [sentence for document in texts for sentence in document]
    ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    documents, start = [], 0
    for document in texts:
        documents.append(ids[start:start + len(document)])
        start += len(document)
    samples = text_samples(documents, seq_length, max_predictions, seed)
    log(f"pre-training text {dataset}: {len(texts)} documents, {len(sentences)} sentences, {len(samples)} "
        f"sentence pairs of up to {seq_length} tokens")
    return samples


class PretrainingBatches:
    """Rows of the samples as tensors on a device: (inputs, targets) for PretrainStage and pretraining_loss."""

    def __init__(self, samples: PretrainingSamples, device: torch.device):
        self.samples, self.device = samples, device

    def tensors(self, rows: np.ndarray) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        samples = self.samples
        inputs = tuple(torch.from_numpy(array[rows].astype(np.int64)).to(self.device) for array in
                       (samples.input_ids, samples.segment_ids, samples.input_mask, samples.masked_positions))
        targets = tuple(torch.from_numpy(array[rows]).to(self.device)
                        for array in (samples.masked_labels, samples.next_sentence))
        return inputs, targets


class PretrainStage(nn.Module):
    """transformers' BertForPreTraining, its MLM head run on the masked positions alone (NVIDIA's and MLPerf's
    recipe: a vocabulary-wide product for 20 positions instead of all 128); the same loss as transformers'."""

    def __init__(self, model, autocast_dtype: torch.dtype | None):
        super().__init__()
        self.bert, self.cls, self.autocast_dtype = model.bert, model.cls, autocast_dtype

    def forward(self, input_ids, segment_ids, input_mask, masked_positions) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.autocast_dtype
        with torch.autocast(input_ids.device.type, dtype=dtype) if dtype else nullcontext():
            sequence, pooled = self.bert(input_ids=input_ids, attention_mask=input_mask, token_type_ids=segment_ids,
                                         return_dict=False)[:2]
            masked = sequence.gather(1, masked_positions[..., None].expand(-1, -1, sequence.shape[-1]))
            return self.cls.predictions(masked).float(), self.cls.seq_relationship(pooled).float()


def pretraining_loss(outputs: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor]
                     ) -> torch.Tensor:
    """[the loss to minimise, its MLM part, its NSP part]: MLM over the masked slots, plus NSP."""
    (word_logits, sentence_logits), (labels, next_sentence) = outputs, targets
    mlm = functional.cross_entropy(word_logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORED)
    nsp = functional.cross_entropy(sentence_logits, next_sentence)
    return torch.stack([mlm + nsp, mlm.detach(), nsp.detach()])


def pretraining_model(shape, seed: int):
    """A BertForPreTraining of SHAPE with transformers' own initialisation, seeded."""
    from transformers import BertForPreTraining

    from sut.models import bert_config

    torch.manual_seed(seed)
    return BertForPreTraining(bert_config(shape)).train()


def plot_steps(steps: list[dict], path: Path) -> Path | None:
    """The losses (MLM and NSP apart) and samples/s over the steps; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        return None
    numbers = [row["step"] for row in steps]
    figure, (losses, speed) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", *LOSS_PARTS):
        losses.plot(numbers, [row[key] for row in steps], label=key)
    losses.set(xlabel="step", ylabel="loss", title="pre-training loss")
    losses.legend()
    speed.plot(numbers, [row["samples_per_s"] for row in steps])
    speed.set(xlabel="step", ylabel="samples/s", title="throughput per step")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
