"""What a run feeds the model: SQuAD features (MLPerf's, or at another SEQ_LEN) or generated samples.

DATA, SEQ_LEN, DOC_STRIDE, SAMPLES, LENGTHS and SEED are read and checked here, before anything is
loaded; the run names its logs and notes after the resolved source, so runs on other data never pass
for MLPerf's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError
from common.values import whole_number
from qsl.features import MAX_QUERY_LENGTH, MAX_SEQ_LENGTH, Featurisation, ModelInputs
from qsl.synthetic import LENGTHS, layout_featurisation

DATA_SOURCES = ("squad", "synthetic")
SEQ_LEN_RANGE = (32, 512)
SQUAD_MIN_SEQ_LEN = MAX_QUERY_LENGTH + 4  # [CLS], a full query, two [SEP] and one context token
DEFAULT_SAMPLES = 10833  # as many as MLPerf's dev features


@dataclass(frozen=True)
class SampleSource:
    data: str  # "squad" or "synthetic"
    featurisation: Featurisation  # SQuAD's own, or the one whose features lay out the generated samples
    samples: int | None = None  # synthetic only
    lengths: str | None = None  # synthetic only: "squad" or "full"
    seed: int | None = None  # synthetic only

    @property
    def is_mlperf(self) -> bool:
        return self.data == "squad" and self.featurisation.is_mlperf

    @property
    def label(self) -> str:
        """The configuration folder's data part: empty for MLPerf's features."""
        if self.is_mlperf:
            return ""
        if self.data == "squad":
            return f"-squad-seq{self.featurisation.seq_length}-stride{self.featurisation.doc_stride}"
        return (f"-synthetic-seq{self.featurisation.seq_length}" + ("-full" if self.lengths == "full" else "")
                + (f"-n{self.samples}" if self.samples != DEFAULT_SAMPLES else "")
                + (f"-seed{self.seed}" if self.seed else ""))

    def notes(self) -> list[str]:
        """What the console and mlperf_log_summary.txt say of a run on anything but MLPerf's features."""
        seq_length = self.featurisation.seq_length
        if self.data == "synthetic":
            lengths = f"all {seq_length}" if self.lengths == "full" else "as SQuAD dev's"
            return [f"SYNTHETIC DATA: {self.samples} generated samples of at most {seq_length} tokens (lengths "
                    f"{lengths}, seed {self.seed}),",
                    "not SQuAD: a performance figure only, which no submission accepts."]
        if not self.is_mlperf:
            return [f"NOT THE MLPERF SETTING: SQuAD featurised with {self.featurisation.describe()};",
                    "bert-99 is 384, 128, 64: no bert-99 verdict, and no submission accepts it."]
        return []


def resolve_samples(data: str | None = None, seq_len: str | int | None = None, doc_stride: str | int | None = None,
                    samples: str | int | None = None, lengths: str | None = None,
                    seed: str | int | None = None) -> SampleSource:
    data = data or "squad"
    if data not in DATA_SOURCES:
        raise HarnessError(f"unknown DATA={data}; choose squad (the dev set, the default) or synthetic (generated)")
    seq_length = whole_number("SEQ_LEN", seq_len, *SEQ_LEN_RANGE) or MAX_SEQ_LENGTH
    stride = whole_number("DOC_STRIDE", doc_stride, 1)
    if data == "squad":
        given = [name for name, value in (("SAMPLES", samples), ("LENGTHS", lengths), ("SEED", seed))
                 if value not in (None, "")]
        if given:
            raise HarnessError(f"{', '.join(given)} describe generated samples (DATA=synthetic); SQuAD has its "
                               "own features (COUNT= runs the first N of them)")
        if seq_length < SQUAD_MIN_SEQ_LEN:
            raise HarnessError(f"SQuAD features need SEQ_LEN={SQUAD_MIN_SEQ_LEN} or more ([CLS], a query of up to "
                               f"{MAX_QUERY_LENGTH} tokens, two [SEP] and some context); use DATA=synthetic below that")
        return SampleSource("squad", Featurisation(seq_length, stride or seq_length // 3, MAX_QUERY_LENGTH))
    if stride is not None:
        raise HarnessError("DOC_STRIDE= windows SQuAD's paragraphs (DATA=squad); generated samples take SEQ_LEN, "
                           "SAMPLES, LENGTHS and SEED")
    if (lengths or "squad") not in LENGTHS:
        raise HarnessError(f"unknown LENGTHS={lengths}; choose squad (SQuAD dev's distribution) or full "
                           "(every sample SEQ_LEN tokens)")
    return SampleSource("synthetic", layout_featurisation(seq_length),
                        whole_number("SAMPLES", samples, 1) or DEFAULT_SAMPLES, lengths or "squad",
                        whole_number("SEED", seed, 0) or 0)


def load_samples(source: SampleSource, build_dir: Path, log=print) -> ModelInputs:
    """The features (cached under build/data), or samples generated in their layouts."""
    from qsl.cache import features_path, load_features
    from qsl.synthetic import synthetic_samples

    features = load_features(features_path(build_dir, source.featurisation), log=log,
                             featurisation=source.featurisation)
    if source.data == "squad":
        return features
    return synthetic_samples(features, source.samples, source.lengths, source.seed)


def sample_source(args: argparse.Namespace) -> SampleSource:
    """DATA, SEQ_LEN, ... as given on the command line, checked."""
    return resolve_samples(args.data, args.seq_len, args.doc_stride, args.samples, args.lengths, args.seed)
