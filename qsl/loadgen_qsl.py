"""The LoadGen query sample library: all features stay in memory, so load/unload have nothing to do."""

from __future__ import annotations

import mlperf_loadgen as lg

from common.errors import HarnessError
from qsl.features import SquadFeatures


class SquadQSL:
    def __init__(self, features: SquadFeatures, count: int | None = None):
        total = len(features)
        if count is not None and not 1 <= count <= total:
            raise HarnessError(f"COUNT must be between 1 and {total}, got {count}")
        self.features = features
        self.count = count or total
        self.performance_count = self.count
        self.handle = lg.ConstructQSL(self.count, self.performance_count, self._load, self._unload)

    def _load(self, sample_indices: list[int]) -> None:
        pass

    def _unload(self, sample_indices: list[int]) -> None:
        pass

    def close(self) -> None:
        lg.DestroyQSL(self.handle)
