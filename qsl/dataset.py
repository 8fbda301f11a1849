"""The SQuAD v1.1 dev set: find it, check it is the official file, split it into examples."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
SHIPPED_DATASET = SHIPPED_DIR / "dev-v1.1.json.gz"
SHIPPED_VOCAB = SHIPPED_DIR / "vocab.txt"
DATASET_SHA256 = "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


@dataclass(frozen=True)
class Example:
    """One question; `doc_tokens` is the whitespace split of its paragraph, shared by its questions."""

    qas_id: str
    question: str
    doc_tokens: list[str]
    answers: list[str]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified(path: Path, expected_sha256: str, what: str) -> bytes:
    """The file's bytes (gunzipped if .gz), refused unless they hash to the published value."""
    if not path.is_file():
        raise HarnessError(f"{what} not found at {path}; run `make download` or pass the right path")
    raw = path.read_bytes()
    try:
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as error:
        raise HarnessError(f"{what} at {path} is not a valid gzip file ({error}); "
                           "delete it and run `make download`") from error
    digest = sha256_bytes(data)
    if digest != expected_sha256:
        raise HarnessError(f"{what} at {path} has sha256 {digest}, expected {expected_sha256}; "
                           "it is corrupt or not the official file: delete it and run `make download`")
    return data


def load_dataset(path: Path = SHIPPED_DATASET) -> dict:
    """The official dev set as parsed JSON (the `data` list lives under key "data")."""
    return json.loads(read_verified(path, DATASET_SHA256, "SQuAD v1.1 dev set"))


def _is_whitespace(char: str) -> bool:
    return char in " \t\r\n" or ord(char) == 0x202F


WORD = re.compile("[^ \t\r\n\u202f]+")  # a run of characters that are not the reference's whitespace


def split_whitespace(text: str) -> list[str]:
    """Whitespace split exactly as the reference does (it also treats U+202F as a space): the words of
    split_whitespace_with_offsets, found by a regular expression (a scoring run splits 2,067 paragraphs)."""
    return WORD.findall(text)


def split_whitespace_with_offsets(text: str) -> tuple[list[str], list[int]]:
    """The words, and for each character the index of the word it belongs to (training finds answers by it)."""
    words: list[str] = []
    word_of_char: list[int] = []
    previous_is_space = True
    for char in text:
        if _is_whitespace(char):
            previous_is_space = True
        elif previous_is_space:
            words.append(char)
            previous_is_space = False
        else:
            words[-1] += char
        word_of_char.append(len(words) - 1)
    return words, word_of_char


def read_examples(dataset: dict) -> list[Example]:
    """Every question of the dev set, in file order (the order features and logs index)."""
    examples = []
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            doc_tokens = split_whitespace(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = [answer["text"] for answer in qa["answers"]]
                examples.append(Example(qa["id"], qa["question"], doc_tokens, answers))
    return examples
