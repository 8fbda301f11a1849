"""Laying out the submission tree from finished runs, in the current (v6) or the previous (v5) layout."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from common.errors import HarnessError
from harness.finished_runs import TEST, VERIFY_FILES, ScenarioRuns

BENCHMARK = "bert-99"
LAYOUTS = ("v6", "v5")
KEEP_BYTES = 4096  # the official tools keep the first and last 4 KB of the accuracy log
PRODUCT_ROOT = Path(__file__).resolve().parents[1]
PRODUCT_FILES = ("qsl", "sut", "accuracy", "harness", "configs", "submission", "benchmarks", "Makefile",
                 "pyproject.toml", "README.md")
MANIFEST = "SHA256SUMS"
TEST01_FILES = (*VERIFY_FILES,  # what the official checker reads of a TEST01 folder, and nothing else
                *(f"accuracy/{name}" for name in ("mlperf_log_accuracy.json", "accuracy.txt", "baseline_accuracy.txt",
                                                  "compliance_accuracy.txt")),
                "performance/run_1/mlperf_log_summary.txt", "performance/run_1/mlperf_log_detail.txt")
FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]*")


def folder_name(label: str, name: str) -> str:
    """A submitter or system id, which become folder names in the tree: no path separators, no '..'."""
    if not FOLDER_NAME.fullmatch(name) or ".." in name:
        raise HarnessError(f"{label} {name!r} is a folder name in the submission tree; use letters, digits, "
                           "spaces and . _ + - (set it with SUBMITTER= or in configs/submission.json)")
    return name


@dataclass
class TreePaths:
    """Where each piece of one scenario goes, relative to the tree's root."""

    performance: Path
    accuracy: Path
    measurements_dir: Path
    measurements_file: str
    compliance: Path  # the TEST01 folder


def org_dir(division: str, submitter: str) -> Path:
    return Path(division) / submitter


def scenario_paths(layout: str, division: str, submitter: str, system_id: str, scenario: str) -> TreePaths:
    org = org_dir(division, submitter)
    results = org / "results" / system_id / BENCHMARK / scenario
    if layout == "v6":
        return TreePaths(results / "performance" / "run_1", results / "accuracy", results, "measurements.json",
                         results / TEST)
    measurements = org / "measurements" / system_id / BENCHMARK / scenario
    return TreePaths(results / "performance" / "run_1", results / "accuracy", measurements,
                     f"{system_id}_{scenario}.json",  # the v5 checker wants <system>*_<scenario>.json
                     org / "compliance" / system_id / BENCHMARK / scenario / TEST)


def source_dir(layout: str, division: str, submitter: str) -> Path:
    return org_dir(division, submitter) / ("src" if layout == "v6" else "code")


def truncated(data: bytes) -> bytes:
    if len(data) <= 2 * KEEP_BYTES + 16:
        return data
    return data[:KEEP_BYTES] + b"\n\n...\n\n" + data[-KEEP_BYTES:]


def accuracy_hash(accuracy_txt: Path) -> str | None:
    for line in accuracy_txt.read_text().splitlines():
        if line.startswith("hash="):
            return line[len("hash="):].strip()
    return None


def weight_transformations(backend: str, precision: str) -> str:
    """What MLPerf's measurements.json asks: how the fp32 weights became what ran."""
    if precision == "fp32":
        return "none"
    if backend == "tensorrt" and precision in ("int8", "fp8"):
        return f"fp32 to {precision} with the scales of the ONNX model's quantize/dequantize nodes"
    if precision == "fp8":
        return "fp32 to fp8 e4m3, one scale per weight tensor; input scales calibrated on MLPerf's calibration set"
    if precision == "int8":
        return "fp32 to int8, one scale per output channel; input scales computed per batch (dynamic)"
    return f"fp32 to {precision} cast"


def measurements(runs: ScenarioRuns) -> dict:
    info = runs.accuracy_info
    source = info["model_source"]
    weights = "random initialisation (performance only)" if info["model_is_random"] else Path(source).name
    return {
        "input_data_types": info["input_data_type"],
        "retraining": "No",
        "starting_weights_filename": weights,
        "weight_data_types": info["precision"],
        "weight_transformations": weight_transformations(info["backend"], info["precision"]),
    }


def scenario_readme(runs: ScenarioRuns) -> str:
    perf, accuracy = runs.performance_info, runs.accuracy_info
    quick = [f"{name} run used COUNT={info['count']} (quick, not compliant)"
             for name, info in (("performance", perf), ("accuracy", accuracy)) if info.get("count")]
    lines = [f"# bert-99 {runs.scenario}", "",
             f"Model {perf['model_name']} ({perf['model_source']}), backend {perf['backend']}, "
             f"device {perf['device']}, precision {perf['precision']}, system settings `{perf['system']}`.", "",
             "Reproduce from the harness checkout:", "", "```bash",
             f"cd {perf['working_directory']}", perf["command"], accuracy["command"],
             *([runs.test01_info["command"]] if runs.test01_info else []), "```", ""]
    lines += [f"- {line}" for line in quick]
    return "\n".join(lines) + "\n"


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def copy_product_source(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PRODUCT_FILES:
        source = PRODUCT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        elif source.is_file():
            _copy(source, destination / name)


def write_manifest(root: Path) -> None:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(root).as_posix()}")
    (root / MANIFEST).write_text("\n".join(lines) + "\n")


def build_tree(root: Path, all_runs: list[ScenarioRuns], layout: str, division: str, submitter: str,
               system_id: str, description: dict) -> None:
    """Write the tree under `root` (replacing it) and a SHA256SUMS manifest beside the division folder, from runs
    submission/evidence.py has checked."""
    if layout not in LAYOUTS:
        raise HarnessError(f"unknown layout {layout}; choose one of {', '.join(LAYOUTS)}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    org = root / org_dir(division, submitter)
    (org / "systems").mkdir(parents=True)
    (org / "systems" / f"{system_id}.json").write_text(json.dumps(description, indent=2) + "\n")
    copy_product_source(root / source_dir(layout, division, submitter))
    for runs in all_runs:
        paths = scenario_paths(layout, division, submitter, system_id, runs.scenario)
        for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
            _copy(runs.performance_dir / name, root / paths.performance / name)
            _copy(runs.accuracy_dir / name, root / paths.accuracy / name)
        full_log = runs.accuracy_dir / "mlperf_log_accuracy.json"
        _copy(runs.accuracy_dir / "accuracy.txt", root / paths.accuracy / "accuracy.txt")
        (root / paths.accuracy / "mlperf_log_accuracy.json").write_bytes(truncated(full_log.read_bytes()))
        measurements_dir = root / paths.measurements_dir
        measurements_dir.mkdir(parents=True, exist_ok=True)
        (measurements_dir / paths.measurements_file).write_text(json.dumps(measurements(runs), indent=2) + "\n")
        _copy(runs.performance_dir / "user.conf", measurements_dir / "user.conf")
        (measurements_dir / "README.md").write_text(scenario_readme(runs))
        if runs.test01_dir is not None:
            for name in TEST01_FILES:
                if (runs.test01_dir / name).is_file():  # a failed test may lack some: the checker says which
                    _copy(runs.test01_dir / name, root / paths.compliance / name)
    write_manifest(root)
