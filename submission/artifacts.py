"""The SCC short artifacts: tarball, summary JSON, the commands (.run), timestamps (.tstamps), description (.md)."""

from __future__ import annotations

import json
import shlex
import tarfile
from pathlib import Path

from harness.detail_log import RESULT_KEYS, read_detail_log
from harness.finished_runs import TEST, ScenarioRuns, passed_test01
from harness.run_folders import is_compliant

STEM = "mlperf_submission_short"


def scenario_result(runs: ScenarioRuns) -> tuple[float | None, str]:
    key, unit, in_ns = RESULT_KEYS[runs.scenario]
    value = read_detail_log(runs.performance_dir / "mlperf_log_detail.txt").get(key)
    if value is None:
        return None, unit
    return (float(value) / 1e6 if in_ns else float(value)), unit


def f1_of(runs: ScenarioRuns) -> float | None:
    first_line = (runs.accuracy_dir / "accuracy.txt").read_text().splitlines()[0]
    return json.loads(first_line).get("f1")


def summary(all_runs: list[ScenarioRuns], description: dict, system_id: str, version: str,
            errors: int) -> dict:
    entries = {}
    for index, runs in enumerate(all_runs):
        result, unit = scenario_result(runs)
        f1 = f1_of(runs)
        info = runs.performance_info
        entries[str(index)] = {
            "Organization": description["submitter"], "Availability": description["status"],
            "Division": description["division"], "SystemType": description["system_type"],
            "SystemName": description["system_name"], "Platform": system_id, "Model": "bert-99",
            "MlperfModel": "bert-99", "Scenario": runs.scenario, "Result": result,
            "Accuracy": f"F1: {f1:.3f}" if f1 is not None else "F1: n/a", "Units": unit,
            "Location": f"{description['division']}/{description['submitter']}/results/{system_id}/bert-99/"
                        f"{runs.scenario}",
            "number_of_nodes": description["number_of_nodes"],
            "host_processor_model_name": description["host_processor_model_name"],
            "host_processors_per_node": description["host_processors_per_node"],
            "host_processor_core_count": description["host_processor_core_count"],
            "accelerator_model_name": description["accelerator_model_name"],
            "accelerators_per_node": description["accelerators_per_node"],
            "framework": description["framework"], "operating_system": description["operating_system"],
            "weight_data_types": info["precision"], "version": version, "inferred": 0, "has_power": False,
            "compliance": int(not noncompliance(runs)),
            "errors": errors,
            "notes": (f"backend {info['backend']} on {info['device']}, model {info['model_name']}"
                      + (f", quick run COUNT={info['count']}" if info.get("count") else "")),
        }
    return entries


def noncompliance(runs: ScenarioRuns) -> str:
    """Why a scenario's results are not compliant ("" when they are): quick runs, or an INVALID performance run."""
    infos = (("performance", runs.performance_info), ("accuracy", runs.accuracy_info))
    reasons = [f"{mode} COUNT={info['count']}" for mode, info in infos if info.get("count")]
    if not is_compliant(runs.performance_info, "performance") and not runs.performance_info.get("count"):
        reasons.append(f"LoadGen {runs.performance_info.get('loadgen_result') or 'gave no result'}")
    return ", ".join(reasons)


def run_infos(runs: ScenarioRuns) -> list[tuple[str, dict]]:
    """(mode, run_info) of each run behind one scenario's results, TEST01 included when packaged."""
    infos = [("performance", runs.performance_info), ("accuracy", runs.accuracy_info)]
    return infos + ([(TEST, runs.test01_info)] if runs.test01_info else [])


def run_script(all_runs: list[ScenarioRuns], submission_command: str) -> str:
    infos = sorted((info for runs in all_runs for _, info in run_infos(runs)), key=lambda info: info["start_utc"])
    lines = ["#!/usr/bin/env bash", "# The commands that produced these results, in the order they ran.", "set -e"]
    directory = None
    for info in infos:
        if info["working_directory"] != directory:
            directory = info["working_directory"]
            lines.append(f"cd {shlex.quote(directory)}")
        lines.append(info["command"])
    lines.append(submission_command)
    return "\n".join(lines) + "\n"


def timestamps(all_runs: list[ScenarioRuns]) -> str:
    rows = []
    for runs in all_runs:
        for mode, info in run_infos(runs):
            rows.append((info["start_utc"], f"{info['start_utc']} start {runs.scenario} {mode}"))
            rows.append((info["end_utc"], f"{info['end_utc']} end   {runs.scenario} {mode}"))
    return "\n".join(line for _, line in sorted(rows)) + "\n"


def description_markdown(all_runs: list[ScenarioRuns], description: dict, entries: dict, short: bool,
                         run_commands: str) -> str:
    lines = [f"# MLPerf Inference bert-99: {description['system_name']}", "",
             f"Submitter {description['submitter']}, {description['division']} division, "
             f"{'short (SCC) submission' if short else 'full submission'}.", "", "## Platform", ""]
    for name in ("number_of_nodes", "host_processor_model_name", "host_processors_per_node",
                 "host_processor_core_count", "host_memory_capacity", "accelerator_model_name",
                 "accelerators_per_node", "accelerator_memory_capacity", "operating_system", "sw_notes"):
        lines.append(f"- {name}: {description[name]}")
    lines += ["", "## Software", "", f"- framework: {description['framework']}",
              f"- other: {description['other_software_stack']}", "", "## Results", "",
              f"| scenario | result | units | accuracy | backend | device | precision | workers | compliant settings "
              f"| {TEST} |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for runs, entry in zip(all_runs, entries.values(), strict=True):
        info = runs.performance_info
        compliant = "yes" if entry["compliance"] else f"no ({noncompliance(runs)})"
        result = f"{entry['Result']:.3f}" if entry["Result"] is not None else "n/a"
        test01 = ("PASS" if passed_test01(runs.test01_dir) else "FAIL") if runs.test01_dir else "none"
        lines.append(f"| {runs.scenario} | {result} | {entry['Units']} | {entry['Accuracy']} | {info['backend']} "
                     f"| {info['device']} | {info['precision']} | {info.get('workers', 1)} | {compliant} | {test01} |")
    lines += ["", "## Reproduce", "", "```bash", run_commands.rstrip(), "```", ""]
    return "\n".join(lines)


def write_tarball(root: Path, path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for child in sorted(root.iterdir()):
            tar.add(child, arcname=child.name)
