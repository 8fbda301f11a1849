"""Decoding LoadGen accuracy logs the way the reference does, and refusing malformed ones."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from accuracy.loadgen_log import PAD_LOGIT, decode_entries, file_sha256, read_accuracy_log
from common.errors import HarnessError


def write_log(path, entries):
    path.write_text(json.dumps([{"seq_id": i, "qsl_idx": index, "data": data.hex().upper()}
                                for i, (index, data) in enumerate(entries)]))
    return path


def test_float32_interleaved_and_repeated_index(tmp_path):
    first = np.arange(768, dtype=np.float32).reshape(384, 2)
    log = write_log(tmp_path / "log.json", [(3, np.zeros((384, 2), np.float32).tobytes()), (3, first.tobytes())])
    results = read_accuracy_log(log, 10, 384)
    assert list(results) == [3]
    assert np.array_equal(results[3], first)  # the later entry wins, as in the reference


def test_float16_short_output_is_padded(tmp_path):
    short = np.ones((100, 2), np.float16)
    log = write_log(tmp_path / "log.json", [(0, short.tobytes())])
    logits = read_accuracy_log(log, 10, 384, dtype="float16")[0]
    assert np.all(logits[:100] == 1.0) and np.all(logits[100:] == PAD_LOGIT)


def test_transposed_layout(tmp_path):
    starts, ends = np.full(384, 1.0, np.float32), np.full(384, 2.0, np.float32)
    log = write_log(tmp_path / "log.json", [(0, np.concatenate([starts, ends]).tobytes())])
    logits = read_accuracy_log(log, 10, 384, transposed=True)[0]
    assert np.all(logits[:, 0] == 1.0) and np.all(logits[:, 1] == 2.0)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"qsl_idx": 0}', "expected a JSON list"),
    ('[{"qsl_idx": 0, "data": "zz"}]', "malformed"),
    ('[{"qsl_idx": 99, "data": "00000000"}]', "outside"),
    ('[{"qsl_idx": 0, "data": "000000"}]', "output-dtype"),
    ("[]", "no samples"),
])
def test_malformed_logs_are_refused(tmp_path, content, message):
    log = tmp_path / "log.json"
    log.write_text(content)
    with pytest.raises(HarnessError, match=message):
        read_accuracy_log(log, 10, 384)


@pytest.mark.parametrize("index, data, message", [
    (10, np.zeros((384, 2), np.float32).tobytes(), "qsl_idx 10, outside 0..9"),  # one past the last feature
    (0, b"", "holds 0 bytes"),  # an empty response: the SUT failed on it
    (0, np.zeros((385, 2), np.float32).tobytes(), "holds 3080 bytes"),  # longer than the sequence
])
def test_responses_out_of_bounds_are_refused(tmp_path, index, data, message):
    log = write_log(tmp_path / "log.json", [(index, data)])
    with pytest.raises(HarnessError, match=message):
        read_accuracy_log(log, 10, 384)


def test_decoding_entries_read_float32_start_end_pairs_by_default(tmp_path):
    pairs = np.stack([np.arange(384), -np.arange(384)], axis=1).astype(np.float32)
    logits = decode_entries([(2, pairs.tobytes().hex())], tmp_path / "log.json", 10, 384)[2]
    assert np.array_equal(logits, pairs)


def test_file_hash_covers_every_block(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 5)
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()
