"""The one table of make variables (common/variables.py) against everything made from it: the Makefile's
pass-through, every command's flags, `make help` and the reference page."""

import argparse
import importlib
import re
import subprocess

import pytest

from common import variables
from common.variables import VARIABLES, takes

COMMANDS = {  # make target -> (module with parser(), subcommand)
    "perf": ("harness.__main__", "perf"), "accuracy": ("harness.__main__", "accuracy"),
    "compliance": ("harness.__main__", "compliance"), "features": ("harness.__main__", "features"),
    "download": ("harness.__main__", "download"), "submission": ("submission.__main__", None),
    "scale": ("benchmarks.scale", None), "sweep": ("benchmarks.sweep.__main__", None),
    "bench": ("benchmarks.bench", None),
    "profile": ("benchmarks.batch_profile", None), "train": ("train.__main__", None),
    "train-compare": ("benchmarks.train_compare", None), "train-bench": ("benchmarks.train_trainer", None),
    "pretrain-sweep": ("benchmarks.pretrain_sweep", None),
    "device-check": ("benchmarks.device_check", None),
}


def command_parser(target: str) -> argparse.ArgumentParser:
    module, subcommand = COMMANDS[target]
    parser = importlib.import_module(module).parser()
    if subcommand:
        parser = next(action for action in parser._actions
                      if isinstance(action, argparse._SubParsersAction)).choices[subcommand]
    return parser


def test_generated_files_are_up_to_date():
    assert variables.MAKEFILE_INCLUDE.read_text() == variables.makefile_include(), \
        "variables.mk is stale: python -m common.variables write"
    assert variables.REFERENCE_PAGE.read_text() == variables.reference_page(), \
        "docs/reference/variables.md is stale: python -m common.variables write"


def test_every_target_with_flags_has_a_command():
    assert set(variables.targets()) == set(COMMANDS)


@pytest.mark.parametrize("target", sorted(COMMANDS))
def test_command_flags_are_the_tables(target):
    """A command takes a flag for each variable its target passes, with the table's help, and no other flag of
    a make variable: a variable renamed or added in one place only fails here."""
    parser = command_parser(target)
    flags = {option: action for action in parser._actions for option in action.option_strings}
    table = {variable.option: variable for variable in VARIABLES
             if variable.flag is not None and takes(variable, target)}
    assert set(table) <= set(flags), sorted(set(table) - set(flags))
    variable_flags = {variable.option for variable in VARIABLES if variable.flag is not None}
    own_flags = {"bench": {"--precisions"}}.get(target, set())  # bench's GPU precisions, not make sweep's PRECISIONS
    assert set(flags) & variable_flags - own_flags <= set(table), sorted(set(flags) & variable_flags - set(table))
    for option, variable in table.items():
        assert variable.notes.get(target, variable.help) in flags[option].help, (target, option)


@pytest.mark.parametrize("target", sorted(COMMANDS))
def test_make_passes_every_variable_to_its_command(target, tmp_path):
    """`make -n TARGET VAR=value ...` hands each of the target's variables to the command as its flag."""
    given = {variable.name: ("1" if variable.kind == "switch" else f"v{index}")
             for index, variable in enumerate(VARIABLES) if variable.flag is not None and takes(variable, target)}
    words = [f"{name}={value}" for name, value in given.items()]
    result = subprocess.run(["make", "-n", "--no-print-directory", target, "PYTHON=python3", *words],
                            capture_output=True, text=True, cwd=variables.REPO)
    assert result.returncode == 0, result.stderr
    command = result.stdout
    for variable in VARIABLES:
        if variable.name not in given:
            continue
        value = given[variable.name]
        if variable.kind == "switch":
            assert re.search(rf"{variable.option}(\s|$)", command), (target, variable.name)
        else:
            assert re.search(rf'{variable.option} "?{value}"?(\s|$)', command), (target, variable.name, command)


def test_a_switch_takes_only_0_or_1():
    result = subprocess.run(["make", "-n", "perf", "PYTHON=python3", "TRACE=yes"], capture_output=True, text=True,
                            cwd=variables.REPO)
    assert result.returncode != 0 and "TRACE=yes: give 1 (on) or 0 (off)" in result.stderr


def test_make_help_and_the_reference_page_name_every_variable():
    help_text = subprocess.run(["make", "help", "PYTHON=python3"], capture_output=True, text=True,
                               cwd=variables.REPO, check=True).stdout
    page = variables.REFERENCE_PAGE.read_text()
    for variable in VARIABLES:
        assert re.search(rf"\b{variable.name}\b", help_text), variable.name
        assert f"| `{variable.name}` |" in page, variable.name
