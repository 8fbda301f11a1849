"""Finding the finished runs under build/logs that a submission is made of."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.settings import SCENARIOS

TEST = "TEST01"  # the compliance test bert-99 requires (make compliance)
VERIFY_FILES = ("verify_accuracy.txt", "verify_performance.txt")
PASS_LINE = "TEST PASS"  # a verify file's verdict, the exact line the official checker looks for


@dataclass
class ScenarioRuns:
    scenario: str
    performance_dir: Path
    accuracy_dir: Path
    performance_info: dict
    accuracy_info: dict
    test01_dir: Path | None = None  # a finished TEST01 made after both runs
    test01_info: dict | None = None
    test01_problem: str = ""  # why a TEST01 that is there was left out


def _read_info(run_dir: Path) -> dict | None:
    path = run_dir / "run_info.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HarnessError(f"{path} is unreadable ({error}); rerun that step") from error


def _configuration_difference(performance: dict, accuracy: dict) -> str | None:
    """What differs between the system that was timed and the one that was scored; MLPerf needs them the same."""
    def model(info: dict) -> str:  # the file itself, however the path was typed
        return os.path.normpath(os.path.join(info["working_directory"], info["model_source"]))

    def device(info: dict) -> str:  # cuda:1 and cuda are the same kind of system
        return info["device"].partition(":")[0]

    differences = [f"{name}: performance {describe(performance)}, accuracy {describe(accuracy)}"
                   for name, describe in (("model", model), ("precision", lambda info: info["precision"]),
                                          ("device", device))
                   if describe(performance) != describe(accuracy)]
    return "; ".join(differences) or None


def _scenario_runs(logs: Path, model_name: str, backend_name: str) -> tuple[list[ScenarioRuns], list[str]]:
    """The scenarios with both runs, and for each half-done one the command that completes it."""
    runs, missing = [], []
    for scenario in SCENARIOS:
        base = logs / model_name / backend_name / scenario
        performance_dir, accuracy_dir = base / "performance" / "run_1", base / "accuracy"
        performance_info, accuracy_info = _read_info(performance_dir), _read_info(accuracy_dir)
        if performance_info and accuracy_info:
            difference = _configuration_difference(performance_info, accuracy_info)
            if difference:
                missing.append(f"`make accuracy SCENARIO={scenario}` with the performance run's settings "
                               f"({difference})")
            else:
                runs.append(_with_test01(ScenarioRuns(scenario, performance_dir, accuracy_dir, performance_info,
                                                      accuracy_info), base / TEST))
        elif performance_info:
            missing.append(f"`make accuracy SCENARIO={scenario}` (its performance run exists)")
        elif accuracy_info:
            missing.append(f"`make perf SCENARIO={scenario}` (its accuracy run exists)")
    return runs, missing


def _with_test01(runs: ScenarioRuns, test_dir: Path) -> ScenarioRuns:
    """Attach the scenario's TEST01 if it finished and is newer than both runs it checked."""
    if not test_dir.exists():
        return runs
    info = _read_info(test_dir / "performance" / "run_1")
    if info is None or not all((test_dir / name).is_file() for name in VERIFY_FILES):
        problem = "did not finish"
    elif info["start_utc"] < max(runs.performance_info["end_utc"], runs.accuracy_info["end_utc"]):
        problem = "is older than the runs it checks"
    else:
        runs.test01_dir, runs.test01_info = test_dir, info
        return runs
    runs.test01_problem = problem
    return runs


def passed_test01(test_dir: Path) -> bool:
    """Both halves passed: the performance check, and the accuracy check identical or by its F1 fallback."""
    accuracy, performance = ([line.strip() for line in (test_dir / name).read_text().splitlines()] or [""]
                             for name in VERIFY_FILES)
    return PASS_LINE in performance and (PASS_LINE in accuracy or accuracy[-1].endswith(": PASS"))


def find_runs(build_dir: Path, model: str | None = None, backend: str | None = None) -> list[ScenarioRuns]:
    """Scenarios with both a performance and an accuracy run of one model and backend.

    By default the newest model and backend that has a complete scenario: a later quick run of another
    backend does not hide a finished pair.
    """
    logs = build_dir / "logs"
    candidates: dict[tuple[str, str], str] = {}  # (model, backend) -> newest end time
    for info_path in logs.glob("*/*/*/*/**/run_info.json"):
        info = json.loads(info_path.read_text())
        key = (info["model_name"], info["backend"])
        candidates[key] = max(candidates.get(key, ""), info.get("end_utc", ""))
    candidates = {key: end for key, end in candidates.items()
                  if (model is None or key[0] == model) and (backend is None or key[1] == backend)}
    if not candidates:
        wanted = " ".join(part for part in (f"--model {model}" if model else "",
                                            f"--backend {backend}" if backend else "") if part)
        raise HarnessError(f"no runs found under {logs}{' for ' + wanted if wanted else ''}; "
                           "run `make perf` and `make accuracy` first")
    newest_first = sorted(candidates, key=candidates.get, reverse=True)
    newest = "/".join(newest_first[0])
    runs, missing = _scenario_runs(logs, *newest_first[0])
    if not runs:
        newest_missing = missing
        for chosen in newest_first[1:]:
            runs, missing = _scenario_runs(logs, *chosen)
            if runs:
                break
        else:
            raise HarnessError(f"no scenario of {newest} has both runs; run "
                               + (", ".join(newest_missing) if newest_missing else "`make perf` and `make accuracy`"))
        print(f"note: packaging {'/'.join(chosen)}, the newest runs with a complete scenario; the later {newest} "
              "runs have none (choose with make submission BACKEND=..., or --model and --backend)")
    for line in missing:
        print(f"note: skipping a half-done scenario; to include it run {line}")
    return runs
