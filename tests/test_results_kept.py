"""Nothing lost, nothing false: finished runs are kept, packages are swapped only when a new one passes, and a
result its own logs contradict is refused (issue 25)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from submission.check import check_tree
from submission.tree import write_manifest
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # LoadGen runs and packages of a real model

SCENARIO_LOGS = ("logs", "minilm-squad-devhalf", "pytorch", "fp32-cpu")


def copy_runs(runs_dir, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(runs_dir, build)
    return build, build.joinpath(*SCENARIO_LOGS)


def mark_compliant(run_dir):
    """A stand-in for an hour-long COUNT=full run: its record says full settings and VALID."""
    path = run_dir / "run_info.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "count": None, "compliant_settings": True, "loadgen_result": "VALID"}))
    return info


def edit(path, old, new):
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1))


def test_a_quick_run_never_takes_a_compliant_runs_place_unasked(runs_dir, tmp_path, small_model):
    build, logs = copy_runs(runs_dir, tmp_path)
    compliant = logs / "Offline" / "performance" / "run_1"
    mark_compliant(compliant)
    before = (compliant / "run_info.json").read_text()
    refused = run_cli("harness", "perf", "--model", str(small_model), "--count", "16", "--build-dir", str(build),
                      cwd=build)
    assert refused.returncode == 2
    assert "holds a compliant run (COUNT=full, LoadGen VALID" in refused.stderr and "REPLACE=1" in refused.stderr
    assert (compliant / "run_info.json").read_text() == before and not (logs / "Offline" / "earlier").exists()

    replaced = run_cli("harness", "perf", "--model", str(small_model), "--count", "16", "--replace", "1",
                       "--build-dir", str(build), cwd=build)
    assert replaced.returncode == 0, replaced.stderr
    kept = next((logs / "Offline" / "earlier").glob("performance-*"))
    assert f"is kept in {kept}" in replaced.stdout and (kept / "run_info.json").read_text() == before
    assert json.loads((compliant / "run_info.json").read_text())["count"] == 16

    packaged = run_cli("submission", "--short", "--scenarios", "Offline", "--build-dir", str(build), "--out",
                       str(tmp_path / "out"), cwd=build)
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    assert "Offline performance: using the COUNT=full, LoadGen VALID" in packaged.stdout
    assert f"run kept in {kept} over the newer COUNT=16" in packaged.stdout
    run_lines = (tmp_path / "out" / "mlperf_submission_short.run").read_text()
    assert "--count 16" not in run_lines  # the kept run's command, not the newer quick one's


def test_an_accuracy_run_over_fewer_samples_is_refused_and_a_later_better_one_keeps_the_earlier(
        runs_dir, tmp_path, small_model):
    build, logs = copy_runs(runs_dir, tmp_path)
    accuracy = logs / "SingleStream" / "accuracy"
    refused = run_cli("harness", "accuracy", "--scenario", "SingleStream", "--model", str(small_model), "--count",
                      "16", "--build-dir", str(build), cwd=build)
    assert refused.returncode == 2 and "holds a run over 24 samples (COUNT=24" in refused.stderr
    better = run_cli("harness", "accuracy", "--scenario", "SingleStream", "--model", str(small_model), "--count",
                     "32", "--build-dir", str(build), cwd=build)
    assert better.returncode == 0, better.stderr
    kept = next((logs / "SingleStream" / "earlier").glob("accuracy-*"))
    assert json.loads((kept / "run_info.json").read_text())["count"] == 24
    assert json.loads((accuracy / "run_info.json").read_text())["count"] == 32


def test_a_failed_submission_leaves_the_earlier_package_and_names_the_remake(runs_dir, tmp_path):
    build, logs = copy_runs(runs_dir, tmp_path)
    out = tmp_path / "out"
    first = run_cli("submission", "--short", "--build-dir", str(build), "--out", str(out), cwd=build)
    assert first.returncode == 0, first.stdout + first.stderr
    artifacts = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    assert len(artifacts) == 5
    (logs / "Offline" / "accuracy" / "mlperf_log_accuracy.json").unlink()
    failed = run_cli("submission", "--short", "--build-dir", str(build), "--out", str(out), cwd=build)
    assert failed.returncode == 2
    assert "accuracy lacks mlperf_log_accuracy.json: the run is damaged; make it again with `make accuracy " \
           "SCENARIO=Offline MODEL=" in failed.stderr and "COUNT=24`" in failed.stderr
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == artifacts
    assert sorted(path.name for path in out.iterdir()) == sorted([*artifacts, "mlperf_submission_short"])


def test_a_submission_failing_validation_keeps_the_earlier_package(runs_dir, tmp_path):
    build, _ = copy_runs(runs_dir, tmp_path)
    out = tmp_path / "out"
    assert run_cli("submission", "--short", "--build-dir", str(build), "--out", str(out), cwd=build).returncode == 0
    tarball = (out / "mlperf_submission_short.tar.gz").read_bytes()
    full = run_cli("submission", "--build-dir", str(build), "--out", str(out), cwd=build)  # quick runs: fails
    assert full.returncode == 1 and "the earlier package in" in full.stdout
    assert (out / "mlperf_submission_short.tar.gz").read_bytes() == tarball
    assert (out / "mlperf_submission_short.failed" / "closed").is_dir()  # what failed, to look at


def scale_figure(path, prefix, factor):
    """The number right after `prefix` in a log file, times `factor`."""
    text = path.read_text()
    match = re.search(re.escape(prefix) + r"([\d.]+)", text)
    assert match, (prefix, path)
    path.write_text(text[:match.start(1)] + f"{float(match.group(1)) * factor:.4f}" + text[match.end(1):])


@pytest.mark.parametrize("tamper, message", [
    (lambda run: scale_figure(run / "mlperf_log_summary.txt", "Samples per second: ", 100),
     "mlperf_log_summary.txt says Samples per second"),
    (lambda run: (scale_figure(run / "mlperf_log_summary.txt", "Samples per second: ", 100),
                  scale_figure(run / "mlperf_log_detail.txt", '"result_samples_per_second", "value": ', 100)),
     "samples answered within"),
    (lambda run: (scale_figure(run / "mlperf_log_summary.txt", "Max latency (ns)                : ", 0.5),
                  scale_figure(run / "mlperf_log_detail.txt", '"result_max_latency_ns", "value": ', 0.5)),
     "latencies are out of order"),
], ids=["summary", "summary-and-detail", "latency"])
def test_an_edited_performance_result_is_refused(runs_dir, tmp_path, tamper, message):
    build, logs = copy_runs(runs_dir, tmp_path)
    run = logs / "Offline" / "performance" / "run_1"
    tamper(run)
    result = run_cli("submission", "--short", "--build-dir", str(build), "--out", str(tmp_path / "out"), cwd=build)
    assert result.returncode == 2 and message in result.stderr and str(run) in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_edited_single_stream_latencies_are_refused(runs_dir, tmp_path):
    build, logs = copy_runs(runs_dir, tmp_path)
    run = logs / "SingleStream" / "performance" / "run_1"
    detail = run / "mlperf_log_detail.txt"
    lines = []
    for line in detail.read_text().splitlines():  # every latency a tenth: consistent among themselves
        record = json.loads(line.removeprefix(":::MLLOG ")) if line.startswith(":::MLLOG ") else None
        if record and ("latency_ns" in record["key"] or record["key"] == "early_stopping_latency_ss"):
            record["value"] = record["value"] // 10
            line = ":::MLLOG " + json.dumps(record)
        lines.append(line)
    detail.write_text("\n".join(lines) + "\n")
    result = run_cli("submission", "--short", "--build-dir", str(build), cwd=build)
    assert result.returncode == 2 and "one after another, fill" in result.stderr, result.stderr


@pytest.mark.parametrize("tamper, message", [
    (lambda txt: edit(txt, '"f1": ', '"f1": 9'), "accuracy.txt was edited"),
    (lambda txt: edit(txt, "(24 samples logged)", "(10833 samples logged)"), "says 10833 samples were logged"),
], ids=["f1", "partial-line"])
def test_an_edited_accuracy_txt_is_refused(runs_dir, tmp_path, tamper, message):
    build, logs = copy_runs(runs_dir, tmp_path)
    accuracy_txt = logs / "Offline" / "accuracy" / "accuracy.txt"
    tamper(accuracy_txt)
    result = run_cli("submission", "--short", "--build-dir", str(build), cwd=build)
    assert result.returncode == 2 and message in result.stderr and str(accuracy_txt) in result.stderr, result.stderr


def test_a_packaged_tree_edited_and_rehashed_fails_our_checker(short_submission, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(short_submission[1], tree)
    summary = next(tree.glob("open/*/results/*/bert-99/Offline/performance/run_1/mlperf_log_summary.txt"))
    edit(summary, "Samples per second: ", "Samples per second: 9")
    verdict = next(tree.glob("open/*/results/*/bert-99/Offline/accuracy/accuracy.txt"))
    edit(verdict, "PARTIAL LOG: 24 of", "PARTIAL LOG: 10570 of")  # harmless: the sample count is what is checked
    write_manifest(tree)
    report = check_tree(tree, "v6", short=True)
    assert not report.passed
    assert any("Offline/performance/run_1/mlperf_log_summary.txt says Samples per second 9" in error
               for error in report.errors), report.errors


def test_the_summary_calls_compliant_only_full_valid_runs(tmp_path):
    from submission.artifacts import noncompliance
    from submission.runs import ScenarioRuns

    def runs(performance: dict, accuracy: dict) -> ScenarioRuns:
        return ScenarioRuns("Offline", tmp_path, tmp_path, performance, accuracy)

    full_valid, full_invalid = {"count": None, "loadgen_result": "VALID"}, {"count": None, "loadgen_result": "INVALID"}
    assert noncompliance(runs(full_valid, {"count": None})) == ""
    assert noncompliance(runs(full_invalid, {"count": None})) == "LoadGen INVALID"
    assert noncompliance(runs({"count": 64, "loadgen_result": "VALID"}, {"count": 24})) == \
        "performance COUNT=64, accuracy COUNT=24"
