"""What this CPU is and which of the instruction-set extensions that decide a precision's speed it has."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# The extensions that change which precision is fastest: AMX tiles, AVX-512's bf16 and int8 dot products, AVX2.
NAMED_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
# Space-separated flags that stand in for /proc/cpuinfo's: defaults picked as on another CPU (and in the tests).
FLAGS_VARIABLE = "BERT99_CPU_FLAGS"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The flags of the first processor in /proc/cpuinfo (empty where there is none: then nothing is assumed)."""
    if FLAGS_VARIABLE in os.environ:
        return frozenset(os.environ[FLAGS_VARIABLE].split())
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def named_flags() -> str:
    """The deciding extensions this CPU has, for headers and system descriptions ('none of ...' if none)."""
    present = [flag for flag in NAMED_FLAGS if flag in cpu_flags()]
    return " ".join(present) if present else f"none of {' '.join(NAMED_FLAGS)}"


def physical_cores(cpus: set[int], topology: Path = Path("/sys/devices/system/cpu")) -> list[list[int]]:
    """`cpus` grouped by the physical core they run on (hyperthread siblings together), in order."""
    cores: dict[tuple[str, ...], list[int]] = {}
    for cpu in sorted(cpus):
        try:
            key = tuple((topology / f"cpu{cpu}" / "topology" / name).read_text().strip()
                        for name in ("physical_package_id", "core_id"))
        except OSError:  # no topology here: each logical CPU counts as a core
            key = (str(cpu),)
        cores.setdefault(key, []).append(cpu)
    return list(cores.values())


def instance_cores(local_world: int, cpus: set[int] | None = None,
                   topology: Path = Path("/sys/devices/system/cpu")) -> list[list[int]] | None:
    """The logical CPUs of each of `local_world` instances on this node: an equal, contiguous share of the
    physical cores this process may use, so no two instances share a core (Intel's MLPerf CPU instances).
    None where there are fewer cores than instances: then they share them, unpinned."""
    cores = physical_cores(os.sched_getaffinity(0) if cpus is None else cpus, topology)
    per_instance = len(cores) // local_world
    if per_instance == 0:
        return None
    return [sorted(cpu for core in cores[index * per_instance:(index + 1) * per_instance] for cpu in core)
            for index in range(local_world)]


def cpu_list(cpus: list[int]) -> str:
    """Logical CPUs as taskset writes them: 0-3,8-11."""
    ranges: list[list[int]] = []
    for cpu in cpus:
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in ranges)
