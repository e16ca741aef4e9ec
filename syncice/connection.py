"""The blocking :class:`Connection`: aioice's documented API as plain calls.

A :class:`Connection` is a facade. Its sans-IO :class:`~syncice.ice.IceAgent`
and its sockets belong to the shared worker thread (:mod:`syncice._worker`)
once gathering starts; the facade posts commands there and waits on futures.
Two things never hop threads: :meth:`Connection.send` writes to the selected
pair's socket directly (the worker publishes the route as one immutable
object), and :meth:`Connection.recv` takes datagrams from a bounded inbox the
worker fills.
"""

from __future__ import annotations

import concurrent.futures
import enum
import errno
import itertools
import logging
import secrets
import socket
import string
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import _gather
from ._checklist import PairStats
from ._worker import TimerHandle, Worker, acquire_worker, release_worker
from .candidate import Candidate
from .events import (
    ConnectionClosed,
    ConnectionEvent,
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceFailed,
    RoleChanged,
    SelectedPairChanged,
)
from .exceptions import (
    ConnectionClosedError,
    IceTimeoutError,
    NegotiationFailedError,
    NotConnectedError,
)
from .ice import IceAgent, IceConfig, validate_password, validate_username

__all__ = ["Connection", "TransportPolicy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Address = tuple[str, int]

#: How many datagrams the worker reads from one socket before serving others.
_READ_BATCH = 64
#: Bound of the receive queue of a connection, in datagrams.
INBOX_SIZE = 8192

_ids = itertools.count(1)
_ICE_CHARS = string.ascii_letters + string.digits + "+/"


class TransportPolicy(enum.Enum):
    """Which candidates to gather and check (RFC 9429 §3.5.3, aioice's enum)."""

    #: All candidates: host, server-reflexive and relay.
    ALL = 0
    #: Only relay candidates.
    RELAY = 1


def _random_string(length: int) -> str:
    return "".join(secrets.choice(_ICE_CHARS) for _ in range(length))


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be None or non-negative")
    return timeout


def _check_server(name: str, server: object) -> tuple[str, int] | None:
    if server is None:
        return None
    if (
        not isinstance(server, tuple)
        or len(server) != 2
        or not isinstance(server[0], str)
        or not isinstance(server[1], int)
        or not 0 < server[1] < 65536
    ):
        raise ValueError(f"{name} must be a (host, port) tuple")
    return (server[0], server[1])


class _Route:
    """Where data for one component goes; replaced, never changed."""

    __slots__ = ("addr", "sock")

    def __init__(self, sock: socket.socket, addr: Address) -> None:
        self.sock = sock
        self.addr = addr


class _Inbox:
    """A bounded queue of received datagrams with future-based waiters.

    The worker calls :meth:`put` and :meth:`close`; any thread calls
    :meth:`get`. A waiter that timed out is cancelled, and a cancelled waiter
    is never handed a datagram (``set_running_or_notify_cancel``), so no
    datagram is lost to a timeout.
    """

    __slots__ = ("_error", "_items", "_lock", "_maxlen", "_waiters", "dropped")

    def __init__(self, maxlen: int) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[bytes, int]] = deque()
        self._waiters: deque[concurrent.futures.Future[tuple[bytes, int]]] = deque()
        self._error: BaseException | None = None
        self._maxlen = maxlen
        self.dropped = 0

    def put(self, item: tuple[bytes, int]) -> None:
        with self._lock:
            waiters = self._waiters
            while waiters:
                waiter = waiters.popleft()
                if waiter.set_running_or_notify_cancel():
                    waiter.set_result(item)
                    return
            if len(self._items) >= self._maxlen:
                self.dropped += 1
                return
            self._items.append(item)

    def close(self, error: BaseException, *, discard: bool) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
            if discard:
                self._items.clear()
            waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if waiter.set_running_or_notify_cancel():
                waiter.set_exception(error)

    def waiter(self) -> concurrent.futures.Future[tuple[bytes, int]]:
        """A future for the next datagram: done at once if one is queued."""
        fut: concurrent.futures.Future[tuple[bytes, int]] = concurrent.futures.Future()
        with self._lock:
            if self._items:
                fut.set_result(self._items.popleft())
            elif self._error is not None:
                fut.set_exception(self._error)
            else:
                self._waiters.append(fut)
        return fut

    def get(self, timeout: float | None) -> tuple[bytes, int]:
        with self._lock:
            if self._items:
                return self._items.popleft()
            if self._error is not None:
                raise self._error
            fut: concurrent.futures.Future[tuple[bytes, int]] = (
                concurrent.futures.Future()
            )
            self._waiters.append(fut)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if fut.cancel():
                raise IceTimeoutError("recv timed out") from None
            return fut.result()


def _resolve(fut: concurrent.futures.Future[None], error: BaseException | None) -> None:
    if not fut.done():
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


class _Session:
    """The worker-thread half of a connection: agent, sockets, timer.

    Every method runs on the worker thread. An exception escaping a handler
    closes this connection with reason ``"internal error"``; the worker and
    the other connections go on.
    """

    def __init__(
        self,
        worker: Worker,
        agent: IceAgent,
        inbox: _Inbox,
        publish: _Published,
        name: str,
    ) -> None:
        self.worker = worker
        self.agent = agent
        self.inbox = inbox
        self.published = publish
        self.name = name
        self.sockets: dict[int, socket.socket] = {}
        self.timer: TimerHandle | None = None
        self.timer_at: float | None = None
        self.gathered: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.connected: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.closed = False
        self.send_errors = 0

    # --- commands (run on the worker) --------------------------------------

    def start_gathering(
        self,
        sockets: list[tuple[socket.socket, int]],
        stun_servers: list[Address],
        remote: list[Candidate | None],
    ) -> None:
        self._guard(self._start_gathering, sockets, stun_servers, remote)

    def _start_gathering(
        self,
        sockets: list[tuple[socket.socket, int]],
        stun_servers: list[Address],
        remote: list[Candidate | None],
    ) -> None:
        now = self.worker.clock.now()
        agent = self.agent
        for endpoint, (sock, component) in enumerate(sockets):
            self.sockets[endpoint] = sock
            addr = sock.getsockname()
            agent.add_host_candidate(endpoint, component, (addr[0], addr[1]))
            self.worker.add_reader(sock, self._reader(endpoint, sock))
        for candidate in remote:
            agent.add_remote_candidate(candidate, now)
        agent.gather(now, stun_servers)
        self.flush()

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        self._guard(self._add_remote_candidate, candidate)

    def _add_remote_candidate(self, candidate: Candidate | None) -> None:
        if not self.closed:
            self.agent.add_remote_candidate(candidate, self.worker.clock.now())
            self.flush()

    def connect(self, username: str, password: str, lite: bool) -> None:
        self._guard(self._connect, username, password, lite)

    def _connect(self, username: str, password: str, lite: bool) -> None:
        if self.closed:
            return
        agent = self.agent
        agent.set_remote_credentials(username, password)
        agent.remote_is_lite = lite
        if lite and not agent.controlling:
            # RFC 8445 §6.1.1: with a lite peer, the full agent controls.
            agent._switch_role(True)
        agent.connect(self.worker.clock.now())
        self.flush()

    def set_role(self, controlling: bool) -> None:
        if self.agent.state == "new" and self.agent.controlling != controlling:
            self.agent._switch_role(controlling)
            self.flush()

    def select_pair(self, component: int, local: str, remote: str) -> None:
        self.agent.set_selected_pair(component, local, remote)
        self.flush()

    def pair_stats(self) -> list[PairStats]:
        return self.agent.pair_stats()

    # --- I/O handlers --------------------------------------------------------

    def _reader(self, endpoint: int, sock: socket.socket) -> Callable[[], None]:
        def on_readable() -> None:
            try:
                self._read(endpoint, sock)
            except Exception:
                self._internal_error()

        return on_readable

    def _read(self, endpoint: int, sock: socket.socket) -> None:
        agent = self.agent
        receive = agent.receive_datagram
        put = self.inbox.put
        now = self.worker.clock.now()
        recvfrom = sock.recvfrom
        for _ in range(_READ_BATCH):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP errors reported on the socket: nothing to read here.
                continue
            got = receive(endpoint, data, (addr[0], addr[1]), now)
            if got is not None:
                put(got)
        if agent._outbox or agent._events or agent.get_timer() != self.timer_at:
            self.flush()

    def on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        try:
            self.agent.handle_timer(self.worker.clock.now())
            self.flush()
        except Exception:
            self._internal_error()

    def flush(self) -> None:
        """Send what the agent queued, dispatch its events, re-arm the timer."""
        agent = self.agent
        sockets = self.sockets
        for endpoint, data, addr in agent.datagrams_to_send():
            sock = sockets.get(endpoint)
            if sock is None:
                continue
            try:
                sock.sendto(data, addr)
            except OSError:
                self.send_errors += 1
        while (event := agent.next_event()) is not None:
            self._dispatch(event)
            if self.closed:
                return
        at = agent.get_timer()
        if at != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.timer_at = at
            if at is not None:
                self.timer = self.worker.call_at(at, self.on_timer)

    def _dispatch(self, event: object) -> None:
        published = self.published
        if isinstance(event, SelectedPairChanged):
            pair = self.agent.selected[event.component]
            routes = dict(published.routes)
            routes[event.component] = _Route(
                self.sockets[pair.endpoint], pair.remote_addr
            )
            published.routes = routes
            published.selected = dict(published.selected)
            published.selected[event.component] = (event.local, event.remote)
        elif isinstance(event, IceCompleted):
            published.connected = True
            _resolve(self.connected, None)
        elif isinstance(event, IceFailed):
            _resolve(
                self.connected,
                NegotiationFailedError(f"ICE negotiation failed: {event.reason}"),
            )
        elif isinstance(event, GatheringCompleted):
            published.local_candidates = tuple(self.agent.local_candidates)
            _resolve(self.gathered, None)
        elif isinstance(event, RoleChanged):
            published.controlling = event.controlling
        elif isinstance(event, ConsentExpired):
            self.close("consent expired")

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self._internal_error()

    def _internal_error(self) -> None:
        logger.exception("%s internal error, closing the connection", self.name)
        self.close("internal error")

    def close(self, reason: str = "closed") -> None:
        """Release the sockets and wake every waiter (idempotent)."""
        if self.closed:
            return
        self.closed = True
        error = ConnectionClosedError(f"Connection closed ({reason})", reason)
        self.agent.close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for sock in self.sockets.values():
            self.worker.remove_reader(sock)
            sock.close()
        self.published.routes = {}
        self.published.closed_reason = reason
        self.inbox.close(error, discard=reason == "closed")
        _resolve(self.gathered, error)
        _resolve(self.connected, error)
        self.published.push_event(ConnectionClosed())


class _Published:
    """What the worker shows the facade: each field replaced in one assignment."""

    def __init__(self, controlling: bool) -> None:
        self.routes: dict[int, _Route] = {}
        self.selected: dict[int, tuple[Candidate, Candidate]] = {}
        self.local_candidates: tuple[Candidate, ...] = ()
        self.controlling = controlling
        self.connected = False
        self.closed_reason: str | None = None
        self.events: deque[ConnectionEvent] = deque()
        self.event_ready = threading.Condition(threading.Lock())

    def push_event(self, event: ConnectionEvent) -> None:
        with self.event_ready:
            self.events.append(event)
            self.event_ready.notify_all()


def _finalize(worker_box: list[Worker], session_box: list[_Session]) -> None:
    """Close a connection that was dropped without close()."""
    if worker_box and session_box:
        worker, session = worker_box[0], session_box[0]
        worker_box.clear()
        session_box.clear()
        worker.post(session.close)
        release_worker(worker)


class Connection:
    """An ICE connection for a single media stream, with blocking calls.

    The parameters are aioice's, with the same defaults; the keyword-only ones
    after them are syncice's extensions.

    :param ice_controlling: whether the local peer has the controlling role.
    :param components: the number of components.
    :param stun_server: the address of the STUN server, or ``None``.
    :param turn_server: the address of the TURN server, or ``None``.
    :param turn_username: the username for the TURN server.
    :param turn_password: the password for the TURN server.
    :param turn_ssl: whether to use TLS for the TURN server.
    :param turn_transport: the transport for the TURN server, ``"udp"`` or ``"tcp"``.
    :param use_ipv4: whether to use IPv4 candidates.
    :param use_ipv6: whether to use IPv6 candidates.
    :param transport_policy: the transport policy.
    :param local_username: the local username, or ``None`` for a random one.
    :param local_password: the local password, or ``None`` for a random one.
    :param local_addresses: the addresses to gather host candidates on (loopback
        allowed), instead of every interface's except loopback and link-local.
    :param config: timing constants and bounds (:class:`~syncice.ice.IceConfig`).
    :raises ValueError: for a malformed username or password, server address or
        transport, fewer than 1 component, or the relay policy without a server.
    """

    def __init__(
        self,
        ice_controlling: bool,
        components: int = 1,
        stun_server: tuple[str, int] | None = None,
        turn_server: tuple[str, int] | None = None,
        turn_username: str | None = None,
        turn_password: str | None = None,
        turn_ssl: bool = False,
        turn_transport: str = "udp",
        use_ipv4: bool = True,
        use_ipv6: bool = True,
        transport_policy: TransportPolicy = TransportPolicy.ALL,
        local_username: str | None = None,
        local_password: str | None = None,
        *,
        local_addresses: Sequence[str] | None = None,
        config: IceConfig | None = None,
    ) -> None:
        if not isinstance(components, int) or not 1 <= components <= 256:
            raise ValueError("components must be an int from 1 to 256")
        if turn_transport not in ("udp", "tcp"):
            raise ValueError('turn_transport must be "udp" or "tcp"')
        if not isinstance(transport_policy, TransportPolicy):
            raise ValueError("transport_policy must be a TransportPolicy")
        self.stun_server = _check_server("stun_server", stun_server)
        self.turn_server = _check_server("turn_server", turn_server)
        if (
            transport_policy is TransportPolicy.RELAY
            and self.stun_server is None
            and self.turn_server is None
        ):
            raise ValueError("The relay transport policy needs a STUN or TURN server")
        if local_username is None:
            local_username = _random_string(4)
        if local_password is None:
            local_password = _random_string(22)
        validate_username(local_username)
        validate_password(local_password)
        if local_addresses is not None:
            # Validate now, so that a mistake shows at construction.
            _gather.select_addresses(local_addresses, use_ipv4=True, use_ipv6=True)
            local_addresses = list(local_addresses)

        self.turn_username = turn_username
        self.turn_password = turn_password
        self.turn_ssl = turn_ssl
        self.turn_transport = turn_transport
        #: Whether the remote party is an ICE Lite implementation.
        self.remote_is_lite = False
        #: Remote username, which you need to set.
        self.remote_username: str | None = None
        #: Remote password, which you need to set.
        self.remote_password: str | None = None

        self._id = next(_ids)
        self._name = f"Connection({self._id})"
        self._components = components
        self._use_ipv4 = use_ipv4
        self._use_ipv6 = use_ipv6
        self._transport_policy = transport_policy
        self._local_addresses = local_addresses
        self._local_username = local_username
        self._local_password = local_password
        self._agent = IceAgent(
            controlling=ice_controlling,
            local_username=local_username,
            local_password=local_password,
            components=components,
            config=config,
            name=self._name,
        )
        self._lock = threading.Lock()
        self._inbox = _Inbox(INBOX_SIZE)
        self._published = _Published(bool(ice_controlling))
        self._remote_candidates: list[Candidate] = []
        self._pending_remote: list[Candidate | None] = []
        self._remote_end = False
        self._closed = False
        self._closed_event_seen = False
        self._worker_box: list[Worker] = []
        self._session_box: list[_Session] = []
        self._finalizer = weakref.finalize(
            self, _finalize, self._worker_box, self._session_box
        )
        self.send_drops = 0

    def __repr__(self) -> str:
        return self._name

    # --- properties ----------------------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether the local peer has the controlling role (a role conflict
        may change it). It may be set before :meth:`connect`."""
        return self._published.controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        value = bool(value)
        with self._lock:
            self._published.controlling = value
            session = self._session()
            if session is None:
                if self._agent.controlling != value:
                    self._agent._switch_role(value)
                    self._agent.next_event()
                return
        self._call(lambda: session.set_role(value))

    @property
    def local_candidates(self) -> list[Candidate]:
        """Local candidates, automatically set by :meth:`gather_candidates`."""
        return list(self._published.local_candidates)

    @property
    def local_password(self) -> str:
        """Local password, set at construction time."""
        return self._local_password

    @property
    def local_username(self) -> str:
        """Local username, set at construction time."""
        return self._local_username

    @property
    def remote_candidates(self) -> list[Candidate]:
        """Remote candidates, which you need to populate using
        :meth:`add_remote_candidate`."""
        with self._lock:
            return list(self._remote_candidates)

    # --- helpers -------------------------------------------------------------

    def _session(self) -> _Session | None:
        return self._session_box[0] if self._session_box else None

    def _worker(self) -> Worker | None:
        return self._worker_box[0] if self._worker_box else None

    def _call(self, fn: Callable[[], T]) -> T:
        worker = self._worker()
        if worker is None:  # pragma: no cover - callers check
            raise RuntimeError("no worker")
        if worker.in_worker_thread():
            raise RuntimeError("blocking syncice call made on the worker thread")
        return worker.submit(fn).result()

    def _closed_error(self) -> ConnectionClosedError:
        reason = self._published.closed_reason or "closed"
        return ConnectionClosedError(f"Connection closed ({reason})", reason)

    @staticmethod
    def _wait(
        fut: concurrent.futures.Future[None], timeout: float | None, what: str
    ) -> None:
        try:
            fut.result(_check_timeout(timeout))
        except concurrent.futures.TimeoutError:
            raise IceTimeoutError(f"{what} timed out") from None

    # --- the API -------------------------------------------------------------

    def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        """Add a remote candidate or signal end-of-candidates.

        To signal end-of-candidates, pass ``None``. Candidates may be added
        while :meth:`connect` runs (trickle ICE); it reports failure only after
        end-of-candidates. A candidate with the transport address of one
        already added is ignored. Returns at once.

        :param remote_candidate: a :class:`Candidate` instance or ``None``.
        :raises ValueError: after end-of-candidates.
        :raises TypeError: if the argument is not a :class:`Candidate` or ``None``.
        """
        if remote_candidate is not None and not isinstance(remote_candidate, Candidate):
            raise TypeError("remote_candidate must be a Candidate or None")
        with self._lock:
            if self._remote_end:
                raise ValueError("Cannot add remote candidate after end-of-candidates.")
            if self._closed:
                return
            if remote_candidate is None:
                self._remote_end = True
            else:
                self._remote_candidates.append(remote_candidate)
            session = self._session()
            if session is None:
                self._pending_remote.append(remote_candidate)
                return
            worker = self._worker()
            assert worker is not None
            worker.post(lambda: session.add_remote_candidate(remote_candidate))

    def gather_candidates(self, *, timeout: float | None = None) -> None:
        """Gather local candidates.

        You **must** call this method before calling :meth:`connect`. It
        returns when host candidates are ready and every STUN server has
        answered or failed (at most ``gather_timeout``, 5 s by default).
        Calling it again waits for the same gathering.

        :param timeout: at most this many seconds; ``None`` waits until done.
        :raises IceTimeoutError: if ``timeout`` ran out (gathering goes on).
        :raises ConnectionClosedError: if the connection is closed.
        """
        _check_timeout(timeout)
        with self._lock:
            if self._closed:
                raise self._closed_error()
            session = self._session()
            if session is None:
                session = self._start_gathering()
        self._wait(session.gathered, timeout, "gather_candidates")

    def _start_gathering(self) -> _Session:
        # Called with self._lock held. Addresses, sockets and name lookups are
        # done here, in the caller's thread: the worker never blocks.
        addresses: list[str] = []
        stun: list[Address] = []
        if self._transport_policy is TransportPolicy.ALL:
            addresses = _gather.select_addresses(
                self._local_addresses, use_ipv4=self._use_ipv4, use_ipv6=self._use_ipv6
            )
            if self.stun_server is not None:
                stun = _gather.resolve_server(
                    self.stun_server, use_ipv4=self._use_ipv4, use_ipv6=self._use_ipv6
                )
        sockets: list[tuple[socket.socket, int]] = []
        try:
            for component in range(1, self._components + 1):
                for address in addresses:
                    try:
                        sockets.append((_gather.bind_udp(address), component))
                    except OSError as exc:
                        logger.warning(
                            "%s cannot bind to %s: %s", self._name, address, exc
                        )
            worker = acquire_worker()
        except BaseException:
            for sock, _ in sockets:
                sock.close()
            raise
        session = _Session(
            worker, self._agent, self._inbox, self._published, self._name
        )
        self._worker_box.append(worker)
        self._session_box.append(session)
        remote, self._pending_remote = self._pending_remote, []
        worker.post(lambda: session.start_gathering(sockets, stun, remote))
        return session

    def get_default_candidate(self, component: int) -> Candidate | None:
        """Get the default local candidate for the specified component.

        As aioice does, the candidate of the component with the lowest
        priority (a relay candidate when there is one).

        :param component: the component whose default candidate is requested.
        """
        candidates = [
            c for c in self._published.local_candidates if c.component == component
        ]
        return min(candidates, key=lambda c: c.priority) if candidates else None

    def connect(self, *, timeout: float | None = None) -> None:
        """Perform the ICE handshake.

        Returns once a candidate pair was nominated on every component, and
        raises otherwise. Failure is only reported once end-of-candidates has
        been signalled with :meth:`add_remote_candidate`: until then more
        remote candidates may come. Calling it again after success returns at
        once.

        :param timeout: at most this many seconds; ``None`` waits until done.
        :raises NotConnectedError: (a :class:`ConnectionError`) if gathering
            was not performed or the remote username or password is missing.
        :raises NegotiationFailedError: (a :class:`ConnectionError`) if ICE failed.
        :raises ConnectionClosedError: if the connection was closed meanwhile.
        :raises IceTimeoutError: if ``timeout`` ran out (checks go on: call
            again, or :meth:`close`).
        """
        _check_timeout(timeout)
        with self._lock:
            if self._closed:
                raise self._closed_error()
            session = self._session()
            if session is None or not session.gathered.done():
                raise NotConnectedError("Local candidates gathering was not performed")
            if self.remote_username is None or self.remote_password is None:
                raise NotConnectedError("Remote username or password is missing")
            username, password = self.remote_username, self.remote_password
            lite = bool(self.remote_is_lite)
            worker = self._worker()
            assert worker is not None
            if not session.connected.done():
                worker.post(lambda: session.connect(username, password, lite))
        self._wait(session.connected, timeout, "connect")

    def close(self) -> None:
        """Close the connection.

        Releases its sockets, and wakes every call blocked in :meth:`connect`,
        :meth:`recv` or :meth:`recvfrom` with :class:`ConnectionClosedError`.
        Safe to call twice and from any thread.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session = self._session()
            worker = self._worker()
            self._finalizer.detach()
            self._session_box.clear()
            self._worker_box.clear()
        if session is None or worker is None:
            self._inbox.close(self._closed_error(), discard=True)
            self._published.closed_reason = self._published.closed_reason or "closed"
            self._published.push_event(ConnectionClosed())
            return
        if worker.in_worker_thread():
            session.close()
        else:
            worker.submit(session.close).result()
        release_worker(worker)

    def get_event(self, *, timeout: float | None = None) -> ConnectionEvent | None:
        """Return the next :class:`ConnectionEvent`, or ``None`` once the
        connection is closed and its :class:`ConnectionClosed` was returned.

        :param timeout: at most this many seconds; ``None`` waits until an event.
        :raises IceTimeoutError: if ``timeout`` ran out.
        """
        _check_timeout(timeout)
        published = self._published
        with published.event_ready:
            if not published.event_ready.wait_for(
                lambda: published.events or self._closed_event_seen, timeout
            ):
                raise IceTimeoutError("get_event timed out")
            if published.events:
                event = published.events.popleft()
                if isinstance(event, ConnectionClosed):
                    self._closed_event_seen = True
                return event
            return None

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
        return self.recvfrom(timeout=timeout)[0]

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
        _check_timeout(timeout)
        if not self._published.connected and not self._closed:
            raise NotConnectedError("Cannot receive data, not connected")
        return self._inbox.get(timeout)

    def send(self, data: bytes) -> None:
        """Send a datagram on the first component.

        Never blocks: the datagram is written to the socket of the selected
        pair by the calling thread. A full socket buffer drops it (UDP).

        :param data: the data to be sent.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        """
        self.sendto(data, 1)

    def sendto(self, data: bytes, component: int) -> None:
        """Send a datagram on the specified component.

        :param data: the data to be sent.
        :param component: the component on which to send the data.
        :raises NotConnectedError: (a :class:`ConnectionError`) if the
            connection is not established.
        :raises ConnectionClosedError: if it was closed or lost consent.
        :raises ValueError: if the datagram is too large for the path.
        """
        route = self._published.routes.get(component)
        if route is None:
            if self._closed or self._published.closed_reason is not None:
                raise self._closed_error()
            raise NotConnectedError("Cannot send data, not connected")
        try:
            route.sock.sendto(data, route.addr)
        except (BlockingIOError, InterruptedError):
            self.send_drops += 1
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise ValueError(f"datagram of {len(data)} bytes is too large") from None
            if route.sock.fileno() == -1:
                raise self._closed_error() from None
            self.send_drops += 1

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
        with self._lock:
            session = self._session()
            if self._closed:
                raise self._closed_error()
            if session is None or not session.gathered.done():
                raise NotConnectedError("Local candidates gathering was not performed")
        self._call(
            lambda: session.select_pair(component, local_foundation, remote_foundation)
        )
        self._published.connected = True

    def get_stats(self) -> list[PairStats]:
        """Per-pair statistics: a syncice extension.

        Every candidate pair with its state, check counters, last RTT and the
        data received on it. Data sent is not counted per pair (``send`` does
        not visit the worker); :attr:`send_drops` counts datagrams dropped by
        a full socket buffer.
        """
        with self._lock:
            session = self._session()
        if session is None:
            return []
        return self._call(session.pair_stats)

    @property
    def recv_drops(self) -> int:
        """Datagrams dropped because the receive queue was full (a syncice extension)."""
        return self._inbox.dropped
