"""The data path of :class:`~syncice._facade.ConnectionCore`: the one
receive and the one send of both facades, called from the application's
threads (the blocking facade's callers, the asyncio shim's loop).

A mixin, so that the facade core keeps its size; what it reads of the core
is listed under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._inbox import Inbox
from ._lifecycle import Phase
from ._mailbox import Waiter
from ._routes import Route
from .exceptions import ComponentError, ConnectionClosedError, NotConnectedError

if TYPE_CHECKING:
    from ._lifecycle import Lifecycle
    from ._session import Published, Session
    from .ice import IceAgent

Item = tuple[bytes, int]


class DataPath:
    """Receiving and sending application data, from the caller's thread."""

    #: Datagrams a full socket buffer dropped (set by the core's __init__).
    __slots__ = ("send_drops",)
    send_drops: int

    if TYPE_CHECKING:
        inbox: Inbox
        components: int
        _lifecycle: Lifecycle
        _agent: IceAgent
        _published: Published
        _closed: bool

        def check_inherited(self) -> None: ...

        def closed_error(self) -> ConnectionClosedError: ...

        def _session(self) -> Session | None: ...

    def receive(self, waiter: Waiter[Item]) -> None:
        """Hand ``waiter`` the next datagram (the one receive of both facades).

        :raises NotConnectedError: if the connection is not established.
        """
        if self._lifecycle.phase not in (Phase.CONNECTED, Phase.CLOSED):
            self.check_inherited()
            raise NotConnectedError("Cannot receive data, not connected")
        self.inbox.wait(waiter)

    def receive_wait(self, timeout: float | None) -> Item:
        """The next datagram, waited for in the calling thread, which may
        read the sockets itself meanwhile (the blocking facade's receive,
        :meth:`syncice._inbox.Inbox.get`).

        :raises NotConnectedError: if the connection is not established.
        :raises TimeoutError: (the builtin) if ``timeout`` ran out.
        :raises ConnectionClosedError: once closed and nothing is left.
        """
        phase = self._lifecycle.phase
        if phase is not Phase.CONNECTED and phase is not Phase.CLOSED:
            self.check_inherited()
            raise NotConnectedError("Cannot receive data, not connected")
        return self.inbox.get(timeout)

    def receive_many(self, most: int, timeout: float | None) -> list[Item]:
        """The next datagram, as :meth:`receive_wait`, and up to ``most - 1``
        more that are there already (:meth:`syncice._inbox.Inbox.get_many`).
        The first call asks the sockets' readers to let the kernel glue
        datagrams (GRO), unless ``IceConfig(batch_io=False)``.

        :raises: as :meth:`receive_wait`.
        """
        phase = self._lifecycle.phase
        if phase is not Phase.CONNECTED and phase is not Phase.CLOSED:
            self.check_inherited()
            raise NotConnectedError("Cannot receive data, not connected")
        self.want_glued_reads()
        return self.inbox.get_many(most, timeout)

    def want_glued_reads(self) -> None:
        """Ask the sockets' readers to let the kernel glue datagrams (GRO),
        unless ``IceConfig(batch_io=False)``: a batch receive is coming."""
        session = self._session()
        if session is not None and self._agent.config.batch_io:
            session.gro.wanted = True  # one assignment: read by the readers

    def receive_nowait(self) -> Item | None:
        """The next datagram if one is queued, else ``None``.

        :raises NotConnectedError: if the connection is not established.
        :raises ConnectionClosedError: once closed and nothing is left.
        """
        if self._lifecycle.phase not in (Phase.CONNECTED, Phase.CLOSED):
            self.check_inherited()
            raise NotConnectedError("Cannot receive data, not connected")
        return self.inbox.get_nowait()[1]

    def send(self, data: bytes, component: int) -> None:
        """Write a datagram on ``component``'s route, from the calling thread.

        :raises ComponentError: no such component.
        :raises NotConnectedError: no route yet.
        :raises ConnectionClosedError: if closed.
        :raises ValueError: if the datagram is too large for the path.
        """
        route = self._published.routes.get(component)
        if route is None:
            raise self._no_route(component)
        try:
            route.send(data)
        except OSError as exc:
            self._send_failed(route, data, exc)
        except RuntimeError:  # the worker stopped: closed meanwhile
            raise self.closed_error() from None

    def send_many(self, datagrams: Sequence[bytes], component: int) -> None:
        """Write ``datagrams`` in order on ``component``'s route, as
        :meth:`send` would one by one, in as few system calls as can be.

        :raises: as :meth:`send`; a datagram too large raises
            :class:`ValueError` with those before it sent, none after it.
        """
        route = self._published.routes.get(component)
        if route is None:
            raise self._no_route(component)
        rest = datagrams
        try:
            while rest:
                sent, error = route.send_many(rest)
                if error is None:
                    return
                self._send_failed(route, rest[sent], error)
                rest = rest[sent + 1 :]
        except RuntimeError:  # the worker stopped: closed meanwhile
            raise self.closed_error() from None

    def _no_route(self, component: int) -> Exception:
        """Why there is no route for ``component``."""
        if not isinstance(component, int) or not 1 <= component <= self.components:
            return ComponentError(
                f"component must be 1 to {self.components}, not {component!r}"
            )
        if self._closed or self._published.closed_reason is not None:
            return self.closed_error()
        return NotConnectedError("Cannot send data, not connected")

    def _send_failed(self, route: Route, data: bytes, exc: OSError) -> None:
        """``data`` could not be written on ``route``: a full buffer (or
        another passing error) drops it, UDP's way, counted; a datagram too
        large, or a socket closed meanwhile, is the caller's error."""
        if exc.errno == errno.EMSGSIZE:
            raise ValueError(f"datagram of {len(data)} bytes is too large") from None
        if not isinstance(exc, (BlockingIOError, InterruptedError)):
            sock = route.sock
            if sock is None or sock.fileno() == -1:
                raise self.closed_error() from None
        self.send_drops += 1
