"""The SUT's serving loop over a pool whose batches end in any order (futures), without processes.

LoadGen's completion call is recorded instead of made: these tests are about which samples are answered,
when and how often, which LoadGen itself would only show as a hang or a wrong count.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import sut.sut as sut_module
from sut.backend import Backend
from sut.sut import SUT
from sut.workers import Answer


class DelayedPool(Backend):
    """Two workers whose batches end after `seconds(batch number)`, each on a timer of its own."""

    name = "delayed"
    parallelism = 2
    window = 4

    def __init__(self, seconds):
        self.seconds, self.batches = seconds, []

    def submit_rows(self, features, rows):
        answer = Answer()
        logits = np.zeros((len(rows), 8, 2), np.float32)
        threading.Timer(self.seconds(len(self.batches)), answer.set_result, (logits,)).start()
        self.batches.append(rows.tolist())
        return answer


@pytest.fixture
def answered(monkeypatch):
    """Every response LoadGen would be given: (response id, bytes), in the order given."""
    responses = []
    monkeypatch.setattr(sut_module.lg, "QuerySamplesComplete",
                        lambda batch: responses.extend((response.id, response.size) for response in batch))
    return responses


def wait_for(responses: list, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(responses) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_server_queries_that_come_while_the_workers_are_busy_share_the_next_batch(features, answered):
    pool = DelayedPool(lambda batch: 0.4)
    sut = SUT(pool, features, 64, None, arrivals=True)
    for query in range(2):  # one batch on each worker
        sut.issue_queries([query], [query])
    time.sleep(0.05)
    for query in range(2, 32):  # 30 more while both are busy, one at a time as Server's arrive
        sut.issue_queries([query], [query])
        time.sleep(0.003)
    wait_for(answered, 32)
    sut.close()
    assert sorted(response_id for response_id, _ in answered) == list(range(32))  # each once
    assert len(pool.batches) <= 4, pool.batches  # not 30 batches of one
    assert all(size == features.seq_length * 2 * 4 for _, size in answered)


def test_a_batch_that_ends_first_is_answered_first(features, answered):
    pool = DelayedPool(lambda batch: 0.5 if batch == 0 else 0.01)
    sut = SUT(pool, features, 64, None, arrivals=True)
    sut.issue_queries([0], [0])
    time.sleep(0.02)
    sut.issue_queries([1], [1])
    wait_for(answered, 2)
    sut.close()
    assert [response_id for response_id, _ in answered] == [1, 0]


def test_a_fault_in_the_loop_answers_everything_empty_instead_of_hanging(features, answered):
    sut = SUT(DelayedPool(lambda batch: 0.01), features, 64, None, arrivals=True)
    sut.issue_queries([0, 1], [0, len(features) + 5])  # no such sample: planning the query fails
    sut.issue_queries([2], [2])
    wait_for(answered, 3)
    sut.close()
    assert sorted(response_id for response_id, _ in answered) == [0, 1, 2]
    assert all(size == 0 for _, size in answered) and isinstance(sut.error, IndexError)


def test_a_simulated_device_takes_its_tokens_share_of_a_second(features):
    """At 100 samples/s over the features' mean length, a batch of 20 average samples takes 0.2 s; at 0, none."""
    from sut.simulated_backend import SimulatedBackend

    mean = float(np.mean(features.lengths))
    mask = np.zeros((20, 384), np.int32)
    mask[:, :round(mean)] = 1
    for rate, least, most in ((100, 0.19, 0.6), (0, 0.0, 0.05)):
        device = SimulatedBackend(calibration=features, options={"samples_per_second": str(rate)})
        started = time.perf_counter()
        logits = device.predict(mask, mask, mask)
        assert least <= time.perf_counter() - started < most
        assert logits.shape == (20, 384, 2) and not logits.any()
