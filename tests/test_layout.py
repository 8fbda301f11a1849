"""The house's floors: a package imports only packages on floors below its own, so that every arrow of the
import graph points down (issue 30). Imports inside functions count too: they are arrows all the same."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = {  # ground first
    "common": 0, "configs": 0,
    "qsl": 1,
    "accuracy": 2,
    "sut": 3,
    "harness": 4,
    "submission": 5, "train": 5,
    "benchmarks": 6,
}


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names & set(FLOORS)


def upward_arrows() -> list[str]:
    arrows = []
    for package, floor in FLOORS.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for imported in imported_packages(path) - {package}:
                if FLOORS[imported] >= floor:
                    arrows.append(f"{path.relative_to(REPO)} imports {imported} (floor {FLOORS[imported]} "
                                  f">= {floor})")
    return arrows


def test_every_import_points_down():
    assert upward_arrows() == []


def test_every_package_has_a_floor():
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(FLOORS), packages - set(FLOORS)
