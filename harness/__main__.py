"""python -m harness {perf,accuracy,compliance,features,download}: what the Makefile targets call."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import (
    ArgumentParser,
    run_main,
)
from common.variables import add_variables
from configs import TEST01_AUDIT_CONFIG
from harness.run import run
from harness.run_config import RunConfig, RunOptions
from harness.summary import unmet_constraints
from qsl.features import DOC_STRIDE, MAX_SEQ_LENGTH
from qsl.samples import sample_source


def add_run_options(parser: argparse.ArgumentParser, target: str) -> None:
    add_variables(parser, target)
    parser.add_argument("--logs-dir", type=Path, default=None,
                        help="where the logs go (default <build-dir>/logs; make scale keeps each count's apart)")


def start_ranks(options: RunOptions, accuracy: bool) -> None:
    """Every setting checked first; then, for WORKERS=N from a plain process, ranks 1..N-1 start as copies of
    this command, and this one is rank 0."""
    from harness.distributed import launched_rank, start_local_ranks

    workers = RunConfig.from_options(options, accuracy).workers
    if workers > 1 and launched_rank() is None:
        start_local_ranks(workers, ["harness", *sys.argv[1:]])


def command_perf(args: argparse.Namespace) -> int | None:
    options = RunOptions.from_args(args)
    start_ranks(options, accuracy=False)
    run_dir, resolved = run(options, accuracy=False)
    if run_dir is None:  # a worker rank: rank 0 reports
        return None
    unmet = unmet_constraints(run_dir / "mlperf_log_summary.txt")
    reasons = f" (not satisfied: {', '.join(unmet)})" if unmet else ""
    if resolved.count is not None:
        reasons += f", NOT COMPLIANT (quick run, COUNT={resolved.count})"
    if resolved.data == "synthetic":
        reasons += ", SYNTHETIC DATA"
    elif resolved.seq_len != MAX_SEQ_LENGTH or resolved.doc_stride != DOC_STRIDE:
        reasons += f", NOT THE MLPERF SETTING (SEQ_LEN={resolved.seq_len}, DOC_STRIDE={resolved.doc_stride})"
    print(f"LoadGen result: {resolved.loadgen_result or 'unknown'}{reasons}; logs in {run_dir}")
    if resolved.count is not None and "Early stopping" in unmet:
        print("note: quick runs this small rarely satisfy LoadGen's early-stopping estimate; "
              "the summary above says how many queries it needs (COUNT counts samples; a MultiStream query is 8)")


def command_accuracy(args: argparse.Namespace) -> int | None:
    from accuracy.evaluate import evaluate_log, write_accuracy_txt
    from qsl.samples import load_samples

    options = RunOptions.from_args(args)
    start_ranks(options, accuracy=True)
    scored = []

    def score(work_dir: Path, _) -> None:  # in the run's folder before it takes its place: never unscored
        source = sample_source(args)
        features = load_samples(source, args.build_dir, log=lambda *_: None)
        result = evaluate_log(work_dir / "mlperf_log_accuracy.json", features,
                              predictions_path=work_dir / "predictions.json",
                              setting="" if source.is_mlperf else source.featurisation.describe())
        write_accuracy_txt(work_dir / "accuracy.txt", result)
        scored.append(result)

    run_dir, _ = run(options, accuracy=True, finish=score)
    if run_dir is None:  # a worker rank: rank 0 scores
        return None
    print(scored[0].official_line())
    for line in scored[0].verdict_lines():
        print(line)
    print(f"logs and accuracy.txt in {run_dir}")


def command_compliance(args: argparse.Namespace) -> int:
    from harness.compliance import run_test01

    test_dir, accuracy, performance = run_test01(args.build_dir, args.scenario, args.audit_config, args.model,
                                                 args.backend, args.trust_checkpoint, args.precision)
    for verification in (accuracy, performance):
        print("\n".join(verification.lines))
    passed = accuracy.passed and performance.passed
    print(f"TEST01 {args.scenario}: {'PASS' if passed else 'FAIL'} "
          f"(accuracy {'passed' if accuracy.passed else 'failed'}, performance "
          f"{'passed' if performance.passed else 'failed'}); results in {test_dir}")
    return 0 if passed else 1


def command_features(args: argparse.Namespace) -> None:
    from qsl.cache import features_path
    from qsl.samples import load_samples

    source = sample_source(args)
    features = load_samples(source, args.build_dir)
    path = features_path(args.build_dir, source.featurisation)
    what = f"{len(features)} generated samples, laid out as the features of {path}" \
        if source.data == "synthetic" else f"{path}: {len(features)} features"
    print(f"{what}, input_ids {features.input_ids.shape}")


def command_download(args: argparse.Namespace) -> None:
    from harness.download import download_all

    download_all(args.build_dir)


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(prog="python -m harness",
                            description="MLPerf Inference bert-99 (SQuAD v1.1) harness.")
    commands = result.add_subparsers(dest="command", required=True)
    perf = commands.add_parser("perf", help="LoadGen performance run")
    add_run_options(perf, "perf")
    perf.set_defaults(handler=command_perf)
    accuracy = commands.add_parser("accuracy", help="LoadGen accuracy run, then the official F1/EM")
    add_run_options(accuracy, "accuracy")
    accuracy.set_defaults(handler=command_accuracy)
    compliance = commands.add_parser(
        "compliance", help="compliance test TEST01: rerun a scenario's performance run with audit.config, "
                           "compare its logged responses with the accuracy run's and its result with the "
                           "performance run's",
        description="Compliance test TEST01, which a closed bert-99 submission needs for every scenario. It reruns "
                    "the scenario's finished performance run with the same settings, LoadGen logging a sample of "
                    "its responses, then checks them against the accuracy run and the result against the "
                    "performance run. Results in build/logs/<model>/<backend>/<configuration>/<scenario>/TEST01, which "
                    "`make submission` packages.")
    add_variables(compliance, "compliance", audit_config={"default": TEST01_AUDIT_CONFIG})
    compliance.set_defaults(handler=command_compliance)
    for name, handler, text in (("features", command_features, "write build/data/squad_features.npz"),
                                ("download", command_download, "fetch the dev set and MLPerf model into build/")):
        sub = commands.add_parser(name, help=text)
        add_variables(sub, name)
        sub.set_defaults(handler=handler)
    return result


def main() -> int | None:
    args = parser().parse_args()
    return args.handler(args)


if __name__ == "__main__":
    run_main(main)
