"""Layer-1 test helpers: ICE agents joined by a virtual network in virtual time.

Nothing here opens a socket or reads a clock. :class:`VirtualNet` delivers the
datagrams agents send, after a delay, to whichever agent owns the destination
address; :meth:`VirtualNet.run` jumps from deadline to deadline (the earliest
of every agent's :meth:`~syncice.ice.IceAgent.get_timer` and every datagram in
flight), as STYLE §8 describes.

Besides agents, the network holds:

- filters, which see ``(source, destination, data)`` and drop a datagram by
  returning False (:func:`link_down` is one that drops everything);
- a NAT table (``nat``, private address to public address): a datagram from a
  private address leaves with the public one as its source, and one sent to the
  public address reaches the private one;
- servers (:meth:`VirtualNet.add_server`): a function of ``(source, data)`` at
  an address, whose answer, if any, goes back to the source (a fake STUN
  server, :func:`stun_server`).

Every datagram an agent sends is logged with its time (:attr:`VirtualNet.sent`),
and so is every event (:meth:`VirtualNet.timeline`).

This :class:`VirtualNet` stays for the tests written against it: they reach
into its NAT table, filters and in-flight queue by index. The public,
documented network (hosts, RFC 4787 NATs, lossy links, STUN and TURN servers,
agents gathering through them) is :mod:`syncice.testing`; new tests use it,
and its main names are re-exported here (its network as ``NatNet``).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from syncice.events import IceEvent
from syncice.ice import IceAgent, IceConfig
from syncice.stun import (
    ChannelData,
    Class,
    Message,
    Method,
    is_channel_data,
    long_term_key,
    parse_channel_data,
    parse_message,
    short_term_key,
)
from syncice.testing import Address as Address
from syncice.testing import Link as Link
from syncice.testing import NatBehavior as NatBehavior
from syncice.testing import Outcome as Outcome
from syncice.testing import StunServer as StunServer
from syncice.testing import TurnServer as TurnServer
from syncice.testing import VirtualNet as _PublicNet

#: The public virtual network with NATs (:class:`syncice.testing.VirtualNet`).
NatNet = _PublicNet

#: Filters see (source, destination, data) and return False to drop a datagram.
Filter = Callable[[Address, Address, bytes], bool]

#: A server sees (source, data) and returns the answer to send back, or None.
Server = Callable[[Address, bytes], "bytes | None"]

#: A node sees (source, destination, data) and returns datagrams to put in
#: flight, as (source, destination, data): a TURN server relays.
Node = Callable[[Address, Address, bytes], list[tuple[Address, Address, bytes]]]


class Sent(NamedTuple):
    """One datagram an agent handed out: when, from where, to where, what."""

    at: float
    src: Address
    dst: Address
    data: bytes


@dataclass
class VirtualNet:
    """A network of agents, each endpoint with its own address."""

    delay: float = 0.001
    now: float = 0.0
    owners: dict[Address, tuple[IceAgent, int]] = field(default_factory=dict)
    addresses: dict[tuple[int, int], Address] = field(default_factory=dict)
    agents: list[IceAgent] = field(default_factory=list)
    events: dict[int, list[IceEvent]] = field(default_factory=dict)
    data: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)
    filters: list[Filter] = field(default_factory=list)
    nat: dict[Address, Address] = field(default_factory=dict)
    servers: dict[Address, Server] = field(default_factory=dict)
    nodes: dict[Address, Node] = field(default_factory=dict)
    #: (id(agent), endpoint) of TURN transports that are streams (TCP, TLS).
    streams: set[tuple[int, int]] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    #: (agent name, now, timer) whenever get_timer() was not after now right
    #: after handle_timer(now): a caller would spin.
    stuck_timers: list[tuple[str, float, float]] = field(default_factory=list)
    delivered: int = 0
    _times: dict[int, list[float]] = field(default_factory=dict)
    _queue: list[tuple[float, int, Address, Address, bytes]] = field(
        default_factory=list
    )
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def attach(self, agent: IceAgent) -> None:
        self.agents.append(agent)
        self.events[id(agent)] = []
        self._times[id(agent)] = []
        self.data[id(agent)] = []

    def add_endpoint(
        self,
        agent: IceAgent,
        endpoint: int,
        component: int,
        addr: Address,
        *,
        local_pref: int = 65535,
    ) -> None:
        self.owners[addr] = (agent, endpoint)
        self.addresses[(id(agent), endpoint)] = addr
        agent.add_host_candidate(endpoint, component, addr, local_pref=local_pref)

    def add_transport(self, agent: IceAgent, endpoint: int, addr: Address) -> None:
        """Give an agent's TURN transport endpoint an address on the network."""
        self.owners[addr] = (agent, endpoint)
        self.addresses[(id(agent), endpoint)] = addr

    def add_server(self, addr: Address, server: Server) -> None:
        """Answer datagrams sent to ``addr`` with ``server``."""
        self.servers[addr] = server

    def flush(self) -> None:
        """Move every agent's output into flight and its events into the log."""
        for agent in self.agents:
            for tx in agent.datagrams_to_send():
                src = self.addresses[(id(agent), tx.endpoint)]
                self.sent.append(Sent(self.now, src, tx.addr, tx.data))
                self.inject(src, tx.addr, tx.data)
            while (event := agent.next_event()) is not None:
                self.events[id(agent)].append(event)
                self._times[id(agent)].append(self.now)

    def inject(
        self, src: Address, dst: Address, data: bytes, delay: float | None = None
    ) -> None:
        """Put a datagram in flight from ``src`` (NAT applied) to ``dst``."""
        src = self.nat.get(src, src)
        if all(f(src, dst, data) for f in self.filters):
            at = self.now + (self.delay if delay is None else delay)
            heapq.heappush(self._queue, (at, next(self._seq), src, dst, data))

    # --- what is in flight, for tests that lose, copy or hold datagrams ---

    def in_flight(self) -> list[tuple[float, Address, Address, bytes]]:
        """The datagrams in flight, soonest first: (arrival, src, dst, data)."""
        return [(at, s, d, data) for at, _, s, d, data in sorted(self._queue)]

    def _pick(self, index: int) -> int:
        ordered = sorted(range(len(self._queue)), key=lambda i: self._queue[i])
        return ordered[index % len(ordered)]

    def drop(self, index: int) -> None:
        """Lose the ``index``-th datagram in flight (modulo their number)."""
        del self._queue[self._pick(index)]
        heapq.heapify(self._queue)

    def duplicate(self, index: int, extra: float = 0.0) -> None:
        """Deliver the ``index``-th datagram in flight again, ``extra`` later."""
        at, _, src, dst, data = self._queue[self._pick(index)]
        heapq.heappush(self._queue, (at + extra, next(self._seq), src, dst, data))

    def hold(self, index: int, extra: float) -> None:
        """Delay the ``index``-th datagram in flight by ``extra`` seconds."""
        i = self._pick(index)
        at, seq, src, dst, data = self._queue[i]
        self._queue[i] = (at + extra, seq, src, dst, data)
        heapq.heapify(self._queue)

    # --- running ------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [t for a in self.agents if (t := a.get_timer()) is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def _deliver(self, src: Address, dst: Address, data: bytes) -> None:
        node = self.nodes.get(dst)
        if node is not None:
            for out in node(src, dst, data):
                self.inject(*out)
            return
        server = self.servers.get(dst)
        if server is not None:
            answer = server(src, data)
            if answer is not None:
                self.inject(dst, src, answer)
            return
        private = next((p for p, public in self.nat.items() if public == dst), dst)
        owner = self.owners.get(private)
        if owner is not None:
            agent, endpoint = owner
            self.delivered += 1
            if (id(agent), endpoint) in self.streams:
                self.data[id(agent)].extend(
                    agent.receive_stream(endpoint, data, self.now)
                )
                return
            got = agent.receive_datagram(endpoint, data, src, self.now)
            if got is not None:
                self.data[id(agent)].append(got)

    def step(self) -> bool:
        """Advance to the next deadline and run it; False when nothing is left."""
        self.flush()
        at = self.next_deadline()
        if at is None:
            return False
        self.now = max(self.now, at)
        while self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            self._deliver(src, dst, data)
        for agent in self.agents:
            timer = agent.get_timer()
            if timer is not None and timer <= self.now:
                agent.handle_timer(self.now)
                after = agent.get_timer()
                if after is not None and after <= self.now:
                    self.stuck_timers.append((agent.name, self.now, after))
        self.flush()
        return True

    def run(self, until: float, stop: Callable[[], bool] | None = None) -> float:
        """Run until virtual time ``until``, or until ``stop()`` is true."""
        while self.now < until:
            if stop is not None and stop():
                break
            self.flush()
            at = self.next_deadline()
            if at is None or at > until:
                self.now = until
                break
            self.step()
        return self.now

    # --- reading the logs ------------------------------------------------------

    def types(self, agent: IceAgent) -> list[type[IceEvent]]:
        return [type(e) for e in self.events[id(agent)]]

    def timeline(self, agent: IceAgent) -> list[tuple[float, IceEvent]]:
        """The agent's events so far, each with the virtual time it came out."""
        self.flush()
        return list(zip(self._times[id(agent)], self.events[id(agent)], strict=True))

    def first(self, agent: IceAgent, kind: type[IceEvent]) -> float:
        """When the agent's first event of type ``kind`` came out."""
        return next(t for t, e in self.timeline(agent) if isinstance(e, kind))

    def messages(
        self, agent: IceAgent | None = None, message_class: Class | None = None
    ) -> list[tuple[float, Address, Address, Message]]:
        """The STUN messages sent (by ``agent``, of ``message_class``), parsed:
        ``(time, source, destination, message)``, oldest first."""
        mine = (
            None
            if agent is None
            else {a for (aid, _), a in self.addresses.items() if aid == id(agent)}
        )
        out = []
        for at, src, dst, data in self.sent:
            if mine is not None and src not in mine:
                continue
            message = parse_message(data)
            if message_class is None or message.message_class == message_class:
                out.append((at, src, dst, message))
        return out


def link_down(net: VirtualNet) -> None:
    """Lose every datagram from now on."""
    net.filters.append(lambda src, dst, data: False)


def stun_server() -> Server:
    """A STUN server that answers Binding requests with the source address as
    the server sees it (after NAT), as XOR-MAPPED-ADDRESS."""

    def answer(src: Address, data: bytes) -> bytes | None:
        request = parse_message(data)
        if request.message_class != Class.REQUEST:
            return None
        response = Message(
            Method.BINDING,
            Class.SUCCESS,
            request.transaction_id,
            {"XOR-MAPPED-ADDRESS": src},
        )
        return response.encode(fingerprint=True)

    return answer


def make_agent(
    controlling: bool,
    *,
    seed: int,
    ufrag: str,
    components: int = 1,
    config: IceConfig | None = None,
) -> IceAgent:
    return IceAgent(
        controlling=controlling,
        local_username=ufrag,
        local_password=password_of(ufrag),
        components=components,
        config=config,
        rng=random.Random(seed),
        name=ufrag,
    )


def password_of(ufrag: str) -> str:
    """The password :func:`make_agent` gives an agent of that ufrag."""
    return ufrag * (22 // len(ufrag) + 1)


def agent_pair(
    *,
    seed: int = 1,
    components: int = 1,
    config: IceConfig | None = None,
    a_hosts: tuple[str, ...] = ("10.0.0.1",),
    b_hosts: tuple[str, ...] = ("10.0.0.2",),
    controlling: tuple[bool, bool] = (True, False),
    net: VirtualNet | None = None,
    exchange: bool = True,
) -> tuple[VirtualNet, IceAgent, IceAgent]:
    """Two agents on a virtual network, credentials and candidates exchanged.

    Agent ``a`` (ufrag ``aaaa``) has an endpoint per host and component, on
    ports 1000, 1001...; agent ``b`` (``bbbb``) on ports 2000, 2001...
    """
    net = net if net is not None else VirtualNet()
    a = make_agent(
        controlling[0], seed=seed, ufrag="aaaa", components=components, config=config
    )
    b = make_agent(
        controlling[1],
        seed=seed + 1,
        ufrag="bbbb",
        components=components,
        config=config,
    )
    net.attach(a)
    net.attach(b)
    for agent, hosts, port in ((a, a_hosts, 1000), (b, b_hosts, 2000)):
        endpoint = 0
        for host in hosts:
            for component in range(1, components + 1):
                net.add_endpoint(agent, endpoint, component, (host, port + endpoint))
                endpoint += 1
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    if exchange:
        exchange_candidates(net, a, b)
    net.flush()
    return net, a, b


def exchange_candidates(
    net: VirtualNet, a: IceAgent, b: IceAgent, *, end: bool = True
) -> None:
    """Give each agent the other's local candidates (and end-of-candidates)."""
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates:
            y.add_remote_candidate(c, net.now)
        if end:
            y.add_remote_candidate(None, net.now)


def connect_pair(
    net: VirtualNet, a: IceAgent, b: IceAgent, until: float = 60.0
) -> float:
    """Start both agents and run until both are done (completed or failed)."""
    a.connect(net.now)
    b.connect(net.now)
    return net.run(until, stop=lambda: a.state != "checking" and b.state != "checking")


def drain(agent: IceAgent) -> list[IceEvent]:
    """Pop every queued event of an agent that is not on a network."""
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    return events


def check_request(
    *,
    username: str,
    password: str,
    priority: int | None = 1862270975,
    controlling: int | None = None,
    controlled: int | None = None,
    use_candidate: bool = False,
    transaction_id: bytes | None = None,
    extra: list[tuple[int, bytes]] | None = None,
    sign: bool = True,
) -> bytes:
    """An ICE connectivity check as a peer would send it.

    :param username: the USERNAME attribute (``"theirs:mine"``).
    :param password: the password it is signed with (the receiver's).
    """
    attributes: dict[str, object] = {"USERNAME": username}
    if priority is not None:
        attributes["PRIORITY"] = priority
    if controlling is not None:
        attributes["ICE-CONTROLLING"] = controlling
    if controlled is not None:
        attributes["ICE-CONTROLLED"] = controlled
    if use_candidate:
        attributes["USE-CANDIDATE"] = None
    message = Message(
        Method.BINDING,
        Class.REQUEST,
        transaction_id if transaction_id is not None else bytes(range(12)),
        attributes,  # type: ignore[arg-type]
        extra or (),
    )
    key = short_term_key(password) if sign else None
    return message.encode(key=key, fingerprint=True)


class TurnNode:
    """A TURN server on a :class:`VirtualNet` (RFC 8656, the parts agents use).

    Long-term credentials (one user, MD5 keys), Allocate, Refresh (lifetime 0
    deallocates), CreatePermission, ChannelBind, Send and Data indications,
    ChannelData. Relayed addresses are ``(host, 50000)``, ``(host, 50001)``...
    Requests whose integrity fails get 401; ``refuse`` maps a method to an
    error code to answer it with instead, and ``alternate`` sends every
    Allocate elsewhere (300).
    """

    def __init__(
        self,
        net: VirtualNet,
        addr: Address,
        *,
        username: str = "user",
        password: str = "secret",
        realm: str = "test",
    ) -> None:
        self.net = net
        self.addr = addr
        self.username = username
        self.realm = realm
        self.key = long_term_key(username, realm, password)
        self.nonce = b"nonce-1"
        self.refuse: dict[Method, int] = {}
        #: Where to send clients instead (300 to Allocate), or None.
        self.alternate: Address | None = None
        #: client address -> relayed address, and back.
        self.relayed: dict[Address, Address] = {}
        self.clients: dict[Address, Address] = {}
        self.permissions: dict[Address, set[str]] = {}
        self.channels: dict[Address, dict[int, Address]] = {}
        self.requests: list[tuple[Address, Message]] = []
        self._ports = itertools.count(50000)
        net.nodes[addr] = self.on_datagram

    def _answer(
        self, request: Message, attributes: dict[str, object], *, code: int = 0
    ) -> bytes:
        if code:
            attributes = {"ERROR-CODE": (code, "refused"), **attributes}
        message = Message(
            request.method,
            Class.ERROR if code else Class.SUCCESS,
            request.transaction_id,
            attributes,  # type: ignore[arg-type]
        )
        return message.encode(key=None if code else self.key, fingerprint=True)

    def on_datagram(
        self, src: Address, dst: Address, data: bytes
    ) -> list[tuple[Address, Address, bytes]]:
        if dst != self.addr:
            return self._from_peer(src, dst, data)
        if is_channel_data(data):
            cd = parse_channel_data(data)
            relayed = self.relayed.get(src)
            peer = self.channels.get(src, {}).get(cd.channel)
            if relayed is None or peer is None:
                return []
            return [(relayed, peer, cd.data)]
        message = parse_message(data)
        if message.message_class == Class.INDICATION:
            relayed = self.relayed.get(src)
            peer = message.attributes.get("XOR-PEER-ADDRESS")
            if (
                relayed is None
                or peer is None
                or peer[0] not in self.permissions.get(src, set())
            ):
                return []
            return [(relayed, peer, message.attributes.get("DATA", b""))]
        self.requests.append((src, message))
        if message.attributes.get(
            "USERNAME"
        ) != self.username or not message.check_integrity(self.key):
            answer = Message(
                message.method,
                Class.ERROR,
                message.transaction_id,
                {
                    "ERROR-CODE": (401, "Unauthorized"),
                    "REALM": self.realm,
                    "NONCE": self.nonce,
                },
            )
            return [(self.addr, src, answer.encode(fingerprint=True))]
        if self.alternate is not None and message.method == Method.ALLOCATE:
            moved = self._answer(
                message, {"ALTERNATE-SERVER": self.alternate}, code=300
            )
            return [(self.addr, src, moved)]
        code = self.refuse.get(Method(message.method), 0)
        if code:
            return [(self.addr, src, self._answer(message, {}, code=code))]
        attributes: dict[str, object] = {}
        if message.method == Method.ALLOCATE:
            relayed = (self.addr[0], next(self._ports))
            self.relayed[src] = relayed
            self.clients[relayed] = src
            self.net.nodes[relayed] = self.on_datagram
            self.permissions[src] = set()
            self.channels[src] = {}
            attributes = {
                "XOR-RELAYED-ADDRESS": relayed,
                "XOR-MAPPED-ADDRESS": src,
                "LIFETIME": 600,
            }
        elif src not in self.relayed:
            return [(self.addr, src, self._answer(message, {}, code=437))]
        elif message.method == Method.REFRESH:
            lifetime = message.attributes.get("LIFETIME", 600)
            if lifetime == 0:
                relayed = self.relayed.pop(src)
                del self.clients[relayed], self.net.nodes[relayed]
            attributes = {"LIFETIME": lifetime}
        elif message.method == Method.CREATE_PERMISSION:
            peer = message.attributes["XOR-PEER-ADDRESS"]
            self.permissions[src].add(peer[0])
        elif message.method == Method.CHANNEL_BIND:
            peer = message.attributes["XOR-PEER-ADDRESS"]
            self.permissions[src].add(peer[0])
            self.channels[src][message.attributes["CHANNEL-NUMBER"]] = peer
        return [(self.addr, src, self._answer(message, attributes))]

    def _from_peer(
        self, src: Address, dst: Address, data: bytes
    ) -> list[tuple[Address, Address, bytes]]:
        client = self.clients.get(dst)
        if client is None or src[0] not in self.permissions[client]:
            return []
        for channel, peer in self.channels[client].items():
            if peer == src:
                return [(self.addr, client, ChannelData(channel, data).encode())]
        indication = Message(
            Method.DATA,
            Class.INDICATION,
            bytes(12),
            {"XOR-PEER-ADDRESS": src, "DATA": data},
        )
        return [(self.addr, client, indication.encode())]
