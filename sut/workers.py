"""WORKERS=N: rank 0's backend deals each batch to the rank with the fewest tokens outstanding.

Rank 0 runs LoadGen and the one SUT; its backend here is a pool of workers: rank 0's own backend (unless
told not to) and every other rank, each running an ordinary backend on its own device over the features
it loaded itself. Only sample indices go out (over torch.distributed, Gloo) and only logits come back.
Batches come longest first (the SUT plans them), so dealing them by tokens to the least-loaded worker
keeps a slow or busy one from holding the run's tail. A worker that fails, dies or hangs past the timeout
makes its batches fail with an error naming its rank and host: the SUT answers the rest empty, and the
run ends with that error.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from common.errors import reason
from qsl.features import ModelInputs
from sut.backend import Backend
from sut.batching import PAD_MULTIPLE, padded_length

WORK, STOP = 1, 0  # rank 0's header kinds
OK, FAILED = 1, 2  # a worker's
DEPTH = 2  # batches outstanding per worker: one running, one waiting behind it


class WorkerError(RuntimeError):
    pass


@dataclass
class Peer:
    rank: int
    host: str
    device: str

    def __str__(self) -> str:
        return f"rank {self.rank} on {self.host} ({self.device})"


def batch_length(features: ModelInputs, rows: np.ndarray) -> int:
    """The padded width batch_inputs gives these rows: what a worker's logits come back as."""
    return padded_length(int(features.lengths[rows].max()), PAD_MULTIPLE, features.seq_length)


class Answer(Future):
    """A batch's logits to come: the SUT calls it to wait, or, since it is a Future, is woken when it ends, so
    batches that end out of order are answered (and new queries sent) without waiting for the oldest."""

    def __call__(self) -> np.ndarray:
        return self.result()


class LocalWorker:
    """Rank 0's own backend, run in a thread of its own so rank 0 keeps dealing while it computes."""

    def __init__(self, backend, features: ModelInputs, peer: Peer):
        self.peer, self.outstanding_batches, self.outstanding_tokens, self.tokens_dealt = peer, 0, 0, 0
        self._submit = lambda rows: backend.submit_rows(features, rows)()
        self._queue: queue.Queue[tuple[np.ndarray, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="local-worker", daemon=True)
        self._thread.start()

    def dispatch(self, rows: np.ndarray, future: Future) -> None:
        self._queue.put((rows, future))

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            rows, future = item
            try:
                future.set_result(self._submit(rows))
            except Exception as error:  # noqa: BLE001 - handed to the SUT through the future
                future.set_exception(WorkerError(f"{self.peer} failed: {error!r}"))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class RemoteWorker:
    """Another rank: indices sent to it, its answers received in order by a thread of their own.

    That thread always waits on the worker's next answer, so a worker that dies, busy or idle, is
    known at once (Gloo closes the connection). A hang has no such signal, and Gloo closes a connection
    whose receive times out, so `check` (which rank 0 calls as it waits on LoadGen) fails a worker whose
    oldest batch is older than the timeout.
    """

    def __init__(self, peer: Peer, features: ModelInputs, timeout_s: float):
        self.peer, self.outstanding_batches, self.outstanding_tokens, self.tokens_dealt = peer, 0, 0, 0
        self.features, self.timeout_s = features, timeout_s
        self.failure: WorkerError | None = None
        self._expected: collections.deque[tuple] = collections.deque()  # count, length, future, sent at, sends
        self._lock = threading.Lock()
        self._closing = False
        self._next_id = 0
        self._thread = threading.Thread(target=self._receive, name=f"rank-{peer.rank}", daemon=True)
        self._thread.start()

    def dispatch(self, rows: np.ndarray, future: Future) -> None:
        with self._lock:
            if self.failure is not None:
                future.set_exception(self.failure)
                return
            batch_id, self._next_id = self._next_id, self._next_id + 1
            header = torch.tensor([WORK, batch_id, len(rows)], dtype=torch.int64)
            indices = torch.from_numpy(np.ascontiguousarray(rows, np.int64))
            try:  # never waited on here: a Gloo send waits for its receiver, and a hung worker never receives
                sends = (dist.isend(header, dst=self.peer.rank), dist.isend(indices, dst=self.peer.rank))
            except RuntimeError as error:  # it died, and its receiving thread has not said so yet
                future.set_exception(WorkerError(f"{self.peer} died: {reason(error)}"))
                return
            self._expected.append((len(rows), batch_length(self.features, rows), future, time.monotonic(),
                                   (header, indices, sends)))  # the tensors live until the answer comes

    def _fail(self, failure: WorkerError) -> None:
        """Every batch it holds, and every one sent to it from now on, fails with `failure`."""
        with self._lock:
            if self.failure is None:
                self.failure = failure
            pending, self._expected = list(self._expected), collections.deque()
        for _, _, future, *_ in pending:
            if not future.done():
                future.set_exception(self.failure)

    def check(self) -> WorkerError | None:
        """Its failure, a hang included: the oldest batch unanswered for longer than the timeout."""
        with self._lock:
            oldest = self._expected[0][3] if self._expected else None
        if self.failure is None and oldest is not None and time.monotonic() - oldest > self.timeout_s:
            self._fail(WorkerError(f"{self.peer} hangs: no answer within {self.timeout_s:.0f} s (WORKER_TIMEOUT)"))
        return self.failure

    def _receive(self) -> None:
        while True:
            header = torch.empty(3, dtype=torch.int64)
            future = None  # the batch being received, out of _expected: failed here if the worker dies now
            try:
                dist.irecv(header, src=self.peer.rank).wait()  # its next answer, or the connection closing
                status, size = int(header[0]), int(header[2])
                with self._lock:
                    count, length, future, *_ = self._expected.popleft()
                if status == OK:
                    logits = torch.empty((count, length, 2), dtype=torch.float32)
                    dist.recv(logits, src=self.peer.rank)
                    future.set_result(logits.numpy())
                else:
                    text = torch.empty(size, dtype=torch.uint8)
                    dist.recv(text, src=self.peer.rank)
                    future.set_exception(WorkerError(f"{self.peer} failed: "
                                                     f"{bytes(text.numpy()).decode(errors='replace')}"))
            except (RuntimeError, IndexError) as error:
                if not self._closing:
                    self._fail(WorkerError(f"{self.peer} died: {reason(error)}"))
                    if future is not None and not future.done():  # it died between its header and its logits
                        future.set_exception(self.failure)
                return

    def close(self) -> None:
        """Tell it to stop; its receiving thread ends as its connection closes (not waited for after a failure)."""
        self._closing = True
        if self.failure is None:
            dist.send(torch.tensor([STOP, 0, 0], dtype=torch.int64), dst=self.peer.rank)
            self._thread.join(timeout=30)


class WorkerPool(Backend):
    """The backend rank 0's SUT uses under WORKERS=N; it takes sample indices (submit_rows), not arrays."""

    name = "workers"

    def __init__(self, local_backend, features: ModelInputs, peers: list[Peer], timeout_s: float):
        self.workers: list[LocalWorker | RemoteWorker] = []
        if local_backend is not None:
            self.workers.append(LocalWorker(local_backend, features, peers[0]))
        self.workers += [RemoteWorker(peer, features, timeout_s) for peer in peers[1:]]
        self.window = DEPTH * len(self.workers)  # batches the SUT may have outstanding
        self.parallelism = len(self.workers)  # the SUT cuts a query into enough batches for all of them
        self._free = threading.Condition()

    def submit_rows(self, features: ModelInputs, rows: np.ndarray) -> Callable[[], np.ndarray]:
        tokens = int(features.lengths[rows].sum())
        with self._free:
            while not (idle := [worker for worker in self.workers if worker.outstanding_batches < DEPTH]):
                self._free.wait()
            # the least loaded; among equals the one given least so far, so that idle workers take turns
            worker = min(idle, key=lambda candidate: (candidate.outstanding_tokens, candidate.tokens_dealt))
            worker.outstanding_batches += 1
            worker.outstanding_tokens += tokens
            worker.tokens_dealt += tokens
        future = Answer()
        future.add_done_callback(lambda _: self._done(worker, tokens))
        worker.dispatch(rows, future)
        return future

    def _done(self, worker, tokens: int) -> None:
        with self._free:
            worker.outstanding_batches -= 1
            worker.outstanding_tokens -= tokens
            self._free.notify_all()

    def check(self) -> WorkerError | None:
        """The first failed worker's error: one that died, or hangs past the timeout, even while idle."""
        return next((failure for worker in self.workers if isinstance(worker, RemoteWorker)
                     if (failure := worker.check()) is not None), None)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()


def serve(backend, features: ModelInputs) -> int:
    """A worker rank: compute the batches rank 0 sends until it says stop; the number of batches served.

    An answer is sent without waiting for rank 0 to take it: the next batch (already waiting, DEPTH) is computed
    meanwhile, and the send is waited for only before the next answer goes out (Gloo keeps them in order).
    """
    served = 0
    last_answer: list[tuple[torch.Tensor, object]] = []  # each tensor with its send, kept until rank 0 has it

    def answer(*tensors: torch.Tensor) -> None:
        for _, work in last_answer:
            work.wait()
        last_answer[:] = [(tensor, dist.isend(tensor, dst=0)) for tensor in tensors]

    while True:
        header = torch.empty(3, dtype=torch.int64)
        dist.recv(header, src=0)
        kind, batch_id, count = (int(value) for value in header)
        if kind == STOP:
            answer()
            return served
        rows = torch.empty(count, dtype=torch.int64)
        dist.recv(rows, src=0)
        try:
            logits = np.ascontiguousarray(backend.submit_rows(features, rows.numpy())(), np.float32)
        except Exception as error:  # noqa: BLE001 - sent to rank 0, which ends the run with it
            text = torch.frombuffer(bytearray(repr(error).encode()[:2000]), dtype=torch.uint8)
            answer(torch.tensor([FAILED, batch_id, len(text)], dtype=torch.int64), text)
            continue
        answer(torch.tensor([OK, batch_id, logits.shape[1]], dtype=torch.int64), torch.from_numpy(logits))
        served += 1
