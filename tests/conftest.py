"""Shared fixtures: the real features (built once per session) and the small real model from ../shared."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERT99_SHARED", REPO.parent / "shared"))
SMALL_MODEL = SHARED / "models" / "minilm-squad-devhalf"
MIXED_ROWS = [0, 3, 17, 100, 2000, 5000, 7000, 9999, 10832]  # dev features of many different lengths
# The same default precision on every CI machine (fp32: as on a CPU without AMX or AVX512-BF16); the tests
# of the CPU-picked precision set flags of their own (tests/test_cpu_precision.py).
os.environ["BERT99_CPU_FLAGS"] = ""

# The Ctrl-C tests signal the processes they start, which inherit an ignored SIGINT: a shell ignores it in
# what it starts in the background (`make test &` in a script). Children of a handled SIGINT get it back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def train_build(tmp_path_factory) -> Path:
    """One build folder per training test module, whose labelled training features (train/data, written
    atomically) are made once per session and shared by every module and pytest-xdist worker."""
    build = tmp_path_factory.mktemp("train-build")
    shared = session_folder(tmp_path_factory) / "train-features"
    shared.mkdir(exist_ok=True)
    (build / "train").mkdir()
    (build / "train" / "data").symlink_to(shared)
    return build


@pytest.fixture(scope="session")
def features(build_dir, tmp_path_factory):
    """The dev set's features in this worker's build folder, tokenised once per session for every worker."""
    from qsl.cache import load_features

    def tokenise(folder: Path) -> None:
        load_features(folder / "squad_features.npz", log=lambda *_: None)

    (build_dir / "data").mkdir(exist_ok=True)
    shutil.copy(made_once(tmp_path_factory, "features", tokenise) / "squad_features.npz", build_dir / "data")
    return load_features(build_dir / "data" / "squad_features.npz", log=lambda *_: None)


@pytest.fixture(scope="session")
def examples():
    from qsl.dataset import load_dataset, read_examples

    return read_examples(load_dataset())


@pytest.fixture(scope="session")
def small_model() -> Path:
    if not (SMALL_MODEL / "config.json").is_file():
        pytest.skip(f"small real model not found at {SMALL_MODEL} (needs ../shared beside the checkout)")
    return SMALL_MODEL


@pytest.fixture(scope="session")
def model(small_model, build_dir):
    """The small real model, loaded once per worker; backends copy or convert it, never change it."""
    from sut.models import load_model

    return load_model(str(small_model), build_dir, allow_random=False, log=lambda *_: None)


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One cache of ONNX exports and compiled models for the whole session (its writes are atomic)."""
    folder = session_folder(tmp_path_factory) / "onnx-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory) -> Path:
    """A 2-layer random BERT QA model in Hugging Face format: fast enough to run LoadGen end to end."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    path = tmp_path_factory.mktemp("tiny-bert")
    BertForQuestionAnswering(config).save_pretrained(path)
    return path


def mixed_batch(features):
    """One batch of MIXED_ROWS, padded exactly to its longest feature."""
    from sut.batching import batch_inputs

    return batch_inputs(features, MIXED_ROWS, pad_multiple=1)


def cli_environment() -> dict[str, str]:
    """The environment the harness runs in under test: this one, with this repo importable.

    MLPERF_INFERENCE_DIR is left out: it makes every `python -m submission` run the official checker,
    which the tests that want it ask for with --checker.
    """
    environment = {key: value for key, value in os.environ.items() if key != "MLPERF_INFERENCE_DIR"}
    return {**environment, "PYTHONPATH": str(REPO)}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The harness as a user runs it, in `cwd`."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=cli_environment(), capture_output=True,
                          text=True, timeout=600)


def subset_f1(backend, features, examples, example_count: int, batch_size: int = 32) -> float:
    """F1 over the first `example_count` questions, every one of their features run through `backend`."""
    import numpy as np

    from accuracy.postprocess import predictions
    from accuracy.squad_v1_1 import score
    from qsl.dataset import SHIPPED_VOCAB
    from qsl.features import MAX_SEQ_LENGTH
    from qsl.tokenizer import load_tokenizer

    rows = np.flatnonzero(features.example_index < example_count)
    logits = {}
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        output = backend.predict(features.input_ids[batch], features.input_mask[batch], features.segment_ids[batch])
        assert output.shape == (len(batch), MAX_SEQ_LENGTH, 2) and output.dtype == np.float32
        logits.update(zip(batch.tolist(), output, strict=True))
    answers = predictions(features, examples, logits, load_tokenizer(), SHIPPED_VOCAB.read_text().splitlines())
    gold = {example.qas_id: example.answers for example in examples if example.qas_id in answers}
    assert len(gold) == example_count
    return score(answers, gold)["f1"]


F1_QUESTIONS = 200  # the yardsticks' questions: the first 200 of the dev set, with all their features


@pytest.fixture(scope="session")
def small_model_f1(tmp_path_factory, model, features, examples) -> dict[str, float]:
    """The small model's fp32 F1 over F1_QUESTIONS, transformers' (`huggingface`) and ours (`pytorch`): the
    yardsticks every precision and backend test compares with, measured once per session for all workers."""
    def measure(folder: Path) -> None:
        from sut.huggingface_backend import HuggingFaceBackend
        from sut.pytorch_backend import PackedBackend

        scores = {backend.name: subset_f1(backend, features, examples, F1_QUESTIONS) for backend in
                  (HuggingFaceBackend(model, "cpu", "fp32"), PackedBackend(model, "cpu", "fp32"))}
        (folder / "f1.json").write_text(json.dumps(scores))

    return json.loads((made_once(tmp_path_factory, "small-model-f1", measure) / "f1.json").read_text())


SUBMISSION_SCENARIOS = ("Offline", "SingleStream")


def session_folder(tmp_path_factory) -> Path:
    """This test session's own temporary folder, the same for every pytest-xdist worker of it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(tmp_path_factory, name: str, make) -> Path:
    """A folder of this test session that `make(folder)` fills once: the first pytest-xdist worker to need it
    makes it under a lock, the others wait and read it (tests copy it to change it)."""
    folder = session_folder(tmp_path_factory) / name
    with open(folder.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".made").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory, build_dir, features, small_model):
    """A build folder holding short performance and accuracy runs of two scenarios, made once per session."""
    def make_runs(runs: Path) -> None:
        (runs / "data").mkdir()
        shutil.copy(build_dir / "data" / "squad_features.npz", runs / "data")
        for scenario in SUBMISSION_SCENARIOS:
            for command, count in (("perf", "64"), ("accuracy", "24")):  # 64: SingleStream's early stopping
                result = run_cli("harness", command, "--scenario", scenario, "--model", str(small_model),
                                 "--count", count, "--build-dir", str(runs), cwd=runs)
                assert result.returncode == 0, result.stderr

    return made_once(tmp_path_factory, "shared-runs", make_runs)


@pytest.fixture(scope="session")
def short_submission(runs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("submission")
    result = run_cli("submission", "--short", "--build-dir", str(runs_dir), "--out", str(out), cwd=runs_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(out / "mlperf_submission_short.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    return out, unpacked, result.stdout
