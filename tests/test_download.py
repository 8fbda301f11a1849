"""`make download` without the internet: a local HTTP server for fetching, and the offline route of placing files."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
import urllib.error
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.errors import HarnessError
from harness.download import Artifact, download_all, fetch
from qsl.dataset import SHIPPED_VOCAB


@pytest.fixture
def served(tmp_path):
    """A file served over HTTP from this machine; the handler ignores Range, as some servers do."""
    root = tmp_path / "served"
    root.mkdir()
    content = bytes(range(256)) * 4096
    (root / "model.bin").write_bytes(content)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/model.bin", content
    server.shutdown()


def test_fetch_restarts_when_the_server_ignores_the_range(tmp_path, served):
    url, content = served
    target = tmp_path / "build" / "model.bin"
    target.parent.mkdir()
    target.with_name("model.bin.part").write_bytes(b"stale bytes from an interrupted download")
    fetch(Artifact(url, "model.bin", hashlib.sha256(content).hexdigest()), target)
    assert target.read_bytes() == content
    assert not target.with_name("model.bin.part").exists()
    assert target.with_name("model.bin.sha256").read_text().strip() == hashlib.sha256(content).hexdigest()


def test_fetch_refuses_a_file_with_the_wrong_hash(tmp_path, served):
    url, _ = served
    target = tmp_path / "model.bin"
    with pytest.raises(HarnessError, match="expected 0000"):
        fetch(Artifact(url, "model.bin", "0" * 64), target)
    assert not target.exists() and not target.with_name("model.bin.part").exists()


def offline(artifact, path, timeout=30.0):
    raise urllib.error.URLError("no internet in this test")


def test_offline_lists_what_to_place_and_keeps_what_was_placed(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.download.fetch", offline)
    with pytest.raises(HarnessError) as refused:
        download_all(tmp_path, log=lambda *_: None)
    listed = str(refused.value)
    assert "models/bert-large/model.pytorch" in listed and "models/bert-large/vocab.txt" in listed
    assert "model.onnx" not in listed  # optional: the ONNX backends export model.pytorch themselves
    assert (tmp_path / "data" / "dev-v1.1.json").is_file()  # the shipped copy stands in
    assert "fails its sha256 check" not in listed

    bert = tmp_path / "models" / "bert-large"
    bert.mkdir(parents=True)
    (bert / "vocab.txt").write_text("[PAD]\n")  # a wrong file where a published one belongs
    with pytest.raises(HarnessError, match=r"vocab.txt  <-  \S+  \(the file there fails its sha256 check"):
        download_all(tmp_path, log=lambda *_: None)

    (bert / "vocab.txt").write_bytes(SHIPPED_VOCAB.read_bytes())  # the user places the files by hand, as told
    (bert / "model.pytorch").write_bytes(b"PK placed by hand")  # no published hash: kept, hash recorded
    messages = []
    download_all(tmp_path, log=messages.append)
    assert any(message.startswith("placed    ") and "model.pytorch" in message for message in messages)
    assert (tmp_path / "models" / "bert-large" / "model.pytorch.sha256").is_file()
    messages.clear()
    download_all(tmp_path, log=messages.append)
    assert any(message.startswith("ok        ") and "model.pytorch" in message for message in messages)


def test_downloads_started_together_fetch_each_file_once(tmp_path, monkeypatch):
    """Jobs whose script starts with `make download`: one fetches, the others wait and find the file done."""
    content = b"model bytes"
    artifact = Artifact("http://example.invalid/model.bin", "models/model.bin", hashlib.sha256(content).hexdigest())
    calls = []

    def slow_fetch(artifact, path, timeout=30.0):
        calls.append(path)
        time.sleep(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    monkeypatch.setattr("harness.download.ARTIFACTS", (artifact,))
    monkeypatch.setattr("harness.download.fetch", slow_fetch)
    messages = []
    jobs = [threading.Thread(target=download_all, args=(tmp_path, messages.append)) for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=30)
    assert len(calls) == 1 and (tmp_path / "models" / "model.bin").read_bytes() == content
    assert sum(message.startswith("waiting for another") for message in messages) == 2
    assert sum(message.startswith("ok        ") for message in messages) == 2
