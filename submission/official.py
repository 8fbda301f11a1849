"""The official MLPerf submission checker, run from an mlcommons/inference checkout as users run it.

A full submission is checked by the checker as it is. A short (SCC) one is checked the way MLC's
run-mlperf-inference-submission-checker does for short runs: on a copy of the checker whose performance
and accuracy checks always pass and whose Offline minimum of samples per query is 100, compliance
skipped. Everything else (system description, structure, files, measurements) is checked as usual.
The checkout itself is never modified, and the checker's summary.csv lands beside our artifacts.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common.errors import HarnessError

PACKAGE = Path("tools/submission/submission_checker")  # the checker since v6.0
SINGLE_FILE = Path("tools/submission/submission_checker.py")  # before
SHORT_RUN_EDITS = {  # MLC's edits for short runs: (file, {old: new})
    "constants.py": {"OFFLINE_MIN_SPQ = 24576": "OFFLINE_MIN_SPQ = 100"},
    "checks/performance_check.py": {"return is_valid": "return True", "return False": "return True"},
    "checks/accuracy_check.py": {"return is_valid": "return True", "return False": "return True"},
    SINGLE_FILE.name: {"OFFLINE_MIN_SPQ = 24576": "OFFLINE_MIN_SPQ = 100",
                       "return is_valid, res, inferred": "return True, res, inferred"},
}
SHOWN_LINES = 25


def _edit(path: Path, replacements: dict[str, str]) -> None:
    text = path.read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    path.write_text(text)


def checker_copy(checkout: Path, work: Path, short: bool) -> list[str]:
    """Copy the checker into `work` (with the short-run edits if `short`); the command that runs it there."""
    if (checkout / PACKAGE / "main.py").is_file():
        package = work / PACKAGE.name
        shutil.copytree(checkout / PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
        if short:
            for name, replacements in SHORT_RUN_EDITS.items():
                if (package / name).is_file():
                    _edit(package / name, replacements)
        return [sys.executable, "-m", f"{PACKAGE.name}.main"]
    if (checkout / SINGLE_FILE).is_file():
        shutil.copytree(checkout / SINGLE_FILE.parent, work / "submission",
                        ignore=shutil.ignore_patterns("__pycache__", "directory_structure_samples"))
        script = work / "submission" / SINGLE_FILE.name
        if short:
            _edit(script, SHORT_RUN_EDITS[SINGLE_FILE.name])
        return [sys.executable, str(script)]
    raise HarnessError(f"no submission checker in {checkout} (neither {PACKAGE}/main.py nor {SINGLE_FILE}); "
                       "give the root of an mlcommons/inference checkout (CHECKER=...)")


def run_official_checker(checkout: Path, root: Path, submitter: str, version: str, short: bool,
                         csv_path: Path) -> bool:
    """Run it on the tree under `root`; print its verdict and its last lines; True when it passed."""
    if not checkout.is_dir():
        raise HarnessError(f"CHECKER={checkout} is not a folder; give the root of an mlcommons/inference checkout")
    with tempfile.TemporaryDirectory(prefix="mlperf-checker-") as work:
        command = checker_copy(checkout.resolve(), Path(work), short)
        command += ["--input", str(root.resolve()), "--version", version, "--submitter", submitter,
                    "--csv", str(csv_path.resolve())]
        if short:
            command.append("--skip_compliance")
        mode = "short run, as MLC runs it: performance and accuracy checks waived" if short else "full rules"
        print(f"official checker ({mode}): {shlex.join(command)}")
        result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip().splitlines()
    errors = [line for line in output if " ERROR] " in line]
    passed = result.returncode == 0
    if passed:  # its counts and verdict; in short mode the errors it logged were waived
        print("\n".join([line for line in output if "Results=" in line or "SUMMARY" in line]
                        or output[-SHOWN_LINES:]))
    else:
        print("\n".join((errors or output)[-SHOWN_LINES:]))
    waived = f", {len(errors)} logged errors waived by the short-run rules" if passed and errors else ""
    print(f"official checker: {'PASSED' if passed else 'FAILED'} (exit code {result.returncode}{waived}; "
          f"its summary is {csv_path.name})")
    return passed
