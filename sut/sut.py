"""The LoadGen system under test: queue samples, batch them, ask a backend for logits, answer LoadGen.

Written once for every backend and scenario. LoadGen's issue thread only enqueues; one worker
thread drains the queue, so Server and MultiStream queries that arrive together share a batch. LoadGen's
"fast" SUT hands over a query as two lists of integers (response ids, sample indices) instead of an
object per sample; the rest is done per batch, down to one list of responses for each.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

import mlperf_loadgen as lg
import numpy as np
from tqdm import tqdm

from qsl.features import PAD_LOGIT, ModelInputs
from sut.backend import Backend
from sut.batching import plan_batches
from sut.stages import StageTimes, stage

PROGRESS_MIN_SAMPLES = 1000  # a query this large (Offline) gets a progress bar
WAKE: tuple[list[int], list[int]] = ([], [])  # an empty query: a pool's batch has ended


class Batch(NamedTuple):
    response_ids: np.ndarray  # LoadGen's, uint64
    sample_indices: np.ndarray
    tokens: int  # the samples' own lengths, summed: the progress bar's unit


class SUT:
    def __init__(self, backend: Backend, features: ModelInputs, max_batch_size: int,
                 max_tokens: int | None = None, arrivals: bool = False):
        self.backend = backend
        self.features = features
        self.max_batch_size = max_batch_size
        self.max_tokens = max_tokens
        self.samples_done = 0
        self.error: BaseException | None = None
        self.stages: StageTimes | None = None  # a sweep's per-stage timing (sut/stages.py); off for runs
        # Server (`arrivals`: queries keep coming, one sample each): a pool's batch takes everything waiting when a
        # worker frees, so it is neither split across workers nor sent ahead to wait behind another batch; cut
        # small, batches would cost rank 0 and each device more than their samples do. Offline and the
        # stream scenarios: a query is split so that every worker ends it at once (sut/batching.py).
        pooled = arrivals and backend.parallelism > 1
        self.window = backend.parallelism if pooled else backend.window
        self.split = 1 if pooled else backend.parallelism
        self._bar: tqdm | None = None  # over an Offline query's tokens
        self._answered = self._bar_samples = 0
        self._closed = False  # close() was seen by the serving thread
        self._queue: queue.SimpleQueue[tuple[list[int], list[int]] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._serve, name="sut-worker", daemon=True)
        self._worker.start()
        self.handle = lg.ConstructFastSUT(self.issue_queries, self.flush_queries)

    def issue_queries(self, response_ids: list[int], sample_indices: list[int]) -> None:
        self._queue.put((response_ids, sample_indices))

    def flush_queries(self) -> None:
        pass

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join()
        lg.DestroySUT(self.handle)

    def _serve(self) -> None:
        waiting: tuple[list[int], list[int]] = ([], [])  # queries taken, not yet planned: response ids, samples
        planned: collections.deque[Batch] = collections.deque()  # not yet submitted
        running: list[tuple[Batch, Callable[[], np.ndarray] | None]] = []  # in the order submitted
        try:
            self._serve_until_closed(waiting, planned, running)
        except BaseException as error:  # noqa: BLE001 - a fault here must not leave LoadGen waiting forever
            self.error = self.error or error
            unanswered = [*(batch for batch, _ in running), *planned]
            while True:
                if waiting[0]:
                    unanswered.append(Batch(np.array(waiting[0], np.uint64), np.array(waiting[1], np.int64), 0))
                for batch in unanswered:
                    self._complete(batch, None)  # answered empty, as after a backend's failure
                unanswered = []
                waiting = ([], [])
                if self._closed or self._take(*waiting, block=True):
                    if self._bar is not None:
                        self._bar.close()
                    return

    def _serve_until_closed(self, waiting: tuple[list[int], list[int]], planned: collections.deque[Batch],
                            running: list) -> None:
        """Batches stay in flight across queries, and queries are planned into batches only when the window
        has room: a Server query that arrives while every worker is busy joins the next batch instead of
        waiting behind batches of its own. A pool's batches (futures) end in any order and wake this thread as
        they do; other waitables are finished oldest first."""
        waiting_ids, waiting_indices = waiting
        stop = False
        while planned or running or waiting_ids or not stop:
            still_running = []
            for batch, finish in running:
                if finish is None or isinstance(finish, Future) and finish.done():
                    self._complete(batch, finish)
                else:
                    still_running.append((batch, finish))
            running[:] = still_running
            if len(running) < self.window:
                if not planned and waiting_ids:
                    planned.extend(self._plan(np.array(waiting_ids, np.uint64), np.array(waiting_indices, np.int64)))
                    waiting_ids.clear()
                    waiting_indices.clear()
                if planned:
                    batch = planned.popleft()
                    finish = self._submit(batch.sample_indices)
                    if isinstance(finish, Future):
                        finish.add_done_callback(lambda _: self._queue.put(WAKE))
                    running.append((batch, finish))
                    continue
            wakes = all(isinstance(finish, Future) for _, finish in running)
            if not stop:  # new queries, or (block) whatever comes first: a query or a batch's end
                stop = self._take(waiting_ids, waiting_indices, block=wakes)
            elif wakes and running:
                self._queue.get()  # after close(): only batches' ends come
            if not wakes and running and (not (planned or waiting_ids) or len(running) >= self.window):
                self._complete(*running.pop(0))
            if not planned and not running and self._bar is not None:
                self._bar.close()
                self._bar = None

    def _take(self, response_ids: list[int], sample_indices: list[int], block: bool) -> bool:
        """Every query waiting (waiting for the first if `block`) added to the lists; whether close() was called."""
        try:
            query = self._queue.get(block=block)
            while query is not None:
                response_ids += query[0]
                sample_indices += query[1]
                query = self._queue.get_nowait()
            self._closed = True
            return True
        except queue.Empty:
            return False

    def _plan(self, response_ids: np.ndarray, sample_indices: np.ndarray) -> list[Batch]:
        lengths = self.features.lengths[sample_indices]
        # The bar counts tokens: batches run longest first, so a bar counting samples promised the end far
        # too late (a full CPU accuracy run showed 27 minutes to go at the start and took 6). Small queries
        # (Server, SingleStream) get none: even a disabled bar costs 9 us, more than the rest of a batch of one.
        if len(sample_indices) >= PROGRESS_MIN_SAMPLES and self._bar is None:
            self._bar = tqdm(total=int(lengths.sum()), unit="token", unit_scale=True, desc="inference")
            self._answered, self._bar_samples = 0, len(sample_indices)
        return [Batch(response_ids[rows], sample_indices[rows], int(lengths[rows].sum()))
                for rows in plan_batches(lengths, self.max_batch_size, self.max_tokens, self.split)]

    def _submit(self, sample_indices: np.ndarray) -> Callable[[], np.ndarray] | None:
        if self.error is not None:  # after a failure, answer empty so LoadGen can finish and report
            return None
        try:
            return self.backend.submit_rows(self.features, sample_indices)
        except BaseException as error:  # noqa: BLE001 - re-raised by the runner after LoadGen stops
            self.error = error
            return None

    def _complete(self, batch: Batch, finish: Callable[[], np.ndarray] | None) -> None:
        logits = np.full((len(batch.response_ids), self.features.seq_length, 2), PAD_LOGIT, np.float32)
        if finish is not None and self.error is None:
            try:
                computed = finish()
                logits[:, :computed.shape[1]] = computed
            except BaseException as error:  # noqa: BLE001 - re-raised by the runner after LoadGen stops
                self.error = error
        with stage(self.stages, "respond"):
            stride = logits[0].nbytes
            size = 0 if self.error is not None else stride
            address, count = logits.ctypes.data, len(batch.response_ids)
            responses = list(map(lg.QuerySampleResponse, batch.response_ids.tolist(),
                                 range(address, address + count * stride, stride),
                                 itertools.repeat(size, count)))  # a fifth less than a comprehension: 0.4 us each
            lg.QuerySamplesComplete(responses)
        self.samples_done += count
        if self._bar is not None and self.error is None:  # after a failure the empty answers are no progress
            self._answered += count
            self._bar.set_postfix_str(f"{self._answered:,}/{self._bar_samples:,} samples", refresh=False)
            self._bar.update(batch.tokens)
