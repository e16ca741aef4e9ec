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
import contextlib
import dataclasses
import enum
import errno
import itertools
import logging
import os
import secrets
import select
import socket
import string
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import _gather
from ._checklist import PairStats
from ._mdns_socket import MdnsService, acquire_mdns
from ._worker import Deadline, TimerHandle, Worker, acquire_worker, release_worker
from .candidate import Candidate
from .events import (
    ConnectionClosed,
    ConnectionEvent,
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceFailed,
    RelayLost,
    RoleChanged,
    SelectedPairChanged,
)
from .exceptions import (
    ComponentError,
    ConnectionClosedError,
    IceTimeoutError,
    NegotiationFailedError,
    NotConnectedError,
)
from .ice import IceAgent, IceConfig, validate_password, validate_username
from .mdns import create_mdns_hostname, is_mdns_hostname
from .turn import TurnAllocation

if TYPE_CHECKING:
    # Imported when a TURN server is reached over TCP or TLS: ssl costs
    # about 1 MiB of memory, which most programs need not pay.
    import ssl

    from ._stream import StreamTransport

__all__ = ["Connection", "TransportPolicy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Address = tuple[str, int]

#: How many datagrams the worker reads from one socket before serving others.
_READ_BATCH = 64
#: How long sockets stay with direct readers after the last one left, seconds.
_PARK_CHECK = 0.05
_COOKIE = b"\x21\x12\xa4\x42"
#: At most this many STUN messages read by recv() callers wait for the worker.
_STUN_BACKLOG = 64
# A timeout= below this needs no more checking than being a plain number.
_SHORT_ENOUGH = min(3600.0, threading.TIMEOUT_MAX)
#: Bound of the receive queue of a connection, in datagrams.
INBOX_SIZE = 8192

#: How long close() waits at most for TURN allocations to be released.
_RELEASE_WAIT = 5.0
_CHANNEL_HEADER = struct.Struct("!HH")

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
    """A ``timeout=`` argument, checked: ``None`` (or infinity, or more than
    the platform can wait) waits forever, ``0`` polls."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be None or a number, not {timeout!r}")
    if timeout != timeout or timeout < 0:
        raise ValueError(f"timeout must be None or non-negative, not {timeout!r}")
    if timeout >= threading.TIMEOUT_MAX:
        return None
    return float(timeout)


def _closed(reason: str) -> ConnectionClosedError:
    text = "Connection closed" if reason == "closed" else f"Connection closed: {reason}"
    return ConnectionClosedError(text, reason)


def _check_server(name: str, server: object) -> tuple[str, int] | None:
    if server is None:
        return None
    if (
        not isinstance(server, tuple)
        or len(server) != 2
        or not isinstance(server[0], str)
        or isinstance(server[1], bool)
        or not isinstance(server[1], int)
    ):
        raise TypeError(f"{name} must be a (host, port) tuple or None, not {server!r}")
    if not server[0] or not 0 < server[1] < 65536:
        raise ValueError(
            f"{name} must be a (host, port) tuple with a host and a port"
            f" from 1 to 65535, not {server!r}"
        )
    return (server[0], server[1])


def _check_type(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    """``TypeError`` naming the parameter unless ``value`` is a ``kind``."""
    if not isinstance(value, kind):
        names = (
            " or ".join("None" if k is type(None) else k.__name__ for k in kind)
            if isinstance(kind, tuple)
            else kind.__name__
        )
        raise TypeError(f"{name} must be {names}, not {type(value).__name__}")


class _Route:
    """Where data for one component goes; replaced, never changed.

    A relayed route (``relay`` set) sends through its TURN allocation: as
    ChannelData straight to the server over UDP once a channel is bound,
    otherwise through the worker, which wraps it.
    """

    __slots__ = ("addr", "relay", "sock")

    def __init__(
        self, sock: socket.socket | None, addr: Address, relay: _Relayed | None = None
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.relay = relay


class _Relayed:
    """The relay half of a route (see :class:`_Route`)."""

    __slots__ = ("channels", "peer", "post")

    def __init__(
        self,
        channels: dict[Address, int],
        peer: Address,
        post: Callable[[bytes], None],
    ) -> None:
        self.channels = channels  # the allocation's: read, never written, here
        self.peer = peer
        self.post = post


class _TurnPath:
    """The way to the TURN server for one component, made in the caller's thread."""

    __slots__ = (
        "component",
        "context",
        "family",
        "hostname",
        "password",
        "server",
        "sock",
        "transport",
        "username",
    )

    def __init__(
        self,
        component: int,
        sock: socket.socket,
        server: Address,
        transport: str,
        family: int | None,
        context: ssl.SSLContext | None,
        hostname: str | None,
        username: str,
        password: str,
    ) -> None:
        self.component = component
        self.sock = sock
        self.server = server
        self.transport = transport
        self.family = family
        self.context = context
        self.hostname = hostname
        self.username = username
        self.password = password


class _Wake:
    """A pipe a direct reader polls, so that the worker can interrupt it.

    One per thread (:func:`_thread_wake`), reused by every call the thread
    makes, with the poller of the sockets it read last; its two descriptors
    close with the thread.
    """

    __slots__ = ("by_fd", "poller", "poller_key", "read_fd", "write_fd")

    def __init__(self) -> None:
        self.poller: select.poll | None = None
        self.poller_key: tuple[tuple[socket.socket, int], ...] = ()
        self.by_fd: dict[int, tuple[socket.socket, int]] = {}
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def set(self) -> None:
        with contextlib.suppress(OSError):  # full: a wakeup is pending anyway
            os.write(self.write_fd, b"\0")

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.read_fd, 512)

    def poll_for(
        self, sockets: tuple[tuple[socket.socket, int], ...]
    ) -> tuple[
        Callable[[int], list[tuple[int, int]]], dict[int, tuple[socket.socket, int]]
    ]:
        """A poller over ``sockets`` and this pipe, kept for the next call,
        and the ``(socket, endpoint)`` of each polled descriptor but the pipe's."""
        if self.poller is None or self.poller_key is not sockets:
            poller = select.poll()
            poller.register(self.read_fd, select.POLLIN)
            for sock, _ in sockets:
                poller.register(sock, select.POLLIN)
            self.poller, self.poller_key = poller, sockets
            self.by_fd = {sock.fileno(): (sock, endpoint) for sock, endpoint in sockets}
        return self.poller.poll, self.by_fd

    def __del__(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


_local = threading.local()


def _thread_wake() -> _Wake:
    wake: _Wake | None = getattr(_local, "wake", None)
    if wake is None:
        wake = _local.wake = _Wake()
    return wake


class _DirectWaiter:
    """A ``recv()`` caller that reads the sockets itself while it waits.

    It sits among the inbox's waiters like a future: when the worker delivers
    a datagram (or an error) to it, its thread's wake pipe interrupts its
    ``poll()``.
    """

    __slots__ = ("error", "item", "state", "wake")

    def __init__(self, wake: _Wake) -> None:
        self.wake = wake
        self.state = 0  # 0 waiting, 1 delivered, 2 withdrawn
        self.item: tuple[bytes, int] | None = None
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return self.state == 0

    def set_result(self, item: tuple[bytes, int]) -> None:
        self.item = item
        self.state = 1
        self.wake.set()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self.state = 1
        self.wake.set()

    def result(self) -> tuple[bytes, int]:
        if self.error is not None:
            raise self.error
        assert self.item is not None
        return self.item


class _Inbox:
    """A bounded queue of received datagrams, and the callers waiting for one.

    The worker calls :meth:`put` and :meth:`close`; any thread calls
    :meth:`get`, :meth:`get_direct` or :meth:`waiter`. Its rules:

    - Every caller waiting for a datagram is in :attr:`_waiters`, a future
      or a :class:`_DirectWaiter`: :meth:`close` fails every one of them, so
      no caller stays blocked after it.
    - A waiter that timed out or was cancelled is never handed a datagram
      (``set_running_or_notify_cancel``), so no datagram is lost to a timeout.
    - A datagram is handed out under :attr:`_lock`, and :meth:`close` sets
      the error under it: once :meth:`close` has run, no call returns a
      datagram that arrived after it.

    Direct reading: once connected, a ``recv()`` caller that finds the queue
    empty reads the connection's sockets itself (:meth:`get_direct`), so a
    datagram reaches it without a hop through the worker thread. While such a
    caller waits, :attr:`direct` is non-zero and the worker leaves those
    sockets alone; STUN messages the caller reads go to the worker. Sockets
    that :meth:`close` is given while callers read them close when the last
    of them leaves, which sets :attr:`drained`.
    """

    __slots__ = (
        "_error",
        "_items",
        "_lock",
        "_maxlen",
        "_waiters",
        "direct",
        "direct_calls",
        "drained",
        "dropped",
        "read_bytes",
        "read_datagrams",
        "to_close",
        "watch",
    )

    def __init__(self, maxlen: int) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[bytes, int]] = deque()
        self._waiters: deque[Any] = deque()
        self._error: BaseException | None = None
        self._maxlen = maxlen
        self.dropped = 0
        self.direct = 0
        #: Direct reads that ended, ever: the worker parks sockets while it grows.
        self.direct_calls = 0
        # Data that direct readers took from the socket (get_stats() adds it
        # to the selected pair); approximate when several threads read at once.
        self.read_datagrams = 0
        self.read_bytes = 0
        self.to_close: list[socket.socket] | None = None
        #: Set once the sockets given to close() are closed (made by close()
        #: when direct readers still held them).
        self.drained: threading.Event | None = None
        #: Set (by tests) to learn when a caller starts waiting.
        self.watch: threading.Event | None = None

    def _put_locked(self, item: tuple[bytes, int], *, front: bool = False) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.set_running_or_notify_cancel():
                waiter.set_result(item)
                return
        if len(self._items) >= self._maxlen:
            self.dropped += 1
            return
        if front:
            self._items.appendleft(item)
        else:
            self._items.append(item)

    def put(self, item: tuple[bytes, int]) -> None:
        with self._lock:
            self._put_locked(item)

    def close(
        self,
        error: BaseException,
        *,
        discard: bool,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        """Fail every waiter with ``error``; close ``sockets`` now, or when
        the last direct reader leaves them (see :meth:`wait_drained`)."""
        with self._lock:
            if self._error is None:
                self._error = error
            if discard:
                self._items.clear()
            waiters, self._waiters = self._waiters, deque()
            for waiter in waiters:
                if waiter.set_running_or_notify_cancel():
                    waiter.set_exception(error)
            if self.direct:
                # Each direct reader was just woken through its waiter.
                self.to_close = (self.to_close or []) + (sockets or [])
                if self.drained is None:
                    self.drained = threading.Event()
                return
        for sock in sockets or ():
            sock.close()

    def wait_drained(self, timeout: float) -> bool:
        """After :meth:`close`: wait until the direct readers it woke have
        left and its sockets are closed; ``False`` if ``timeout`` ran out."""
        drained = self.drained
        return drained is None or drained.wait(timeout)

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
        if self.watch is not None:
            self.watch.set()
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            if fut.cancel():
                raise IceTimeoutError("recv timed out") from None
            return fut.result()

    def get_direct(
        self,
        timeout: float | None,
        sockets: tuple[tuple[socket.socket, int], ...],
        accept: Callable[[int, bytes, Any], tuple[bytes, int] | None],
    ) -> tuple[bytes, int]:
        """Like :meth:`get`, reading ``sockets`` in the calling thread.

        The caller waits in ``poll()`` on the sockets and its thread's wake
        pipe, which the worker writes to when it hands the caller a datagram
        or an error. The deadline is measured from the call, whatever the
        sockets deliver meanwhile (STUN, strangers' datagrams).

        :param accept: turns ``(endpoint, data, addr)`` into a datagram for
            the caller, or ``None`` (STUN, or a sender not authenticated).
        """
        lock = self._lock
        with lock:
            if self._items:
                return self._items.popleft()
            if self._error is not None:
                raise self._error
            wake = _thread_wake()
            waiter = _DirectWaiter(wake)
            self._waiters.append(waiter)
            self.direct += 1
        if self.watch is not None:
            self.watch.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            poll, by_fd = wake.poll_for(sockets)
            while True:
                if deadline is None:
                    wait = -1
                else:
                    # Rounded up: poll() never wakes before the deadline.
                    wait = int((deadline - time.monotonic()) * 1000 + 0.999)
                    if wait <= 0:
                        with lock:
                            if waiter.state == 0:
                                waiter.state = 2
                                raise IceTimeoutError("recv timed out")
                        return waiter.result()
                ready = poll(wait)
                if waiter.state == 1:
                    return waiter.result()
                for fd, _ in ready:
                    entry = by_fd.get(fd)
                    if entry is None:  # the wake pipe
                        wake.clear()
                        continue
                    try:
                        data, addr = entry[0].recvfrom(65536)
                    except OSError:  # taken by another reader, or ICMP
                        continue
                    item = accept(entry[1], data, addr)
                    if item is None:
                        continue
                    with lock:
                        if waiter.state == 0:
                            waiter.state = 2
                            return item
                        # The worker handed us a datagram first (ours goes
                        # next), or an error (closed: ours is dropped).
                        if self._error is None:
                            self._put_locked(item, front=True)
                    return waiter.result()
        finally:
            with lock:
                if waiter.state == 0:
                    waiter.state = 2
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self.direct -= 1
                self.direct_calls += 1
                closing = drained = None
                if self.direct == 0:
                    closing, self.to_close = self.to_close, None
                    drained = self.drained
            for sock in closing or ():
                sock.close()
            if drained is not None:
                drained.set()


def _resolve(fut: concurrent.futures.Future[None], error: BaseException | None) -> None:
    if not fut.done():
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


def _mdns_shown(candidate: Candidate, names: dict[str, str]) -> Candidate:
    """``candidate`` as shown with mDNS host candidates: a host candidate
    carries the name of its address (from ``names``), and the related address
    of any other is hidden as "0.0.0.0" or "::", port 0, as browsers do
    (draft-ietf-mmusic-mdns-ice-candidates), so no private address shows."""
    if candidate.type == "host":
        return _readdressed(candidate, names.get(candidate.host, candidate.host))
    related = candidate.related_address
    if related is None:
        return candidate
    hidden = "::" if ":" in related else "0.0.0.0"
    return _readdressed(candidate, candidate.host, (hidden, 0))


def _readdressed(
    candidate: Candidate, host: str, related: tuple[str, int] | None = None
) -> Candidate:
    """``candidate`` with another address (and related address, when given)."""
    related_address, related_port = related or (
        candidate.related_address,
        candidate.related_port,
    )
    return Candidate(
        candidate.foundation,
        candidate.component,
        candidate.transport,
        candidate.priority,
        host,
        candidate.port,
        candidate.type,
        related_address,
        related_port,
        candidate.tcptype,
        candidate.generation,
        extensions=candidate.extensions,
    )


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
        self.timer = Deadline(worker, self.on_timer)
        self.gathered: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.connected: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.closed = False
        self.send_errors = 0
        self.parked: dict[int, socket.socket] = {}
        self.unpark_timer: TimerHandle | None = None
        self.peer_count = 0
        self.direct_rejected = 0
        self.seen_calls = -1
        # STUN messages direct readers handed to the worker, not yet handled.
        self.backlog_lock = threading.Lock()
        self.stun_backlog = 0
        # The paths to TURN servers: UDP sockets (also in self.sockets) and
        # streams, by transport endpoint; closed once the allocations are
        # released, which self.released tells.
        self.turn_sockets: dict[int, socket.socket] = {}
        self.streams: dict[int, StreamTransport] = {}
        self.turn_paths: dict[int, _TurnPath] = {}
        self.next_endpoint = 0
        # Made when there is a TURN server (a Future costs a Condition).
        self.released: concurrent.futures.Future[None] | None = None
        # mDNS: whether to show .local names for our host candidates, the
        # name of each local address, the worker's mDNS socket while we use
        # it, remote .local candidates being resolved, and whether
        # end-of-candidates waits for them.
        self.mdns_host_candidates = False
        self.relay_only = False
        self.mdns_names: dict[str, str] = {}
        self.mdns: MdnsService | None = None
        self.resolving = 0
        self.remote_end_held = False

    # --- commands (run on the worker) --------------------------------------

    def start_gathering(
        self,
        sockets: list[tuple[socket.socket, int]],
        stun_servers: list[Address],
        turn: list[_TurnPath],
        remote: list[Candidate | None],
    ) -> None:
        self._guard(self._start_gathering, sockets, stun_servers, turn, remote)

    def _start_gathering(
        self,
        sockets: list[tuple[socket.socket, int]],
        stun_servers: list[Address],
        turn: list[_TurnPath],
        remote: list[Candidate | None],
    ) -> None:
        now = self.worker.clock.now()
        agent = self.agent
        for endpoint, (sock, component) in enumerate(sockets):
            self.sockets[endpoint] = sock
            addr = sock.getsockname()
            agent.add_host_candidate(endpoint, component, (addr[0], addr[1]))
            self.worker.add_reader(sock, self._reader(endpoint, sock))
            if self.mdns_host_candidates and addr[0] not in self.mdns_names:
                name = self.mdns_names[addr[0]] = create_mdns_hostname()
                self._mdns().publish(name, addr[0])
        endpoint = len(sockets)
        if turn:
            self.released = concurrent.futures.Future()
        for path in turn:
            transport, relay = endpoint, endpoint + 1
            endpoint += 2
            self.turn_paths[transport] = path
            agent.add_relay(
                transport, relay, path.component, self._allocation(transport)
            )
            if path.transport == "udp":
                self.sockets[transport] = path.sock
                self.turn_sockets[transport] = path.sock
                self.worker.add_reader(path.sock, self._reader(transport, path.sock))
            else:
                self._open_stream(transport, path.sock, path.server)
        self.next_endpoint = endpoint
        for candidate in remote:
            self._add_remote(candidate, now)
        agent.gather(now, stun_servers)
        self.flush()

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        self._guard(self._add_remote_candidate, candidate)

    def _add_remote_candidate(self, candidate: Candidate | None) -> None:
        if not self.closed:
            self._add_remote(candidate, self.worker.clock.now())
            self.flush()

    # --- mDNS ----------------------------------------------------------------

    def _mdns(self) -> MdnsService:
        if self.mdns is None:
            self.mdns = acquire_mdns(self.worker)
        return self.mdns

    def _add_remote(self, candidate: Candidate | None, now: float) -> None:
        """Hand a remote candidate to the agent; a ``.local`` one once
        resolved, and end-of-candidates once none is left to resolve."""
        if candidate is None and self.resolving:
            self.remote_end_held = True
        elif candidate is None or not candidate.host.lower().endswith(".local"):
            self.agent.add_remote_candidate(candidate, now)
        elif self.relay_only:
            # draft-ietf-mmusic-mdns-ice-candidates §3.2, as aioice does.
            logger.info(
                "%s remote candidate %s: ignored with the relay policy",
                self.name,
                candidate.host,
            )
        elif not is_mdns_hostname(candidate.host):
            logger.warning(
                "%s remote candidate %s: not an mDNS name (<label>.local), dropped",
                self.name,
                candidate.host,
            )
        else:
            self.resolving += 1
            self._mdns().resolve(
                candidate.host,
                lambda found: self._guard(self._resolved, candidate, found),
            )

    def _resolved(self, candidate: Candidate, found: tuple[str, ...] | None) -> None:
        """On the worker thread: ``candidate``'s name resolved to ``found``
        (``None``: it did not). May run inside :meth:`_add_remote`."""
        self.resolving -= 1
        if self.closed:
            return
        now = self.worker.clock.now()
        agent = self.agent
        families = {":" in c.host for c in agent.local_candidates}
        address = next((a for a in found or () if (":" in a) in families), None)
        if address is None:
            logger.warning(
                "%s remote candidate %s: %s, dropped",
                self.name,
                candidate.host,
                "not resolved by mDNS"
                if found is None
                else f"no address of a family we use in {found}",
            )
        else:
            logger.debug("%s %s is %s", self.name, candidate.host, address)
            agent.add_remote_candidate(_readdressed(candidate, address), now)
        if not self.resolving:
            if self.remote_end_held:
                self.remote_end_held = False
                agent.add_remote_candidate(None, now)
            if not self.mdns_names and self.mdns is not None:
                # Nothing left to resolve or answer for: the socket may go.
                mdns, self.mdns = self.mdns, None
                mdns.release()
        self.flush()

    def _shown(self, candidate: Candidate) -> Candidate:
        """``candidate`` as the user sees it (:func:`_mdns_shown`)."""
        if not self.mdns_host_candidates:
            return candidate
        return _mdns_shown(candidate, self.mdns_names)

    def connect(self, username: str, password: str, lite: bool) -> None:
        self._guard(self._connect, username, password, lite)

    def _connect(self, username: str, password: str, lite: bool) -> None:
        if self.closed:
            return
        agent = self.agent
        agent.set_remote_credentials(username, password)
        agent.set_remote_lite(lite)
        agent.connect(self.worker.clock.now())
        self.flush()

    def set_role(self, controlling: bool) -> bool:
        """Change the role before checks start; returns the role in force."""
        if self.agent.state == "new" and self.agent.controlling != controlling:
            self.agent.set_role(controlling)
            self.flush()
        return self.agent.controlling

    def select_pair(self, component: int, local: str, remote: str) -> None:
        self.agent.set_selected_pair(component, local, remote)
        self.flush()
        self._publish_direct()

    def pair_stats(self) -> list[PairStats]:
        stats = self.agent.pair_stats()
        inbox = self.inbox
        if inbox.read_datagrams:
            stats = [
                dataclasses.replace(
                    s,
                    datagrams_received=s.datagrams_received + inbox.read_datagrams,
                    bytes_received=s.bytes_received + inbox.read_bytes,
                )
                if s.selected and s.component == 1
                else s
                for s in stats
            ]
        return stats

    def _allocation(self, transport: int) -> TurnAllocation:
        path = self.turn_paths[transport]
        return TurnAllocation(
            server=path.server,
            username=path.username,
            password=path.password,
            transport=path.transport,
            family=path.family,
            name=self.name,
        )

    def _renew_transport(self, old: int) -> None:
        """Another UDP socket for an allocation refused with 437 (see
        :meth:`IceAgent.transports_to_renew`)."""
        now = self.worker.clock.now()
        sock = self.turn_sockets.pop(old, None)
        if sock is None:  # a stream: a new connection has a new port anyway
            self.agent.transport_lost(old, "437 Allocation Mismatch", now)
            return
        del self.sockets[old]
        self.worker.remove_reader(sock)
        local = sock.getsockname()[0]
        sock.close()
        new = self.next_endpoint
        self.next_endpoint += 1
        path = self.turn_paths.pop(old)
        try:
            sock = _gather.bind_udp(local)
        except OSError as exc:
            self.agent.transport_lost(old, f"no socket: {exc}", now)
            return
        self.turn_paths[new] = path
        self.sockets[new] = self.turn_sockets[new] = sock
        self.worker.add_reader(sock, self._reader(new, sock))
        self.agent.renew_transport(old, new, self._allocation(new), now)

    def _reconnect_stream(self, transport: int) -> None:
        """A new TCP or TLS connection for an allocation whose server sent us
        elsewhere (ALTERNATE-SERVER, RFC 8489 §10): same endpoint, same TLS
        context and name."""
        self.streams.pop(transport).close()
        server = self.agent.turn_server(transport)
        sock = socket.socket(
            socket.AF_INET6 if ":" in server[0] else socket.AF_INET, socket.SOCK_STREAM
        )
        sock.setblocking(False)
        self._open_stream(transport, sock, server)

    def _open_stream(
        self, transport: int, sock: socket.socket, server: Address
    ) -> None:
        """Connect the TCP or TLS stream of a transport endpoint."""
        from ._stream import StreamTransport

        path = self.turn_paths[transport]
        stream = StreamTransport(
            self.worker,
            sock,
            server,
            context=path.context,
            server_hostname=path.hostname,
            on_data=self._stream_reader(transport),
            on_lost=self._stream_lost(transport),
        )
        self.streams[transport] = stream
        stream.start()

    def send_data(self, component: int, data: bytes) -> None:
        """Send on a relayed route the caller could not write to itself."""
        if not self.closed:
            self.agent.send(component, data, self.worker.clock.now())
            self._transmit()

    # --- I/O handlers --------------------------------------------------------

    def _stream_reader(self, transport: int) -> Callable[[bytes], None]:
        def on_data(data: bytes) -> None:
            try:
                put = self.inbox.put
                for item in self.agent.receive_stream(
                    transport, data, self.worker.clock.now()
                ):
                    put(item)
                self.flush()
            except Exception:
                self._internal_error()

        return on_data

    def _stream_lost(self, transport: int) -> Callable[[str], None]:
        def on_lost(reason: str) -> None:
            try:
                self.agent.transport_lost(transport, reason, self.worker.clock.now())
                self.flush()
            except Exception:
                self._internal_error()

        return on_lost

    def _reader(self, endpoint: int, sock: socket.socket) -> Callable[[], None]:
        def on_readable() -> None:
            try:
                self._read(endpoint, sock)
            except Exception:
                self._internal_error()

        return on_readable

    def _read(self, endpoint: int, sock: socket.socket) -> None:
        inbox = self.inbox
        agent = self.agent
        receive = agent.receive_datagram
        put = inbox._put_locked
        now = self.worker.clock.now()
        recvfrom = sock.recvfrom
        # Under the inbox lock: a recv() caller that starts reading the socket
        # itself does so either before this batch (then the socket is theirs)
        # or after it (then what it read is queued first): order is kept.
        other = False  # STUN or dropped: the agent's state may have moved
        with inbox._lock:
            if inbox.direct:
                # A recv() caller reads this socket itself: leave it to them
                # (and stop watching it until they are gone a while).
                self._park(endpoint, sock)
                return
            for _ in range(_READ_BATCH):
                try:
                    data, addr = recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    # ICMP errors reported on the socket: nothing to read here.
                    continue
                got = receive(endpoint, data, (addr[0], addr[1]), now)
                if got is None:
                    other = True
                else:
                    put(got)
        # Application data changes nothing in the agent: only then is the
        # flush (and its timer scan) skipped.
        if other:
            self.flush()

    def _publish_direct(self) -> None:
        """Let recv() callers read the sockets themselves (see _Inbox)."""
        published = self.published
        if (
            published.direct
            or self.closed
            or self.agent.relay_count
            or not published.direct_reads
        ):
            # Relayed data must be unwrapped by the worker: no direct reads.
            # Nor for the asyncio shim, whose callers must never block.
            return
        published.accept = self.accept
        published.direct = tuple((s, e) for e, s in self.sockets.items())

    def _park(self, endpoint: int, sock: socket.socket) -> None:
        self.worker.remove_reader(sock)
        self.parked[endpoint] = sock
        if self.unpark_timer is None:
            self.unpark_timer = self.worker.call_at(
                self.worker.clock.now() + _PARK_CHECK, self._unpark
            )

    def _unpark(self) -> None:
        self.unpark_timer = None
        if self.closed:
            return
        inbox = self.inbox
        calls, self.seen_calls = self.seen_calls, inbox.direct_calls
        if inbox.direct or calls != inbox.direct_calls:
            # Direct readers came and went since the last look: keep parked.
            self.unpark_timer = self.worker.call_at(
                self.worker.clock.now() + _PARK_CHECK, self._unpark
            )
            return
        parked, self.parked = self.parked, {}
        for endpoint, sock in parked.items():
            self.worker.add_reader(sock, self._reader(endpoint, sock))

    def on_datagram(self, endpoint: int, data: bytes, addr: Address) -> None:
        """A STUN message that a direct reader read (worker thread)."""
        with self.backlog_lock:
            self.stun_backlog -= 1
        if self.closed:
            return
        try:
            got = self.agent.receive_datagram(
                endpoint, data, addr, self.worker.clock.now()
            )
            if got is not None:  # pragma: no cover - readers hand over STUN only
                self.inbox.put(got)
            self.flush()
        except Exception:
            self._internal_error()

    def accept(self, endpoint: int, data: bytes, addr: Any) -> tuple[bytes, int] | None:
        """A datagram a direct reader read (any thread): data for the caller,
        or ``None`` when it is STUN (handed to the worker) or unauthenticated."""
        peer = (addr[0], addr[1])
        if len(data) >= 20 and data[0] < 4 and data[4:8] == _COOKIE:
            # Bounded: a flood of STUN-looking datagrams must not queue up
            # without end while the worker catches up.
            with self.backlog_lock:
                if self.stun_backlog >= _STUN_BACKLOG:
                    self.direct_rejected += 1
                    return None
                self.stun_backlog += 1
            try:
                self.worker.post(lambda: self.on_datagram(endpoint, data, peer))
            except RuntimeError:  # the worker stopped: the connection is closing
                with self.backlog_lock:
                    self.stun_backlog -= 1
            return None
        component = self.published.peers.get((endpoint, peer))
        if component is None:
            self.direct_rejected += 1
            return None
        self.inbox.read_datagrams += 1
        self.inbox.read_bytes += len(data)
        return data, component

    def on_timer(self) -> None:
        try:
            self.agent.handle_timer(self.worker.clock.now())
            self.flush()
        except Exception:
            self._internal_error()

    def _transmit(self) -> None:
        sockets = self.sockets
        for endpoint, data, addr in self.agent.datagrams_to_send():
            sock = sockets.get(endpoint)
            if sock is None:
                stream = self.streams.get(endpoint)
                if stream is not None:
                    stream.write(data)
                continue
            try:
                sock.sendto(data, addr)
            except OSError:
                self.send_errors += 1

    def _rearm(self) -> None:
        self.timer.set(self.agent.get_timer())

    def flush(self) -> None:
        """Send what the agent queued, dispatch its events, re-arm the timer."""
        agent = self.agent
        if not self.closed:
            # New paths to TURN servers first: what the allocations queued
            # is for them.
            for transport in agent.transports_to_renew():
                self._renew_transport(transport)
            for transport in agent.transports_to_reconnect():
                self._reconnect_stream(transport)
        self._transmit()
        if self.closed:
            # Only TURN allocations being released are left.
            self._rearm()
            self._maybe_released()
            return
        while (event := agent.next_event()) is not None:
            self._dispatch(event)
            if self.published.closed_reason is not None:  # it closed us
                return
        count = agent.authenticated_count()
        if count != self.peer_count:
            # Authenticated peers only ever get added.
            self.peer_count = count
            self.published.peers = agent.authenticated_peers()
        self._rearm()

    def _dispatch(self, event: object) -> None:
        published = self.published
        if isinstance(event, SelectedPairChanged):
            pair = self.agent.selected[event.component]
            routes = dict(published.routes)
            routes[event.component] = self._route(
                event.component, pair.endpoint, pair.remote_addr
            )
            published.routes = routes
        elif isinstance(event, IceCompleted):
            self._publish_direct()
            published.connected = True
            _resolve(self.connected, None)
        elif isinstance(event, IceFailed):
            _resolve(
                self.connected,
                NegotiationFailedError(f"ICE negotiation failed: {event.reason}"),
            )
        elif isinstance(event, GatheringCompleted):
            published.local_candidates = tuple(
                self._shown(c) for c in self.agent.local_candidates
            )
            if not published.local_candidates:
                logger.warning("%s gathered no candidate at all", self.name)
            _resolve(self.gathered, None)
        elif isinstance(event, RoleChanged):
            published.controlling = event.controlling
        elif isinstance(event, ConsentExpired):
            self.close("consent expired")
        elif isinstance(event, RelayLost):
            self.close(f"TURN relay lost: {event.reason}")

    def _route(self, component: int, endpoint: int, addr: Address) -> _Route:
        relay = self.agent.relay(endpoint)
        if relay is None:
            return _Route(self.sockets[endpoint], addr)
        transport, allocation = relay
        worker = self.worker

        def post(data: bytes) -> None:
            worker.post(lambda: self.send_data(component, data))

        return _Route(
            self.turn_sockets.get(transport),
            allocation.server,
            _Relayed(allocation.channels, addr, post),
        )

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
        if reason == "closed":
            logger.debug("%s closed", self.name)
        else:
            logger.info("%s closed: %s", self.name, reason)
        error = _closed(reason)
        self.agent.close(self.worker.clock.now())
        self.timer.set(None)
        if self.unpark_timer is not None:
            self.unpark_timer.cancel()
            self.unpark_timer = None
        # TURN sockets stay open (and read) until their allocations are
        # released: _maybe_released() closes them.
        hosts = [sock for e, sock in self.sockets.items() if e not in self.turn_sockets]
        for sock in hosts:
            self.worker.remove_reader(sock)
        self.published.routes = {}
        self.published.direct = ()
        self.published.closed_reason = reason
        # Sockets close now, or when the last recv() reading them leaves.
        self.inbox.close(error, discard=reason == "closed", sockets=hosts)
        _resolve(self.gathered, error)
        _resolve(self.connected, error)
        self.published.push_event(ConnectionClosed())
        mdns, self.mdns = self.mdns, None
        if mdns is not None:
            for name in self.mdns_names.values():
                mdns.unpublish(name)
            mdns.release()
        self.flush()  # sends the deallocations

    def forget_after_fork(self) -> None:
        """In a child after ``fork()``: the worker thread is gone, and the
        sockets are the parent's. Close the child's descriptors of them,
        which leaves the parent's open, and touch nothing else."""
        self.closed = True
        for sock in self.sockets.values():
            sock.close()
        for stream in self.streams.values():
            stream.forget_after_fork()
        self.sockets = {}
        self.streams = {}

    def when_released(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the TURN allocations are released: at once
        without any, else on the worker thread."""
        if self.released is None:
            callback()
        else:
            self.released.add_done_callback(lambda _: callback())

    def _maybe_released(self) -> None:
        released = self.released
        if released is None or released.done() or self.agent.releasing:
            return
        self.timer.set(None)
        for sock in self.turn_sockets.values():
            self.worker.remove_reader(sock)
            sock.close()
        for stream in self.streams.values():
            stream.close()
        released.set_result(None)


_EVENT_READY = threading.Condition(threading.Lock())


def _accept_nothing(endpoint: int, data: bytes, addr: Any) -> None:
    return None


class _Published:
    """What the worker shows the facade: each field replaced in one assignment."""

    def __init__(self, controlling: bool) -> None:
        self.routes: dict[int, _Route] = {}
        self.local_candidates: tuple[Candidate, ...] = ()
        self.controlling = controlling
        self.connected = False
        self.closed_reason: str | None = None
        #: The sockets recv() callers may read themselves (empty: none), and
        #: the session's filter for what they read.
        self.direct: tuple[tuple[socket.socket, int], ...] = ()
        self.accept: Callable[[int, bytes, Any], tuple[bytes, int] | None] = (
            _accept_nothing
        )
        self.peers: dict[tuple[int, Address], int] = {}
        #: Whether recv() callers may read the sockets themselves (the
        #: asyncio shim turns it off: its callers must never block).
        self.direct_reads = True
        #: Futures resolved (with None) by the next push_event(): the asyncio
        #: shim's get_event() waits on them instead of event_ready.
        self.event_waiters: list[concurrent.futures.Future[None]] = []
        self.events: deque[ConnectionEvent] = deque()
        # One condition for every connection's events: they are rare, and a
        # Condition per connection would cost memory at scale.
        self.event_ready = _EVENT_READY

    def push_event(self, event: ConnectionEvent) -> None:
        with self.event_ready:
            self.events.append(event)
            self.event_ready.notify_all()
            waiters, self.event_waiters = self.event_waiters, []
        for waiter in waiters:
            if waiter.set_running_or_notify_cancel():
                waiter.set_result(None)


#: Why a connection inherited across fork() is closed in the child.
_FORKED = "inherited across fork()"
#: Every Connection not yet closed, for the fork() handler.
_open: weakref.WeakSet[Connection] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _EVENT_READY
    # Locks may have been held by threads that the child does not have.
    _EVENT_READY = threading.Condition(threading.Lock())
    for conn in list(_open):
        conn._forget_after_fork()
    _open.clear()


if hasattr(os, "register_at_fork"):  # pragma: no branch (not on Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _finalize(worker_box: list[Worker], session_box: list[_Session]) -> None:
    """Close a connection that was dropped without close().

    A finalizer may run on any thread in the middle of anything (a garbage
    collection: the worker's own thread too, holding any lock), so it only
    queues work and takes no lock: the worker closes the session on a later
    turn, then releases itself. Releasing here could stop the worker first,
    and a command posted after the worker took its turn's commands is
    dropped when the loop ends.
    """
    if worker_box and session_box:
        worker, session = worker_box[0], session_box[0]
        worker_box.clear()
        session_box.clear()

        def close_and_release() -> None:
            try:
                session.close()
            finally:
                session.when_released(lambda: release_worker(worker))

        # A worker inherited through fork(), or already stopped, refuses it.
        with contextlib.suppress(RuntimeError):
            worker.call_soon(close_and_release)


class Connection:
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
    :raises TypeError: for an argument of the wrong type (the message names it).
    :raises ValueError: for a malformed username or password, server address or
        transport, a component count outside 1-256, ``local_addresses`` that
        are not addresses of this host or leave none to gather on, both
        address families turned off, or the relay policy without a server.
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
        # First: repr() works on an object whose construction raised.
        self._id = next(_ids)
        self._name = f"Connection({self._id})"
        none = type(None)
        _check_type("ice_controlling", ice_controlling, bool)
        _check_type("components", components, int)
        if isinstance(components, bool) or not 1 <= components <= 256:
            raise ValueError(f"components must be from 1 to 256, not {components!r}")
        _check_type("turn_username", turn_username, (str, none))
        _check_type("turn_password", turn_password, (str, none))
        _check_type("turn_transport", turn_transport, str)
        if turn_transport not in ("udp", "tcp"):
            raise ValueError(
                f'turn_transport must be "udp" or "tcp", not {turn_transport!r}'
            )
        if not isinstance(turn_ssl, bool):
            import ssl

            if not isinstance(turn_ssl, ssl.SSLContext):
                raise TypeError("turn_ssl must be a bool or an ssl.SSLContext")
        _check_type("use_ipv4", use_ipv4, bool)
        _check_type("use_ipv6", use_ipv6, bool)
        _check_type("transport_policy", transport_policy, TransportPolicy)
        _check_type("local_addresses", local_addresses, (list, tuple, none))
        _check_type("config", config, (IceConfig, none))
        _check_type("mdns_host_candidates", mdns_host_candidates, bool)
        if not (use_ipv4 or use_ipv6):
            raise ValueError("use_ipv4 and use_ipv6 are both False: no address to use")
        self.stun_server = _check_server("stun_server", stun_server)
        self.turn_server = _check_server("turn_server", turn_server)
        if (
            transport_policy is TransportPolicy.RELAY
            and self.stun_server is None
            and self.turn_server is None
        ):
            raise ValueError("The relay transport policy needs a STUN or TURN server")
        if self.turn_server is not None and not (
            isinstance(turn_username, str) and isinstance(turn_password, str)
        ):
            raise ValueError("turn_server needs turn_username and turn_password (str)")
        if turn_ssl and turn_transport == "udp":
            logger.warning("turn_ssl applies to turn_transport='tcp' only: ignored")
        if local_username is None:
            local_username = _random_string(4)
        if local_password is None:
            local_password = _random_string(22)
        validate_username(local_username)
        validate_password(local_password)
        if local_addresses is not None:
            # Checked and filtered now, so that a mistake shows at construction.
            local_addresses = _gather.select_addresses(
                local_addresses, use_ipv4=use_ipv4, use_ipv6=use_ipv6
            )
            if not local_addresses:
                raise ValueError(
                    "local_addresses leaves no address to gather on"
                    " (empty, or every entry ruled out by use_ipv4/use_ipv6)"
                )
            foreign = _gather.unassigned(local_addresses)
            if foreign:
                raise ValueError(
                    f"local_addresses: {', '.join(foreign)} is not an address"
                    " of this host"
                )

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

        self._components = components
        self._use_ipv4 = use_ipv4
        self._use_ipv6 = use_ipv6
        self._transport_policy = transport_policy
        self._local_addresses = local_addresses
        self._mdns_host_candidates = bool(mdns_host_candidates)
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
        #: Datagrams dropped by a full socket buffer in :meth:`sendto`.
        self.send_drops = 0
        self._inherited = False
        _open.add(self)

    def __repr__(self) -> str:
        return self._name  # set first in __init__

    # --- properties ----------------------------------------------------------

    @property
    def ice_controlling(self) -> bool:
        """Whether the local peer has the controlling role (a role conflict
        may change it). It may be set before :meth:`connect`."""
        return self._published.controlling

    @ice_controlling.setter
    def ice_controlling(self, value: bool) -> None:
        value = bool(value)
        self._check_inherited()
        with self._lock:
            session = self._session()
            if session is None:
                if self._agent.controlling != value:
                    self._agent.set_role(value)
                    self._agent.next_event()  # RoleChanged: not a connection event
                self._published.controlling = value
                return
        # Once checks have started the role is the agent's to change (role
        # conflicts); the property then keeps showing the role in force.
        self._published.controlling = self._call(lambda: session.set_role(value))

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
        try:
            fut = worker.submit(fn)
        except RuntimeError:
            # The worker stopped: close() won the race with this call.
            raise self._closed_error() from None
        return fut.result()

    def _check_inherited(self) -> None:
        if self._inherited:
            raise _closed(_FORKED)

    def _forget_after_fork(self) -> None:
        """In a child after ``fork()``: this connection is the parent's. It
        becomes closed, with reason ``"inherited across fork()"``, without
        a word to the peer (the parent still talks to it)."""
        self._inherited = True
        self._closed = True
        self._closed_event_seen = True
        self._finalizer.detach()
        session = self._session()
        self._session_box.clear()
        self._worker_box.clear()
        # Locks may have been held by threads that the child does not have.
        self._lock = threading.Lock()
        published = self._published
        published.routes = {}
        published.direct = ()
        published.closed_reason = _FORKED
        published.events = deque()
        published.event_waiters = []
        published.event_ready = _EVENT_READY
        inbox = self._inbox
        inbox._lock = threading.Lock()
        inbox._items.clear()
        inbox._waiters.clear()
        inbox._error = _closed(_FORKED)
        inbox.direct = 0
        inbox.to_close = None
        inbox.drained = None
        if session is not None:
            session.forget_after_fork()

    def _closed_error(self) -> ConnectionClosedError:
        reason = self._published.closed_reason or "closed"
        return _closed(reason)

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

        A candidate whose address is an mDNS name (``<label>.local``) is
        resolved by the worker first, then checked with the address it got;
        one that does not resolve within 2 s is dropped, with a warning
        (:mod:`syncice.mdns`). :attr:`remote_candidates` lists it as given.

        :param remote_candidate: a :class:`Candidate` instance or ``None``.
        :raises ValueError: after end-of-candidates.
        :raises TypeError: if the argument is not a :class:`Candidate` or ``None``.
        """
        if remote_candidate is not None and not isinstance(remote_candidate, Candidate):
            raise TypeError("remote_candidate must be a Candidate or None")
        self._check_inherited()
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
        returns when host candidates are ready and every STUN and TURN
        server has answered or failed (at most ``gather_timeout``, 5 s by
        default). A TURN server that refuses us, is down or presents an
        untrusted certificate gives no relay candidate: the reason is logged
        (logger ``syncice.turn``) and gathering goes on.
        Calling it again waits for the same gathering.

        :param timeout: at most this many seconds; ``None`` waits until done.
        :raises IceTimeoutError: if ``timeout`` ran out (gathering goes on).
        :raises ConnectionClosedError: if the connection is closed.
        """
        timeout = _check_timeout(timeout)
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
            addresses = self._local_addresses or _gather.host_addresses(
                use_ipv4=self._use_ipv4, use_ipv6=self._use_ipv6
            )
            if self.stun_server is not None:
                stun = _gather.resolve_server(
                    self.stun_server, use_ipv4=self._use_ipv4, use_ipv6=self._use_ipv6
                )
        sockets: list[tuple[socket.socket, int]] = []
        turn: list[_TurnPath] = []
        try:
            for component in range(1, self._components + 1):
                for address in addresses:
                    try:
                        sockets.append((_gather.bind_udp(address), component))
                    except OSError as exc:
                        logger.warning(
                            "%s cannot bind to %s: %s", self._name, address, exc
                        )
            turn = self._turn_paths()
            worker = acquire_worker()
        except BaseException:
            for sock, _ in sockets:
                sock.close()
            for path in turn:
                path.sock.close()
            raise
        session = _Session(
            worker, self._agent, self._inbox, self._published, self._name
        )
        session.mdns_host_candidates = self._mdns_host_candidates
        session.relay_only = self._transport_policy is TransportPolicy.RELAY
        self._worker_box.append(worker)
        self._session_box.append(session)
        remote, self._pending_remote = self._pending_remote, []
        worker.post(lambda: session.start_gathering(sockets, stun, turn, remote))
        return session

    def _turn_paths(self) -> list[_TurnPath]:
        """A socket per component towards the TURN server, not yet connected."""
        if self.turn_server is None:
            return []
        servers = _gather.resolve_server(self.turn_server, use_ipv4=True, use_ipv6=True)
        if not servers:
            return []
        server = servers[0]
        ipv6 = ":" in server[0]
        # RFC 8656 §7.1: ask for an IPv6 relay where IPv6 is what we use
        # (a server gives an IPv4 one by default, even to a client on IPv6).
        family = 0x02 if self._use_ipv6 and (ipv6 or not self._use_ipv4) else None
        local = next(
            (a for a in self._local_addresses or () if (":" in a) == ipv6),
            "::" if ipv6 else "0.0.0.0",
        )
        transport = self.turn_transport
        context: ssl.SSLContext | None = None
        if transport == "tcp" and self.turn_ssl:
            import ssl

            transport = "tls"
            context = (
                self.turn_ssl
                if isinstance(self.turn_ssl, ssl.SSLContext)
                else ssl.create_default_context()
            )
        paths: list[_TurnPath] = []
        try:
            for component in range(1, self._components + 1):
                if transport == "udp":
                    sock = _gather.bind_udp(local)
                else:
                    sock = socket.socket(
                        socket.AF_INET6 if ipv6 else socket.AF_INET,
                        socket.SOCK_STREAM,
                    )
                    sock.setblocking(False)
                    if self._local_addresses:
                        try:
                            sock.bind((local, 0))
                        except OSError:
                            sock.close()
                            raise
                paths.append(
                    _TurnPath(
                        component,
                        sock,
                        server,
                        transport,
                        family,
                        context,
                        self.turn_server[0],
                        self.turn_username or "",
                        self.turn_password or "",
                    )
                )
        except BaseException:
            for path in paths:
                path.sock.close()
            raise
        return paths

    def get_default_candidate(self, component: int) -> Candidate | None:
        """Get the default local candidate for the specified component.

        As aioice does, the candidate of the component with the lowest
        priority (a relay candidate when there is one).

        :param component: the component whose default candidate is requested.
        :raises TypeError: if ``component`` is not an ``int``.
        """
        if isinstance(component, bool) or not isinstance(component, int):
            raise TypeError(f"component must be an int, not {type(component).__name__}")
        self._check_inherited()
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
        timeout = _check_timeout(timeout)
        with self._lock:
            if self._closed:
                raise self._closed_error()
            session = self._session()
            if session is None or not session.gathered.done():
                raise NotConnectedError("Local candidates gathering was not performed")
            if self.remote_username is None or self.remote_password is None:
                raise NotConnectedError("Remote username or password is missing")
            username, password = self.remote_username, self.remote_password
            for name, value in (("username", username), ("password", password)):
                if not isinstance(value, str):
                    raise TypeError(
                        f"remote_{name} must be a str, not {type(value).__name__}"
                    )
                if not value:
                    raise ValueError(f"remote_{name} must not be empty")
            lite = bool(self.remote_is_lite)
            worker = self._worker()
            assert worker is not None
            if not session.connected.done():
                worker.post(lambda: session.connect(username, password, lite))
        try:
            self._wait(session.connected, timeout, "connect")
        except IceTimeoutError:
            if self._published.controlling:
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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session = self._session()
            worker = self._worker()
            self._finalizer.detach()
            self._session_box.clear()
            self._worker_box.clear()
            _open.discard(self)
        if session is None or worker is None:
            self._inbox.close(self._closed_error(), discard=True)
            self._published.closed_reason = self._published.closed_reason or "closed"
            self._published.push_event(ConnectionClosed())
            return
        if worker.in_worker_thread():
            session.close()
            session.when_released(lambda: release_worker(worker))
            return
        worker.submit(session.close).result()
        # The recv() callers reading the sockets themselves were woken: once
        # they have left (at once), the sockets are closed.
        if not self._inbox.wait_drained(_RELEASE_WAIT):  # pragma: no cover
            logger.warning("%s close(): recv() callers still hold its sockets", self)
        # TURN allocations are released (RFC 8656 §7) before their sockets
        # close: a round trip to the server, at most TurnConfig.close_timeout.
        if session.released is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                session.released.result(_RELEASE_WAIT)
        release_worker(worker)

    def get_event(self, *, timeout: float | None = None) -> ConnectionEvent | None:
        """Return the next :class:`ConnectionEvent`, or ``None`` once the
        connection is closed and its :class:`ConnectionClosed` was returned.

        :param timeout: at most this many seconds; ``None`` waits until an event.
        :raises IceTimeoutError: if ``timeout`` ran out.
        """
        timeout = _check_timeout(timeout)
        published = self._published
        self._check_inherited()
        with published.event_ready:
            if not published.event_ready.wait_for(
                lambda: published.events or self._closed_event_seen, timeout
            ):
                raise IceTimeoutError("get_event timed out")
            if published.events:
                event = published.events.popleft()
                if isinstance(event, ConnectionClosed):
                    self._closed_event_seen = True
                    # The other callers waiting return None now.
                    published.event_ready.notify_all()
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

    def _receive(self, timeout: float | None) -> tuple[bytes, int]:
        if timeout is not None and not (
            (type(timeout) is float or type(timeout) is int)
            and 0 <= timeout < _SHORT_ENOUGH
        ):
            timeout = _check_timeout(timeout)
        published = self._published
        direct = published.direct
        if direct:
            return self._inbox.get_direct(timeout, direct, published.accept)
        if not (published.connected or self._closed or published.closed_reason):
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
        :raises ComponentError: (a :class:`ConnectionError`, as aioice raises,
            and a :class:`ValueError`) if there is no such component.
        :raises ValueError: if the datagram is too large for the path.
        """
        route = self._published.routes.get(component)
        if route is None:
            if not isinstance(component, int) or not 1 <= component <= self._components:
                raise ComponentError(
                    f"component must be 1 to {self._components}, not {component!r}"
                )
            if self._closed or self._published.closed_reason is not None:
                raise self._closed_error()
            raise NotConnectedError("Cannot send data, not connected")
        sock = route.sock
        relay = route.relay
        if relay is not None:
            if len(data) > 0xFFFF:
                raise ValueError(f"datagram of {len(data)} bytes is too large")
            channel = relay.channels.get(relay.peer)
            if channel is None or sock is None:
                # Not bound yet, or a stream: the worker wraps it.
                try:
                    relay.post(bytes(data))
                except RuntimeError:  # the worker stopped: closed meanwhile
                    raise self._closed_error() from None
                return
            data = _CHANNEL_HEADER.pack(channel, len(data)) + data
        try:
            sock.sendto(data, route.addr)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            self.send_drops += 1
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise ValueError(
                    f"datagram of {len(data)} bytes is too large"
                ) from None
            if sock.fileno() == -1:  # type: ignore[union-attr]
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
        self._check_inherited()
        with self._lock:
            session = self._session()
        if session is None:
            return []
        return self._call(session.pair_stats)

    @property
    def recv_drops(self) -> int:
        """Datagrams dropped because the receive queue was full (a syncice
        extension)."""
        return self._inbox.dropped
