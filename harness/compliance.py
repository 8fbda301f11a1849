"""MLPerf compliance test TEST01: does the performance run compute what the accuracy run scored?

With audit.config in its working directory, LoadGen makes a performance run that also logs a random
sample of its responses. The test passes when those responses equal the accuracy run's for the same
samples or, where they differ bit-wise (batches of other shapes can round differently), when F1 over
those samples is within 1% of the accuracy run's; and when the run's result is within 10% of the
performance run's (20% for short latencies). Its folder, <scenario>/TEST01 under build/logs, is laid
out as the submission tree holds it: verify_accuracy.txt, verify_performance.txt, accuracy/, performance/run_1/.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from accuracy.evaluate import evaluate_logits, write_accuracy_txt
from accuracy.loadgen_log import decode_entries, file_sha256, read_log_entries
from common.errors import HarnessError
from harness.detail_log import RESULT_KEYS, read_detail_log
from harness.finished_runs import PASS_LINE, TEST, ScenarioRuns, find_runs
from harness.run import run
from harness.run_config import RunOptions
from harness.run_folders import RunLock, keep_earlier
from harness.settings import COMMON_LOADGEN_KEYS, LOADGEN_KEYS, check_scenario
from qsl.cache import load_features
from qsl.features import MAX_SEQ_LENGTH, SquadFeatures

F1_DELTA_PERCENT = 1.0  # bert-99: how far F1 may move where responses differ bit-wise
AUDIT_FOUND = "Found Audit Config file"  # LoadGen's detail-log message when it obeyed audit.config


@dataclass
class Verification:
    passed: bool
    lines: list[str]


def scenario_runs(build_dir: Path, scenario: str, model: str | None, backend: str | None,
                  precision: str | None = None) -> ScenarioRuns:
    check_scenario(scenario)
    selection = find_runs(build_dir, model, backend, precision)
    complete = selection.runs
    for runs in complete:
        if runs.scenario == scenario:
            for note in selection.notes:
                print(f"note: {note}")
            return runs
    raise HarnessError(f"{TEST} reruns the {scenario} performance run and compares it with the {scenario} accuracy "
                       f"run: run `make perf SCENARIO={scenario}` and `make accuracy SCENARIO={scenario}` first "
                       f"(complete here: {', '.join(runs.scenario for runs in complete)}; BACKEND= and PRECISION= "
                       "choose runs)")


def run_test01(build_dir: Path, scenario: str, audit_config: Path, model: str | None = None,
               backend: str | None = None, trust_checkpoint: bool = False, precision: str | None = None,
               log=print) -> tuple[Path, Verification, Verification]:
    """Rerun the scenario's performance run exactly as it ran, with audit.config; verify; write TEST01/."""
    check_audit_config(audit_config)
    runs = scenario_runs(build_dir, scenario, model, backend, precision)
    info = runs.performance_info
    if info.get("workers", 1) > 1:
        raise HarnessError(f"the {scenario} performance run in {runs.performance_dir} ran over {info['workers']} "
                           f"ranks (WORKERS={info['workers']}); {TEST} reruns a run exactly as it ran, and cannot "
                           "start ranks yet: make the scenario's runs without WORKERS to audit them")
    options = RunOptions.from_run_info(info, build_dir, trust_checkpoint)
    test_dir = runs.performance_dir.parents[1] / TEST
    with RunLock(test_dir, f"{TEST} of {scenario}"):  # before moving a folder another one may be using
        kept = keep_earlier(test_dir)  # at once: however this test ends, the last one is not lost
        log(f"{TEST}: the {scenario} performance run again, with {audit_config}")
        try:
            accuracy, performance = _run_and_verify(options, runs, test_dir, audit_config, log)
        except Exception:
            shutil.rmtree(test_dir, ignore_errors=True)
            if kept is not None:
                kept.rename(test_dir)
            raise
    if kept is not None:
        log(f"the earlier {TEST} is kept in {kept}")
    return test_dir, accuracy, performance


AUDIT_LINE = re.compile(r"^([\w*-]+)\.([\w*]+)\.(\w+)\s*=\s*(-?[\d.]+)$")
LOGGED = ("accuracy_log_sampling_target", "accuracy_log_probability")  # what makes LoadGen log responses


def check_audit_config(path: Path) -> None:
    """Before the rerun: a file LoadGen reads as TEST01's, or refused with the line that is not."""
    if not path.is_file():
        raise HarnessError(f"audit config {path} not found; give TEST01's audit.config "
                           "(AUDIT_CONFIG=...), or leave it out for the shipped one")
    known = {"mode", *COMMON_LOADGEN_KEYS, *(key for keys in LOADGEN_KEYS.values() for key in keys)}
    settings = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = AUDIT_LINE.match(line)
        if match is None or match.group(3) not in known:
            raise HarnessError(f"AUDIT_CONFIG={path}, line {number} ({line[:60]!r}) is not a LoadGen setting "
                               "(model.scenario.key = number); give TEST01's audit.config from the round's "
                               "compliance/TEST01, or leave AUDIT_CONFIG out for the shipped one")
        settings[match.group(3)] = match.group(4)
    if settings.get("mode", "2") != "2":
        raise HarnessError(f"{path} sets mode = {settings['mode']}, which would have made LoadGen run in "
                           f"{'AccuracyOnly' if settings['mode'] == '1' else 'another'} mode; {TEST} is a "
                           "performance run (its audit.config sets `*.*.mode = 2`)")
    if not any(float(settings.get(key, 0)) > 0 for key in LOGGED):
        raise HarnessError(f"{path} sets neither {' nor '.join(LOGGED)} above 0: LoadGen would log no responses for "
                           f"{TEST} to compare")


def _run_and_verify(options: RunOptions, runs: ScenarioRuns, test_dir: Path, audit_config: Path,
                    log) -> tuple[Verification, Verification]:
    run_dir, _ = run(options, accuracy=False, log=log, audit_config=audit_config, compliance_test=TEST)
    detail = read_detail_log(run_dir / "mlperf_log_detail.txt")
    if not any(AUDIT_FOUND in warning for warning in detail.warnings):
        raise HarnessError(f"LoadGen did not report reading audit.config in {run_dir}; the run is not a {TEST} run")
    if detail.get("effective_test_mode") != "PerformanceOnly":
        raise HarnessError(f"{audit_config} made LoadGen run in {detail.get('effective_test_mode')} mode; {TEST} is "
                           "a performance run (its audit.config sets `*.*.mode = 2`)")
    accuracy_dir = test_dir / "accuracy"
    accuracy_dir.mkdir()
    test_log = accuracy_dir / "mlperf_log_accuracy.json"
    (run_dir / "mlperf_log_accuracy.json").rename(test_log)
    features = load_features(options.build_dir / "data" / "squad_features.npz", log=log)
    accuracy = verify_accuracy(runs.accuracy_dir / "mlperf_log_accuracy.json", test_log, features)
    performance = verify_performance(runs.performance_dir / "mlperf_log_detail.txt",
                                     run_dir / "mlperf_log_detail.txt", runs.scenario)
    (test_dir / "verify_accuracy.txt").write_text("\n".join(accuracy.lines) + "\n")
    (test_dir / "verify_performance.txt").write_text("\n".join(performance.lines) + "\n")
    return accuracy, performance


def verify_accuracy(reference_log: Path, test_log: Path, features: SquadFeatures) -> Verification:
    """Compare the logged responses with the accuracy run's; score both where they differ.

    Writes accuracy.txt (the test log scored), baseline_accuracy.txt and compliance_accuracy.txt (F1 over
    the samples both logged, from each run) beside `test_log`: the official checker's fallback reads them.
    """
    reference = dict(read_log_entries(reference_log))
    test = read_log_entries(test_log)
    lines = [f"{TEST} accuracy: responses logged in performance mode against the accuracy run's",
             f"accuracy run: {len(reference)} samples logged",
             f"{TEST} log: {test_log.name} ({len(test)} responses)"]
    if not test:
        return Verification(False, [*lines, "TEST FAIL: no responses logged; audit.config must set "
                                            "accuracy_log_sampling_target"])
    found = [(index, data) for index, data in test if index in reference]
    differing = sum(reference[index] != data for index, data in found)
    lines += [f"responses of samples the accuracy run logged: {len(found)}, of others: {len(test) - len(found)}",
              f"identical to the accuracy run's: {len(found) - differing}, different: {differing}"]
    identical = bool(found) and differing == 0
    if identical:
        lines.append(PASS_LINE)
    elif found:
        lines.append("the responses differ bit-wise from the accuracy run's; F1 over these samples decides")
    else:
        lines.append("TEST FAIL: none of the logged samples is in the accuracy run's log")
    test_logits = decode_entries(test, test_log, len(features), MAX_SEQ_LENGTH, lengths=features.lengths)
    directory = test_log.parent
    write_accuracy_txt(directory / "accuracy.txt", evaluate_logits(test_logits, features, file_sha256(test_log)))
    if not found:
        return Verification(False, lines)
    shared = sorted({index for index, _ in found})
    reference_logits = decode_entries([(index, reference[index]) for index in shared], reference_log,
                                      len(features), MAX_SEQ_LENGTH, lengths=features.lengths)
    baseline = evaluate_logits(reference_logits, features, file_sha256(reference_log))
    compliance = evaluate_logits({index: test_logits[index] for index in shared}, features, file_sha256(test_log))
    write_accuracy_txt(directory / "baseline_accuracy.txt", baseline)
    write_accuracy_txt(directory / "compliance_accuracy.txt", compliance)
    delta = abs(1 - baseline.f1 / compliance.f1) * 100 if compliance.f1 else float("inf")
    close = baseline.f1 > 0 and delta <= F1_DELTA_PERCENT
    lines.append(f"F1 over these {len(shared)} samples ({compliance.questions_answered} questions): accuracy run "
                 f"{baseline.answered_f1:.3f}, {TEST} run {compliance.answered_f1:.3f}, difference {delta:.3f}% "
                 f"(limit {F1_DELTA_PERCENT:g}%): {'PASS' if close else 'FAIL'}")
    return Verification(identical or close, lines)


def verify_performance(reference_detail: Path, test_detail: Path, scenario: str) -> Verification:
    """The compliance run's result against the performance run's, as MLPerf's TEST01 compares them."""
    key, unit, in_ns = RESULT_KEYS[scenario]
    scale = 1e-6 if in_ns else 1.0  # latencies in ms
    reference, test = read_detail_log(reference_detail), read_detail_log(test_detail)
    lines = [f"{TEST} performance: {key} of the {TEST} run against the performance run's"]
    problems = [f"the {name} is {log.get('result_validity')}, not VALID"
                for name, log in (("performance run", reference), (f"{TEST} run", test))
                if log.get("result_validity") != "VALID"]
    if scenario == "Server" and reference.get("effective_target_latency_ns") != test.get("effective_target_latency_ns"):
        problems.append("the two runs have different target latencies")
    if reference.get(key) is None or test.get(key) is None:
        problems.append(f"a log has no {key}")
    else:
        expected, value = float(reference.get(key)), float(test.get(key))
        short_latency = (scenario == "SingleStream" and expected <= 200_000) or (
            scenario == "MultiStream" and expected <= 1_600_000)
        limit = 0.20 if short_latency else 0.10
        lines.append(f"performance run {expected * scale:,.3f} {unit}, {TEST} run {value * scale:,.3f} {unit} "
                     f"({value / expected - 1:+.1%}; limit +/-{limit:.0%})")
        if not expected * (1 - limit) <= value <= expected * (1 + limit):
            problems.append(f"the result moved more than {limit:.0%}")
    lines.append(PASS_LINE if not problems else "TEST FAIL: " + "; ".join(problems))
    return Verification(not problems, lines)
