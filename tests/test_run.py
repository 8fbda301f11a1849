"""End to end through real LoadGen, as a user runs it: `python -m harness perf|accuracy`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.errors import HarnessError
from sut.backend import Backend
from tests.conftest import cli_environment, run_cli


@pytest.mark.slow
def test_offline_quick_run_with_tiny_random_bert(tmp_path, build_dir, features, tiny_random_model):
    result = run_cli("harness", "perf", "--model", str(tiny_random_model), "--count", "48",
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = build_dir / "logs" / tiny_random_model.name / "pytorch" / "fp32-cpu" / "Offline" / "performance" / "run_1"
    summary = (run_dir / "mlperf_log_summary.txt").read_text()
    assert "Result is : VALID" in summary
    assert "NOT COMPLIANT: quick run (COUNT=48)" in summary
    assert "LoadGen result: VALID, NOT COMPLIANT (quick run, COUNT=48); logs in" in result.stdout
    assert "Samples per second" in result.stdout  # LoadGen's summary, printed once the progress bar is done
    assert "LoadGen run: 100%" in result.stderr and "48/48" in result.stderr
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["samples_answered"] == 48 and info["compliant_settings"] is False
    assert info["start_utc"] < info["end_utc"]
    assert "bert.Offline.target_qps" in (run_dir / "user.conf").read_text()
    assert not run_dir.with_name("run_1.partial").exists()
    assert not run_dir.with_name("run_1.lock").exists() and not (run_dir / "mlperf_log_trace.json").exists()


@pytest.mark.slow
def test_trace_log_only_when_asked(tmp_path, build_dir, features, tiny_random_model):
    result = run_cli("harness", "perf", "--model", str(tiny_random_model), "--count", "16", "--enable-trace",
                     "--build-dir", str(tmp_path / "build"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trace = next((tmp_path / "build" / "logs").rglob("mlperf_log_trace.json"))
    assert trace.stat().st_size > 16 * 200  # about 270 bytes per sample


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["SingleStream", "Server", "MultiStream"])
def test_other_scenarios_complete(tmp_path, build_dir, features, tiny_random_model, scenario):
    result = run_cli("harness", "perf", "--scenario", scenario, "--model", str(tiny_random_model),
                     "--count", "16", "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = build_dir / "logs" / tiny_random_model.name / "pytorch" / "fp32-cpu" / scenario / "performance" / "run_1"
    summary = (run_dir / "mlperf_log_summary.txt").read_text()
    assert f"Scenario : {scenario}" in summary
    assert "LoadGen run: 100%" in result.stderr and "16/16" in result.stderr  # no run is silent
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("LoadGen result: "))
    assert verdict.startswith("LoadGen result: VALID,") == ("Result is : VALID" in summary)
    if scenario == "MultiStream":  # two queries of 8: far too few for early stopping, which the console says
        assert "INVALID (not satisfied: Early stopping)" in verdict
        assert "rarely satisfy LoadGen's early-stopping estimate" in result.stdout


@pytest.mark.slow
def test_accuracy_run_logs_float32_logits_per_sample(tmp_path, build_dir, features, tiny_random_model):
    result = run_cli("harness", "accuracy", "--model", str(tiny_random_model), "--count", "24",
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = build_dir / "logs" / tiny_random_model.name / "pytorch" / "fp32-cpu" / "Offline" / "accuracy"
    entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(entry["qsl_idx"] for entry in entries) == list(range(24))
    logits = np.frombuffer(bytes.fromhex(entries[0]["data"]), np.float32).reshape(384, 2)
    length = features.lengths[entries[0]["qsl_idx"]]
    assert np.all(logits[length + 8:] == -10000.0) and np.all(logits[:length] != -10000.0)
    accuracy_txt = (run_dir / "accuracy.txt").read_text().splitlines()
    assert accuracy_txt[0].startswith('{"exact_match": ') and accuracy_txt[-1].startswith("hash=")
    assert "PARTIAL LOG" in result.stdout


def official_scores(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith('{"exact_match"')))


def answered_scores(stdout: str) -> dict:
    """F1 and EM over the questions a partial log answers, from its PARTIAL LOG line."""
    found = re.search(r"Over the answered questions: F1 ([\d.]+), EM ([\d.]+);", stdout)
    assert found, stdout
    return {"f1": float(found.group(1)), "exact_match": float(found.group(2))}


@pytest.mark.slow
def test_accuracy_with_small_real_model_same_for_each_backend(tmp_path, build_dir, features, small_model):
    scores = {}
    for backend in ("pytorch", "onnxruntime"):
        result = run_cli("harness", "accuracy", "--backend", backend, "--model", str(small_model), "--count", "160",
                         "--build-dir", str(build_dir), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        scores[backend] = answered_scores(result.stdout)
        # the official line scores all 10,570 questions, as the reference does, the unanswered ones as "empty"
        assert official_scores(result.stdout)["f1"] < 5.0
    # The first 160 features are training articles of this model: F1 is high, and far lower when any
    # step between logits and text (decoding, spans, alignment) breaks.
    assert scores["pytorch"]["f1"] > 85.0 and scores["pytorch"]["exact_match"] > 75.0
    assert scores["onnxruntime"]["f1"] == pytest.approx(scores["pytorch"]["f1"], abs=0.1)
    run_dir = build_dir / "logs" / "minilm-squad-devhalf" / "pytorch" / "fp32-cpu" / "Offline" / "accuracy"
    rerun = run_cli("accuracy", "--log-file", str(run_dir / "mlperf_log_accuracy.json"),
                    "--build-dir", str(build_dir), "--accuracy-txt", str(tmp_path / "accuracy.txt"), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert answered_scores(rerun.stdout) == scores["pytorch"]
    # Scored again beside the run with the wrong layout flag: the run's accuracy.txt is kept.
    kept = (run_dir / "accuracy.txt").read_text()
    wrong = run_cli("accuracy", "--log-file", str(run_dir / "mlperf_log_accuracy.json"), "--output-transposed",
                    "--build-dir", str(build_dir), cwd=tmp_path)
    assert wrong.returncode == 1 and "already scores this log differently" in wrong.stderr
    assert (run_dir / "accuracy.txt").read_text() == kept


@pytest.mark.slow
def test_onnxruntime_offline_quick_run(tmp_path, build_dir, features, tiny_random_model):
    result = run_cli("harness", "perf", "--backend", "onnxruntime", "--model", str(tiny_random_model),
                     "--count", "32", "--backend-option", "intra_threads=1", "--build-dir", str(build_dir),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = build_dir / "logs" / tiny_random_model.name / "onnxruntime" / "fp32-cpu+intra_threads=1" / "Offline" / \
        "performance" / "run_1"  # backend options are part of the configuration a run is kept apart by
    assert "Result is : VALID" in (run_dir / "mlperf_log_summary.txt").read_text()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["backend"] == "onnxruntime" and info["backend_options"] == {"intra_threads": "1"}
    assert list((build_dir / "cache" / "onnx").glob(f"{tiny_random_model.name}-*.onnx"))


class FailingBackend(Backend):
    """Fails on its second batch, the way a GPU running out of memory mid-run does."""

    name = "failing"

    def __init__(self):
        self.calls = 0

    def predict(self, input_ids, input_mask, segment_ids):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("out of memory")
        return np.zeros((*input_ids.shape, 2), np.float32)


class IdEchoBackend(Backend):
    """Answers each token with its own id (start) and minus it (end): every sample's logits are its own."""

    name = "echo"

    def predict(self, input_ids, input_mask, segment_ids):
        return np.stack([input_ids, -input_ids], axis=-1).astype(np.float32)


def loadgen_accuracy_run(tmp_path, features, backend, count: int = 64) -> tuple[object, list[dict]]:
    """An AccuracyOnly run of `count` samples through our SUT and QSL: the SUT and the logged entries."""
    import mlperf_loadgen as lg

    from harness.settings import test_settings
    from qsl.loadgen_qsl import SquadQSL
    from sut.sut import SUT

    user_conf = tmp_path / "user.conf"
    user_conf.write_text("")
    settings = test_settings(user_conf, "Offline", accuracy=True, count=count)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(tmp_path)
    qsl, sut = SquadQSL(features, count), SUT(backend, features, max_batch_size=8)
    lg.StartTestWithLogSettings(sut.handle, qsl.handle, settings, log_settings)
    sut.close()
    qsl.close()
    return sut, json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())


def test_each_sample_is_answered_with_its_own_logits(tmp_path, features):
    sut, entries = loadgen_accuracy_run(tmp_path, features, IdEchoBackend())
    assert sut.error is None and sorted(entry["qsl_idx"] for entry in entries) == list(range(64))
    for entry in entries:
        logits = np.frombuffer(bytes.fromhex(entry["data"]), np.float32).reshape(384, 2)
        length = features.lengths[entry["qsl_idx"]]
        ids = features.input_ids[entry["qsl_idx"], :length]
        assert (logits[:length, 0] == ids).all() and (logits[:length, 1] == -ids).all()
        assert np.isin(logits[length:], [0.0, -10000.0]).all()  # padding (id 0) within its batch, then PAD_LOGIT


def test_backend_failure_mid_run_still_lets_loadgen_finish_with_empty_answers(tmp_path, features):
    sut, entries = loadgen_accuracy_run(tmp_path, features, FailingBackend())
    assert isinstance(sut.error, RuntimeError) and sut.samples_done == 64
    sizes = [len(entry["data"]) // 2 for entry in entries]
    assert sizes.count(0) >= 56  # every sample after the failing batch gets an empty answer, not stale logits
    assert set(sizes) <= {0, 384 * 2 * 4}


def out_of_memory_at_warm_up(*args, **kwargs):
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.slow
@pytest.mark.parametrize("create_backend, when", [(lambda *args, **kwargs: FailingBackend(), "during the run"),
                                                  (out_of_memory_at_warm_up, "while warming up")])
def test_out_of_memory_names_the_settings_to_lower(build_dir, features, tiny_random_model, monkeypatch,
                                                    create_backend, when):
    from harness import build, run

    monkeypatch.setattr(build, "create_backend", create_backend)
    options = run.RunOptions(model=str(tiny_random_model), count="64", build_dir=build_dir, system="cpu")
    with pytest.raises(HarnessError, match=rf"failed {when}: .*out of memory.*lower max_tokens \(none set\) or "
                                           r"batch_size \(8\) in configs/systems/cpu.json, or give BATCH_SIZE="):
        run.run(options, accuracy=False, log=lambda *_: None)


@pytest.mark.slow
def test_ctrl_c_stops_a_run_at_once(tmp_path, build_dir, features, tiny_random_model):
    """LoadGen blocks in C++; Ctrl-C must still end the run promptly, and leave no result behind."""
    command = [sys.executable, "-m", "harness", "perf", "--scenario", "Server", "--count", "300",
               "--model", str(tiny_random_model), "--build-dir", str(build_dir)]  # ~300 s at 1 query/s
    env = {**cli_environment(), "PYTHONUNBUFFERED": "1"}  # the start line arrives as it is printed
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in process.stdout:
        if "PerformanceOnly" in line:  # LoadGen is about to start
            break
    time.sleep(2)
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and time.monotonic() - interrupted < 10
    assert "interrupted: LoadGen stopped mid-run" in stderr and "(not a result)" in stderr
    partial = build_dir / "logs" / tiny_random_model.name / "pytorch" / "fp32-cpu" / "Server" / "performance" / \
        "run_1.partial"
    assert partial.is_dir() and not (partial / "run_info.json").exists()


@pytest.mark.slow
def test_a_second_run_of_the_same_scenario_waits_its_turn(tmp_path, build_dir, features, tiny_random_model):
    """Two runs into one folder at once (two precisions on two GPUs): the second is refused, the first goes on."""
    command = ["harness", "perf", "--scenario", "Server", "--count", "300", "--model", str(tiny_random_model),
               "--build-dir", str(build_dir)]
    env = {**cli_environment(), "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", *command], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in first.stdout:
        if "PerformanceOnly" in line:
            break
    second = run_cli(*command, cwd=tmp_path)
    still_running = first.poll() is None
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert still_running
    assert second.returncode == 2 and "another Server PerformanceOnly of" in second.stderr
    assert "wait for it to finish, or give this one its own BUILD= folder" in second.stderr


@pytest.mark.slow
def test_offline_progress_counts_tokens_and_samples(tmp_path, build_dir, features, tiny_random_model):
    """The bar's total is the query's tokens (longest batches run first), with samples answered beside it."""
    result = run_cli("harness", "perf", "--model", str(tiny_random_model), "--count", "1000",
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tokens = int(features.lengths[:1000].sum())
    final = [part for part in result.stderr.replace("\r", "\n").splitlines() if part.startswith("inference: 100%")][-1]
    assert f"/{tokens / 1000:.0f}k" in final and "1,000/1,000 samples" in final


@pytest.mark.parametrize(("count", "expected"), [("full", None), (None, 64), ("48", 48)])
def test_count_full_gives_loadgen_the_compliant_settings(tmp_path, build_dir, features, tiny_random_model,
                                                         monkeypatch, count, expected):
    """COUNT=full is the only way to a compliant run on the cpu system, whose default is a quick run of 64."""
    import shutil

    from harness import run

    shutil.copytree(build_dir / "data", tmp_path / "data")
    started = {}
    monkeypatch.setattr(run, "start_test", lambda sut, qsl, settings, *_, **__: started.update(settings=settings))
    monkeypatch.setattr(run, "unfinished_logs", lambda *_: [])  # LoadGen stands in: it writes no logs
    options = run.RunOptions(model=str(tiny_random_model), count=count, build_dir=tmp_path, system="cpu")
    _, resolved = run.run(options, accuracy=False, log=lambda *_: None)
    settings = started["settings"]
    assert resolved.count == expected and resolved.compliant_settings == (expected is None)
    if expected is None:  # mlperf.conf's values for bert, untouched
        assert settings.min_duration_ms == 600_000 and settings.performance_sample_count_override == 10833
    else:
        assert settings.min_duration_ms == 0 and settings.performance_sample_count_override == expected


def test_every_run_in_a_process_gets_mlperf_conf(tmp_path):
    """LoadGen applies its embedded mlperf.conf only at a process's first FromConfig; later runs need it too."""
    from harness.settings import test_settings

    user_conf = tmp_path / "user.conf"
    user_conf.write_text("")
    for scenario in ("SingleStream", "Offline", "SingleStream", "MultiStream"):
        settings = test_settings(user_conf, scenario, accuracy=False, count=None)
        assert settings.min_duration_ms == 600_000 and settings.performance_sample_count_override == 10833
