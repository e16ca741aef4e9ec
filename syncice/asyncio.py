"""aioice's asyncio API over syncice's worker thread.

``import syncice.asyncio as aioice`` gives a :class:`Connection` whose
coroutines are aioice's, run by the same engine as the blocking
:class:`syncice.Connection`: the one worker thread of the process owns the
sockets, timers and the sans-IO agent, and each ``await`` completes when the
worker resolves a future, bridged to the caller's event loop with
:meth:`asyncio.loop.call_soon_threadsafe`. No thread is parked per call, and
the event loop never waits: not for the network, not for the worker thread.

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
  loop at a time. A loop that is gone leaves nothing behind here.

What the loop never waits for, and how:

- Binding sockets and resolving server names (:meth:`Connection.gather_candidates`)
  run in the loop's default executor, under the blocking connection's lock.
  That thread is the only one besides the loop that takes the lock: while it
  runs, the calls that need the lock wait for it with ``await``
  (:meth:`~Connection.add_remote_candidate`, :meth:`~Connection.close`) or
  answer without it (:meth:`~Connection.connect` and
  :meth:`~Connection.set_selected_pair` raise :exc:`NotConnectedError`,
  :meth:`~Connection.get_stats` returns ``[]``, the role is set once it is
  done).
- Commands go to the worker without waiting for it (``Worker.post``): the
  worker runs them in order, so a later call sees their effect.
- The inbox lock (the worker holds it for a batch of reads) and the events'
  lock are only ever tried (``acquire(False)``); when taken, the worker (or,
  for events, an executor thread) does what the loop would have done.

``tests/loopguard.py`` checks all this: it fails a test whose loop thread
makes a blocking call or waits for a lock another thread holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import weakref
from collections import deque
from collections.abc import Callable, Sequence
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

logger = logging.getLogger(__name__)

T = TypeVar("T")
Item = tuple[bytes, int]

# States of a _RecvWaiter.
_WAITING = 0  # in the inbox's waiters
_CLAIMED = 1  # the worker handed it an item (or an error), not yet on the loop
_DELIVERED = 2  # the item is the asyncio future's result
_WITHDRAWN = 3  # cancelled before the worker came
_RECLAIMED = 4  # cancelled after: its item went back to the inbox


def _copy(source: concurrent.futures.Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


def _bridge(source: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """An asyncio future of the running loop that follows ``source``.

    Cancelling it leaves ``source`` alone (unlike :func:`asyncio.wrap_future`):
    the worker's futures are shared by every caller. ``source`` keeps only a
    weak reference to it, so a loop that is gone (and the futures of its
    cancelled waits) is not kept alive by a future that is never resolved; a
    loop closed before ``source`` is done is skipped without a word.
    """
    loop = asyncio.get_running_loop()
    target: asyncio.Future[T] = loop.create_future()
    if source.done():
        _copy(source, target)
        return target
    ref = weakref.ref(target)

    def done(source: concurrent.futures.Future[T]) -> None:
        target = ref()
        if target is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                target.get_loop().call_soon_threadsafe(_copy, source, target)

    source.add_done_callback(done)
    return target


def _settle(future: concurrent.futures.Future[T], fn: Callable[[], T]) -> None:
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _off_loop(fn: Callable[[], T]) -> concurrent.futures.Future[T]:
    """Run ``fn()`` in the running loop's default executor; its outcome.

    The future is a ``concurrent.futures`` one, so that it can be awaited
    (with :func:`_bridge`) from a later loop too.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    asyncio.get_running_loop().run_in_executor(None, _settle, future, fn)
    return future


class _LoopBridge:
    """Hands results from the worker to one event loop, in batches.

    The worker appends to :attr:`pending`; only the first append after the
    loop last drained it costs a ``call_soon_threadsafe`` (a wakeup write):
    while that drain is pending, the loop is awake or about to be, and the
    following results ride along. No lock: :meth:`run` clears
    :attr:`scheduled` before it drains, and :meth:`post` appends before it
    looks at it, so a result is either drained by the run in flight or
    schedules one.

    It holds its loop and the waiters weakly: ``_bridges`` maps each loop to
    its bridge, and must not keep the loop alive (nor must a waiter whose
    delivery a closed loop never ran).
    """

    __slots__ = ("__weakref__", "loop", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)
        self.pending: deque[weakref.ref[_RecvWaiter]] = deque()
        self.scheduled = False

    def post(self, waiter: _RecvWaiter) -> None:
        """Queue ``waiter._deliver()`` on the loop (any thread)."""
        self.pending.append(weakref.ref(waiter))
        if self.scheduled:
            return
        self.scheduled = True
        loop = self.loop()
        try:
            if loop is None:
                raise RuntimeError("the loop is gone")
            loop.call_soon_threadsafe(self.run)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self.pending.clear()
            self.scheduled = False

    def run(self) -> None:
        self.scheduled = False
        pending = self.pending
        while pending:
            waiter = pending.popleft()()
            if waiter is not None:
                waiter._deliver()


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge] = (
    weakref.WeakKeyDictionary()
)


def _loop_bridge(loop: asyncio.AbstractEventLoop) -> _LoopBridge:
    bridge = _bridges.get(loop)
    if bridge is None:
        # No lock: only this loop's thread adds this loop's key.
        bridge = _bridges.setdefault(loop, _LoopBridge(loop))
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


def _settle_withdrawn(limbo: deque[_RecvWaiter]) -> None:
    """Finish the withdrawals of cancelled ``recv()`` calls (their inbox's
    lock held), in the order they were cancelled. Each leaves ``limbo`` once
    done: while it is not empty, ``recv()`` takes nothing from the queue
    without the lock, since a datagram may be on its way back to the front."""
    while limbo:
        limbo[0]._withdraw_locked()
        limbo.popleft()


def _settle_later(inbox: _blocking._Inbox, limbo: deque[_RecvWaiter]) -> None:
    """On the worker: finish the withdrawals left for later (if the next
    ``recv()`` did not already)."""
    with inbox._lock:
        _settle_withdrawn(limbo)


def _enlist(ref: weakref.ref[_RecvWaiter]) -> None:
    """On the worker: what ``recv()`` does under the inbox lock, for a
    ``recv()`` that found the lock taken (the worker was reading a batch).

    The waiter is held weakly (its ``recv()`` holds it while it waits): the
    worker may keep its last command a while, which must not keep the loop.
    """
    waiter = ref()
    if waiter is None:
        return
    inbox = waiter.inbox
    with inbox._lock:
        _settle_withdrawn(waiter.limbo)
        if waiter.state != _WAITING:
            return  # withdrawn meanwhile
        if waiter.cancelled:
            waiter.state = _WITHDRAWN
        elif inbox._items:
            waiter.set_result(inbox._items.popleft())
        elif inbox._error is not None:
            waiter.set_exception(inbox._error)
        else:
            inbox._waiters.append(waiter)


class _RecvWaiter:
    """A ``recv()`` of the shim waiting in an inbox, as a future would.

    The worker calls :meth:`set_running_or_notify_cancel` then
    :meth:`set_result` or :meth:`set_exception`, with the inbox lock held;
    the rest runs on the event loop. :attr:`cancelled` is set by the loop
    without the lock: from then on the worker hands it nothing.
    """

    __slots__ = (
        "__weakref__",
        "bridge",
        "cancelled",
        "error",
        "future",
        "inbox",
        "item",
        "limbo",
        "loop",
        "state",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        inbox: _blocking._Inbox,
        limbo: deque[_RecvWaiter],
    ) -> None:
        self.loop = loop
        self.bridge = _loop_bridge(loop)
        self.future: asyncio.Future[Item] = loop.create_future()
        self.inbox = inbox
        self.limbo = limbo
        self.state = _WAITING
        self.cancelled = False
        self.item: Item | None = None
        self.error: BaseException | None = None

    # --- worker thread, inbox lock held ---------------------------------------

    def set_running_or_notify_cancel(self) -> bool:
        return (
            self.state == _WAITING and not self.cancelled and not self.loop.is_closed()
        )

    def set_result(self, item: Item) -> None:
        self.item = item
        self.state = _CLAIMED
        self.bridge.post(self)

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self.state = _CLAIMED
        self.bridge.post(self)

    # --- event loop -----------------------------------------------------------

    def _deliver(self) -> None:
        if self.state != _CLAIMED or self.future.done():
            # Cancelled: the withdrawal puts the item back, in its turn.
            return
        self.state = _DELIVERED
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            assert self.item is not None
            self.future.set_result(self.item)

    def withdraw(self) -> bool:
        """The ``recv()`` was cancelled: leave the inbox, or give back what
        the worker handed over. Now if the inbox lock is free; else later,
        under the lock (see :func:`_settle_withdrawn`), and this returns
        ``True``."""
        self.cancelled = True
        lock = self.inbox._lock
        if lock.acquire(False):
            try:
                _settle_withdrawn(self.limbo)
                self._withdraw_locked()
            finally:
                lock.release()
            return False
        self.limbo.append(self)
        return True

    # --- either thread, inbox lock held ----------------------------------------

    def _withdraw_locked(self) -> None:
        state = self.state
        if state == _WAITING:
            self.state = _WITHDRAWN
            with contextlib.suppress(ValueError):
                self.inbox._waiters.remove(self)
        elif state in (_CLAIMED, _DELIVERED):
            # _DELIVERED: the future had its result when the task was cancelled.
            self.state = _RECLAIMED
            if self.item is not None:
                _put_back(self.inbox, self.item)


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
        #: The gathering thread's outcome (sockets bound, names resolved,
        #: session made), while it may still run; see _gathering_busy().
        self._gathering: concurrent.futures.Future[None] | None = None
        #: A role set while that thread ran, applied once it is done.
        self._role_after_gathering: bool | None = None
        #: The worker's turn that applies set_selected_pair(), until done.
        self._selecting: concurrent.futures.Future[None] | None = None
        #: The remote candidates, as the blocking connection lists them.
        self._remote_candidates: list[Candidate] = []
        #: Cancelled recv() calls whose withdrawal waits for the inbox lock.
        self._limbo: deque[_RecvWaiter] = deque()

    def __repr__(self) -> str:
        # Works on a half-built object too (its constructor raised).
        conn = self.__dict__.get("_conn")
        return "Connection(?)" if conn is None else repr(conn)

    # --- attributes and properties -------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether the local peer has the controlling role (a role conflict
        may change it). Settable before :meth:`connect`; once gathering has
        started the worker applies it on its next turn, and meanwhile the
        property shows the role asked for."""
        return self._conn.ice_controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        value = bool(value)
        conn = self._conn
        if self._gathering_busy():
            conn._published.controlling = value
            self._role_after_gathering = value
            return
        self._set_role(value)

    def _set_role(self, value: bool) -> None:
        conn = self._conn
        session, worker = conn._session(), conn._worker()
        if session is None or worker is None:
            # Before gathering the agent is the caller's: the blocking setter
            # changes it under conn._lock, which nobody else holds now.
            conn.ice_controlling = value
            return
        published = conn._published
        published.controlling = value

        def set_role() -> None:
            # The worker says which role is in force (checks may have started).
            published.controlling = session.set_role(value)

        with contextlib.suppress(RuntimeError):  # the worker stopped: closed
            worker.post(set_role)

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
        return list(self._remote_candidates)

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

    # --- the gathering thread ------------------------------------------------

    def _gathering_busy(self) -> bool:
        """Whether the gathering thread may still hold ``conn._lock`` (the
        only thread besides the loop that takes it). Once it is done, applies
        the role set meanwhile."""
        job = self._gathering
        if job is None:
            return False
        if not job.done():
            return True
        self._gathering = None
        role, self._role_after_gathering = self._role_after_gathering, None
        if role is not None:
            self._set_role(role)
        return False

    def _start_gathering(self) -> concurrent.futures.Future[None]:
        """Bind the sockets and resolve the servers' names in the loop's
        default executor, as the blocking ``gather_candidates()`` does in its
        caller's thread: under ``conn._lock``, then the worker takes over."""
        conn = self._conn

        def start() -> None:
            with conn._lock:
                if conn._closed:
                    raise conn._closed_error()
                if conn._session() is None:
                    conn._start_gathering()

        job = self._gathering = _off_loop(start)
        loop = asyncio.get_running_loop()

        def done(_: object) -> None:
            # Applies a role set meanwhile, even if nobody awaits the job.
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(self._gathering_busy)

        job.add_done_callback(done)
        return job

    async def _after_gathering_thread(self) -> None:
        """Wait until the gathering thread has let ``conn._lock`` go."""
        job = self._gathering
        if job is not None and self._gathering_busy():
            with contextlib.suppress(Exception):  # the gathering's to report
                await _bridge(job)
            self._gathering_busy()

    # --- the API -------------------------------------------------------------

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a remote candidate or signal end-of-candidates.

        To signal end-of-candidates, pass ``None``.

        :param remote_candidate: a :class:`Candidate` instance or ``None``.
        :raises ValueError: after end-of-candidates.
        :raises TypeError: if the argument is not a :class:`Candidate` or ``None``.
        """
        await self._after_gathering_thread()
        conn = self._conn
        conn.add_remote_candidate(remote_candidate)
        self._remote_candidates = conn.remote_candidates

    async def gather_candidates(self) -> None:
        """Gather local candidates.

        You **must** call this coroutine before calling :meth:`connect`.
        Sockets are bound (and a STUN or TURN server given by name is
        resolved) in the loop's default executor; the answers of the servers
        are awaited from the worker. Cancelling it leaves gathering to go on;
        calling it again waits for the same gathering.

        :raises ConnectionClosedError: if the connection is closed.
        """
        conn = self._conn
        if conn._closed:
            raise conn._closed_error()
        job = self._gathering
        if job is None and conn._session() is None:
            job = self._start_gathering()
        if job is not None:
            try:
                await _bridge(job)
            finally:
                self._gathering_busy()
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
        if self._gathering_busy():
            if conn._closed:
                raise conn._closed_error()
            raise NotConnectedError("Local candidates gathering was not performed")
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
        if self._gathering_busy():
            # The gathering thread holds conn._lock: the blocking close()
            # waits for it, in the executor, and goes on if this is cancelled.
            await _bridge(_off_loop(conn.close))
            return
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
            if conn._closed_event_seen and not published.events:
                return None  # nothing comes after ConnectionClosed
            waiter: concurrent.futures.Future[None] = concurrent.futures.Future()
            ready = published.event_ready
            if ready.acquire(False):
                try:
                    found, event = self._next_event(waiter)
                finally:
                    ready.release()
            else:
                # The worker (or a blocking get_event() of another connection:
                # the lock is shared) holds it for a few statements. An
                # executor thread waits for it and enlists the waiter; the
                # event is taken here, so a cancelled call loses none.
                found, event = False, None
                await _bridge(_off_loop(functools.partial(self._enlist_event, waiter)))
            if found:
                return event
            try:
                await _bridge(waiter)
            except asyncio.CancelledError:
                waiter.cancel()
                raise

    def _next_event(
        self, waiter: concurrent.futures.Future[None]
    ) -> tuple[bool, ConnectionEvent | None]:
        # With published.event_ready held: the next event, or enlist waiter.
        conn = self._conn
        published = conn._published
        if published.events:
            event = published.events.popleft()
            if isinstance(event, ConnectionClosed):
                conn._closed_event_seen = True
            return True, event
        if conn._closed_event_seen:
            return True, None
        published.event_waiters.append(waiter)
        return False, None

    def _enlist_event(self, waiter: concurrent.futures.Future[None]) -> None:
        # In an executor thread: enlist waiter, or wake it if there is news.
        published = self._conn._published
        with published.event_ready:
            if published.events or self._conn._closed_event_seen:
                waiter.set_result(None)
            else:
                published.event_waiters.append(waiter)

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
        limbo = self._limbo
        if items and not limbo:
            # No lock: popleft() is atomic, and the worker may hold the lock
            # for a whole batch of reads, which the loop must not wait for.
            with contextlib.suppress(IndexError):
                return items.popleft()
        published = conn._published
        loop = asyncio.get_running_loop()
        lock = inbox._lock
        if lock.acquire(False):
            try:
                _settle_withdrawn(limbo)
                if items:
                    return items.popleft()
                if inbox._error is not None:
                    raise inbox._error
                if not (published.connected or conn._closed or published.closed_reason):
                    raise NotConnectedError("Cannot receive data, not connected")
                waiter = _RecvWaiter(loop, inbox, limbo)
                inbox._waiters.append(waiter)
            finally:
                lock.release()
        else:
            # The worker is reading a batch: it enlists us after, in order.
            if not (published.connected or conn._closed or published.closed_reason):
                raise NotConnectedError("Cannot receive data, not connected")
            worker = conn._worker()
            if worker is None:  # closed locally: the queue was discarded
                raise conn._closed_error()
            waiter = _RecvWaiter(loop, inbox, limbo)
            try:
                worker.post(functools.partial(_enlist, weakref.ref(waiter)))
            except RuntimeError:  # the worker stopped: closed meanwhile
                raise conn._closed_error() from None
        if inbox.watch is not None:
            inbox.watch.set()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.withdraw():
                # The worker holds the inbox lock: it finishes the withdrawal
                # after its batch, unless the next recv() does it first.
                worker = conn._worker()
                if worker is not None:
                    with contextlib.suppress(RuntimeError):  # stopped: closed
                        worker.post(functools.partial(_settle_later, inbox, limbo))
            raise

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
        if self._selecting is not None:
            await self._selected()
        self._conn.sendto(data, component)

    async def _selected(self) -> None:
        selecting = self._selecting
        if selecting is not None:
            await _bridge(selecting)
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
        conn = self._conn
        if conn._closed:
            raise conn._closed_error()
        session = conn._session()
        if self._gathering_busy() or session is None or not session.gathered.done():
            raise NotConnectedError("Local candidates gathering was not performed")
        if not any(
            c.component == component and c.foundation == local_foundation
            for c in conn.local_candidates
        ) or not any(
            c.component == component and c.foundation == remote_foundation
            for c in self._remote_candidates
        ):
            raise ValueError(
                f"no local candidate {local_foundation!r} and remote candidate "
                f"{remote_foundation!r} on component {component}"
            )
        worker = conn._worker()
        if worker is None:  # closed meanwhile
            raise conn._closed_error()
        name = repr(self)

        def select() -> None:
            try:
                session.select_pair(component, local_foundation, remote_foundation)
            except ValueError as exc:
                logger.warning("%s set_selected_pair: %s", name, exc)

        try:
            self._selecting = worker.submit(select)
        except RuntimeError:  # the worker stopped: closed meanwhile
            raise conn._closed_error() from None
        conn._published.connected = True

    async def get_stats(self) -> list[PairStats]:
        """Per-pair statistics: a syncice extension (see
        :meth:`syncice.Connection.get_stats`)."""
        if self._gathering_busy():
            return []  # no pair before the gathering thread is done
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
