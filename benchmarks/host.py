"""Host-side costs of the harness, no model involved: featurising, cached load, and answering LoadGen.

    python -m benchmarks.host [--samples 200000] [--system h100]

The LoadGen figure runs a real Offline test through the SUT with the packed PyTorch backend's host
work (packing each batch, scattering logits back) around a model that returns zeros at once, batched
as the system file says. The time per sample is then all harness plus LoadGen itself: the part of
a GPU run that the GPU cannot hide.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser, run_main
from sut.backend import Backend

TARGET_RATE = 9_100  # samples/s: the H100 Offline record this harness aims at


class PackedZeroBackend(Backend):
    """The packed backend's host side around a model that returns zero logits."""

    name = "packed-zero"

    def __init__(self) -> None:
        from sut.pytorch_backend import pack, scatter  # imports torch: outside the timed run

        self.pack, self.scatter = pack, scatter

    def predict(self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray) -> np.ndarray:
        batch = self.pack(input_ids, input_mask, segment_ids)
        return self.scatter(batch, np.zeros((batch.real_tokens, 2), np.float32))


def offline_host_cost(features, samples: int, batch_size: int, max_tokens: int | None) -> float:
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
        sut = SUT(PackedZeroBackend(), features, batch_size, max_tokens)
        started = time.perf_counter()
        lg.StartTestWithLogSettings(sut.handle, qsl.handle, settings, log_settings)
        elapsed = time.perf_counter() - started
        sut.close()
        qsl.close()
    return elapsed / samples


def main() -> None:
    from harness.settings import known_systems, load_system
    from qsl.cache import load_features

    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000, help="samples in the LoadGen query")
    parser.add_argument("--system", default="h100", choices=known_systems(),
                        help="the configs/systems file whose batch size and token budget to use")
    args = parser.parse_args()
    system = load_system(args.system)

    with tempfile.TemporaryDirectory() as directory:
        cache = Path(directory) / "features.npz"
        started = time.perf_counter()
        load_features(cache, log=lambda *_: None)
        featurise = time.perf_counter() - started
        started = time.perf_counter()
        features = load_features(cache, log=lambda *_: None)
        cached = time.perf_counter() - started
    per_sample = offline_host_cost(features, args.samples, system.batch_size, system.max_tokens)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
          f"affinity {len(os.sched_getaffinity(0))} cores")
    print(f"featurise SQuAD dev (10833 features, tokenizer included): {featurise:.2f} s")
    print(f"load cached features: {cached:.3f} s")
    print(f"LoadGen Offline, packed host work, zero model, {args.samples} samples, batching of {args.system} "
          f"(batch {system.batch_size}, token budget {system.max_tokens or 'none'}): "
          f"{per_sample * 1e6:.2f} us per sample ({1 / per_sample:,.0f} samples/s)")
    print(f"host share at {TARGET_RATE:,} samples/s: {per_sample * TARGET_RATE:.1%}")


if __name__ == "__main__":
    run_main(main)
