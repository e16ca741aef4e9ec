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

:class:`CheckList` holds the agent's local endpoints, its candidates and the
pairs formed from them, highest priority first, with the rules of which pair
is checked next (RFC 8445 §6.1.2.6, §6.1.4.2) and of which addresses are
authenticated peers. Every change of a pair's state goes through
:meth:`CheckList.set_state`, which checks :data:`PAIR_TRANSITIONS` and queues
the :class:`~syncice.events.PairStateChanged`.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._ice_log import EventLog
from ._ice_states import IllegalTransitionError
from ._ice_tcp import tcp_pairable
from ._transaction import ClientTransaction
from .candidate import Candidate
from .events import PairStateChanged

__all__ = [
    "PAIR_TRANSITIONS",
    "CandidatePair",
    "CheckList",
    "Endpoint",
    "PairFaults",
    "PairState",
    "PairStats",
    "canonical",
    "pair_priority",
    "remote_key",
]

Address = tuple[str, int]


# The canonical spellings met so far, by text: the same few addresses come
# back in every candidate, pair and datagram of a connection, and this hands
# out one string object for each (less memory, no ipaddress each time).
# Bounded: emptied when full.
_CANONICAL: dict[str, str] = {}
_CANONICAL_LIMIT = 1024


def canonical(host: str) -> str:
    """An IP address in its one canonical spelling; a name as it is."""
    spelled = _CANONICAL.get(host)
    if spelled is None:
        try:
            spelled = str(ipaddress.ip_address(host))
        except ValueError:
            return host
        if len(_CANONICAL) >= _CANONICAL_LIMIT:
            _CANONICAL.clear()
        spelled = _CANONICAL[host] = _CANONICAL.setdefault(spelled, spelled)
    return spelled


def remote_key(
    component: int, addr: Address, transport: str = "udp"
) -> tuple[int, Address] | tuple[int, Address, str]:
    """The key of a remote candidate in :attr:`CheckList.remote_by_addr`:
    its component and address, and its transport unless UDP (a TCP and a
    UDP candidate may share an address and port)."""
    transport = transport.lower()
    return (component, addr) if transport == "udp" else (component, addr, transport)


class PairState(enum.Enum):
    """Check-list states of a candidate pair (RFC 8445 §6.1.2.6)."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


_F, _W, _I, _S, _X = (
    PairState.FROZEN,
    PairState.WAITING,
    PairState.IN_PROGRESS,
    PairState.SUCCEEDED,
    PairState.FAILED,
)

#: Allowed moves of :class:`PairState` (RFC 8445 §6.1.2.6, with this agent's
#: additions): a Frozen pair is unfrozen (Waiting) or checked at once when it
#: is the best one left (In-Progress); a check succeeds, fails, or meets a
#: role conflict (back to Waiting, checked again); a valid pair is checked
#: again to nominate it; a Failed pair is checked again when the peer's check
#: triggers it; any pair fails when its relay is lost. An ICE-lite agent's
#: pair goes from Frozen to Succeeded when the peer nominates it (RFC 8445
#: §7.3.2: the lite agent sends no check).
PAIR_TRANSITIONS: Mapping[PairState, frozenset[PairState]] = {
    _F: frozenset({_W, _I, _X, _S}),  # _S: a lite agent's nominated pair
    _W: frozenset({_I, _X}),
    _I: frozenset({_W, _S, _X}),
    _S: frozenset({_I, _X}),
    _X: frozenset({_W, _I}),
}


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
    application data, sent and received, on this pair's own component: what
    :meth:`syncice.ice.IceAgent.send` queued and
    :meth:`~syncice.ice.IceAgent.receive_datagram` returned, plus what the
    caller reported with :meth:`~syncice.ice.IceAgent.count_sent` and
    :meth:`~syncice.ice.IceAgent.count_received` (data it moved on the
    pair's socket itself). ``rtt`` is the last
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
        "bytes_sent",
        "datagrams_received",
        "datagrams_sent",
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
        self.datagrams_sent = 0
        self.bytes_sent = 0
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
    def in_checks(self) -> bool:
        """Whether the pair may still be checked: Frozen, Waiting or
        In-Progress."""
        return self.state in (
            PairState.FROZEN,
            PairState.WAITING,
            PairState.IN_PROGRESS,
        )

    @property
    def transaction_id(self) -> bytes | None:
        """The ID of the check out on this pair, or ``None``."""
        tx = self.transaction
        return None if tx is None else tx.transaction_id

    @property
    def remote_addr(self) -> Address:
        """Where checks and data for this pair go."""
        return (self.remote.host, self.remote.port)

    def move_to(self, state: PairState) -> PairState:
        """Change :attr:`state` as :data:`PAIR_TRANSITIONS` allows; return
        the state it left.

        :raises ~syncice._ice_states.IllegalTransitionError: for a move the
            table does not allow (a bug in syncice).
        """
        old = self.state
        if state not in PAIR_TRANSITIONS[old]:
            raise IllegalTransitionError(
                f"pair {old.value} -> {state.value} is not allowed"
            )
        self.state = state
        return old

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


@dataclass(slots=True)
class Endpoint:
    """A local socket (or relay) and the candidate checks leave from."""

    component: int
    candidate: Candidate
    #: Pairs of this endpoint, by remote address.
    pairs: dict[Address, CandidatePair] = field(default_factory=dict)
    #: Remote addresses that authenticated themselves (a check from them, or
    #: a response to ours): their data is accepted. The pair, once there is
    #: one.
    peers: dict[Address, CandidatePair | None] = field(default_factory=dict)


class CheckList:
    """The endpoints, candidates and pairs of an agent, and its selected pairs.

    :param log: where pair state changes are queued.
    :param max_pairs: the bound on the check list (RFC 8445 §6.1.2.5).
    """

    __slots__ = (
        "_log",
        "_max_pairs",
        "endpoints",
        "local_candidates",
        "pairs",
        "remote_by_addr",
        "remote_candidates",
        "selected",
    )

    def __init__(self, log: EventLog, max_pairs: int) -> None:
        self._log = log
        self._max_pairs = max_pairs
        #: Local endpoints (host sockets, allocated relays), by ID.
        self.endpoints: dict[int, Endpoint] = {}
        #: Every local candidate, in the order gathered.
        self.local_candidates: list[Candidate] = []
        #: Every remote candidate, peer-reflexive ones included.
        self.remote_candidates: list[Candidate] = []
        #: Remote candidates by ``(component, address)``.
        self.remote_by_addr: dict[
            tuple[int, Address] | tuple[int, Address, str], Candidate
        ] = {}
        #: The check list, highest priority first.
        self.pairs: list[CandidatePair] = []
        #: The selected pair of each component that has one.
        self.selected: dict[int, CandidatePair] = {}

    def add_endpoint(self, endpoint: int, component: int, candidate: Candidate) -> None:
        """A local endpoint and its candidate (also a local candidate)."""
        self.endpoints[endpoint] = Endpoint(component, candidate)
        self.local_candidates.append(candidate)

    def add_remote(self, candidate: Candidate, addr: Address) -> None:
        """A remote candidate at ``addr`` (its canonical address)."""
        key = remote_key(candidate.component, addr, candidate.transport)
        self.remote_by_addr[key] = candidate
        self.remote_candidates.append(candidate)

    def pair(
        self,
        endpoint: int,
        remote: Candidate,
        controlling: bool,
        *,
        trickled: bool = False,
    ) -> CandidatePair | None:
        """The pair of ``endpoint`` and ``remote``, formed if new; ``None``
        if they cannot pair or the check list is full. Call :meth:`sort`
        after forming pairs."""
        ep = self.endpoints[endpoint]
        if not ep.candidate.can_pair_with(remote) or not tcp_pairable(
            ep.candidate, remote
        ):
            return None
        addr = (canonical(remote.host), remote.port)
        existing = ep.pairs.get(addr)
        if existing is not None:
            return existing
        if len(self.pairs) >= self._max_pairs:
            return None
        pair = CandidatePair(endpoint=endpoint, local=ep.candidate, remote=remote)
        pair.update_priority(controlling)
        if trickled and not any(
            p.foundation == pair.foundation
            and p.state in (PairState.WAITING, PairState.IN_PROGRESS)
            for p in self.pairs
        ):
            # RFC 8838 §11: a trickled pair whose foundation is not being
            # checked starts Waiting.
            pair.move_to(PairState.WAITING)
        self.add_pair(pair)
        return pair

    def add_pair(self, pair: CandidatePair) -> None:
        """Put a new pair on the check list (unsorted)."""
        ep = self.endpoints[pair.endpoint]
        addr = pair.remote_addr
        self.pairs.append(pair)
        ep.pairs[addr] = pair
        if addr in ep.peers:
            ep.peers[addr] = pair

    def sort(self) -> None:
        """Highest priority first."""
        self.pairs.sort(key=lambda p: p.priority, reverse=True)

    def update_priorities(self, controlling: bool) -> None:
        """Recompute every priority for a new role, and sort."""
        for pair in self.pairs:
            pair.update_priority(controlling)
        self.sort()

    def set_state(self, pair: CandidatePair, state: PairState) -> None:
        """Move ``pair`` to ``state`` (nothing if it is there already), with a
        :class:`~syncice.events.PairStateChanged`.

        :raises ~syncice._ice_states.IllegalTransitionError: for a move
            :data:`PAIR_TRANSITIONS` does not allow.
        """
        if pair.state is not state:
            old = pair.move_to(state)
            self._log.emit(
                PairStateChanged(
                    component=pair.component,
                    local=pair.local,
                    remote=pair.remote,
                    old_state=old.value,
                    new_state=state.value,
                )
            )

    def unfreeze_initial(self) -> None:
        """RFC 8445 §6.1.2.6: per foundation, the pair of the lowest component
        with the highest priority starts Waiting (every pair is Frozen)."""
        seen: set[tuple[str, str]] = set()
        for pair in sorted(self.pairs, key=lambda p: (p.component, -p.priority)):
            if pair.foundation not in seen:
                seen.add(pair.foundation)
                self.set_state(pair, PairState.WAITING)

    def unfreeze_foundation(self, foundation: tuple[str, str]) -> None:
        """RFC 8445 §7.2.5.3.3: the Frozen pairs of a foundation that just
        succeeded start Waiting."""
        for other in self.pairs:
            if other.state is PairState.FROZEN and other.foundation == foundation:
                self.set_state(other, PairState.WAITING)

    def next_ordinary_pair(self) -> CandidatePair | None:
        """The pair the next ``Ta`` tick checks, or ``None``."""
        selected = self.selected
        for pair in self.pairs:
            if pair.state is PairState.WAITING and pair.component not in selected:
                return pair
        # RFC 8445 §6.1.4.2: no Waiting pair, so unfreeze the best Frozen pair
        # whose foundation is not being checked. A Waiting pair of a component
        # already selected will never be checked: it holds up no foundation.
        busy = {
            p.foundation
            for p in self.pairs
            if p.state is PairState.IN_PROGRESS
            or (p.state is PairState.WAITING and p.component not in selected)
        }
        for pair in self.pairs:
            if (
                pair.state is PairState.FROZEN
                and pair.foundation not in busy
                and pair.component not in selected
            ):
                return pair
        return None

    def has_endpoint(self, component: int) -> bool:
        """Whether some local endpoint is on ``component``."""
        return any(ep.component == component for ep in self.endpoints.values())

    def active_components(self, count: int, remote_end: bool) -> set[int]:
        """Components (of ``1..count``) that can still complete: after
        end-of-candidates, those without any remote candidate are left out
        (as aioice does)."""
        every = set(range(1, count + 1))
        if not remote_end:
            return every
        seen = {c.component for c in self.remote_candidates}
        return every & seen if seen else every

    def authenticated_peers(self) -> dict[tuple[int, Address], int]:
        """The component of every authenticated ``(endpoint, address)``."""
        return {
            (endpoint, addr): ep.component
            for endpoint, ep in self.endpoints.items()
            for addr in ep.peers
        }

    def authenticated_count(self) -> int:
        """How many entries :meth:`authenticated_peers` would return."""
        return sum(len(ep.peers) for ep in self.endpoints.values())

    def lost(self, components: set[int], patient: bool) -> bool:
        """Whether one of ``components`` (those without a selected pair) can
        never complete: RFC 8445 §7.2.5.4, once no pair is left to check on
        it and none is valid. While a pair of any of them is still in checks,
        nothing is lost yet (the answer is ``False``). While ``patient``, a
        component with an endpoint but no pair is not lost: the peer's
        checks may still come there (peer-reflexive candidates, RFC 8863)."""
        lost = False
        for component in components:
            pairs = [p for p in self.pairs if p.component == component]
            if any(p.in_checks for p in pairs):
                return False
            if not pairs and patient and self.has_endpoint(component):
                continue
            if not any(p.valid for p in pairs):
                lost = True
        return lost

    def endpoint_with(self, component: int, foundation: str) -> int | None:
        """The endpoint of ``component`` whose candidate, or a candidate
        based on it (server-reflexive), has ``foundation``."""
        for endpoint, ep in self.endpoints.items():
            base = ep.candidate
            if ep.component == component and any(
                c.foundation == foundation
                and c.component == component
                and (
                    c is base
                    or (c.related_address, c.related_port) == (base.host, base.port)
                )
                for c in self.local_candidates
            ):
                return endpoint
        return None

    def pair_by_hand(
        self, endpoint: int, remote: Candidate, controlling: bool
    ) -> CandidatePair:
        """The pair of ``endpoint`` and ``remote`` (formed if new, beyond
        ``max_pairs`` if need be), made valid and nominated, its remote
        address an authenticated peer: a pair chosen without checks."""
        ep = self.endpoints[endpoint]
        addr = (canonical(remote.host), remote.port)
        pair = ep.pairs.get(addr)
        if pair is None:
            pair = CandidatePair(endpoint=endpoint, local=ep.candidate, remote=remote)
            pair.update_priority(controlling)
            self.add_pair(pair)
        ep.peers[addr] = pair
        pair.valid = True
        pair.nominated = True
        return pair

    def authenticate(self, endpoint: int, addr: Address) -> None:
        """``addr`` proved it knows our password: its data is accepted."""
        ep = self.endpoints[endpoint]
        if addr not in ep.peers:
            ep.peers[addr] = ep.pairs.get(addr)
