"""Our own submission checker: the official checker's bert-99 rules, plus what it lets through.

The official checker accepts an INVALID performance run, ignores some LoadGen errors, does not
enforce accuracy in the open division and crashes on non-integer node counts; we flag all of them.
Rules a full submission needs but a short (SCC) one may skip are errors in full mode and warnings
in short mode; a damaged or tampered tree is an error in both.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from accuracy.evaluate import REFERENCE_F1
from harness.compliance import F1_DELTA_PERCENT
from harness.detail_log import RESULT_KEYS, read_detail_log
from harness.finished_runs import PASS_LINE, TEST, VERIFY_FILES
from submission.log_consistency import accuracy_txt_problems, performance_problems
from submission.system import AVAILABILITIES, INTEGER_FIELDS, MEANINGFUL_FIELDS, REQUIRED_FIELDS
from submission.tree import BENCHMARK, MANIFEST, TEST01_FILES, scenario_paths, source_dir

TARGET_F1 = REFERENCE_F1 * 0.99
DATASET_SIZE = 10833
MIN_DURATION_MS = 600_000
SEEDS = {  # what the official checker expects of each layout's round
    "v6": {"qsl_rng_seed": 2085463073848966840, "sample_index_rng_seed": 2747215439041700203,
           "schedule_rng_seed": 16159082839903944936},
    "v5": {"qsl_rng_seed": 1780908523862526354, "sample_index_rng_seed": 14771362308971278857,
           "schedule_rng_seed": 18209322760996052031},
}
REQUIRED_SCENARIOS = {"edge": ("Offline", "SingleStream"), "datacenter": ("Offline", "Server")}
MIN_QUERIES = {"SingleStream": 1024}
SERVER_LATENCY_NS = 130_000_000
F1_PATTERN = re.compile(r"^{[\"']exact_match[\"']:\s*[\d.]+,\s*[\"']f1[\"']:\s*([\d.]+)}")
HASH_PATTERN = re.compile(r"^hash=([\w\d]+)$")
MAX_ACCURACY_LOG_BYTES = 10 * 1024
TEST01_ACCURACY_FILES = tuple(name.removeprefix("accuracy/") for name in TEST01_FILES if name.startswith("accuracy/"))
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")


@dataclass
class Report:
    short: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors.append(message)

    def full_only(self, message: str) -> None:
        """A rule a full submission must meet; a short one may not."""
        (self.warnings if self.short else self.errors).append(message + (" (fails a full submission)"
                                                                          if self.short else ""))

    @property
    def passed(self) -> bool:
        return not self.errors


def check_manifest(root: Path, report: Report) -> None:
    manifest = root / MANIFEST
    if not manifest.is_file():
        report.error(f"{MANIFEST} missing: the tree was not built by `make submission`")
        return
    listed = set()
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed.add(name)
        path = root / name
        if not path.is_file():
            report.error(f"{name} is listed in {MANIFEST} but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            report.error(f"{name} was modified after the submission was built (sha256 mismatch)")
    for path in root.rglob("*"):
        name = path.relative_to(root).as_posix()
        if path.is_file() and name != MANIFEST and name not in listed:
            report.error(f"{name} was added after the submission was built")


def is_count(value: object) -> bool:
    """What the official checker's int() takes as a count: 3 or "3", never True, 2.5 or "N/A"."""
    return (type(value) is int and value >= 0) or (isinstance(value, str) and value.strip().isdigit())


def check_system(path: Path, division: str, submitter: str, report: Report) -> dict:
    if not path.is_file():
        report.error(f"system description {path} missing")
        return {}
    try:
        system = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        report.error(f"{path} is not valid JSON ({error})")
        return {}
    for name in REQUIRED_FIELDS:
        if name not in system:
            report.error(f"{path.name}: required field {name} missing")
    for name in INTEGER_FIELDS:
        if name in system and not is_count(system[name]):
            report.error(f"{path.name}: {name} must be a whole number (an integer or a string of digits), "
                         f"found {system[name]!r}")
    if str(system.get("status", "")).lower() not in AVAILABILITIES:
        report.error(f"{path.name}: status {system.get('status')!r} is not one of {', '.join(AVAILABILITIES)}")
    if system.get("division") != division:
        report.error(f"{path.name}: division {system.get('division')!r} but the tree says {division!r}")
    if system.get("submitter") != submitter:
        report.error(f"{path.name}: submitter {system.get('submitter')!r} but the tree says {submitter!r}")
    for name in MEANINGFUL_FIELDS:
        if name in system and (not system[name] or not str(system[name]).strip()):
            report.error(f"{path.name}: {name} is empty ({system[name]!r}); the official checker needs a meaningful "
                         "value (write \"0\" for no accelerators, \"N/A\" for what does not apply)")
    return system


def check_performance(run_dir: Path, scenario: str, layout: str, report: Report, label: str = "performance",
                      shown: str | None = None) -> None:
    where = f"{scenario} {label}"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        if not (run_dir / name).is_file():
            report.error(f"{where}: {name} missing")
            return
    log = read_detail_log(run_dir / "mlperf_log_detail.txt")
    if log.get("effective_scenario") != scenario or log.get("effective_test_mode") != "PerformanceOnly":
        report.error(f"{where}: the log is a {log.get('effective_scenario')} {log.get('effective_test_mode')} "
                     "run, not this scenario's performance run")
        return
    for problem in performance_problems(run_dir, shown):  # tampering: an error in short mode too
        report.error(problem)
    if log.get("result_validity") != "VALID":
        report.full_only(f"{where}: LoadGen result is {log.get('result_validity')}, not VALID")
    for message in log.errors:
        report.full_only(f"{where}: LoadGen error: {message}")
    if "NOT COMPLIANT: quick run" in (run_dir / "mlperf_log_summary.txt").read_text():
        report.full_only(f"{where}: a quick run (COUNT) with lowered LoadGen minimums")
    for name, expected in SEEDS[layout].items():
        found = log.get(f"effective_{name}")
        if found != expected:
            note = " (LoadGen 6.x writes the v6.1 seeds: only --layout v6 can pass)" if layout == "v5" else ""
            report.full_only(f"{where}: {name} is {found}, the round expects {expected}{note}")
    if (log.get("effective_min_duration_ms") or 0) < MIN_DURATION_MS:
        report.full_only(f"{where}: minimum duration {log.get('effective_min_duration_ms')} ms < {MIN_DURATION_MS}")
    if (log.get("effective_performance_sample_count") or 0) < DATASET_SIZE:
        report.full_only(f"{where}: performance sample count {log.get('effective_performance_sample_count')} "
                         f"< {DATASET_SIZE}")
    if scenario == "Offline" and (log.get("effective_samples_per_query") or 0) < DATASET_SIZE:
        report.full_only(f"{where}: {log.get('effective_samples_per_query')} samples per query < {DATASET_SIZE}")
    if scenario in MIN_QUERIES and (log.get("effective_min_query_count") or 0) < MIN_QUERIES[scenario]:
        report.full_only(f"{where}: minimum query count {log.get('effective_min_query_count')} "
                         f"< {MIN_QUERIES[scenario]}")
    if scenario != "Offline" and not log.get("early_stopping_met", False):
        report.full_only(f"{where}: early stopping not met ({log.get('early_stopping_result')})")
    result_key = RESULT_KEYS[scenario][0]
    if not log.get(result_key):  # what the official checker reports as the result: 0 is none, in any mode
        why = f"early stopping not met: {log.get('early_stopping_result')}; " if scenario != "Offline" else ""
        report.error(f"{where}: no result to report ({result_key} is {log.get(result_key)}); {why}"
                     f"rerun `make perf SCENARIO={scenario}` with a larger COUNT")
    if scenario == "Server" and (log.get("effective_target_latency_ns") or 0) > SERVER_LATENCY_NS:
        report.full_only(f"{where}: target latency {log.get('effective_target_latency_ns')} ns > 130 ms")


def official_f1(accuracy_txt: Path) -> float | None:
    """F1 from the scorer's {"exact_match": X, "f1": Y} line, as the official checker reads it."""
    lines = accuracy_txt.read_text().splitlines()
    return next((float(match.group(1)) for line in lines if (match := F1_PATTERN.match(line))), None)


def check_accuracy(run_dir: Path, scenario: str, report: Report, shown: str | None = None) -> float | None:
    where = f"{scenario} accuracy"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt", "mlperf_log_accuracy.json"):
        if not (run_dir / name).is_file():
            report.error(f"{where}: {name} missing")
            return None
    for problem in accuracy_txt_problems(run_dir, shown):
        report.error(problem)
    if (run_dir / "mlperf_log_accuracy.json").stat().st_size > MAX_ACCURACY_LOG_BYTES:
        report.error(f"{where}: mlperf_log_accuracy.json is not truncated (> 10 KB)")
    lines = (run_dir / "accuracy.txt").read_text().splitlines()
    f1 = official_f1(run_dir / "accuracy.txt")
    if f1 is None:
        report.error(f"{where}: accuracy.txt has no official {{\"exact_match\": X, \"f1\": Y}} line")
    if not any(HASH_PATTERN.match(line) for line in lines):
        report.error(f"{where}: accuracy.txt has no hash= line")
    log = read_detail_log(run_dir / "mlperf_log_detail.txt")
    if log.get("effective_test_mode") != "AccuracyOnly" or log.get("effective_scenario") != scenario:
        report.error(f"{where}: the log is a {log.get('effective_scenario')} {log.get('effective_test_mode')} run")
    for message in log.errors:
        report.full_only(f"{where}: LoadGen error: {message}")
    covered = log.get("effective_accuracy_sample_count", log.get("qsl_reported_total_count"))
    if covered != DATASET_SIZE:
        report.full_only(f"{where}: covers {covered} samples, not the whole dataset ({DATASET_SIZE})")
    if f1 is not None and f1 < TARGET_F1:
        report.full_only(f"{where}: F1 {f1:.3f} is below the bert-99 target {TARGET_F1:.5f}")
    return f1


def required_scenarios(system_type: object) -> tuple[str, ...]:
    """The scenarios a closed bert-99 submission must hold for this system type (its first, if several)."""
    return REQUIRED_SCENARIOS.get(str(system_type).split(",")[0].strip(), ())


def check_test01(directory: Path, scenario: str, layout: str, report: Report, shown: str | None = None) -> None:
    """What the official checker reads of TEST01: the two verdicts, the run's logs, and the F1 fallback."""
    where = f"{scenario} {TEST}"
    required = (*VERIFY_FILES, "performance/run_1/mlperf_log_summary.txt", "performance/run_1/mlperf_log_detail.txt")
    missing = [name for name in required if not (directory / name).is_file()]
    if missing:
        report.full_only(f"{where}: {', '.join(missing)} missing; rerun `make compliance SCENARIO={scenario}`")
        return
    check_performance(directory / "performance" / "run_1", scenario, layout, report, label=TEST,
                      shown=f"{shown or directory}/performance/run_1")
    verdicts = {name: [line.strip() for line in (directory / name).read_text().splitlines()] for name in VERIFY_FILES}
    if PASS_LINE not in verdicts["verify_performance.txt"]:
        report.full_only(f"{where}: the performance check did not pass "
                         f"({(verdicts['verify_performance.txt'] or ['an empty verify_performance.txt'])[-1]})")
    if PASS_LINE in verdicts["verify_accuracy.txt"]:
        return
    files = sorted(path.name for path in (directory / "accuracy").glob("*"))
    if files != sorted(TEST01_ACCURACY_FILES):
        report.full_only(f"{where}: responses differ from the accuracy run's and accuracy/ holds {files or 'nothing'}, "
                         f"not {', '.join(TEST01_ACCURACY_FILES)}")
        return
    baseline, compliance = (official_f1(directory / "accuracy" / name) or 0.0
                            for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"))
    delta = abs(1 - baseline / compliance) * 100 if baseline and compliance else float("inf")
    if delta > F1_DELTA_PERCENT:
        report.full_only(f"{where}: responses differ from the accuracy run's and F1 moved {delta:.3f}% "
                         f"(accuracy run {baseline}, {TEST} run {compliance}; limit {F1_DELTA_PERCENT:g}%)")


def check_measurements(directory: Path, file_name: str, scenario: str, report: Report) -> None:
    for name in (file_name, "user.conf", "README.md"):
        if not (directory / name).is_file():
            report.error(f"{scenario}: {directory.name}/{name} missing")
            return
    try:
        data = json.loads((directory / file_name).read_text())
    except json.JSONDecodeError as error:
        report.error(f"{scenario}: {file_name} is not valid JSON ({error})")
        return
    for name in MEASUREMENT_FIELDS:
        if name not in data:
            report.error(f"{scenario}: {file_name} lacks {name}")


def check_tree(root: Path, layout: str, short: bool) -> Report:
    """Validate the tree under `root` (the folder holding the division folder)."""
    report = Report(short)
    check_manifest(root, report)
    divisions = [path for path in root.iterdir() if path.is_dir()]
    if len(divisions) != 1 or not any(divisions[0].iterdir()):
        report.error(f"{root} must hold exactly one division folder with one submitter inside")
        return report
    division = divisions[0].name
    submitter = next(divisions[0].iterdir()).name
    if division == "closed" and short:
        report.warnings.append("a short submission is normally made in the open division")
    systems = sorted((divisions[0] / submitter / "systems").glob("*.json"))
    if not systems:
        report.error("no systems/<system>.json")
        return report
    for system_path in systems:
        system_id = system_path.stem
        system = check_system(system_path, division, submitter, report)
        if not (root / source_dir(layout, division, submitter)).is_dir():
            report.error(f"{source_dir(layout, division, submitter)} (the source as run) missing")
        results = divisions[0] / submitter / "results" / system_id / BENCHMARK
        scenarios = sorted(path.name for path in results.iterdir() if path.is_dir()) if results.is_dir() else []
        if not scenarios:
            report.error(f"no results under {results.relative_to(root)}")
        for scenario in scenarios:
            paths = scenario_paths(layout, division, submitter, system_id, scenario)
            check_performance(root / paths.performance, scenario, layout, report, shown=str(paths.performance))
            check_accuracy(root / paths.accuracy, scenario, report, shown=str(paths.accuracy))
            check_measurements(root / paths.measurements_dir, paths.measurements_file, scenario, report)
            if (root / paths.compliance).is_dir():
                check_test01(root / paths.compliance, scenario, layout, report, str(paths.compliance))
            elif division == "closed":
                report.full_only(f"{scenario}: compliance test {TEST} missing (required in the closed division): "
                                 f"run `make compliance SCENARIO={scenario}`")
        required = required_scenarios(system.get("system_type", "edge"))
        for scenario in required:  # a closed submission's rule; a short (open) one may hold fewer
            if scenario not in scenarios:
                report.full_only(f"required scenario {scenario} for system type {system.get('system_type')} is "
                                 f"missing: run `make all SCENARIOS={scenario}` with the settings of the others "
                                 "(their README.md gives the commands)")
    return report
