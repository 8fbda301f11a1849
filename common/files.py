"""Files written whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def save_atomically(write: Callable[[str], object], path: Path) -> Path:
    """`write(name)` into a temporary file renamed to `path` once complete: no reader ever sees half a file.

    The temporary name is this process's own (keeping the suffix, which np.savez insists on): jobs started
    together on a cluster, each building the same cache, no longer write into one file and crash on rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
