"""The blocking :class:`Connection`: aioice's documented API as plain calls.

A :class:`Connection` is a thin skin over the facade core
(:mod:`syncice._facade`), whose operations return completions: this module
waits on them, with the caller's ``timeout=``. The sans-IO
:class:`~syncice.ice.IceAgent` and the sockets belong to the shared worker
thread (:mod:`syncice._worker`, :mod:`syncice._session`) once gathering
starts. Two things never hop threads: :meth:`Connection.send` writes to the
selected pair's socket directly (the worker publishes the route as one
immutable object), and :meth:`Connection.recv` takes a datagram that the
worker queued in the connection's inbox (:mod:`syncice._inbox`) at once,
or, finding none, reads the sockets itself while it waits, when the worker
has lent them to it (the hand-over is :mod:`syncice._inbox`'s).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._appview import (
    AnyEvent,
    describe,
)
from ._checklist import PairStats
from ._extensions import Extensions, run_here, wait
from ._facade import ConnectionCore, TransportPolicy, check_timeout
from ._gather_options import GatherOptions
from ._trickle import follow
from .candidate import Candidate
from .exceptions import IceTimeoutError
from .ice import IceConfig

if TYPE_CHECKING:
    import ssl

__all__ = ["Connection", "TransportPolicy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long close() waits at most for TURN allocations to be released.
_RELEASE_WAIT = 5.0
# A timeout= below this needs no more checking than being a plain number.
_SHORT_ENOUGH = min(3600.0, threading.TIMEOUT_MAX)


class Connection(Extensions):
    """An ICE connection for a single media stream, with blocking calls.

    The parameters are aioice's, with the same defaults; the keyword-only ones
    after them are syncice's extensions.

    What the peer signals goes into :attr:`remote_username` (its
    ``ice-ufrag``), :attr:`remote_password` (its ``ice-pwd``) and
    :attr:`remote_is_lite` (``True`` for an ICE-lite peer, ``a=ice-lite``: a
    full agent then takes the controlling role, RFC 8445 §6.1.1); set them
    before :meth:`connect`. Two counters are syncice extensions:
    :attr:`send_drops`, datagrams that :meth:`send` and :meth:`sendto`
    dropped because the socket buffer was full (UDP never blocks the
    caller), and :attr:`recv_drops`, datagrams dropped because the receive
    queue was full (8192 that no :meth:`recv` took).

    :param ice_controlling: whether the local peer has the controlling role.
    :param components: the number of components.
    :param stun_server: the address of the STUN server, or ``None``.
    :param turn_server: the address of the TURN server, or ``None``.
    :param turn_username: the username for the TURN server.
    :param turn_password: the password for the TURN server.
    :param turn_ssl: whether to use TLS for the TURN server (with
        ``turn_transport="tcp"``): ``True`` verifies its certificate against
        the default trust store (``SSL_CERT_FILE`` works), or pass an
        :class:`ssl.SSLContext` of your own.
    :param turn_transport: the transport for the TURN server, ``"udp"`` or ``"tcp"``.
    :param use_ipv4: whether to use IPv4 candidates.
    :param use_ipv6: whether to use IPv6 candidates.
    :param transport_policy: the transport policy.
    :param local_username: the local username, or ``None`` for a random one.
    :param local_password: the local password, or ``None`` for a random one.
    :param local_addresses: the addresses to gather host candidates on (loopback
        allowed), instead of every interface's except loopback and link-local.
    :param config: timing constants and bounds (:class:`~syncice.ice.IceConfig`).
    :param mdns_host_candidates: show each host candidate with a random
        ``<uuid>.local`` name instead of its address (one name per local
        address), which this process answers mDNS queries for, and hide the
        related address of server-reflexive and relay candidates
        (draft-ietf-mmusic-mdns-ice-candidates). Off by default.
    :param ice_lite: be an ICE-lite agent (RFC 8445 §2.5, :doc:`/guides/lite`;
        also ``IceConfig(ice_lite=True)``): host candidates only (servers
        given are not used), always controlled, it answers checks and sends
        none; the full peer nominates. Off by default.
    :param transports: the transports of host candidates: ``("udp",)`` by
        default, ``("udp", "tcp")`` or ``("tcp",)`` for ICE-TCP (RFC 6544,
        :doc:`/guides/ice-tcp`): a passive (listening) and an active TCP
        candidate per host address, and remote TCP candidates accepted
        (refused without ``"tcp"``).
    :param events: which events :meth:`get_event` returns: ``None``
        (aioice's: only :class:`~syncice.events.ConnectionClosed`) or
        ``"all"`` (every :class:`~syncice.events.IceEvent` too, in order:
        :doc:`/guides/events`).
    :param ice_servers: STUN and TURN servers as URLs (``"stun:host:port"``,
        ``"turn:host:port?transport=udp|tcp"``, ``"turns:host:port"``) or
        W3C ``RTCIceServer`` dicts or objects (``urls``, ``username``,
        ``credential``; aiortc's work as they are); a bare TURN URL takes
        ``turn_username`` and ``turn_password``. Used together with the
        old keywords' servers, which come first. Every server is asked at
        once, from every local address (TURN: one allocation per server,
        component and local address of its family); one server that is
        slow or dead delays no other (:doc:`/guides/servers`).
    :param port_range: ``(lo, hi)``: bind every socket (host, towards TURN
        servers) to a port from ``lo`` to ``hi``, both included;
        :meth:`gather_candidates` raises :exc:`OSError` (``EADDRINUSE``)
        when none is free (:doc:`/guides/binding`).
    :param interface_filter: ``filter(interface, address) -> bool``: whether
        to use a local address (called when gathering starts, before any
        bind).
    :param interfaces: use only the addresses of these interfaces.
    :param exclude_interfaces: never use the addresses of these interfaces.
        With any of the three, interfaces that are down are left out too.
    :raises TypeError: for an argument of the wrong type (the message names it).
    :raises ValueError: for a malformed username or password, server address or
        transport, a component count outside 1-256, ``local_addresses`` that
        are not addresses of this host or leave none to gather on, both
        address families turned off, the relay policy without a server, a
        malformed ``ice_servers`` URL (named) or ``port_range``.
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
            config=config,
            mdns_host_candidates=mdns_host_candidates,
            transports=transports,
            gather_options=GatherOptions(
                ice_servers=ice_servers,
                port_range=port_range,
                interface_filter=interface_filter,
                interfaces=interfaces,
                exclude_interfaces=exclude_interfaces,
            ),
            direct_reads=True,
            ice_lite=ice_lite,
            events=events,
        )
        self._name = core.name
        self.stun_server = core.stun_server
        self.turn_server = core.turn_server
        self.turn_username = turn_username
        self.turn_password = turn_password
        self.turn_ssl = turn_ssl
        self.turn_transport = turn_transport
        #: Whether the remote party is an ICE Lite implementation: set it
        #: before :meth:`connect` (a full agent then controls).
        self.remote_is_lite = False
        #: Remote username, which you need to set.
        self.remote_username: str | None = None
        #: Remote password, which you need to set.
        self.remote_password: str | None = None

    def __repr__(self) -> str:
        core = self.__dict__.get("_core")
        if core is None:  # the checks raised
            return self._name
        return describe(
            core.name,
            core.controlling,
            core.state,
            core.components,
            core.published.routes,
        )

    # --- properties ----------------------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether the local peer has the controlling role (a role conflict
        may change it). It may be set before :meth:`connect`."""
        return self._core.controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        core = self._core
        core.check_inherited()
        core.check_thread()
        core.set_role(bool(value)).result()

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates, automatically set by :meth:`gather_candidates`."""
        return list(self._core.local_candidates)

    @property
    def local_password(self) -> str:
        """Local password, set at construction time."""
        return self._core.local_password

    @property
    def local_username(self) -> str:
        """Local username, set at construction time."""
        return self._core.local_username

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates, which you need to populate using
        :meth:`add_remote_candidate`: those added, as given, but (as in
        aioice) none of an unknown type and none with the component,
        transport and address (IP spelled canonically) of one listed
        already."""
        return self._core.remote_candidates

    @property
    def send_drops(self) -> int:
        """Datagrams dropped by a full socket buffer in :meth:`sendto` (a
        syncice extension)."""
        return self._core.send_drops

    @property
    def recv_drops(self) -> int:
        """Datagrams dropped because the receive queue was full (a syncice
        extension)."""
        return self._core.recv_drops

    # --- the API -------------------------------------------------------------

    def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a remote candidate or signal end-of-candidates.

        To signal end-of-candidates, pass ``None``. Candidates may be added
        while :meth:`connect` runs (trickle ICE); it reports failure only after
        end-of-candidates. A candidate with the transport address of one
        already added is ignored. Returns at once.

        A candidate whose address is an mDNS name (``<label>.local``) is
        resolved by the worker first, then checked with the address it got;
        one that does not resolve within 2 s is dropped, with a warning
        (:mod:`syncice.mdns`). :attr:`remote_candidates` lists it as given,
        with its name.

        :param remote_candidate: a :class:`Candidate` instance or ``None``.
        :raises ValueError: after end-of-candidates.
        :raises TypeError: if the argument is not a :class:`Candidate` or ``None``.
        """
        self._core.add_remote_candidate(remote_candidate)

    def gather_candidates(
        self,
        *,
        timeout: float | None = None,
        on_candidate: Callable[[Candidate | None], object] | None = None,
    ) -> None:
        """Gather local candidates.

        You **must** call this method before calling :meth:`connect` (which
        may run, in another thread, while this one still gathers). It
        returns when host candidates are ready and every STUN and TURN
        server has answered or failed (at most ``gather_timeout``, 5 s by
        default). A TURN server that refuses us, is down or presents an
        untrusted certificate gives no relay candidate: the reason is logged
        (logger ``syncice.turn``) and gathering goes on.
        Calling it again waits for the same gathering.

        With ``on_candidate`` (trickle ICE, RFC 8838: :doc:`/guides/trickle`),
        each local candidate is passed to it as soon as it is gathered, host
        candidates first, then ``None`` (end-of-candidates) once gathering is
        done, and then this returns. The callback runs in the thread that
        called this method, never on the worker and under no lock of
        syncice, so it may call anything, this connection's methods too
        (but a blocking :meth:`connect` would hold up the candidates after
        it). An exception it raises comes out of this call (gathering goes
        on; a new call starts again from the first candidate). Every call
        delivers every candidate, from the first. The same as an iterator:
        :meth:`gather_candidates_iter`.

        :param timeout: at most this many seconds; ``None`` waits until done.
        :param on_candidate: called with each local candidate, then ``None``.
        :raises IceTimeoutError: if ``timeout`` ran out (gathering goes on).
        :raises ConnectionClosedError: if the connection is closed.
        """
        timeout = check_timeout(timeout)
        # Binding and name lookups run here, in the caller's thread, under
        # no lock: the worker never blocks.
        gathered = self._core.gather(run_here)
        if on_candidate is None:
            wait(gathered, timeout, "gather_candidates")
            return
        feed = self._core.published.candidates
        deadline = None if timeout is None else time.monotonic() + timeout
        index = 0
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            waiter = follow(feed, index, gathered)
            candidate = self._result(waiter, left, feed.withdraw, "gather_candidates")
            on_candidate(candidate)
            if candidate is None:
                return
            index += 1

    def get_default_candidate(self, component: int) -> Candidate | None:
        """Get the default local candidate for the specified component.

        As aioice does, the candidate of the component with the lowest
        priority (a relay candidate when there is one).

        :param component: the component whose default candidate is requested.
        :raises TypeError: if ``component`` is not an ``int``.
        """
        return self._core.default_candidate(component)

    def connect(self, *, timeout: float | None = None) -> None:
        """Perform the ICE handshake.

        Returns once a candidate pair was nominated on every component, and
        raises otherwise. Failure is only reported once end-of-candidates has
        been signalled with :meth:`add_remote_candidate`: until then more
        remote candidates may come. Calling it again after success returns at
        once; after :meth:`restart`, it starts the new checks and returns
        once they nominated a pair. It may be called while
        :meth:`gather_candidates` still runs in another thread (trickle ICE):
        the checks start with the local candidates gathered so far, and later
        ones join them.

        :param timeout: at most this many seconds; ``None`` waits until done.
        :raises NotConnectedError: (a :class:`ConnectionError`) if gathering
            was not performed or the remote username or password is missing.
        :raises NegotiationFailedError: (a :class:`ConnectionError`) if ICE failed.
        :raises ConnectionClosedError: if the connection was closed meanwhile.
        :raises IceTimeoutError: if ``timeout`` ran out (checks go on: call
            again, or :meth:`close`).
        """
        timeout = check_timeout(timeout)
        core = self._core
        done = core.connect(
            self.remote_username, self.remote_password, bool(self.remote_is_lite)
        )
        try:
            wait(done, timeout, "connect")
        except IceTimeoutError:
            if core.controlling:
                raise IceTimeoutError(
                    "connect timed out: no candidate pair has succeeded and been"
                    " nominated yet (checks go on)"
                ) from None
            raise IceTimeoutError(
                "connect timed out: the controlling peer has not nominated a pair"
                " yet (it must call connect() too; checks go on)"
            ) from None

    def close(self) -> None:
        """Close the connection.

        Releases its TURN allocations (a Refresh with a zero lifetime; this
        waits for the server's answer, at most 1 s) and its sockets, and
        wakes every call blocked in :meth:`connect`,
        :meth:`recv` or :meth:`recvfrom` with :class:`ConnectionClosedError`.
        Safe to call twice and from any thread.
        """
        closing = self._core.close()
        if closing is None or closing.released.done():
            if closing is not None:
                closing.finish()
            return
        if closing.inline:  # on the worker thread: it releases itself
            closing.released.add_done_callback(lambda _: closing.finish())
            return
        closing.closed.result()
        # TURN allocations are released (RFC 8656 §7) before their sockets
        # close: a round trip to the server, at most TurnConfig.close_timeout.
        with contextlib.suppress(concurrent.futures.TimeoutError):
            closing.released.result(_RELEASE_WAIT)
        closing.finish()

    def get_event(self, *, timeout: float | None = None) -> AnyEvent | None:
        """Return the next :class:`ConnectionEvent`, or ``None`` once the
        connection is closed and its :class:`ConnectionClosed` was returned.
        With ``events="all"``, also every :class:`~syncice.events.IceEvent`
        of the agent, in order, before it (:doc:`/guides/events`).

        :param timeout: at most this many seconds; ``None`` waits until an event.
        :raises IceTimeoutError: if ``timeout`` ran out.
        """
        timeout = check_timeout(timeout)
        core = self._core
        core.check_inherited()
        fut: concurrent.futures.Future[AnyEvent | None]
        fut = concurrent.futures.Future()
        core.events.wait(fut)
        return self._result(fut, timeout, core.events.withdraw, "get_event")

    def recv(self, *, timeout: float | None = None) -> bytes:
        """Receive the next datagram.

        The return value is a :class:`bytes` object representing the data
        received.

        :param timeout: at most this many seconds; ``None`` waits for data.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        :raises IceTimeoutError: if ``timeout`` ran out (nothing is consumed).
        """
        return self._receive(timeout)[0]

    def recvfrom(self, *, timeout: float | None = None) -> tuple[bytes, int]:
        """Receive the next datagram.

        The return value is a ``(bytes, component)`` tuple where ``bytes`` is a
        bytes object representing the data received and ``component`` is the
        component on which the data was received.

        :param timeout: at most this many seconds; ``None`` waits for data.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        :raises IceTimeoutError: if ``timeout`` ran out (nothing is consumed).
        """
        return self._receive(timeout)

    def recv_many(
        self, max_count: int = 64, *, timeout: float | None = None
    ) -> list[bytes]:
        """Receive the next datagrams: wait for one, as :meth:`recv` does,
        then take up to ``max_count - 1`` more that have arrived already,
        in order, without waiting for more.

        The first call lets the kernel glue what the sockets receive (Linux's
        GRO, ``UDP_GRO``), which the reads split again, so that a burst
        costs a few system calls (``IceConfig(batch_io=False)`` keeps one
        per datagram). An extension of syncice: aioice has no such method.

        :param max_count: at most this many datagrams, 1 or more.
        :param timeout: at most this many seconds for the first one;
            ``None`` waits for it.
        :raises: as :meth:`recv`; :class:`ValueError` (:class:`TypeError`)
            for a ``max_count`` below 1 (not an int).
        """
        return [data for data, _ in self.recvfrom_many(max_count, timeout=timeout)]

    def recvfrom_many(
        self, max_count: int = 64, *, timeout: float | None = None
    ) -> list[tuple[bytes, int]]:
        """Receive the next datagrams with their components, as
        :meth:`recv_many` does: a list of ``(bytes, component)``."""
        if isinstance(max_count, bool) or not isinstance(max_count, int):
            raise TypeError(f"max_count must be an int, not {type(max_count).__name__}")
        if max_count < 1:
            raise ValueError(f"max_count must be 1 or more, not {max_count}")
        timeout = check_timeout(timeout)
        try:
            return self._core.receive_many(max_count, timeout)
        except TimeoutError:
            raise IceTimeoutError("recv timed out") from None

    def _receive(self, timeout: float | None) -> tuple[bytes, int]:
        if timeout is not None and not (
            (type(timeout) is float or type(timeout) is int)
            and 0 <= timeout < _SHORT_ENOUGH
        ):
            timeout = check_timeout(timeout)
        try:
            # Taken from the queue, or read by this thread (syncice._inbox).
            return self._core.receive_wait(timeout)
        except TimeoutError:
            raise IceTimeoutError("recv timed out") from None

    def send(self, data: bytes) -> None:
        """Send a datagram on the first component.

        Never blocks: the datagram is written to the socket of the selected
        pair by the calling thread. A full socket buffer drops it (UDP).

        :param data: the data to be sent.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        """
        self._core.send(data, 1)

    def sendto(self, data: bytes, component: int) -> None:
        """Send a datagram on the specified component.

        :param data: the data to be sent.
        :param component: the component on which to send the data.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        :raises ComponentError: (a :class:`ConnectionError`, as aioice raises,
            and a :class:`ValueError`) if there is no such component.
        :raises ValueError: if the datagram is too large for the path.
        """
        self._core.send(data, component)

    def send_many(self, datagrams: Iterable[bytes], component: int = 1) -> None:
        """Send datagrams on a component, in order: what :meth:`sendto`
        does for each, in fewer system calls. On Linux, each run of
        datagrams of one size (the last may be shorter) goes to the kernel
        in one call (GSO, ``UDP_SEGMENT``); where that does not work (not
        Linux, a relayed pair, a device that refuses it) one call per
        datagram, found once and remembered (``IceConfig(batch_io=False)``
        forces it). Never blocks; a full socket buffer drops datagrams
        (counted in :attr:`send_drops`).

        An extension of syncice: aioice has no such method.

        :param datagrams: the data, one datagram each.
        :param component: the component on which to send them.
        :raises: as :meth:`sendto`; a datagram too large for the path raises
            :class:`ValueError` with those before it sent, none after it.
        """
        if not isinstance(datagrams, (list, tuple)):
            datagrams = list(datagrams)
        self._core.send_many(datagrams, component)

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> None:
        """Force the selected candidate pair.

        If the remote party does not support ICE, you should use this instead
        of calling :meth:`connect`. Gathering must have been performed and the
        remote candidate added.

        :raises ValueError: if no such candidates exist.
        :raises NotConnectedError: if gathering was not performed.
        """
        core = self._core
        core.check_thread()
        core.select_pair(component, local_foundation, remote_foundation).result()

    def get_stats(self) -> list[PairStats]:
        """Per-pair statistics: a syncice extension.

        Every candidate pair with its state, check counters, last RTT and the
        data sent and received on it, whichever thread moved it;
        :attr:`send_drops` counts datagrams dropped by a full socket buffer.
        """
        core = self._core
        core.check_thread()
        return core.stats().result()

    @property
    def socket_buffers(self) -> dict[tuple[str, int], tuple[int, int]]:
        """``(SO_RCVBUF, SO_SNDBUF)`` of each UDP socket, by its local
        ``(address, port)``, as the kernel reported them once bound (a
        syncice extension; ``{}`` before :meth:`gather_candidates`). Linux
        reports twice what was asked, capped by ``net.core.rmem_max`` and
        ``wmem_max``."""
        return dict(self._core.socket_buffers)
