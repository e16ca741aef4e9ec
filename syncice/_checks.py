"""Connectivity checks: sending them, answering the peer's, taking the
responses (RFC 8445 §7.2, §7.3): :class:`Checks`.

Rules, in the manner of h11's ``_state.py``:

- Network bytes never raise: unexpected or unauthenticated messages are
  dropped and counted in :class:`AgentStats`. A request that fails
  authentication gets a small 400/401 answer (never larger than itself) and
  creates no state.
- Ordinary checks are paced by ``Ta``. A triggered check (the answer to a
  peer's check) and the nomination of a pair that just succeeded go out at
  once: each is caused by a datagram from the peer, so the peer paces them.
- A check from the peer on an In-Progress pair cancels our check and sends a
  new one at once (RFC 8445 §7.3.1.4) when ours was already sent again (it
  was lost), or on its first send towards a relayed remote candidate (the
  peer's TURN server dropped it before the permission existed). Otherwise our
  first check goes on (its answer is usually in flight), which saves a
  duplicate check per pair.
- A response to our check that fails its integrity check (an unsigned 400 or
  401 included) is discarded as if it had never arrived and the
  retransmissions go on (RFC 8489 §9.1.5): one spoofed datagram cannot fail a
  pair. A check whose every response was discarded fails at its timeout, as
  an integrity violation, and the failure reason counts those responses.
- Once ICE has failed (or the agent is closed), no request is answered at
  all: that silence is what lets the peer's consent expire (RFC 7675 §5.1).
- Role conflicts (RFC 8445 §7.3.1.1, §7.2.5.1): the larger tie-breaker
  controls; a pair whose checks the peer answers 487 three times in a row
  fails.

What the agent decides from these (selection, nomination, failure of ICE,
gathering, consent) it hears through a :class:`CheckListener`.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ._checklist import (
    CandidatePair,
    CheckList,
    PairFaults,
    PairState,
    canonical,
    remote_key,
)
from ._ice_config import IceConfig
from ._ice_log import EventLog, status, times
from ._ice_states import ICE_TRANSITIONS, IceState, StateMachine
from ._ice_tcp import mapped_is_base, prflx_priority, tcptype_seen_from_peer
from ._lite import take_check
from ._transaction import ClientTransaction, Poll
from .candidate import Candidate, candidate_foundation
from .events import RoleChanged
from .exceptions import CandidateError
from .stun import Class, Message, Method, short_term_key

__all__ = [
    "AgentStats",
    "CheckListener",
    "Checks",
    "EarlyCheck",
    "Kind",
    "Request",
]

Address = tuple[str, int]

#: Where a datagram goes: ``send(endpoint, data, addr, now)``.
Sender = Callable[[int, bytes, Address, float], None]

#: A pair whose checks the peer answers 487 this many times in a row fails:
#: a peer that does so whatever role we claim would keep us switching roles
#: for ever (two are the most a genuine conflict takes).
MAX_ROLE_CONFLICTS = 3


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


class Kind(enum.Enum):
    """What a request of ours is for."""

    #: A connectivity check (or a nomination) on a pair.
    CHECK = "check"
    #: A consent check on a selected pair (RFC 7675).
    CONSENT = "consent"
    #: A Binding request to a STUN server, while gathering.
    GATHER = "gather"


@dataclass(slots=True)
class Request:
    """A STUN request of ours still out: its transaction and what it is for."""

    kind: Kind
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


class EarlyCheck(NamedTuple):
    """An authenticated check from the peer, as far as pairing needs it."""

    endpoint: int
    addr: Address
    priority: int
    use_candidate: bool
    #: libwebrtc's NOMINATION value (renomination), 0 when absent.
    nomination: int = 0


class CheckListener(Protocol):
    """What the agent hears from :class:`Checks`."""

    def check_succeeded(self, pair: CandidatePair, nominated: bool, now: float) -> None:
        """A check (a nomination if ``nominated``) on ``pair`` succeeded."""

    def pair_failed(self, pair: CandidatePair, now: float) -> None:
        """``pair`` just went Failed."""

    def peer_nominated(self, pair: CandidatePair, now: float) -> None:
        """The controlling peer nominated a valid ``pair``: select it."""

    def gather_answered(
        self, endpoint: int, server: Address, message: Message | None
    ) -> None:
        """A gathering request from ``endpoint`` to ``server`` ended: its
        success or error response, or ``None`` (no answer in time)."""

    def consent_answered(self, pair: CandidatePair, now: float) -> None:
        """An authenticated success answered a consent check on ``pair``."""

    def peer_renominated(self, pair: CandidatePair, value: int) -> bool:
        """The controlling peer sent NOMINATION ``value`` on ``pair``: whether
        it is the highest on its component (the pair to select)."""


class Checks:
    """The check driver of one agent: requests out, checks in, responses.

    :param checklist: the endpoints, candidates and pairs.
    :param states: the agent's life cycle (read only here).
    :param config: timing and bounds.
    :param rng: transaction IDs, peer-reflexive foundations.
    :param log: events and log lines.
    :param stats: the agent's counters.
    :param send: where datagrams go.
    :param listener: the agent.
    :param controlling: the initial role.
    :param local_username: our ``ice-ufrag``.
    :param local_password: our ``ice-pwd``.
    """

    def __init__(
        self,
        *,
        checklist: CheckList,
        states: StateMachine[IceState],
        config: IceConfig,
        rng: random.Random,
        log: EventLog,
        stats: AgentStats,
        send: Sender,
        listener: CheckListener,
        controlling: bool,
        local_username: str,
        local_password: str,
    ) -> None:
        self._list = checklist
        self._states = states
        self._config = config
        self._rng = rng
        self._log = log
        self._stats = stats
        self._send = send
        self._listener = listener
        self._local_username = local_username
        self._local_key = short_term_key(local_password)
        self._remote_username: str | None = None
        self._remote_key = b""
        #: Our role now (role conflicts may change it).
        self.controlling = controlling
        #: Our tie-breaker (RFC 8445 §7.1.1).
        self.tie_breaker = rng.getrandbits(64)
        #: Requests still out, by transaction ID.
        self.requests: dict[bytes, Request] = {}
        #: Authenticated checks that came before ``connect()``.
        self.early: list[EarlyCheck] = []
        #: When the next ordinary check is due, while checking.
        self.next_check_at: float | None = None
        #: The nomination timeout counts from here: ``connect()``, the last
        #: authenticated check on a pair of a component not yet selected, a
        #: switch to the controlled role.
        self.heard_at = 0.0
        #: The patience timer (RFC 8863 §3), from ``connect()``; ``None``
        #: before, and once it ran out.
        self.patience_until: float | None = None
        #: Such checks, and requests that named our ufrag but failed
        #: authentication (the peer's credentials for us are wrong).
        self.checks_received = 0
        self.checks_rejected = 0
        #: Whether this is an ICE-lite agent (:mod:`syncice._lite`).
        self.lite = config.ice_lite

    # --- credentials and role ------------------------------------------------

    def set_remote(self, username: str, password: str) -> None:
        """The peer's ``ice-ufrag`` and ``ice-pwd``."""
        self._remote_username = username
        self._remote_key = short_term_key(password)

    def switch_role(self, controlling: bool, now: float | None = None) -> None:
        """Take a role, with a :class:`~syncice.events.RoleChanged`; with
        ``now``, a switch to controlled restarts the nomination wait."""
        self.controlling = controlling
        if now is not None and not controlling:
            # The peer only now knows it is to nominate: the wait starts again.
            self.heard_at = now
        self._list.update_priorities(controlling)
        self._log.emit(RoleChanged(controlling=controlling))

    # --- waiting for the peer -------------------------------------------------

    def start(self, now: float) -> None:
        """``connect()``: the nomination wait and the patience timer start."""
        self.heard_at = now
        self.patience_until = now + self._config.patience

    def nomination_due(self, now: float) -> bool:
        """Whether the controlled agent's nomination timeout ran out."""
        due = self.heard_at + self._config.nomination_timeout
        return not self.controlling and now >= due

    def patient(self, now: float) -> bool:
        """Whether a component with nothing to pair may still get the peer's
        checks (peer-reflexive candidates): for the controlled agent always
        (its nomination timeout bounds the wait), for the controlling one
        until the patience timer runs out."""
        until = self.patience_until
        return not self.controlling or (until is not None and now < until)

    def patience_ran_out(self, now: float) -> bool:
        """Whether the patience timer runs out at ``now`` (true once)."""
        if self.patience_until is None or now < self.patience_until:
            return False
        self.patience_until = None
        return True

    # --- requests -------------------------------------------------------------

    def timers(self) -> Iterator[float]:
        """When each request is next due."""
        for request in self.requests.values():
            yield request.transaction.timer_at

    def gathering(self) -> bool:
        """Whether a gathering request is still out."""
        return any(r.kind is Kind.GATHER for r in self.requests.values())

    def drop(self, transaction_id: bytes | None) -> None:
        """Forget a request (its answer, if any, will be unexpected)."""
        if transaction_id is not None:
            self.requests.pop(transaction_id, None)

    def stop(self, *, keep_gathering: bool) -> None:
        """Forget every request (but gathering ones if ``keep_gathering``)."""
        if keep_gathering:
            self.requests = {
                t: r for t, r in self.requests.items() if r.kind is Kind.GATHER
            }
        else:
            self.requests.clear()
            self.early.clear()
        self.next_check_at = None

    def retire(self, listener: CheckListener) -> dict[bytes, Request]:
        """An ICE restart replaced this driver's generation (RFC 8445 §9):
        from now on it sends no check and starts nothing, answers the peer's
        checks with its credentials as a completed agent would, and runs the
        consent checks its new ``listener`` hears about.

        :returns: the gathering requests still out, for the new driver.
        """
        gathering = {t: r for t, r in self.requests.items() if r.kind is Kind.GATHER}
        self.requests = {}
        self.early.clear()
        self.next_check_at = None
        self._states = StateMachine(IceState.COMPLETED, ICE_TRANSITIONS)
        self._listener = listener
        return gathering

    def knows_endpoint(self, endpoint: int) -> bool:
        """Whether ``endpoint`` is on this driver's check list."""
        return endpoint in self._list.endpoints

    def transaction_id(self) -> bytes:
        """A fresh 96-bit transaction ID."""
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
        config = self._config
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

    def _start(self, request: Request) -> None:
        tx = request.transaction
        self.requests[tx.transaction_id] = request
        self._send(tx.endpoint, tx.data, tx.addr, tx.sent_at)

    def gather(
        self, endpoint: int, server: Address, now: float, deadline: float
    ) -> None:
        """Send a Binding request from ``endpoint`` to a STUN server."""
        message = Message(Method.BINDING, Class.REQUEST, self.transaction_id())
        data = message.encode(fingerprint=True)
        self._start(
            Request(
                Kind.GATHER,
                self._transaction(message, data, endpoint, server, now, deadline),
            )
        )

    def send_request(
        self, pair: CandidatePair, now: float, *, kind: Kind, nominate: bool = False
    ) -> bytes:
        """Send a check (or consent check) on ``pair``; its transaction ID."""
        local = pair.local
        attributes: dict[str, object] = {
            "USERNAME": f"{self._remote_username}:{self._local_username}",
            # RFC 8445 §7.1.1: the priority a peer-reflexive candidate would have.
            "PRIORITY": prflx_priority(local),
        }
        if self.controlling:
            attributes["ICE-CONTROLLING"] = self.tie_breaker
            if nominate:
                attributes["USE-CANDIDATE"] = None
        else:
            attributes["ICE-CONTROLLED"] = self.tie_breaker
        message = Message(
            Method.BINDING,
            Class.REQUEST,
            self.transaction_id(),
            attributes,  # type: ignore[arg-type]
        )
        data = message.encode(key=self._remote_key, fingerprint=True)
        tx = self._transaction(message, data, pair.endpoint, pair.remote_addr, now)
        self._start(
            Request(kind, tx, pair, nominate=nominate, controlling=self.controlling)
        )
        pair.requests_sent += 1
        return tx.transaction_id

    def send_check(
        self,
        pair: CandidatePair,
        now: float,
        *,
        nominate: bool,
        retriggered: bool = False,
    ) -> None:
        """Check ``pair`` now (a nomination if ``nominate``), in place of the
        check it may have out."""
        if pair.transaction is not None:
            self.requests.pop(pair.transaction.transaction_id, None)
        tid = self.send_request(pair, now, kind=Kind.CHECK, nominate=nominate)
        self.requests[tid].retriggered = retriggered
        pair.transaction = self.requests[tid].transaction
        if nominate:
            if not pair.nominating:
                self._log.debug("nominating pair %s (USE-CANDIDATE)", pair)
            pair.nominating = True
        self._list.set_state(pair, PairState.IN_PROGRESS)

    def run_checks(self, now: float) -> None:
        """The ``Ta`` tick: check the next ordinary pair, if due."""
        if self.next_check_at is None or now < self.next_check_at:
            return
        pair = self._list.next_ordinary_pair()
        if pair is not None:
            self.send_check(pair, now, nominate=False)
            self.next_check_at = now + self._config.ta

    def check_timer(self) -> float | None:
        """When the next ordinary check is due, if there is one to send."""
        if self.next_check_at is not None and self._list.next_ordinary_pair():
            return self.next_check_at
        return None

    def cancel_checks(self) -> None:
        """RFC 8445 §8.1.2: ICE completed, checks in progress (but
        nominations) are not needed any more: their pairs fail."""
        self.next_check_at = None
        for other in self._list.pairs:
            if (
                other.transaction is not None
                and not other.nominating
                and other.state is PairState.IN_PROGRESS
            ):
                self.requests.pop(other.transaction.transaction_id, None)
                other.transaction = None
                self._list.set_state(other, PairState.FAILED)

    def abandon_checks(self) -> None:
        """ICE failed: every check still out stops, its pair fails."""
        for pair in self._list.pairs:
            if pair.transaction is not None:
                pair.transaction = None
                self._list.set_state(pair, PairState.FAILED)

    def handle_timer(self, now: float) -> None:
        """Retransmit the requests due at ``now``, or end them."""
        for tid, request in list(self.requests.items()):
            tx = request.transaction
            # An earlier timeout in this loop may have replaced or cancelled
            # this transaction (a new nomination, a failure): skip it then.
            if tx.timer_at > now or self.requests.get(tid) is not request:
                continue
            if request.cancelled:
                # Its answer counted until its next retransmission time
                # (rather than the whole transaction timeout); its silence
                # fails nothing.
                del self.requests[tid]
                continue
            # Due, so the answer is SEND, TIMEOUT or INTEGRITY_VIOLATED, never
            # WAIT. A gather transaction's timer never passes its deadline
            # (the gather bound), so gathering ends here at the latest.
            result = tx.poll(now)
            if result is Poll.SEND:
                self._send(tx.endpoint, tx.data, tx.addr, now)
                if request.pair is not None and request.kind is Kind.CHECK:
                    request.pair.requests_sent += 1
            else:
                del self.requests[tid]
                self._on_timeout(request, result is Poll.INTEGRITY_VIOLATED, now)

    def fail_pair(self, pair: CandidatePair, now: float) -> None:
        """``pair`` failed: say so to the agent."""
        self._list.set_state(pair, PairState.FAILED)
        self._listener.pair_failed(pair, now)

    # --- requests from the peer ------------------------------------------------

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
                self._stats.error_responses_suppressed += 1
                return
        self._send(endpoint, data, addr, now)

    def on_request(
        self, endpoint: int, message: Message, size: int, addr: Address, now: float
    ) -> None:
        """A request from the peer on ``endpoint`` (a known endpoint of an
        agent that is not closed)."""
        state = self._states.state
        if state is IceState.FAILED:
            # ICE is over here: no answer at all, not even an error, so that
            # the peer's checks fail and its consent expires (RFC 7675 §5.1)
            # instead of it going on over a path we have given up.
            self._stats.unexpected += 1
            return
        attributes = message.attributes
        username = attributes.get("USERNAME")
        if (
            message.method != Method.BINDING
            or username is None
            or message.integrity is None
        ):
            self._stats.unauthenticated += 1
            self._respond_error(endpoint, message, size, addr, 400, "Bad Request", now)
            return
        local, colon, remote = username.partition(":")
        if (
            colon != ":"
            or local != self._local_username
            or (self._remote_username is not None and remote != self._remote_username)
            or not message.check_integrity(self._local_key)
        ):
            self._stats.unauthenticated += 1
            if local == self._local_username:
                # Meant for us: the peer's credentials for us are wrong.
                self.checks_rejected += 1
                self._log.debug(
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
            if self.controlling
            else attributes.get("ICE-CONTROLLED")
        )
        if theirs is not None:
            # The larger tie-breaker controls: keep our role and answer 487,
            # or give it up.
            # A lite agent stays controlled (RFC 8445 §6.1.1): always 487.
            if self.lite or (self.tie_breaker >= theirs) == self.controlling:
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
            self.switch_role(not self.controlling, now)

        response = Message(
            Method.BINDING,
            Class.SUCCESS,
            message.transaction_id,
            {"XOR-MAPPED-ADDRESS": addr},
        )
        self._send(
            endpoint, response.encode(key=self._local_key, fingerprint=True), addr, now
        )
        # The sender proved it knows our password: its data is accepted.
        self._list.authenticate(endpoint, addr)
        check = EarlyCheck(
            endpoint,
            addr,
            attributes.get("PRIORITY", 0),
            "USE-CANDIDATE" in attributes,
            attributes.get("NOMINATION", 0),
        )
        if state is IceState.NEW:
            self._keep_early(check)
        else:  # checking or completed: failed and closed agents never get here
            self.on_check(check, now)

    def _keep_early(self, check: EarlyCheck) -> None:
        """Keep a check that came before :meth:`IceAgent.connect`: one per
        source, so that a peer's repeated checks (its consent checks, once it
        has completed) take no more room, and a USE-CANDIDATE once seen from
        a source is never forgotten; the oldest source goes when
        ``max_early_checks`` sources are kept."""
        for i, kept in enumerate(self.early):
            if kept.endpoint == check.endpoint and kept.addr == check.addr:
                self.early[i] = check._replace(
                    use_candidate=check.use_candidate or kept.use_candidate
                )
                return
        if len(self.early) >= self._config.max_early_checks:
            del self.early[0]
            self._stats.early_checks_dropped += 1
        self.early.append(check)

    def _learn_remote(
        self, check: EarlyCheck, component: int, local: Candidate
    ) -> Candidate | None:
        """The peer-reflexive remote candidate a check shows (RFC 8445
        §7.3.1.3), or ``None`` (refused)."""
        if (
            len(self._list.remote_candidates) >= self._config.max_remote_candidates
            or not 1 <= check.priority < 2**31
        ):
            return None
        addr = check.addr
        try:
            remote = Candidate(
                foundation=f"{self._rng.getrandbits(32):08x}",
                component=component,
                transport=local.transport,
                priority=check.priority,
                host=addr[0],
                port=addr[1],
                type="prflx",
                tcptype=tcptype_seen_from_peer(local),
            )
        except CandidateError:
            # A source a candidate cannot name (an IPv6 zone id,
            # "fe80::1%eth0"): no pair with it.
            return None
        self._list.add_remote(remote, addr)
        self._log.debug("remote candidate %s learnt from a check", remote.to_sdp())
        return remote

    def on_check(self, check: EarlyCheck, now: float) -> None:
        """RFC 8445 §7.3.1.3-§7.3.1.5, for an authenticated check."""
        checklist = self._list
        ep = checklist.endpoints[check.endpoint]
        component = ep.component
        addr = check.addr
        pair = ep.pairs.get(addr)
        if pair is None:
            key = remote_key(component, addr, ep.candidate.transport)
            remote = checklist.remote_by_addr.get(key)
            if remote is None:
                remote = self._learn_remote(check, component, ep.candidate)
            pair = (
                None
                if remote is None
                else checklist.pair(check.endpoint, remote, self.controlling)
            )
            if pair is None:
                self._stats.candidates_refused += 1
                return
            checklist.sort()
        pair.requests_received += 1
        pair.responses_sent += 1
        selected = checklist.selected
        if component not in selected:
            # A check that may lead to a nomination: the wait starts again.
            # (Consent checks on a selected component, or checks we could
            # not pair, say nothing of the components still to nominate.)
            self.checks_received += 1
            self.heard_at = now
        renominated = (
            check.nomination > 0
            and not self.controlling
            and self._listener.peer_renominated(pair, check.nomination)
        )
        use_candidate = check.use_candidate or renominated
        if renominated:
            self._log.debug("pair %s renominated (%d)", pair, check.nomination)
        if self.lite:  # RFC 8445 §7.3.2: no triggered check
            if take_check(checklist, self._log, pair, use_candidate):
                self._listener.peer_nominated(pair, now)
            return
        if self._states.state is IceState.COMPLETED and component in selected:
            if (
                use_candidate
                and not self.controlling
                and pair is not selected[component]
            ):
                if pair.valid:
                    self._log.debug("pair %s nominated by the peer", pair)
                    self._listener.peer_nominated(pair, now)
                elif renominated and pair.transaction is None:
                    # Not valid here yet: check it, select it on success.
                    pair.remote_nominated = True
                    checklist.set_state(pair, PairState.WAITING)
                    self.send_check(pair, now, nominate=False)
            return
        # Triggered check (RFC 8445 §7.3.1.4).
        if pair.state in (PairState.FROZEN, PairState.WAITING, PairState.FAILED):
            checklist.set_state(pair, PairState.WAITING)
            self.send_check(pair, now, nominate=False)
        elif pair.state is PairState.IN_PROGRESS:
            self._retrigger(pair, now)
        # Nomination by the controlling peer (RFC 8445 §7.3.1.5).
        if use_candidate and not self.controlling:
            if not pair.remote_nominated:
                self._log.debug("pair %s nominated by the peer (USE-CANDIDATE)", pair)
            pair.remote_nominated = True
            if pair.state is PairState.SUCCEEDED:
                self._listener.peer_nominated(pair, now)

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
        counts (:meth:`on_response`). Never done for a check that got
        responses, if only discarded ones (RFC 8489 §9.1.5): it was not lost,
        and starting it again at every check from a peer that cannot
        authenticate our responses would keep it from ever failing."""
        tx = pair.transaction
        current = self.requests.get(tx.transaction_id) if tx is not None else None
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
        self.send_check(pair, now, nominate=current.nominate, retriggered=True)
        current.replaced_by = pair.transaction

    # --- responses ---------------------------------------------------------------

    def _discard(self, request: Request, message: Message, addr: Address) -> None:
        """RFC 8489 §9.1.5: a response that fails its integrity check is
        discarded as if it had never arrived, and the retransmissions go on;
        so is the unsigned 400 or 401 of a peer that could not authenticate
        our request (RFC 8489 §9.1.3), which anybody who saw the request
        could forge. Those from where the request went may be the peer's:
        counted, for the failure reason."""
        self._stats.unauthenticated += 1
        tx = request.transaction
        pair = request.pair
        if addr != tx.addr:
            return
        tx.discard()
        if request.kind is not Kind.CHECK or pair is None:
            return
        error = message.error_code if message.message_class == Class.ERROR else None
        unsigned = message.integrity is None and error in (400, 401)
        code = error if unsigned and error is not None else 0
        rejected = pair.faults.rejected
        rejected[code] = rejected.get(code, 0) + 1
        if code:
            self._log.debug(
                "response to a check on %s discarded: unsigned %s", pair, status(code)
            )
        else:
            self._log.debug(
                "response to a check on %s discarded: bad MESSAGE-INTEGRITY", pair
            )

    def on_response(
        self, endpoint: int, message: Message, addr: Address, now: float
    ) -> None:
        """A success or error response on ``endpoint`` from ``addr``."""
        request = self.requests.get(message.transaction_id)
        if request is None or request.transaction.endpoint != endpoint:
            self._stats.unexpected += 1
            return
        tx = request.transaction
        if request.kind is Kind.GATHER:
            if addr != tx.addr:
                self._stats.unexpected += 1
                return
            del self.requests[message.transaction_id]
            self._listener.gather_answered(tx.endpoint, tx.addr, message)
            return
        pair = request.pair
        assert pair is not None
        if not message.check_integrity(self._remote_key):
            self._discard(request, message, addr)
            return
        error = message.error_code if message.message_class == Class.ERROR else None
        del self.requests[message.transaction_id]
        if request.cancelled:
            # A cancelled check can only succeed, and only while the one that
            # replaced it is still out: it then stands for it. Not for a later
            # one: once the replacement succeeded, the pair's transaction may
            # be the nomination that followed, which must go on.
            current = pair.transaction
            if (
                current is None
                or current is not request.replaced_by
                or error is not None
                or addr != tx.addr
            ):
                return
            self.requests.pop(current.transaction_id, None)
            pair.transaction = None
        if pair.transaction is tx:
            pair.transaction = None
        if request.nominate:
            # The nomination is over, whatever the answer: a success selects.
            pair.nominating = False
        if addr != tx.addr:
            # Not symmetric (RFC 8445 §7.2.5.2.1).
            if request.kind is Kind.CHECK:
                pair.faults.asymmetric += 1
                self._fail_check(request, now, f"answered from {addr[0]}:{addr[1]}")
            return
        pair.responses_received += 1
        if error is None:
            pair.responded_at = now
        if tx.sends == 1:
            pair.rtt = now - tx.sent_at
        if request.kind is Kind.CONSENT:
            if error is None:
                self._listener.consent_answered(pair, now)
            return
        # A check is only ever out while checking or completed: failure and
        # close() cancel the checks still out.
        if error == 487:
            pair.role_conflicts += 1
            if pair.role_conflicts >= MAX_ROLE_CONFLICTS:
                self._fail_with_error(request, 487, now, pair.role_conflicts)
                return
            # RFC 8445 §7.2.5.1: take the role opposite to the one the request
            # claimed, then check the pair again.
            if request.controlling == self.controlling:
                self.switch_role(not request.controlling, now)
            self._list.set_state(pair, PairState.WAITING)
            self.send_check(pair, now, nominate=False)
            return
        if error is not None:
            self._fail_with_error(request, error, now)
            return
        mapped = message.attributes.get("XOR-MAPPED-ADDRESS")
        if mapped is None:
            pair.faults.unmapped += 1
            self._fail_check(request, now, "a success without XOR-MAPPED-ADDRESS")
            return
        self._succeeded(pair, request.nominate, (canonical(mapped[0]), mapped[1]), now)

    def _succeeded(
        self, pair: CandidatePair, nominated: bool, mapped: Address, now: float
    ) -> None:
        checklist = self._list
        checklist.endpoints[pair.endpoint].peers[pair.remote_addr] = pair
        # What went wrong before (a spoofed answer, a lost check) is moot now.
        pair.faults = PairFaults()
        pair.role_conflicts = 0
        # Discovering a local peer-reflexive candidate (RFC 8445 §7.2.5.3.1).
        if not mapped_is_base(pair.local, mapped) and not pair.valid:
            known = next(
                (
                    c
                    for c in checklist.local_candidates
                    if c.component == pair.component and (c.host, c.port) == mapped
                ),
                None,
            )
            if known is None:
                base = pair.local
                known = Candidate(
                    foundation=candidate_foundation("prflx", base.transport, base.host),
                    component=base.component,
                    transport=base.transport,
                    priority=prflx_priority(base),
                    host=mapped[0],
                    port=mapped[1],
                    type="prflx",
                    related_address=base.host,
                    related_port=base.port,
                    tcptype=base.tcptype,
                )
                self._log.debug(
                    "local candidate %s learnt from a check", known.to_sdp()
                )
            pair.valid_local = known
            pair.update_priority(self.controlling)
            checklist.sort()
        pair.valid = True
        checklist.set_state(pair, PairState.SUCCEEDED)
        checklist.unfreeze_foundation(pair.foundation)
        self._listener.check_succeeded(pair, nominated, now)

    def _on_timeout(self, request: Request, violated: bool, now: float) -> None:
        """A transaction ended without a valid response: ``violated`` when it
        got responses, all of them discarded (RFC 8489 §9.1.5)."""
        tx = request.transaction
        if request.kind is Kind.GATHER:
            self._listener.gather_answered(tx.endpoint, tx.addr, None)
            return
        pair = request.pair
        assert pair is not None
        if request.kind is Kind.CONSENT:
            self._log.debug(
                "consent check on %s unanswered (%s)", pair, times(tx.sends)
            )
            return
        # A pending check is always its pair's current transaction:
        # send_check() drops the one it replaces.
        pair.transaction = None
        if violated:
            why = f"integrity violation: {times(tx.discarded)} answered, never validly"
        else:
            pair.faults.timeouts += 1
            pair.faults.unanswered += tx.sends
            why = f"timeout: no response, sent {times(tx.sends)}"
        self._fail_check(request, now, why)

    def _fail_with_error(
        self, request: Request, code: int, now: float, count: int = 1
    ) -> None:
        pair = request.pair
        assert pair is not None
        errors = pair.faults.errors
        errors[code] = errors.get(code, 0) + count
        self._fail_check(request, now, f"error {status(code)} ({times(count)})")

    def _fail_check(self, request: Request, now: float, why: str) -> None:
        """A check failed (RFC 8445 §7.2.5.2). A failed nomination also takes
        its pair out of the valid list, so that another pair can be nominated
        (or ICE can fail) instead of waiting on it forever."""
        pair = request.pair
        assert pair is not None
        self._log.debug(
            "%s on %s failed: %s",
            "nomination" if request.nominate else "check",
            pair,
            why,
        )
        if request.nominate:
            pair.nominating = False
            pair.valid = False
        self.fail_pair(pair, now)
