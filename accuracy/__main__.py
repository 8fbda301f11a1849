"""python -m accuracy --log-file PATH: score any LoadGen bert accuracy log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from accuracy.evaluate import AccuracyResult, evaluate_log, write_accuracy_txt
from accuracy.loadgen_log import DTYPES
from common.cli import ArgumentParser, run_main
from common.errors import HarnessError


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(
        prog="python -m accuracy",
        description="Score a LoadGen mlperf_log_accuracy.json for bert-99 the way the MLPerf reference does "
                    "(n-best 20, max answer 30, official SQuAD v1.1 F1/EM) and write accuracy.txt beside it.")
    result.add_argument("--log-file", type=Path, required=True, help="LoadGen mlperf_log_accuracy.json")
    result.add_argument("--output-dtype", default="float32", choices=DTYPES,
                        help="element type the SUT answered with (default float32)")
    result.add_argument("--output-transposed", action="store_true",
                        help="logits stored as [2, seq] (all starts, then all ends) instead of [seq, 2]")
    result.add_argument("--build-dir", type=Path, default=Path("build"),
                        help="where the features cache lives (default build)")
    result.add_argument("--dataset", type=Path, default=None,
                        help="SQuAD v1.1 dev JSON (default: the copy shipped with the harness)")
    result.add_argument("--accuracy-txt", type=Path, default=None,
                        help="where to write accuracy.txt (default: beside the log)")
    result.add_argument("--predictions", type=Path, default=None,
                        help="also write qas_id -> answer predictions JSON here")
    result.add_argument("--seq-len", default=None,
                        help="the run's SEQ_LEN, when not MLPerf's 384 (its log holds that many positions)")
    result.add_argument("--doc-stride", default=None, help="the run's DOC_STRIDE (default SEQ_LEN // 3)")
    return result


def main() -> int:
    from qsl.samples import load_samples, resolve_samples

    args = parser().parse_args()
    seq_len, doc_stride = run_featurisation(args.log_file, args.seq_len, args.doc_stride)
    source = resolve_samples(seq_len=seq_len, doc_stride=doc_stride)
    features = load_samples(source, args.build_dir)
    result = evaluate_log(args.log_file, features, args.dataset, args.output_dtype, args.output_transposed,
                          args.predictions, "" if source.is_mlperf else source.featurisation.describe())
    print(result.official_line())
    for line in result.verdict_lines():
        print(line)
    accuracy_txt = args.accuracy_txt or args.log_file.with_name("accuracy.txt")
    earlier = scored_differently(accuracy_txt, result) if args.accuracy_txt is None else None
    if earlier:
        print(f"not written: {accuracy_txt} already scores this log differently ({earlier}); check "
              "--output-dtype, --output-transposed, --seq-len and --doc-stride, or give --accuracy-txt PATH (that "
              "path itself replaces it)",
              file=sys.stderr)
        return 1
    write_accuracy_txt(accuracy_txt, result)
    print(f"wrote {accuracy_txt}")
    return 0


def run_featurisation(log_file: Path, seq_len: str | None, doc_stride: str | None) -> tuple[object, object]:
    """SEQ_LEN and DOC_STRIDE of the run whose folder holds the log (its run_info.json), unless given; given
    ones that contradict the run are refused."""
    try:
        info = json.loads((log_file.parent / "run_info.json").read_text())
    except (OSError, json.JSONDecodeError):
        return seq_len, doc_stride
    ran = {"--seq-len": info.get("seq_len"), "--doc-stride": info.get("doc_stride")}
    for flag, given in (("--seq-len", seq_len), ("--doc-stride", doc_stride)):
        if given is not None and ran[flag] is not None and str(given) != str(ran[flag]):
            raise HarnessError(f"{flag} {given}, but the run in {log_file.parent} used {ran[flag]} (its "
                               "run_info.json); leave the flag out to score the log as it ran")
    return (seq_len if seq_len is not None else ran["--seq-len"],
            doc_stride if doc_stride is not None else ran["--doc-stride"])


def scored_differently(path: Path, result: AccuracyResult) -> str | None:
    """The official line of an accuracy.txt for the same log with another score: a run's result, kept."""
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    if f"hash={result.log_sha256}" not in lines or lines[0] == result.official_line():
        return None
    return lines[0]


if __name__ == "__main__":
    run_main(main)
