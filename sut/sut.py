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

import mlperf_loadgen as lg
import numpy as np
from tqdm import tqdm

from qsl.features import PAD_LOGIT, ModelInputs
from sut.backend import Backend
from sut.batching import plan_batches
from sut.stages import StageTimes, stage

PROGRESS_MIN_SAMPLES = 1000  # a query this large (Offline) gets a progress bar


class SUT:
    def __init__(self, backend: Backend, features: ModelInputs, max_batch_size: int,
                 max_tokens: int | None = None):
        self.backend = backend
        self.features = features
        self.max_batch_size = max_batch_size
        self.max_tokens = max_tokens
        self.samples_done = 0
        self.error: BaseException | None = None
        self.stages: StageTimes | None = None  # a sweep's per-stage timing (sut/stages.py); off for runs
        self.window = backend.window
        self._queue: queue.Queue[tuple[list[int], list[int]] | None] = queue.Queue()
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
        while True:
            query = self._queue.get()
            if query is None:
                return
            response_ids, sample_indices = query
            stop = False
            while not stop:  # take everything already waiting into the same batch plan
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    response_ids, sample_indices = [*response_ids, *more[0]], [*sample_indices, *more[1]]
            self._answer(np.array(response_ids, np.uint64), np.array(sample_indices, np.int64))
            if stop:
                return

    def _answer(self, response_ids: np.ndarray, sample_indices: np.ndarray) -> None:
        samples = len(sample_indices)
        lengths = self.features.lengths[sample_indices]
        batches = plan_batches(lengths, self.max_batch_size, self.max_tokens, self.backend.parallelism)
        # The bar counts tokens: batches run longest first, so a bar counting samples promised the end far
        # too late (a full CPU accuracy run showed 27 minutes to go at the start and took 6).
        with tqdm(total=int(lengths.sum()), unit="token", unit_scale=True, desc="inference",
                  disable=samples < PROGRESS_MIN_SAMPLES) as bar:
            answered = 0

            def complete(rows: np.ndarray, finish: Callable[[], np.ndarray] | None) -> None:
                nonlocal answered
                answered += self._complete(response_ids[rows].tolist(), finish)  # Python ints, converted at once
                if not bar.disable and self.error is None:  # small queries (Server, SingleStream): no progress
                    # work on the latency path; after a failure the empty answers are no progress
                    bar.set_postfix_str(f"{answered:,}/{samples:,} samples", refresh=False)
                    bar.update(int(lengths[rows].sum()))

            # One batch in flight while the next is prepared (backends with `submit`); a pool of workers
            # (sut/workers.py) keeps more in flight, as many as its window says.
            running: collections.deque = collections.deque()
            for batch in batches:
                running.append((batch, self._submit(sample_indices[batch])))
                if len(running) >= self.window:
                    complete(*running.popleft())
            while running:
                complete(*running.popleft())

    def _submit(self, sample_indices: np.ndarray) -> Callable[[], np.ndarray] | None:
        if self.error is not None:  # after a failure, answer empty so LoadGen can finish and report
            return None
        try:
            return self.backend.submit_rows(self.features, sample_indices)
        except BaseException as error:  # noqa: BLE001 - re-raised by the runner after LoadGen stops
            self.error = error
            return None

    def _complete(self, response_ids: list[int], finish: Callable[[], np.ndarray] | None) -> int:
        logits = np.full((len(response_ids), self.features.seq_length, 2), PAD_LOGIT, np.float32)
        if finish is not None and self.error is None:
            try:
                computed = finish()
                logits[:, :computed.shape[1]] = computed
            except BaseException as error:  # noqa: BLE001 - re-raised by the runner after LoadGen stops
                self.error = error
        with stage(self.stages, "respond"):
            stride = logits[0].nbytes
            size = 0 if self.error is not None else stride
            address, count = logits.ctypes.data, len(response_ids)
            responses = list(map(lg.QuerySampleResponse, response_ids, range(address, address + count * stride, stride),
                                 itertools.repeat(size, count)))  # a fifth less than a comprehension: 0.4 us each
            lg.QuerySamplesComplete(responses)
        self.samples_done += len(responses)
        return len(responses)
