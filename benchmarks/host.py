"""Host-side costs of the harness, no model involved: featurising, cached load, and answering LoadGen.

    python benchmarks/host.py [--samples 200000]

The LoadGen figure runs a real Offline test whose backend returns zeros at once, so the time per
sample is all harness (batch planning, gathering inputs, responses) plus LoadGen itself.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


class ZeroBackend:
    name = "zero"
    precisions = ("fp32",)

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        return np.zeros((*input_ids.shape, 2), np.float32)


def offline_host_cost(features, samples: int, batch_size: int) -> float:
    import mlperf_loadgen as lg

    from harness.settings import test_settings
    from qsl.loadgen_qsl import SquadQSL
    from sut.sut import SUT

    with tempfile.TemporaryDirectory() as directory:
        user_conf = Path(directory) / "user.conf"
        user_conf.write_text("")
        settings = test_settings(user_conf, "Offline", accuracy=False, count=None)
        settings.min_duration_ms = 0
        settings.min_query_count = samples
        settings.offline_expected_qps = 1.0
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = directory
        qsl = SquadQSL(features)
        sut = SUT(ZeroBackend(), features, batch_size)
        started = time.perf_counter()
        lg.StartTestWithLogSettings(sut.handle, qsl.handle, settings, log_settings)
        elapsed = time.perf_counter() - started
        sut.close()
        qsl.close()
    return elapsed / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    from qsl.cache import load_features

    with tempfile.TemporaryDirectory() as directory:
        cache = Path(directory) / "features.npz"
        started = time.perf_counter()
        load_features(cache, log=lambda *_: None)
        featurise = time.perf_counter() - started
        started = time.perf_counter()
        features = load_features(cache, log=lambda *_: None)
        cached = time.perf_counter() - started
    per_sample = offline_host_cost(features, args.samples, args.batch_size)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"affinity {len(os.sched_getaffinity(0))} cores")
    print(f"featurise SQuAD dev (10833 features, tokenizer included): {featurise:.2f} s")
    print(f"load cached features: {cached:.3f} s")
    print(f"LoadGen Offline, zero backend, {args.samples} samples, batch {args.batch_size}: "
          f"{per_sample * 1e6:.2f} us per sample ({1 / per_sample:,.0f} samples/s)")


if __name__ == "__main__":
    main()
