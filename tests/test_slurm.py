"""The sbatch scripts in slurm/, run end to end under slurm/stand-in/ (sbatch, srun, scontrol starting local ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_environment

pytestmark = pytest.mark.slow  # every script makes real LoadGen runs over real ranks

STAND_IN = REPO / "slurm" / "stand-in"  # sbatch, srun and scontrol that start the ranks here


@pytest.fixture
def slurm(tmp_path, build_dir, features, small_model):
    build = tmp_path / "build"
    (build / "data").mkdir(parents=True)
    os.link(build_dir / "data" / "squad_features.npz", build / "data" / "squad_features.npz")
    environment = {**cli_environment(), "PATH": f"{STAND_IN}:{os.environ['PATH']}", "PYTHON": sys.executable,
                   "BUILD": str(build), "MODEL": str(small_model), "DEVICE": "cpu", "COUNT": "32"}
    return environment, build


def sbatch(environment: dict, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sbatch", *arguments], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=600)


def test_one_node_with_two_workers(slurm):
    environment, build = slurm
    result = sbatch({**environment, "WORKERS": "2"}, "slurm/perf-node.sbatch")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "LoadGen result: VALID" in result.stdout and f"results: {build}/logs" in result.stdout
    info = json.loads(next(build.glob("logs/*/pytorch/fp32-cpu-workers2/Offline/performance/run_1/run_info.json"))
                      .read_text())
    assert info["workers"] == 2 and info["nodes"] == 1


def test_two_nodes_under_srun(slurm):
    environment, build = slurm
    result = sbatch(environment, "--nodes=2", "--ntasks-per-node=1", "slurm/perf-nodes.sbatch")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "LoadGen result: VALID" in result.stdout and "rank 0 ran on 127.0.0.1" in result.stdout
    info = json.loads(next(build.glob("logs/*/pytorch/fp32-cpu-workers2/Offline/performance/run_1/run_info.json"))
                      .read_text())
    assert info["workers"] == 2 and info["nodes"] == 2 and len(info["devices"]) == 2


@pytest.mark.parametrize("launcher", ["local", "srun"])
def test_scaling_job(slurm, launcher):
    environment, build = slurm
    extra = ["--nodes=2", "--ntasks-per-node=1"] if launcher == "srun" else []
    result = sbatch({**environment, "WORKERS": "1 2", "LAUNCHER": launcher}, *extra, "slurm/scale.sbatch")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    folder = next(build.glob("scale/*"))
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert [(row["workers"], row["status"], row["loadgen_result"]) for row in rows] == [(1, "ok", "VALID"),
                                                                                      (2, "ok", "VALID")]
    assert rows[0]["efficiency"] == 1.0 and 0 < rows[1]["efficiency"] and rows[1]["nodes"] == (
        2 if launcher == "srun" else 1)
    assert "| scenario | workers | nodes | samples/s | speedup | efficiency | rank 0 CPU (us/sample) |" in (
        folder / "scaling.md").read_text()
    assert (folder / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("environment", "expected"), [
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, (3, 4, 1, 2, 2)),  # torchrun
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_SIZE": "2"}, (3, 4, 1, 2, 2)),  # DeepSpeed's launcher
    ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1", "SLURM_NNODES": "2"}, (3, 4, 1, 2, 2)),
])
def test_every_launcher_gives_each_rank_its_place(monkeypatch, environment, expected):
    from harness.distributed import launched_rank

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "SLURM_PROCID",
                 "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NNODES", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    rank = launched_rank()
    assert (rank.rank, rank.world, rank.local_rank, rank.local_world, rank.nodes) == expected
