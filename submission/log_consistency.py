"""Does a run's own record support its result? What an edited figure cannot keep consistent.

The summary against the detail log, figure by figure; the detail log's result against its sample count,
duration and latencies (LoadGen derives one from the others: results.cc); accuracy.txt's verdicts against
its own F1 and the accuracy run's sample count. The official checker reads the detail log; a summary that
says otherwise, or a detail log whose result its own numbers contradict, is a tampered or damaged run.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from accuracy.evaluate import REFERENCE_F1, TARGETS
from harness.detail_log import DetailLog, read_detail_log

SUMMARY_KEYS = {  # a summary line's label -> the detail log's key
    "Scenario": "effective_scenario", "Mode": "effective_test_mode", "Result is": "result_validity",
    "Samples per second": "result_samples_per_second",
    "Completed samples per second": "result_completed_samples_per_sec",
    "Scheduled samples per second": "result_scheduled_samples_per_sec",
    "QPS w/ loadgen overhead": "result_qps_with_loadgen_overhead",
    "QPS w/o loadgen overhead": "result_qps_without_loadgen_overhead",
    "Min latency (ns)": "result_min_latency_ns", "Max latency (ns)": "result_max_latency_ns",
    "Mean latency (ns)": "result_mean_latency_ns",
}
PERCENTILE = re.compile(r"^(\d+(?:\.\d+)?)(?:th)? percentile latency \(ns\)$")
EARLY_STOPPING = re.compile(r"^Early stopping \d+(?:\.\d+)?th percentile estimate$")
PARAMETER = re.compile(r"^([a-z][a-z_]*)(?: \((ns|ms)\))?$")
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
CLOCK_RESOLUTION_S = 0.002  # power_begin and power_end are written to the millisecond
SEQUENTIAL_SHARE = 0.5  # SingleStream and MultiStream queries run one after another: their latencies fill the run
F1_LINE = re.compile(r'^\{"exact_match": ([-\d.e]+), "f1": ([-\d.e]+)\}$')
VERDICT_LINE = re.compile(r"^(bert-99(?:\.9)?): (PASS|FAIL) \(F1 ([\d.]+) vs target")
PARTIAL_LINE = re.compile(r"^PARTIAL LOG: \d+ of \d+ questions answered \((\d+) samples logged\)")


def summary_values(path: Path) -> dict[str, str]:
    """Each `label : value` line of mlperf_log_summary.txt (the first of each label)."""
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        label, separator, value = line.strip().lstrip("* ").partition(":")
        if separator and value.strip():
            values.setdefault(label.strip(), value.strip())
    return values


def detail_key(label: str, scenario: str) -> str | None:
    """The detail log's key for a summary label, or None for lines with no counterpart."""
    if label in SUMMARY_KEYS:
        return SUMMARY_KEYS[label]
    if match := PERCENTILE.match(label):
        return f"result_{float(match.group(1)):.2f}_percentile_latency_ns"
    if EARLY_STOPPING.match(label):
        return {"SingleStream": "early_stopping_latency_ss", "MultiStream": "early_stopping_latency_ms"}.get(scenario)
    if match := PARAMETER.match(label):
        return f"effective_{match.group(1)}" + (f"_{match.group(2)}" if match.group(2) else "")
    return None


def same_value(text: str, value: object) -> bool:
    """The summary's printed figure is the detail log's, to the digits it prints."""
    if isinstance(value, bool):
        return text.lower() in (("1", "true", "yes") if value else ("0", "false", "no"))
    if isinstance(value, int) and re.fullmatch(r"-?\d+", text):
        return int(text) == value
    if isinstance(value, (int, float)):
        try:
            printed = float(text)
        except ValueError:
            return False
        decimals = len(text.partition(".")[2]) if "." in text and "e" not in text.lower() else 0
        return abs(printed - value) <= 0.5 * 10 ** -decimals + 1e-6 * abs(value)
    return text == str(value)


def summary_problems(run_dir: Path, log: DetailLog, shown: str) -> list[str]:
    where = f"{shown}/mlperf_log_summary.txt"
    scenario = str(log.get("effective_scenario"))
    problems = []
    for label, text in summary_values(run_dir / "mlperf_log_summary.txt").items():
        key = detail_key(label, scenario)
        if key is None or key not in log.values:
            continue
        if not same_value(text, log.get(key)):
            problems.append(f"{where} says {label} {text}, but mlperf_log_detail.txt says {key} {log.get(key)}: "
                            "the summary was edited, or is of another run")
    return problems


def run_duration_s(log: DetailLog) -> float | None:
    """From LoadGen's power_begin to power_end (the run's wall-clock span), or None where they are missing."""
    try:
        begin, end = (datetime.datetime.strptime(str(log.get(key)), "%m-%d-%Y %H:%M:%S.%f")
                      for key in ("power_begin", "power_end"))
    except ValueError:
        return None
    return (end - begin).total_seconds()


def close(value: float, expected: float, relative: float) -> bool:
    return abs(value - expected) <= relative * abs(expected)


def detail_problems(log: DetailLog, shown: str) -> list[str]:
    """A performance run's result against its own counts, duration and latencies."""
    where = f"{shown}/mlperf_log_detail.txt"
    scenario = log.get("effective_scenario")
    numbers = {key: log.get(key) for key in ("result_query_count", "effective_samples_per_query",
                                             "result_min_latency_ns", "result_max_latency_ns",
                                             "result_mean_latency_ns")}
    if any(not isinstance(value, (int, float)) for value in numbers.values()):
        return [f"{where} lacks {', '.join(key for key, value in numbers.items() if value is None)}: not a "
                "finished LoadGen performance run"]
    problems = []
    latencies = [log.get("result_min_latency_ns"), *(log.get(f"result_{p}_percentile_latency_ns") for p in PERCENTILES),
                 log.get("result_max_latency_ns")]
    latencies = [value for value in latencies if isinstance(value, (int, float))]
    if latencies != sorted(latencies) or not latencies[0] <= numbers["result_mean_latency_ns"] <= latencies[-1]:
        problems.append(f"{where}: its latencies are out of order (min, percentiles, max and mean cannot be "
                        "so): edited")
    queries = numbers["result_query_count"]
    samples = queries * (log.get("generated_samples_per_query", numbers["effective_samples_per_query"])
                         if scenario == "Offline" else 1)
    duration = run_duration_s(log)
    max_latency_s = numbers["result_max_latency_ns"] / 1e9
    if duration is not None and max_latency_s > duration + CLOCK_RESOLUTION_S:
        problems.append(f"{where}: a latency of {max_latency_s:.3f} s in a run of {duration:.3f} s: edited")
    if scenario == "Offline" and isinstance(rate := log.get("result_samples_per_second"), (int, float)):
        expected = samples / max_latency_s
        if not close(rate, expected, 1e-4):
            problems.append(f"{where}: result_samples_per_second is {rate}, but its {samples} samples answered "
                            f"within {max_latency_s:.6f} s make {expected:.4f}: the result was edited")
    if scenario == "Server" and duration and isinstance(rate := log.get("result_completed_samples_per_sec"),
                                                        (int, float)):
        expected = (samples - 1) / duration
        if not close(rate, expected, 0.005 + CLOCK_RESOLUTION_S / duration):
            problems.append(f"{where}: result_completed_samples_per_sec is {rate}, but {samples} samples over "
                            f"{duration:.3f} s make {expected:.4f}: the result was edited")
    if scenario in ("SingleStream", "MultiStream") and duration:
        busy = queries * numbers["result_mean_latency_ns"] / 1e9  # queries one after another
        if not SEQUENTIAL_SHARE * duration <= busy <= duration + CLOCK_RESOLUTION_S:
            problems.append(f"{where}: {queries} queries of {numbers['result_mean_latency_ns'] / 1e6:.3f} ms mean "
                            f"latency, one after another, fill {busy:.3f} s of a {duration:.3f} s run: the latencies "
                            "were edited")
        estimate_key = "early_stopping_latency_ss" if scenario == "SingleStream" else "early_stopping_latency_ms"
        estimate = log.get(estimate_key)
        if log.get("early_stopping_met") and isinstance(estimate, (int, float)) and estimate > 0 \
                and not latencies[0] <= estimate <= latencies[-1]:
            problems.append(f"{where}: {estimate_key} {estimate} lies outside the run's latencies "
                            f"({latencies[0]} to {latencies[-1]} ns): edited")
    if scenario == "SingleStream" and isinstance(rate := log.get("result_qps_without_loadgen_overhead"),
                                                 (int, float)):
        if not close(rate, 1e9 / numbers["result_mean_latency_ns"], 1e-3):
            problems.append(f"{where}: result_qps_without_loadgen_overhead {rate} is not 1 / its mean latency: "
                            "edited")
    minimum = log.get("effective_min_duration_ms")
    if duration is not None and log.get("result_min_duration_met") and isinstance(minimum, (int, float)) \
            and duration < minimum / 1000 - CLOCK_RESOLUTION_S:
        problems.append(f"{where}: says the minimum duration of {minimum / 1000:.0f} s was met in a run of "
                        f"{duration:.3f} s: edited")
    return problems


def performance_problems(run_dir: Path, shown: str | None = None) -> list[str]:
    """Everything in a performance run folder (summary and detail log) that its own logs contradict; `shown`:
    how messages name the folder (default its path)."""
    log = read_detail_log(run_dir / "mlperf_log_detail.txt")
    shown = shown or str(run_dir)
    return summary_problems(run_dir, log, shown) + detail_problems(log, shown)


def accuracy_txt_problems(run_dir: Path, shown: str | None = None) -> list[str]:
    """accuracy.txt's verdict lines against its own F1, and its partial-log line against the run's samples."""
    where = f"{shown or run_dir}/accuracy.txt"
    lines = (run_dir / "accuracy.txt").read_text(errors="replace").splitlines()
    official = F1_LINE.match(lines[0]) if lines else None
    if official is None:
        return []  # the checker reports the missing official line itself
    f1 = float(official.group(2))
    problems = []
    for line in lines[1:]:
        if match := VERDICT_LINE.match(line):
            target = REFERENCE_F1 * TARGETS[match.group(1)]
            if abs(float(match.group(3)) - f1) > 0.0005 or (match.group(2) == "PASS") != (f1 >= target):
                problems.append(f"{where}: '{line[:60]}...' does not follow from its own F1 {f1:.3f}: edited")
    samples = read_detail_log(run_dir / "mlperf_log_detail.txt").get("qsl_reported_total_count")
    partial = [int(match.group(1)) for line in lines if (match := PARTIAL_LINE.match(line))]
    if partial and partial != [samples]:
        problems.append(f"{where} says {partial[0]} samples were logged, but the run's mlperf_log_detail.txt "
                        f"covers {samples}: edited, or of another run")
    return problems
