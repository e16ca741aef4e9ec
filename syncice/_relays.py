"""The agent's TURN relays: :class:`RelaySet`, over :mod:`syncice.turn`'s
:class:`~syncice.turn.TurnAllocation`.

Each relay is reached through a *transport* endpoint (the caller's socket or
stream to the TURN server) and gives the relay candidate of its own
*endpoint* once allocated (RFC 8445 §5.1.1.2). The set routes what the caller
receives on a transport to its allocation, collects what the allocations
send, their timers, and turns their events into two outcomes for the agent:
:class:`RelayAllocated` (a relay candidate to add) and :class:`RelayEnded`
(the relay is gone, and so are its pairs).

- A 437 (Allocation Mismatch) before the relay was ever allocated is retried
  once from a new transport (RFC 8656 §7.3: the server still holds an
  allocation for a reused client address): the transport is listed in
  :meth:`RelaySet.take_renew` for the caller to replace.
- An ALTERNATE-SERVER redirect of a stream transport (TCP, TLS) is listed in
  :meth:`RelaySet.take_reconnect`: the stream is connected to the first server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from ._checklist import canonical
from ._ice_log import EventLog
from .candidate import Candidate, candidate_foundation, candidate_priority
from .turn import (
    AllocationFailed,
    AllocationSucceeded,
    PermissionFailed,
    ServerChanged,
    TurnAllocation,
    TurnState,
)

__all__ = [
    "RELAY_PREFERENCES",
    "Relay",
    "RelayAllocated",
    "RelayEnded",
    "RelaySet",
    "relay_candidate",
]

Address = tuple[str, int]


class Relay:
    """A TURN allocation: reached through ``transport``, it gives the relay
    candidate of ``endpoint`` on ``component``."""

    __slots__ = (
        "allocated",
        "allocation",
        "component",
        "deadline",
        "endpoint",
        "lost",
        "renewed",
        "transport",
    )

    def __init__(
        self, transport: int, endpoint: int, component: int, allocation: TurnAllocation
    ) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.component = component
        self.allocation = allocation
        #: Whether it was allocated while the agent was open (it has a
        #: relay candidate then).
        self.allocated = False
        #: Whether the relay ended (its candidate and pairs are gone).
        self.lost = False
        #: Whether it was retried from a new transport after a 437.
        self.renewed = False
        #: The gather bound its allocation started with.
        self.deadline: float | None = None


class RelayAllocated(NamedTuple):
    """A relay got its address: the relay candidate can be added."""

    relay: Relay
    relayed: Address
    mapped: Address | None


#: The local preference of a relayed candidate by how its TURN server is
#: reached (RFC 8445 §5.1.2.1 leaves the choice to the agent): over UDP
#: first, then TCP, then TLS, as libwebrtc orders them, so that of two
#: relays that work the one without a stream's head-of-line blocking wins.
RELAY_PREFERENCES = {"udp": 65535, "tcp": 49151, "tls": 32767}


def relay_candidate(outcome: RelayAllocated) -> Candidate:
    """The relay candidate of an allocated relay (RFC 8445 §5.1.1.2), its
    priority by the transport to its server (:data:`RELAY_PREFERENCES`)."""
    relay, relayed, mapped = outcome
    return Candidate(
        foundation=candidate_foundation(
            "relay", "udp", canonical(relay.allocation.server[0])
        ),
        component=relay.component,
        transport="udp",
        priority=candidate_priority(
            relay.component, "relay", RELAY_PREFERENCES[relay.allocation.transport]
        ),
        host=canonical(relayed[0]),
        port=relayed[1],
        type="relay",
        related_address=None if mapped is None else canonical(mapped[0]),
        related_port=None if mapped is None else mapped[1],
    )


class RelayEnded(NamedTuple):
    """A relay's allocation failed or ended."""

    relay: Relay
    reason: str


class RelaySet:
    """The TURN relays of an agent, by transport and by relay endpoint.

    :param log: where redirects, refused permissions and lost allocations are
        logged.
    """

    __slots__ = ("_by_endpoint", "_by_transport", "_log", "_reconnect", "_renew")

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._by_transport: dict[int, Relay] = {}
        self._by_endpoint: dict[int, Relay] = {}
        self._renew: list[int] = []
        self._reconnect: list[int] = []

    def __len__(self) -> int:
        return len(self._by_transport)

    def __iter__(self) -> Iterator[Relay]:
        """The relays (a copy: the set may change while iterating)."""
        return iter(list(self._by_transport.values()))

    def ids(self) -> set[int]:
        """Every transport and relay endpoint in use."""
        return self._by_transport.keys() | self._by_endpoint.keys()

    def add(
        self, transport: int, endpoint: int, component: int, allocation: TurnAllocation
    ) -> None:
        """Register an unstarted allocation (the caller checked the IDs)."""
        relay = Relay(transport, endpoint, component, allocation)
        self._by_transport[transport] = relay
        self._by_endpoint[endpoint] = relay

    def by_endpoint(self, endpoint: int) -> Relay | None:
        """The relay whose relay candidate is ``endpoint``, or ``None``."""
        return self._by_endpoint.get(endpoint)

    def by_transport(self, transport: int) -> Relay | None:
        """The relay reached through ``transport``, or ``None``."""
        return self._by_transport.get(transport)

    def server(self, transport: int) -> Address:
        """Where the allocation of ``transport`` sends now.

        :raises KeyError: if ``transport`` is not a TURN transport.
        """
        return self._by_transport[transport].allocation.server

    @property
    def releasing(self) -> bool:
        """Whether an allocation is still being released."""
        return any(
            r.allocation.state == TurnState.CLOSING for r in self._by_transport.values()
        )

    @property
    def allocating(self) -> bool:
        """Whether an allocation (or a 437 retry) is still under way."""
        return bool(self._renew) or any(
            r.allocation.state == TurnState.ALLOCATING
            for r in self._by_transport.values()
        )

    def get_timer(self) -> float | None:
        """The earliest timer of the allocations, or ``None``."""
        at: float | None = None
        for relay in self._by_transport.values():
            t = relay.allocation.get_timer()
            if t is not None and (at is None or t < at):
                at = t
        return at

    def datagrams_to_send(self) -> list[tuple[int, bytes, Address]]:
        """What the allocations send: ``(transport, data, server)``."""
        out = []
        for relay in self._by_transport.values():
            allocation = relay.allocation
            for data in allocation.datagrams_to_send():
                out.append((relay.transport, data, allocation.server))
        return out

    def due(self, now: float) -> list[Relay]:
        """Run the allocations' timers due at ``now``; the relays whose
        timers ran (their events are to be taken with :meth:`events`)."""
        ran = []
        for relay in list(self._by_transport.values()):
            timer_at = relay.allocation.get_timer()
            if timer_at is not None and timer_at <= now:
                relay.allocation.handle_timer(now)
                ran.append(relay)
        return ran

    def events(
        self, relay: Relay, *, closed: bool
    ) -> list[RelayAllocated | RelayEnded]:
        """Take the allocation's events: what the agent must do about them.

        :param closed: whether the agent is closed (no 437 retry then).
        """
        allocation = relay.allocation
        out: list[RelayAllocated | RelayEnded] = []
        while (event := allocation.next_event()) is not None:
            if isinstance(event, AllocationSucceeded):
                # The agent adds the relay candidate unless it is closed.
                relay.allocated = not closed
                out.append(RelayAllocated(relay, event.relayed, event.mapped))
            elif isinstance(event, AllocationFailed):
                if (
                    event.error_code == 437
                    and not relay.allocated
                    and not relay.renewed
                    and not closed
                ):
                    # RFC 8656 §7.3: the server still holds an allocation for
                    # this client address (a port reused within its
                    # lifetime): try once more from another one.
                    self._renew.append(relay.transport)
                else:
                    out.append(RelayEnded(relay, event.reason))
            elif isinstance(event, ServerChanged):
                self._log.info(
                    "TURN server moved to %s:%d (ALTERNATE-SERVER)",
                    event.server[0],
                    event.server[1],
                )
                if allocation.transport != "udp":
                    # A stream is connected to the first server.
                    self._reconnect.append(relay.transport)
            elif isinstance(event, PermissionFailed):
                self._log.info(
                    "TURN permission for %s refused: %s", event.peer[0], event.reason
                )
        return out

    def mark_lost(self, relay: Relay, reason: str) -> bool:
        """Mark a relay as ended, and log it; whether it was not already."""
        if relay.lost:
            return False
        relay.lost = True
        self._log.warning(
            "TURN allocation at %s:%d ended: %s",
            relay.allocation.server[0],
            relay.allocation.server[1],
            reason,
        )
        return True

    def take_renew(self) -> list[int]:
        """Hand out the transports to replace after a 437."""
        renew, self._renew = self._renew, []
        return renew

    def take_reconnect(self) -> list[int]:
        """Hand out the stream transports to reconnect after a redirect."""
        reconnect, self._reconnect = self._reconnect, []
        return reconnect

    def move(self, old: int, new: int, allocation: TurnAllocation, now: float) -> Relay:
        """Retry the relay of transport ``old`` from ``new`` with a new
        allocation, started at once (the caller checked the IDs)."""
        relay = self._by_transport.pop(old)
        relay.transport = new
        relay.allocation = allocation
        relay.renewed = True
        self._by_transport[new] = relay
        allocation.start(now, relay.deadline)
        return relay
