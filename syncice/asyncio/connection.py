"""The connection of :mod:`syncice.asyncio` (see the package's docstring
for the rules of its bridge to the event loop)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._aio_bridge import AsyncWaiter, bridge
from .._appview import AnyEvent
from .._facade import ConnectionCore, TransportPolicy
from .._gather_options import GatherOptions
from ..candidate import Candidate
from ..exceptions import ConnectionClosedError
from ..ice import IceConfig
from ._extensions import Extensions
from ._view import AppView

if TYPE_CHECKING:
    import ssl

__all__ = ["Connection"]

logger = logging.getLogger("syncice.asyncio")


class Connection(Extensions, AppView):
    """An ICE connection for a single media stream, with aioice's coroutines.

    The parameters are aioice's (and :class:`syncice.Connection`'s), with the
    same defaults; the keyword-only ones after them are syncice's extensions.

    :param ice_controlling: whether the local peer has the controlling role.
    :param components: the number of components.
    :param stun_server: the address of the STUN server, or ``None``.
    :param turn_server: the address of the TURN server, or ``None``.
    :param turn_username: the username for the TURN server.
    :param turn_password: the password for the TURN server.
    :param turn_ssl: whether to use TLS for the TURN server (with
        ``turn_transport="tcp"``), or an :class:`ssl.SSLContext`.
    :param turn_transport: the transport for the TURN server, ``"udp"`` or ``"tcp"``.
    :param use_ipv4: whether to use IPv4 candidates.
    :param use_ipv6: whether to use IPv6 candidates.
    :param transport_policy: the transport policy.
    :param local_username: the local username, or ``None`` for a random one.
    :param local_password: the local password, or ``None`` for a random one.
    :param local_addresses: the addresses to gather host candidates on (loopback
        allowed), instead of every interface's except loopback and link-local.
    :param config: timing constants and bounds (:class:`~syncice.ice.IceConfig`).
    :param mdns_host_candidates: show host candidates as random ``.local``
        names, as :class:`syncice.Connection` does. Off by default.
    :param ice_lite: be an ICE-lite agent, as :class:`syncice.Connection`
        is. Off by default.
    :param transports: ``("udp",)`` by default; with ``"tcp"``, ICE-TCP, as
        :class:`syncice.Connection` does.
    :param events: which events :meth:`get_event` returns: ``None``
        (aioice's) or ``"all"``, as :class:`syncice.Connection` has it.
    :param ice_servers: STUN and TURN servers as URLs or ``RTCIceServer``
        dicts or objects, as :class:`syncice.Connection` takes them.
    :param port_range: ``(lo, hi)`` for every socket it binds.
    :param interface_filter: ``filter(interface, address) -> bool``.
    :param interfaces: use only the addresses of these interfaces.
    :param exclude_interfaces: never use the addresses of these interfaces.
    :raises ValueError: as :class:`syncice.Connection` does.
    """

    def __init__(
        self,
        ice_controlling: bool,
        components: int = 1,
        stun_server: tuple[str, int] | None = None,
        turn_server: tuple[str, int] | None = None,
        turn_username: str | None = None,
        turn_password: str | None = None,
        turn_ssl: bool | ssl.SSLContext = False,
        turn_transport: str = "udp",
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        transport_policy: TransportPolicy = TransportPolicy.ALL,
        local_username: str | None = None,
        local_password: str | None = None,
        *,
        local_addresses: Sequence[str] | None = None,
        config: IceConfig | None = None,
        mdns_host_candidates: bool = False,
        ice_lite: bool = False,
        transports: Sequence[str] = ("udp",),
        events: str | None = None,
        ice_servers: Sequence[Any] | None = None,
        port_range: tuple[int, int] | None = None,
        interface_filter: Callable[[str, str], bool] | None = None,
        interfaces: Sequence[str] | None = None,
        exclude_interfaces: Sequence[str] | None = None,
    ) -> None:
        self._name = "Connection(?)"  # first: repr() works if the checks raise
        self._core = core = ConnectionCore(
            ice_controlling,
            components,
            stun_server,
            turn_server,
            turn_username,
            turn_password,
            turn_ssl,
            turn_transport,
            use_ipv4,
            use_ipv6,
            transport_policy,
            local_username,
            local_password,
            local_addresses=local_addresses,
            config=_aioice_config() if config is None else config,
            mdns_host_candidates=mdns_host_candidates,
            ice_lite=ice_lite,
            transports=transports,
            events=events,
            gather_options=GatherOptions(
                ice_servers=ice_servers,
                port_range=port_range,
                interface_filter=interface_filter,
                interfaces=interfaces,
                exclude_interfaces=exclude_interfaces,
            ),
        )
        self._name = core.name
        #: The address of the STUN server, or ``None``.
        self.stun_server = core.stun_server
        #: The address of the TURN server, or ``None``.
        self.turn_server = core.turn_server
        #: The username for the TURN server.
        self.turn_username = turn_username
        #: The password for the TURN server.
        self.turn_password = turn_password
        #: Whether TLS is used for the TURN server (or the context).
        self.turn_ssl = turn_ssl
        #: The transport for the TURN server, ``"udp"`` or ``"tcp"``.
        self.turn_transport = turn_transport
        #: Whether the remote party is an ICE Lite implementation.
        self.remote_is_lite = False
        #: Remote username, which you need to set.
        self.remote_username: str | None = None
        #: Remote password, which you need to set.
        self.remote_password: str | None = None
        #: The worker's turn that applies set_selected_pair(), until done.
        self._selecting: concurrent.futures.Future[None] | None = None

    # --- properties ------------------------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether the local peer has the controlling role (a role conflict
        may change it). Settable before :meth:`connect`; once gathering has
        started the worker applies it on its next turn, and meanwhile the
        property shows the role asked for."""
        return self._core.controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        with contextlib.suppress(ConnectionClosedError):  # closed: nothing to set
            self._core.set_role(bool(value))  # shown at once, applied in turn

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates, automatically set by :meth:`gather_candidates`."""
        return list(self._core.local_candidates)

    @property
    def local_username(self) -> str:
        """Local username, set at construction time."""
        return self._core.local_username

    @property
    def local_password(self) -> str:
        """Local password, set at construction time."""
        return self._core.local_password

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates, which you need to populate using
        :meth:`add_remote_candidate`: those added, as given, but (as in
        aioice) none of an unknown type and none with the component,
        transport and address (IP spelled canonically) of one listed
        already."""
        return self._core.remote_candidates

    # --- the API -------------------------------------------------------------

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a remote candidate or signal end-of-candidates.

        To signal end-of-candidates, pass ``None``.

        :param remote_candidate: a :class:`Candidate` instance or ``None``.
        :raises ValueError: after end-of-candidates.
        :raises TypeError: if the argument is not a :class:`Candidate` or ``None``.
        """
        self._core.add_remote_candidate(remote_candidate)

    async def gather_candidates(self) -> None:
        """Gather local candidates.

        You **must** call this coroutine before calling :meth:`connect`.
        Sockets are bound (and a STUN or TURN server given by name is
        resolved) in the loop's default executor; the answers of the servers
        are awaited from the worker. Cancelling it leaves gathering to go on;
        calling it again waits for the same gathering. To have each
        candidate as it is gathered: :meth:`gather_candidates_iter`.

        :raises ConnectionClosedError: if the connection is closed.
        """
        loop = asyncio.get_running_loop()
        await bridge(self._core.gather(lambda job: loop.run_in_executor(None, job)))

    def get_default_candidate(self, component: int) -> Candidate | None:
        """Get the default local candidate for the specified component.

        :param component: the component whose default candidate is requested.
        """
        return self._core.default_candidate(component)

    async def connect(self) -> None:
        """Perform the ICE handshake.

        Returns once a candidate pair was nominated on every component, and
        raises otherwise. It may run while gathering still does
        (:meth:`gather_candidates_iter` in another task): the checks start
        with the candidates gathered so far. Cancelling it cancels the wait
        only: the checks go
        on, and a later :meth:`connect` waits for their outcome (or returns
        at once if they succeeded); :meth:`close` stops them. After
        :meth:`restart` it starts the new checks and waits for them.

        :raises NotConnectedError: (a :class:`ConnectionError`) if gathering
            was not performed or the remote username or password is missing.
        :raises NegotiationFailedError: (a :class:`ConnectionError`) if ICE failed.
        :raises ConnectionClosedError: if the connection was closed meanwhile.
        """
        core = self._core
        done = core.connect(
            self.remote_username, self.remote_password, bool(self.remote_is_lite)
        )
        await bridge(done)

    async def close(self) -> None:
        """Close the connection.

        Releases its TURN allocations (the worker waits for the server's
        answer, at most ``TurnConfig.close_timeout``, while this awaits) and
        its sockets, and wakes every :meth:`connect`, :meth:`recv` or
        :meth:`recvfrom` with :class:`ConnectionClosedError`. Safe to call
        twice; cancelling it leaves the closing to finish on the worker.
        """
        closing = self._core.close(release_on_worker=True)
        if closing is not None:
            await bridge(closing.released)

    async def get_event(self) -> AnyEvent | None:
        """Return the next :class:`ConnectionEvent`, or ``None`` once the
        connection is closed and its :class:`ConnectionClosed` was returned
        (with ``events="all"``, every agent event too, in order)."""
        core = self._core
        core.check_inherited()
        waiter: AsyncWaiter[AnyEvent | None] = AsyncWaiter(core.events)
        core.events.wait(waiter)
        return await waiter.wait()

    async def recv(self) -> bytes:
        """Receive the next datagram.

        The return value is a :class:`bytes` object representing the data
        received. Cancelling it loses no datagram.

        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        """
        return (await self.recvfrom())[0]

    async def recvfrom(self) -> tuple[bytes, int]:
        """Receive the next datagram.

        The return value is a ``(bytes, component)`` tuple where ``bytes`` is a
        bytes object representing the data received and ``component`` is the
        component on which the data was received. Cancelling it loses no
        datagram.

        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        """
        core = self._core
        item = core.receive_nowait()
        if item is not None:
            return item
        waiter: AsyncWaiter[tuple[bytes, int]] = AsyncWaiter(core.inbox)
        core.receive(waiter)
        return await waiter.wait()

    async def send(self, data: bytes) -> None:
        """Send a datagram on the first component.

        Never waits, but right after :meth:`set_selected_pair` (for the
        worker to put that pair in place): the datagram is written to the
        socket of the selected pair at once. A full socket buffer drops it
        (UDP).

        :param data: the data to be sent.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        """
        if self._selecting is not None:
            await self._selected()
        self._core.send(data, 1)

    async def sendto(self, data: bytes, component: int) -> None:
        """Send a datagram on the specified component.

        :param data: the data to be sent.
        :param component: the component on which to send the data.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        :raises ValueError: if the datagram is too large for the path.
        """
        if self._selecting is not None:
            await self._selected()
        self._core.send(data, component)

    async def _selected(self) -> None:
        selecting = self._selecting
        if selecting is not None:
            with contextlib.suppress(ValueError):  # logged: the pair stays unset
                await bridge(selecting)
            if self._selecting is selecting:
                self._selecting = None

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> None:
        """Force the selected candidate pair.

        If the remote party does not support ICE, you should use this instead
        of calling :meth:`connect`. Returns at once: the worker puts the pair
        in place on its next turn, before anything sent after this call (a
        remote ``.local`` candidate not yet resolved then is logged, as a
        warning, and the pair not selected).

        :raises ValueError: if no such candidates exist.
        :raises NotConnectedError: if gathering was not performed.
        """
        core = self._core
        core.check_gathered()
        if not any(
            c.component == component and c.foundation == local_foundation
            for c in core.local_candidates
        ) or not any(
            c.component == component and c.foundation == remote_foundation
            for c in core.remote_candidates
        ):
            raise ValueError(
                f"no local candidate {local_foundation!r} and remote candidate "
                f"{remote_foundation!r} on component {component}"
            )
        fut = core.select_pair(
            component, local_foundation, remote_foundation, at_once=True
        )
        name = core.name

        def logged(fut: concurrent.futures.Future[None]) -> None:
            if not fut.cancelled() and (error := fut.exception()) is not None:
                logger.warning("%s set_selected_pair: %s", name, error)

        fut.add_done_callback(logged)
        self._selecting = fut


def _aioice_config() -> IceConfig:
    # Imported here: .ice imports this module for Connection.
    from .ice import default_config

    return default_config()
