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


@pytest.mark.parametrize("accelerators", ["none", "gpu"])
def test_official_checker_passes_our_short_tree(runs_dir, tmp_path, accelerators):
    """The real checker, v6.1 rules, as MLC runs it for the SCC; MLPERF_INFERENCE_DIR names a checkout."""
    checkout = os.environ.get("MLPERF_INFERENCE_DIR")
    if not checkout:
        pytest.skip("set MLPERF_INFERENCE_DIR to an mlcommons/inference checkout to run the official checker")
    config = json.loads(SUBMISSION_CONFIG.read_text())
    if accelerators == "gpu":
        config["system"].update(GPU_SYSTEM)
    (tmp_path / "submission.json").write_text(json.dumps(config))
    result = run_cli("submission", "--short", "--checker", checkout, "--config", str(tmp_path / "submission.json"),
                     "--build-dir", str(runs_dir), "--out", str(tmp_path / "out"), cwd=runs_dir)
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
