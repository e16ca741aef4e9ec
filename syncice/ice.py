"""The sans-IO ICE agent (RFC 8445), with consent freshness (RFC 7675).

Rules of this module, in the manner of h11's ``_state.py``:

- Bytes and the time come in (:meth:`IceAgent.receive_datagram`,
  :meth:`IceAgent.handle_timer`, each with ``now``); datagrams to send, events
  and the next deadline go out (:meth:`IceAgent.datagrams_to_send`,
  :meth:`IceAgent.next_event`, :meth:`IceAgent.get_timer`). Nothing here reads
  a clock, opens a socket or starts a thread; randomness comes from the
  ``random.Random`` the caller hands in.
- Endpoints are small integers chosen by the caller: one per local socket (a
  host candidate). Server-reflexive candidates share their base's endpoint.
- Network bytes never raise: malformed, unexpected or unauthenticated datagrams
  are dropped and counted in :attr:`IceAgent.stats`. A request that fails
  authentication gets a small 400/401 answer (never larger than itself) and
  creates no state.
- Every queue a peer can fill is bounded by :class:`IceConfig`: remote
  candidates (peer-reflexive ones included), pairs, checks that arrive before
  :meth:`IceAgent.connect`.
- Ordinary checks are paced by ``Ta``. A triggered check (the answer to a
  peer's check) and the nomination of a pair that just succeeded go out at once:
  each is caused by a datagram from the peer, so the peer paces them, and
  making them wait a ``Ta`` tick would only add latency to every connect.
- A check from the peer on an In-Progress pair cancels our check and sends a
  new one at once (RFC 8445 §7.3.1.4) when ours was already sent again (it
  was lost), or on its first send towards a relayed remote candidate (the
  peer's TURN server dropped it before the permission existed). Otherwise our
  first check goes on (its answer is usually in flight), which saves a
  duplicate check per pair.
- The controlling agent nominates (regular nomination, RFC 8445 §8.1.1) as soon
  as the best pair it can still hope for on a component has succeeded, or
  ``nomination_wait`` after the first pair succeeded if better ones are still
  being checked. A USE-CANDIDATE from an aggressive peer is honoured.
- The controlled agent does not wait for a nomination for ever: once it has
  had no authenticated check from the peer, on a pair of a component still
  without a selected pair, for ``nomination_timeout`` (counted from
  :meth:`IceAgent.connect`, and again from every such check or a switch to
  the controlled role), ICE fails. Without remote candidates it waits for
  peer-reflexive ones that long, rather than failing at once.
- A response to our check that fails its integrity check (an unsigned 400 or
  401 included) is discarded as if it had never arrived and the
  retransmissions go on (RFC 8489 §9.1.5): one spoofed datagram cannot fail a
  pair. A check whose every response was discarded fails at its timeout, as
  an integrity violation, and the failure reason counts those responses.
- Once ICE has failed (or the agent is closed), the agent answers no request
  at all and sends no consent check: its silence is what lets the peer's
  consent expire (RFC 7675 §5.1), and its checks stop.
- :class:`~syncice.events.IceFailed` names the cause: the peer's rejections of
  our credentials first, then ours of its checks, the nomination timeout,
  error responses, timeouts; "no candidate pair succeeded" only when nothing
  more is known.
- Every event is queued by one method, which also logs it on the
  ``syncice.ice`` logger (completion, failure, role switches and consent
  expiry at INFO, the rest at DEBUG), each line prefixed with the agent's
  name; a few DEBUG lines cover what is not an event (remote candidates,
  nominations, check failures). Passwords are never logged.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ._checklist import CandidatePair, PairFaults, PairState, PairStats
from ._transaction import ClientTransaction, Poll
from .candidate import Candidate, candidate_foundation, candidate_priority
from .events import (
    CandidateGathered,
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceEvent,
    IceFailed,
    PairStateChanged,
    RelayLost,
    RoleChanged,
    SelectedPairChanged,
)
from .exceptions import CandidateError, StunParseError
from .stun import Class, Message, Method, parse_message, short_term_key
from .turn import (
    AllocationFailed,
    AllocationSucceeded,
    PermissionFailed,
    ServerChanged,
    TurnAllocation,
    TurnState,
)

__all__ = [
    "AgentStats",
    "IceAgent",
    "IceConfig",
    "IceState",
    "Transmit",
    "validate_password",
    "validate_username",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# One for every agent: SystemRandom keeps no state worth a copy (os.urandom),
# and a Random object costs 2.5 kB, which adds up over many connections.
_SYSTEM_RANDOM = random.SystemRandom()

_COOKIE_BYTES = b"\x21\x12\xa4\x42"
_ICE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
)


def _ice_chars(value: object, name: str, low: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not (low <= len(value) <= 256 and _ICE_CHARS.issuperset(value)):
        raise ValueError(f"{name} must be {low} to 256 ice-chars (RFC 8839 §5.4)")
    return value


def validate_username(value: object) -> str:
    """Check an ``ice-ufrag``: 4 to 256 ice-chars (RFC 8839 §5.4).

    :raises ValueError: if it is malformed.
    :raises TypeError: if it is not a :class:`str`.
    """
    return _ice_chars(value, "username", 4)


def validate_password(value: object) -> str:
    """Check an ``ice-pwd``: 22 to 256 ice-chars (RFC 8839 §5.4).

    :raises ValueError: if it is malformed.
    :raises TypeError: if it is not a :class:`str`.
    """
    return _ice_chars(value, "password", 22)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an int or a float, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _integer(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class IceConfig:
    """Timing constants and bounds of the agent (durations in seconds).

    Every field is checked when the config is made: a wrong type raises
    :class:`TypeError` (a :class:`bool` is not a number here), a value out of
    range :class:`ValueError`, each naming the field. Durations are finite
    ints or floats.

    :param ta: pacing of ordinary checks (RFC 8445 §14.2); at least 5 ms.
    :param rto: initial retransmission timeout of checks and STUN requests;
        positive.
    :param max_sends: Rc, how many times a request is sent (RFC 8489 §6.2.1);
        1 to 100.
    :param final_wait: Rm, the wait after the last send, in RTOs; 0 to 100.
    :param rto_max: a cap on the doubled retransmission interval, or ``None``;
        at least ``rto``.
        The defaults (Rc 18, the interval capped at 2 s) send a check at 0,
        0.5, 1.5, 3.5 s and then every 2 s until 31.5 s, and give up at
        39.5 s, the RFC's own bound (Rc 7 without a cap: 0, 0.5, ... 15.5,
        31.5 s). The same time to fail, but 18 tries instead of 7, and none
        of the 8 and 16 s silences before the last two: on lossy paths that
        is the difference between connecting and not.
    :param gather_timeout: how long STUN servers may take during gathering;
        positive (to gather host candidates only, give no server).
    :param gather_rto_max: the cap on the retransmission interval of STUN
        requests made while gathering: with the defaults, a lost request is
        sent again every 0.5 s, ten tries within the 5 s bound instead of
        four. A peer that misses its server-reflexive candidate cannot be
        reached through a NAT that filters, so these tries are worth more
        than any later ones. At least ``rto``.
    :param nomination_wait: how long the controlling agent waits, after a
        component's first pair succeeded, for a better pair still in checks;
        0 or more.
    :param nomination_timeout: how long the controlled agent waits for the
        controlling peer. While some component has no selected pair, ICE
        fails once no authenticated check has come from the peer on a pair
        of such a component for this long: counted from
        :meth:`IceAgent.connect`, and again from every such check and from a
        switch to the controlled role (consent checks on a component already
        selected, or checks that could not be paired, do not count). A peer
        that is still checking sends checks far more often (a lost one is
        sent again within 2 s with the defaults), so this only ends the wait
        for a peer that failed, gave up, or cannot authenticate itself; it
        also bounds the wait for peer-reflexive candidates of a controlled
        agent that has no remote candidate. Longer than ``nomination_wait``;
        10 s by default.
    :param consent_interval: mean interval of consent checks (RFC 7675 §5.1),
        each drawn between 0.8 and 1.2 times it; positive.
    :param consent_timeout: consent is lost this long after the last
        authenticated response on the selected pair; longer than 1.2 times
        ``consent_interval`` (the longest gap between two consent checks).
    :param max_remote_candidates: bound on remote candidates, peer-reflexive
        ones included; 1 to 10,000.
    :param max_pairs: bound on the check list (RFC 8445 §6.1.2.5); 1 to
        10,000.
    :param max_early_checks: bound on checks kept until
        :meth:`IceAgent.connect`; 1 to 10,000.
    :raises TypeError: if a field has the wrong type.
    :raises ValueError: if a field is out of range.
    """

    ta: float = 0.02
    rto: float = 0.5
    max_sends: int = 18
    final_wait: int = 16
    rto_max: float | None = 2.0
    gather_timeout: float = 5.0
    gather_rto_max: float = 0.5
    nomination_wait: float = 0.5
    nomination_timeout: float = 10.0
    consent_interval: float = 5.0
    consent_timeout: float = 30.0
    max_remote_candidates: int = 100
    max_pairs: int = 100
    max_early_checks: int = 100

    def __post_init__(self) -> None:
        if _number("ta", self.ta) < 0.005:
            raise ValueError(
                f"ta must be at least 0.005 s (RFC 8445 §14.2), not {self.ta!r}"
            )
        rto = _number("rto", self.rto)
        if rto <= 0:
            raise ValueError(f"rto must be positive, not {self.rto!r}")
        _integer("max_sends", self.max_sends, 1, 100)
        _integer("final_wait", self.final_wait, 0, 100)
        for name, value in (
            ("rto_max", self.rto_max),
            ("gather_rto_max", self.gather_rto_max),
        ):
            if value is None and name == "rto_max":
                continue  # no cap
            if _number(name, value) < rto:
                raise ValueError(
                    f"{name} must be at least rto ({rto:g}), not {value!r}"
                )
        if _number("gather_timeout", self.gather_timeout) <= 0:
            raise ValueError(
                "gather_timeout must be positive (to gather host candidates "
                f"only, give no server), not {self.gather_timeout!r}"
            )
        wait = _number("nomination_wait", self.nomination_wait)
        if wait < 0:
            raise ValueError(
                f"nomination_wait must not be negative, not {self.nomination_wait!r}"
            )
        if _number("nomination_timeout", self.nomination_timeout) <= wait:
            raise ValueError(
                f"nomination_timeout must be longer than nomination_wait "
                f"({wait:g}), not {self.nomination_timeout!r}"
            )
        interval = _number("consent_interval", self.consent_interval)
        if interval <= 0:
            raise ValueError(
                f"consent_interval must be positive, not {self.consent_interval!r}"
            )
        if _number("consent_timeout", self.consent_timeout) <= 1.2 * interval:
            raise ValueError(
                "consent_timeout must be longer than 1.2 times consent_interval "
                f"({1.2 * interval:g}), not {self.consent_timeout!r}"
            )
        for name in ("max_remote_candidates", "max_pairs", "max_early_checks"):
            _integer(name, getattr(self, name), 1, 10_000)


class IceState:
    """The agent's life cycle, as strings."""

    NEW = "new"
    CHECKING = "checking"
    COMPLETED = "completed"
    FAILED = "failed"
    CLOSED = "closed"


class Transmit(NamedTuple):
    """A datagram to send: from ``endpoint`` to ``addr``."""

    endpoint: int
    data: bytes
    addr: Address


@dataclass(slots=True)
class AgentStats:
    """Counters of what the agent dropped or refused (peer faults stay here)."""

    malformed: int = 0
    unauthenticated: int = 0
    unexpected: int = 0
    unknown_peer_data: int = 0
    early_checks_dropped: int = 0
    candidates_refused: int = 0
    error_responses_suppressed: int = 0


@dataclass(slots=True)
class _Endpoint:
    component: int
    candidate: Candidate
    # Pairs of this endpoint, by remote address.
    pairs: dict[Address, CandidatePair] = field(default_factory=dict)
    # Remote addresses that authenticated themselves (a check from them, or a
    # response to ours): their data is accepted. The pair, once there is one.
    peers: dict[Address, CandidatePair | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    kind: str  # "check", "consent" or "gather"
    transaction: ClientTransaction
    pair: CandidatePair | None = None
    nominate: bool = False
    controlling: bool = False
    # RFC 8445 §7.3.1.4: a check cancelled by a triggered one is not sent
    # again, and one sent by such a re-trigger cancels no other.
    cancelled: bool = False
    retriggered: bool = False
    # The check that replaced a cancelled one.
    replaced_by: ClientTransaction | None = None


@dataclass(slots=True)
class _Relay:
    """A TURN allocation: reached through ``transport`` (the caller's socket or
    stream to the server), it gives the relay candidate of ``endpoint``."""

    transport: int
    endpoint: int
    component: int
    allocation: TurnAllocation
    lost: bool = False
    renewed: bool = False
    deadline: float | None = None


class _EarlyCheck(NamedTuple):
    endpoint: int
    addr: Address
    priority: int
    use_candidate: bool


class _Consent:
    __slots__ = ("check_at", "expires_at", "pending")

    def __init__(self, check_at: float, expires_at: float) -> None:
        self.check_at = check_at
        self.expires_at = expires_at
        self.pending: bytes | None = None


def _canonical(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


#: Reason phrases of the error codes a check may get (RFC 8489 §14.8, RFC 8445
#: §16.2): the peer's own phrase is not repeated, as it could say anything.
_ERROR_NAMES = {
    400: "Bad Request",
    401: "Unauthenticated",
    420: "Unknown Attribute",
    487: "Role Conflict",
    500: "Server Error",
}

#: A pair whose checks the peer answers 487 this many times in a row fails:
#: a peer that does so whatever role we claim would keep us switching roles
#: for ever (two are the most a genuine conflict takes).
_MAX_ROLE_CONFLICTS = 3

#: Events logged at INFO; the others at DEBUG.
_INFO_EVENTS = (IceCompleted, IceFailed, RoleChanged, ConsentExpired, RelayLost)


def _status(code: int) -> str:
    name = _ERROR_NAMES.get(code)
    return str(code) if name is None else f"{code} {name}"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _where(candidate: Candidate) -> str:
    return f"{candidate.type} {candidate.host}:{candidate.port}"


def _describe(event: IceEvent) -> tuple[str, tuple[object, ...]]:
    """The log line of an event: a format and its arguments."""
    if isinstance(event, CandidateGathered):
        return "local candidate %s", (event.candidate.to_sdp(),)
    if isinstance(event, PairStateChanged):
        return "pair %s -> %s (component %d): %s -> %s", (
            _where(event.local),
            _where(event.remote),
            event.component,
            event.old_state,
            event.new_state,
        )
    if isinstance(event, SelectedPairChanged):
        return "selected pair %s -> %s (component %d)", (
            _where(event.local),
            _where(event.remote),
            event.component,
        )
    if isinstance(event, RoleChanged):
        role = "controlling" if event.controlling else "controlled"
        return "role changed: now %s", (role,)
    if isinstance(event, IceFailed):
        return "ICE failed: %s", (event.reason,)
    if isinstance(event, ConsentExpired):
        return "consent expired on component %d", (event.component,)
    if isinstance(event, RelayLost):
        return "TURN relay of component %d lost: %s", (event.component, event.reason)
    if isinstance(event, IceCompleted):
        return "ICE completed", ()
    # The one kind left: GatheringCompleted (a new kind needs a line above).
    return "gathering completed", ()


class IceAgent:
    """An ICE agent for one media stream, sans-IO.

    :param controlling: whether the agent starts in the controlling role.
    :param local_username: the local ``ice-ufrag``.
    :param local_password: the local ``ice-pwd``.
    :param components: the number of components, 1 to 256.
    :param config: timing constants and bounds.
    :param rng: the source of tie-breakers, transaction IDs and jitter.
    :param name: a prefix for log lines.
    """

    def __init__(
        self,
        *,
        controlling: bool,
        local_username: str,
        local_password: str,
        components: int = 1,
        config: IceConfig | None = None,
        rng: random.Random | None = None,
        name: str = "ice",
    ) -> None:
        if not isinstance(components, int) or not 1 <= components <= 256:
            raise ValueError("components must be an int from 1 to 256")
        self.config = config if config is not None else IceConfig()
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self._controlling = bool(controlling)
        self.local_username = validate_username(local_username)
        self.local_password = validate_password(local_password)
        self._local_key = short_term_key(local_password)
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        self._remote_key = b""
        #: Whether the peer is an ICE-lite agent: it never checks, we nominate.
        self.remote_is_lite = False
        self.tie_breaker = self._rng.getrandbits(64)
        self.components = components
        self.name = name
        self.state = IceState.NEW
        self.stats = AgentStats()

        self.local_candidates: list[Candidate] = []
        self.remote_candidates: list[Candidate] = []
        self._remote_by_addr: dict[tuple[int, Address], Candidate] = {}
        self.remote_end = False
        self._endpoints: dict[int, _Endpoint] = {}
        self._pairs: list[CandidatePair] = []
        self._pending: dict[bytes, _Pending] = {}
        self._early: deque[_EarlyCheck] = deque()
        self._events: deque[IceEvent] = deque()
        self._outbox: list[Transmit] = []
        self._next_check_at: float | None = None
        self._gathering = False
        self._gathered = False
        self._first_valid_at: dict[int, float] = {}
        self._selected: dict[int, CandidatePair] = {}
        self._consent: dict[int, _Consent] = {}
        self._closed_components: set[int] = set()
        # TURN allocations, by relay endpoint and by transport endpoint.
        self._relays: dict[int, _Relay] = {}
        self._turn: dict[int, _Relay] = {}
        self._renew: list[int] = []
        self._reconnect: list[int] = []
        # The nomination timeout counts from here: connect(), the last
        # authenticated check on a pair of a component not yet selected, a
        # switch to the controlled role.
        self._heard_at = 0.0
        # Such checks, and requests that named our ufrag but failed
        # authentication (the peer's credentials for us are wrong), for
        # failure reasons.
        self._checks_received = 0
        self._checks_rejected = 0
        # Why the TURN relays that had pairs ended.
        self._relays_lost: list[str] = []

    # --- properties --------------------------------------------------------

    @property
    def controlling(self) -> bool:
        """Whether the agent is controlling now (role conflicts may change it)."""
        return self._controlling

    @property
    def pairs(self) -> list[CandidatePair]:
        """The check list, highest priority first (worker thread only)."""
        return self._pairs

    @property
    def selected(self) -> dict[int, CandidatePair]:
        """The selected pair of each component that has one."""
        return self._selected

    # --- output ------------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Hand out the datagrams queued since the last call, oldest first.

        Datagrams for a relayed peer come out wrapped for the TURN server
        (RFC 8656 §11, §12), on the relay's transport endpoint.
        """
        out = self._outbox
        if out:
            self._outbox = []
        for relay in self._turn.values():
            allocation = relay.allocation
            for data in allocation.datagrams_to_send():
                if out is self._outbox:
                    out = []
                out.append(Transmit(relay.transport, data, allocation.server))
        return out

    def _emit(self, event: IceEvent) -> None:
        """Queue an event, and log it: every event goes through here once."""
        self._events.append(event)
        level = logging.INFO if isinstance(event, _INFO_EVENTS) else logging.DEBUG
        if logger.isEnabledFor(level):
            text, args = _describe(event)
            logger.log(level, "%s " + text, self.name, *args)

    def _debug(self, text: str, *args: object) -> None:
        logger.debug("%s " + text, self.name, *args)

    def next_event(self) -> IceEvent | None:
        """Pop the oldest queued event, or return ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run (absolute), or ``None``."""
        at: float | None = None
        for relay in self._turn.values():
            t = relay.allocation.get_timer()
            if t is not None and (at is None or t < at):
                at = t
        if self.state == IceState.CLOSED:
            return at
        for pending in self._pending.values():
            t = pending.transaction.timer_at
            if at is None or t < at:
                at = t
        for when in self._timer_candidates():
            if when is not None and (at is None or when < at):
                at = when
        return at

    def _timer_candidates(self) -> Iterable[float | None]:
        if self.state == IceState.CHECKING:
            if (
                self._next_check_at is not None
                and self._next_ordinary_pair() is not None
            ):
                yield self._next_check_at
            if self._controlling:
                for component, t in self._first_valid_at.items():
                    if component not in self._selected and not self._nominating(
                        component
                    ):
                        yield t + self.config.nomination_wait
            else:
                yield self._heard_at + self.config.nomination_timeout
        for consent in self._consent.values():
            yield consent.check_at
            yield consent.expires_at

    # --- local candidates and gathering ------------------------------------

    def add_host_candidate(
        self, endpoint: int, component: int, addr: Address, *, local_pref: int = 65535
    ) -> Candidate:
        """Register a local socket as a host candidate (RFC 8445 §5.1.1.1).

        :param endpoint: the caller's ID of the socket, unique in this agent.
        :param component: its component.
        :param addr: the address it is bound to.
        :param local_pref: the local preference of its priority.
        :raises ValueError: if the endpoint is already known or the component
            is out of range.
        """
        if endpoint in self._endpoints:
            raise ValueError(f"endpoint {endpoint} already added")
        if not 1 <= component <= self.components:
            raise ValueError(f"component must be 1 to {self.components}")
        host = _canonical(addr[0])
        candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host", local_pref),
            host=host,
            port=addr[1],
            type="host",
        )
        self._endpoints[endpoint] = _Endpoint(component, candidate)
        self.local_candidates.append(candidate)
        self._emit(CandidateGathered(candidate=candidate))
        if self.state in (IceState.CHECKING, IceState.COMPLETED):
            for remote in self.remote_candidates:
                self._pair(endpoint, remote)
            self._sort()
        return candidate

    def add_relay(
        self,
        transport: int,
        endpoint: int,
        component: int,
        allocation: TurnAllocation,
    ) -> None:
        """Register a TURN allocation, started by :meth:`gather` (RFC 8445
        §5.1.1.2).

        The caller owns the socket or stream to the TURN server, its
        ``transport`` endpoint: what it receives there goes to
        :meth:`receive_datagram` (UDP) or :meth:`receive_stream` (TCP, TLS),
        and :meth:`datagrams_to_send` yields what goes to the server. Once
        allocated, the relay candidate is ``endpoint`` in pairs and routes:
        data sent there is wrapped by the allocation.

        :param transport: the caller's ID of the path to the server.
        :param endpoint: the ID the relay candidate gets, unique in this agent.
        :param component: its component.
        :param allocation: a new, unstarted allocation.
        :raises ValueError: if an ID is already known or the component is out
            of range.
        """
        taken = self._endpoints.keys() | self._relays.keys() | self._turn.keys()
        if transport in taken or endpoint in taken or transport == endpoint:
            raise ValueError("endpoint already added")
        if not 1 <= component <= self.components:
            raise ValueError(f"component must be 1 to {self.components}")
        relay = _Relay(transport, endpoint, component, allocation)
        self._turn[transport] = relay
        self._relays[endpoint] = relay

    def relay(self, endpoint: int) -> tuple[int, TurnAllocation] | None:
        """The transport endpoint and allocation behind a relay endpoint, or
        ``None`` when ``endpoint`` is not a relay."""
        relay = self._relays.get(endpoint)
        return None if relay is None else (relay.transport, relay.allocation)

    @property
    def relay_count(self) -> int:
        """How many TURN allocations were registered with :meth:`add_relay`."""
        return len(self._turn)

    @property
    def releasing(self) -> bool:
        """Whether a TURN allocation is still being released after
        :meth:`close` (its transport must stay open until then)."""
        return any(r.allocation.state == TurnState.CLOSING for r in self._turn.values())

    def _on_turn_events(self, relay: _Relay, now: float) -> None:
        allocation = relay.allocation
        while (event := allocation.next_event()) is not None:
            if isinstance(event, AllocationSucceeded):
                self._add_relay_candidate(relay, event, now)
            elif isinstance(event, AllocationFailed):
                if (
                    event.error_code == 437
                    and relay.endpoint not in self._endpoints
                    and not relay.renewed
                    and self.state != IceState.CLOSED
                ):
                    # RFC 8656 §7.3: the server still holds an allocation for
                    # this client address (a port reused within its
                    # lifetime): try once more from another one.
                    self._renew.append(relay.transport)
                else:
                    self._lose_relay(relay, event.reason, now)
            elif isinstance(event, ServerChanged):
                logger.info(
                    "%s TURN server moved to %s:%d (ALTERNATE-SERVER)",
                    self.name,
                    event.server[0],
                    event.server[1],
                )
                if allocation.transport != "udp":
                    # A stream is connected to the first server.
                    self._reconnect.append(relay.transport)
            elif isinstance(event, PermissionFailed):
                logger.info(
                    "%s TURN permission for %s refused: %s",
                    self.name,
                    event.peer[0],
                    event.reason,
                )
        self._maybe_gathered()

    def _add_relay_candidate(
        self, relay: _Relay, event: AllocationSucceeded, now: float
    ) -> None:
        if self.state == IceState.CLOSED:
            return
        host = _canonical(event.relayed[0])
        mapped = event.mapped
        candidate = Candidate(
            foundation=candidate_foundation(
                "relay", "udp", _canonical(relay.allocation.server[0])
            ),
            component=relay.component,
            transport="udp",
            priority=candidate_priority(relay.component, "relay"),
            host=host,
            port=event.relayed[1],
            type="relay",
            related_address=None if mapped is None else _canonical(mapped[0]),
            related_port=None if mapped is None else mapped[1],
        )
        self._endpoints[relay.endpoint] = _Endpoint(relay.component, candidate)
        self.local_candidates.append(candidate)
        self._emit(CandidateGathered(candidate=candidate))
        for remote in self.remote_candidates:
            self._permit(relay, remote, now)
        if self.state in (IceState.CHECKING, IceState.COMPLETED):
            for remote in self.remote_candidates:
                self._pair(relay.endpoint, remote)
            self._sort()

    def _permit(self, relay: _Relay, remote: Candidate, now: float) -> None:
        """Let the peer's checks in through the relay before ours go out: a
        permission and a channel for every remote candidate it may pair with
        (so that a peer that checks first is not dropped by the server)."""
        ep = self._endpoints.get(relay.endpoint)
        if ep is not None and ep.candidate.can_pair_with(remote):
            relay.allocation.permit((_canonical(remote.host), remote.port), now)

    def _lose_relay(self, relay: _Relay, reason: str, now: float) -> None:
        if relay.lost:
            return
        relay.lost = True
        logger.warning(
            "%s TURN allocation at %s:%d ended: %s",
            self.name,
            relay.allocation.server[0],
            relay.allocation.server[1],
            reason,
        )
        if relay.endpoint not in self._endpoints:
            return
        # The relay candidate is gone: so are its pairs.
        pairs = list(self._endpoints[relay.endpoint].pairs.values())
        if pairs:
            self._relays_lost.append(reason)
        for pair in pairs:
            if pair.transaction is not None:
                self._pending.pop(pair.transaction.transaction_id, None)
                pair.transaction = None
            if self._selected.get(pair.component) is pair:
                if self.state != IceState.CLOSED:
                    self._emit(RelayLost(component=pair.component, reason=reason))
                    self.close()
                return
            pair.nominating = False
            pair.valid = False
            self._fail_pair(pair, now)

    def transports_to_renew(self) -> list[int]:
        """Transport endpoints whose allocation the server refused with 437
        (Allocation Mismatch): the caller opens another socket and hands it
        to :meth:`renew_transport`. Gathering waits for that."""
        renew, self._renew = self._renew, []
        return renew

    def transports_to_reconnect(self) -> list[int]:
        """Stream transports (TCP, TLS) whose server redirected us
        (ALTERNATE-SERVER): the caller closes the stream and connects a new
        one, under the same endpoint, to :meth:`turn_server`; the allocation
        has queued its Allocate for it."""
        reconnect, self._reconnect = self._reconnect, []
        return reconnect

    def turn_server(self, transport: int) -> Address:
        """Where the allocation of a transport endpoint sends now.

        :raises KeyError: if ``transport`` is not a TURN transport.
        """
        return self._turn[transport].allocation.server

    def renew_transport(
        self, old: int, new: int, allocation: TurnAllocation, now: float
    ) -> None:
        """Retry a relay from the new transport endpoint ``new``, with a new
        allocation, instead of ``old`` (see :meth:`transports_to_renew`).

        :raises ValueError: if ``new`` is already known or ``old`` is not a
            transport.
        """
        relay = self._turn.get(old)
        taken = self._endpoints.keys() | self._relays.keys() | self._turn.keys()
        if relay is None or new in taken:
            raise ValueError("unknown transport or endpoint already added")
        del self._turn[old]
        relay.transport = new
        relay.allocation = allocation
        relay.renewed = True
        self._turn[new] = relay
        allocation.start(now, relay.deadline)
        self._on_turn_events(relay, now)

    def transport_lost(self, transport: int, reason: str, now: float) -> None:
        """The caller's path to a TURN server broke (a TCP or TLS connection
        refused, reset or closed): its allocation ends."""
        relay = self._turn.get(transport)
        if relay is not None:
            relay.allocation.abandon(reason)
            self._on_turn_events(relay, now)
            if relay.allocation.state == TurnState.FAILED:
                # Also when it had failed already (a 437 kept for renewal).
                self._lose_relay(relay, reason, now)

    def gather(self, now: float, stun_servers: Sequence[Address] = ()) -> None:
        """Start gathering server-reflexive candidates (RFC 8445 §5.1.1.2).

        A Binding request goes from every host endpoint to every STUN server of
        its address family. :class:`GatheringCompleted` follows when all have
        answered or failed, or ``gather_timeout`` after now, whichever comes
        first; at once when there is nothing to ask.
        """
        if self._gathering or self._gathered:
            return
        self._gathering = True
        deadline = now + self.config.gather_timeout
        for relay in list(self._turn.values()):
            relay.deadline = deadline
            relay.allocation.start(now, deadline)
            self._on_turn_events(relay, now)
        for endpoint, ep in self._endpoints.items():
            family = ":" in ep.candidate.host
            for server in stun_servers:
                if (":" in server[0]) != family:
                    continue
                request = Message(Method.BINDING, Class.REQUEST, self._transaction_id())
                data = request.encode(fingerprint=True)
                self._start(
                    _Pending(
                        "gather",
                        self._transaction(
                            request, data, endpoint, server, now, deadline
                        ),
                    ),
                )
        # Each request's own deadline (the gather bound) ends it in time.
        self._maybe_gathered()

    def _maybe_gathered(self) -> None:
        if (
            self._gathering
            and not any(p.kind == "gather" for p in self._pending.values())
            and not self._renew
            and not any(
                r.allocation.state == TurnState.ALLOCATING for r in self._turn.values()
            )
        ):
            self._gathering = False
            self._gathered = True
            self._emit(GatheringCompleted())

    def _on_gather_response(self, pending: _Pending, message: Message) -> None:
        mapped = message.attributes.get("XOR-MAPPED-ADDRESS") or message.attributes.get(
            "MAPPED-ADDRESS"
        )
        ep = self._endpoints.get(pending.transaction.endpoint)
        if message.message_class != Class.SUCCESS or mapped is None or ep is None:
            return
        base = ep.candidate
        host = _canonical(mapped[0])
        # A server-reflexive candidate equal to its base is redundant
        # (RFC 8445 §5.1.3), and so is one already gathered.
        if (host, mapped[1]) == (base.host, base.port) or any(
            c.host == host and c.port == mapped[1] and c.component == base.component
            for c in self.local_candidates
        ):
            return
        candidate = Candidate(
            foundation=candidate_foundation("srflx", "udp", base.host),
            component=base.component,
            transport="udp",
            priority=candidate_priority(
                base.component, "srflx", (base.priority >> 8) & 0xFFFF
            ),
            host=host,
            port=mapped[1],
            type="srflx",
            related_address=base.host,
            related_port=base.port,
        )
        self.local_candidates.append(candidate)
        self._emit(CandidateGathered(candidate=candidate))

    # --- remote candidates -------------------------------------------------

    def set_remote_credentials(self, username: str, password: str) -> None:
        """Set the peer's ``ice-ufrag`` and ``ice-pwd``.

        They are taken as given (peers are not all strict about RFC 8839's
        lengths); only a non-empty :class:`str` is required.

        :raises ValueError: if either is empty.
        :raises TypeError: if either is not a :class:`str`.
        """
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str):
                raise TypeError(f"remote {name} must be a str")
            if not value:
                raise ValueError(f"remote {name} must not be empty")
        self.remote_username = username
        self.remote_password = password
        self._remote_key = short_term_key(password)

    def add_remote_candidate(self, candidate: Candidate | None, now: float) -> None:
        """Add a remote candidate, or ``None`` for end-of-candidates (RFC 8838).

        Candidates that cannot be paired (not UDP, a host name, a component we
        do not have) are kept out; one with the transport address of a known
        candidate is ignored. While checking, new pairs join the check list.

        :raises ValueError: after end-of-candidates.
        """
        if self.remote_end:
            raise ValueError("Cannot add remote candidate after end-of-candidates.")
        if candidate is None:
            self.remote_end = True
            self._debug("remote end-of-candidates")
            self._maybe_fail(now)
            return
        sdp = candidate.to_sdp()
        if self.state in (IceState.CLOSED, IceState.FAILED):
            self._debug("remote candidate %s ignored: ICE %s", sdp, self.state)
            return
        host = _canonical(candidate.host)
        key = (candidate.component, (host, candidate.port))
        if candidate.transport.lower() != "udp":
            why = "not UDP"
        elif not 1 <= candidate.component <= self.components:
            why = f"no component {candidate.component} here"
        elif candidate.type not in ("host", "srflx", "prflx", "relay"):
            why = f"unknown type {candidate.type!r}"
        elif key in self._remote_by_addr:
            self._debug("remote candidate %s ignored: a known address", sdp)
            return
        elif len(self.remote_candidates) >= self.config.max_remote_candidates:
            why = f"max_remote_candidates ({self.config.max_remote_candidates}) reached"
        else:
            why = ""
        if why:
            self.stats.candidates_refused += 1
            self._debug("remote candidate %s refused: %s", sdp, why)
            return
        self._debug("remote candidate %s", sdp)
        self._remote_by_addr[key] = candidate
        self.remote_candidates.append(candidate)
        for relay in self._relays.values():
            self._permit(relay, candidate, now)
        if self.state in (IceState.CHECKING, IceState.COMPLETED):
            for endpoint in self._endpoints:
                self._pair(endpoint, candidate, trickled=True)
            self._sort()

    # --- pairs ---------------------------------------------------------------

    def _pair(
        self, endpoint: int, remote: Candidate, *, trickled: bool = False
    ) -> CandidatePair | None:
        ep = self._endpoints[endpoint]
        if not ep.candidate.can_pair_with(remote):
            return None
        addr = (_canonical(remote.host), remote.port)
        existing = ep.pairs.get(addr)
        if existing is not None:
            return existing
        if len(self._pairs) >= self.config.max_pairs:
            return None
        pair = CandidatePair(endpoint=endpoint, local=ep.candidate, remote=remote)
        pair.update_priority(self._controlling)
        if trickled and not any(
            p.foundation == pair.foundation
            and p.state in (PairState.WAITING, PairState.IN_PROGRESS)
            for p in self._pairs
        ):
            # RFC 8838 §11: a trickled pair whose foundation is not being
            # checked starts Waiting.
            pair.state = PairState.WAITING
        self._pairs.append(pair)
        ep.pairs[addr] = pair
        if addr in ep.peers:
            ep.peers[addr] = pair
        return pair

    def _sort(self) -> None:
        self._pairs.sort(key=lambda p: p.priority, reverse=True)

    def _set_state(self, pair: CandidatePair, state: PairState) -> None:
        if pair.state is not state:
            old = pair.state
            pair.state = state
            self._emit(
                PairStateChanged(
                    component=pair.component,
                    local=pair.local,
                    remote=pair.remote,
                    old_state=old.value,
                    new_state=state.value,
                )
            )

    def _unfreeze_initial(self) -> None:
        """RFC 8445 §6.1.2.6: per foundation, the pair of the lowest component
        with the highest priority starts Waiting."""
        # Called by connect() only: every pair is still Frozen then.
        seen: set[tuple[str, str]] = set()
        for pair in sorted(self._pairs, key=lambda p: (p.component, -p.priority)):
            if pair.foundation not in seen:
                seen.add(pair.foundation)
                self._set_state(pair, PairState.WAITING)

    def _next_ordinary_pair(self) -> CandidatePair | None:
        for pair in self._pairs:
            if pair.state is PairState.WAITING and pair.component not in self._selected:
                return pair
        # RFC 8445 §6.1.4.2: no Waiting pair, so unfreeze the best Frozen pair
        # whose foundation is not being checked. A Waiting pair of a component
        # already selected will never be checked: it holds up no foundation.
        busy = {
            p.foundation
            for p in self._pairs
            if p.state is PairState.IN_PROGRESS
            or (p.state is PairState.WAITING and p.component not in self._selected)
        }
        for pair in self._pairs:
            if (
                pair.state is PairState.FROZEN
                and pair.foundation not in busy
                and pair.component not in self._selected
            ):
                return pair
        return None

    # --- connect -----------------------------------------------------------

    def connect(self, now: float) -> None:
        """Start the checks (RFC 8445 §6.1.2, §6.1.4), once the remote
        credentials are set; later calls do nothing.

        :raises ValueError: if the remote credentials are missing.
        """
        if self.state != IceState.NEW:
            return
        if self.remote_username is None or self.remote_password is None:
            raise ValueError("remote username and password must be set first")
        self.state = IceState.CHECKING
        self._heard_at = now
        for endpoint in self._endpoints:
            for remote in self.remote_candidates:
                self._pair(endpoint, remote)
        self._sort()
        self._debug(
            "connect: %s, %s, %s",
            "controlling" if self._controlling else "controlled",
            _plural(len(self._pairs), "pair"),
            _plural(len(self._early), "early check"),
        )
        self._unfreeze_initial()
        self._next_check_at = now
        early, self._early = self._early, deque()
        for check in early:
            self._on_check(check, now)
        self._run_checks(now)
        self._maybe_fail(now)

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> CandidatePair:
        """Select a pair without checks, for a peer that does not do ICE.

        No consent checks run on it. Data from the remote candidate is accepted.

        :raises ValueError: if no such local or remote candidate exists.
        """
        endpoint = next(
            (
                e
                for e, ep in self._endpoints.items()
                if ep.component == component
                and any(
                    c.foundation == local_foundation
                    and c.component == component
                    and (
                        c is ep.candidate
                        or (c.related_address, c.related_port)
                        == (ep.candidate.host, ep.candidate.port)
                    )
                    for c in self.local_candidates
                )
            ),
            None,
        )
        remote = next(
            (
                c
                for c in self.remote_candidates
                if c.component == component and c.foundation == remote_foundation
            ),
            None,
        )
        if endpoint is None or remote is None:
            raise ValueError(
                f"no local candidate {local_foundation!r} and remote candidate "
                f"{remote_foundation!r} on component {component}"
            )
        ep = self._endpoints[endpoint]
        addr = (_canonical(remote.host), remote.port)
        pair = ep.pairs.get(addr)
        if pair is None:
            pair = CandidatePair(endpoint=endpoint, local=ep.candidate, remote=remote)
            pair.update_priority(self._controlling)
            self._pairs.append(pair)
            ep.pairs[addr] = pair
        ep.peers[addr] = pair
        pair.valid = True
        pair.nominated = True
        self._selected[component] = pair
        # A pair chosen by hand is not subject to consent (a peer without ICE
        # would not answer), even if ICE had selected another one before.
        self._consent.pop(component, None)
        self._emit(
            SelectedPairChanged(
                component=component, local=pair.valid_local, remote=remote
            )
        )
        if (
            self.state in (IceState.NEW, IceState.CHECKING)
            and len(self._selected) == self.components
        ):
            self.state = IceState.COMPLETED
            self._emit(IceCompleted())
        return pair

    # --- timers ------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Run whatever is due at ``now``: retransmissions and timeouts, the
        ``Ta`` tick, nomination, consent checks and expiry, the gather bound,
        the TURN allocations' refreshes."""
        for relay in list(self._turn.values()):
            timer_at = relay.allocation.get_timer()
            if timer_at is not None and timer_at <= now:
                relay.allocation.handle_timer(now)
                self._on_turn_events(relay, now)
        if self.state == IceState.CLOSED:
            return
        for tid, pending in list(self._pending.items()):
            tx = pending.transaction
            # An earlier timeout in this loop may have replaced or cancelled
            # this transaction (a new nomination, a failure): skip it then.
            if tx.timer_at > now or self._pending.get(tid) is not pending:
                continue
            if pending.cancelled:
                # Its answer counted until its next retransmission time
                # (rather than the whole transaction timeout); its silence
                # fails nothing.
                del self._pending[tid]
                continue
            # Due, so the answer is SEND, TIMEOUT or INTEGRITY_VIOLATED, never
            # WAIT. A gather transaction's timer never passes its deadline
            # (the gather bound), so gathering ends here at the latest.
            result = tx.poll(now)
            if result is Poll.SEND:
                self._send(tx.endpoint, tx.data, tx.addr, now)
                if pending.pair is not None and pending.kind == "check":
                    pending.pair.requests_sent += 1
            else:
                del self._pending[tid]
                self._on_timeout(pending, result is Poll.INTEGRITY_VIOLATED, now)
        if (
            self.state == IceState.CHECKING
            and not self._controlling
            and now >= self._heard_at + self.config.nomination_timeout
        ):
            self._fail(self._failure_reason(nomination=True))
        if self.state == IceState.CHECKING:
            self._run_checks(now)
            if self._controlling:
                for component in list(self._first_valid_at):
                    self._maybe_nominate(component, now)
        self._run_consent(now)

    def _run_checks(self, now: float) -> None:
        if self._next_check_at is None or now < self._next_check_at:
            return
        pair = self._next_ordinary_pair()
        if pair is not None:
            self._send_check(pair, now, nominate=False)
            self._next_check_at = now + self.config.ta

    def _run_consent(self, now: float) -> None:
        for component, consent in list(self._consent.items()):
            # Consent is only ever set up by _select(), and no component
            # loses its selected pair.
            pair = self._selected[component]
            if now >= consent.expires_at:
                self._expire_consent(component, now)
                return
            if now >= consent.check_at:
                if consent.pending is not None:
                    self._pending.pop(consent.pending, None)
                tid = self._send_request(pair, now, kind="consent")
                consent.pending = tid
                jitter = 0.8 + 0.4 * self._rng.random()
                consent.check_at = now + self.config.consent_interval * jitter

    def _expire_consent(self, component: int, now: float) -> None:
        self._emit(ConsentExpired(component=component))
        self.close()

    # --- sending checks ----------------------------------------------------

    def _transaction_id(self) -> bytes:
        return self._rng.getrandbits(96).to_bytes(12, "big")

    def _transaction(
        self,
        request: Message,
        data: bytes,
        endpoint: int,
        addr: Address,
        now: float,
        deadline: float | None = None,
    ) -> ClientTransaction:
        config = self.config
        return ClientTransaction(
            transaction_id=request.transaction_id,
            data=data,
            endpoint=endpoint,
            addr=addr,
            now=now,
            rto=config.rto,
            max_sends=config.max_sends,
            final_wait=config.final_wait,
            # Only gathering requests have a deadline (the gather bound).
            rto_max=config.rto_max if deadline is None else config.gather_rto_max,
            deadline=deadline,
        )

    def _start(self, pending: _Pending) -> None:
        tx = pending.transaction
        self._pending[tx.transaction_id] = pending
        self._send(tx.endpoint, tx.data, tx.addr, tx.sent_at)

    def _send(self, endpoint: int, data: bytes, addr: Address, now: float) -> None:
        relay = self._relays.get(endpoint)
        if relay is None:
            self._outbox.append(Transmit(endpoint, data, addr))
        else:
            relay.allocation.send(addr, data, now)

    def _send_request(
        self, pair: CandidatePair, now: float, *, kind: str, nominate: bool = False
    ) -> bytes:
        local = pair.local
        attributes: dict[str, object] = {
            "USERNAME": f"{self.remote_username}:{self.local_username}",
            # RFC 8445 §7.1.1: the priority a peer-reflexive candidate would have.
            "PRIORITY": candidate_priority(
                local.component, "prflx", (local.priority >> 8) & 0xFFFF
            ),
        }
        if self._controlling:
            attributes["ICE-CONTROLLING"] = self.tie_breaker
            if nominate:
                attributes["USE-CANDIDATE"] = None
        else:
            attributes["ICE-CONTROLLED"] = self.tie_breaker
        request = Message(
            Method.BINDING,
            Class.REQUEST,
            self._transaction_id(),
            attributes,  # type: ignore[arg-type]
        )
        data = request.encode(key=self._remote_key, fingerprint=True)
        tx = self._transaction(request, data, pair.endpoint, pair.remote_addr, now)
        self._start(
            _Pending(kind, tx, pair, nominate=nominate, controlling=self._controlling)
        )
        pair.requests_sent += 1
        return tx.transaction_id

    def _send_check(
        self,
        pair: CandidatePair,
        now: float,
        *,
        nominate: bool,
        retriggered: bool = False,
    ) -> None:
        if pair.transaction is not None:
            self._pending.pop(pair.transaction.transaction_id, None)
        tid = self._send_request(pair, now, kind="check", nominate=nominate)
        self._pending[tid].retriggered = retriggered
        pair.transaction = self._pending[tid].transaction
        if nominate:
            if not pair.nominating:
                self._debug("nominating pair %s (USE-CANDIDATE)", pair)
            pair.nominating = True
        self._set_state(pair, PairState.IN_PROGRESS)

    # --- receiving -----------------------------------------------------------

    def receive_datagram(
        self, endpoint: int, data: bytes, addr: Address, now: float
    ) -> tuple[bytes, int] | None:
        """Take a datagram received on ``endpoint`` from ``addr``.

        STUN messages are handled here. Anything else is application data: it
        is returned as ``(data, component)`` when ``addr`` has authenticated
        itself with a check or a response on that endpoint, and dropped (and
        counted) otherwise. Never raises for any bytes.
        """
        ep = self._endpoints.get(endpoint)
        if ep is None or self.state == IceState.CLOSED:
            relay = self._turn.get(endpoint)
            if relay is not None and addr == relay.allocation.server:
                # A UDP datagram carries one message: at most one result.
                got = None
                for peer, payload in relay.allocation.receive(data, now):
                    got = self.receive_datagram(relay.endpoint, payload, peer, now)
                self._on_turn_events(relay, now)
                return got
            self.stats.unexpected += 1
            return None
        if len(data) < 20 or data[0] > 3 or data[4:8] != _COOKIE_BYTES:
            try:
                pair = ep.peers[addr]
            except KeyError:
                self.stats.unknown_peer_data += 1
                return None
            if pair is not None:
                pair.datagrams_received += 1
                pair.bytes_received += len(data)
            return data, ep.component
        try:
            message = parse_message(data)
        except StunParseError:
            self.stats.malformed += 1
            return None
        if message.message_class == Class.REQUEST:
            self._on_request(endpoint, ep, message, len(data), addr, now)
        elif message.message_class in (Class.SUCCESS, Class.ERROR):
            self._on_response(endpoint, message, addr, now)
        else:
            # Binding indications are keepalives (RFC 8445 §11): nothing to do.
            self.stats.unexpected += 1
        return None

    def receive_stream(
        self, transport: int, data: bytes, now: float
    ) -> list[tuple[bytes, int]]:
        """Take bytes received on the TCP or TLS stream to a TURN server.

        :returns: the application data they carried, as ``(data, component)``
            (see :meth:`receive_datagram`). Never raises for any bytes.
        """
        relay = self._turn.get(transport)
        if relay is None:
            self.stats.unexpected += 1
            return []
        got = []
        for peer, payload in relay.allocation.receive(data, now):
            item = self.receive_datagram(relay.endpoint, payload, peer, now)
            if item is not None:
                got.append(item)
        self._on_turn_events(relay, now)
        return got

    def send(self, component: int, data: bytes, now: float) -> bool:
        """Queue application data on the selected pair of ``component``.

        Callers with a socket of their own may write to :meth:`route` instead;
        this is the way for relayed routes, whose data the TURN allocation
        wraps.

        :returns: whether there was a selected pair to send it on.
        """
        pair = self._selected.get(component)
        if pair is None or self.state in (IceState.FAILED, IceState.CLOSED):
            return False
        self._send(pair.endpoint, data, pair.remote_addr, now)
        return True

    def _respond_error(
        self,
        endpoint: int,
        request: Message,
        size: int,
        addr: Address,
        code: int,
        reason: str,
        now: float,
        *,
        signed: bool = False,
    ) -> None:
        response = Message(
            request.method,
            Class.ERROR,
            request.transaction_id,
            {"ERROR-CODE": (code, reason)},
        )
        if signed:
            data = response.encode(key=self._local_key, fingerprint=True)
        else:
            data = response.encode(fingerprint=True)
            if len(data) > size:
                # An unauthenticated sender never gets more bytes than it sent.
                self.stats.error_responses_suppressed += 1
                return
        self._send(endpoint, data, addr, now)

    def _on_request(
        self,
        endpoint: int,
        ep: _Endpoint,
        message: Message,
        size: int,
        addr: Address,
        now: float,
    ) -> None:
        if self.state == IceState.FAILED:
            # ICE is over here: no answer at all, not even an error, so that
            # the peer's checks fail and its consent expires (RFC 7675 §5.1)
            # instead of it going on over a path we have given up.
            self.stats.unexpected += 1
            return
        attributes = message.attributes
        username = attributes.get("USERNAME")
        if (
            message.method != Method.BINDING
            or username is None
            or message.integrity is None
        ):
            self.stats.unauthenticated += 1
            self._respond_error(endpoint, message, size, addr, 400, "Bad Request", now)
            return
        local, colon, remote = username.partition(":")
        if (
            colon != ":"
            or local != self.local_username
            or (self.remote_username is not None and remote != self.remote_username)
            or not message.check_integrity(self._local_key)
        ):
            self.stats.unauthenticated += 1
            if local == self.local_username:
                # Meant for us: the peer's credentials for us are wrong.
                self._checks_rejected += 1
                self._debug(
                    "check from %s:%d refused (401): wrong USERNAME or "
                    "MESSAGE-INTEGRITY",
                    addr[0],
                    addr[1],
                )
            self._respond_error(
                endpoint, message, size, addr, 401, "Unauthenticated", now
            )
            return
        if message.unknown_required:
            response = Message(
                Method.BINDING,
                Class.ERROR,
                message.transaction_id,
                {
                    "ERROR-CODE": (420, "Unknown Attribute"),
                    "UNKNOWN-ATTRIBUTES": message.unknown_required,
                },
            )
            self._send(
                endpoint,
                response.encode(key=self._local_key, fingerprint=True),
                addr,
                now,
            )
            return
        # Role conflicts (RFC 8445 §7.3.1.1): the peer claims our role.
        theirs = (
            attributes.get("ICE-CONTROLLING")
            if self._controlling
            else attributes.get("ICE-CONTROLLED")
        )
        if theirs is not None:
            # The larger tie-breaker controls: keep our role and answer 487,
            # or give it up.
            if (self.tie_breaker >= theirs) == self._controlling:
                self._respond_error(
                    endpoint,
                    message,
                    size,
                    addr,
                    487,
                    "Role Conflict",
                    now,
                    signed=True,
                )
                return
            self._switch_role(not self._controlling, now)

        response = Message(
            Method.BINDING,
            Class.SUCCESS,
            message.transaction_id,
            {"XOR-MAPPED-ADDRESS": addr},
        )
        self._send(
            endpoint, response.encode(key=self._local_key, fingerprint=True), addr, now
        )
        if addr not in ep.peers:
            # The sender proved it knows our password: its data is accepted.
            ep.peers[addr] = ep.pairs.get(addr)
        check = _EarlyCheck(
            endpoint, addr, attributes.get("PRIORITY", 0), "USE-CANDIDATE" in attributes
        )
        if self.state == IceState.NEW:
            if len(self._early) >= self.config.max_early_checks:
                self._early.popleft()
                self.stats.early_checks_dropped += 1
            self._early.append(check)
        else:  # checking or completed: failed and closed agents never get here
            self._on_check(check, now)

    def _on_check(self, check: _EarlyCheck, now: float) -> None:
        """RFC 8445 §7.3.1.3-§7.3.1.5, for an authenticated check."""
        ep = self._endpoints[check.endpoint]
        component = ep.component
        addr = check.addr
        pair = ep.pairs.get(addr)
        if pair is None:
            remote = self._remote_by_addr.get((component, addr))
            if remote is None:
                if (
                    len(self.remote_candidates) >= self.config.max_remote_candidates
                    or not 1 <= check.priority < 2**31
                ):
                    self.stats.candidates_refused += 1
                    return
                # A peer-reflexive remote candidate (RFC 8445 §7.3.1.3).
                try:
                    remote = Candidate(
                        foundation=f"{self._rng.getrandbits(32):08x}",
                        component=component,
                        transport="udp",
                        priority=check.priority,
                        host=addr[0],
                        port=addr[1],
                        type="prflx",
                    )
                except CandidateError:
                    # A source a candidate cannot name (an IPv6 zone id,
                    # "fe80::1%eth0"): no pair with it.
                    self.stats.candidates_refused += 1
                    return
                self._remote_by_addr[(component, addr)] = remote
                self.remote_candidates.append(remote)
                self._debug("remote candidate %s learnt from a check", remote.to_sdp())
            pair = self._pair(check.endpoint, remote)
            if pair is None:
                self.stats.candidates_refused += 1
                return
            self._sort()
        pair.requests_received += 1
        pair.responses_sent += 1
        if component not in self._selected:
            # A check that may lead to a nomination: the wait starts again.
            # (Consent checks on a selected component, or checks we could
            # not pair, say nothing of the components still to nominate.)
            self._checks_received += 1
            self._heard_at = now
        if self.state == IceState.COMPLETED and component in self._selected:
            if (
                check.use_candidate
                and not self._controlling
                and pair.valid
                and pair is not self._selected[component]
            ):
                self._debug("pair %s nominated by the peer (USE-CANDIDATE)", pair)
                self._select(pair, now)
            return
        # Triggered check (RFC 8445 §7.3.1.4).
        if pair.state in (PairState.FROZEN, PairState.WAITING, PairState.FAILED):
            self._set_state(pair, PairState.WAITING)
            self._send_check(pair, now, nominate=False)
        elif pair.state is PairState.IN_PROGRESS:
            self._retrigger(pair, now)
        # Nomination by the controlling peer (RFC 8445 §7.3.1.5).
        if check.use_candidate and not self._controlling:
            if not pair.remote_nominated:
                self._debug("pair %s nominated by the peer (USE-CANDIDATE)", pair)
            pair.remote_nominated = True
            if pair.state is PairState.SUCCEEDED:
                self._select(pair, now)

    def _retrigger(self, pair: CandidatePair, now: float) -> None:
        """RFC 8445 §7.3.1.4: a check from the peer on an In-Progress pair
        cancels our check and sends a new one at once. Done when ours has
        gone unanswered for an RTO (it was sent again): it was likely lost, or
        dropped by the peer's NAT before the peer's own check opened it, and the
        peer's check shows the path works now; waiting for the next, doubled
        retransmission could cost seconds, and under loss the connect() bound
        (a nominating check is re-triggered too, keeping USE-CANDIDATE). Also
        on the first send towards a relayed remote candidate, once per check:
        the peer's TURN server drops what arrives before the peer's permission
        exists. Otherwise our first check goes on, its answer usually in
        flight, and no duplicate is sent. The cancelled check's success still
        counts (:meth:`_on_response`). Never done for a check that got
        responses, if only discarded ones (RFC 8489 §9.1.5): it was not lost,
        and starting it again at every check from a peer that cannot
        authenticate our responses would keep it from ever failing."""
        tx = pair.transaction
        current = self._pending.get(tx.transaction_id) if tx is not None else None
        if (
            current is None
            # Answered, if only by responses we discarded: not lost.
            or current.transaction.discarded
            or (
                current.transaction.sends < 2  # not overdue: not sent again yet
                and (
                    current.retriggered
                    or pair.nominating
                    or pair.remote.type != "relay"
                )
            )
        ):
            return
        current.cancelled = True
        pair.transaction = None
        self._send_check(pair, now, nominate=current.nominate, retriggered=True)
        current.replaced_by = pair.transaction

    def _on_response(
        self, endpoint: int, message: Message, addr: Address, now: float
    ) -> None:
        pending = self._pending.get(message.transaction_id)
        if pending is None or pending.transaction.endpoint != endpoint:
            self.stats.unexpected += 1
            return
        tx = pending.transaction
        if pending.kind == "gather":
            if addr != tx.addr:
                self.stats.unexpected += 1
                return
            del self._pending[message.transaction_id]
            self._on_gather_response(pending, message)
            self._maybe_gathered()
            return
        pair = pending.pair
        assert pair is not None
        error = message.error_code if message.message_class == Class.ERROR else None
        if not message.check_integrity(self._remote_key):
            # RFC 8489 §9.1.5: discarded as if it had never arrived, and the
            # retransmissions go on; so is the unsigned 400 or 401 of a peer
            # that could not authenticate our request (RFC 8489 §9.1.3), which
            # anybody who saw the request could forge. Those from where the
            # request went may be the peer's: counted, for the failure reason.
            self.stats.unauthenticated += 1
            if addr == tx.addr:
                tx.discard()
                if pending.kind == "check":
                    unsigned = message.integrity is None and error in (400, 401)
                    code = error if unsigned and error is not None else 0
                    rejected = pair.faults.rejected
                    rejected[code] = rejected.get(code, 0) + 1
                    if code:
                        self._debug(
                            "response to a check on %s discarded: unsigned %s",
                            pair,
                            _status(code),
                        )
                    else:
                        self._debug(
                            "response to a check on %s discarded: bad "
                            "MESSAGE-INTEGRITY",
                            pair,
                        )
            return
        del self._pending[message.transaction_id]
        if pending.cancelled:
            # A cancelled check can only succeed, and only while the one that
            # replaced it is still out: it then stands for it. Not for a later
            # one: once the replacement succeeded, the pair's transaction may
            # be the nomination that followed, which must go on.
            current = pair.transaction
            if (
                current is None
                or current is not pending.replaced_by
                or error is not None
                or addr != tx.addr
            ):
                return
            self._pending.pop(current.transaction_id, None)
            pair.transaction = None
        if pair.transaction is tx:
            pair.transaction = None
        if pending.nominate:
            # The nomination is over, whatever the answer: a success selects.
            pair.nominating = False
        if addr != tx.addr:
            # Not symmetric (RFC 8445 §7.2.5.2.1).
            if pending.kind == "check":
                pair.faults.asymmetric += 1
                self._fail_check(pending, now, f"answered from {addr[0]}:{addr[1]}")
            return
        pair.responses_received += 1
        if error is None:
            pair.responded_at = now
        if tx.sends == 1:
            pair.rtt = now - tx.sent_at
        if pending.kind == "consent":
            if error is None:
                consent = self._consent.get(pair.component)
                if consent is not None and self._selected.get(pair.component) is pair:
                    consent.expires_at = now + self.config.consent_timeout
            return
        # A check is only ever out while checking or completed: failure and
        # close() cancel the checks still out.
        if error == 487:
            pair.role_conflicts += 1
            if pair.role_conflicts >= _MAX_ROLE_CONFLICTS:
                self._fail_with_error(pending, 487, now, pair.role_conflicts)
                return
            # RFC 8445 §7.2.5.1: take the role opposite to the one the request
            # claimed, then check the pair again.
            if pending.controlling == self._controlling:
                self._switch_role(not pending.controlling, now)
            self._set_state(pair, PairState.WAITING)
            self._send_check(pair, now, nominate=False)
            return
        if error is not None:
            self._fail_with_error(pending, error, now)
            return
        mapped = message.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is None:
            pair.faults.unmapped += 1
            self._fail_check(pending, now, "a success without XOR-MAPPED-ADDRESS")
            return
        self._on_check_succeeded(
            pair, pending.nominate, (_canonical(mapped[0]), mapped[1]), now
        )

    def _on_check_succeeded(
        self, pair: CandidatePair, nominated: bool, mapped: Address, now: float
    ) -> None:
        ep = self._endpoints[pair.endpoint]
        ep.peers[pair.remote_addr] = pair
        # What went wrong before (a spoofed answer, a lost check) is moot now.
        pair.faults = PairFaults()
        pair.role_conflicts = 0
        # Discovering a local peer-reflexive candidate (RFC 8445 §7.2.5.3.1).
        if (pair.local.host, pair.local.port) != mapped and not pair.valid:
            known = next(
                (
                    c
                    for c in self.local_candidates
                    if c.component == pair.component and (c.host, c.port) == mapped
                ),
                None,
            )
            if known is None:
                base = pair.local
                known = Candidate(
                    foundation=candidate_foundation("prflx", "udp", base.host),
                    component=base.component,
                    transport="udp",
                    priority=candidate_priority(
                        base.component, "prflx", (base.priority >> 8) & 0xFFFF
                    ),
                    host=mapped[0],
                    port=mapped[1],
                    type="prflx",
                    related_address=base.host,
                    related_port=base.port,
                )
                self._debug("local candidate %s learnt from a check", known.to_sdp())
            pair.valid_local = known
            pair.update_priority(self._controlling)
            self._sort()
        pair.valid = True
        self._set_state(pair, PairState.SUCCEEDED)
        component = pair.component
        self._first_valid_at.setdefault(component, now)
        # RFC 8445 §7.2.5.3.3: unfreeze the pairs of the same foundation.
        for other in self._pairs:
            if other.state is PairState.FROZEN and other.foundation == pair.foundation:
                self._set_state(other, PairState.WAITING)
        if nominated or (pair.remote_nominated and not self._controlling):
            self._select(pair, now)
        elif self._controlling and self.state == IceState.CHECKING:
            self._maybe_nominate(component, now)
        # This was perhaps the last pair in checks, with a component lost.
        self._maybe_fail(now)

    def _on_timeout(self, pending: _Pending, violated: bool, now: float) -> None:
        """A transaction ended without a valid response: ``violated`` when it
        got responses, all of them discarded (RFC 8489 §9.1.5)."""
        if pending.kind == "gather":
            self._maybe_gathered()
            return
        pair = pending.pair
        assert pair is not None
        tx = pending.transaction
        if pending.kind == "consent":
            self._debug("consent check on %s unanswered (%s)", pair, _times(tx.sends))
            return
        # A pending check is always its pair's current transaction:
        # _send_check() drops the one it replaces.
        pair.transaction = None
        if violated:
            why = f"integrity violation: {_times(tx.discarded)} answered, never validly"
        else:
            pair.faults.timeouts += 1
            pair.faults.unanswered += tx.sends
            why = f"timeout: no response, sent {_times(tx.sends)}"
        self._fail_check(pending, now, why)

    def _fail_with_error(
        self, pending: _Pending, code: int, now: float, count: int = 1
    ) -> None:
        pair = pending.pair
        assert pair is not None
        errors = pair.faults.errors
        errors[code] = errors.get(code, 0) + count
        self._fail_check(pending, now, f"error {_status(code)} ({_times(count)})")

    def _fail_check(self, pending: _Pending, now: float, why: str) -> None:
        """A check failed (RFC 8445 §7.2.5.2). A failed nomination also takes
        its pair out of the valid list, so that another pair can be nominated
        (or ICE can fail) instead of waiting on it forever."""
        pair = pending.pair
        assert pair is not None
        self._debug(
            "%s on %s failed: %s",
            "nomination" if pending.nominate else "check",
            pair,
            why,
        )
        if pending.nominate:
            pair.nominating = False
            pair.valid = False
        self._fail_pair(pair, now)

    def _fail_pair(self, pair: CandidatePair, now: float) -> None:
        self._set_state(pair, PairState.FAILED)
        if self.state != IceState.CHECKING:
            return
        if self._controlling and pair.component in self._first_valid_at:
            self._maybe_nominate(pair.component, now)
        self._maybe_fail(now)

    # --- nomination and completion ------------------------------------------

    def _nominating(self, component: int) -> bool:
        return any(p.nominating for p in self._pairs if p.component == component)

    def _maybe_nominate(self, component: int, now: float) -> None:
        if component in self._selected or self._nominating(component):
            return
        best_valid: CandidatePair | None = None
        best_pending: CandidatePair | None = None
        for pair in self._pairs:
            if pair.component != component:
                continue
            if pair.valid:
                if best_valid is None or pair.priority > best_valid.priority:
                    best_valid = pair
            elif pair.state is not PairState.FAILED and (
                best_pending is None or pair.priority > best_pending.priority
            ):
                best_pending = pair
        if best_valid is None:
            self._first_valid_at.pop(component, None)
            return
        first = self._first_valid_at.setdefault(component, now)
        if (
            best_pending is None
            or best_valid.priority >= best_pending.priority
            or self.remote_is_lite
            or now >= first + self.config.nomination_wait
        ):
            self._send_check(best_valid, now, nominate=True)

    def _select(self, pair: CandidatePair, now: float) -> None:
        component = pair.component
        current = self._selected.get(component)
        if current is pair or (
            current is not None and current.priority > pair.priority
        ):
            return
        pair.nominated = True
        self._selected[component] = pair
        self._first_valid_at.pop(component, None)
        self._emit(
            SelectedPairChanged(
                component=component, local=pair.valid_local, remote=pair.remote
            )
        )
        jitter = 0.8 + 0.4 * self._rng.random()
        # RFC 7675 §5.1: consent lasts from the last authenticated response,
        # which may be older than the nomination that selects the pair; the
        # consent checks count from it too (at once if it is that old).
        granted = now if pair.responded_at is None else pair.responded_at
        self._consent[component] = _Consent(
            max(now, granted + self.config.consent_interval * jitter),
            granted + self.config.consent_timeout,
        )
        if self.state == IceState.CHECKING and len(self._selected) >= len(
            self._active_components()
        ):
            self.state = IceState.COMPLETED
            self._next_check_at = None
            # RFC 8445 §8.1.2: checks not yet sent are not needed any more.
            for other in self._pairs:
                if (
                    other.transaction is not None
                    and not other.nominating
                    and other.state is PairState.IN_PROGRESS
                ):
                    self._pending.pop(other.transaction.transaction_id, None)
                    other.transaction = None
                    self._set_state(other, PairState.FAILED)
            self._emit(IceCompleted())
        else:
            # Another component may have run out of pairs while this one was
            # still in checks: it can never complete now.
            self._maybe_fail(now)

    def _active_components(self) -> set[int]:
        """Components that can still complete: after end-of-candidates, those
        without any remote candidate are left out (as aioice does)."""
        every = set(range(1, self.components + 1))
        if not self.remote_end:
            return every
        seen = {c.component for c in self.remote_candidates}
        return every & seen if seen else every

    def _maybe_fail(self, now: float) -> None:
        if self.state != IceState.CHECKING or not self.remote_end:
            return
        active = self._active_components()
        if active and len(self._selected) >= len(active) and self._selected:
            self.state = IceState.COMPLETED
            self._emit(IceCompleted())
            return
        # RFC 8445 §7.2.5.4: the check list fails once no pair is left to
        # check and some component has no valid pair. While a pair is still
        # in checks it may succeed; a valid one may still be nominated (by
        # us, or by the controlling peer), unless another component is lost.
        # A controlled agent without a pair on a component may still get
        # checks from the peer there (peer-reflexive candidates): the
        # nomination timeout bounds that wait.
        lost = False
        for component in active - set(self._selected):
            pairs = [p for p in self._pairs if p.component == component]
            if any(
                p.state in (PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS)
                for p in pairs
            ):
                return
            if not pairs and not self._controlling and self._has_endpoint(component):
                continue
            if not any(p.valid for p in pairs):
                lost = True
        if lost:
            self._fail(self._failure_reason())

    def _has_endpoint(self, component: int) -> bool:
        return any(ep.component == component for ep in self._endpoints.values())

    def _fail(self, reason: str) -> None:
        """ICE failed: stop everything but gathering, and say why."""
        self.state = IceState.FAILED
        self._next_check_at = None
        # Checks still out (on components already selected) cannot change
        # the outcome: stop them, as completion does. Consent on a component
        # already selected stops too: the agent has given up, and answers no
        # check either, so that the peer's consent expires.
        self._pending = {t: p for t, p in self._pending.items() if p.kind == "gather"}
        self._consent.clear()
        for pair in self._pairs:
            if pair.transaction is not None:
                pair.transaction = None
                self._set_state(pair, PairState.FAILED)
        self._emit(IceFailed(reason=reason))

    def _failure_reason(self, *, nomination: bool = False) -> str:
        """Why ICE failed, the most telling cause first: the peer refusing
        our credentials, then us refusing its, the nomination timeout (when
        that is what ended it), error responses, timeouts; each counted over
        the whole check list."""
        parts: list[str] = []
        if nomination:
            timeout = self.config.nomination_timeout
            since = "for" if self._checks_received else "in the"
            after = "" if self._checks_received else " since connect()"
            waiting = sorted(self._active_components() - set(self._selected))
            on = ""
            if self._selected:
                names = ", ".join(str(c) for c in waiting)
                on = f" on component{'s' if len(waiting) > 1 else ''} {names}"
            parts.append(
                f"no nomination: no check from the controlling peer{on} {since} "
                f"{timeout:g} s{after} (nomination_timeout)"
            )
        if not self._pairs:
            if not self._endpoints:
                parts.append("no local candidates")
            elif not self.remote_candidates:
                refused = self.stats.candidates_refused
                parts.append(
                    "no remote candidates"
                    + (f" ({refused} refused: see the DEBUG log)" if refused else "")
                )
            else:
                parts.append(
                    "no remote candidate pairs with a local one (address "
                    "family or component)"
                )
        faults = PairFaults()
        for pair in self._pairs:
            faults.add(pair.faults)
        codes = sorted(c for c in faults.rejected if c)
        if codes:
            parts.append(
                "the peer rejected our checks with "
                + " and ".join(
                    f"{_status(c)} (unsigned, {_times(faults.rejected[c])})"
                    for c in codes
                )
                + ": check remote_username/remote_password"
            )
        if faults.rejected.get(0):
            parts.append(
                "responses to our checks failed their integrity check "
                f"({_times(faults.rejected[0])}): check remote_password"
            )
        if self._checks_rejected:
            parts.append(
                "we rejected the peer's checks with 401 Unauthenticated "
                f"({_times(self._checks_rejected)}): check its "
                "remote_username/remote_password"
            )
        if faults.errors:
            parts.append(
                "the peer answered our checks with "
                + " and ".join(
                    f"{_status(c)} ({_times(n)})"
                    for c, n in sorted(faults.errors.items())
                )
            )
        if faults.asymmetric:
            parts.append(
                "responses came from another address than the checks went to "
                f"({_times(faults.asymmetric)})"
            )
        if faults.unmapped:
            parts.append(
                "success responses without XOR-MAPPED-ADDRESS "
                f"({_times(faults.unmapped)})"
            )
        for reason in self._relays_lost:
            parts.append(f"TURN relay lost: {reason}")
        if faults.timeouts:
            parts.append(
                f"no response to {_plural(faults.timeouts, 'check')}, sent "
                f"{_times(faults.unanswered)} (timeout)"
            )
        return "; ".join(parts) or "no candidate pair succeeded"

    def set_role(self, controlling: bool) -> None:
        """Choose the role before :meth:`connect` (aioice's
        ``ice_controlling``); :class:`~syncice.events.RoleChanged` follows if
        it changes. Once checks have started only role conflicts change it
        (RFC 8445 §7.3.1.1): later calls do nothing.
        """
        if self.state == IceState.NEW and controlling != self._controlling:
            self._switch_role(bool(controlling))

    def set_remote_lite(self, lite: bool) -> None:
        """Say whether the peer is an ICE-lite agent (``a=ice-lite``). With a
        lite peer the full agent controls (RFC 8445 §6.1.1): a controlled
        agent switches to controlling, with a
        :class:`~syncice.events.RoleChanged`. Call it before :meth:`connect`.
        """
        self.remote_is_lite = bool(lite)
        if lite and not self._controlling:
            self._switch_role(True)

    def authenticated_peers(self) -> dict[tuple[int, Address], int]:
        """The remote addresses whose data is accepted, each with the
        component it belongs to, keyed by ``(endpoint, address)``: those that
        proved they know our password, by a check that passed
        MESSAGE-INTEGRITY or by a signed answer to ours. The set only grows
        while the agent lives; :meth:`authenticated_count` says when."""
        return {
            (endpoint, addr): ep.component
            for endpoint, ep in self._endpoints.items()
            for addr in ep.peers
        }

    def authenticated_count(self) -> int:
        """How many entries :meth:`authenticated_peers` would return."""
        return sum(len(ep.peers) for ep in self._endpoints.values())

    def _switch_role(self, controlling: bool, now: float | None = None) -> None:
        self._controlling = controlling
        if now is not None and not controlling:
            # The peer only now knows it is to nominate: the wait starts again.
            self._heard_at = now
        for pair in self._pairs:
            pair.update_priority(controlling)
        self._sort()
        self._emit(RoleChanged(controlling=controlling))

    # --- closing and statistics --------------------------------------------

    def close(self, now: float | None = None) -> None:
        """Stop everything: no more checks, consent or data.

        TURN allocations are released (RFC 8656 §7: a Refresh with a zero
        lifetime) when ``now`` is given: until :attr:`releasing` turns false
        their datagrams and timers go on, and the caller keeps their
        transports open.
        """
        if now is not None:
            for relay in list(self._turn.values()):
                relay.allocation.close(now)
                self._on_turn_events(relay, now)
        if self.state == IceState.CLOSED:
            return
        self.state = IceState.CLOSED
        self._pending.clear()
        self._consent.clear()
        self._early.clear()
        self._outbox = []
        self._next_check_at = None

    def route(self, component: int) -> tuple[int, Address] | None:
        """Where data for ``component`` goes: ``(endpoint, remote address)``."""
        pair = self._selected.get(component)
        if pair is None or self.state in (IceState.FAILED, IceState.CLOSED):
            return None
        return pair.endpoint, pair.remote_addr

    def pair_stats(self) -> list[PairStats]:
        """A snapshot of every pair (data sent is counted by the caller)."""
        return [
            PairStats(
                component=p.component,
                local=p.valid_local,
                remote=p.remote,
                state=p.state.value,
                nominated=p.nominated,
                selected=self._selected.get(p.component) is p,
                requests_sent=p.requests_sent,
                requests_received=p.requests_received,
                responses_sent=p.responses_sent,
                responses_received=p.responses_received,
                datagrams_sent=0,
                datagrams_received=p.datagrams_received,
                bytes_sent=0,
                bytes_received=p.bytes_received,
                rtt=p.rtt,
            )
            for p in self._pairs
        ]
