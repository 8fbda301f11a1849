"""MLPerf's calibration set for bert-99: 100 dev features chosen by MLCommons.

Closed-division rules allow quantisation scales from this set only, so fp8 calibrates on it for
every run of the MLPerf setting. The indices count features in the reference featurisation, which
ours reproduces. Other sample sets (SQuAD at another SEQ_LEN, generated samples) have no such list:
they calibrate on 100 of their own samples, spread evenly.
"""

from __future__ import annotations

import numpy as np

from common.errors import HarnessError
from qsl.dataset import SHIPPED_DIR, read_verified
from qsl.features import MAX_SEQ_LENGTH, ModelInputs, SquadFeatures

CALIBRATION_LIST = SHIPPED_DIR / "bert-calibration.txt"
CALIBRATION_SHA256 = "5a4ace54371313359193a661d653731115fc749c6ed92812ada1f74d4b1b708a"
CALIBRATION_SIZE = 100
MLPERF_FEATURE_COUNT = 10833


def calibration_indices(samples: ModelInputs) -> np.ndarray:
    """Rows to calibrate on: MLPerf's list for the 384-token dev features, else 100 spread over the samples."""
    if not (isinstance(samples, SquadFeatures) and samples.seq_length == MAX_SEQ_LENGTH):
        count = min(CALIBRATION_SIZE, len(samples))
        return np.unique(np.linspace(0, len(samples) - 1, count).round().astype(np.int64))
    text = read_verified(CALIBRATION_LIST, CALIBRATION_SHA256, "MLPerf calibration list").decode()
    indices = np.array(text.split(), dtype=np.int64)
    if len(samples) != MLPERF_FEATURE_COUNT:
        raise HarnessError(f"the MLPerf calibration list indexes the {MLPERF_FEATURE_COUNT} dev features, but "
                           f"{len(samples)} are loaded: calibrate on the full dev set")
    return indices
