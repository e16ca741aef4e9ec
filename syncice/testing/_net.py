"""The virtual network: hosts, NATs, links, delivery in virtual time."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

from syncice.events import IceEvent
from syncice.exceptions import StunParseError
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Address, Class, Message, parse_message
from syncice.testing._link import PERFECT, Datagram, Link
from syncice.testing._nat import Nat, NatBehavior
from syncice.testing._peer import Outcome, Peer

if TYPE_CHECKING:
    from syncice.testing._servers import TurnServer

#: A receiver sees ``(source, destination, data)`` of a datagram delivered to
#: an address it is bound to.
Receiver = Callable[[Address, Address, bytes], None]

#: A filter sees ``(source, destination, data)`` of every datagram sent and
#: returns ``False`` to drop it (see :attr:`VirtualNet.filters`).
Filter = Callable[[Address, Address, bytes], bool]


@dataclass
class NetStats:
    """Counters of :class:`VirtualNet`: datagrams sent, delivered, and lost on
    links, unroutable (to a private or unknown address, or no one bound)."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unroutable: int = 0
    filtered: int = 0


@dataclass
class _Host:
    ip: str
    nat: Nat | None


_Stage = Literal["nat_out", "edge", "nat_in", "deliver"]


class VirtualNet:
    """A virtual network of hosts, NATs, links and servers, in virtual time.

    :param seed: seeds the one :class:`random.Random` every random choice
        comes from.
    :param core: the link profile between the access links (both ways).
    :param link: the default access link profile (both ways) of hosts and
        NATs added without one.
    :param up: the default access link towards the internet, if not ``link``.
    :param down: the default access link from the internet, if not ``link``.
        ``VirtualNet(up=Link(delay=0.001), down=Link())`` makes every datagram
        between two public hosts take exactly 1 ms.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        core: Link = PERFECT,
        link: Link | None = None,
        up: Link | None = None,
        down: Link | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        #: The virtual time, in seconds.
        self.now = 0.0
        #: The link profile of the core, between the access links.
        self.core = core
        self.default_link = link if link is not None else Link(delay=0.005)
        self.default_up = up if up is not None else self.default_link
        self.default_down = down if down is not None else self.default_link
        self.stats = NetStats()
        #: Every datagram delivered, in order (for :meth:`messages`).
        self.delivered: list[Datagram] = []
        #: Every datagram an agent handed out, when it did, from the address
        #: it sent from (for :meth:`sent_messages`).
        self.sent: list[Datagram] = []
        #: The agents, in the order they were added.
        self.peers: list[Peer] = []
        #: Filters every datagram sent (or injected) goes through, after
        #: static NAT of its source: one returning ``False`` drops it (counted
        #: in :attr:`NetStats.filtered`). Tests append and clear them.
        self.filters: list[Filter] = []
        #: Static one-to-one NAT: private address -> public address (see
        #: :meth:`add_static_nat`).
        self.static_nat: dict[Address, Address] = {}
        #: ``(agent name, now, timer)`` whenever an agent's
        #: :meth:`~syncice.ice.IceAgent.get_timer` was not after ``now`` right
        #: after :meth:`~syncice.ice.IceAgent.handle_timer`: a driver would
        #: spin. Tests assert it stays empty.
        self.stuck_timers: list[tuple[str, float, float]] = []
        self._hosts: dict[str, _Host] = {}
        self._nats: dict[str, Nat] = {}
        self._links: dict[str, tuple[Link, Link]] = {}
        self._bound: dict[Address, Receiver] = {}
        self._stream_servers: dict[Address, TurnServer] = {}
        self._queue: list[tuple[float, int, _Stage, Address, Address, bytes]] = []
        self._streams: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # --- topology ----------------------------------------------------------------

    def add_nat(
        self,
        public_ip: str,
        behavior: NatBehavior | None = None,
        *,
        link: Link | None = None,
        up: Link | None = None,
        down: Link | None = None,
    ) -> Nat:
        """Add a NAT with a public address on the internet.

        :param behavior: its RFC 4787 behaviour; a port-restricted cone NAT
            (RFC 4787's recommendation) by default.
        :param link: its public access link both ways, or ``up`` (towards the
            internet) and ``down`` separately.
        :raises ValueError: if the address is taken.
        """
        self._check_free(public_ip)
        nat = Nat(
            public_ip,
            behavior if behavior is not None else NatBehavior.port_restricted_cone(),
        )
        self._nats[public_ip] = nat
        self.set_link(public_ip, link, up=up, down=down)
        return nat

    def add_host(
        self,
        ip: str,
        *,
        nat: Nat | None = None,
        link: Link | None = None,
        up: Link | None = None,
        down: Link | None = None,
    ) -> str:
        """Add a host, on the internet or behind ``nat``; return its IP.

        Addresses are unique across the whole network, private ones included.

        :param link: its access link both ways, or ``up`` (towards the
            internet) and ``down`` separately.
        :raises ValueError: if the address is taken.
        """
        self._check_free(ip)
        self._hosts[ip] = _Host(ip, nat)
        if nat is not None:
            nat.private.add(ip)
        self.set_link(ip, link, up=up, down=down)
        return ip

    def _check_free(self, ip: str) -> None:
        if ip in self._hosts or ip in self._nats:
            raise ValueError(f"address {ip} is already on the network")

    def set_link(
        self,
        ip: str,
        link: Link | None = None,
        *,
        up: Link | None = None,
        down: Link | None = None,
    ) -> None:
        """Set the access link of a host or NAT: ``link`` both ways, or ``up``
        (from it towards the internet) and ``down``; the network's default
        for a direction left out."""
        if ip not in self._hosts and ip not in self._nats:
            raise ValueError(f"no host or NAT at {ip}")
        self._links[ip] = (
            up if up is not None else link if link is not None else self.default_up,
            down
            if down is not None
            else link
            if link is not None
            else self.default_down,
        )

    @property
    def hosts(self) -> frozenset[str]:
        """The IP addresses of the hosts on the network."""
        return frozenset(self._hosts)

    def link(self, ip: str) -> tuple[Link, Link]:
        """The access link of a host or NAT: ``(up, down)``."""
        return self._links[ip]

    def nat_of(self, ip: str) -> Nat | None:
        """The NAT a host is behind, or ``None`` for a public host."""
        return self._hosts[ip].nat

    def bind(self, addr: Address, receiver: Receiver) -> None:
        """Deliver datagrams to ``addr`` (on a host added before) to
        ``receiver``.

        :raises ValueError: if the host is unknown or the address is bound.
        """
        if addr[0] not in self._hosts:
            raise ValueError(f"no host {addr[0]}")
        if addr in self._bound:
            raise ValueError(f"{addr} is already bound")
        self._bound[addr] = receiver

    def unbind(self, addr: Address) -> None:
        """Stop delivering to ``addr``."""
        self._bound.pop(addr, None)

    def socket(self, addr: Address) -> Socket:
        """A :class:`Socket` bound to ``addr``, which records what it gets."""
        return Socket(self, addr)

    # --- sending ------------------------------------------------------------------

    def send(self, src: Address, dst: Address, data: bytes) -> None:
        """Send a UDP datagram from ``src`` (an address on a host) to ``dst``,
        now. It crosses the links and NATs on the way, as the module says.

        :raises ValueError: if ``src`` is not on a host of the network.
        """
        host = self._hosts.get(src[0])
        if host is None:
            raise ValueError(f"no host {src[0]}")
        self.stats.sent += 1
        up = self._links[src[0]][0]
        src = self.static_nat.get(src, src)
        if not self._passes(src, dst, data):
            return
        if host.nat is None:
            self._cross((up, self.core), "edge", src, dst, data)
        elif dst[0] in host.nat.private:
            down = self._links[dst[0]][1]
            self._cross((up, down), "deliver", src, dst, data)
        else:
            self._cross((up,), "nat_out", src, dst, data)

    def _passes(self, src: Address, dst: Address, data: bytes) -> bool:
        if all(f(src, dst, data) for f in self.filters):
            return True
        self.stats.filtered += 1
        return False

    def inject(
        self, src: Address, dst: Address, data: bytes, *, delay: float | None = None
    ) -> None:
        """Put a datagram in flight from any address (forged ones included)
        to ``dst``, arriving ``delay`` seconds from now: by default after the
        up link delay of ``src``'s host (if it is one) and the core's. It
        goes through :attr:`static_nat` and :attr:`filters` as sent ones do,
        but through no link (no loss, no jitter) and no dynamic NAT on the
        way out.
        """
        if delay is None:
            link = self._links.get(src[0])
            delay = (0.0 if link is None else link[0].delay) + self.core.delay
        src = self.static_nat.get(src, src)
        if self._passes(src, dst, data):
            item: tuple[float, int, _Stage, Address, Address, bytes] = (
                self.now + delay,
                next(self._seq),
                "edge",
                src,
                dst,
                data,
            )
            heapq.heappush(self._queue, item)

    def add_static_nat(self, private: Address, public: Address) -> None:
        """Map ``private`` to ``public`` one to one, for every peer: what a
        public host sends from ``private`` leaves with ``public`` as its
        source, and what is sent to ``public`` reaches ``private``. No
        filtering, no timeout, no port allocation: for tests that need one
        exact mapped address (dynamic NATs are :meth:`add_nat`)."""
        self.static_nat[private] = public

    def _cross(
        self,
        links: tuple[Link, ...],
        stage: _Stage,
        src: Address,
        dst: Address,
        data: bytes,
    ) -> None:
        times = [self.now]
        for link in links:
            times = [t for at in times for t in link.cross(at, self.rng)]
        if not times:
            self.stats.lost += 1
        self.stats.duplicated += max(0, len(times) - 1)
        for at in times:
            heapq.heappush(self._queue, (at, next(self._seq), stage, src, dst, data))

    def _arrive(self, stage: _Stage, src: Address, dst: Address, data: bytes) -> None:
        if stage == "nat_out":
            nat = self._hosts[src[0]].nat
            assert nat is not None
            public = nat.outbound("udp", src, dst, self.now)
            if public is None:
                return
            if dst[0] == nat.public_ip:
                if not nat.behavior.hairpinning:
                    nat.stats.hairpin_dropped += 1
                    return
                self._arrive("nat_in", public, dst, data)
                return
            up = self._links[nat.public_ip][0]
            self._cross((up, self.core), "edge", public, dst, data)
        elif stage == "edge":
            dst = next((p for p, pub in self.static_nat.items() if pub == dst), dst)
            if dst[0] in self._nats:
                down = self._links[dst[0]][1]
                self._cross((down,), "nat_in", src, dst, data)
                return
            host = self._hosts.get(dst[0])
            if host is None or host.nat is not None:
                self.stats.unroutable += 1
                return
            self._cross((self._links[dst[0]][1],), "deliver", src, dst, data)
        elif stage == "nat_in":
            nat = self._nats[dst[0]]
            private = nat.inbound("udp", dst[1], src, self.now)
            if private is not None:
                down = self._links[private[0]][1]
                self._cross((down,), "deliver", src, private, data)
        else:
            receiver = self._bound.get(dst)
            if receiver is None:
                self.stats.unroutable += 1
                return
            self.stats.delivered += 1
            self.delivered.append(Datagram(self.now, src, dst, data))
            receiver(src, dst, data)

    # --- what is in flight, for tests that lose, copy or hold datagrams ---------

    def in_flight(self) -> list[Datagram]:
        """The datagrams in flight, soonest first, each with the time it
        reaches its next stop (a NAT, an access link or its receiver) and
        its addresses as they are there."""
        return [
            Datagram(at, s, d, data) for at, _, _, s, d, data in sorted(self._queue)
        ]

    def _pick(self, index: int) -> int:
        if not self._queue:
            raise IndexError("nothing in flight")
        ordered = sorted(range(len(self._queue)), key=lambda i: self._queue[i])
        return ordered[index % len(ordered)]

    def drop(self, index: int) -> None:
        """Lose the ``index``-th datagram of :meth:`in_flight` (modulo their
        number).

        :raises IndexError: if nothing is in flight.
        """
        del self._queue[self._pick(index)]
        heapq.heapify(self._queue)

    def duplicate(self, index: int, extra: float = 0.0) -> None:
        """Deliver the ``index``-th datagram of :meth:`in_flight` twice, the
        copy ``extra`` seconds later.

        :raises IndexError: if nothing is in flight.
        """
        at, _, stage, src, dst, data = self._queue[self._pick(index)]
        item = (at + extra, next(self._seq), stage, src, dst, data)
        heapq.heappush(self._queue, item)

    def hold(self, index: int, extra: float) -> None:
        """Delay the ``index``-th datagram of :meth:`in_flight` by ``extra``
        seconds.

        :raises IndexError: if nothing is in flight.
        """
        i = self._pick(index)
        at, seq, stage, src, dst, data = self._queue[i]
        self._queue[i] = (at + extra, seq, stage, src, dst, data)
        heapq.heapify(self._queue)

    # --- streams (TCP to a TURN server) --------------------------------------

    def open_stream(
        self, client: Address, server: Address, on_data: Callable[[bytes], None]
    ) -> Stream:
        """Open a reliable ordered byte stream (TCP) from ``client`` to the
        :class:`TurnServer` listening at ``server``; ``on_data`` gets what
        the server sends back.

        :raises ValueError: if nothing listens at ``server``.
        """
        listener = self._stream_servers.get(server)
        if listener is None:
            raise ValueError(f"no stream server at {server}")
        host = self._hosts[client[0]]
        seen = client
        delay = self._links[client[0]][0].delay + self.core.delay
        if host.nat is not None:
            public = host.nat.outbound("tcp", client, server, self.now)
            if public is None:
                raise ValueError("the NAT has no port left")
            seen = public
            delay += self._links[host.nat.public_ip][0].delay
        delay += self._links[server[0]][1].delay
        stream = Stream(self, client, server, seen, delay, on_data)
        listener.accept(stream)
        return stream

    def _stream_push(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._streams, (at, next(self._seq), action))

    # --- agents ------------------------------------------------------------------

    def add_agent(
        self,
        name: str,
        ip: str,
        *,
        controlling: bool = True,
        stun: Address | None = None,
        turn: TurnServer | None = None,
        turn_transport: Literal["udp", "tcp"] = "udp",
        relay_only: bool = False,
        components: int = 1,
        config: IceConfig | None = None,
        port: int = 5000,
    ) -> Peer:
        """Add an ICE agent on host ``ip`` (see :class:`Peer`).

        :param name: names the agent in logs and timelines.
        :param stun: a STUN server to gather a server-reflexive candidate from.
        :param turn: a TURN server to allocate a relayed candidate on, with
            its credentials.
        :param turn_transport: how the agent reaches the TURN server.
        :param relay_only: no host candidate (and so no server-reflexive
            one): only the relayed candidate, as
            :attr:`syncice.TransportPolicy.RELAY` does.
        :param port: the host candidate of component ``c`` is at
            ``(ip, port + c - 1)``; the TURN transport at ``port + 100 + c``.
        """
        if ip not in self._hosts:
            raise ValueError(f"no host {ip}")
        peer = Peer(self, name, ip, controlling, components, config, stun)
        for component in range(1, components + 1):
            if not relay_only:
                peer.add_host(component - 1, component, (ip, port + component - 1))
            if turn is not None:
                peer.add_turn(
                    100 + component,
                    200 + component,
                    component,
                    (ip, port + 100 + component),
                    turn,
                    turn_transport,
                )
        self.peers.append(peer)
        return peer

    def attach(self, agent: IceAgent, *, stun: Address | None = None) -> Peer:
        """Put an agent built elsewhere on the network, with no address yet:
        give it some with :meth:`Peer.add_host` and :meth:`Peer.add_transport`.
        Its name names the :class:`Peer`.

        :param stun: the STUN server :meth:`gather` gathers from.
        :raises ValueError: if the agent is on the network already.
        """
        if any(p.agent is agent for p in self.peers):
            raise ValueError(f"agent {agent.name} is already on the network")
        peer = Peer(self, agent.name, "", agent.controlling, 0, None, stun, agent=agent)
        self.peers.append(peer)
        return peer

    def peer(self, agent: IceAgent | Peer) -> Peer:
        """The :class:`Peer` holding ``agent`` (or ``agent`` itself).

        :raises KeyError: if the agent is not on the network.
        """
        if isinstance(agent, Peer):
            return agent
        for peer in self.peers:
            if peer.agent is agent:
                return peer
        raise KeyError(f"agent {agent.name} is not on the network")

    def gather(self, *peers: Peer, until: float | None = None) -> None:
        """Start gathering on ``peers`` and run until they have all gathered
        (or until ``until``, by default their configs' gather timeout)."""
        bound = self.now + max(p.agent.config.gather_timeout for p in peers) + 1.0
        for peer in peers:
            peer.agent.gather(self.now, [] if peer.stun is None else [peer.stun])
        self.run(
            bound if until is None else until,
            stop=lambda: all(p.gathered for p in peers),
        )

    def exchange(self, a: Peer, b: Peer) -> None:
        """Give each agent the other's credentials and local candidates, and
        end-of-candidates."""
        a.agent.set_remote_credentials(b.agent.local_username, b.agent.local_password)
        b.agent.set_remote_credentials(a.agent.local_username, a.agent.local_password)
        for x, y in ((a, b), (b, a)):
            for candidate in x.agent.local_candidates:
                y.agent.add_remote_candidate(candidate, self.now)
            y.agent.add_remote_candidate(None, self.now)

    def connect(self, a: Peer, b: Peer, *, timeout: float = 60.0) -> Outcome:
        """Gather (if not done), exchange candidates, connect both agents and
        run until both are done or ``timeout`` virtual seconds have passed.

        :returns: what happened, seen from ``a``.
        """
        for peer in (a, b):
            if not peer.gathered:
                self.gather(peer)
        self.exchange(a, b)
        start = self.now
        a.agent.connect(self.now)
        b.agent.connect(self.now)
        self.run(
            start + timeout,
            stop=lambda: a.state != IceState.CHECKING and b.state != IceState.CHECKING,
        )
        return Outcome.of(a, b, start)

    # --- running -----------------------------------------------------------------

    def flush(self) -> None:
        """Move every agent's output onto the network and its events into its
        timeline."""
        for peer in self.peers:
            peer.flush()

    def next_deadline(self) -> float | None:
        """The earliest datagram arrival or agent timer, or ``None``."""
        times = [t for p in self.peers if (t := p.agent.get_timer()) is not None]
        if self._queue:
            times.append(self._queue[0][0])
        if self._streams:
            times.append(self._streams[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next deadline and run everything due then; ``False``
        when there is nothing left to do."""
        self.flush()
        at = self.next_deadline()
        if at is None:
            return False
        self.now = max(self.now, at)
        while (self._queue and self._queue[0][0] <= self.now) or (
            self._streams and self._streams[0][0] <= self.now
        ):
            # Datagrams and stream bytes due together go in the order sent.
            if not self._streams or (
                self._queue and self._queue[0][:2] < self._streams[0][:2]
            ):
                _, _, stage, src, dst, data = heapq.heappop(self._queue)
                self._arrive(stage, src, dst, data)
            else:
                heapq.heappop(self._streams)[2]()
        for peer in self.peers:
            timer = peer.agent.get_timer()
            if timer is not None and timer <= self.now:
                peer.agent.handle_timer(self.now)
                after = peer.agent.get_timer()
                if after is not None and after <= self.now:
                    self.stuck_timers.append((peer.name, self.now, after))
        self.flush()
        return True

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> float:
        """Run until virtual time ``until``, or until ``stop()`` is true;
        return the virtual time."""
        while self.now < until:
            self.flush()
            if stop is not None and stop():
                break
            at = self.next_deadline()
            if at is None or at > until:
                self.now = until
                break
            self.step()
        return self.now

    # --- reading ---------------------------------------------------------------------

    @overload
    def timeline(self) -> list[tuple[float, str, IceEvent]]: ...

    @overload
    def timeline(self, agent: IceAgent | Peer) -> list[tuple[float, IceEvent]]: ...

    def timeline(
        self, agent: IceAgent | Peer | None = None
    ) -> list[tuple[float, str, IceEvent]] | list[tuple[float, IceEvent]]:
        """Every agent's events so far: ``(time, agent name, event)``, in
        time order; or, given an agent, its own: ``(time, event)``."""
        self.flush()
        if agent is not None:
            return list(self.peer(agent).timeline)
        merged = [(t, p.name, e) for p in self.peers for t, e in p.timeline]
        merged.sort(key=lambda item: item[0])
        return merged

    def events(self, agent: IceAgent | Peer) -> list[IceEvent]:
        """The events ``agent`` has queued so far, oldest first."""
        return [e for _, e in self.timeline(agent)]

    def types(self, agent: IceAgent | Peer) -> list[type[IceEvent]]:
        """The types of :meth:`events`."""
        return [type(e) for e in self.events(agent)]

    def first(self, agent: IceAgent | Peer, kind: type[IceEvent]) -> float:
        """When ``agent``'s first event of type ``kind`` came out.

        :raises LookupError: if it has queued none.
        """
        when = self.peer(agent).first(kind)
        if when is None:
            raise LookupError(f"{self.peer(agent).name} queued no {kind.__name__}")
        return when

    def data(self, agent: IceAgent | Peer) -> list[tuple[bytes, int]]:
        """The application data ``agent`` received so far: ``(data,
        component)``, oldest first (:attr:`Peer.received` has the times)."""
        return [(data, component) for _, data, component in self.peer(agent).received]

    def sent_messages(
        self, agent: IceAgent | Peer | None = None, message_class: Class | None = None
    ) -> list[tuple[float, Address, Address, Message]]:
        """The STUN messages agents handed out (``agent``'s, of
        ``message_class``), parsed: ``(time, source, destination, message)``,
        oldest first. Sources are the agents' own addresses (before NAT);
        ChannelData and application data are left out."""
        self.flush()
        mine = None if agent is None else self.peer(agent).addresses
        out = []
        for at, src, dst, data in self.sent:
            if mine is not None and src not in mine:
                continue
            try:
                message = parse_message(data)
            except StunParseError:
                continue
            if message_class is None or message.message_class == message_class:
                out.append((at, src, dst, message))
        return out

    def messages(
        self, *, dst: Address | None = None, src: Address | None = None
    ) -> list[tuple[float, Address, Address, Message]]:
        """The STUN messages delivered (to ``dst``, from ``src``), parsed:
        ``(time, source, destination, message)``."""
        out = []
        for at, s, d, data in self.delivered:
            if (dst is not None and d != dst) or (src is not None and s != src):
                continue
            try:
                out.append((at, s, d, parse_message(data)))
            except StunParseError:
                continue
        return out


# --- endpoints ---------------------------------------------------------------------


class Socket:
    """A plain UDP socket on the network: it sends, and records what it gets.

    :param net: the network.
    :param addr: its address, on a host of ``net``.
    """

    def __init__(self, net: VirtualNet, addr: Address) -> None:
        self.net = net
        self.addr = addr
        #: What it got: ``(time, source, data)``.
        self.received: list[tuple[float, Address, bytes]] = []
        net.bind(addr, self._on_datagram)

    def _on_datagram(self, src: Address, dst: Address, data: bytes) -> None:
        self.received.append((self.net.now, src, data))

    def send(self, dst: Address, data: bytes) -> None:
        """Send ``data`` to ``dst`` now."""
        self.net.send(self.addr, dst, data)


class Stream:
    """A TCP connection from a client to a :class:`TurnServer` (see
    :meth:`VirtualNet.open_stream`): reliable, ordered, delayed by the sum of
    the path's link delays each way."""

    def __init__(
        self,
        net: VirtualNet,
        client: Address,
        server: Address,
        seen: Address,
        delay: float,
        on_data: Callable[[bytes], None],
    ) -> None:
        self.net = net
        self.client = client
        self.server = server
        #: The client's address as the server sees it (after NAT).
        self.seen = seen
        self.delay = delay
        self.on_data = on_data
        self.on_server_data: Callable[[bytes], None] = lambda data: None
        self.closed = False
        self._last = [0.0, 0.0]

    def _at(self, way: int) -> float:
        # Never earlier than what went before: the stream is ordered.
        self._last[way] = max(self._last[way], self.net.now + self.delay)
        return self._last[way]

    def send(self, data: bytes) -> None:
        """Send bytes from the client to the server."""
        if not self.closed:
            self.net._stream_push(
                self._at(0), lambda: self._give(self.on_server_data, data)
            )

    def reply(self, data: bytes) -> None:
        """Send bytes from the server to the client."""
        if not self.closed:
            self.net._stream_push(self._at(1), lambda: self._give(self.on_data, data))

    def _give(self, to: Callable[[bytes], None], data: bytes) -> None:
        if not self.closed:
            to(data)

    def close(self) -> None:
        """Close the connection: nothing more is delivered either way."""
        self.closed = True
