"""What every backend provides: a batch of features in, start/end logits out. Nothing about LoadGen."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        """int32 [batch, seq] inputs (seq may be shorter than 384) -> float32 [batch, seq, 2] (start, end)."""
        ...
