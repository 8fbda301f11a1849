"""Energy, measured or not at all: NVML on NVIDIA GPUs, RAPL on CPUs, else a reason instead of a number;
and the device's other counters runs report beside it (GPU utilisation, peak memory).

One interface for sweeps, benchmarks and training: `meter = energy_meter(device)`, `meter.start()`, then
`meter.stop()` gives an EnergyReading whose `joules` is None when nothing could be read, with `source`
saying why. No estimate from a TDP table is ever passed off as a measurement.
"""

from __future__ import annotations

import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")
POWER_SAMPLE_SECONDS = 0.05  # NVML power sampled at 20 Hz where the GPU has no energy counter


@dataclass
class EnergyReading:
    joules: float | None
    seconds: float
    source: str  # what measured it ("RAPL package domains: ...", "NVML energy counter, ..."), or why nothing did

    @property
    def watts(self) -> float | None:
        return self.joules / self.seconds if self.joules is not None and self.seconds > 0 else None


class NoMeter:
    def __init__(self, reason: str):
        self.reason = reason

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> EnergyReading:
        return EnergyReading(None, time.perf_counter() - self.started, self.reason)

    def utilisation(self) -> int | None:
        """The GPU's busy percentage over the last sample period; None where there is no NVML."""
        return None


class RaplMeter:
    """The package domains' energy counters (microjoules), each wrapping at its own max_energy_range_uj."""

    def __init__(self, domains: list[Path]):
        self.domains = domains

    def utilisation(self) -> None:
        return None

    def _read(self) -> list[int]:
        return [int((domain / "energy_uj").read_text()) for domain in self.domains]

    def start(self) -> None:
        self.started, self.first = time.perf_counter(), self._read()

    def stop(self) -> EnergyReading:
        last, seconds = self._read(), time.perf_counter() - self.started
        microjoules = 0
        for domain, before, after in zip(self.domains, self.first, last, strict=True):
            span = int((domain / "max_energy_range_uj").read_text()) + 1
            microjoules += (after - before) % span  # a counter that wrapped around once
        names = ", ".join((domain / "name").read_text().strip() if (domain / "name").is_file() else domain.name
                          for domain in self.domains)
        return EnergyReading(microjoules / 1e6, seconds, f"RAPL ({names}; CPU packages only, not DRAM or the board)")


class NvmlMeter:
    """The GPU's total energy counter (Volta and later), else its power draw sampled in a thread, integrated."""

    def __init__(self, pynvml, handle, name: str):
        self.nvml, self.handle, self.name = pynvml, handle, name
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.counter = True
        except pynvml.NVMLError:
            self.counter = False

    def utilisation(self) -> int:
        return int(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def _sample(self) -> None:
        previous = time.perf_counter()
        while not self.done.wait(POWER_SAMPLE_SECONDS):
            now = time.perf_counter()
            self.sampled += self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000 * (now - previous)
            previous = now

    def start(self) -> None:
        self.started = time.perf_counter()
        if self.counter:
            self.first = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        else:
            self.sampled, self.done = 0.0, threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self.started
        if self.counter:
            joules = (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.first) / 1000
            return EnergyReading(joules, seconds, f"NVML energy counter, {self.name} (the GPU only)")
        self.done.set()
        self.thread.join()
        return EnergyReading(self.sampled, seconds, f"NVML power sampled at {1 / POWER_SAMPLE_SECONDS:.0f} Hz, "
                                                    f"{self.name} (the GPU only)")


def rapl_domains(root: Path = POWERCAP) -> tuple[list[Path], str]:
    """The readable package domains under `root`, or none and why."""
    if not root.is_dir():
        return [], f"no RAPL: {root} does not exist (no powercap driver here: a VM or a CPU without it)"
    domains = sorted(path for path in root.glob("intel-rapl:*") if path.name.count(":") == 1)
    if not domains:
        return [], f"no RAPL: {root} has no intel-rapl package domains"
    try:
        for domain in domains:
            int((domain / "energy_uj").read_text())
            int((domain / "max_energy_range_uj").read_text())
    except (OSError, ValueError) as error:
        return [], f"no RAPL: {error} (energy_uj is readable by root only on many kernels)"
    return domains, ""


def _nvml_handle(pynvml, index: int):
    """torch's cuda:N by its UUID: with CUDA_VISIBLE_DEVICES set, NVML's index N may be another GPU."""
    import torch

    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
    if uuid:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except pynvml.NVMLError:
            pass
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def energy_meter(device: str, powercap: Path = POWERCAP):
    """NVML for a CUDA device, RAPL for the CPU; NoMeter with the reason where neither can be read."""
    if device.startswith("cuda"):
        try:
            import pynvml
        except ImportError:
            return NoMeter("no NVML: pip install nvidia-ml-py (the sweep's energy columns need it on NVIDIA GPUs)")
        try:
            pynvml.nvmlInit()
            handle = _nvml_handle(pynvml, int(device.partition(":")[2] or 0))
            return NvmlMeter(pynvml, handle, pynvml.nvmlDeviceGetName(handle))
        except pynvml.NVMLError as error:
            return NoMeter(f"no NVML: {error}")
    domains, reason = rapl_domains(powercap)
    return RaplMeter(domains) if domains else NoMeter(reason)


def peak_memory(device: str) -> int:
    """The device's peak allocation, or on CPU this process's peak resident set."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
