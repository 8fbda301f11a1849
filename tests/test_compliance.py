"""Compliance test TEST01 (`make compliance`): a real LoadGen run with audit.config, its verdicts, and packaging."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.compliance import verify_accuracy, verify_performance
from harness.finished_runs import PASS_LINE, passed_test01
from submission.check import Report, check_test01
from submission.tree import TEST01_FILES
from tests.conftest import run_cli

pytestmark = pytest.mark.slow  # LoadGen runs of real models: not in make test-fast

SCENARIO = "Offline"


@pytest.fixture(scope="module")
def compliance_build(tmp_path_factory, build_dir, features, small_model):
    """A build folder with quick Offline performance and accuracy runs, then `harness compliance`."""
    runs = tmp_path_factory.mktemp("compliance")
    (runs / "data").mkdir()
    shutil.copy(build_dir / "data" / "squad_features.npz", runs / "data")
    for command in ("perf", "accuracy"):
        result = run_cli("harness", command, "--scenario", SCENARIO, "--model", str(small_model), "--count", "16",
                         "--build-dir", str(runs), cwd=runs)
        assert result.returncode == 0, result.stderr
    result = run_cli("harness", "compliance", "--scenario", SCENARIO, "--build-dir", str(runs), cwd=runs)
    return runs, result


def scenario_logs(runs):
    return runs / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / SCENARIO


def test_compliance_run_writes_the_test01_folder(compliance_build):
    runs, result = compliance_build
    # A quick run on a shared CPU may miss the 10% performance band; the accuracy half must pass.
    assert result.returncode in (0, 1), result.stderr
    assert "TEST01 Offline: " in result.stdout and "(accuracy passed, performance" in result.stdout
    test_dir = scenario_logs(runs) / "TEST01"
    for name in TEST01_FILES:
        assert (test_dir / name).is_file(), name
    assert "Found Audit Config file" in (test_dir / "performance/run_1/mlperf_log_detail.txt").read_text()
    info = json.loads((test_dir / "performance/run_1/run_info.json").read_text())
    assert info["compliance_test"] == "TEST01" and info["count"] == 16 and "compliance" in info["command"]
    logged = json.loads((test_dir / "accuracy/mlperf_log_accuracy.json").read_text())
    assert len(logged) == 16  # a quick run expects fewer samples than the sampling target: all are logged
    verdict = (test_dir / "verify_accuracy.txt").read_text()
    assert "responses of samples the accuracy run logged: 16" in verdict
    assert PASS_LINE in verdict.splitlines() or "(limit 1%): PASS" in verdict
    last = (test_dir / "verify_performance.txt").read_text().splitlines()[-1]
    assert last == PASS_LINE or last.startswith("TEST FAIL: the result moved more than 10%")
    assert not (runs / "audit.config").exists(), "audit.config must never be left in the working directory"


def write_log(path, entries):
    path.write_text(json.dumps([{"seq_id": i, "qsl_idx": index, "data": data}
                                for i, (index, data) in enumerate(entries)]))


def entries_of(path):
    return [(entry["qsl_idx"], entry["data"]) for entry in json.loads(path.read_text())]


def nudged(data: str, scale: float) -> str:
    logits = np.frombuffer(bytes.fromhex(data), np.float32).copy()
    logits *= scale
    return logits.tobytes().hex()


def test_responses_that_differ_bit_wise_fall_back_to_f1(compliance_build, features, tmp_path):
    """Where logged responses differ from the accuracy run's, F1 over those samples decides, here and in the checker."""
    runs, _ = compliance_build
    reference = scenario_logs(runs) / "accuracy" / "mlperf_log_accuracy.json"
    entries = entries_of(reference)
    test_dir = tmp_path / "TEST01"
    shutil.copytree(scenario_logs(runs) / "TEST01/performance", test_dir / "performance")
    (test_dir / "verify_performance.txt").write_text(PASS_LINE + "\n")
    (test_dir / "accuracy").mkdir()
    test_log = test_dir / "accuracy" / "mlperf_log_accuracy.json"  # verify_accuracy writes its scores beside it

    def verify(logged):
        write_log(test_log, logged)
        result = verify_accuracy(reference, test_log, features)
        (test_dir / "verify_accuracy.txt").write_text("\n".join(result.lines) + "\n")
        report = Report(short=True)
        check_test01(test_dir, SCENARIO, "v6", report)
        return result, [message for message in report.warnings if "differ from the accuracy run" in message]

    identical, complaints = verify(entries[:10])
    assert identical.passed and PASS_LINE in identical.lines and not complaints

    rounding, complaints = verify([(index, nudged(data, 1.0001)) for index, data in entries[:10]])  # same answers
    assert rounding.passed and PASS_LINE not in rounding.lines and not complaints
    assert "different: 10" in "\n".join(rounding.lines) and rounding.lines[-1].endswith("(limit 1%): PASS")

    wrong, complaints = verify([(index, nudged(data, -1.0)) for index, data in entries[:10]])  # other answers
    assert not wrong.passed and wrong.lines[-1].endswith("(limit 1%): FAIL")
    assert len(complaints) == 1 and "F1 moved" in complaints[0]

    unknown, _ = verify([(10_000, entries[0][1])])
    assert not unknown.passed and unknown.lines[-1].startswith("TEST FAIL: none of the logged samples")


def with_result(source, destination, key, factor=None, validity=None):
    lines = []
    for line in source.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            record = json.loads(line[len(":::MLLOG "):])
            if record["key"] == key and factor is not None:
                record["value"] = record["value"] * factor
            if record["key"] == "result_validity" and validity is not None:
                record["value"] = validity
            line = ":::MLLOG " + json.dumps(record)
        lines.append(line)
    destination.write_text("\n".join(lines) + "\n")
    return destination


@pytest.mark.parametrize("factor, validity, verdict", [
    (1.05, None, PASS_LINE),
    (0.95, None, PASS_LINE),
    (1.15, None, "TEST FAIL: the result moved more than 10%"),
    (1.0, "INVALID", "TEST FAIL: the TEST01 run is INVALID, not VALID"),
])
def test_performance_within_ten_percent(compliance_build, tmp_path, factor, validity, verdict):
    runs, _ = compliance_build
    reference = scenario_logs(runs) / "performance/run_1/mlperf_log_detail.txt"
    test = with_result(reference, tmp_path / "detail.txt", "result_samples_per_second", factor, validity)
    result = verify_performance(reference, test, SCENARIO)
    assert result.lines[-1] == verdict and result.passed == (verdict == PASS_LINE)


def test_submission_packages_test01_and_drops_a_stale_one(compliance_build, tmp_path):
    runs, _ = compliance_build
    full = run_cli("submission", "--build-dir", str(runs), "--out", str(tmp_path / "full"), cwd=runs)
    assert "TEST01 missing" not in full.stdout
    test_dir = next((tmp_path / "full").glob(f"*/closed/*/results/*/bert-99/{SCENARIO}/TEST01"))
    packaged = sorted(path.relative_to(test_dir).as_posix() for path in test_dir.rglob("*") if path.is_file())
    assert packaged == sorted(TEST01_FILES)
    assert "-m harness compliance" in (test_dir.parent / "README.md").read_text()

    # Offline only: the edge system's SingleStream is missing, so the short artifacts need --allow-invalid
    short = run_cli("submission", "--short", "--allow-invalid", "--build-dir", str(runs), "--out",
                    str(tmp_path / "with"), cwd=runs)
    verdict = "PASS" if passed_test01(scenario_logs(runs) / "TEST01") else "FAIL"
    assert f"| {verdict} |" in (tmp_path / "with" / "mlperf_submission_short.md").read_text(), short.stdout

    stale = tmp_path / "stale"
    shutil.copytree(runs, stale)
    info_path = scenario_logs(stale) / "TEST01/performance/run_1/run_info.json"
    info = json.loads(info_path.read_text())
    info["start_utc"] = "2000-01-01T00:00:00.000000Z"
    info_path.write_text(json.dumps(info))
    result = run_cli("submission", "--short", "--allow-invalid", "--build-dir", str(stale), "--out",
                     str(tmp_path / "short"), cwd=stale)
    assert result.returncode == 0, result.stdout
    assert "leaving out Offline's TEST01, which is older than the runs it checks" in result.stdout
    assert "make compliance SCENARIO=Offline" in result.stdout
    assert not list((tmp_path / "short").glob("*/open/*/results/*/bert-99/Offline/TEST01"))
    assert "| none |" in (tmp_path / "short" / "mlperf_submission_short.md").read_text()


@pytest.mark.parametrize("scenario, message", [
    ("Server", "run `make perf SCENARIO=Server` and `make accuracy SCENARIO=Server` first"),
    ("offline", "unknown SCENARIO=offline; choose one of Offline"),
])
def test_compliance_needs_both_runs_of_a_real_scenario(compliance_build, scenario, message):
    runs, _ = compliance_build
    result = run_cli("harness", "compliance", "--scenario", scenario, "--build-dir", str(runs), cwd=runs)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize("config, message", [
    ("missing", "not found; give TEST01's audit.config"),
    ("*.*.mode = 1\n", "made LoadGen run in AccuracyOnly mode; TEST01 is a performance run"),
])
def test_bad_audit_config_is_refused(compliance_build, tmp_path, config, message):
    runs, _ = compliance_build
    build = tmp_path / "build"
    shutil.copytree(runs, build)
    audit_config = tmp_path / "audit.config"
    if config != "missing":
        audit_config.write_text(config)
    earlier = {path.relative_to(build): path.read_bytes() for path in (scenario_logs(build) / "TEST01").rglob("*")
               if path.is_file()}
    result = run_cli("harness", "compliance", "--build-dir", str(build), "--audit-config", str(audit_config),
                     cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr
    kept = {path.relative_to(build): path.read_bytes() for path in (scenario_logs(build) / "TEST01").rglob("*")
            if path.is_file()}
    assert kept == earlier, "a failed TEST01 must leave the last finished one as it was"
    assert not (scenario_logs(build) / "TEST01.previous").exists()
