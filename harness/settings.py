"""Run settings as data: a system file in configs/systems/ becomes the run's user.conf and TestSettings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from common.cpu import cpu_flags
from common.errors import HarnessError
from configs import SYSTEMS_DIR

SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
MLPERF_MODEL = "bert"  # the model name LoadGen's embedded mlperf.conf uses for bert-99


@dataclass
class SystemConfig:
    name: str
    device: str
    precision: str
    batch_size: int
    max_tokens: int | None
    default_count: int | None
    loadgen: dict[str, dict[str, float]]
    description: str = ""
    # On a CPU: the first of these flags that /proc/cpuinfo lists gives the default precision (else `precision`).
    precision_by_cpu_flag: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return system_path(self.name)


def system_path(name: str) -> Path:
    """configs/systems/<name>.json, or a system file given by its path (make sweep OPTIMAL=1 writes one)."""
    return Path(name) if name.endswith(".json") else SYSTEMS_DIR / f"{name}.json"


def known_systems() -> list[str]:
    return sorted(path.stem for path in SYSTEMS_DIR.glob("*.json"))


def detect_system() -> str:
    """The system file for this machine: a GPU model's own file if there is one, else gpu or cpu."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    gpu_name = torch.cuda.get_device_name(0).lower()
    for name in known_systems():
        if name not in ("cpu", "gpu") and name in gpu_name:
            return name
    return "gpu"


# The user.conf keys LoadGen reads for each scenario (its TestSettings::FromConfig), less `mode`, which the
# harness sets. LoadGen ignores any other key without a word, so a typo would silently run with defaults.
COMMON_LOADGEN_KEYS = (
    "min_duration", "max_duration", "min_query_count", "max_query_count", "qsl_rng_seed", "sample_index_rng_seed",
    "schedule_rng_seed", "accuracy_log_rng_seed", "accuracy_log_probability", "accuracy_log_sampling_target",
    "print_timestamps", "performance_issue_unique", "performance_issue_same", "performance_issue_same_index",
    "performance_sample_count_override", "accuracy_sample_count_override", "sample_concatenate_permutation")
LOADGEN_KEYS = {
    "Offline": ("target_qps",),
    "Server": ("target_qps", "target_latency", "target_latency_percentile", "max_async_queries", "coalesce_queries"),
    "SingleStream": ("target_latency", "target_latency_percentile"),
    "MultiStream": ("target_latency", "target_latency_percentile", "samples_per_query"),
}


def chosen_system(name: str | None) -> SystemConfig:
    """SYSTEM as given, else this machine's own (detect_system)."""
    return load_system(name or detect_system())


def default_precision(system: SystemConfig, device: str, supported: tuple[str, ...]) -> tuple[str, str]:
    """The precision a run takes when PRECISION is not given, and why (for the run's header)."""
    if device == "cpu":
        for flag, precision in system.precision_by_cpu_flag.items():
            if flag in cpu_flags() and precision in supported:
                return precision, f"picked for this CPU's {flag}; PRECISION=fp32 for fp32"
    return system.precision, f"system {system.name}'s default"


def load_system(name: str) -> SystemConfig:
    """SYSTEM as a name in configs/systems, or a path to a system file of its own (ending in .json)."""
    path = system_path(name)
    if not path.is_file():
        raise HarnessError(f"unknown SYSTEM={name}; choose one of {', '.join(known_systems())}, add {path}, "
                           "or give the path of a system file (.json)")
    try:
        system = SystemConfig(name=name, **json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        raise HarnessError(f"{path} is not a valid system file ({error})") from error
    problem = system_file_problem(system)
    if problem:
        raise HarnessError(f"{path}: {problem}")
    return system


def system_file_problem(system: SystemConfig) -> str | None:
    for key in ("device", "precision", "description"):
        if not isinstance(getattr(system, key), str):
            return f"{key} must be a string, not {getattr(system, key)!r}"
    for key, allow_none in (("batch_size", False), ("max_tokens", True), ("default_count", True)):
        value = getattr(system, key)
        if not ((value is None and allow_none) or (type(value) is int and value >= 1)):
            return f"{key} must be a whole number of at least 1{' or null' if allow_none else ''}, not {value!r}"
    by_flag = system.precision_by_cpu_flag
    if not (isinstance(by_flag, dict) and all(isinstance(value, str) for value in by_flag.values())):
        return f"precision_by_cpu_flag must map CPU flags to precisions, not {by_flag!r}"
    if not isinstance(system.loadgen, dict):
        return "loadgen must map scenarios to LoadGen settings"
    for scenario, values in system.loadgen.items():
        if scenario not in SCENARIOS:
            return f"loadgen.{scenario} is not a scenario; use {', '.join(SCENARIOS)}"
        if not isinstance(values, dict):
            return f"loadgen.{scenario} must map LoadGen setting names to numbers"
        for key, value in values.items():
            if key not in (*LOADGEN_KEYS[scenario], *COMMON_LOADGEN_KEYS):
                return (f"loadgen.{scenario}.{key} is not a LoadGen setting for {scenario} (LoadGen would ignore "
                        f"it); {scenario} takes {', '.join(LOADGEN_KEYS[scenario])}, and every scenario "
                        f"{', '.join(COMMON_LOADGEN_KEYS)}")
            if type(value) not in (int, float):
                return f"loadgen.{scenario}.{key} must be a number, not {value!r}"
    return None


def check_scenario(scenario: str) -> str:
    if scenario not in SCENARIOS:
        raise HarnessError(f"unknown SCENARIO={scenario}; choose one of {', '.join(SCENARIOS)}")
    return scenario


def user_conf_text(system: SystemConfig, scenario: str) -> str:
    lines = [f"# user.conf for bert-99 {scenario} on system '{system.name}' ({system.path})"]
    for key, value in system.loadgen.get(scenario, {}).items():
        lines.append(f"{MLPERF_MODEL}.{scenario}.{key} = {value}")
    return "\n".join(lines) + "\n"


_configured = False  # FromConfig was called in this process: LoadGen then logs later runs as not submittable


def test_settings(user_conf: Path, scenario: str, accuracy: bool, count: int | None):
    """TestSettings from mlperf.conf (embedded in LoadGen) plus `user_conf`, read once.

    A `count` makes a quick run: LoadGen's minimum duration and query count are lowered to it,
    which no submission accepts.
    """
    import mlperf_loadgen as lg

    global _configured
    settings = lg.TestSettings()
    if _configured:  # LoadGen loads its mlperf.conf only at a process's first FromConfig: load it here
        settings.FromConfig("", MLPERF_MODEL, scenario, 0)
    if settings.FromConfig(str(user_conf), MLPERF_MODEL, scenario) != 0:
        raise HarnessError(f"LoadGen could not read {user_conf}")
    _configured = True
    settings.scenario = getattr(lg.TestScenario, scenario)
    settings.mode = lg.TestMode.AccuracyOnly if accuracy else lg.TestMode.PerformanceOnly
    if count is not None:
        settings.min_duration_ms = 0
        settings.performance_sample_count_override = count
        per_query = settings.multi_stream_samples_per_query if scenario == "MultiStream" else 1
        settings.min_query_count = max(1, math.ceil(count / per_query))
        settings.max_query_count = settings.min_query_count
        if scenario == "Offline":
            settings.offline_expected_qps = 1.0
    return settings
