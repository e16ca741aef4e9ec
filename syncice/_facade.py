"""The facade core: what both facades do, as calls that return at once.

:class:`ConnectionCore` holds a connection's caller-side state and turns each
operation into a command for the worker (:mod:`syncice._session`) and a
*completion* (a :class:`concurrent.futures.Future`) or a waiter enlisted in
a mailbox (:mod:`syncice._inbox`). The blocking :class:`syncice.Connection`
waits on them with a timeout; :class:`syncice.asyncio.Connection` bridges
them to its loop. Nothing here waits: :attr:`ConnectionCore._lock` is held
for a few statements, never across I/O (gathering's binds and lookups run
in :meth:`ConnectionCore.gather`'s job, outside it) nor a wait.

Arguments are checked here, at the call, by both facades alike
(:func:`check_options`); peer faults stay on the worker.

Locks, in the order they may be taken (none is held while calling out):

1. ``ConnectionCore._lock``: the agent before the worker has it, the
   session and worker references, the remote candidates, the close flag.
   Callers of either facade; never the worker.
2. ``Lifecycle._lock`` (:mod:`syncice._lifecycle`): the phase. Callers and
   the worker, a few statements.
3. ``Mailbox._lock`` (:mod:`syncice._inbox`), one per mailbox: its queue
   and waiters; for the inbox, also its :class:`~syncice._inbox.Lease`
   (who owns the sockets, the reading caller's token, what readers leave
   for the worker). The worker putting or moving the sockets, callers
   taking, reading or withdrawing.
4. ``Worker``'s command queue and wakeup locks (:mod:`syncice._worker`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import enum
import itertools
import logging
import os
import secrets
import string
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from . import _gather, _worker
from ._appview import ConnectionState, EventBox, check_events, connection_state
from ._checklist import PairStats, canonical
from ._data_path import DataPath
from ._gather_options import GatherOptions
from ._ice_tcp import check_transports
from ._inbox import INBOX_SIZE, Inbox
from ._lifecycle import Phase
from ._lite import BOTH_LITE, lite_role, lite_servers
from ._session import Published, Session, closed_error
from ._sockets import Plan, open_paths
from ._trickle import PendingConnect
from .candidate import Candidate
from .events import ConnectionClosed
from .exceptions import (
    ConnectionClosedError,
    NegotiationFailedError,
    NotConnectedError,
)
from .ice import IceAgent, IceConfig, validate_password, validate_username

if TYPE_CHECKING:
    import ssl

    from ._worker import Worker

__all__ = [
    "FORKED",
    "Closing",
    "ConnectionCore",
    "TransportPolicy",
    "check_timeout",
    "check_type",
]

logger = logging.getLogger("syncice.connection")

T = TypeVar("T")
Item = tuple[bytes, int]

#: Why a connection inherited across fork() is closed in the child.
FORKED = "inherited across fork()"
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


def check_timeout(timeout: float | None) -> float | None:
    """A ``timeout=`` argument, checked: ``None`` (or infinity, or more than
    the platform can wait) waits forever, ``0`` polls.

    :raises TypeError: not ``None`` nor a number.
    :raises ValueError: negative or NaN.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be None or a number, not {timeout!r}")
    if timeout != timeout or timeout < 0:
        raise ValueError(f"timeout must be None or non-negative, not {timeout!r}")
    if timeout >= threading.TIMEOUT_MAX:
        return None
    return float(timeout)


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


def check_type(name: str, value: object, kind: type | tuple[type, ...]) -> None:
    """``TypeError`` naming the parameter unless ``value`` is a ``kind``."""
    if not isinstance(value, kind):
        names = (
            " or ".join("None" if k is type(None) else k.__name__ for k in kind)
            if isinstance(kind, tuple)
            else kind.__name__
        )
        raise TypeError(f"{name} must be {names}, not {type(value).__name__}")


class Closing:
    """The completions of one :meth:`ConnectionCore.close`.

    :ivar closed: done once the sockets are closed and every waiter woken
        (a caller that was reading the sockets closes them as it leaves).
    :ivar released: done after :attr:`closed`, once the TURN allocations
        are released and the worker given back (with
        ``release_on_worker``), or at once if there is nothing to release;
        :meth:`finish` gives the worker back otherwise.
    :ivar inline: the close ran on the worker thread, which must not wait.
    """

    __slots__ = ("_worker", "closed", "inline", "released")

    def __init__(self, worker: Worker | None) -> None:
        self._worker = worker
        self.inline = False
        self.closed: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.released: concurrent.futures.Future[None] = concurrent.futures.Future()

    def finish(self) -> None:
        """Give the worker back (the last one stops, and this waits for its
        thread to end); idempotent."""
        worker, self._worker = self._worker, None
        if worker is not None:
            _worker.release_worker(worker)


def _done(fut: concurrent.futures.Future[Any]) -> None:
    if fut.set_running_or_notify_cancel():
        fut.set_result(None)


def _finalize(worker_box: list[Worker], session_box: list[Session]) -> None:
    """Close a connection that was dropped without close().

    A finalizer may run on any thread in the middle of anything (a garbage
    collection: the worker's own thread too, holding any lock), so it only
    queues work and takes no lock: the worker closes the session on a later
    turn, then releases itself.
    """
    if worker_box and session_box:
        worker, session = worker_box[0], session_box[0]
        worker_box.clear()
        session_box.clear()

        def close_and_release() -> None:
            try:
                session.close()
            finally:
                session.when_released(lambda: _worker.release_worker(worker))

        # A worker inherited through fork(), or already stopped, refuses it.
        with contextlib.suppress(RuntimeError):
            worker.call_soon(close_and_release)


#: Every core not yet closed, for the fork() handler.
_open: weakref.WeakSet[ConnectionCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for core in list(_open):
        core.forget_after_fork()
    _open.clear()


if hasattr(os, "register_at_fork"):  # pragma: no branch (not on Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ConnectionCore(DataPath):
    """One connection's caller side, for both facades (see the module).

    The parameters are :class:`syncice.Connection`'s, checked here.

    :raises TypeError: for an argument of the wrong type.
    :raises ValueError: for a wrong value (see :class:`syncice.Connection`).
    """

    __slots__ = (
        "__weakref__",
        "_agent",
        "_closed",
        "_closing",
        "_finalizer",
        "_gathered",
        "_inherited",
        "_lifecycle",
        "_lock",
        "_pending_connect",
        "_pending_remote",
        "_plan",
        "_published",
        "_remote_candidates",
        "_remote_end",
        "_remote_keys",
        "_restart",
        "_session_box",
        "_worker_box",
        "components",
        "direct_reads",
        "events",
        "inbox",
        "local_password",
        "local_username",
        "mdns_host_candidates",
        "name",
        "relay_only",
        "socket_buffers",
        "stun_server",
        "turn_password",
        "turn_server",
        "turn_ssl",
        "turn_transport",
        "turn_username",
    )

    def __init__(
        self,
        ice_controlling: bool,
        components: int,
        stun_server: tuple[str, int] | None,
        turn_server: tuple[str, int] | None,
        turn_username: str | None,
        turn_password: str | None,
        turn_ssl: bool | ssl.SSLContext,
        turn_transport: str,
        use_ipv4: bool,
        use_ipv6: bool,
        transport_policy: TransportPolicy,
        local_username: str | None,
        local_password: str | None,
        *,
        local_addresses: Sequence[str] | None,
        config: IceConfig | None,
        mdns_host_candidates: bool,
        direct_reads: bool = False,
        ice_lite: bool = False,
        transports: Sequence[str] = ("udp",),
        events: str | None = None,
        gather_options: GatherOptions | None = None,
    ) -> None:
        #: The name in logs and ``repr()``, set first: a facade's repr()
        #: works even when the checks below raise.
        self.name = f"Connection({next(_ids)})"
        none = type(None)
        check_type("ice_controlling", ice_controlling, bool)
        check_type("components", components, int)
        if isinstance(components, bool) or not 1 <= components <= 256:
            raise ValueError(f"components must be from 1 to 256, not {components!r}")
        check_type("turn_username", turn_username, (str, none))
        check_type("turn_password", turn_password, (str, none))
        check_type("turn_transport", turn_transport, str)
        if turn_transport not in ("udp", "tcp"):
            raise ValueError(
                f'turn_transport must be "udp" or "tcp", not {turn_transport!r}'
            )
        if not isinstance(turn_ssl, bool):
            import ssl

            if not isinstance(turn_ssl, ssl.SSLContext):
                raise TypeError("turn_ssl must be a bool or an ssl.SSLContext")
        check_type("use_ipv4", use_ipv4, bool)
        check_type("use_ipv6", use_ipv6, bool)
        check_type("transport_policy", transport_policy, TransportPolicy)
        check_type("local_addresses", local_addresses, (list, tuple, none))
        check_type("config", config, (IceConfig, none))
        check_type("mdns_host_candidates", mdns_host_candidates, bool)
        check_type("ice_lite", ice_lite, bool)
        if ice_lite:  # ICE-lite (syncice._lite): the config says so
            config = dataclasses.replace(config or IceConfig(), ice_lite=True)
        lite = config is not None and config.ice_lite
        if lite and transport_policy is TransportPolicy.RELAY:
            raise ValueError("ice_lite gathers host candidates only: no relay policy")
        every_event = check_events(events)
        if not (use_ipv4 or use_ipv6):
            raise ValueError("use_ipv4 and use_ipv6 are both False: no address to use")
        self.stun_server = _check_server("stun_server", stun_server)
        self.turn_server = _check_server("turn_server", turn_server)
        options = gather_options or GatherOptions()
        options.check(turn_username, turn_password, config)
        if (
            transport_policy is TransportPolicy.RELAY
            and self.stun_server is None
            and self.turn_server is None
            and not options.has_servers
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
        self.components = components
        self.turn_username = turn_username
        self.turn_password = turn_password
        self.turn_ssl = turn_ssl
        self.turn_transport = turn_transport
        self.local_username = local_username
        self.local_password = local_password
        self.relay_only = transport_policy is TransportPolicy.RELAY
        self.mdns_host_candidates = mdns_host_candidates
        self._plan = Plan(
            name=self.name,
            components=components,
            local_addresses=local_addresses,
            use_ipv4=use_ipv4,
            use_ipv6=use_ipv6,
            relay_only=self.relay_only,
            stun_server=self.stun_server,
            turn_server=self.turn_server,
            turn_username=turn_username or "",
            turn_password=turn_password or "",
            turn_transport=turn_transport,
            turn_ssl=turn_ssl,
            transports=check_transports(transports),
            **options.plan_fields(),
        )
        if lite:  # host candidates only (RFC 8445 §5.2), logged
            lite_servers(self.name, self.stun_server, self.turn_server)
            self._plan = dataclasses.replace(
                self._plan, stun_server=None, turn_server=None
            )
        self._agent = IceAgent(
            controlling=ice_controlling,
            local_username=local_username,
            local_password=local_password,
            components=components,
            config=config,
            name=self.name,
        )
        if "tcp" in self._plan.transports:
            self._agent.enable_tcp()  # remote TCP candidates are accepted
        self._lock = threading.Lock()
        #: Received datagrams, ``(data, component)``.
        self.inbox = Inbox(INBOX_SIZE)
        #: Whether :meth:`receive_wait` callers may read the sockets
        #: themselves once connected (:mod:`syncice._inbox`); read when
        #: gathering starts.
        self.direct_reads = direct_reads
        #: Connection events; ``None`` once :class:`ConnectionClosed` was
        #: taken. Every agent event too with ``events="all"`` (bounded:
        #: :mod:`syncice._appview`).
        self.events = EventBox(every_event)
        self._published = Published(self._agent.controlling)
        self._lifecycle = self._published.lifecycle
        self._gathered: concurrent.futures.Future[None] | None = None
        # A close() made while the gathering job binds: the job ends it.
        self._closing: Closing | None = None
        self._remote_candidates: list[Candidate] = []
        # (component, transport, address, port) of each listed one.
        self._remote_keys: set[tuple[int, str, str, int]] = set()
        self._pending_remote: list[Candidate | None] = []
        # A connect() made while the gathering job binds (syncice._trickle).
        self._pending_connect: PendingConnect | None = None
        self._remote_end = False
        # An ICE restart's outcome, and whether connect() started its checks.
        self._restart: tuple[concurrent.futures.Future[None], bool] | None = None
        self._closed = False
        self._worker_box: list[Worker] = []
        self._session_box: list[Session] = []
        self._finalizer = weakref.finalize(
            self, _finalize, self._worker_box, self._session_box
        )
        #: Datagrams dropped by a full socket buffer in :meth:`send`.
        self.send_drops = 0
        #: ``(SO_RCVBUF, SO_SNDBUF)`` of each UDP socket by local address,
        #: as the kernel reported them once bound (``{}`` before gathering).
        self.socket_buffers: dict[tuple[str, int], tuple[int, int]] = {}
        self._inherited = False
        _open.add(self)

    # --- state ---------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """Where the connection is in its life (:mod:`syncice._lifecycle`)."""
        return self._lifecycle.phase

    @property
    def controlling(self) -> bool:
        """The role in force (or asked for, until the worker applies it)."""
        return self._published.controlling

    @property
    def local_candidates(self) -> tuple[Candidate, ...]:
        """The local candidates, once gathered (as the user sees them)."""
        return self._published.local_candidates

    @property
    def remote_candidates(self) -> list[Candidate]:
        """The remote candidates added, as given, but those aioice leaves out
        too (:meth:`add_remote_candidate`)."""
        with self._lock:
            return list(self._remote_candidates)

    @property
    def recv_drops(self) -> int:
        """Datagrams dropped because the inbox was full."""
        return self.inbox.dropped

    def closed_error(self) -> ConnectionClosedError:
        """The error of a call on this connection once it is closed."""
        return closed_error(self._published.closed_reason or "closed")

    def check_inherited(self) -> None:
        """:raises ConnectionClosedError: in a child after ``fork()``."""
        if self._inherited:
            raise closed_error(FORKED)

    def check_thread(self) -> None:
        """:raises RuntimeError: on the worker thread, where a blocking
        call would wait for itself."""
        worker = self._worker()
        if worker is not None and worker.in_worker_thread():
            raise RuntimeError("blocking syncice call made on the worker thread")

    # --- introspection, for white-box tests (docs/design.rst) --------------

    @property
    def worker(self) -> Worker | None:
        """The worker this connection runs on, once gathering started."""
        return self._worker()

    @property
    def session(self) -> Session | None:
        """The worker-side session, once gathering started."""
        return self._session()

    @property
    def agent(self) -> IceAgent:
        """The sans-IO agent (the worker's once gathering started: read it
        there, or only what a test knows to be settled)."""
        return self._agent

    @property
    def published(self) -> Published:
        """What the worker publishes to callers (routes, peers, the reason
        of a close)."""
        return self._published

    @property
    def lock(self) -> threading.Lock:
        """The core's lock: a test holds it to provoke a race."""
        return self._lock

    def _session(self) -> Session | None:
        return self._session_box[0] if self._session_box else None

    def _worker(self) -> Worker | None:
        return self._worker_box[0] if self._worker_box else None

    def _submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        worker = self._worker()
        if worker is None:
            raise self.closed_error()
        try:
            return worker.submit(fn)
        except RuntimeError:  # the worker stopped: close() won the race
            raise self.closed_error() from None

    # --- operations ------------------------------------------------------------

    def set_role(self, controlling: bool) -> concurrent.futures.Future[bool]:
        """Change the role before checks start.

        :returns: the role in force, once the worker has applied it (at once
            before gathering); :attr:`controlling` shows the role asked for
            meanwhile.
        """
        self.check_inherited()
        published = self._published
        if self.lite:  # always controlled (syncice._lite), logged
            fut_lite: concurrent.futures.Future[bool] = concurrent.futures.Future()
            fut_lite.set_result(lite_role(self.name, controlling))
            return fut_lite
        with self._lock:
            session = self._session()
            if session is None:  # the agent is still ours
                agent = self._agent
                if agent.controlling != controlling:
                    agent.set_role(controlling)
                    agent.next_event()  # RoleChanged: not a connection event
                published.controlling = controlling
                fut: concurrent.futures.Future[bool] = concurrent.futures.Future()
                fut.set_result(controlling)
                return fut
        published.controlling = controlling

        def set_role() -> bool:
            # The worker says which role is in force (checks may have started).
            published.controlling = session.set_role(controlling)
            return published.controlling

        return self._submit(set_role)

    def gather(
        self, run: Callable[[Callable[[], None]], object]
    ) -> concurrent.futures.Future[None]:
        """Start gathering, once; the outcome.

        :param run: runs the job that binds the sockets and resolves the
            servers (which may block) and then hands the agent to the
            worker: in the calling thread, or an executor's. No lock is held.
        :returns: done once gathering is complete (every server answered or
            timed out); failed with what the job raised (the next call
            starts over) or :exc:`ConnectionClosedError`.
        :raises ConnectionClosedError: if the connection is closed.
        """
        with self._lock:
            if self._closed:
                raise self.closed_error()
            session = self._session()
            if session is not None:  # its future, once the job handed it on
                return session.gathered
            gathered = self._gathered
            if gathered is not None:
                return gathered
            self._lifecycle.advance(Phase.GATHERING)
            gathered = self._gathered = concurrent.futures.Future()
        run(self._gather_job)
        return gathered

    def _gather_job(self) -> None:
        gathered = self._gathered
        assert gathered is not None
        try:
            paths = open_paths(self._plan)
            try:
                worker = _worker.acquire_worker()
            except BaseException:
                paths.close()
                raise
        except BaseException as exc:
            with self._lock:
                if self._lifecycle.advance(Phase.NEW, expect=Phase.GATHERING):
                    self._gathered = None  # the next call starts over
                closing, self._closing = self._closing, None
                pending, self._pending_connect = self._pending_connect, None
            gathered.set_exception(exc)
            if pending is not None:
                pending.fail(exc)
            if closing is not None:
                _done(closing.closed)
                _done(closing.released)
            return
        with self._lock:
            self.socket_buffers = paths.buffers
            if not self._closed:
                session = Session(
                    worker,
                    self._agent,
                    self.inbox,
                    self.events,
                    self._published,
                    self.name,
                )
                session.gathered = gathered
                self._gathered = None  # the session's from now on
                session.mdns_host_candidates = self.mdns_host_candidates
                session.relay_only = self.relay_only
                session.direct_reads = self.direct_reads
                session.bind = self._plan.bind  # ICE-TCP's outgoing connections
                self._worker_box.append(worker)
                self._session_box.append(session)
                remote, self._pending_remote = self._pending_remote, []
                worker.post(
                    lambda: session.start_gathering(
                        paths.sockets,
                        paths.stun,
                        paths.turn,
                        remote,
                        paths.listeners,
                        paths.simultaneous,
                    )
                )
                pending, self._pending_connect = self._pending_connect, None
                if pending is not None:
                    pending.start(session, worker, self._lifecycle)
                return
            closing, self._closing = self._closing, None
            pending, self._pending_connect = self._pending_connect, None
        if pending is not None:
            pending.fail(self.closed_error())
        # Closed while the sockets were being bound: close() waits for this.
        paths.close()
        _worker.release_worker(worker)
        gathered.set_exception(self.closed_error())
        if closing is not None:
            _done(closing.closed)
            _done(closing.released)

    def add_remote_candidate(self, candidate: Candidate | None) -> None:
        """Add a remote candidate, or end-of-candidates (``None``).

        :raises TypeError: not a :class:`Candidate` or ``None``.
        :raises ValueError: after end-of-candidates.
        """
        if candidate is not None and not isinstance(candidate, Candidate):
            raise TypeError("remote_candidate must be a Candidate or None")
        self.check_inherited()
        with self._lock:
            if self._remote_end:
                raise ValueError("Cannot add remote candidate after end-of-candidates.")
            if self._closed:
                return
            if candidate is None:
                self._remote_end = True
            else:
                self._list_remote(candidate)
            session = self._session()
            if session is None:
                self._pending_remote.append(candidate)
                return
            worker = self._worker()
            assert worker is not None
            worker.post(lambda: session.add_remote_candidate(candidate))

    def _list_remote(self, candidate: Candidate) -> None:
        # Listed as aioice lists it: not a candidate of an unknown type, nor
        # one with the transport address of one listed already (the agent
        # refuses both, and logs why). Under the lock.
        if candidate.type not in ("host", "srflx", "prflx", "relay"):
            return
        key = (
            candidate.component,
            candidate.transport.lower(),
            canonical(candidate.host),
            candidate.port,
        )
        if key not in self._remote_keys:
            self._remote_keys.add(key)
            self._remote_candidates.append(candidate)

    def default_candidate(self, component: int) -> Candidate | None:
        """The local candidate of ``component`` with the lowest priority.

        :raises TypeError: if ``component`` is not an ``int``.
        """
        if isinstance(component, bool) or not isinstance(component, int):
            raise TypeError(f"component must be an int, not {type(component).__name__}")
        self.check_inherited()
        candidates = [c for c in self.local_candidates if c.component == component]
        return min(candidates, key=lambda c: c.priority) if candidates else None

    def connect(
        self, username: object, password: object, lite: bool
    ) -> concurrent.futures.Future[None]:
        """Start the checks (once); their outcome. Gathering must have been
        started; the checks start with the candidates gathered so far, and
        those gathered later join them (RFC 8838).

        :raises NotConnectedError: before gathering was started, or without
            the remote username or password.
        :raises TypeError: a credential that is not a ``str``.
        :raises ValueError: an empty credential.
        :raises ConnectionClosedError: if the connection is closed.
        :raises NegotiationFailedError: if both sides are ICE-lite.
        """
        with self._lock:
            if self._closed:
                raise self.closed_error()
            if lite and self.lite:
                raise NegotiationFailedError(BOTH_LITE)
            session = self._session()
            if session is None and self._gathered is None:
                raise NotConnectedError("Local candidates gathering was not performed")
            if username is None or password is None:
                raise NotConnectedError("Remote username or password is missing")
            for name, value in (("username", username), ("password", password)):
                if not isinstance(value, str):
                    raise TypeError(
                        f"remote_{name} must be a str, not {type(value).__name__}"
                    )
                if not value:
                    raise ValueError(f"remote_{name} must not be empty")
            assert isinstance(username, str)
            assert isinstance(password, str)
            if session is None:  # the gathering job binds: it starts this
                if self._pending_connect is None:
                    self._pending_connect = PendingConnect(username, password, lite)
                return self._pending_connect.done
            worker = self._worker()
            assert worker is not None
            if self._restart is not None:
                done, started = self._restart
                if not started:
                    self._restart = (done, True)
                    worker.post(lambda: session.connect(username, password, lite))
                return done
            if not session.connected.done():
                # The worker only moves GATHERING to GATHERED: one of these.
                lifecycle = self._lifecycle
                if not lifecycle.advance(Phase.CONNECTING, expect=Phase.GATHERING):
                    lifecycle.advance(Phase.CONNECTING, expect=Phase.GATHERED)
                worker.post(lambda: session.connect(username, password, lite))
            return session.connected

    def restart(
        self, username: str | None, password: str | None
    ) -> concurrent.futures.Future[None]:
        """Start an ICE restart (``IceAgent.restart``): new local credentials
        (random when ``None``), no remote candidate; the next :meth:`connect`
        starts the new checks and returns their outcome.

        :returns: done once the worker has started the new generation.
        :raises NotConnectedError: before the connection connected (or failed).
        :raises ValueError: a malformed credential, or one that is not new.
        :raises ConnectionClosedError: if the connection is closed.
        """
        if username is None:
            username = _random_string(4)
        if password is None:
            password = _random_string(22)
        validate_username(username)
        validate_password(password)
        with self._lock:
            if self._closed:
                raise self.closed_error()
            session = self._session()
            if session is None or self.phase not in (Phase.CONNECTED, Phase.FAILED):
                raise NotConnectedError("restart() needs a connection that connected")
            if username == self.local_username or password == self.local_password:
                raise ValueError("an ICE restart needs a new username and password")
            self.local_username, self.local_password = username, password
            self._remote_candidates = []
            self._remote_keys = set()
            self._remote_end = False
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._restart = (done, False)
            return self._submit(lambda: session.restart(username, password, done))

    def select_pair(
        self, component: int, local: str, remote: str, *, at_once: bool = False
    ) -> concurrent.futures.Future[None]:
        """Force the selected pair (RFC 8445 §8.1.1 skipped: no checks).

        :param at_once: count the connection as connected now, rather than
            once the worker has put the pair in place (the asyncio shim,
            which checked the foundations itself).
        :returns: done once the worker has put the pair in place; failed
            with :exc:`ValueError` if there are no such candidates.
        :raises NotConnectedError: if gathering was not performed.
        """
        session = self.check_gathered()
        lifecycle = self._lifecycle

        def select() -> None:
            session.select_pair(component, local, remote)
            if not at_once:
                lifecycle.reach(Phase.CONNECTED)

        fut = self._submit(select)
        if at_once:
            lifecycle.reach(Phase.CONNECTED)
        return fut

    def check_gathered(self) -> Session:
        """:returns: the session, once gathering is done.

        :raises ConnectionClosedError: if the connection is closed.
        :raises NotConnectedError: if gathering was not performed.
        """
        with self._lock:
            session = self._session()
            if self._closed:
                raise self.closed_error()
            if session is None or not session.gathered.done():
                raise NotConnectedError("Local candidates gathering was not performed")
            return session

    def stats(self) -> concurrent.futures.Future[list[PairStats]]:
        """Every pair's stats, from the worker (``[]`` before gathering)."""
        self.check_inherited()
        with self._lock:
            session = self._session()
        if session is None:
            fut: concurrent.futures.Future[list[PairStats]] = (
                concurrent.futures.Future()
            )
            fut.set_result([])
            return fut
        return self._submit(session.pair_stats)

    def close(self, *, release_on_worker: bool = False) -> Closing | None:
        """Close the connection; ``None`` if it was closed before.

        Every waiter is woken with :exc:`ConnectionClosedError` (on the
        worker's next turn), the sockets are closed, the TURN allocations
        released. Queues work only when called on the worker thread.

        :param release_on_worker: give the worker back from the worker
            thread once released (else :meth:`Closing.finish` does it).
        """
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            session = self._session()
            worker = self._worker()
            self._finalizer.detach()
            self._session_box.clear()
            self._worker_box.clear()
            _open.discard(self)
            closing = Closing(None if release_on_worker else worker)
            binding = session is None and self._lifecycle.phase is Phase.GATHERING
            if binding:  # the gathering job finishes the close
                self._closing = closing
        if session is None or worker is None:
            self._lifecycle.advance(Phase.CLOSED)
            self._published.closed_reason = self._published.closed_reason or "closed"
            self.inbox.end(self.closed_error(), discard=True)
            self.events.put(ConnectionClosed())
            self.events.end(None, discard=False)
            if not binding:
                _done(closing.closed)
                _done(closing.released)
            return closing

        def released() -> None:
            if release_on_worker:
                _worker.release_worker(worker)  # from the worker: it never joins
            _done(closing.released)

        def closed() -> None:
            _done(closing.closed)
            session.when_released(released)

        def close_and_release() -> None:
            try:
                session.close()
            finally:
                # At once, or once the caller reading the sockets has left
                # them and closed them (syncice._inbox); released after.
                session.when_closed(closed)

        if worker.in_worker_thread():
            closing.inline = True
            close_and_release()
        else:
            try:
                worker.post(close_and_release)
            except RuntimeError:  # a worker left behind by fork(): nothing to close
                _done(closing.closed)
                _done(closing.released)
        return closing

    def forget_after_fork(self) -> None:
        """In a child after ``fork()``: this connection is the parent's. It
        becomes closed, with reason ``"inherited across fork()"``, without
        a word to the peer (the parent still talks to it)."""
        self._inherited = True
        self._closed = True
        self._finalizer.detach()
        session = self._session()
        self._session_box.clear()
        self._worker_box.clear()
        # Locks may have been held by threads that the child does not have.
        self._lock = threading.Lock()
        self._lifecycle.reset_after_fork()
        published = self._published
        published.routes = {}
        published.closed_reason = FORKED
        self.inbox.reset_after_fork(closed_error(FORKED))
        self.events.reset_after_fork(None)
        published.candidates.reset_after_fork(closed_error(FORKED))
        if session is not None:
            session.forget_after_fork()

    # --- ICE-lite and descriptions (syncice._lite, syncice.description) -----

    @property
    def lite(self) -> bool:
        """Whether this is an ICE-lite connection (the config is frozen)."""
        return self._agent.config.ice_lite

    @property
    def remote_end(self) -> bool:
        """Whether end-of-candidates was given for the peer."""
        return self._remote_end

    # --- what an application sees (syncice._appview, syncice._trickle) ------

    @property
    def state(self) -> ConnectionState:
        """The connection's state (the table of :mod:`syncice._appview`)."""
        # The feed ends before anyone hears that gathering is done.
        settled = self._remote_end and self._published.candidates.ended
        return connection_state(self._lifecycle.phase, settled)
