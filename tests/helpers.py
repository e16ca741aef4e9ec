"""Layer-1 test helpers: ICE agents joined by a virtual network in virtual time.

Nothing here opens a socket or reads a clock. :class:`VirtualNet` delivers the
datagrams agents send, after a delay, to whichever agent owns the destination
address; :meth:`VirtualNet.run` jumps from deadline to deadline (the earliest
of every agent's :meth:`~syncice.ice.IceAgent.get_timer` and every datagram in
flight), as STYLE §8 describes.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from syncice.events import IceEvent
from syncice.ice import IceAgent, IceConfig

Address = tuple[str, int]

#: Filters see (source, destination, data) and return False to drop a datagram.
Filter = Callable[[Address, Address, bytes], bool]


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
    delivered: int = 0
    _queue: list[tuple[float, int, Address, Address, bytes]] = field(
        default_factory=list
    )
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def attach(self, agent: IceAgent) -> None:
        self.agents.append(agent)
        self.events[id(agent)] = []
        self.data[id(agent)] = []

    def add_endpoint(
        self, agent: IceAgent, endpoint: int, component: int, addr: Address
    ) -> None:
        self.owners[addr] = (agent, endpoint)
        self.addresses[(id(agent), endpoint)] = addr
        agent.add_host_candidate(endpoint, component, addr)

    def flush(self) -> None:
        """Move every agent's output into flight and its events into the log."""
        for agent in self.agents:
            for tx in agent.datagrams_to_send():
                src = self.addresses[(id(agent), tx.endpoint)]
                self.inject(src, tx.addr, tx.data)
            while (event := agent.next_event()) is not None:
                self.events[id(agent)].append(event)

    def inject(
        self, src: Address, dst: Address, data: bytes, delay: float | None = None
    ) -> None:
        """Put a datagram in flight from ``src`` to ``dst``."""
        if all(f(src, dst, data) for f in self.filters):
            at = self.now + (self.delay if delay is None else delay)
            heapq.heappush(self._queue, (at, next(self._seq), src, dst, data))

    def next_deadline(self) -> float | None:
        times = [t for a in self.agents if (t := a.get_timer()) is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def step(self) -> bool:
        """Advance to the next deadline and run it; False when nothing is left."""
        self.flush()
        at = self.next_deadline()
        if at is None:
            return False
        self.now = max(self.now, at)
        while self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self._queue)
            owner = self.owners.get(dst)
            if owner is not None:
                agent, endpoint = owner
                self.delivered += 1
                got = agent.receive_datagram(endpoint, data, src, self.now)
                if got is not None:
                    self.data[id(agent)].append(got)
        for agent in self.agents:
            timer = agent.get_timer()
            if timer is not None and timer <= self.now:
                agent.handle_timer(self.now)
        self.flush()
        return True

    def run(
        self, until: float, stop: Callable[[], bool] | None = None
    ) -> float:
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

    def types(self, agent: IceAgent) -> list[type[IceEvent]]:
        return [type(e) for e in self.events[id(agent)]]


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
        local_password=ufrag * (22 // len(ufrag) + 1),
        components=components,
        config=config,
        rng=random.Random(seed),
        name=ufrag,
    )


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
    """Two agents on a virtual network, credentials and candidates exchanged."""
    net = net if net is not None else VirtualNet()
    a = make_agent(controlling[0], seed=seed, ufrag="aaaa", components=components, config=config)
    b = make_agent(
        controlling[1], seed=seed + 1, ufrag="bbbb", components=components, config=config
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
        for x, y in ((a, b), (b, a)):
            for c in x.local_candidates:
                y.add_remote_candidate(c, net.now)
            y.add_remote_candidate(None, net.now)
    net.flush()
    return net, a, b


def connect_pair(net: VirtualNet, a: IceAgent, b: IceAgent, until: float = 60.0) -> float:
    """Start both agents and run until both are done (completed or failed)."""
    a.connect(net.now)
    b.connect(net.now)
    return net.run(until, stop=lambda: a.state != "checking" and b.state != "checking")
