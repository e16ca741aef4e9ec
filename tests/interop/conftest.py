"""Fixtures of the interop matrix: the libnice and werift checks, the cell runner.

The runner runs a cell when its test asks, one cell at a time, and keeps the
results for the tests that look at a cell again. Each cell runs syncice, then
aioice in syncice's place (the baseline), one after the other. Cells used to
run four at a time on a thread pool: side by side they shared syncice's
worker thread and the GIL, and on 2 cores that decided races a single
connection never meets (our TURN permission against the peer's first check
lost 10 runs of 10 in one cell, and 1 of 6 alone). One at a time, the whole
matrix takes about 37 s instead of 11 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import aioice.ice
import pytest

from tests.conftest import TurnService, missing_service
from tests.interop.matrix import Cell, Result, run_cell
from tests.interop.peers import SYSTEM_PYTHON, nice_available, werift_available


@pytest.fixture(scope="session")
def libnice() -> None:
    """Skips the test (fails it under CI) when libnice cannot be loaded."""
    ok, why = nice_available()
    if not ok:
        missing_service(
            f"no libnice for {SYSTEM_PYTHON} ({why}): "
            "apt-get install -y python3-gi gir1.2-nice-0.1 libnice10"
        )


@pytest.fixture(scope="session")
def werift() -> None:
    """Skips the test (fails it under CI) when node or werift-ice is missing."""
    ok, why = werift_available()
    if not ok:
        missing_service(why)


@pytest.fixture(scope="session")
def aioice_loopback_session() -> Iterator[None]:
    """aioice gathers on 127.0.0.1 only, for the whole session (the idea of
    the ``aioice_on_loopback`` fixture, at session scope)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        )
        yield


class MatrixRunner:
    """Runs each cell once per side ("syncice", "aioice") and keeps the results."""

    def __init__(self, turn: TurnService) -> None:
        self.turn = turn
        self.done: dict[Cell, tuple[Result, Result]] = {}

    def results(self, cell: Cell) -> tuple[Result, Result]:
        """syncice's and aioice's result for ``cell``, run on first asking."""
        if cell not in self.done:
            self.done[cell] = (
                run_cell(cell, "syncice", self.turn),
                run_cell(cell, "aioice", self.turn),
            )
        return self.done[cell]

    def syncice_result(self, cell: Cell) -> Result:
        """syncice's result alone, for a cell without an aioice baseline
        (our side ICE-lite: aioice has no lite mode)."""
        if cell not in self.done:
            result = run_cell(cell, "syncice", self.turn)
            self.done[cell] = (result, result)
        return self.done[cell][0]


@pytest.fixture(scope="session")
def matrix(coturn: TurnService, aioice_loopback_session: None) -> MatrixRunner:
    """The runner."""
    return MatrixRunner(coturn)
