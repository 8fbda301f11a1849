"""Features cached on disk under a key of everything they depend on, so a stale cache is never used."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from common.files import save_atomically
from qsl.dataset import (
    DATASET_SHA256,
    SHIPPED_DATASET,
    SHIPPED_VOCAB,
    VOCAB_SHA256,
    load_dataset,
    read_examples,
    read_verified,
)
from qsl.features import MLPERF, Featurisation, SquadFeatures, featurize

FORMAT_VERSION = 1


def cache_key(dataset_sha256: str, vocab_sha256: str, featurisation: Featurisation = MLPERF) -> str:
    parameters = {"dataset": dataset_sha256, "vocab": vocab_sha256, "max_seq_length": featurisation.seq_length,
                  "doc_stride": featurisation.doc_stride, "max_query_length": featurisation.max_query_length,
                  "format": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()


def features_path(build_dir: Path, featurisation: Featurisation = MLPERF) -> Path:
    return build_dir / "data" / featurisation.cache_name


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    save_atomically(lambda name: np.savez(name, **arrays), path)


def _read_cache(path: Path, key: str) -> SquadFeatures | None:
    try:
        with np.load(path) as cached:
            if str(cached["cache_key"]) != key:
                return None
            return SquadFeatures(**{name: cached[name] for name in SquadFeatures.__dataclass_fields__})
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # truncated or not an npz at all
        return None


def load_features(cache_path: Path, dataset_path: Path = SHIPPED_DATASET,
                  vocab_path: Path = SHIPPED_VOCAB, log=print, featurisation: Featurisation = MLPERF) -> SquadFeatures:
    """Cached features when the key matches, else featurise (a few seconds) and cache."""
    read_verified(vocab_path, VOCAB_SHA256, "BERT vocabulary")
    key = cache_key(DATASET_SHA256, VOCAB_SHA256, featurisation)
    if cache_path.is_file():
        features = _read_cache(cache_path, key)
        if features is not None:
            return features
        log(f"features cache {cache_path} is stale or unreadable: rebuilding it")
    examples = read_examples(load_dataset(dataset_path))
    from qsl.tokenizer import load_tokenizer

    log(f"featurising {len(examples)} SQuAD questions ({featurisation.describe()})")
    features = featurize(examples, load_tokenizer(vocab_path), featurisation.seq_length, featurisation.doc_stride,
                         featurisation.max_query_length)
    save_npz(cache_path, {**features.as_arrays(), "cache_key": np.array(key)})
    log(f"wrote {len(features)} features to {cache_path}")
    return features
