"""The BERT uncased WordPiece tokenizer the reference uses (transformers' BertTokenizer)."""

from __future__ import annotations

from pathlib import Path

from common.errors import HarnessError
from qsl.dataset import SHIPPED_VOCAB

VOCAB_SIZE = 30522


def load_tokenizer(vocab_file: Path = SHIPPED_VOCAB):
    """BertTokenizer with the vocab passed positionally: as a keyword, transformers 5 builds a 5-token vocab."""
    from transformers import BertTokenizer

    if not vocab_file.is_file():
        raise HarnessError(f"vocabulary not found at {vocab_file}")
    tokenizer = BertTokenizer(str(vocab_file), do_lower_case=True)
    if len(tokenizer) != VOCAB_SIZE:
        raise HarnessError(f"tokenizer built from {vocab_file} has {len(tokenizer)} tokens, "
                           f"expected {VOCAB_SIZE}: not the BERT uncased vocabulary")
    return tokenizer
