"""Every bad input gives one clear error line naming the fix, exit code 2, and no result that looks real."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from common.errors import HarnessError
from sut.models import load_model
from tests.conftest import run_cli

TINY_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
               "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
               "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "initializer_range": 0.02}
README = Path(__file__).parents[1] / "README.md"


def logs_in(build_dir):
    return sorted(path.relative_to(build_dir) for path in (build_dir / "logs").rglob("*")) \
        if (build_dir / "logs").exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [
    (["--scenario", "Offlne"], "unknown SCENARIO=Offlne; choose one of Offline, Server"),
    (["--backend", "tflite"], "unknown BACKEND=tflite"),
    (["--device", "tpu"], "unknown DEVICE=tpu"),
    (["--precision", "fp64"], "BACKEND=pytorch runs PRECISION=fp32, fp16, bf16, fp8, not fp64"),
    (["--precision", "int8"], "BACKEND=pytorch runs PRECISION=fp32, fp16, bf16, fp8, not int8"),
    (["--backend", "onnxruntime", "--precision", "bf16"], "BACKEND=onnxruntime runs PRECISION=fp32, fp16, int8"),
    (["--backend-option", "optimise=1"], "BACKEND=pytorch has no option 'optimise'; it accepts: compile"),
    (["--backend-option", "compile"], "backend option 'compile' is not KEY=VALUE"),
    (["--backend-option", "graphs=2"], "BACKEND_OPTIONS graphs=2: give graphs=1 or graphs=0"),
    (["--backend", "onnxruntime", "--backend-option", "intra_threads=-2"],
     "BACKEND_OPTIONS intra_threads=-2: give a whole number, 0 or more"),
    (["--system", "dgx-moon"], "unknown SYSTEM=dgx-moon"),
    (["--count", "many"], "COUNT=many is not a number"),
    (["--count", "0"], "COUNT must be at least 1"),
    (["--batch-size", "-3"], "BATCH_SIZE must be at least 1, got -3"),
    (["--workers", "0"], "WORKERS=0 must be a whole number of at least 1"),
    (["--workers", "two"], "WORKERS=two must be a whole number of at least 1"),
    (["--model", "/no/such/model"], "MODEL=/no/such/model does not exist"),
    (["--model", str(README)], "README.md is not a PyTorch checkpoint"),
    (["--backend", "simulated", "--shape", "tiny"], "BACKEND=simulated loads no model: leave out MODEL= and SHAPE="),
    (["--backend", "simulated", "--backend-option", "samples_per_second=fast"],
     "BACKEND_OPTIONS samples_per_second=fast: give a whole number"),
])
def test_bad_run_options(tmp_path, build_dir, features, arguments, message):
    before = logs_in(build_dir)
    result = run_cli("harness", "perf", "--build-dir", str(build_dir), *arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert logs_in(build_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [  # what the backend itself can tell only once built
    (["--backend", "onnxruntime", "--precision", "fp16"], "ONNX Runtime fp16 is for GPUs"),
    (["--backend", "tensorrt"], "pip install '.[tensorrt]'"),
])
def test_bad_backend_choices(tmp_path, build_dir, features, tiny_random_model, arguments, message):
    if "tensorrt" in arguments and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    before = logs_in(build_dir)
    result = run_cli("harness", "perf", "--build-dir", str(build_dir), "--model", str(tiny_random_model),
                     *arguments, cwd=tmp_path)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]  # after the model's loading bar
    assert last_line.startswith("error: ") and message in last_line, result.stderr
    assert result.stderr.count("error: ") == 1
    assert logs_in(build_dir) == before


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path, build_dir, features):
    result = run_cli("harness", "perf", "--device", "cuda", "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2
    assert "no CUDA GPU is visible" in result.stderr and "DEVICE=cpu" in result.stderr


@pytest.mark.slow
def test_accuracy_refuses_a_simulated_device(tmp_path, build_dir, features):
    result = run_cli("harness", "accuracy", "--backend", "simulated", "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "a simulated device only takes time and answers zeros" in result.stderr and "(pytorch)" in result.stderr


@pytest.mark.slow
def test_accuracy_refuses_random_weights(tmp_path, build_dir, features):
    result = run_cli("harness", "accuracy", "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2
    assert "accuracy needs real weights" in result.stderr and "make download" in result.stderr


def test_malformed_accuracy_log(tmp_path, build_dir, features):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text('[{"qsl_idx": 0, "data": "00')
    result = run_cli("accuracy", "--log-file", str(log), "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2 and "not valid JSON" in result.stderr
    assert not (tmp_path / "accuracy.txt").exists()


def test_corrupt_dataset_for_accuracy(tmp_path, build_dir, features):
    dataset = tmp_path / "dev-v1.1.json"
    dataset.write_text('{"version": "1.1", "data": []}')
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([{"qsl_idx": 0, "data": "00" * 3072}]))
    result = run_cli("accuracy", "--log-file", str(log), "--dataset", str(dataset),
                     "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2 and "not the official file" in result.stderr


def save_checkpoint(directory, module_class, extra=None):
    from transformers import BertConfig

    directory.mkdir()
    state = module_class(BertConfig(**TINY_CONFIG)).state_dict()
    state.update(extra or {})
    torch.save(state, directory / "model.pytorch")
    (directory / "bert_config.json").write_text(json.dumps(TINY_CONFIG))
    return directory / "model.pytorch"


def test_mlperf_checkpoint_loads_and_reports_extra_keys(tmp_path):
    from transformers import BertForQuestionAnswering

    extra = {"bert.embeddings.position_ids": torch.arange(512)[None], "classifier.weight": torch.zeros(1)}
    path = save_checkpoint(tmp_path / "ok", BertForQuestionAnswering, extra)
    messages = []
    model = load_model(str(path), tmp_path, allow_random=False, log=messages.append)
    assert model.name == "bert-large-mlperf" and not model.is_random
    assert model.module.config.hidden_size == 32  # bert_config.json beside the checkpoint is used
    assert any("classifier.weight" in message for message in messages)


def test_checkpoint_without_qa_head_is_refused(tmp_path):
    from transformers import BertModel

    class BareBert(BertModel):  # state dict keys prefixed like the QA model, but no qa_outputs
        def state_dict(self, *args, **kwargs):
            return {f"bert.{key}": value for key, value in super().state_dict(*args, **kwargs).items()}

    path = save_checkpoint(tmp_path / "bare", BareBert)
    with pytest.raises(HarnessError, match="no question-answering head"):
        load_model(str(path), tmp_path, allow_random=False)


def test_pickled_checkpoint_needs_explicit_trust(tmp_path):
    from transformers import BertForQuestionAnswering

    path = save_checkpoint(tmp_path / "pickled", BertForQuestionAnswering, {"note": HarnessError("a pickled object")})
    with pytest.raises(HarnessError, match="TRUST_CHECKPOINT=1"):
        load_model(str(path), tmp_path, allow_random=False)
    assert not load_model(str(path), tmp_path, allow_random=False, trust_checkpoint=True).is_random


@pytest.mark.slow
@pytest.mark.parametrize("config", ["none", "wrong"])
def test_checkpoint_of_another_size_names_the_config(tmp_path, config):
    from transformers import BertForQuestionAnswering

    path = save_checkpoint(tmp_path / "small", BertForQuestionAnswering)
    if config == "none":
        (path.parent / "bert_config.json").unlink()
        message = r"does not fit BERT-Large's configuration, as no bert_config.json lies beside it"
    else:
        (path.parent / "bert_config.json").write_text(json.dumps({**TINY_CONFIG, "hidden_size": 64}))
        message = r"does not fit the bert_config.json beside it"
    with pytest.raises(HarnessError, match=message + r": \d+ weights differ in shape, first bert\.embeddings"):
        load_model(str(path), tmp_path, allow_random=False)


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [
    (["submission", "--check", "/no/such/tree"], "--check /no/such/tree: no such folder"),
    (["submission", "--check", str(README)], "README.md: is a file: unpack it and give the unpacked tree"),
    (["accuracy", "--log-file", str(README.parent)], "is a folder; give the mlperf_log_accuracy.json file in it"),
    (["benchmarks.bench", "--model", "/no/such/model"], "MODEL=/no/such/model does not exist"),
], ids=["submission check", "submission check of a file", "accuracy log folder", "bench"])
def test_other_commands_refuse_wrong_paths(tmp_path, build_dir, features, arguments, message):
    if "benchmarks.bench" in arguments and torch.cuda.is_available():
        pytest.skip("on a GPU, make bench times BERT-Large, not the small model")
    result = run_cli(*arguments, "--build-dir", str(build_dir), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("change, message", [
    ({"loadgen": {"Offline": {"target_qs": 50}}}, "loadgen.Offline.target_qs is not a LoadGen setting for Offline"),
    ({"loadgen": {"Offline": {"target_latency": 50}}}, "Offline takes target_qps, and every scenario min_duration"),
    ({"loadgen": {"offline": {"target_qps": 50}}}, "loadgen.offline is not a scenario"),
    ({"loadgen": {"Server": {"target_qps": "3000"}}}, "loadgen.Server.target_qps must be a number, not '3000'"),
    ({"batch_size": "8"}, "batch_size must be a whole number of at least 1, not '8'"),
    ({"max_tokens": 0}, "max_tokens must be a whole number of at least 1 or null, not 0"),
    ({"batchsize": 8}, "not a valid system file (SystemConfig.__init__() got an unexpected keyword argument"),
])
def test_bad_system_file(tmp_path, monkeypatch, change, message):
    from configs import SYSTEMS_DIR
    from harness.settings import load_system

    system = {**json.loads((SYSTEMS_DIR / "cpu.json").read_text()), **change}
    (tmp_path / "edited.json").write_text(json.dumps(system))
    monkeypatch.setattr("harness.settings.SYSTEMS_DIR", tmp_path)
    with pytest.raises(HarnessError, match=re.escape(message)):
        load_system("edited")


def test_shipped_system_files_are_valid():
    from harness.settings import known_systems, load_system

    assert {"cpu", "gpu", "h100", "h200"} <= set(known_systems())
    for name in known_systems():
        assert load_system(name).loadgen


@pytest.mark.parametrize("settings, message", [
    ({"submiter": "Us"}, "unknown key submiter; the keys are submitter, division"),
    ({"system": "a GPU"}, '"system" must be an object'),
    (["MyTeam"], "must be a JSON object"),
])
def test_bad_submission_config(tmp_path, settings, message):
    from submission.system import load_submission_config

    path = tmp_path / "submission.json"
    path.write_text(json.dumps(settings))
    with pytest.raises(HarnessError, match=re.escape(message)):
        load_submission_config(path)


def test_shipped_submission_config_is_valid():
    from submission.system import load_submission_config

    assert load_submission_config()["submitter"]


@pytest.mark.parametrize("system_type, printed", [("datacenter", "Offline Server"), ("edge", "Offline SingleStream"),
                                                  ("phone", "")])
def test_required_scenarios_follow_the_system_type(tmp_path, system_type, printed):
    """What `make all` runs by default; a system type the rules do not know is refused, not run as nothing."""
    config = tmp_path / "submission.json"
    config.write_text(json.dumps({"submitter": "Us", "system_type": system_type}))
    result = run_cli("submission", "--required-scenarios", "--config", str(config), cwd=tmp_path)
    if printed:
        assert (result.returncode, result.stdout) == (0, printed + "\n")
    else:
        assert result.returncode == 2 and "system_type 'phone' is neither edge nor datacenter" in result.stderr


def test_makefile_keeps_paths_with_spaces_whole():
    """A space in BUILD must not split `rm -rf` into two deletions (make -n prints without running)."""
    result = subprocess.run(["make", "-n", "clean", "distclean", "perf", "submission", "BUILD=/x y", "MODEL=/m n",
                             "SUBMITTER=My Team", "PYTHON=python3"], cwd=README.parent, capture_output=True,
                            text=True, check=True)
    assert 'rm -rf "/x y/logs" "/x y/submission" "/x y/data/squad_features.npz"' in result.stdout
    assert 'rm -rf "/x y" .venv' in result.stdout
    assert '--build-dir "/x y"' in result.stdout and '--model "/m n"' in result.stdout
    assert '--submitter "My Team"' in result.stdout


@pytest.mark.slow
def test_build_folder_that_is_a_file(tmp_path):
    not_a_folder = tmp_path / "build"
    not_a_folder.write_text("a file")
    result = run_cli("harness", "perf", "--build-dir", str(not_a_folder), "--count", "8", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: Not a directory: {not_a_folder / 'data'}"
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["perf", "accuracy"])
def test_stray_audit_config_is_refused(tmp_path, build_dir, features, command):
    """LoadGen obeys ./audit.config over everything: an accuracy run would silently become a performance run."""
    (tmp_path / "audit.config").write_text("*.*.mode = 2\n")
    before = logs_in(build_dir)
    result = run_cli("harness", command, "--build-dir", str(build_dir), "--count", "4", cwd=tmp_path)
    assert result.returncode == 2
    assert "audit.config is here: LoadGen would obey it" in result.stderr and "make compliance" in result.stderr
    assert logs_in(build_dir) == before


def test_missing_module_names_the_fix(monkeypatch):
    """A module of this repository is missing only when a script runs from the wrong place; say how to run it."""
    from common.cli import REPO, missing_module_fix

    monkeypatch.setattr("sys.argv", [str(REPO / "benchmarks" / "cpu.py")])
    assert missing_module_fix("benchmarks.bench").endswith(f"run from {REPO} as a module: python -m benchmarks.cpu")
    assert "run `make setup`" in missing_module_fix("mlperf_loadgen")


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    (lambda model: (model / "config.json").write_text('{"model_type": "bert", "hidden_size": '),
     "config.json is not valid JSON"),
    (lambda model: (model / "config.json").write_text(json.dumps({**TINY_CONFIG, "hidden_size": "big"})),
     "cannot load the model in"),
    (lambda model: (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:5000]),
     "check its config.json and model.safetensors"),
])
def test_damaged_hugging_face_directory(tmp_path, build_dir, features, tiny_random_model, damage, message):
    model = tmp_path / "model"
    shutil.copytree(tiny_random_model, model)
    damage(model)
    result = run_cli("harness", "perf", "--build-dir", str(build_dir), "--model", str(model), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
