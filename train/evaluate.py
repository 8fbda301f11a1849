"""Validation: the loss on the held-out features and EM/F1 on their questions, scored by the accuracy module."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from accuracy.postprocess import predictions
from accuracy.squad_v1_1 import score
from qsl.features import PAD_LOGIT
from train.data import Split
from train.model import QaStage, qa_loss
from train.parallel import Batches

EVAL_BATCH = 64


@dataclass
class Evaluation:
    loss: float
    exact_match: float
    f1: float
    questions: int  # scored: SQuAD v2's unanswerable ones are left out (the v1.1 scorer has no "no answer")
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"validation loss {self.loss:.4f}, EM {self.exact_match:.2f}, F1 {self.f1:.2f} over "
                f"{self.questions} questions ({self.seconds:.0f} s)")


@torch.no_grad()
def evaluate(model: QaStage, split: Split, tokenizer, vocabulary: Path, device: torch.device,
             questions: int | None = None, show_progress: bool = False) -> Evaluation:
    """The first `questions` validation questions (all by default), their features in batches of similar length."""
    from tqdm import tqdm

    began = time.perf_counter()
    features = split.features
    examples = split.examples[:questions] if questions else split.examples
    rows = np.flatnonzero(features.example_index < len(examples))
    rows = rows[np.argsort(features.lengths[rows], kind="stable")]  # little padding per batch
    batches = Batches(features, device, trim=True)
    logits: dict[int, np.ndarray] = {}
    losses = []
    for chunk in tqdm(np.array_split(rows, -(-len(rows) // EVAL_BATCH)), desc="validate", unit="batch",
                      leave=False, disable=not show_progress):
        inputs, positions = batches.tensors(chunk)
        output = model(*inputs)
        trainable = torch.from_numpy(features.trainable[chunk]).to(output.device)
        losses.append(qa_loss(output, positions, reduction="none")[trainable])
        padded = np.full((len(chunk), features.seq_length, 2), PAD_LOGIT, np.float32)
        padded[:, :output.shape[1]] = output.float().cpu().numpy()
        logits.update(zip(chunk.tolist(), padded, strict=True))
    vocabulary_tokens = vocabulary.read_text(encoding="utf-8").splitlines()
    answers = predictions(features, examples, logits, tokenizer, vocabulary_tokens)
    gold = {example.qas_id: example.answers for example in examples if example.answers}
    scores = score({qas_id: answers[qas_id] for qas_id in gold}, gold)
    loss = float(torch.cat(losses).mean()) if losses else float("nan")
    return Evaluation(loss, scores["exact_match"], scores["f1"], len(gold), time.perf_counter() - began)
