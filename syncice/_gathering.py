"""Gathering server-reflexive candidates (RFC 8445 §5.1.1.2): the plan of
Binding requests and what their answers give.

- A Binding request goes from every host endpoint to every STUN server of
  its address family, bounded by ``gather_timeout`` (each request's deadline
  ends it in time) and retransmitted every ``gather_rto_max`` at most.
- A server-reflexive candidate equal to its base is redundant (RFC 8445
  §5.1.3), and so is one already gathered.
- :class:`~syncice.events.GatheringCompleted` follows once every request has
  been answered or has failed, and every TURN allocation (and 437 retry) has
  ended, or at once when there is nothing to ask.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence

from ._ice_states import StateMachine
from .candidate import Candidate, candidate_foundation, candidate_priority

__all__ = ["GATHER_TRANSITIONS", "GatherState", "Gathering", "plan", "srflx_candidate"]

Address = tuple[str, int]


class GatherState(enum.Enum):
    """Where gathering is: not started, under way, done."""

    NEW = "new"
    GATHERING = "gathering"
    COMPLETED = "completed"


#: Gathering starts once and completes once.
GATHER_TRANSITIONS = {
    GatherState.NEW: frozenset({GatherState.GATHERING}),
    GatherState.GATHERING: frozenset({GatherState.COMPLETED}),
    GatherState.COMPLETED: frozenset[GatherState](),
}


class Gathering(StateMachine[GatherState]):
    """The gathering state of an agent."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(GatherState.NEW, GATHER_TRANSITIONS)


def plan(
    hosts: Iterable[tuple[int, Candidate]], servers: Sequence[Address]
) -> Iterator[tuple[int, Address]]:
    """The Binding requests to send: ``(endpoint, server)`` for every UDP
    host endpoint and every STUN server of its address family (ICE-TCP's
    endpoints gather no server-reflexive candidate)."""
    for endpoint, candidate in hosts:
        if candidate.transport.lower() != "udp":
            continue
        family = ":" in candidate.host
        for server in servers:
            if (":" in server[0]) == family:
                yield endpoint, server


def srflx_candidate(
    base: Candidate, mapped: Address, known: Iterable[Candidate], *, server: str
) -> Candidate | None:
    """The server-reflexive candidate the STUN server at IP address
    ``server`` saw ``base`` as (``mapped``, canonical), or ``None`` when
    redundant with its base or a ``known`` candidate (RFC 8445 §5.1.3).
    Its foundation is of its base and of that server (§5.1.1.3)."""
    host, port = mapped
    if (host, port) == (base.host, base.port) or any(
        c.host == host and c.port == port and c.component == base.component
        for c in known
    ):
        return None
    return Candidate(
        foundation=candidate_foundation("srflx", "udp", base.host, server=server),
        component=base.component,
        transport="udp",
        priority=candidate_priority(
            base.component, "srflx", (base.priority >> 8) & 0xFFFF
        ),
        host=host,
        port=port,
        type="srflx",
        related_address=base.host,
        related_port=base.port,
    )
