"""Logs scored as what they are, values that mean what they say, a full disk, a lost rank: each one clear line
and nothing taken for a result (issue 25)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from common.errors import HarnessError, reason
from tests.conftest import REPO, cli_environment, run_cli
from tests.synthetic_logs import write_accuracy_log


def one_error_line(result) -> str:
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and last.startswith("error: ") and result.stderr.count("error: ") == 1, \
        result.stderr
    return last


def test_a_log_of_shorter_samples_is_refused_naming_seq_len(tmp_path, build_dir, features):
    """A SEQ_LEN=128 run's log (128 positions per entry) scored against the 384-token features."""
    logits = np.random.default_rng(0).standard_normal((len(features), 128, 2), dtype=np.float32)
    log = write_accuracy_log(tmp_path / "mlperf_log_accuracy.json", logits, np.arange(64))
    result = run_cli("accuracy", "--log-file", str(log), "--build-dir", str(build_dir), cwd=tmp_path)
    assert "score it with --seq-len 128" in one_error_line(result)
    assert not (tmp_path / "accuracy.txt").exists()


def test_short_outputs_that_cover_their_tokens_are_padded_as_the_reference_does(features):
    from accuracy.loadgen_log import decode_entries
    from qsl.features import PAD_LOGIT

    rows = [0, 1]
    entries = [(row, np.ones((int(features.lengths[row]), 2), np.float32).tobytes().hex()) for row in rows]
    logits = decode_entries(entries, REPO / "log.json", len(features), 384, lengths=features.lengths)
    assert all((logits[row][features.lengths[row]:] == PAD_LOGIT).all() for row in rows)
    short = [(0, np.ones((int(features.lengths[0]) - 1, 2), np.float32).tobytes().hex())]
    with pytest.raises(HarnessError, match=f"sample 0 is a feature of {features.lengths[0]} tokens"):
        decode_entries(short, REPO / "log.json", len(features), 384, lengths=features.lengths)


@pytest.mark.slow
def test_scoring_inside_a_run_folder_takes_the_runs_length(tmp_path, build_dir, features, small_model):
    build = tmp_path / "build"
    shutil.copytree(build_dir / "data", build / "data")
    made = run_cli("harness", "accuracy", "--model", str(small_model), "--seq-len", "128", "--count", "24",
                   "--build-dir", str(build), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    log = next(build.glob("logs/*/pytorch/fp32-cpu-squad-seq128-stride42/Offline/accuracy/mlperf_log_accuracy.json"))
    scored = run_cli("accuracy", "--log-file", str(log), "--build-dir", str(build), cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.splitlines()[0] == (log.parent / "accuracy.txt").read_text().splitlines()[0]
    wrong = run_cli("accuracy", "--log-file", str(log), "--seq-len", "384", "--build-dir", str(build), cwd=tmp_path)
    assert "--seq-len 384, but the run in" in one_error_line(wrong) and "used 128" in wrong.stderr


def hf_model(tmp_path, tiny_random_model, name, change):
    model = tmp_path / name
    shutil.copytree(tiny_random_model, model)
    change(model)
    return model


def edit_config(model, **values):
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **values}))


@pytest.mark.slow
@pytest.mark.parametrize("change, message", [
    (lambda model: edit_config(model, vocab_size=28996), "vocab_size 28996, but the features' vocabulary has 30522"),
    (lambda model: (model / "vocab.txt").write_text("\n".join(f"[unused{i}]" for i in range(30522))),
     "vocab.txt is another vocabulary than the features' (30522 word pieces, first difference at id 0)"),
    (lambda model: edit_config(model, model_type="gpt2", architectures=["GPT2LMHeadModel"]),
     "describes a gpt2 (architectures: GPT2LMHeadModel); supported: bert, distilbert"),
], ids=["cased-vocab-size", "other-vocab-txt", "gpt2"])
def test_a_model_that_cannot_read_the_features_is_refused_at_load(tmp_path, build_dir, features, tiny_random_model,
                                                                  change, message):
    model = hf_model(tmp_path, tiny_random_model, "model", change)
    result = run_cli("harness", "perf", "--model", str(model), "--count", "16", "--build-dir", str(build_dir),
                     cwd=tmp_path)
    assert message in one_error_line(result)


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [
    (["--max-tokens", "10"], "MAX_TOKENS=10 is below the longest sample (177 tokens)"),
    (["--worker-timeout", "0"], "WORKER_TIMEOUT=0 must be a number of seconds above 0"),
    (["--worker-timeout", "-5"], "WORKER_TIMEOUT=-5 must be a number of seconds above 0"),
    (["--worker-timeout", "abc"], "WORKER_TIMEOUT=abc must be a number of seconds above 0"),
    (["--rank0-computes", "2"], "RANK0_COMPUTES=2: choose one of 0, 1 (--rank0-computes)"),
    (["--replace", "yes"], "REPLACE=yes: choose one of 0, 1"),
    (["--batch-size", "many"], "BATCH_SIZE=many is not a whole number"),
    (["--workers", "3"], "WORKERS=3 on this machine, which has 2 CPU cores"),
], ids=["max-tokens", "timeout-0", "timeout-negative", "timeout-text", "rank0", "replace", "batch", "workers"])
def test_values_that_mean_something_else_are_refused_before_the_model_loads(tmp_path, build_dir, features,
                                                                            tiny_random_model, arguments, message):
    if "--workers" in arguments and (__import__("os").cpu_count() or 1) != 2:
        pytest.skip("the oversubscription case is written for a 2-core machine")
    result = run_cli("harness", "perf", "--model", str(tiny_random_model), "--count", "16", "--build-dir",
                     str(build_dir), *arguments, cwd=tmp_path)
    assert message in one_error_line(result)
    assert "Loading weights" not in result.stderr and "usage:" not in result.stderr


@pytest.mark.parametrize("command, message", [
    (["benchmarks.device_check", "--time-limit", "abc"], "TIME_LIMIT=abc is not a number (--time-limit)"),
    (["benchmarks.scale", "--count", "abc"], "COUNT=abc is not a number"),
    (["benchmarks.scale", "--scenarios", "Offlne"], "unknown SCENARIO=Offlne"),
    (["benchmarks.scale", "--scenarios", "SingleStream"], "SingleStream does not scale with devices"),
    (["submission", "--layout", "v7"], "LAYOUT=v7: choose one of v6, v5 (--layout)"),
])
def test_every_command_speaks_of_make_variables(tmp_path, command, message):
    result = run_cli(*command, cwd=tmp_path)
    assert message in one_error_line(result) and "usage:" not in result.stderr


@pytest.mark.slow
def test_more_stages_than_layers_is_named_before_the_microbatches_it_implies(tmp_path, small_model):
    result = run_cli("train", "--model", str(small_model), "--parallel", "pipeline", "--stages", "7", "--device",
                     "cpu", "--build-dir", str(tmp_path), cwd=tmp_path)
    assert "STAGES=7: the model has 6 encoder layers" in one_error_line(result)


@pytest.mark.slow
@pytest.mark.parametrize("config, message", [
    ("this is not an audit config\n", "line 1 ('this is not an audit config') is not a LoadGen setting"),
    ("*.*.mode = 2\n", "sets neither accuracy_log_sampling_target nor accuracy_log_probability"),
    ("*.*.mode = 2\n*.*.acuracy_log_sampling_target = 4096\n", "line 2"),
], ids=["junk", "nothing-logged", "typo"])
def test_a_bad_audit_config_is_refused_before_the_rerun(tmp_path, config, message):
    audit_config = tmp_path / "audit.config"
    audit_config.write_text(config)
    result = run_cli("harness", "compliance", "--build-dir", str(tmp_path / "empty"), "--audit-config",
                     str(audit_config), cwd=tmp_path)
    assert message in one_error_line(result)  # before it looks for runs, which this build folder has none of


def test_a_long_error_is_cut_at_a_word_and_loses_the_source_location():
    gloo = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
            "[127.0.0.1]:47329. " + "This is typically caused by a remote worker crashing. " * 8)
    text = reason(gloo, limit=120)
    assert text.startswith("Connection closed by peer") and text.endswith(" ...") and len(text) <= 124
    assert gloo.split(" ")[text.count(" ") - 1] in text.split(" ")  # whole words only
    assert reason("short\nsecond line") == "short"


def full_disk_run(tmp_path, build_dir, small_model, size_kib: int, arguments: list[str], skip_check: bool):
    """The harness on a tmpfs of `size_kib` holding only the features cache, in a mount namespace of its own."""
    disk = tmp_path / "disk"
    disk.mkdir()
    features = build_dir / "data" / "squad_features.npz"
    size = features.stat().st_size // 1024 + size_kib
    harness = ("import sys, runpy; import harness.run as run; run.check_free_space = lambda *_: None; "
               "sys.argv = ['harness', *sys.argv[1:]]; runpy.run_module('harness', run_name='__main__')"
               if skip_check else "import runpy; runpy.run_module('harness', run_name='__main__')")
    script = (f"mount -t tmpfs -o size={size}k tmpfs {disk} && mkdir {disk}/data && cp {features} {disk}/data/ && "
              f"{sys.executable} -c \"{harness}\" {' '.join(arguments)} --model {small_model} --build-dir {disk}; "
              f"code=$?; find {disk}/logs -name run_info.json -o -name accuracy.txt 2>/dev/null | grep -v partial; "
              "exit $code")
    for prefix in (["unshare", "--mount", "--propagation", "private"], ["unshare", "--user", "--map-root-user",
                                                                       "--mount"]):
        probe = subprocess.run([*prefix, "true"], capture_output=True)
        if probe.returncode == 0:
            return subprocess.run([*prefix, "bash", "-c", script], cwd=tmp_path, env=cli_environment(),
                                  capture_output=True, text=True, timeout=600)
    pytest.skip("needs unshare with a mount namespace (util-linux) to make a small disk")


@pytest.mark.slow
@pytest.mark.parametrize("command, room_kib", [("perf", 16), ("accuracy", 60)])
def test_a_disk_that_fills_during_the_run_gives_one_line_and_no_result(tmp_path, build_dir, features, small_model,
                                                                       command, room_kib):
    """Past the check before the run (switched off here), as when another job fills the disk meanwhile."""
    result = full_disk_run(tmp_path, build_dir, small_model, room_kib, [command, "--count", "64"], skip_check=True)
    last = one_error_line(result)
    assert "LoadGen's logs are incomplete" in last and "not a result" in last and "BUILD=" in last
    assert "Traceback" not in result.stderr and not result.stdout.strip().endswith(("run_info.json", "accuracy.txt"))


@pytest.mark.slow
def test_a_disk_too_small_for_the_run_is_refused_before_it_starts(tmp_path, build_dir, features, small_model):
    result = full_disk_run(tmp_path, build_dir, small_model, 600, ["accuracy", "--count", "300"], skip_check=False)
    assert "MiB free, and this run's logs (300 logged responses of 384 tokens) needs about" in one_error_line(result)
