"""Each rule of our submission checker, broken alone in an otherwise compliant tree, gives exactly its message.

The tree is a real short submission (LoadGen runs of the small model) whose logs are then edited to
what a compliant run logs: 600 s minimum, 10,833 samples, a full accuracy run above the target, plus a
Server scenario. Every test breaks one rule by one step past its bound and expects that rule's error,
and nothing else; the same tree with the bound itself passes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.detail_log import PREFIX, read_detail_log
from submission.check import check_tree
from submission.log_consistency import detail_key, run_duration_s
from submission.tree import write_manifest

pytestmark = pytest.mark.slow  # its tree comes from LoadGen runs of a real model: not in make test-fast

COMPLIANT_F1 = 89.966  # just above the bert-99 target, 89.96526


def set_logged(detail: Path, key: str, value: object) -> None:
    """Give `key` this value in a LoadGen detail log, adding the record if LoadGen did not log it, and in the
    summary beside it wherever that prints the same figure (the checker refuses a summary its detail log
    contradicts)."""
    summary = detail.with_name("mlperf_log_summary.txt")
    if summary.is_file():
        scenario = read_detail_log(detail).get("effective_scenario")
        printed = str(value).lower() if isinstance(value, bool) else str(value)
        summary.write_text("\n".join(
            f"{line.partition(':')[0]}: {printed}"
            if detail_key(line.strip().lstrip("* ").partition(":")[0].strip(), str(scenario)) == key else line
            for line in summary.read_text().splitlines()) + "\n")
    lines = detail.read_text().splitlines()
    records = [json.loads(line[len(PREFIX):]) if line.startswith(PREFIX) else None for line in lines]
    matches = [index for index, record in enumerate(records) if record and record["key"] == key]
    if not matches:
        lines.append("")
        records.append({"key": key, "value": None, "metadata": {"is_error": False, "is_warning": False}})
        matches = [len(lines) - 1]
    for index in matches:
        records[index]["value"] = value
        lines[index] = PREFIX + json.dumps(records[index])
    detail.write_text("\n".join(lines) + "\n")


def set_f1(scenario_dir: Path, f1: float) -> None:
    accuracy_txt = scenario_dir / "accuracy" / "accuracy.txt"
    lines = accuracy_txt.read_text().splitlines()
    lines[0] = json.dumps({"exact_match": 80.0, "f1": f1})
    accuracy_txt.write_text("\n".join(line for line in lines if not line.startswith("PARTIAL LOG")) + "\n")


def make_compliant(scenario_dir: Path, scenario: str) -> None:
    performance = scenario_dir / "performance" / "run_1"
    detail = performance / "mlperf_log_detail.txt"
    # result_min_duration_met false: the run took seconds, not the 600 s a real one would, and its record must
    # not claim otherwise (the checker compares the claim with the run's own duration)
    for key, value in (("effective_scenario", scenario), ("effective_min_duration_ms", 600_000),
                       ("result_min_duration_met", False), ("effective_performance_sample_count", 10833),
                       ("effective_min_query_count", 1024), ("early_stopping_met", True),
                       ("result_validity", "VALID")):
        set_logged(detail, key, value)
    if scenario == "Offline":
        set_logged(detail, "effective_samples_per_query", 10833)
    if scenario == "Server":  # a copy of a SingleStream run: its rate as its samples over its duration give it
        log = read_detail_log(detail)
        set_logged(detail, "effective_target_latency_ns", 130_000_000)
        set_logged(detail, "result_completed_samples_per_sec",
                   (log.get("result_query_count") - 1) / run_duration_s(log))
    summary = performance / "mlperf_log_summary.txt"
    summary.write_text(summary.read_text().split("\n" + "=" * 78)[0] + "\n")  # no quick-run note
    accuracy_detail = scenario_dir / "accuracy" / "mlperf_log_detail.txt"
    set_logged(accuracy_detail, "effective_scenario", scenario)
    set_logged(accuracy_detail, "effective_accuracy_sample_count", 10833)
    set_f1(scenario_dir, COMPLIANT_F1)


@pytest.fixture
def tree(short_submission, tmp_path) -> Path:
    """A copy of the short tree made to pass every full-submission rule (open division: no TEST01 needed)."""
    root = tmp_path / "tree"
    shutil.copytree(short_submission[1], root)
    results = next(root.glob("open/*/results/*/bert-99"))
    shutil.copytree(results / "SingleStream", results / "Server")
    for scenario in ("Offline", "SingleStream", "Server"):
        make_compliant(results / scenario, scenario)
    write_manifest(root)
    return root


def scenario(root: Path, name: str) -> Path:
    return next(root.glob(f"open/*/results/*/bert-99/{name}"))


def performance_detail(name: str) -> Callable[[Path], Path]:
    return lambda root: scenario(root, name) / "performance" / "run_1" / "mlperf_log_detail.txt"


def accuracy_detail(name: str) -> Callable[[Path], Path]:
    return lambda root: scenario(root, name) / "accuracy" / "mlperf_log_detail.txt"


def test_the_compliant_tree_passes_full_rules(tree):
    report = check_tree(tree, "v6", short=False)
    assert report.errors == [] and report.warnings == []


LOGGED_RULES = {  # rule: (detail log, key, value at the bound, one step past it, the message past it)
    "minimum duration": (performance_detail("Offline"), "effective_min_duration_ms", 600_000, 599_999,
                         "Offline performance: minimum duration 599999 ms < 600000"),
    "performance sample count": (performance_detail("Offline"), "effective_performance_sample_count", 10833, 10832,
                                 "Offline performance: performance sample count 10832 < 10833"),
    "samples per query": (performance_detail("Offline"), "effective_samples_per_query", 10833, 10832,
                          "Offline performance: 10832 samples per query < 10833"),
    "minimum query count": (performance_detail("SingleStream"), "effective_min_query_count", 1024, 1023,
                            "SingleStream performance: minimum query count 1023 < 1024"),
    "early stopping": (performance_detail("SingleStream"), "early_stopping_met", True, False,
                       "SingleStream performance: early stopping not met"),
    "Server latency bound": (performance_detail("Server"), "effective_target_latency_ns", 130_000_000, 130_000_001,
                             "Server performance: target latency 130000001 ns > 130 ms"),
    "accuracy coverage": (accuracy_detail("Offline"), "effective_accuracy_sample_count", 10833, 10832,
                          "Offline accuracy: covers 10832 samples, not the whole dataset (10833)"),
}


@pytest.mark.parametrize("rule", sorted(LOGGED_RULES))
def test_a_logged_value_past_its_bound_breaks_exactly_its_rule(tree, rule):
    detail, key, bound, past, message = LOGGED_RULES[rule]
    set_logged(detail(tree), key, bound)
    write_manifest(tree)
    assert check_tree(tree, "v6", short=False).errors == []
    set_logged(detail(tree), key, past)
    write_manifest(tree)
    full = check_tree(tree, "v6", short=False)
    assert len(full.errors) == 1 and full.errors[0].startswith(message), full.errors
    short = check_tree(tree, "v6", short=True)  # a short submission may break it: a warning there
    assert short.passed and any(warning.startswith(message) for warning in short.warnings)


def test_f1_below_the_bert99_target_fails(tree):
    set_f1(scenario(tree, "Offline"), 89.965)  # the target is 90.874 * 0.99 = 89.96526
    write_manifest(tree)
    assert check_tree(tree, "v6", short=False).errors == [
        "Offline accuracy: F1 89.965 is below the bert-99 target 89.96526"]


def test_an_accuracy_log_over_10_kb_is_not_truncated(tree):
    log = scenario(tree, "Offline") / "accuracy" / "mlperf_log_accuracy.json"
    log.write_bytes(b"x" * 10240)
    write_manifest(tree)
    assert check_tree(tree, "v6", short=False).errors == []
    log.write_bytes(b"x" * 10241)
    write_manifest(tree)
    assert check_tree(tree, "v6", short=True).errors == [
        "Offline accuracy: mlperf_log_accuracy.json is not truncated (> 10 KB)"]


def test_a_missing_required_scenario_fails_a_full_submission_only(tree):
    """Closed submissions need every scenario of their system type; a short (open, SCC) one may hold fewer."""
    shutil.rmtree(scenario(tree, "SingleStream"))
    write_manifest(tree)
    full = check_tree(tree, "v6", short=False)
    assert len(full.errors) == 1
    assert full.errors[0].startswith("required scenario SingleStream for system type edge is missing")
    short = check_tree(tree, "v6", short=True)
    assert short.passed and any(warning.startswith("required scenario SingleStream for system type edge is missing")
                                and warning.endswith("(fails a full submission)") for warning in short.warnings)


def test_a_tree_without_any_scenario_fails_in_every_mode(tree):
    for name in ("Offline", "SingleStream", "Server"):
        shutil.rmtree(scenario(tree, name))
    write_manifest(tree)
    for short in (False, True):
        report = check_tree(tree, "v6", short=short)
        assert not report.passed and any(error.startswith("no results under") for error in report.errors)


def test_a_run_without_a_result_fails_in_every_mode(tree):
    set_logged(performance_detail("SingleStream")(tree), "early_stopping_latency_ss", 0)
    write_manifest(tree)
    report = check_tree(tree, "v6", short=True)
    assert len(report.errors) == 1
    assert report.errors[0].startswith("SingleStream performance: no result to report (early_stopping_latency_ss is 0)")
