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
