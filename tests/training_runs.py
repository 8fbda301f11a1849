"""Training runs as the tests start them: `python -m train` in a build folder, and what it writes there."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, cli_environment, run_cli

TINY = ["--shape", "tiny", "--seq-len", "128", "--batch-size", "8", "--val-questions", "20"]


def train(build: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    result = run_cli("train", *arguments, "--build-dir", str(build), cwd=REPO)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def rows(build: Path, run: str, name: str = "steps") -> list[dict]:
    path = build / "train" / run / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(build: Path, run: str) -> list[float]:
    return [row["loss"] for row in rows(build, run)]


def wait_for_steps(build: Path, run: str, count: int, process: subprocess.Popen) -> None:
    path = build / "train" / run / "steps.jsonl"
    deadline = time.monotonic() + 300
    while not (path.is_file() and len(path.read_text().splitlines()) >= count):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def start(build: Path, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "train", *arguments, "--build-dir", str(build)], cwd=REPO,
                            env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
