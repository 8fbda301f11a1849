"""LoadGen's StartTest as a run needs it: interruptible, with a progress bar that costs the SUT nothing."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path


def progress(sut, scenario: str, count: int | None, dataset_size: int, accuracy: bool,
             settings) -> tuple[Callable[[], int] | None, int | None]:
    """What start_test's progress bar reads, and its total where LoadGen's sample count is known in advance.

    A large Offline query has the SUT's own bar (by tokens); every other run gets this one, so no run
    is silent for long. A compliant performance run lasts as long as LoadGen's minimum duration
    asks: its bar counts without a total.
    """
    from sut.sut import PROGRESS_MIN_SAMPLES

    expected = count or dataset_size
    if scenario == "Offline" and expected >= PROGRESS_MIN_SAMPLES:
        return None, None
    if count is None and not accuracy:
        return (lambda: sut.samples_done), None
    per_query = settings.multi_stream_samples_per_query if scenario == "MultiStream" else 1
    return (lambda: sut.samples_done), -(-expected // per_query) * per_query


def start_test(sut_handle, qsl_handle, settings, log_settings, work_dir: Path,
               answered: Callable[[], int] | None = None, total: int | None = None,
               backend_error: Callable[[], BaseException | None] | None = None, stop_on_error: bool = False) -> None:
    """LoadGen's StartTest, with Ctrl-C honoured and, given `answered`, a progress bar of samples answered.

    StartTest blocks in C++, where Python never sees Ctrl-C until the run ends (up to 10 minutes
    or more), so it runs in a thread while the main thread waits. LoadGen cannot be stopped once a
    test has begun, so an interrupt ends the process at once, its logs left as they were; so does a
    `backend_error` (polled as the main thread waits) with `stop_on_error`, for scenarios whose queries
    LoadGen would go on issuing to the end of its schedule (an Offline query, answered empty after a
    failure, ends at once and is left to end). The main thread reads the SUT's count as it waits: the
    progress bar costs the SUT's latency path nothing.
    """
    import mlperf_loadgen as lg
    from tqdm import tqdm

    failure: list[BaseException] = []

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings)
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(error)

    thread = threading.Thread(target=target, name="loadgen", daemon=True)
    bar = tqdm(total=total, unit="sample", desc="LoadGen run", disable=answered is None, mininterval=1.0)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
            if answered is not None:
                bar.update(answered() - bar.n)
            if backend_error is not None and (error := backend_error()) is not None and stop_on_error:
                bar.close()
                print(f"error: the backend failed during the run: {error}\nLoadGen cannot be stopped mid-run and "
                      f"would go on issuing queries to the end of its schedule, so the run ends here; its incomplete "
                      f"logs are in {work_dir} (not a result)", file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(2)
        bar.close()
    except KeyboardInterrupt:
        print(f"\ninterrupted: LoadGen stopped mid-run; this run's incomplete logs are in {work_dir} "
              "(not a result)", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)  # LoadGen's threads cannot be joined mid-test; a normal exit aborts in C++
    if failure:
        raise failure[0]
