"""The Makefile's own behaviour, with stand-ins for the slow tools it calls."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/bin/sh
# Stands in for python3 and the venv's python: records each call, and takes a while, as pip does.
echo "$*" >> "$CALLS"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
sleep 1
"""


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux) for the setup lock")
def test_jobs_started_together_build_the_venv_once(tmp_path):
    """A SLURM array on a fresh checkout: every job runs `make setup` at once; one builds, the others wait."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "python3").write_text(FAKE_PYTHON)
    (tools / "python3").chmod(0o755)
    environment = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    jobs = [subprocess.Popen(["make", "--no-print-directory", "setup"], cwd=tmp_path, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    for job in jobs:
        assert job.wait(timeout=60) == 0, job.stdout.read()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["-m venv .venv", "-m pip install --quiet --upgrade pip",
                     "-m pip install --quiet torch==2.13.0", "-m pip install --quiet -e .[test,onnx]"]
    assert (tmp_path / ".venv" / ".installed").is_file()
