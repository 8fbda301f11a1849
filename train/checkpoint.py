"""Checkpoints a crash or Ctrl-C cannot corrupt: each file written whole under another name, then renamed;
`latest.json` names a step only once every rank's file of that step is in place.

DDP replicas are identical, so rank 0 alone writes; each pipeline stage writes its own part. Under DeepSpeed
every rank's part holds the loop's counters alone, DeepSpeed's own files in the same step folder the rest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from common.errors import HarnessError
from common.files import save_atomically


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def step_dir(run_dir: Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / f"step-{step}"


def rank_file(run_dir: Path, step: int, rank: int) -> Path:
    return step_dir(run_dir, step) / f"rank-{rank}.pt"


def write_part(run_dir: Path, step: int, rank: int, payload: dict) -> None:
    save_atomically(lambda name: torch.save(payload, name), rank_file(run_dir, step, rank))


def publish(run_dir: Path, step: int, ranks: int) -> None:
    """Rank 0, once every part is written: make `step` the one to resume from and drop the older ones."""
    directory = checkpoints_dir(run_dir)
    missing = [rank for rank in range(ranks) if not rank_file(run_dir, step, rank).is_file()]
    if missing:
        raise HarnessError(f"checkpoint of step {step} lacks the parts of ranks {missing}")
    text = json.dumps({"step": step, "ranks": ranks}) + "\n"
    save_atomically(lambda name: Path(name).write_text(text), directory / "latest.json")
    for old in directory.glob("step-*"):
        if old.name != f"step-{step}":
            shutil.rmtree(old, ignore_errors=True)


def latest_step(run_dir: Path) -> int | None:
    path = checkpoints_dir(run_dir) / "latest.json"
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())["step"])
    except (ValueError, KeyError, TypeError) as error:
        raise HarnessError(f"{path} is not a checkpoint index ({error}); delete {checkpoints_dir(run_dir)} to start "
                           "the run over") from error


def read_part(run_dir: Path, step: int, rank: int) -> dict:
    path = rank_file(run_dir, step, rank)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # our own file, written by this package
    except (OSError, RuntimeError, EOFError) as error:
        raise HarnessError(f"cannot read checkpoint {path} ({error}); delete {checkpoints_dir(run_dir)} to start "
                           "the run over") from error
