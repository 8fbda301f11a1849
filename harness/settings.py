"""Run settings as data: a system file in configs/systems/ becomes the run's user.conf and TestSettings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from configs import SYSTEMS_DIR
from harness.errors import HarnessError

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


def load_system(name: str) -> SystemConfig:
    path = SYSTEMS_DIR / f"{name}.json"
    if not path.is_file():
        raise HarnessError(f"unknown SYSTEM={name}; choose one of {', '.join(known_systems())} "
                           f"or add {path}")
    try:
        data = json.loads(path.read_text())
        return SystemConfig(name=name, **data)
    except (json.JSONDecodeError, TypeError) as error:
        raise HarnessError(f"{path} is not a valid system file ({error})") from error


def check_scenario(scenario: str) -> str:
    if scenario not in SCENARIOS:
        raise HarnessError(f"unknown SCENARIO={scenario}; choose one of {', '.join(SCENARIOS)}")
    return scenario


def user_conf_text(system: SystemConfig, scenario: str) -> str:
    lines = [f"# user.conf for bert-99 {scenario} on system '{system.name}' (configs/systems/{system.name}.json)"]
    for key, value in system.loadgen.get(scenario, {}).items():
        lines.append(f"{MLPERF_MODEL}.{scenario}.{key} = {value}")
    return "\n".join(lines) + "\n"


def test_settings(user_conf: Path, scenario: str, accuracy: bool, count: int | None):
    """TestSettings from mlperf.conf (embedded in LoadGen) plus `user_conf`, read once.

    A `count` makes a quick run: LoadGen's minimum duration and query count are lowered to it,
    which no submission accepts.
    """
    import mlperf_loadgen as lg

    settings = lg.TestSettings()
    if settings.FromConfig(str(user_conf), MLPERF_MODEL, scenario) != 0:
        raise HarnessError(f"LoadGen could not read {user_conf}")
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
