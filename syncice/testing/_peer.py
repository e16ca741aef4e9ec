"""ICE agents on the virtual network, and how their negotiation ended."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from syncice.candidate import Candidate
from syncice.events import GatheringCompleted, IceCompleted, IceEvent, IceFailed
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Address
from syncice.turn import TurnAllocation

if TYPE_CHECKING:
    from syncice.testing._net import Stream, VirtualNet
    from syncice.testing._servers import TurnServer


class Peer:
    """An ICE agent on the network (made by :meth:`VirtualNet.add_agent`).

    Its credentials and random choices come from the network's seed and its
    name. Every event the agent queues goes, with the virtual time, into
    :attr:`timeline`; application data it returns goes into :attr:`received`.
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
    ) -> None:
        self.net = net
        self.name = name
        self.ip = ip
        self.stun = stun
        self.rng = random.Random(f"{net.seed}:{name}")
        self.agent = IceAgent(
            controlling=controlling,
            local_username=f"{self.rng.getrandbits(32):08x}",
            local_password=f"{self.rng.getrandbits(128):032x}",
            components=components,
            config=config,
            rng=self.rng,
            name=name,
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

    def add_host(self, endpoint: int, component: int, addr: Address) -> Candidate:
        """Bind ``addr`` and give the agent a host candidate there."""
        self.net.bind(
            addr, lambda src, dst, data: self._on_datagram(endpoint, src, data)
        )
        self._udp[endpoint] = addr
        return self.agent.add_host_candidate(endpoint, component, addr)

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
        if kind == "udp":
            self.net.bind(
                addr, lambda src, dst, data: self._on_datagram(transport, src, data)
            )
            self._udp[transport] = addr
        else:
            self._streams[transport] = self.net.open_stream(
                addr, server.addr, lambda data: self._on_stream(transport, data)
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
                stream.send(tx.data)
            elif tx.endpoint in self._udp:
                self.net.send(self._udp[tx.endpoint], tx.addr, tx.data)
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
