"""Candidate pairs, their states and priorities (RFC 8445 §6.1.2).

A pair here is keyed by where checks leave from (the endpoint: the socket of a
host candidate, which is also the base of any server-reflexive candidate
gathered through it) and the remote transport address. Pairs whose local
candidate is server-reflexive would be redundant with the host pair of the same
base, so they are never formed (RFC 8445 §6.1.2.4). When a check's response
maps us to another address (a NAT), the pair's ``valid_local`` becomes the
peer-reflexive candidate it learnt, which is what the valid pair reports.

Each pair also keeps what went wrong with its checks since it last succeeded
(:class:`PairFaults`): the agent sums them over the check list to say why ICE
failed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._transaction import ClientTransaction
from .candidate import Candidate

__all__ = ["CandidatePair", "PairFaults", "PairState", "PairStats", "pair_priority"]

Address = tuple[str, int]


class PairState(enum.Enum):
    """Check-list states of a candidate pair (RFC 8445 §6.1.2.6)."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def pair_priority(controlling: int, controlled: int) -> int:
    """The priority of a pair (RFC 8445 §6.1.2.3).

    ``2**32 * min(G, D) + 2 * max(G, D) + (1 if G > D else 0)``, where G is the
    controlling agent's candidate priority and D the controlled agent's.
    """
    low, high = (
        (controlled, controlling)
        if controlling > controlled
        else (controlling, controlled)
    )
    return (low << 32) + (high << 1) + (1 if controlling > controlled else 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PairStats:
    """A snapshot of one candidate pair, from :meth:`syncice.Connection.get_stats`.

    Counters cover connectivity checks (``requests_*``, ``responses_*``) and
    application data received (``datagrams_received``, ``bytes_received``).
    Data sent is not counted per pair (``send()`` goes straight to the
    socket): ``datagrams_sent`` and ``bytes_sent`` stay 0 for now. ``rtt`` is the last
    round-trip time of a check that was answered on its first send (Karn's
    rule), in seconds, or ``None``.
    """

    component: int
    local: Candidate
    remote: Candidate
    state: str
    nominated: bool
    selected: bool
    requests_sent: int
    requests_received: int
    responses_sent: int
    responses_received: int
    datagrams_sent: int
    datagrams_received: int
    bytes_sent: int
    bytes_received: int
    rtt: float | None


class PairFaults:
    """What went wrong with the checks of a pair (or, summed with :meth:`add`,
    of a whole check list) since it last succeeded.

    - ``rejected``: responses discarded for their integrity (RFC 8489 §9.1.5),
      by error code: an unsigned 400 or 401 is the peer refusing our
      credentials; code 0 counts the others (a wrong or missing
      MESSAGE-INTEGRITY).
    - ``errors``: signed error responses that failed a check, by code (487
      once a pair had too many).
    - ``asymmetric``: responses from another address than the check's.
    - ``unmapped``: success responses without XOR-MAPPED-ADDRESS.
    - ``timeouts`` and ``unanswered``: checks that ended without any response,
      and how many times they had been sent.
    """

    __slots__ = (
        "asymmetric",
        "errors",
        "rejected",
        "timeouts",
        "unanswered",
        "unmapped",
    )

    def __init__(self) -> None:
        self.rejected: dict[int, int] = {}
        self.errors: dict[int, int] = {}
        self.asymmetric = 0
        self.unmapped = 0
        self.timeouts = 0
        self.unanswered = 0

    def add(self, other: PairFaults) -> None:
        """Add ``other``'s counts to these."""
        for mine, theirs in (
            (self.rejected, other.rejected),
            (self.errors, other.errors),
        ):
            for code, count in theirs.items():
                mine[code] = mine.get(code, 0) + count
        self.asymmetric += other.asymmetric
        self.unmapped += other.unmapped
        self.timeouts += other.timeouts
        self.unanswered += other.unanswered


class CandidatePair:
    """One entry of the check list, mutable, owned by the agent."""

    __slots__ = (
        "bytes_received",
        "datagrams_received",
        "endpoint",
        "faults",
        "local",
        "nominated",
        "nominating",
        "priority",
        "remote",
        "remote_nominated",
        "requests_received",
        "requests_sent",
        "responded_at",
        "responses_received",
        "responses_sent",
        "role_conflicts",
        "rtt",
        "state",
        "transaction",
        "valid",
        "valid_local",
    )

    def __init__(self, *, endpoint: int, local: Candidate, remote: Candidate) -> None:
        self.endpoint = endpoint
        self.local = local
        self.valid_local = local
        self.remote = remote
        self.state = PairState.FROZEN
        self.priority = 0
        self.valid = False
        self.nominated = False
        self.nominating = False
        self.remote_nominated = False
        self.transaction: ClientTransaction | None = None
        self.requests_sent = 0
        self.requests_received = 0
        self.responses_sent = 0
        self.responses_received = 0
        self.datagrams_received = 0
        self.bytes_received = 0
        self.rtt: float | None = None
        #: When the last authenticated success response to a check or
        #: consent request on this pair arrived (RFC 7675 counts from it).
        self.responded_at: float | None = None
        #: What went wrong with its checks since it last succeeded.
        self.faults = PairFaults()
        #: 487 answers in a row: a peer answering every check so is broken.
        self.role_conflicts = 0

    @property
    def component(self) -> int:
        """The component both candidates belong to."""
        return self.local.component

    @property
    def foundation(self) -> tuple[str, str]:
        """The pair foundation: local and remote candidate foundations."""
        return (self.local.foundation, self.remote.foundation)

    @property
    def remote_addr(self) -> Address:
        """Where checks and data for this pair go."""
        return (self.remote.host, self.remote.port)

    def update_priority(self, controlling: bool) -> None:
        """Recompute :attr:`priority` for the agent's role."""
        local = self.valid_local.priority
        remote = self.remote.priority
        self.priority = (
            pair_priority(local, remote)
            if controlling
            else pair_priority(remote, local)
        )

    def __str__(self) -> str:
        local, remote = self.valid_local, self.remote
        return (
            f"{local.type} {local.host}:{local.port} -> "
            f"{remote.type} {remote.host}:{remote.port} (component {self.component})"
        )

    def __repr__(self) -> str:
        return (
            f"CandidatePair({self.local.host}:{self.local.port} -> "
            f"{self.remote.host}:{self.remote.port}, {self.state.value})"
        )
