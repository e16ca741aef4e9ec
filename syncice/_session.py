"""The worker-thread half of a connection: :class:`Session` drives one
:class:`~syncice.ice.IceAgent` (aioquic's ``asyncio/protocol.py`` to its
``QuicConnection``).

Every method of :class:`Session` runs on the worker thread, which owns the
agent and the sockets once gathering has started: it reads the sockets
(unless it lent them to a waiting blocking caller, the hand-over of
:mod:`syncice._inbox`: :meth:`Session._lend`, taken back by
:meth:`Session._reclaim`, :meth:`Session._sweep` and :meth:`Session.close`;
what such a caller reads but does not keep, and the counts of what it
keeps, come back through :meth:`Session._absorb`), fires the agent's timer,
sends what the agent queued, and turns the agent's events into what callers see:
datagrams and events in mailboxes (:mod:`syncice._inbox`), the futures of
gathering and connecting, the life cycle (:mod:`syncice._lifecycle`) and
:class:`Published` state. An exception escaping a handler closes this
connection with reason ``"internal error"``; the worker and the other
connections go on.

What callers read without a hop (:class:`Published`) is replaced, never
changed, in one assignment: a route is an immutable object.

mDNS rewriting lives here too: host candidates shown with a ``.local`` name
(:func:`mdns_shown`) and remote ``.local`` candidates resolved by the
worker's mDNS socket before the agent sees them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _sockets
from ._batch import BatchSender, GroSwitch, receive
from ._bind import BindOptions
from ._checklist import PairStats
from ._inbox import SWEEP, Inbox, Lease, Owner
from ._lifecycle import Lifecycle, Phase
from ._mdns_socket import MdnsService, acquire_mdns
from ._routes import Relayed, Route, RouteKey, with_sent
from ._trickle import CandidateFeed, gathering_ended
from ._worker import Deadline, TimerHandle, Worker
from .candidate import Candidate
from .events import (
    CandidateGathered,
    ConnectionClosed,
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceEvent,
    IceFailed,
    RelayLost,
    RoleChanged,
    SelectedPairChanged,
)
from .exceptions import ConnectionClosedError, NegotiationFailedError
from .ice import IceAgent
from .mdns import create_mdns_hostname, is_mdns_hostname
from .turn import TurnAllocation

if TYPE_CHECKING:
    from ._appview import EventBox
    from ._sockets import TurnPath
    from ._stream import StreamTransport
    from ._tcp_links import TcpLinks

__all__ = [
    "Published",
    "Session",
    "closed_error",
    "mdns_shown",
    "readdressed",
]

logger = logging.getLogger("syncice.connection")

Address = tuple[str, int]
Item = tuple[bytes, int]

#: How many datagrams the worker reads from one socket before serving others.
_READ_BATCH = 64
#: The longest period of the sweep of lent sockets (see _sweep), seconds.
_SWEEP_MAX = 0.8


def closed_error(reason: str) -> ConnectionClosedError:
    """The error of calls on a connection closed for ``reason``."""
    text = "Connection closed" if reason == "closed" else f"Connection closed: {reason}"
    return ConnectionClosedError(text, reason)


def _succeeded() -> concurrent.futures.Future[None]:
    fut: concurrent.futures.Future[None] = concurrent.futures.Future()
    fut.set_result(None)
    return fut


#: A future that succeeded, shared: what a session keeps of its own once
#: they have (a Future with its Condition costs 1.6 KiB, per connection).
SUCCEEDED = _succeeded()


def _resolve(fut: concurrent.futures.Future[None], error: BaseException | None) -> None:
    if not fut.done():
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


def mdns_shown(candidate: Candidate, names: dict[str, str]) -> Candidate:
    """``candidate`` as shown with mDNS host candidates: a host candidate
    carries the name of its address (from ``names``), and the related address
    of any other is hidden as "0.0.0.0" or "::", port 0, as browsers do
    (draft-ietf-mmusic-mdns-ice-candidates), so no private address shows."""
    if candidate.type == "host":
        return readdressed(candidate, names.get(candidate.host, candidate.host))
    related = candidate.related_address
    if related is None:
        return candidate
    hidden = "::" if ":" in related else "0.0.0.0"
    return readdressed(candidate, candidate.host, (hidden, 0))


def readdressed(
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


class Session:
    """The worker-thread half of a connection: agent, sockets, timer.

    Every method runs on the worker thread. An exception escaping a handler
    closes this connection with reason ``"internal error"``; the worker and
    the other connections go on.
    """

    __slots__ = (
        "agent",
        "batch",
        "bind",
        "closed",
        "connected",
        "direct_reads",
        "events",
        "gathered",
        "gro",
        "inbox",
        "lease",
        "lifecycle",
        "mdns",
        "mdns_host_candidates",
        "mdns_names",
        "name",
        "next_endpoint",
        "peer_count",
        "published",
        "relay_only",
        "released",
        "remote_end_held",
        "resolving",
        "retired_routes",
        "retired_sent",
        "send_errors",
        "sockets",
        "streams",
        "sweep_period",
        "sweeper",
        "tcp",
        "timer",
        "turn_paths",
        "turn_sockets",
        "worker",
    )

    def __init__(
        self,
        worker: Worker,
        agent: IceAgent,
        inbox: Inbox,
        events: EventBox,
        publish: Published,
        name: str,
    ) -> None:
        self.worker = worker
        self.agent = agent
        self.inbox = inbox
        self.events = events
        self.published = publish
        self.lifecycle = publish.lifecycle
        self.name = name
        self.sockets: dict[int, socket.socket] = {}
        self.timer = Deadline(worker, self.on_timer)
        self.gathered: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.connected: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.closed = False
        self.send_errors = 0
        # Routes replaced (a new selected pair), the last of each pair, and
        # what earlier ones carried: bounded, however often a peer renominates.
        self.retired_routes: dict[RouteKey, Route] = {}
        self.retired_sent: dict[RouteKey, tuple[int, int]] = {}
        # The paths to TURN servers: UDP sockets (also in self.sockets) and
        # streams, by transport endpoint; closed once the allocations are
        # released, which self.released tells.
        self.turn_sockets: dict[int, socket.socket] = {}
        self.streams: dict[int, StreamTransport] = {}
        self.turn_paths: dict[int, TurnPath] = {}
        self.next_endpoint = 0
        # ICE-TCP's listening sockets and connections, with transports=tcp.
        self.tcp: TcpLinks | None = None
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
        # Direct reads (syncice._inbox): whether blocking callers may read
        # the sockets (the facade says), the hand-over once offered, the
        # sweep of lent sockets and its period, and how many authenticated
        # peers the lease was last shown.
        self.direct_reads = False
        #: The port range and buffer sizes of the sockets it binds itself.
        self.bind = BindOptions()
        self.lease: Lease | None = None
        self.sweeper: TimerHandle | None = None
        self.sweep_period = SWEEP
        self.peer_count = 0
        # How send_many() writes: one for the connection, so that whether
        # GSO works is found once.
        self.batch = BatchSender(gso=None if agent.config.batch_io else False)
        # Whether the kernel is to glue what the sockets receive (GRO), asked
        # for by recv_many(); whoever reads a socket turns it on first.
        self.gro = GroSwitch()

    # --- commands (run on the worker) --------------------------------------

    def start_gathering(
        self,
        sockets: list[tuple[socket.socket, int]],
        stun_servers: list[Address],
        turn: list[TurnPath],
        remote: list[Candidate | None],
        listeners: list[tuple[socket.socket, int]] | None = None,
        simultaneous: list[tuple[socket.socket, int]] | None = None,
    ) -> None:
        self._guard(
            self._start_gathering,
            sockets,
            stun_servers,
            turn,
            remote,
            listeners,
            simultaneous,
        )

    def _start_gathering(
        self,
        sockets: list[tuple[socket.socket, int]],
        stun_servers: list[Address],
        turn: list[TurnPath],
        remote: list[Candidate | None],
        listeners: list[tuple[socket.socket, int]] | None = None,
        simultaneous: list[tuple[socket.socket, int]] | None = None,
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
        if listeners is not None:
            from ._tcp_session import start_tcp

            start_tcp(self, listeners, simultaneous or [])
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
            agent.add_remote_candidate(readdressed(candidate, address), now)
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
        """``candidate`` as the user sees it (:func:`mdns_shown`)."""
        if not self.mdns_host_candidates:
            return candidate
        return mdns_shown(candidate, self.mdns_names)

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

    def restart(
        self, username: str, password: str, done: concurrent.futures.Future[None]
    ) -> None:
        """An ICE restart (``IceAgent.restart``): ``done`` is the outcome of
        the new generation's checks, which the next connect() starts."""
        self._guard(self._restart, username, password, done)

    def _restart(
        self, username: str, password: str, done: concurrent.futures.Future[None]
    ) -> None:
        if self.closed:
            _resolve(done, closed_error(self.published.closed_reason or "closed"))
            return
        self.agent.restart(username, password)
        earlier, self.connected = self.connected, done
        if not earlier.done():
            # A restart of a restart: who waits on the first waits on this one.
            done.add_done_callback(lambda f: _resolve(earlier, f.exception()))
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

    def pair_stats(self) -> list[PairStats]:
        """Every pair's stats, with what callers sent on its routes and
        read themselves."""
        self._absorb()
        routes = [*self.retired_routes.values(), *self.published.routes.values()]
        return with_sent(self.agent.pair_stats(), routes, self.retired_sent)

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
        new = self.next_endpoint
        self.next_endpoint += 1
        path = self.turn_paths.pop(old)
        previous = sock  # closed after: the new socket gets another port
        try:
            sock = _sockets.bind_udp(local, path.bind)
        except OSError as exc:
            self.agent.transport_lost(old, f"no socket: {exc}", now)
            return
        finally:
            previous.close()
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
        bind = self.turn_paths[transport].bind
        sock = _sockets.stream_socket(":" in server[0], bind)
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
        take = self.agent.receive_datagram
        now = self.worker.clock.now()
        got: list[Item] = []
        other = False  # STUN or dropped: the agent's state may have moved
        if self.gro.wanted and self.gro.reads_glued(sock, endpoint):
            glued: list[tuple[bytes, Address]] = []
            for _ in range(_READ_BATCH):
                try:
                    if not receive(sock, glued, 1):
                        break
                except OSError:  # an ICMP error: nothing to read here
                    continue
            datagrams = glued
        else:
            datagrams = self._read_plain(sock)
        for data, addr in datagrams:
            item = take(endpoint, data, addr, now)
            if item is None:
                other = True
            else:
                got.append(item)
        if got:
            # The mailbox's lock once per batch, and never across a read.
            self.inbox.put_many(got)
        # Application data changes nothing in the agent: only then is the
        # flush (and its timer scan) skipped.
        if other:
            self.flush()

    @staticmethod
    def _read_plain(sock: socket.socket) -> list[tuple[bytes, Address]]:
        """What is waiting on ``sock``, one ``recvfrom`` each, at most
        :data:`_READ_BATCH` reads."""
        recvfrom = sock.recvfrom
        got = []
        for _ in range(_READ_BATCH):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP errors reported on the socket: nothing to read here.
                continue
            got.append((data, (addr[0], addr[1])))
        return got

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
                elif self.tcp is not None:
                    self.tcp.send(endpoint, data, addr)
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
        lease = self.lease
        if lease is not None:
            count = agent.authenticated_count()
            if count != self.peer_count:  # the set only grows
                self.peer_count = count
                lease.peers = agent.authenticated_peers()
        self._rearm()

    def _dispatch(self, event: object) -> None:
        published = self.published
        if isinstance(event, CandidateGathered):  # trickled (syncice._trickle)
            if self.mdns_host_candidates:
                event = CandidateGathered(candidate=self._shown(event.candidate))
            published.candidates.add(event.candidate)
        if self.events.everything and isinstance(event, IceEvent):
            self.events.put(event)  # events="all" (syncice._appview)
        if isinstance(event, SelectedPairChanged):
            pair = self.agent.selected[event.component]
            routes = dict(published.routes)
            old = routes.get(event.component)
            if old is not None:
                self._retire(old)
            routes[event.component] = self._route(
                event.component, pair.endpoint, pair.remote_addr
            )
            routes[event.component].key = (event.component, event.local, event.remote)
            published.routes = routes
        elif isinstance(event, IceCompleted):
            self._offer_lease()
            self.lifecycle.reach(Phase.CONNECTED)
            _resolve(self.connected, None)
            self.connected = SUCCEEDED  # the callers hold theirs
        elif isinstance(event, IceFailed):
            if not self.connected.done():
                self.lifecycle.advance(Phase.FAILED)
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
            published.candidates.finish()
            gathering_ended(self.lifecycle)
            _resolve(self.gathered, None)
            self.gathered = SUCCEEDED
        elif isinstance(event, RoleChanged):
            published.controlling = event.controlling
        elif isinstance(event, ConsentExpired):
            self.close("consent expired")
        elif isinstance(event, RelayLost):
            self.close(f"TURN relay lost: {event.reason}")

    def _route(self, component: int, endpoint: int, addr: Address) -> Route:
        relay = self.agent.relay(endpoint)
        if relay is None and self.tcp is not None and self.tcp.owns(endpoint):
            worker = self.worker

            def post_tcp(data: bytes) -> None:
                worker.post(lambda: self.send_data(component, data))

            # The caller writes the pair's stream itself, under the
            # connection's lock; posted to the worker while it connects.
            write = self.tcp.writer(endpoint, addr)
            return Route(None, addr, Relayed({}, addr, post_tcp, write))
        if relay is None:
            return Route(self.sockets[endpoint], addr, batch=self.batch)
        transport, allocation = relay
        worker = self.worker

        def post(data: bytes) -> None:
            worker.post(lambda: self.send_data(component, data))

        return Route(
            self.turn_sockets.get(transport),
            allocation.server,
            Relayed(allocation.channels, addr, post),
        )

    def _retire(self, route: Route) -> None:
        """Keep ``route``, replaced now, for the stats: a caller that fetched
        it before may still send on it, and is counted there."""
        key = route.key
        if key is not None:
            older = self.retired_routes.pop(key, None)
            if older is not None:  # its callers are long done: keep its counts
                count, size = self.retired_sent.get(key, (0, 0))
                sent, sent_bytes = older.counts()
                self.retired_sent[key] = (count + sent, size + sent_bytes)
            self.retired_routes[key] = route

    # --- direct reads (syncice._inbox) ------------------------------------------

    def _offer_lease(self) -> None:
        """Let blocking callers read the sockets themselves once connected;
        not with TURN (the worker unwraps relayed data), nor for the asyncio
        shim (whose callers must never block)."""
        if (
            not self.direct_reads
            or self.lease is not None
            or self.agent.relay_count
            # ICE-TCP's streams are the worker's; the UDP sockets, if any,
            # may still be lent (TCP data reaches the reader by the inbox).
            or not self.sockets
        ):
            return
        lease = Lease(
            tuple((sock, endpoint) for endpoint, sock in self.sockets.items()),
            post=self.worker.post,
            # Bound methods, not closures: a third of the memory, per connection.
            lend=self._lend_guarded,
            reclaim=self._reclaim_guarded,
            take=self._absorb_guarded,
            gro=self.gro,
        )
        self.peer_count = self.agent.authenticated_count()
        lease.peers = self.agent.authenticated_peers()
        self.lease = lease
        self.inbox.offer(lease)

    def _lend_guarded(self) -> None:
        self._guard(self._lend)

    def _reclaim_guarded(self) -> None:
        self._guard(self._reclaim)

    def _absorb_guarded(self) -> None:
        self._guard(self._absorb)

    def _lend(self) -> None:
        """A caller waits: hand it the sockets (see Lease)."""
        lease = self.lease
        # Only the worker moves the owner away from WORKER: no race here.
        if lease is None or self.closed or lease.owner is not Owner.WORKER:
            return
        for sock, _ in lease.sockets:
            self.worker.remove_reader(sock)
        lease.lent()
        self.sweep_period = SWEEP
        if self.sweeper is None:
            self.sweeper = self.worker.call_at(
                self.worker.clock.now() + SWEEP, self._sweep
            )

    def _take_back(self, lease: Lease) -> None:
        for sock, endpoint in lease.sockets:
            self.worker.add_reader(sock, self._reader(endpoint, sock))

    def _reclaim(self) -> None:
        """A reader gave the sockets back (busy): into the selector again."""
        lease = self.lease
        if lease is not None and not self.closed and lease.reclaim():
            if self.sweeper is not None:
                self.sweeper.cancel()
                self.sweeper = None
            self._take_back(lease)

    def _sweep(self) -> None:
        """The periodic look at lent sockets: idle ones come back to the
        selector, so that data nobody waits for is queued (and counted)
        rather than left in the socket. The period doubles, up to
        _SWEEP_MAX, while one caller waits all along."""
        self.sweeper = None
        lease = self.lease
        if lease is None or self.closed:
            return
        try:
            self._absorb()
            came = lease.sweep()
            if came is None:
                if lease.owner is Owner.WORKER:
                    self._take_back(lease)
                return
            if came:
                self.sweep_period = SWEEP
            else:  # one caller has waited all along
                self.sweep_period = min(self.sweep_period * 2, _SWEEP_MAX)
            self.sweeper = self.worker.call_at(
                self.worker.clock.now() + self.sweep_period, self._sweep
            )
        except Exception:
            self._internal_error()

    def _absorb(self) -> None:
        """Take what readers left: the counts of the data they kept, for the
        pairs' stats, and the datagrams they forwarded, for the agent (then
        :meth:`flush`: they may be checks to answer)."""
        lease = self.lease
        if lease is None:
            return
        forwarded, counts = lease.take()
        agent = self.agent
        for (endpoint, addr), (count, size) in counts.items():
            agent.count_received(endpoint, addr, size, count)
        if not forwarded or self.closed:
            return
        receive = agent.receive_datagram
        now = self.worker.clock.now()
        got = []
        for endpoint, data, addr in forwarded:
            item = receive(endpoint, data, addr, now)
            if item is not None:  # a peer authenticated since it was shown
                got.append(item)
        if got:
            self.inbox.put_many(got)
        self.flush()

    def when_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once :meth:`close` has closed the sockets: at
        once, or in the thread of the caller that was reading them."""
        if self.lease is None:
            callback()
        else:
            self.lease.when_closed(callback)

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
        error = closed_error(reason)
        self.agent.close(self.worker.clock.now())
        self.timer.set(None)
        self.lifecycle.advance(Phase.CLOSED)
        # TURN sockets stay open (and read) until their allocations are
        # released: _maybe_released() closes them.
        hosts = [sock for e, sock in self.sockets.items() if e not in self.turn_sockets]
        for sock in hosts:
            self.worker.remove_reader(sock)
        lease = self.lease
        if lease is not None:
            if self.sweeper is not None:
                self.sweeper.cancel()
                self.sweeper = None
            self._absorb()
        # Lent sockets that a caller is reading are closed by that caller
        # as it leaves (woken below), the others now.
        leased = set()
        if lease is not None:
            leased = {id(sock) for sock, _ in lease.sockets}
            lease.close()
        for sock in hosts:
            if id(sock) not in leased:
                sock.close()
        if self.tcp is not None:
            self.tcp.close()
        for route in self.published.routes.values():
            self._retire(route)
        self.published.routes = {}
        self.published.closed_reason = reason
        # Data that arrived before a consent expiry stays readable.
        self.inbox.end(error, discard=reason == "closed")
        self.published.candidates.finish(error)
        _resolve(self.gathered, error)
        _resolve(self.connected, error)
        self.events.put(ConnectionClosed())
        self.events.end(None, discard=False)
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
        if self.tcp is not None:
            self.tcp.forget_after_fork()
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


class Published:
    """What the worker shows the facade: each field replaced in one assignment."""

    def __init__(self, controlling: bool) -> None:
        self.routes: dict[int, Route] = {}
        self.local_candidates: tuple[Candidate, ...] = ()
        self.controlling = controlling
        self.closed_reason: str | None = None
        self.lifecycle = Lifecycle()
        #: The local candidates as gathered (syncice._trickle).
        self.candidates = CandidateFeed()
