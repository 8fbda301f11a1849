"""Finding the finished runs under build/logs that a submission is made of."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError
from harness.run_folders import Slot, describe_run, is_compliant
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


def make_command(target: str, scenario: str, info: dict, build_dir: Path = DEFAULT_BUILD, count: bool = False) -> str:
    """The make command that makes a `target` run of the system `info` describes, typed as it stands; `count`:
    over as many samples as that run."""
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
    if count:
        words.append(f"COUNT={info['count'] or 'full'}")
    return " ".join(words)


def _configuration_difference(performance: dict, accuracy: dict) -> str | None:
    """What differs between the system that was timed and the one that was scored; MLPerf needs them the same."""
    differences = [f"{name}: performance {describe(performance)}, accuracy {describe(accuracy)}"
                   for name, describe in (("model", model_path),) if describe(performance) != describe(accuracy)]
    return "; ".join(differences) or None


def _best(run_dirs: list[Path], mode: str, accept=lambda info: True) -> tuple[Path, dict] | tuple[None, None]:
    """The run to package among a slot's runs (newest first): compliant before quick, then the one over most
    samples, then the newest."""
    candidates = [(position, path, info) for position, path in enumerate(run_dirs)
                  if (info := _read_info(path)) is not None and accept(info)]
    if not candidates:
        return None, None
    _, path, info = min(candidates, key=lambda candidate: (not is_compliant(candidate[2], mode),
                                                           -_coverage(candidate[2]), candidate[0]))
    return path, info


def _coverage(info: dict) -> float:
    return float("inf") if info["count"] is None else info["count"]


def _chosen_note(scenario: str, mode: str, chosen: Path, info: dict, newest: Path) -> str | None:
    """Said when a better earlier run is packaged over the newest one."""
    if chosen == newest:
        return None
    newest_info = _read_info(newest)
    newer = f" over the newer {describe_run(newest_info, mode)} run in {newest}" if newest_info else ""
    return f"{scenario} {mode}: using the {describe_run(info, mode)} run kept in {chosen}{newer}"


def _scenario_runs(logs: Path, key: tuple[str, str, str], build_dir: Path
                   ) -> tuple[list[ScenarioRuns], dict[str, str], list[str]]:
    """The scenarios with both runs, for each half-done one the command that completes it, and what was chosen
    over a newer run."""
    runs, missing, notes = [], {}, []
    for scenario in SCENARIOS:
        base = logs.joinpath(*key, scenario)
        performance_slot, accuracy_slot = Slot(base, "performance"), Slot(base, "accuracy")
        performance_dir, performance_info = _best(performance_slot.runs(), "performance")
        accuracy_runs = accuracy_slot.runs()
        _, any_accuracy_info = _best(accuracy_runs, "accuracy")
        accuracy_dir, accuracy_info = _best(  # one of the system that was timed: MLPerf needs them the same
            accuracy_runs, "accuracy", lambda info, timed=performance_info: not _configuration_difference(timed, info)
        ) if performance_info else (None, None)
        if performance_info and accuracy_info:
            notes += [note for note in (
                _chosen_note(scenario, "performance", performance_dir, performance_info, performance_slot.newest),
                _chosen_note(scenario, "accuracy", accuracy_dir, accuracy_info, accuracy_slot.newest)) if note]
            runs.append(_with_test01(ScenarioRuns(scenario, performance_dir, accuracy_dir, performance_info,
                                                  accuracy_info), Slot(base, TEST)))
        elif performance_info and any_accuracy_info:
            difference = _configuration_difference(performance_info, any_accuracy_info)
            missing[scenario] = (f"`{make_command('accuracy', scenario, performance_info, build_dir)}`, the "
                                 f"performance run's system ({difference})")
        elif performance_info:
            missing[scenario] = _complete_with("accuracy", scenario, performance_info, build_dir)
        elif any_accuracy_info:
            missing[scenario] = (f"`{make_command('perf', scenario, any_accuracy_info, build_dir)}` "
                                 "(its accuracy run exists)")
    return runs, missing, notes


def _complete_with(target: str, scenario: str, info: dict, build_dir: Path) -> str:
    if info["model_is_random"]:
        return (f"`make download` or MODEL=<a real model>, then `make all SCENARIOS={scenario}`: its performance "
                "run used random weights, which an accuracy run refuses")
    return f"`{make_command(target, scenario, info, build_dir)}` (its performance run exists)"


def _with_test01(runs: ScenarioRuns, slot: Slot) -> ScenarioRuns:
    """Attach the scenario's newest TEST01 if it finished after both runs it checked."""
    tests = slot.runs()
    if not tests:
        return runs
    problem = ""
    for test_dir in tests:
        info = _read_info(test_dir / "performance" / "run_1")
        if info is None or not all((test_dir / name).is_file() for name in VERIFY_FILES):
            problem = problem or "did not finish"
        elif info["start_utc"] < max(runs.performance_info["end_utc"], runs.accuracy_info["end_utc"]):
            problem = problem or "is older than the runs it checks"
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


@dataclass
class Selection:
    """What a submission of one system is made of: complete scenarios, and the half-done ones left out."""

    runs: list[ScenarioRuns]
    incomplete: dict[str, str]  # scenario -> the command that completes it
    notes: list[str]  # a better earlier run chosen over a newer one, and the like


def names_model(info: dict, model: str) -> bool:
    """MODEL as a run's model name (its folder under BUILD/logs), or as the path make perf was given: the SCC
    flow passes the same MODEL= to every step."""
    if info["model_name"] == model:
        return True
    given = Path(model).expanduser()
    if info.get("model_is_random") or not given.exists():
        return False
    source = (Path(info["working_directory"]) / info["model_source"]).resolve()
    return given.resolve() in (source, source.parent)  # a checkpoint's folder names the model.pytorch in it


def find_runs(build_dir: Path, model: str | None = None, backend: str | None = None,
              precision: str | None = None) -> Selection:
    """Scenarios with both a performance and an accuracy run of one model, backend and configuration.

    By default the newest configuration that has a complete scenario: a later quick run of another
    backend or precision does not hide a finished pair.
    """
    logs = build_dir / "logs"
    candidates: dict[tuple[str, str, str], str] = {}  # (model, backend, configuration) -> newest end time
    other_data = False  # runs on generated data or another featurisation: never part of a submission
    seen: set[str] = set()  # models with runs here, named when none is the one asked for
    for info_path in logs.glob("*/*/*/*/*/**/run_info.json"):
        info = _read_info(info_path.parent)
        seen.add(info["model_name"])
        if (info["data"], info["seq_len"], info["doc_stride"]) != ("squad", MAX_SEQ_LENGTH, DOC_STRIDE):
            other_data = True
        elif (model is None or names_model(info, model)) and (backend is None or info["backend"] == backend) \
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
        there = f" (its runs are of MODEL={', '.join(sorted(seen))})" if seen and model else ""
        raise HarnessError(f"no runs found under {logs}{' for ' + wanted if wanted else ''}{there}; "
                           "run `make perf` and `make accuracy` first")
    newest_first = sorted(candidates, key=candidates.get, reverse=True)
    newest = "/".join(newest_first[0])
    runs, missing, notes = _scenario_runs(logs, newest_first[0], build_dir)
    if not runs:
        newest_missing = missing
        for chosen in newest_first[1:]:
            runs, missing, notes = _scenario_runs(logs, chosen, build_dir)
            if runs:
                break
        else:
            raise HarnessError(f"no scenario of {newest} has both runs; run "
                               + (", ".join(newest_missing.values()) if newest_missing
                                  else "`make perf` and `make accuracy`"))
        notes.insert(0, f"packaging {'/'.join(chosen)}, the newest runs with a complete scenario; the later "
                        f"{newest} runs have none (choose with make submission BACKEND=... PRECISION=...)")
    return Selection(runs, missing, notes)
