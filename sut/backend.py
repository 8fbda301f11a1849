"""What every backend provides: a batch of features in, start/end logits out. Nothing about LoadGen."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """A backend may also offer `submit(...)`, returning a call that waits for the logits: the SUT then
    prepares the next batch while this one runs (sut/pytorch_backend.py does on CUDA)."""

    name: str
    precisions: tuple[str, ...]
    input_data_type: str  # what the model is fed, "int32" or "int64": a submission's measurements.json says it
    option_types: dict[str, type]  # the BACKEND_OPTIONS keys it takes, checked before the model is built

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        """int32 [batch, seq] inputs (seq may be shorter than 384) -> float32 [batch, seq, 2] (start, end)."""
        ...


def parse_options(options: dict[str, str] | None, allowed: dict[str, type], backend: str) -> dict:
    """BACKEND_OPTIONS strings -> typed values; an unknown key or a bad value names what is accepted."""
    from common.errors import HarnessError

    parsed = {}
    for key, text in (options or {}).items():
        if key not in allowed:
            accepted = ", ".join(allowed) or "none"
            raise HarnessError(f"BACKEND={backend} has no option {key!r}; it accepts: {accepted}")
        kind = allowed[key]
        if kind is bool:
            if text.lower() not in ("0", "1", "true", "false", "yes", "no"):
                raise HarnessError(f"BACKEND_OPTIONS {key}={text}: give {key}=1 or {key}=0")
            parsed[key] = text.lower() in ("1", "true", "yes")
        elif kind is int:
            if not text.isdigit():  # counts and sizes: no sign, so -2 threads is refused, not passed on
                raise HarnessError(f"BACKEND_OPTIONS {key}={text}: give a whole number, 0 or more")
            parsed[key] = int(text)
        else:
            parsed[key] = text
    return parsed
