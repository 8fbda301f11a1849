"""Where the time of answering batches goes, stage by stage (make sweep's stages_ms).

Off unless a sweep asks: each stage then waits for the device at its start and end, which a measured
run must not do. Stages: host_batch (the SUT selects and pads a batch), pack, host_to_device, forward,
device_to_host and scatter (the packed backend's own; other backends report all of theirs as forward),
respond (the SUT's answers to LoadGen).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext


class StageTimes:
    def __init__(self, synchronize: Callable[[], None] | None = None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)  # once per batch
        self._synchronize = synchronize or (lambda: None)

    def milliseconds_per_batch(self) -> dict[str, float]:
        return {name: 1000 * seconds / self.calls[name] for name, seconds in sorted(self.seconds.items())}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self.seconds[name] += time.perf_counter() - started
            self.calls[name] += 1


def stage(stages: StageTimes | None, name: str):
    """`with stage(self.stages, "pack"):` times the block when stages are on, and costs a no-op otherwise."""
    return nullcontext() if stages is None else stages.stage(name)
