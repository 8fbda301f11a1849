"""Reading LoadGen's mlperf_log_accuracy.json: one hex-encoded logits buffer per answered sample."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from common.errors import HarnessError
from qsl.features import PAD_LOGIT

DTYPES = ("float32", "float16", "float64", "int8", "int16", "int32", "int64")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_log_entries(path: Path) -> list[tuple[int, str]]:
    """(sample index, hex-encoded response) per logged response, in log order."""
    if path.is_dir():
        raise HarnessError(f"accuracy log {path} is a folder; give the mlperf_log_accuracy.json file in it")
    if not path.is_file():
        raise HarnessError(f"accuracy log {path} not found; run `make accuracy` first")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HarnessError(f"{path} is not valid JSON ({error}); is it a truncated or packaged log? "
                           "Use the full mlperf_log_accuracy.json from the run directory") from error
    if not isinstance(entries, list):
        raise HarnessError(f"{path} is not a LoadGen accuracy log (expected a JSON list)")
    result = []
    for position, entry in enumerate(entries):
        try:
            result.append((int(entry["qsl_idx"]), str(entry["data"])))
        except (KeyError, TypeError, ValueError) as error:
            raise HarnessError(f"{path}: entry {position} is malformed ({error!r}); "
                               "expected qsl_idx and hex data") from error
    return result


def read_accuracy_log(path: Path, num_features: int, seq_length: int, dtype: str = "float32",
                      transposed: bool = False, lengths: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """sample index -> float64 [seq_length, 2] (start, end) logits; a repeated index keeps its last entry."""
    return decode_entries(read_log_entries(path), path, num_features, seq_length, dtype, transposed, lengths)


def decode_entries(entries: list[tuple[int, str]], path: Path, num_features: int, seq_length: int,
                   dtype: str = "float32", transposed: bool = False,
                   lengths: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """read_accuracy_log for entries already read from `path` (named in errors).

    An entry shorter than the sequence is padded, as the reference pads it, but only where it still covers
    its feature's tokens (`lengths`, when given): a log of shorter samples (another SEQ_LEN) scored against
    these features would otherwise be read as nonsense and scored without a word.
    """
    if dtype not in DTYPES:
        raise HarnessError(f"unknown output dtype {dtype}; choose one of {', '.join(DTYPES)}")
    item_size = np.dtype(dtype).itemsize
    results: dict[int, np.ndarray] = {}
    for position, (sample_index, data) in enumerate(entries):
        try:
            raw = bytes.fromhex(data)
        except ValueError as error:
            raise HarnessError(f"{path}: entry {position} is malformed ({error!r}); "
                               "expected qsl_idx and hex data") from error
        if not 0 <= sample_index < num_features:
            raise HarnessError(f"{path}: entry {position} has qsl_idx {sample_index}, outside 0..{num_features - 1}")
        positions = len(raw) // (2 * item_size)
        if len(raw) == 0 or len(raw) % (2 * item_size):
            raise HarnessError(f"{path}: entry {position} holds {len(raw)} bytes, not [<= {seq_length}, 2] of "
                               f"{dtype}; pass --output-dtype matching the run")
        if positions > seq_length or (lengths is not None and positions < lengths[sample_index]):
            raise HarnessError(f"{path}: entry {position} holds {len(raw)} bytes, {positions} positions of [start, "
                               f"end] {dtype} logits, but sample {sample_index} is a feature of "
                               f"{'at most ' + str(seq_length) if positions > seq_length else lengths[sample_index]} "
                               f"tokens of SEQ_LEN={seq_length}: the log is of a run at another length (score it "
                               f"with --seq-len {positions} if that run used SEQ_LEN={positions}) or another "
                               "--output-dtype")
        values = np.frombuffer(raw, dtype).astype(np.float64)
        pairs = values.reshape(2, -1).T if transposed else values.reshape(-1, 2)
        logits = np.full((seq_length, 2), PAD_LOGIT)
        logits[:len(pairs)] = pairs
        results[sample_index] = logits
    if not results:
        raise HarnessError(f"{path} holds no samples; the accuracy run answered nothing")
    return results
