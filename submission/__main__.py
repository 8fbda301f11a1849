"""python -m submission: build, validate and package a bert-99 submission from finished runs (`make submission`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from common.cli import ArgumentParser, run_main
from common.errors import HarnessError
from common.variables import add_variables
from harness.finished_runs import TEST, ScenarioRuns, Selection, find_runs, make_command
from harness.settings import SCENARIOS, check_scenario
from submission.artifacts import STEM, description_markdown, run_script, summary, timestamps, write_tarball
from submission.check import Report, check_tree, required_scenarios
from submission.evidence import check_evidence
from submission.official import run_official_checker
from submission.system import SUBMISSION_CONFIG, load_submission_config, machine_description, with_workers
from submission.tree import build_tree, folder_name

CHECKER_VERSIONS = {"v6": "v6.1", "v5": "v5.1"}
ARTIFACT_SUFFIXES = (".tar.gz", "_summary.json", ".run", ".tstamps", ".md")
OFFICIAL_CSV = "_official_checker.csv"  # the official checker's summary, when it ran


def parser() -> argparse.ArgumentParser:
    result = ArgumentParser(
        prog="python -m submission",
        description="Package the newest performance + accuracy runs under build/logs as an MLPerf submission "
                    "tree, validate it, and write the SCC short artifacts (mlperf_submission_short.*).")
    add_variables(result, "submission", checker={"default": os.environ.get("MLPERF_INFERENCE_DIR") or None})
    result.add_argument("--out", type=Path, default=None, help="output folder (default <build-dir>/submission)")
    result.add_argument("--config", type=Path, default=SUBMISSION_CONFIG,
                        help="submitter, division and system description overrides (default configs/submission.json)")
    result.add_argument("--allow-invalid", action="store_true",
                        help="write the artifacts even when validation fails; they are labelled as failing")
    result.add_argument("--checker-version", default=None,
                        help="--version for the official checker (default v6.1 for --layout v6, v5.1 for v5)")
    result.add_argument("--check", type=Path, default=None, metavar="TREE",
                        help="only validate an existing (e.g. unpacked) tree and exit")
    result.add_argument("--required-scenarios", action="store_true",
                        help="print the scenarios the config's system_type needs (edge: Offline SingleStream; "
                             "datacenter: Offline Server) and exit; `make all` runs these by default")
    return result


def print_report(report: Report) -> None:
    for message in report.warnings:
        print(f"WARNING: {message}")
    for message in report.errors:
        print(f"ERROR: {message}")
    verdict = "PASSED" if report.passed else "FAILED"
    print(f"harness checker: {verdict} ({'short' if report.short else 'full'} mode, "
          f"{len(report.errors)} errors, {len(report.warnings)} warnings)")


def main() -> int:
    args = parser().parse_args()
    if args.check is not None:
        if not args.check.is_dir():
            problem = "is a file: unpack it and give" if args.check.is_file() else "no such folder; give"
            raise HarnessError(f"--check {args.check}: {problem} the unpacked tree, the folder that holds the "
                               "division folder (e.g. build/submission/mlperf_submission_short)")
        report = check_tree(args.check, args.layout, args.short)
        print_report(report)
        return 0 if report.passed else 1

    settings = load_submission_config(args.config)
    if args.required_scenarios:
        system_type = settings.get("system_type", "edge")
        scenarios = required_scenarios(system_type)
        if not scenarios:
            raise HarnessError(f"{args.config}: system_type {system_type!r} is neither edge nor datacenter; "
                               "set one, or give the scenarios (make all SCENARIOS=\"Offline Server\")")
        print(" ".join(scenarios))
        return 0
    runs = chosen_scenarios(find_runs(args.build_dir, args.model, args.backend, args.precision), args.scenarios)
    present = {scenario_runs.scenario for scenario_runs in runs}
    for scenario in required_scenarios(settings.get("system_type", "edge")):
        if scenario not in present:
            print(f"note: required scenario {scenario} has no runs of this system; to make them run "
                  f"`{make_command('accuracy', scenario, runs[0].performance_info, args.build_dir)}` and "
                  f"`{make_command('perf', scenario, runs[0].performance_info, args.build_dir)}`")
    for scenario_runs in runs:
        if scenario_runs.test01_problem:
            print(f"note: leaving out {scenario_runs.scenario}'s {TEST}, which {scenario_runs.test01_problem}; "
                  f"to include it run `make compliance SCENARIO={scenario_runs.scenario}`")
    identity = package_identity(args, settings, runs)
    check_evidence(runs, args.build_dir)
    out = args.out or args.build_dir / "submission"
    staging = out / f".{STEM}.building"  # everything is made here; the earlier package stays until it passes
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if not package(args, identity, runs, staging):
            failed = out / f"{STEM}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            (staging / STEM).rename(failed)
            print("no artifacts written: fix the errors above, or pass --allow-invalid to write them labelled "
                  "as failing" + ("" if args.short else "; quick runs need --short (make submission SHORT=1)")
                  + f". The tree that failed is in {failed}"
                  + (f"; the earlier package in {out} is as it was" if (out / f"{STEM}.tar.gz").exists() else ""))
            return 1
        install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for suffix in (*ARTIFACT_SUFFIXES, OFFICIAL_CSV):
        if (out / f"{STEM}{suffix}").exists():
            print(f"wrote {out / (STEM + suffix)}")
    return 0


def chosen_scenarios(selection: Selection, asked: list[str] | None) -> list[ScenarioRuns]:
    """The scenarios to package: those asked for (SCENARIOS=), each of which must be complete, or else every
    scenario this system has runs of; one that was run but cannot be packaged is never dropped without a word."""
    for note in selection.notes:
        print(f"note: {note}")
    present = {runs.scenario: runs for runs in selection.runs}
    wanted = [check_scenario(scenario) for scenario in asked] if asked else [*present, *selection.incomplete]
    lacking = [f"{scenario}: run {selection.incomplete.get(scenario) or 'its `make perf` and `make accuracy`'}"
               for scenario in wanted if scenario not in present]
    if lacking:
        hint = (f"; or package only the complete ones: make submission SCENARIOS=\"{' '.join(present)}\""
                if present and not asked else "")
        raise HarnessError(f"{'asked for' if asked else 'begun'} but without both a performance and an accuracy run "
                           f"of this system, so not packaged: {'; '.join(lacking)}{hint}")
    for scenario in present:
        if scenario not in wanted:
            print(f"note: leaving out {scenario}, which SCENARIOS does not name")
    return [present[scenario] for scenario in SCENARIOS if scenario in wanted]


def package_identity(args: argparse.Namespace, settings: dict, runs: list[ScenarioRuns]) -> tuple[str, str, str, dict]:
    """Division, submitter, system id and system description, checked before anything is written."""
    first = runs[0].performance_info
    division = "open" if args.short else settings.get("division", "closed")
    submitter = folder_name("submitter", args.submitter or settings.get("submitter") or "MyTeam")
    system_id = folder_name("system_id", settings.get("system_id")
                            or f"{Path(first['system']).stem}-{first['backend']}-{first['precision']}")
    description = with_workers(machine_description(division, submitter, settings.get("system_name") or system_id,
                                                   settings, first["backend"]), first)
    return division, submitter, system_id, description


def package(args: argparse.Namespace, identity: tuple[str, str, str, dict], runs: list[ScenarioRuns],
            staging: Path) -> bool:
    """The tree and the artifacts, in `staging`; False when validation failed (and --allow-invalid was not given)."""
    division, submitter, system_id, description = identity
    root = staging / STEM
    build_tree(root, runs, args.layout, division, submitter, system_id, description)
    print(f"submission tree: {args.out or args.build_dir / 'submission'}/{STEM} ({args.layout} layout, {division} "
          f"division, scenarios {', '.join(r.scenario for r in runs)})")
    if args.layout == "v5":
        print("note: LoadGen 6.x writes the v6.1 seeds, so a v5-layout tree can pass only in --short mode")
    report = check_tree(root, args.layout, args.short)
    print_report(report)
    if args.checker and not run_official_checker(args.checker, root, submitter,
                                                 args.checker_version or CHECKER_VERSIONS[args.layout], args.short,
                                                 staging / f"{STEM}{OFFICIAL_CSV}"):
        report.error("the official submission checker failed (its errors above)")
        print(f"ERROR: {report.errors[-1]}")
    if not report.passed and not args.allow_invalid:
        return False
    command = shlex.join([sys.executable, "-m", "submission", *sys.argv[1:]])
    commands = run_script(runs, command)
    entries = summary(runs, description, system_id, CHECKER_VERSIONS[args.layout], len(report.errors))
    write_tarball(root, staging / f"{STEM}.tar.gz")
    (staging / f"{STEM}_summary.json").write_text(json.dumps(entries, indent=2) + "\n")
    (staging / f"{STEM}.run").write_text(commands)
    (staging / f"{STEM}.tstamps").write_text(timestamps(runs))
    markdown = description_markdown(runs, description, entries, args.short, commands)
    if not report.passed:
        markdown = "**VALIDATION FAILED** (written with --allow-invalid):\n\n" + "\n".join(
            f"- {message}" for message in report.errors) + "\n\n" + markdown
    (staging / f"{STEM}.md").write_text(markdown)
    return True


def install(staging: Path, out: Path) -> None:
    """Put the new package in place of the earlier one: the tree by two renames, each artifact by one."""
    old_tree = out / f".{STEM}.old"
    shutil.rmtree(old_tree, ignore_errors=True)
    if (out / STEM).exists():
        (out / STEM).rename(old_tree)
    (staging / STEM).rename(out / STEM)
    for suffix in (*ARTIFACT_SUFFIXES, OFFICIAL_CSV):
        made = staging / f"{STEM}{suffix}"
        if made.exists():
            os.replace(made, out / made.name)
        else:  # the official checker's summary of an earlier package, which this one did not run
            (out / made.name).unlink(missing_ok=True)
    shutil.rmtree(old_tree, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
