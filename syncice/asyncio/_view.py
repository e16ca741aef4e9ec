"""What an application sees of a :class:`syncice.asyncio.Connection`, beyond
aioice's API: ``async with``, :attr:`~AppView.state`, the selected pair,
the event drops, and the local candidates as they are gathered
(:meth:`~AppView.gather_candidates_iter`, trickle ICE). A mixin of the
connection, over the same facade core as :class:`syncice.Connection`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from .._aio_bridge import bridge
from .._appview import (
    ConnectionState,
    SelectedPair,
    check_component,
    describe,
    selected_from,
)
from .._trickle import follow
from ..candidate import Candidate

if TYPE_CHECKING:
    from .._facade import ConnectionCore

__all__ = ["AppView"]

V = TypeVar("V", bound="AppView")


class AppView:
    """The syncice extensions of :class:`syncice.asyncio.Connection`."""

    if TYPE_CHECKING:
        _core: ConnectionCore

        async def close(self) -> None: ...

    def __repr__(self) -> str:
        core = self.__dict__.get("_core")
        if core is None:  # the checks raised
            return "Connection(?)"
        return describe(
            core.name,
            core.controlling,
            core.state,
            core.components,
            core.published.routes,
        )

    async def __aenter__(self: V) -> V:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection (:meth:`close`), whatever ended the block."""
        await self.close()

    @property
    def state(self) -> ConnectionState:
        """Where the connection is (:attr:`syncice.Connection.state`)."""
        return self._core.state

    @property
    def event_drops(self) -> int:
        """Events dropped because the event queue was full (with
        ``events="all"``)."""
        return self._core.events.dropped

    async def selected_pair(self, component: int = 1) -> SelectedPair | None:
        """The selected pair of ``component``, or ``None``
        (:meth:`syncice.Connection.selected_pair`).

        :raises TypeError: if ``component`` is not an ``int``.
        :raises ComponentError: if there is no such component.
        """
        check_component(component, self._core.components)
        return selected_from(await bridge(self._core.stats()), component)

    async def gather_candidates_iter(self) -> AsyncIterator[Candidate | None]:
        """Gather local candidates, and yield each as soon as it is gathered
        (trickle ICE, RFC 8838: :doc:`/guides/trickle`): host candidates
        first, then server-reflexive and relay ones as their servers answer,
        then ``None`` (end-of-candidates) once gathering is done, and stop.
        ``async for candidate in conn.gather_candidates_iter():``.

        It starts gathering as :meth:`gather_candidates` does (which it
        replaces: either may be used, any number of times, and each
        iteration yields every candidate from the first).
        :meth:`connect` may run meanwhile, in another task: the checks
        start with the candidates gathered so far, and later ones join
        them. Leaving the loop early (or cancelling) leaves gathering to go
        on.

        :raises ConnectionClosedError: if the connection is closed (after
            the candidates gathered before it).
        :raises Exception: what :meth:`gather_candidates` raises when
            gathering fails (binding the sockets or resolving the servers).
        """
        core = self._core
        loop = asyncio.get_running_loop()
        gathered = core.gather(lambda job: loop.run_in_executor(None, job))
        feed = core.published.candidates
        index = 0
        while True:
            waiter = follow(feed, index, gathered)
            try:
                candidate = await bridge(waiter)
            except asyncio.CancelledError:
                feed.withdraw(waiter)
                raise
            yield candidate
            if candidate is None:
                return
            index += 1
