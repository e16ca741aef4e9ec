"""aioice's asyncio API over syncice's worker thread.

``import syncice.asyncio as aioice`` gives a :class:`Connection` whose
coroutines are aioice's, run by the same engine as the blocking
:class:`syncice.Connection`: the one worker thread of the process owns the
sockets, timers and the sans-IO agent, and each ``await`` completes when the
worker resolves a future, bridged to the caller's event loop with
:meth:`asyncio.loop.call_soon_threadsafe`. No thread is parked per call, and
the event loop never blocks on the network.

The rules of the bridge:

- :meth:`Connection.recv` returns at once, with no thread hop, when a datagram
  is queued. Otherwise it leaves a waiter in the connection's inbox; the worker
  claims it (``set_running_or_notify_cancel``) and hands it the datagram, which
  reaches the loop in one ``call_soon_threadsafe``.
- A cancelled ``recv()`` loses nothing: a datagram the worker already handed
  to it goes back to the front of the inbox, so the next ``recv()`` gets it,
  in order.
- The blocking facade's direct reads (a ``recv()`` caller reading the socket
  itself) are off for these connections: they block their caller.
- Cancelling :meth:`Connection.connect` or :meth:`Connection.gather_candidates`
  cancels only the wait: the checks (or the gathering) go on, a later call
  waits for the same outcome, and :meth:`Connection.close` works.
- Several event loops, in several threads, may use connections at once: one
  worker serves them all. A connection's coroutines must be awaited on one
  loop at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from . import connection as _blocking
from ._checklist import PairStats
from ._worker import release_worker
from .candidate import Candidate
from .connection import TransportPolicy
from .events import ConnectionClosed, ConnectionEvent
from .exceptions import (
    ConnectionClosedError,
    IceTimeoutError,
    NotConnectedError,
)
from .ice import IceConfig

if TYPE_CHECKING:
    import ssl

__all__ = [
    "Candidate",
    "Connection",
    "ConnectionClosed",
    "ConnectionEvent",
    "TransportPolicy",
]

T = TypeVar("T")
Item = tuple[bytes, int]

# States of a _RecvWaiter.
_WAITING = 0  # in the inbox's waiters
_CLAIMED = 1  # the worker handed it an item (or an error), not yet on the loop
_DELIVERED = 2  # the item is the asyncio future's result
_WITHDRAWN = 3  # cancelled before the worker came
_RECLAIMED = 4  # cancelled after: its item went back to the inbox


def _bridge(source: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """An asyncio future of the running loop that follows ``source``.

    Cancelling it leaves ``source`` alone (unlike :func:`asyncio.wrap_future`):
    the worker's futures are shared by every caller. A loop closed before
    ``source`` is done is skipped without a word, not logged by the worker.
    """
    loop = asyncio.get_running_loop()
    target: asyncio.Future[T] = loop.create_future()

    def copy(_: object = None) -> None:
        if target.done():
            return
        if source.cancelled():
            target.cancel()
        elif (error := source.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(source.result())

    if source.done():
        copy()
        return target

    def done(_: concurrent.futures.Future[T]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(copy)

    source.add_done_callback(done)
    return target


class _LoopBridge:
    """Hands results from the worker to one event loop, in batches.

    The worker appends to :attr:`pending`; only the first append after the
    loop last drained it costs a ``call_soon_threadsafe`` (a wakeup write):
    while that drain is pending, the loop is awake or about to be, and the
    following results ride along.
    """

    __slots__ = ("__weakref__", "lock", "loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[_RecvWaiter] = []
        self.scheduled = False

    def post(self, waiter: _RecvWaiter) -> None:
        """Queue ``waiter._deliver()`` on the loop (any thread)."""
        with self.lock:
            self.pending.append(waiter)
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.run)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            with self.lock:
                self.pending.clear()
                self.scheduled = False

    def run(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
            self.scheduled = False
        for waiter in pending:
            waiter._deliver()


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge] = (
    weakref.WeakKeyDictionary()
)
_bridges_lock = threading.Lock()


def _loop_bridge(loop: asyncio.AbstractEventLoop) -> _LoopBridge:
    bridge = _bridges.get(loop)
    if bridge is None:
        with _bridges_lock:
            bridge = _bridges.get(loop)
            if bridge is None:
                bridge = _bridges[loop] = _LoopBridge(loop)
    return bridge


def _put_back(inbox: _blocking._Inbox, item: Item) -> None:
    """Return a datagram to the front of ``inbox`` (its lock held): to a
    waiter if there is one, else first in the queue, even if full."""
    waiters = inbox._waiters
    while waiters:
        waiter = waiters.popleft()
        if waiter.set_running_or_notify_cancel():
            waiter.set_result(item)
            return
    error = inbox._error
    if isinstance(error, ConnectionClosedError) and error.reason == "closed":
        return  # closed locally: queued datagrams were discarded
    inbox._items.appendleft(item)


class _RecvWaiter:
    """A ``recv()`` of the shim waiting in an inbox, as a future would.

    The worker calls :meth:`set_running_or_notify_cancel` then
    :meth:`set_result` or :meth:`set_exception`, with the inbox lock held;
    the rest runs on the event loop.
    """

    __slots__ = ("bridge", "error", "future", "inbox", "item", "loop", "state")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Item],
        inbox: _blocking._Inbox,
    ) -> None:
        self.loop = loop
        self.bridge = _loop_bridge(loop)
        self.future = future
        self.inbox = inbox
        self.state = _WAITING
        self.item: Item | None = None
        self.error: BaseException | None = None

    # --- worker thread, inbox lock held ---------------------------------------

    def set_running_or_notify_cancel(self) -> bool:
        return self.state == _WAITING and not self.loop.is_closed()

    def set_result(self, item: Item) -> None:
        self.item = item
        self.state = _CLAIMED
        self._schedule()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self.state = _CLAIMED
        self._schedule()

    def _schedule(self) -> None:
        self.bridge.post(self)

    # --- event loop -----------------------------------------------------------

    def _deliver(self) -> None:
        if self.state != _CLAIMED or self.future.done():
            # Cancelled: withdraw() puts the item back, in its turn.
            return
        self.state = _DELIVERED
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            assert self.item is not None
            self.future.set_result(self.item)

    def withdraw(self) -> None:
        """The ``recv()`` was cancelled: leave the inbox, or give back what
        the worker handed over."""
        inbox = self.inbox
        with inbox._lock:
            state = self.state
            if state == _WAITING:
                self.state = _WITHDRAWN
                with contextlib.suppress(ValueError):
                    inbox._waiters.remove(self)
                return
            if state not in (_CLAIMED, _DELIVERED):
                return
            # _DELIVERED: the future had its result when the task was cancelled.
            self.state = _RECLAIMED
            if self.item is not None:
                _put_back(inbox, self.item)


class Connection:
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
    ) -> None:
        self._conn = _blocking.Connection(
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
        )
        # A direct read parks its caller in poll(): never on an event loop.
        self._conn._published.direct_reads = False

    def __repr__(self) -> str:
        return repr(self._conn)

    # --- attributes and properties -------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether the local peer has the controlling role (a role conflict
        may change it). Settable before :meth:`connect`; once gathering has
        started, setting it takes one turn of the worker thread."""
        return self._conn.ice_controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        self._conn.ice_controlling = value

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates, automatically set by :meth:`gather_candidates`."""
        return self._conn.local_candidates

    @property
    def local_username(self) -> str:
        """Local username, set at construction time."""
        return self._conn.local_username

    @property
    def local_password(self) -> str:
        """Local password, set at construction time."""
        return self._conn.local_password

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates, which you need to populate using
        :meth:`add_remote_candidate`."""
        return self._conn.remote_candidates

    @property
    def remote_username(self) -> str | None:
        """Remote username, which you need to set."""
        return self._conn.remote_username

    @remote_username.setter
    def remote_username(self, value: str | None) -> None:
        self._conn.remote_username = value

    @property
    def remote_password(self) -> str | None:
        """Remote password, which you need to set."""
        return self._conn.remote_password

    @remote_password.setter
    def remote_password(self, value: str | None) -> None:
        self._conn.remote_password = value

    @property
    def remote_is_lite(self) -> bool:
        """Whether the remote party is an ICE Lite implementation."""
        return self._conn.remote_is_lite

    @remote_is_lite.setter
    def remote_is_lite(self, value: bool) -> None:
        self._conn.remote_is_lite = value

    @property
    def stun_server(self) -> tuple[str, int] | None:
        """The address of the STUN server, or ``None``."""
        return self._conn.stun_server

    @property
    def turn_server(self) -> tuple[str, int] | None:
        """The address of the TURN server, or ``None``."""
        return self._conn.turn_server

    @property
    def turn_username(self) -> str | None:
        """The username for the TURN server."""
        return self._conn.turn_username

    @property
    def turn_password(self) -> str | None:
        """The password for the TURN server."""
        return self._conn.turn_password

    @property
    def turn_ssl(self) -> bool | ssl.SSLContext:
        """Whether TLS is used for the TURN server (or the context)."""
        return self._conn.turn_ssl

    @property
    def turn_transport(self) -> str:
        """The transport for the TURN server, ``"udp"`` or ``"tcp"``."""
        return self._conn.turn_transport

    @property
    def send_drops(self) -> int:
        """Datagrams dropped by a full socket buffer (a syncice extension)."""
        return self._conn.send_drops

    @property
    def recv_drops(self) -> int:
        """Datagrams dropped because the receive queue was full (a syncice
        extension)."""
        return self._conn.recv_drops

    # --- the API -------------------------------------------------------------

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a remote candidate or signal end-of-candidates.

        To signal end-of-candidates, pass ``None``.

        :param remote_candidate: a :class:`Candidate` instance or ``None``.
        :raises ValueError: after end-of-candidates.
        :raises TypeError: if the argument is not a :class:`Candidate` or ``None``.
        """
        self._conn.add_remote_candidate(remote_candidate)

    async def gather_candidates(self) -> None:
        """Gather local candidates.

        You **must** call this coroutine before calling :meth:`connect`.
        Sockets are bound (and a STUN or TURN server given by name is
        resolved) in the calling thread; the answers of the servers are
        awaited without blocking the loop. Cancelling it leaves gathering to
        go on; calling it again waits for the same gathering.

        :raises ConnectionClosedError: if the connection is closed.
        """
        conn = self._conn
        try:
            conn.gather_candidates(timeout=0)  # starts it; never waits
            return
        except IceTimeoutError:
            pass
        session = conn._session()
        if session is None:  # closed meanwhile
            raise conn._closed_error()
        await _bridge(session.gathered)

    def get_default_candidate(self, component: int) -> Candidate | None:
        """Get the default local candidate for the specified component.

        :param component: the component whose default candidate is requested.
        """
        return self._conn.get_default_candidate(component)

    async def connect(self) -> None:
        """Perform the ICE handshake.

        Returns once a candidate pair was nominated on every component, and
        raises otherwise. Cancelling it cancels the wait only: the checks go
        on, and a later :meth:`connect` waits for their outcome (or returns
        at once if they succeeded); :meth:`close` stops them.

        :raises NotConnectedError: (a :class:`ConnectionError`) if gathering
            was not performed or the remote username or password is missing.
        :raises NegotiationFailedError: (a :class:`ConnectionError`) if ICE failed.
        :raises ConnectionClosedError: if the connection was closed meanwhile.
        """
        conn = self._conn
        try:
            conn.connect(timeout=0)  # checks the state, starts the checks
            return
        except IceTimeoutError:
            pass
        session = conn._session()
        if session is None:  # closed meanwhile
            raise conn._closed_error()
        await _bridge(session.connected)

    async def close(self) -> None:
        """Close the connection.

        Releases its TURN allocations (the worker waits for the server's
        answer, at most ``TurnConfig.close_timeout``, while this awaits) and
        its sockets, and wakes every :meth:`connect`, :meth:`recv` or
        :meth:`recvfrom` with :class:`ConnectionClosedError`. Safe to call
        twice; cancelling it leaves the closing to finish on the worker.
        """
        conn = self._conn
        with conn._lock:
            if conn._closed:
                return
            conn._closed = True
            session = conn._session()
            worker = conn._worker()
            conn._finalizer.detach()
            conn._session_box.clear()
            conn._worker_box.clear()
        if session is None or worker is None:
            published = conn._published
            conn._inbox.close(conn._closed_error(), discard=True)
            published.closed_reason = published.closed_reason or "closed"
            published.push_event(ConnectionClosed())
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def released() -> None:
            try:
                release_worker(worker)  # from the worker: it never joins
            finally:
                done.set_result(None)

        def close_and_release() -> None:
            try:
                session.close()
            finally:
                session.when_released(released)

        try:
            worker.post(close_and_release)
        except RuntimeError:  # a worker left behind by fork(): nothing to close
            return
        await _bridge(done)

    async def get_event(self) -> ConnectionEvent | None:
        """Return the next :class:`ConnectionEvent`, or ``None`` once the
        connection is closed and its :class:`ConnectionClosed` was returned."""
        conn = self._conn
        published = conn._published
        while True:
            with published.event_ready:
                if published.events:
                    event = published.events.popleft()
                    if isinstance(event, ConnectionClosed):
                        conn._closed_event_seen = True
                    return event
                if conn._closed_event_seen:
                    return None
                waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
                published.event_waiters.append(waiter)
            try:
                await _bridge(waiter)
            except asyncio.CancelledError:
                waiter.cancel()
                raise

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
        conn = self._conn
        inbox = conn._inbox
        items = inbox._items
        if items:
            # No lock: popleft() is atomic, and the worker may hold the lock
            # for a whole batch of reads, which the loop must not wait for.
            with contextlib.suppress(IndexError):
                return items.popleft()
        published = conn._published
        with inbox._lock:
            if items:
                return items.popleft()
            if inbox._error is not None:
                raise inbox._error
            if not (published.connected or conn._closed or published.closed_reason):
                raise NotConnectedError("Cannot receive data, not connected")
            loop = asyncio.get_running_loop()
            waiter = _RecvWaiter(loop, loop.create_future(), inbox)
            inbox._waiters.append(waiter)
        if inbox.watch is not None:
            inbox.watch.set()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            waiter.withdraw()
            raise

    async def send(self, data: bytes) -> None:
        """Send a datagram on the first component.

        Never waits: the datagram is written to the socket of the selected
        pair at once. A full socket buffer drops it (UDP).

        :param data: the data to be sent.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        """
        self._conn.sendto(data, 1)

    async def sendto(self, data: bytes, component: int) -> None:
        """Send a datagram on the specified component.

        :param data: the data to be sent.
        :param component: the component on which to send the data.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        :raises ValueError: if the datagram is too large for the path.
        """
        self._conn.sendto(data, component)

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> None:
        """Force the selected candidate pair.

        If the remote party does not support ICE, you should use this instead
        of calling :meth:`connect`. Takes one turn of the worker thread.

        :raises ValueError: if no such candidates exist.
        :raises NotConnectedError: if gathering was not performed.
        """
        self._conn.set_selected_pair(component, local_foundation, remote_foundation)

    async def get_stats(self) -> list[PairStats]:
        """Per-pair statistics: a syncice extension (see
        :meth:`syncice.Connection.get_stats`)."""
        conn = self._conn
        with conn._lock:
            session = conn._session()
            worker = conn._worker()
        if session is None or worker is None:
            return []
        try:
            fut = worker.submit(session.pair_stats)
        except RuntimeError:  # the worker stopped: closed meanwhile
            raise conn._closed_error() from None
        return await _bridge(fut)
