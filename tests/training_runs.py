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


def start_nodes(build: Path, *arguments: str, nodes: int, per_node: int) -> list[subprocess.Popen]:
    """Ranks as torchrun starts them on `nodes` machines of `per_node` ranks each, here all on this one."""
    from harness.distributed import free_port

    shared = {**cli_environment(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
              "WORLD_SIZE": str(nodes * per_node), "LOCAL_WORLD_SIZE": str(per_node), "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen([sys.executable, "-m", "train", *arguments, "--build-dir", str(build)], cwd=REPO,
                             env={**shared, "RANK": str(rank), "LOCAL_RANK": str(rank % per_node)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for rank in range(nodes * per_node)]


def deepspeed_launcher(build: Path, *arguments: str, ranks: int) -> subprocess.CompletedProcess:
    """`deepspeed --num_gpus N --module train ...`, DeepSpeed's own launcher (on a CPU: N ranks here)."""
    from harness.distributed import free_port

    command = [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", str(ranks), "--master_port",
               str(free_port()), "--module", "train", *arguments, "--build-dir", str(build)]
    result = subprocess.run(command, cwd=REPO, env=cli_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
