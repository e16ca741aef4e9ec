"""Fixtures of the interop matrix: the libnice check and the cell runner.

The runner queues every selected cell of ``test_matrix.py`` when the first
one asks for its result and runs them in the background, one at a time. Each
cell runs syncice, then aioice in syncice's place (the baseline), one after
the other.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import aioice.ice
import pytest

from tests.conftest import TurnService, missing_service
from tests.interop.matrix import Cell, Result, run_cell
from tests.interop.peers import SYSTEM_PYTHON, nice_available

#: Cells run at once. One: cells run side by side share syncice's worker
#: thread and the GIL, and on 2 cores that decided races a single
#: connection never meets (our TURN permission against the peer's first
#: check lost 10 runs of 10 in one cell at 4 cells at a time, and 1 of 6
#: alone). The whole matrix takes about 35 s instead of 11 s.
PARALLEL_CELLS = 1


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
def aioice_loopback_session() -> Iterator[None]:
    """aioice gathers on 127.0.0.1 only, for the whole session (the idea of
    the ``aioice_on_loopback`` fixture, at session scope)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        )
        yield


class MatrixRunner:
    """Runs cells on a thread pool, each once per side ("syncice", "aioice")."""

    def __init__(self, turn: TurnService, cells: list[Cell]) -> None:
        self.turn = turn
        self.pool = concurrent.futures.ThreadPoolExecutor(
            PARALLEL_CELLS, thread_name_prefix="interop-cell"
        )
        self.futures: dict[Cell, concurrent.futures.Future[tuple[Result, Result]]]
        self.futures = {}
        for cell in cells:
            self.submit(cell)

    def _run(self, cell: Cell) -> tuple[Result, Result]:
        return run_cell(cell, "syncice", self.turn), run_cell(cell, "aioice", self.turn)

    def submit(self, cell: Cell) -> None:
        if cell not in self.futures:
            self.futures[cell] = self.pool.submit(self._run, cell)

    def results(self, cell: Cell) -> tuple[Result, Result]:
        """syncice's and aioice's result for ``cell``."""
        self.submit(cell)
        return self.futures[cell].result(timeout=300)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def matrix(
    request: pytest.FixtureRequest,
    coturn: TurnService,
    aioice_loopback_session: None,
) -> Iterator[MatrixRunner]:
    """The runner, with every selected cell of the session already submitted
    (libnice cells only when libnice is there)."""
    have_nice = nice_available()[0]
    cells = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("cell") if callspec is not None else None
        if isinstance(cell, Cell) and (have_nice or cell.peer == "aioice"):
            cells.append(cell)
    runner = MatrixRunner(coturn, cells)
    yield runner
    runner.close()
