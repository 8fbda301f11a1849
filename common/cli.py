"""What the command-line entry points share: one clear line and exit code 2 for a user error, and the options
several of them take (DATA and its companions, SHAPE)."""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from common.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]


ARGPARSE_VALUE = re.compile(r"^argument (--[\w-]+)(?:/\S+)?: invalid (\w+) value: '(.*)'$")
ARGPARSE_CHOICE = re.compile(r"^argument (--[\w-]+)(?:/\S+)?: invalid choice: '(.*)' \(choose from (.*)\)$")
KINDS = {"int": "a whole number", "float": "a number"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors name the make variable the user typed (WORKER_TIMEOUT=abc), then the flag, in one
    line and without the usage block; `variables` maps flags to their make variables (common.variables fills
    it: --backend-option is BACKEND_OPTIONS)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.variables: dict[str, str] = {}

    def variable(self, flag: str) -> str:
        return self.variables.get(flag, flag.lstrip("-").upper().replace("-", "_"))

    def error(self, message: str):
        if match := ARGPARSE_VALUE.match(message):
            flag, kind, value = match.groups()
            message = f"{self.variable(flag)}={value} is not {KINDS.get(kind, 'valid')} ({flag})"
        elif match := ARGPARSE_CHOICE.match(message):
            flag, value, choices = match.groups()
            message = (f"{self.variable(flag)}={value}: choose one of {choices.replace(chr(39), '')} ({flag})")
        else:
            message += f" (`{self.prog} --help` lists the options)"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def backend_options(pairs: list[str]) -> dict[str, str]:
    """--backend-option KEY=VALUE pairs (BACKEND_OPTIONS) as a dict."""
    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise HarnessError(f"backend option {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def run_main(main: Callable[[], int | None]) -> None:
    try:
        code = main()
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as error:
        print(f"error: {missing_module_fix(error.name or '')}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            where = f" writing {error.filename}" if error.filename else ""
            print(f"error: no space left on the device{where}: free some space there (df -h), or give BUILD= a "
                  "folder on a larger disk, and run again; what was being written is not a result", file=sys.stderr)
            sys.exit(2)
        if error.filename is None:  # not about a path the user gave: a real fault, keep its traceback
            raise
        print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: results of this run were not kept", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def missing_module_fix(name: str) -> str:
    """A module of this checkout is missing only when run from elsewhere; anything else is not installed."""
    if (REPO / "pyproject.toml").is_file() and (REPO / name.partition(".")[0]).is_dir():  # not site-packages
        script = Path(sys.argv[0]).resolve()
        module = ".".join(script.relative_to(REPO).with_suffix("").parts) if script.is_relative_to(REPO) else "..."
        return (f"module '{name}' is part of this repository but not importable from here; run from {REPO} "
                f"as a module: python -m {module}")
    return (f"Python module '{name}' is missing from {sys.executable}; run `make setup` (or, with PYTHON=..., "
            "install it there: LoadGen is `pip install mlcommons-loadgen` or a local wheel)")


def given_options(args: argparse.Namespace, names: Iterable[str]) -> list[str]:
    """The options among `names` that were given, as command-line words (--seq-len 128 ...): a driver's settings
    passed on to each command it runs (names the driver does not take count as not given)."""
    words: list[str] = []
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return words
