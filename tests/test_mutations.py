"""The hand-made mutations (tests/mutations.py) must still find the code they break: moved code leaves none stale."""

import pytest

from tests.mutations import MUTATIONS, REPO


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_finds_its_code(name):
    path, code, _broken, tests = MUTATIONS[name]
    assert code in (REPO / path).read_text(), f"{name}: its code is no longer in {path}; point it where it moved"
    assert all((REPO / word).is_file() for word in tests.split() if word.endswith(".py")), name
