"""Events of the ICE agent (STYLE §4), and aioice's public ``ConnectionClosed``.

Every event is a frozen, slotted, keyword-only dataclass named in the past tense.
:class:`syncice.ice.IceAgent` queues them; :meth:`~syncice.ice.IceAgent.next_event`
hands them out in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from .candidate import Candidate

__all__ = [
    "CandidateGathered",
    "ConnectionClosed",
    "ConnectionEvent",
    "ConsentExpired",
    "GatheringCompleted",
    "IceCompleted",
    "IceEvent",
    "IceFailed",
    "PairStateChanged",
    "RelayLost",
    "RestartCompleted",
    "RoleChanged",
    "SelectedPairChanged",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class IceEvent:
    """Base class of the agent's events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateGathered(IceEvent):
    """A local candidate was gathered (host, server-reflexive or relay)."""

    candidate: Candidate


@dataclass(frozen=True, slots=True, kw_only=True)
class GatheringCompleted(IceEvent):
    """Gathering ended: every STUN server answered, failed or timed out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PairStateChanged(IceEvent):
    """A candidate pair moved from one check-list state to another."""

    component: int
    local: Candidate
    remote: Candidate
    old_state: str
    new_state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectedPairChanged(IceEvent):
    """The pair used to send data on ``component`` was chosen (or changed)."""

    component: int
    local: Candidate
    remote: Candidate


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleChanged(IceEvent):
    """A role conflict (RFC 8445 §7.3.1.1) switched the agent's role."""

    controlling: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class IceCompleted(IceEvent):
    """Every component has a selected (nominated) pair."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IceFailed(IceEvent):
    """Negotiation failed: no pair can succeed any more."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentExpired(IceEvent):
    """No authenticated response on the selected pair of ``component`` for the
    consent timeout (RFC 7675 §5.1): sending must stop."""

    component: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayLost(IceEvent):
    """The TURN allocation behind the selected pair of ``component`` ended
    (its TCP or TLS connection broke, a refresh failed, its lifetime ran
    out): the agent has closed, as no other path was chosen."""

    component: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartCompleted(IceEvent):
    """An ICE restart (RFC 8445 §9) is over: the check list of ``generation``
    (1 for the first restart) nominated a pair on every component, and data
    has moved to them (each move said by a :class:`SelectedPairChanged`)."""

    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEvent:
    """Base class of the events :meth:`syncice.Connection.get_event` returns."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(ConnectionEvent):
    """The connection was closed (aioice's event of the same name)."""
