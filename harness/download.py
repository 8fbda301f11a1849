"""`make download`: the official dev set and the MLPerf BERT-Large files into build/, resumable and verified."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from accuracy.loadgen_log import file_sha256
from common.errors import HarnessError
from qsl.dataset import DATASET_SHA256, SHIPPED_DATASET, VOCAB_SHA256, read_verified


@dataclass(frozen=True)
class Artifact:
    url: str
    relative_path: str  # under the build directory
    sha256: str | None  # published hash where one exists
    optional: bool = False  # the harness runs without it


ARTIFACTS = (
    Artifact("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", "data/dev-v1.1.json", DATASET_SHA256),
    Artifact("https://zenodo.org/record/3733896/files/vocab.txt", "models/bert-large/vocab.txt", VOCAB_SHA256),
    Artifact("https://zenodo.org/record/3733896/files/model.pytorch", "models/bert-large/model.pytorch", None),
    # The reference ONNX model: the ONNX backends export model.pytorch themselves when it is absent.
    Artifact("https://zenodo.org/record/3733910/files/model.onnx", "models/bert-large/model.onnx", None, optional=True),
)


def _hash_file(path: Path) -> Path:
    """Where the sha256 of a finished (or hand-placed) file is recorded, for files with no published hash."""
    return path.with_name(path.name + ".sha256")


def _is_complete(path: Path, artifact: Artifact) -> bool:
    """A finished file: its published hash matches, or the hash recorded when we finished downloading it."""
    if not path.is_file():
        return False
    recorded = _hash_file(path)
    expected = artifact.sha256 or (recorded.read_text().strip() if recorded.is_file() else None)
    return expected is not None and file_sha256(path) == expected


def fetch(artifact: Artifact, path: Path, timeout: float = 30.0) -> None:
    """Download to `<path>.part`, resuming it with an HTTP Range request, then verify and move into place."""
    from tqdm import tqdm

    partial = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(artifact.url, headers={"Range": f"bytes={offset}-"} if offset else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status != 206:  # server ignored the range: start again
            offset = 0
        total = int(response.headers.get("Content-Length") or 0) + offset
        with open(partial, "ab" if offset else "wb") as file, tqdm(
                total=total or None, initial=offset, unit="B", unit_scale=True, desc=path.name) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                file.write(block)
                bar.update(len(block))
    digest = file_sha256(partial)
    if artifact.sha256 and digest != artifact.sha256:
        partial.unlink()
        raise HarnessError(f"{artifact.url} downloaded with sha256 {digest}, expected {artifact.sha256}; try again")
    os.replace(partial, path)
    _hash_file(path).write_text(digest + "\n")


def download_all(build_dir: Path, log=print) -> None:
    """Every artifact, one `make download` at a time per build folder: jobs started together (a SLURM array
    whose script downloads first) would append to the same .part file; the others wait, then find it done."""
    import fcntl

    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".download.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another `make download` into {build_dir} to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _download_missing(build_dir, log)


def _download_missing(build_dir: Path, log) -> None:
    missing = []
    for artifact in ARTIFACTS:
        path = build_dir / artifact.relative_path
        if _is_complete(path, artifact):
            log(f"ok        {path}")
            continue
        recorded = _hash_file(path)
        if path.is_file() and artifact.sha256 is None and not recorded.is_file():
            # Downloads land here only once complete, so this file was placed by hand (the offline route).
            recorded.write_text(file_sha256(path) + "\n")
            log(f"placed    {path}: kept as given (no published checksum to check it against); its sha256 "
                "is recorded, so later damage is caught")
            continue
        try:
            fetch(artifact, path)
            log(f"fetched   {path}")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            if artifact.sha256 == DATASET_SHA256:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(read_verified(SHIPPED_DATASET, DATASET_SHA256, "shipped SQuAD dev set"))
                log(f"offline   {path}: written from the copy shipped with the harness (same sha256)")
                continue
            if artifact.optional:
                log(f"skipped   {path}: optional, could not download ({error}); place it there to use it")
                continue
            missing.append((artifact, path, error))
    if missing:
        lines = [f"  {path}  <-  {artifact.url}"
                 + ("  (the file there fails its sha256 check)" if path.is_file() else "")
                 for artifact, path, _ in missing]
        raise HarnessError("could not download (no internet? " + str(missing[0][2]) + "). "
                           "Fetch these on a connected machine and place them here, then rerun "
                           "`make download` to verify:\n" + "\n".join(lines))
