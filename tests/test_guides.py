"""Every `make` line the guides and the README show still works as typed: it expands with `make -n`, its
command takes the flags it is given, and a run's settings pass their checks, all without loading a model or
needing the GPU a guide is written for. A renamed or removed variable leaves no guide stale."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_variables import COMMANDS, command_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
MAKE_LINE = re.compile(r"^(\w+=\S+\s+)*make\s")  # make ..., or PYTHON=python3 make ...
STAND_IN = """#!/bin/sh
# Stands in for Python under make -n: answers make all's question, runs nothing.
case "$*" in *--required-scenarios*) echo "Offline SingleStream" ;; esac
"""
TOOLS = {"pytest", "mkdocs", "ruff", "pip", "venv", "mutmut"}  # not ours: make -n expanding them is the check
MODULES = {(module.removesuffix(".__main__"), subcommand): target for target, (module, subcommand) in COMMANDS.items()}


def make_lines() -> list[tuple[str, str]]:
    lines = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.splitlines():
                line = line.split(" # ")[0].strip()
                if not MAKE_LINE.match(line):
                    continue
                words = shlex.split(line)
                while words and "=" in words[0] and not words[0].startswith("make"):
                    words.pop(0)  # PYTHON=python3 before make
                if words[:1] == ["make"]:
                    lines.append((f"{page.relative_to(REPO)}: {line}", shlex.join(words[1:])))
    return lines


LINES = make_lines()


def test_the_guides_show_make_lines():
    assert len(LINES) >= 30


def check_command(words: list[str], monkeypatch) -> None:
    """Parse a command make would run with its own parser; a run's settings also pass RunConfig's checks (the
    machine's own, GPU and cores, aside: a guide may be written for another machine)."""
    module = words[1]
    if module in TOOLS:
        return
    subcommand = words[2] if module == "harness" else None
    target = MODULES.get((module, subcommand))
    assert target, f"no make target runs python -m {module} {subcommand or ''}"
    arguments = words[3:] if subcommand else words[2:]
    parser = command_parser(target)
    try:
        args = parser.parse_args(arguments)
    except SystemExit as stop:
        raise AssertionError(f"python -m {module} refused {shlex.join(arguments)}") from stop
    if target in ("perf", "accuracy"):
        from harness import run_config
        from sut import models
        monkeypatch.setattr(run_config, "resolve_device", lambda device: device)
        monkeypatch.setattr(run_config, "check_cores", lambda *_, **__: None)
        monkeypatch.setattr(models, "check_model_path", lambda model: None)  # a guide's model is the reader's
        run_config.RunConfig.from_options(run_config.RunOptions.from_args(args), accuracy=target == "accuracy")
    elif target == "train":
        from train.config import resolve

        resolve(args)


@pytest.mark.parametrize("where, line", LINES, ids=[where for where, _ in LINES])
def test_a_guide_line_works_as_typed(where, line, tmp_path, monkeypatch):
    stand_in = tmp_path / "python"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    result = subprocess.run(["make", "-n", "--no-print-directory", *shlex.split(line), f"PYTHON={stand_in}"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(output)[1:] for output in result.stdout.splitlines()
                if output.startswith(f"{stand_in} -m ")]
    assert commands, result.stdout
    for words in commands:
        check_command(words, monkeypatch)


def test_the_site_builds_with_no_broken_link(tmp_path):
    """`make docs`: mkdocs build --strict fails on a broken link, or a page left out of the navigation."""
    pytest.importorskip("mkdocs", reason="mkdocs comes with the test extra (make setup)")
    pytest.importorskip("material", reason="mkdocs-material comes with the test extra (make setup)")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "guides" / "scc-submission" / "index.html").is_file()
