"""The reliability suite (issue 12): kills, corruption, hostile input. See tests/reliability/tally.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.reliability.tally import Tally


@pytest.fixture
def trials(request) -> Iterator[Callable[[str], Tally]]:
    """``trials("kill -9: add")`` gives a tally for that kind; every tally is reported when the test ends."""
    made: list[Tally] = []

    def make(kind: str) -> Tally:
        made.append(Tally(kind))
        return made[-1]

    yield make
    for tally in made:
        request.node.user_properties.append(tally.as_property())
