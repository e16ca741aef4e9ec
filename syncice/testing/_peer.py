"""ICE agents on the virtual network, and how their negotiation ended."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from syncice.candidate import Candidate
from syncice.events import GatheringCompleted, IceCompleted, IceEvent, IceFailed
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Address
from syncice.testing._link import Datagram
from syncice.turn import TurnAllocation

if TYPE_CHECKING:
    from syncice.testing._net import Stream, VirtualNet
    from syncice.testing._servers import TurnServer


class Peer:
    """An ICE agent on the network (made by :meth:`VirtualNet.add_agent`).

    Its credentials and random choices come from the network's seed and its
    name, unless the agent was built elsewhere and attached
    (:meth:`VirtualNet.attach`). Every event the agent queues goes, with the
    virtual time, into :attr:`timeline`; application data it returns goes
    into :attr:`received`; every datagram it hands out goes into
    :attr:`VirtualNet.sent`.
    """

    def __init__(
        self,
        net: VirtualNet,
        name: str,
        ip: str,
        controlling: bool,
        components: int,
        config: IceConfig | None,
        stun: Address | None,
        *,
        agent: IceAgent | None = None,
    ) -> None:
        self.net = net
        self.name = name
        self.ip = ip
        self.stun = stun
        self.rng = random.Random(f"{net.seed}:{name}")
        self.agent = (
            agent
            if agent is not None
            else IceAgent(
                controlling=controlling,
                local_username=f"{self.rng.getrandbits(32):08x}",
                local_password=f"{self.rng.getrandbits(128):032x}",
                components=components,
                config=config,
                rng=self.rng,
                name=name,
            )
        )
        #: ``(time, event)`` of every event the agent queued.
        self.timeline: list[tuple[float, IceEvent]] = []
        #: ``(time, data, component)`` of application data received.
        self.received: list[tuple[float, bytes, int]] = []
        #: The TURN allocations, by transport endpoint.
        self.allocations: dict[int, TurnAllocation] = {}
        self._udp: dict[int, Address] = {}
        self._streams: dict[int, Stream] = {}

    def __repr__(self) -> str:
        return f"Peer({self.name}, {self.ip}, {self.agent.state})"

    @property
    def addresses(self) -> set[Address]:
        """The addresses its endpoints send from (host candidates and TURN
        transports)."""
        return {*self._udp.values(), *(s.client for s in self._streams.values())}

    def add_host(
        self,
        endpoint: int,
        component: int,
        addr: Address,
        *,
        local_pref: int = 65535,
    ) -> Candidate:
        """Bind ``addr`` and give the agent a host candidate there (RFC 8445
        §5.1.2.1 ``local_pref``). The host is added to the network, public,
        if it is not on it."""
        self.add_transport(endpoint, addr)
        return self.agent.add_host_candidate(
            endpoint, component, addr, local_pref=local_pref
        )

    def add_transport(
        self, endpoint: int, addr: Address, *, stream_to: Address | None = None
    ) -> None:
        """Give the agent's ``endpoint`` an address on the network, for a
        relay added with :meth:`~syncice.ice.IceAgent.add_relay` (or a
        renewed transport): a UDP socket bound to ``addr``, or, with
        ``stream_to``, a TCP connection from ``addr`` to the
        :class:`TurnServer` there. The host is added to the network, public,
        if it is not on it.

        A stream endpoint whose agent sends to another address (after an
        ALTERNATE-SERVER redirect, RFC 8656 §6.1) is connected anew there.
        """
        if addr[0] not in self.net.hosts:
            self.net.add_host(addr[0])
        if not self.ip:
            self.ip = addr[0]
        if stream_to is not None:
            self._streams[endpoint] = self._open(endpoint, addr, stream_to)
            return
        self.net.bind(
            addr, lambda src, dst, data: self._on_datagram(endpoint, src, data)
        )
        self._udp[endpoint] = addr

    def _open(self, endpoint: int, addr: Address, server: Address) -> Stream:
        return self.net.open_stream(
            addr, server, lambda data: self._on_stream(endpoint, data)
        )

    def add_turn(
        self,
        transport: int,
        endpoint: int,
        component: int,
        addr: Address,
        server: TurnServer,
        kind: Literal["udp", "tcp"] = "udp",
    ) -> TurnAllocation:
        """Give the agent a TURN allocation on ``server``, reached from
        ``addr`` over ``kind``; its relayed candidate will be ``endpoint``."""
        allocation = TurnAllocation(
            server=server.addr,
            username=server.username,
            password=server.password,
            transport=kind,
            rng=random.Random(self.rng.getrandbits(64)),
            name=self.name,
        )
        self.agent.add_relay(transport, endpoint, component, allocation)
        self.allocations[transport] = allocation
        self.add_transport(
            transport, addr, stream_to=None if kind == "udp" else server.addr
        )
        return allocation

    def _on_datagram(self, endpoint: int, src: Address, data: bytes) -> None:
        got = self.agent.receive_datagram(endpoint, data, src, self.net.now)
        if got is not None:
            self.received.append((self.net.now, got[0], got[1]))

    def _on_stream(self, transport: int, data: bytes) -> None:
        for payload, component in self.agent.receive_stream(
            transport, data, self.net.now
        ):
            self.received.append((self.net.now, payload, component))

    def flush(self) -> None:
        """Put the agent's output on the network and its events in
        :attr:`timeline`."""
        for tx in self.agent.datagrams_to_send():
            stream = self._streams.get(tx.endpoint)
            if stream is not None:
                self.net.sent.append(
                    Datagram(self.net.now, stream.client, tx.addr, tx.data)
                )
                if stream.server != tx.addr:
                    stream.close()
                    stream = self._open(tx.endpoint, stream.client, tx.addr)
                    self._streams[tx.endpoint] = stream
                stream.send(tx.data)
            elif tx.endpoint in self._udp:
                src = self._udp[tx.endpoint]
                self.net.sent.append(Datagram(self.net.now, src, tx.addr, tx.data))
                self.net.send(src, tx.addr, tx.data)
        while (event := self.agent.next_event()) is not None:
            self.timeline.append((self.net.now, event))

    def send(self, data: bytes, component: int = 1) -> bool:
        """Send application data on the selected pair; ``False`` if there is
        none yet."""
        ok = self.agent.send(component, data, self.net.now)
        self.flush()
        return ok

    @property
    def state(self) -> str:
        """The agent's :class:`~syncice.ice.IceState`."""
        return self.agent.state

    @property
    def gathered(self) -> bool:
        """Whether gathering has completed."""
        self.flush()
        return any(isinstance(e, GatheringCompleted) for _, e in self.timeline)

    def candidate_types(self) -> list[str]:
        """The types of its local candidates, in the order gathered."""
        return [c.type for c in self.agent.local_candidates]

    def first(self, kind: type[IceEvent]) -> float | None:
        """When the agent's first event of type ``kind`` came out, or
        ``None``."""
        self.flush()
        return next((t for t, e in self.timeline if isinstance(e, kind)), None)


@dataclass(frozen=True)
class Outcome:
    """How a negotiation (:meth:`VirtualNet.connect`) ended, seen from the
    first agent.

    :param connected: both agents completed.
    :param states: both agents' states at the end.
    :param local_type: the type of the first agent's local candidate in its
        selected pair of component 1, or ``None``. Pairs hold the base of a
        server-reflexive candidate (RFC 8445 §6.1.2.4), so it is ``host`` or
        ``relay``.
    :param remote_type: the type of the remote candidate in that pair
        (``host``, ``srflx``, ``prflx`` or ``relay``).
    :param connect_time: virtual seconds from connect to both completed, or
        ``None``.
    :param fail_time: virtual seconds from connect to the first failure, or
        ``None``.
    :param reason: the reason of the first failure, or ``None``.
    :param peer_types: the second agent's ``(local, remote)`` candidate types
        of its selected pair, or ``None``.
    """

    connected: bool
    states: tuple[str, str]
    local_type: str | None
    remote_type: str | None
    connect_time: float | None
    fail_time: float | None
    reason: str | None
    peer_types: tuple[str, str] | None = None

    @property
    def relayed(self) -> bool:
        """Whether the selected pair goes through a TURN relay (either end)."""
        return "relay" in (self.local_type, self.remote_type, *(self.peer_types or ()))

    @classmethod
    def of(cls, a: Peer, b: Peer, start: float) -> Outcome:
        """Read the outcome of a negotiation that started at ``start``."""
        pair = a.agent.selected.get(1)
        theirs = b.agent.selected.get(1)
        done = [
            next(
                (
                    t
                    for t, e in p.timeline
                    if isinstance(e, IceCompleted) and t >= start
                ),
                None,
            )
            for p in (a, b)
        ]
        failures = [
            (t, e.reason)
            for p in (a, b)
            for t, e in p.timeline
            if isinstance(e, IceFailed) and t >= start
        ]
        first_fail = min(failures) if failures else None
        connected = a.state == b.state == IceState.COMPLETED
        return cls(
            connected=connected,
            states=(a.state, b.state),
            local_type=None if pair is None else pair.local.type,
            remote_type=None if pair is None else pair.remote.type,
            connect_time=(
                max(t for t in done if t is not None) - start
                if connected and None not in done
                else None
            ),
            fail_time=None if first_fail is None else first_fail[0] - start,
            reason=None if first_fail is None else first_fail[1],
            peer_types=(
                None if theirs is None else (theirs.local.type, theirs.remote.type)
            ),
        )
