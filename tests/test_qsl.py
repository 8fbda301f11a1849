"""The QSL's features must be the MLPerf reference's, row for row."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from common.errors import HarnessError
from qsl.cache import load_features
from qsl.dataset import SHIPPED_DATASET, load_dataset, split_whitespace
from qsl.features import SquadFeatures, doc_spans, max_context_flags
from tests.conftest import cli_environment

# sha256 of the int32 arrays the reference's own create_squad_data.convert_examples_to_features produces
# (mlcommons/inference b66003e1, with transformers' BertTokenizer, run 2026-11-29; first found with a
# transcription of it): 10,833 features, bit-identical to ours.
REFERENCE_SHA256 = {
    "input_ids": "b75291371c078f3114d60dfd077a761037b5869761c0414a49cdc7e8b051605c",
    "input_mask": "9634bbdf85592ffd5aab26166a5ec089638e9641bd30cb4e3116faaecd394cee",
    "segment_ids": "e3923a65eeb01663acb1500587984717b638ff0148421191b79eec1042d4ef87",
}


def test_count_and_shape(features):
    assert len(features) == 10833
    assert features.input_ids.shape == (10833, 384)
    assert features.example_index.max() == 10569


@pytest.mark.parametrize("name", sorted(REFERENCE_SHA256))
def test_arrays_match_reference(features, name):
    array = np.ascontiguousarray(getattr(features, name), np.int32)
    assert hashlib.sha256(array.tobytes()).hexdigest() == REFERENCE_SHA256[name]


def test_first_feature_ids(features):
    # "Which NFL team represented the AFC at Super Bowl 50?" [SEP] "Super Bowl 50 was an American ..."
    assert features.input_ids[0, :16].tolist() == [101, 2029, 5088, 2136, 3421, 1996, 10511, 2012, 3565, 4605,
                                                   2753, 1029, 102, 3565, 4605, 2753]
    assert features.lengths[0] == 171
    assert features.segment_ids[0, :13].sum() == 0 and features.segment_ids[0, 13:171].all()
    assert features.input_ids[0, 170] == 102 and features.input_ids[0, 171:].sum() == 0


def test_long_paragraph_split_into_overlapping_windows(features):
    rows = np.flatnonzero(features.example_index == 250)
    assert rows.tolist() == [250, 251]
    assert features.lengths[rows].tolist() == [384, 298]
    # every document token is the max-context token of exactly one window
    first, second = rows
    words_first = features.token_to_orig[first][features.max_context[first]]
    words_second = features.token_to_orig[second][features.max_context[second]]
    assert features.max_context[rows].sum() == 250 + 164
    assert words_first.max() <= words_second.min()


def test_doc_spans_and_max_context():
    spans = doc_spans(10, max_tokens_for_doc=6, doc_stride=3)
    assert spans == [(0, 6), (3, 6), (6, 4)]
    # token 4 sits in spans 0 (left 4, right 1) and 1 (left 1, right 4): a tie, and the first span wins;
    # token 7: span 1 scores min(4, 1) + 0.06 = 1.06, span 2 min(1, 2) + 0.04 = 1.04
    assert max_context_flags(spans, 0).tolist() == [True, True, True, True, True, False]
    assert max_context_flags(spans, 1).tolist() == [False, False, True, True, True, False]
    assert max_context_flags(spans, 2).tolist() == [False, False, True, True]


def test_whitespace_split_matches_reference_rules():
    assert split_whitespace("a  b\tc\u202fd\n") == ["a", "b", "c", "d"]
    assert split_whitespace("x\u00a0y") == ["x\u00a0y"]  # only the reference's whitespace set splits


@pytest.mark.parametrize("damage", ["other key", "truncated", "not an npz"])
def test_stale_or_damaged_cache_is_rebuilt(tmp_path, features, damage):
    cache = tmp_path / "features.npz"
    arrays = {**features.as_arrays(), "cache_key": np.array("from another dataset or vocab")}
    arrays["input_ids"] = np.zeros_like(features.input_ids)
    np.savez(cache, **arrays)
    if damage == "truncated":  # an interrupted copy: the zip directory at the end is missing
        cache.write_bytes(cache.read_bytes()[:100_000])
    elif damage == "not an npz":
        cache.write_text("features")
    messages = []
    rebuilt = load_features(cache, log=messages.append)
    assert any("stale or unreadable" in message for message in messages)
    assert np.array_equal(rebuilt.input_ids, features.input_ids)


def test_corrupt_dataset_is_refused(tmp_path):
    broken = tmp_path / "dev-v1.1.json.gz"
    data = gzip.decompress(SHIPPED_DATASET.read_bytes()).replace(b"Super Bowl", b"Super Bawl", 1)
    broken.write_bytes(gzip.compress(data))
    with pytest.raises(HarnessError, match="sha256"):
        load_dataset(broken)
    broken.write_bytes(b"not gzip")
    with pytest.raises(HarnessError, match="not a valid gzip"):
        load_dataset(broken)
    with pytest.raises(HarnessError, match="make download"):
        load_dataset(tmp_path / "missing.json")


def test_loadgen_qsl_counts(features):
    from qsl.loadgen_qsl import SquadQSL

    full = SquadQSL(features)
    assert (full.count, full.performance_count) == (10833, 10833)
    full.close()
    quick = SquadQSL(features, 64)
    assert (quick.count, quick.performance_count) == (64, 64)
    quick.close()
    with pytest.raises(HarnessError, match="COUNT"):
        SquadQSL(features, 20000)


def test_calibration_set_is_mlperfs_list_of_dev_features(features):
    from qsl.calibration import calibration_indices
    from qsl.features import ModelInputs

    indices = calibration_indices(features)
    assert len(set(indices.tolist())) == len(indices) == 100
    assert indices[:3].tolist() == [4547, 9556, 2033] and indices.max() < 10833
    with pytest.raises(HarnessError, match="full dev set"):
        calibration_indices(SquadFeatures(**{name: array[:5000] for name, array in features.as_arrays().items()}))
    generated = ModelInputs(features.input_ids[:250, :128], features.input_mask[:250, :128],
                            features.segment_ids[:250, :128])  # no MLPerf list: 100 of its own, spread evenly
    spread = calibration_indices(generated)
    assert len(spread) == 100 and spread[0] == 0 and spread[-1] == 249


def test_caches_written_at_once_by_several_jobs_stay_whole(tmp_path):
    """Cluster jobs started together each build the same cache: none may crash or leave a mixed file."""
    script = ("import sys; import numpy as np; from pathlib import Path; from qsl.cache import save_npz\n"
              "for _ in range(3):\n"
              "    save_npz(Path(sys.argv[1]), {'a': np.full((2000, 4000), int(sys.argv[2]), np.int32)})\n")
    path = tmp_path / "cache.npz"
    jobs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(value)], env=cli_environment(),
                             stderr=subprocess.PIPE, text=True) for value in (1, 2, 3)]
    for job in jobs:
        assert job.wait(timeout=120) == 0, job.stderr.read()
    with np.load(path) as cached:
        assert len(np.unique(cached["a"])) == 1
    assert [file.name for file in tmp_path.iterdir()] == ["cache.npz"]


def test_the_fast_whitespace_split_is_the_reference_split():
    """split_whitespace (a regular expression) gives the words of the character loop that mirrors the reference."""
    from qsl.dataset import load_dataset, split_whitespace, split_whitespace_with_offsets

    contexts = [paragraph["context"] for article in load_dataset()["data"] for paragraph in article["paragraphs"]]
    for text in [*contexts, "", "  a  b ", "a\u202fb", "x\t\ny\r", "\u00a0a\u2009b"]:
        assert split_whitespace(text) == split_whitespace_with_offsets(text)[0], text[:80]
