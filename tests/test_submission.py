"""`make submission` from real LoadGen runs: the tree, its validation, the artifacts, and tampering."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from accuracy.loadgen_log import file_sha256
from submission.check import check_tree
from submission.system import REQUIRED_FIELDS, SUBMISSION_CONFIG
from submission.tree import weight_transformations, write_manifest
from tests.conftest import REPO, cli_environment, run_cli
from tests.conftest import SUBMISSION_SCENARIOS as SCENARIOS

pytestmark = pytest.mark.slow  # LoadGen runs of real models: not in make test-fast


def scenario_dir(root, scenario):
    return next(root.glob(f"open/*/results/*/bert-99/{scenario}"))


def test_short_submission_artifacts(short_submission, runs_dir):
    out, unpacked, stdout = short_submission
    assert "harness checker: PASSED (short mode" in stdout
    assert "quick run (COUNT) with lowered LoadGen minimums (fails a full submission)" in stdout
    system = json.loads(next(unpacked.glob("open/MyTeam/systems/*.json")).read_text())
    assert set(REQUIRED_FIELDS) <= set(system) and system["division"] == "open"
    assert isinstance(system["number_of_nodes"], int)
    assert (unpacked / "open" / "MyTeam" / "src" / "qsl" / "features.py").is_file()
    for scenario in SCENARIOS:
        directory = scenario_dir(unpacked, scenario)
        for name in ("measurements.json", "user.conf", "README.md", "performance/run_1/mlperf_log_detail.txt",
                     "accuracy/mlperf_log_summary.txt"):
            assert (directory / name).is_file(), name
        assert json.loads((directory / "measurements.json").read_text())["input_data_types"] == "int32"
        packaged_log = directory / "accuracy" / "mlperf_log_accuracy.json"
        full_log = runs_dir / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / scenario / "accuracy" / \
            "mlperf_log_accuracy.json"
        assert packaged_log.stat().st_size <= 10 * 1024 < full_log.stat().st_size
        assert packaged_log.read_bytes()[:4096] == full_log.read_bytes()[:4096]
        assert f"hash={file_sha256(full_log)}" in (directory / "accuracy" / "accuracy.txt").read_text()
    entries = json.loads((out / "mlperf_submission_short_summary.json").read_text())
    assert [entry["Scenario"] for entry in entries.values()] == list(SCENARIOS)
    assert entries["0"]["Units"] == "Samples/s" and entries["0"]["Result"] > 0
    assert entries["1"]["Units"] == "Latency (ms)" and entries["0"]["Accuracy"].startswith("F1: ")
    run_lines = (out / "mlperf_submission_short.run").read_text().splitlines()
    assert sum("-m harness perf" in line for line in run_lines) == 2
    assert sum("-m harness accuracy" in line for line in run_lines) == 2
    stamps = (out / "mlperf_submission_short.tstamps").read_text().splitlines()
    assert len(stamps) == 8 and stamps == sorted(stamps)
    assert "| Offline |" in (out / "mlperf_submission_short.md").read_text()
    assert check_tree(unpacked, "v6", short=True).passed


def test_full_mode_refuses_quick_runs(runs_dir, tmp_path):
    result = run_cli("submission", "--build-dir", str(runs_dir), "--out", str(tmp_path), cwd=runs_dir)
    assert result.returncode == 1
    assert "ERROR: Offline performance: a quick run (COUNT)" in result.stdout
    assert "compliance test TEST01 missing" in result.stdout
    assert "no artifacts written" in result.stdout and "SHORT=1" in result.stdout
    assert not (tmp_path / "mlperf_submission_short.tar.gz").exists()
    labelled = run_cli("submission", "--allow-invalid", "--build-dir", str(runs_dir), "--out", str(tmp_path),
                       cwd=runs_dir)
    assert labelled.returncode == 0
    assert (tmp_path / "mlperf_submission_short.md").read_text().startswith("**VALIDATION FAILED**")


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def tamper_copy(unpacked, tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(unpacked, copy)
    return copy, scenario_dir(copy, "Offline")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "performance/run_1/mlperf_log_summary.txt").unlink(), "mlperf_log_summary.txt missing"),
    (lambda d: edit(d / "accuracy/mlperf_log_accuracy.json", '"qsl_idx"', '"qsl_idx" '), "modified after"),
    (lambda d: edit(d / "accuracy/accuracy.txt", "hash=", "hash=0"), "modified after"),
    (lambda d: (d / "extra.txt").write_text("x"), "added after"),
])
def test_tampering_is_caught(short_submission, tmp_path, damage, message):
    tree, offline = tamper_copy(short_submission[1], tmp_path)
    damage(offline)
    report = check_tree(tree, "v6", short=True)
    assert not report.passed
    assert any(message in error for error in report.errors), report.errors


@pytest.mark.parametrize("damage, message, fails_short", [
    (lambda d: (edit(d / "performance/run_1/mlperf_log_detail.txt", '"effective_qsl_rng_seed", "value": 2085',
                     '"effective_qsl_rng_seed", "value": 1085'),
                edit(d / "performance/run_1/mlperf_log_summary.txt", "qsl_rng_seed : 2085", "qsl_rng_seed : 1085")),
     "qsl_rng_seed is 1085463073848966840", False),
    (lambda d: (edit(d / "performance/run_1/mlperf_log_detail.txt", '"key": "result_validity", "value": "VALID"',
                     '"key": "result_validity", "value": "INVALID"'),
                edit(d / "performance/run_1/mlperf_log_summary.txt", "Result is : VALID", "Result is : INVALID")),
     "LoadGen result is INVALID", False),
    (lambda d: edit(d / "accuracy/mlperf_log_detail.txt", '"is_error": false', '"is_error": true'),
     "LoadGen error", False),
    (lambda d: edit(next(d.parents[3].glob("systems/*.json")), '"number_of_nodes": 1', '"number_of_nodes": "one"'),
     "number_of_nodes must be a whole number", True),
    (lambda d: edit(next(d.parents[3].glob("systems/*.json")), '"accelerators_per_node": "0"',
                    '"accelerators_per_node": 0'), "accelerators_per_node is empty (0)", True),
])
def test_rehashed_bad_content_is_caught(short_submission, tmp_path, damage, message, fails_short):
    """Content the official checker lets through, even after the manifest is rewritten to match."""
    tree, offline = tamper_copy(short_submission[1], tmp_path)
    damage(offline)
    write_manifest(tree)
    full = check_tree(tree, "v6", short=False)
    assert any(message in error for error in full.errors), full.errors
    short = check_tree(tree, "v6", short=True)
    assert short.passed is not fails_short
    assert any(message in line for line in short.errors + short.warnings)


def test_edited_log_in_build_dir_is_refused(runs_dir, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    log = copy / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / "Offline" / "accuracy" / \
        "mlperf_log_accuracy.json"
    edit(log, '"qsl_idx"', '"qsl_idx" ')
    result = run_cli("submission", "--short", "--build-dir", str(copy), cwd=copy)
    assert result.returncode == 2 and "changed after it was scored" in result.stderr


def test_missing_runs_name_the_make_step(tmp_path, runs_dir):
    result = run_cli("submission", "--short", "--build-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "run `make perf` and `make accuracy` first" in result.stderr
    half = tmp_path / "half"
    shutil.copytree(runs_dir / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / "Offline" / "performance",
                    half / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / "Offline" / "performance")
    result = run_cli("submission", "--short", "--build-dir", str(half), cwd=tmp_path)
    assert result.returncode == 2 and "make accuracy SCENARIO=Offline" in result.stderr


def stub_checker(tmp_path, exit_code: int):
    """A checkout whose submission checker prints what it was given and exits with `exit_code`."""
    checkout = tmp_path / f"inference-{exit_code}"
    checker = checkout / "tools" / "submission" / "submission_checker"
    checker.mkdir(parents=True)
    (checker / "__init__.py").write_text("")
    (checker / "main.py").write_text(f"import sys\nprint('stub checker got', ' '.join(sys.argv[1:]))\n"
                                     f"sys.exit({exit_code})\n")
    return checkout


def test_previous_layout_and_official_checker_hook(runs_dir, tmp_path):
    result = run_cli("submission", "--short", "--layout", "v5", "--checker", str(stub_checker(tmp_path, 0)),
                     "--build-dir", str(runs_dir), "--out", str(tmp_path / "out"), cwd=runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stub checker got --input" in result.stdout and "--version v5.1" in result.stdout
    assert "--skip_compliance" in result.stdout and "as MLC runs it" in result.stdout
    assert "official checker: PASSED (exit code 0" in result.stdout
    assert "only --layout v6 can pass" in result.stdout
    org = tmp_path / "out" / "mlperf_submission_short" / "open" / "MyTeam"
    assert (org / "code").is_dir() and next(org.glob("measurements/*/bert-99/Offline/*_Offline.json"))


def test_a_failing_official_checker_fails_the_submission(runs_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("submission", "--short", "--checker", str(stub_checker(tmp_path, 1)), "--build-dir",
                     str(runs_dir), "--out", str(out), cwd=runs_dir)
    assert result.returncode == 1
    assert "official checker: FAILED (exit code 1" in result.stdout
    assert "ERROR: the official submission checker failed" in result.stdout
    assert "no artifacts written" in result.stdout and not (out / "mlperf_submission_short.tar.gz").exists()


GPU_SYSTEM = {"accelerators_per_node": "8", "accelerator_model_name": "NVIDIA H200",
              "accelerator_memory_capacity": "141 GB", "accelerator_memory_configuration": "HBM3e",
              "accelerator_host_interconnect": "PCIe Gen5 x16", "accelerator_interconnect": "NVLink 4"}


@pytest.mark.parametrize("accelerators, scenarios", [("none", []), ("gpu", []), ("none", ["--scenarios", "Offline"])],
                         ids=["cpu", "gpu", "offline-only"])
def test_official_checker_passes_our_short_tree(runs_dir, tmp_path, accelerators, scenarios):
    """The real checker, v6.1 rules, as MLC runs it for the SCC; MLPERF_INFERENCE_DIR names a checkout."""
    checkout = os.environ.get("MLPERF_INFERENCE_DIR")
    if not checkout:
        pytest.skip("set MLPERF_INFERENCE_DIR to an mlcommons/inference checkout to run the official checker")
    config = json.loads(SUBMISSION_CONFIG.read_text())
    if accelerators == "gpu":
        config["system"].update(GPU_SYSTEM)
    (tmp_path / "submission.json").write_text(json.dumps(config))
    result = run_cli("submission", "--short", *scenarios, "--checker", checkout, "--config",
                     str(tmp_path / "submission.json"), "--build-dir", str(runs_dir), "--out", str(tmp_path / "out"),
                     cwd=runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUMMARY: submission looks OK" in result.stdout and "official checker: PASSED" in result.stdout
    system = json.loads(next((tmp_path / "out").glob("mlperf_submission_short/open/*/systems/*.json")).read_text())
    assert system["accelerators_per_node"] == ("8" if accelerators == "gpu" else "0")


def test_framework_names_the_backend_runtime():
    from submission.system import framework

    assert framework("pytorch").startswith("PyTorch 2.")
    assert framework("onnxruntime").startswith("ONNX Runtime 1.") and "PyTorch" in framework("onnxruntime")


@pytest.mark.parametrize(("backend", "precision", "expected"), [
    ("pytorch", "fp32", "none"),
    ("pytorch", "fp16", "fp32 to fp16 cast"),
    ("pytorch", "fp8", "calibrated on MLPerf's calibration set"),
    ("onnxruntime", "int8", "per batch (dynamic)"),
    ("tensorrt", "int8", "quantize/dequantize nodes"),
])
def test_measurements_say_how_weights_were_transformed(backend, precision, expected):
    assert expected in weight_transformations(backend, precision)


def test_a_later_half_done_backend_does_not_hide_a_complete_pair(runs_dir, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(runs_dir / "logs", build / "logs")
    logs = build / "logs" / "minilm-squad-devhalf"
    info = json.loads((logs / "pytorch" / "fp32-cpu" / "Offline" / "performance" / "run_1" / "run_info.json")
                      .read_text())
    later = logs / "onnxruntime" / "fp32-cpu" / "Offline" / "performance" / "run_1"
    later.mkdir(parents=True)
    (later / "run_info.json").write_text(json.dumps({**info, "backend": "onnxruntime", "end_utc": "2099-01-01"}))
    result = run_cli("submission", "--short", "--build-dir", str(build), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("note: packaging minilm-squad-devhalf/pytorch/fp32-cpu, the newest runs with a complete scenario"
            in result.stdout)
    assert "scenarios Offline, SingleStream" in result.stdout
    chosen = run_cli("submission", "--short", "--build-dir", str(build), "--backend", "onnxruntime", cwd=tmp_path)
    assert chosen.returncode == 2
    assert ("no scenario of minilm-squad-devhalf/onnxruntime/fp32-cpu has both runs; run `make accuracy "
            "SCENARIO=Offline MODEL=") in chosen.stderr
    assert "BACKEND=onnxruntime PRECISION=fp32 DEVICE=cpu SYSTEM=cpu BUILD=" in chosen.stderr


def test_an_accuracy_run_of_another_model_is_not_packaged(runs_dir, tmp_path):
    """A scenario counts only when its accuracy run scored the model its performance run timed."""
    build = tmp_path / "build"
    shutil.copytree(runs_dir / "logs", build / "logs")
    info_path = build / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / "Offline" / "accuracy" / \
        "run_info.json"
    info = json.loads(info_path.read_text())
    same_model = info["model_source"].replace("/minilm-squad-devhalf", "/./minilm-squad-devhalf")
    assert same_model != info["model_source"]  # spelt differently, the same file: not a difference
    info_path.write_text(json.dumps({**info, "model_source": same_model}))
    assert run_cli("submission", "--short", "--build-dir", str(build), cwd=tmp_path).returncode == 0
    info_path.write_text(json.dumps({**info, "model_source": "/elsewhere/minilm-squad-devhalf"}))
    result = run_cli("submission", "--short", "--build-dir", str(build), "--out", str(tmp_path / "out"), cwd=tmp_path)
    # Offline was run but cannot be packaged: never left out unnoticed, even in short mode, and nothing is written
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not packaged: Offline: run `make accuracy SCENARIO=Offline" in result.stderr
    assert "the performance run's system (model: performance " in result.stderr
    assert 'or package only the complete ones: make submission SCENARIOS="SingleStream"' in result.stderr
    assert not (tmp_path / "out").exists()
    asked = run_cli("submission", "--short", "--scenarios", "Offline", "--build-dir", str(build), cwd=tmp_path)
    assert asked.returncode == 2 and "asked for but without both" in asked.stderr
    only = run_cli("submission", "--short", "--scenarios", "SingleStream", "--build-dir", str(build), "--out",
                   str(tmp_path / "only"), cwd=tmp_path)
    assert only.returncode == 0, only.stdout + only.stderr
    assert "note: leaving out" not in only.stdout and "scenarios SingleStream)" in only.stdout


def test_runs_at_two_precisions_are_kept_apart_and_the_hint_fixes_the_gap(runs_dir, tmp_path, small_model):
    """An fp32 pair, then a bf16 performance run: neither replaces the other, and the hint is a working command."""
    build = tmp_path / "build"
    shutil.copytree(runs_dir, build)
    fp32 = build / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / "Offline" / "performance" / "run_1"
    before = (fp32 / "run_info.json").read_text()
    bf16 = run_cli("harness", "perf", "--model", str(small_model), "--precision", "bf16", "--build-dir", str(build),
                   cwd=REPO)
    assert bf16.returncode == 0, bf16.stderr
    assert (fp32 / "run_info.json").read_text() == before
    assert (build / "logs" / "minilm-squad-devhalf" / "pytorch" / "bf16-cpu" / "Offline" / "performance" /
            "run_1" / "mlperf_log_summary.txt").is_file()
    packaged = run_cli("submission", "--short", "--build-dir", str(build), "--out", str(tmp_path / "out"), cwd=REPO)
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    assert "packaging minilm-squad-devhalf/pytorch/fp32-cpu" in packaged.stdout
    refused = run_cli("submission", "--short", "--precision", "bf16", "--build-dir", str(build), cwd=REPO)
    assert refused.returncode == 2
    hint = re.search(r"run `(make accuracy [^`]*)` \(its performance run exists\)", refused.stderr)
    assert hint and "PRECISION=bf16" in hint.group(1), refused.stderr
    fixed = subprocess.run([*shlex.split(hint.group(1)), f"PYTHON={sys.executable}"], cwd=REPO,
                           env=cli_environment(), capture_output=True, text=True, timeout=600)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    chosen = run_cli("submission", "--short", "--precision", "bf16", "--build-dir", str(build), "--out",
                     str(tmp_path / "bf16"), cwd=REPO)
    # a short (open) submission may hold Offline alone; a full one may not
    assert chosen.returncode == 0 and "scenarios Offline)" in chosen.stdout
    assert "WARNING: required scenario SingleStream for system type edge is missing" in chosen.stdout
    assert "(fails a full submission)" in chosen.stdout
    assert "note: required scenario SingleStream has no runs of this system; to make them run `make accuracy " \
        "SCENARIO=SingleStream" in chosen.stdout


def test_submitter_that_is_not_a_folder_name_is_refused(runs_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli("submission", "--short", "--build-dir", str(runs_dir), "--out", str(out),
                     "--submitter", "../elsewhere", cwd=tmp_path)
    assert result.returncode == 2
    assert "submitter '../elsewhere' is a folder name in the submission tree" in result.stderr
    assert not out.exists() and not (tmp_path / "elsewhere").exists()


def test_a_run_over_several_ranks_describes_its_nodes_and_accelerators():
    from submission.system import with_workers

    base = {"number_of_nodes": 1, "accelerators_per_node": "8", "sw_notes": "bert99-harness"}
    info = {"workers": 16, "nodes": 2, "devices": [f"node{n}:cuda:{gpu}" for n in (1, 2) for gpu in range(8)]}
    described = with_workers(base, info)
    assert (described["number_of_nodes"], described["accelerators_per_node"]) == (2, "8")
    assert described["sw_notes"] == "bert99-harness; 16 ranks over 2 node(s) under torch.distributed (WORKERS=16)"
    cpu = with_workers(base, {"workers": 2, "nodes": 1, "devices": ["vm:cpu", "vm:cpu"]})
    assert cpu["accelerators_per_node"] == "0" and with_workers(base, {"workers": 1}) == base


# --- nothing lost, nothing false (issue 25): kept runs, packages swapped only when a new one passes, results
# their own logs contradict refused. Here, beside the tests above, so that they share the runs_dir fixture.

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


def evidence_refusal(build) -> str:
    """What make submission's check of the chosen runs refuses (in this process: the CLI path is tested above)."""
    from common.errors import HarnessError
    from harness.finished_runs import find_runs
    from submission.evidence import check_evidence

    with pytest.raises(HarnessError) as refused:
        check_evidence(find_runs(build).runs, build, log=lambda *_: None)
    return str(refused.value)


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
    refused = evidence_refusal(build)
    assert message in refused and str(run) in refused, refused


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
    assert "one after another, fill" in evidence_refusal(build)


@pytest.mark.parametrize("tamper, message", [
    (lambda txt: edit(txt, '"f1": ', '"f1": 9'), "accuracy.txt was edited"),
    (lambda txt: edit(txt, "(24 samples logged)", "(10833 samples logged)"), "says 10833 samples were logged"),
], ids=["f1", "partial-line"])
def test_an_edited_accuracy_txt_is_refused(runs_dir, tmp_path, tamper, message):
    build, logs = copy_runs(runs_dir, tmp_path)
    accuracy_txt = logs / "Offline" / "accuracy" / "accuracy.txt"
    tamper(accuracy_txt)
    refused = evidence_refusal(build)
    assert message in refused and str(accuracy_txt) in refused, refused


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
    from harness.finished_runs import ScenarioRuns
    from submission.artifacts import noncompliance

    def runs(performance: dict, accuracy: dict) -> ScenarioRuns:
        return ScenarioRuns("Offline", tmp_path, tmp_path, performance, accuracy)

    full_valid, full_invalid = {"count": None, "loadgen_result": "VALID"}, {"count": None, "loadgen_result": "INVALID"}
    assert noncompliance(runs(full_valid, {"count": None})) == ""
    assert noncompliance(runs(full_invalid, {"count": None})) == "LoadGen INVALID"
    assert noncompliance(runs({"count": 64, "loadgen_result": "VALID"}, {"count": 24})) == \
        "performance COUNT=64, accuracy COUNT=24"


def test_model_may_be_given_as_the_path_the_runs_were_made_with(runs_dir, small_model, tmp_path):
    """The SCC flow passes the same MODEL= to make perf, make accuracy and make submission (make all does too)."""
    from common.errors import HarnessError
    from harness.finished_runs import find_runs

    by_name = find_runs(runs_dir, small_model.name)
    by_path = find_runs(runs_dir, str(small_model))
    assert [runs.scenario for runs in by_path.runs] == [runs.scenario for runs in by_name.runs] != []
    other = tmp_path / "other-model"
    other.mkdir()
    with pytest.raises(HarnessError, match=rf"for MODEL={other} \(its runs are of MODEL={small_model.name}\)"):
        find_runs(runs_dir, str(other))
