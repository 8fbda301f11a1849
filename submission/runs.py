"""Finding the finished runs under build/logs that a submission is made of."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.settings import SCENARIOS
from qsl.features import DOC_STRIDE, MAX_SEQ_LENGTH

TEST = "TEST01"  # the compliance test bert-99 requires (make compliance)
VERIFY_FILES = ("verify_accuracy.txt", "verify_performance.txt")
DEFAULT_BUILD = Path("build")
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


REQUIRED_INFO = ("configuration", "input_data_type", "data", "seq_len", "doc_stride")  # older runs lack them


def _read_info(run_dir: Path) -> dict | None:
    path = run_dir / "run_info.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HarnessError(f"{path} is unreadable ({error}); rerun that step") from error
    missing = [key for key in REQUIRED_INFO if key not in info]
    if missing:
        raise HarnessError(f"{path} was written by an older version of the harness (no {', '.join(missing)}); "
                           f"rerun that step, or move {run_dir} out of the way")
    return info


def model_path(info: dict) -> str:
    """The run's model as a path from here, however it was typed where the run was made."""
    return os.path.relpath(os.path.normpath(os.path.join(info["working_directory"], info["model_source"])))


def make_command(target: str, scenario: str, info: dict, build_dir: Path = DEFAULT_BUILD) -> str:
    """The make command that makes a `target` run of the system `info` describes, typed as it stands."""
    words = [f"make {target}", f"SCENARIO={scenario}"]
    if not info["model_is_random"]:
        words.append(f"MODEL={shlex.quote(model_path(info))}")
    words += [f"BACKEND={info['backend']}", f"PRECISION={info['precision']}", f"DEVICE={info['device']}",
              f"SYSTEM={info['system']}"]
    if info["backend_options"]:
        words.append("BACKEND_OPTIONS=" + shlex.quote(" ".join(f"{key}={value}"
                                                                for key, value in info["backend_options"].items())))
    if build_dir != DEFAULT_BUILD:
        words.append(f"BUILD={shlex.quote(str(build_dir))}")
    return " ".join(words)


def _configuration_difference(performance: dict, accuracy: dict) -> str | None:
    """What differs between the system that was timed and the one that was scored; MLPerf needs them the same."""
    differences = [f"{name}: performance {describe(performance)}, accuracy {describe(accuracy)}"
                   for name, describe in (("model", model_path),) if describe(performance) != describe(accuracy)]
    return "; ".join(differences) or None


def _scenario_runs(logs: Path, key: tuple[str, str, str], build_dir: Path) -> tuple[list[ScenarioRuns], list[str]]:
    """The scenarios with both runs, and for each half-done one the command that completes it."""
    runs, missing = [], []
    for scenario in SCENARIOS:
        base = logs.joinpath(*key, scenario)
        performance_dir, accuracy_dir = base / "performance" / "run_1", base / "accuracy"
        performance_info, accuracy_info = _read_info(performance_dir), _read_info(accuracy_dir)
        if performance_info and accuracy_info:
            difference = _configuration_difference(performance_info, accuracy_info)
            if difference:
                missing.append(f"`{make_command('accuracy', scenario, performance_info, build_dir)}`, the "
                               f"performance run's system ({difference})")
            else:
                runs.append(_with_test01(ScenarioRuns(scenario, performance_dir, accuracy_dir, performance_info,
                                                      accuracy_info), base / TEST))
        elif performance_info:
            missing.append(_complete_with("accuracy", scenario, performance_info, build_dir))
        elif accuracy_info:
            missing.append(f"`{make_command('perf', scenario, accuracy_info, build_dir)}` (its accuracy run exists)")
    return runs, missing


def _complete_with(target: str, scenario: str, info: dict, build_dir: Path) -> str:
    if info["model_is_random"]:
        return (f"`make download` or MODEL=<a real model>, then `make all SCENARIOS={scenario}`: its performance "
                "run used random weights, which an accuracy run refuses")
    return f"`{make_command(target, scenario, info, build_dir)}` (its performance run exists)"


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


def find_runs(build_dir: Path, model: str | None = None, backend: str | None = None,
              precision: str | None = None) -> list[ScenarioRuns]:
    """Scenarios with both a performance and an accuracy run of one model, backend and configuration.

    By default the newest configuration that has a complete scenario: a later quick run of another
    backend or precision does not hide a finished pair.
    """
    logs = build_dir / "logs"
    candidates: dict[tuple[str, str, str], str] = {}  # (model, backend, configuration) -> newest end time
    other_data = False  # runs on generated data or another featurisation: never part of a submission
    for info_path in logs.glob("*/*/*/*/*/**/run_info.json"):
        info = _read_info(info_path.parent)
        if (info["data"], info["seq_len"], info["doc_stride"]) != ("squad", MAX_SEQ_LENGTH, DOC_STRIDE):
            other_data = True
        elif (model is None or info["model_name"] == model) and (backend is None or info["backend"] == backend) \
                and (precision is None or info["precision"] == precision):
            key = (info["model_name"], info["backend"], info["configuration"])
            candidates[key] = max(candidates.get(key, ""), info.get("end_utc", ""))
    if not candidates and other_data and not (model or backend or precision):
        raise HarnessError(f"the runs under {logs} are on generated data (DATA=synthetic) or SQuAD at another "
                           "SEQ_LEN or DOC_STRIDE, not the MLPerf setting, which a submission cannot hold; run "
                           "`make perf` and `make accuracy` without DATA, SEQ_LEN and DOC_STRIDE")
    if not candidates:
        wanted = " ".join(f"{name}={value}" for name, value in (("MODEL", model), ("BACKEND", backend),
                                                                ("PRECISION", precision)) if value)
        raise HarnessError(f"no runs found under {logs}{' for ' + wanted if wanted else ''}; "
                           "run `make perf` and `make accuracy` first")
    newest_first = sorted(candidates, key=candidates.get, reverse=True)
    newest = "/".join(newest_first[0])
    runs, missing = _scenario_runs(logs, newest_first[0], build_dir)
    if not runs:
        newest_missing = missing
        for chosen in newest_first[1:]:
            runs, missing = _scenario_runs(logs, chosen, build_dir)
            if runs:
                break
        else:
            raise HarnessError(f"no scenario of {newest} has both runs; run "
                               + (", ".join(newest_missing) if newest_missing else "`make perf` and `make accuracy`"))
        print(f"note: packaging {'/'.join(chosen)}, the newest runs with a complete scenario; the later {newest} "
              "runs have none (choose with make submission BACKEND=... PRECISION=...)")
    for line in missing:
        print(f"note: skipping a half-done scenario; to include it run {line}")
    return runs
