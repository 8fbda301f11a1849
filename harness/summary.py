"""What a run's mlperf_log_summary.txt says, and the notices the harness adds to it."""

from __future__ import annotations

from pathlib import Path


def loadgen_result(summary: Path) -> str:
    """LoadGen's verdict line ("VALID"/"INVALID"), or "" when the summary has none (accuracy runs)."""
    if not summary.is_file():
        return ""
    for line in summary.read_text().splitlines():
        if line.startswith("Result is :"):
            return line.split(":", 1)[1].strip()
    return ""


def unmet_constraints(summary: Path) -> list[str]:
    """The summary's 'X satisfied : NO' lines: why LoadGen called a run INVALID."""
    if not summary.is_file():
        return []
    lines = [line.strip() for line in summary.read_text().splitlines()]
    return [line.split(" satisfied")[0] for line in lines if " satisfied" in line and line.endswith("NO")]


def quick_run_lines(count: int) -> list[str]:
    return [f"NOT COMPLIANT: quick run (COUNT={count}). LoadGen's minimum duration and sample count were",
            "lowered for this run; it cannot be submitted. Run with COUNT=full for a compliant run."]


def boxed(lines: list[str]) -> str:
    """A notice the console and mlperf_log_summary.txt both show, set off so it cannot be missed."""
    return "\n" + "=" * 78 + "\n" + "\n".join(lines) + "\n" + "=" * 78 + "\n"
