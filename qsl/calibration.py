"""MLPerf's calibration set for bert-99: 100 dev features chosen by MLCommons.

Closed-division rules allow quantisation scales from this set only, so fp8 calibrates on it for
every run. The indices count features in the reference featurisation, which ours reproduces.
"""

from __future__ import annotations

import numpy as np

from harness.errors import HarnessError
from qsl.dataset import SHIPPED_DIR, read_verified

CALIBRATION_LIST = SHIPPED_DIR / "bert-calibration.txt"
CALIBRATION_SHA256 = "5a4ace54371313359193a661d653731115fc749c6ed92812ada1f74d4b1b708a"


def calibration_indices(feature_count: int) -> np.ndarray:
    """Feature indices of the calibration set, refused if the features are not the full dev set."""
    text = read_verified(CALIBRATION_LIST, CALIBRATION_SHA256, "MLPerf calibration list").decode()
    indices = np.array(text.split(), dtype=np.int64)
    if indices.max() >= feature_count:
        raise HarnessError(f"the MLPerf calibration list names feature {indices.max()}, but only "
                           f"{feature_count} features are loaded: calibrate on the full dev set (10833 features)")
    return indices
