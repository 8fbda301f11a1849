"""BACKEND=simulated: a device that only takes time, so scaling can be measured at GPU speed without GPUs.

Each batch takes its tokens' share of a second on a device of `samples_per_second` (over the features'
own mean length: 9,100, NVIDIA's bert-99 Offline figure for one H100, by default); 0 answers at once,
which leaves only what rank 0 and the transport cost. It loads no model and its logits are zeros, so
accuracy runs refuse it. The time is spent sleeping, not computing: many simulated devices share a few
cores, as rank 0's dispatch would see them on a node with a GPU per rank.
"""

from __future__ import annotations

import time

import numpy as np

from sut.backend import Backend, parse_options

H100_SAMPLES_PER_SECOND = 9100


class SimulatedBackend(Backend):
    name = "simulated"
    simulated = True
    option_types = {"samples_per_second": int}

    def __init__(self, model=None, device: str = "cpu", precision: str = "fp32", calibration=None, cache_dir=None,
                 options: dict[str, str] | None = None, log=print):
        rate = parse_options(options, self.option_types, self.name).get("samples_per_second", H100_SAMPLES_PER_SECOND)
        mean_length = float(np.mean(calibration.lengths))  # the run's own features: SQuAD's, or generated ones
        self.seconds_per_token = 1 / (rate * mean_length) if rate else 0.0

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        if self.seconds_per_token:
            time.sleep(self.seconds_per_token * int(np.count_nonzero(input_mask)))
        return np.zeros((*input_ids.shape, 2), np.float32)
