"""A plain (non-editable) `pip install .` carries every data file the harness reads, without build warnings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # builds and installs the project: not in make test-fast


def test_a_plain_install_works_outside_the_checkout(tmp_path):
    target = tmp_path / "site-packages"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(REPO)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert "Warning" not in install.stderr and "is absent from the `packages`" not in install.stderr, install.stderr
    environment = {**os.environ, "PYTHONPATH": str(target)}
    script = """
import harness, json
from pathlib import Path
from configs import SYSTEMS_DIR, TEST01_AUDIT_CONFIG
from qsl.dataset import SHIPPED_VOCAB, load_dataset
from submission.system import load_submission_config
assert Path(harness.__file__).is_relative_to(sys.argv[1]), harness.__file__
assert TEST01_AUDIT_CONFIG.is_file() and SHIPPED_VOCAB.is_file() and len(list(SYSTEMS_DIR.glob("*.json"))) >= 4
print(len(load_dataset()["data"]), load_submission_config()["system_type"])
"""
    check = subprocess.run([sys.executable, "-c", "import sys\n" + script, str(target)], cwd=tmp_path,
                           env=environment, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["48", "edge"]
    scenarios = subprocess.run([sys.executable, "-m", "submission", "--required-scenarios"], cwd=tmp_path,
                               env=environment, capture_output=True, text=True, timeout=300)
    assert scenarios.returncode == 0 and scenarios.stdout.strip() == "Offline SingleStream", scenarios.stderr
