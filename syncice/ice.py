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
  are dropped and counted in :attr:`IceAgent.stats`. What is STUN and what is
  data is decided once, by :func:`syncice._demux.is_stun` (RFC 7983).
- Every queue a peer can fill is bounded by :class:`IceConfig`: remote
  candidates (peer-reflexive ones included), pairs, checks that arrive before
  :meth:`IceAgent.connect`.
- The life cycle is :class:`IceState`, and every change of it goes through
  one method that checks the table :data:`~syncice._ice_states.ICE_TRANSITIONS`:
  a move it does not allow raises
  :class:`~syncice._ice_states.IllegalTransitionError` (a bug, never the
  peer's doing). Pair states have their own table, checked the same way.
- The controlled agent does not wait for a nomination for ever: once it has
  had no authenticated check from the peer, on a pair of a component still
  without a selected pair, for ``nomination_timeout`` (counted from
  :meth:`IceAgent.connect`, and again from every such check or a switch to
  the controlled role), ICE fails. With nothing to pair, it waits for
  peer-reflexive candidates that long, the controlling agent for
  ``IceConfig.patience`` (RFC 8863 §3). ICE fails (RFC 8445 §7.2.5.4) once,
  after end-of-candidates, no pair is left to check on some component and
  none of its pairs is valid, but not while local candidates are still
  being gathered (RFC 8838 §8: :meth:`IceAgent.connect` may come first, and
  a candidate still to come may work). Once it has failed (or the agent is closed),
  the agent answers no request at all and sends no consent check: its
  silence is what lets the peer's consent expire (RFC 7675 §5.1), and its
  checks stop.
- :class:`~syncice.events.IceFailed` names the cause (``_ice_failure.py``).
- Data sent with :meth:`IceAgent.send` and data returned by
  :meth:`IceAgent.receive_datagram` are counted on their pair; data the
  caller moves itself is credited with :meth:`IceAgent.count_sent` and
  :meth:`IceAgent.count_received`, so that :meth:`IceAgent.pair_stats`
  counts every datagram once, on its true pair and component.

The agent's parts, each in a module of its own, owned by the agent:
``_checklist.py`` (endpoints, candidates, pairs and their states),
``_checks.py`` (sending, answering and taking checks), ``_nomination.py``,
``_consent.py``, ``_gathering.py`` (server-reflexive candidates),
``_relays.py`` (TURN relays, with the agent's verbs for them in
``_agent_relays.py``), ``_ice_failure.py`` (failure reasons),
``_ice_log.py`` (events and log lines), ``_ice_config.py``,
``_ice_states.py`` and ``_lite.py`` (the rules of a local ICE-lite agent,
``IceConfig(ice_lite=True)``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ._agent_relays import RelayVerbs
from ._agent_tcp import TcpVerbs
from ._checklist import CandidatePair, CheckList, PairStats, canonical, remote_key
from ._checks import AgentStats, Checks, Kind
from ._consent import ConsentSet
from ._demux import is_stun
from ._gathering import Gathering, GatherState, plan, srflx_candidate
from ._ice_config import (
    DEFAULT_CONFIG,
    IceConfig,
    validate_password,
    validate_username,
)
from ._ice_failure import FailureFacts, failure_reason
from ._ice_log import EventLog, plural
from ._ice_states import ICE_TRANSITIONS, IceState, StateMachine
from ._lite import BOTH_LITE, lite_role, lite_servers
from ._nomination import Nomination
from ._relays import RelaySet
from ._restart import Previous, RestartVerbs
from .candidate import Candidate, candidate_foundation, candidate_priority
from .events import (
    CandidateGathered,
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceEvent,
    IceFailed,
    SelectedPairChanged,
)
from .exceptions import StunParseError
from .stun import Class, Message, parse_message

__all__ = [
    "AgentStats",
    "IceAgent",
    "IceConfig",
    "IceState",
    "Transmit",
    "validate_password",
    "validate_username",
]

Address = tuple[str, int]

# One for every agent: SystemRandom keeps no state worth a copy (os.urandom),
# and a Random object costs 2.5 kB, which adds up over many connections.
_SYSTEM_RANDOM = random.SystemRandom()


class Transmit(NamedTuple):
    """A datagram to send: from ``endpoint`` to ``addr``."""

    endpoint: int
    data: bytes
    addr: Address


class _Reactions:
    """What the agent does about what its check driver reports
    (:class:`~syncice._checks.CheckListener`)."""

    __slots__ = ("agent",)

    def __init__(self, agent: IceAgent) -> None:
        self.agent = agent

    def check_succeeded(self, pair: CandidatePair, nominated: bool, now: float) -> None:
        self.agent._on_check_succeeded(pair, nominated, now)

    def pair_failed(self, pair: CandidatePair, now: float) -> None:
        self.agent._on_pair_failed(pair, now)

    def peer_nominated(self, pair: CandidatePair, now: float) -> None:
        self.agent._select(pair, now)

    def gather_answered(
        self, endpoint: int, server: Address, message: Message | None
    ) -> None:
        self.agent._on_gather_answered(endpoint, server, message)

    def consent_answered(self, pair: CandidatePair, now: float) -> None:
        self.agent._on_consent_answered(pair, now)

    def peer_renominated(self, pair: CandidatePair, value: int) -> bool:
        return self.agent._nomination.renominate(pair, value)


class IceAgent(RelayVerbs, TcpVerbs, RestartVerbs):
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
        # The defaults are one frozen instance, shared by every agent.
        self.config = config if config is not None else DEFAULT_CONFIG
        if self.config.ice_lite:  # RFC 8445 §6.1.1 (syncice._lite)
            controlling = lite_role(name, bool(controlling))
        self._rng = rng if rng is not None else _SYSTEM_RANDOM
        self.local_username = validate_username(local_username)
        self.local_password = validate_password(local_password)
        self.remote_username: str | None = None
        self.remote_password: str | None = None
        #: Whether the peer is an ICE-lite agent: it never checks, we nominate.
        self.remote_is_lite = False
        self.components = components
        self.name = name
        self.stats = AgentStats()
        #: Whether the peer said end-of-candidates.
        self.remote_end = False

        self._machine = StateMachine(IceState.NEW, ICE_TRANSITIONS)
        self._log = EventLog(name)
        self._list = CheckList(self._log, self.config.max_pairs)
        self._checks = self._new_checks(
            local_username, local_password, bool(controlling)
        )
        self._nomination = Nomination(self._list, self.config.nomination_wait)
        self._consent = ConsentSet(self.config, self._rng)
        self._gathering = Gathering()
        self._relays = RelaySet(self._log)
        self._outbox: list[Transmit] = []
        #: Every local candidate, in the order gathered.
        self.local_candidates: list[Candidate] = self._list.local_candidates
        #: Every remote candidate, peer-reflexive ones included.
        self.remote_candidates: list[Candidate] = self._list.remote_candidates
        # Why the TURN relays that had pairs ended.
        self._relays_lost: list[str] = []
        # ICE restarts (_restart.py): the generation they replaced, and
        # how many there were.
        self._previous: Previous | None = None
        self._generation = 0
        # A failure check put off while local candidates were being
        # gathered (RFC 8838 §8), made again once gathering ends.
        self._failure_deferred = False

    def _new_checks(self, username: str, password: str, controlling: bool) -> Checks:
        """The check driver of a generation of the check list."""
        return Checks(
            checklist=self._list,
            states=self._machine,
            config=self.config,
            rng=self._rng,
            log=self._log,
            stats=self.stats,
            send=self._send,
            listener=_Reactions(self),
            controlling=controlling,
            local_username=username,
            local_password=password,
        )

    # --- properties --------------------------------------------------------

    @property
    def state(self) -> IceState:
        """Where the agent is in its life cycle."""
        return self._machine.state

    def _set_state(self, state: IceState) -> None:
        """The one way the state changes: checked against
        :data:`~syncice._ice_states.ICE_TRANSITIONS`."""
        self._machine.to(state)
        self._restart_state(state)

    @property
    def controlling(self) -> bool:
        """Whether the agent is controlling now (role conflicts may change it)."""
        return self._checks.controlling

    @property
    def tie_breaker(self) -> int:
        """The agent's tie-breaker for role conflicts (RFC 8445 §7.1.1),
        drawn from ``rng``; tests may set it to stage a conflict."""
        return self._checks.tie_breaker

    @tie_breaker.setter
    def tie_breaker(self, value: int) -> None:
        self._checks.tie_breaker = value

    @property
    def pairs(self) -> list[CandidatePair]:
        """The check list, highest priority first (worker thread only)."""
        return self._list.pairs

    @property
    def selected(self) -> dict[int, CandidatePair]:
        """The selected pair of each component that has one."""
        return self._list.selected

    # --- output ------------------------------------------------------------

    def datagrams_to_send(self) -> list[Transmit]:
        """Hand out the datagrams queued since the last call, oldest first.

        Datagrams for a relayed peer come out wrapped for the TURN server
        (RFC 8656 §11, §12), on the relay's transport endpoint.
        """
        out = self._outbox
        if out:
            self._outbox = []
        relayed = self._relays.datagrams_to_send()
        if relayed:
            out = out + [Transmit(*item) for item in relayed]
        return out

    def next_event(self) -> IceEvent | None:
        """Pop the oldest queued event, or return ``None``."""
        return self._log.pop()

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run (absolute), or ``None``."""
        at = self._relays.get_timer()
        if self.state is IceState.CLOSED:
            return at
        for when in self._timers():
            if when is not None and (at is None or when < at):
                at = when
        return at

    def _timers(self) -> Iterable[float | None]:
        yield from self._checks.timers()
        if self.state is IceState.CHECKING:
            yield self._checks.check_timer()
            yield self._checks.patience_until if self.remote_end else None
            if self.controlling:
                yield from self._nomination.timers()
            else:
                yield self._checks.heard_at + self.config.nomination_timeout
        yield from self._consent.timers()
        yield from self._previous_timers()

    # --- local candidates and gathering ------------------------------------

    def _taken(self) -> set[int]:
        return self._list.endpoints.keys() | self._relays.ids()

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
        if endpoint in self._list.endpoints:
            raise ValueError(f"endpoint {endpoint} already added")
        if not 1 <= component <= self.components:
            raise ValueError(f"component must be 1 to {self.components}")
        host = canonical(addr[0])
        candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host", local_pref),
            host=host,
            port=addr[1],
            type="host",
        )
        self._add_local(endpoint, component, candidate)
        return candidate

    def _add_local(self, endpoint: int, component: int, candidate: Candidate) -> None:
        self._list.add_endpoint(endpoint, component, candidate)
        self._log.emit(CandidateGathered(candidate=candidate))
        if self.state in (IceState.CHECKING, IceState.COMPLETED):
            for remote in self.remote_candidates:
                self._list.pair(endpoint, remote, self.controlling)
            self._list.sort()

    def gather(self, now: float, stun_servers: Sequence[Address] = ()) -> None:
        """Start gathering server-reflexive candidates (RFC 8445 §5.1.1.2).

        A Binding request goes from every host endpoint to every STUN server of
        its address family. :class:`GatheringCompleted` follows when all have
        answered or failed, or ``gather_timeout`` after now, whichever comes
        first; at once when there is nothing to ask.
        """
        if self._gathering.state is not GatherState.NEW:
            return
        if self.config.ice_lite:  # host candidates only (RFC 8445 §5.2)
            lite_servers(self.name, *stun_servers)
            stun_servers = ()
        self._gathering.to(GatherState.GATHERING)
        deadline = now + self.config.gather_timeout
        for relay in self._relays:
            relay.deadline = deadline
            relay.allocation.start(now, deadline)
            self._on_relay_events(relay, now)
        hosts = [(e, ep.candidate) for e, ep in self._list.endpoints.items()]
        for endpoint, server in plan(hosts, stun_servers):
            self._checks.gather(endpoint, server, now, deadline)
        # Each request's own deadline (the gather bound) ends it in time.
        self._maybe_gathered(now)

    def _maybe_gathered(self, now: float | None = None) -> None:
        if (
            self._gathering.state is GatherState.GATHERING
            and not self._checks.gathering()
            and not self._relays.allocating
        ):
            self._gathering.to(GatherState.COMPLETED)
            self._log.emit(GatheringCompleted())
        if now is not None:
            self._settle(now)

    def _settle(self, now: float) -> None:
        """The failure check put off while gathering, once it has ended."""
        if self._failure_deferred and self._gathering.state is GatherState.COMPLETED:
            self._failure_deferred = False
            self._maybe_fail(now)

    def _on_gather_answered(
        self, endpoint: int, server: Address, message: Message | None
    ) -> None:
        ep = self._list.endpoints.get(endpoint)
        if message is not None and message.message_class == Class.SUCCESS:
            attributes = message.attributes
            mapped = attributes.get("XOR-MAPPED-ADDRESS") or attributes.get(
                "MAPPED-ADDRESS"
            )
            if mapped is not None and ep is not None:
                candidate = srflx_candidate(
                    ep.candidate,
                    (canonical(mapped[0]), mapped[1]),
                    self.local_candidates,
                    server=server[0],
                )
                if candidate is not None:
                    self.local_candidates.append(candidate)
                    self._log.emit(CandidateGathered(candidate=candidate))
        self._maybe_gathered()

    # --- remote candidates -------------------------------------------------

    def set_remote_credentials(self, username: str, password: str) -> None:
        """Set the peer's ``ice-ufrag`` and ``ice-pwd``.

        They are taken as given (peers are not all strict about RFC 8839's
        lengths); only a non-empty :class:`str` is required. A new
        ``username`` once checks have started is the peer's ICE restart
        (RFC 8445 §9): the agent restarts too (:meth:`restart`, with new
        local credentials to signal back).

        :raises ValueError: if either is empty.
        :raises TypeError: if either is not a :class:`str`.
        """
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str):
                raise TypeError(f"remote {name} must be a str")
            if not value:
                raise ValueError(f"remote {name} must not be empty")
        if (
            self.state not in (IceState.NEW, IceState.CLOSED)
            and username != self.remote_username
        ):
            self._log.debug("new remote ufrag: the peer restarted ICE")
            self.restart()
        self.remote_username = username
        self.remote_password = password
        self._checks.set_remote(username, password)

    def add_remote_candidate(self, candidate: Candidate | None, now: float) -> None:
        """Add a remote candidate, or ``None`` for end-of-candidates (RFC 8838).

        Candidates that cannot be paired (not UDP, or TCP without
        :meth:`enable_tcp`, a host name, a component we do not have) are kept
        out; one with the transport address of a known
        candidate is ignored. While checking, new pairs join the check list.

        :raises ValueError: after end-of-candidates.
        """
        if self.remote_end:
            raise ValueError("Cannot add remote candidate after end-of-candidates.")
        log = self._log
        if candidate is None:
            self.remote_end = True
            log.debug("remote end-of-candidates")
            self._maybe_fail(now)
            return
        sdp = candidate.to_sdp()
        if self.state in (IceState.CLOSED, IceState.FAILED):
            log.debug("remote candidate %s ignored: ICE %s", sdp, self.state.value)
            return
        addr = (canonical(candidate.host), candidate.port)
        limit = self.config.max_remote_candidates
        transport = candidate.transport.lower()
        if transport != "udp" and (transport != "tcp" or not self.tcp):
            why = "not UDP"
        elif transport == "tcp" and candidate.tcptype is None:
            why = "TCP without tcptype"
        elif not 1 <= candidate.component <= self.components:
            why = f"no component {candidate.component} here"
        elif candidate.type not in ("host", "srflx", "prflx", "relay"):
            why = f"unknown type {candidate.type!r}"
        elif (
            remote_key(candidate.component, addr, transport)
            in self._list.remote_by_addr
        ):
            log.debug("remote candidate %s ignored: a known address", sdp)
            return
        elif len(self.remote_candidates) >= limit:
            why = f"max_remote_candidates ({limit}) reached"
        else:
            why = ""
        if why:
            self.stats.candidates_refused += 1
            log.debug("remote candidate %s refused: %s", sdp, why)
            return
        log.debug("remote candidate %s", sdp)
        self._list.add_remote(candidate, addr)
        for relay in self._relays:
            self._permit(relay, candidate, now)
        if self.state in (IceState.CHECKING, IceState.COMPLETED):
            for endpoint in self._list.endpoints:
                self._list.pair(endpoint, candidate, self.controlling, trickled=True)
            self._list.sort()

    # --- connect -----------------------------------------------------------

    def connect(self, now: float) -> None:
        """Start the checks (RFC 8445 §6.1.2, §6.1.4), once the remote
        credentials are set; later calls do nothing.

        :raises ValueError: if the remote credentials are missing.
        """
        if self.state is not IceState.NEW:
            return
        if self.remote_username is None or self.remote_password is None:
            raise ValueError("remote username and password must be set first")
        self._set_state(IceState.CHECKING)
        checks = self._checks
        checks.start(now)
        for endpoint in self._list.endpoints:
            for remote in self.remote_candidates:
                self._list.pair(endpoint, remote, self.controlling)
        self._list.sort()
        self._log.debug(
            "connect: %s, %s, %s",
            "controlling" if self.controlling else "controlled",
            plural(len(self.pairs), "pair"),
            plural(len(checks.early), "early check"),
        )
        if not self.config.ice_lite:  # a lite agent sends no check
            self._list.unfreeze_initial()
            checks.next_check_at = now
        early = list(checks.early)
        checks.early.clear()
        for check in early:
            checks.on_check(check, now)
        checks.run_checks(now)
        self._maybe_fail(now)

    def set_selected_pair(
        self, component: int, local_foundation: str, remote_foundation: str
    ) -> CandidatePair:
        """Select a pair without checks, for a peer that does not do ICE.

        No consent checks run on it. Data from the remote candidate is accepted.

        :raises ValueError: if no such local or remote candidate exists.
        """
        endpoint = self._list.endpoint_with(component, local_foundation)
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
        pair = self._list.pair_by_hand(endpoint, remote, self.controlling)
        self.selected[component] = pair
        # A pair chosen by hand is not subject to consent (a peer without ICE
        # would not answer), even if ICE had selected another one before.
        self._consent.stop(component)
        self._log.emit(
            SelectedPairChanged(
                component=component, local=pair.valid_local, remote=remote
            )
        )
        if (
            self.state in (IceState.NEW, IceState.CHECKING)
            and len(self.selected) == self.components
        ):
            self._set_state(IceState.COMPLETED)
            self._log.emit(IceCompleted())
        return pair

    # --- timers ------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Run whatever is due at ``now``: retransmissions and timeouts, the
        ``Ta`` tick, nomination, consent checks and expiry, the gather bound,
        the TURN allocations' refreshes."""
        for relay in self._relays.due(now):
            self._on_relay_events(relay, now)
        if self.state is IceState.CLOSED:
            return
        self._checks.handle_timer(now)
        self._settle(now)  # the last gather request may have timed out
        if self.state is IceState.CHECKING and self._checks.nomination_due(now):
            self._fail(self._failure_reason(nomination=True))
        if self._checks.patience_ran_out(now):
            self._maybe_fail(now)
        if self.state is IceState.CHECKING:
            self._checks.run_checks(now)
            if self.controlling:
                for component in self._nomination.components():
                    self._maybe_nominate(component, now)

        def consent_check(component: int, previous: bytes | None) -> bytes:
            self._checks.drop(previous)
            # Consent only runs on a component with a selected pair, and no
            # component loses its selected pair.
            pair = self.selected[component]
            return self._checks.send_request(pair, now, kind=Kind.CONSENT)

        expired = self._consent.run(now, consent_check)
        if expired is not None:
            self._log.emit(ConsentExpired(component=expired))
            self.close()
        self._previous_timer(now)

    def _on_consent_answered(self, pair: CandidatePair, now: float) -> None:
        if self.selected.get(pair.component) is pair:
            self._consent.answered(pair.component, now)

    # --- sending and receiving ----------------------------------------------

    def _send(self, endpoint: int, data: bytes, addr: Address, now: float) -> None:
        relay = self._relays.by_endpoint(endpoint)
        if relay is None:
            self._outbox.append(Transmit(endpoint, data, addr))
        else:
            relay.allocation.send(addr, data, now)

    def receive_datagram(
        self, endpoint: int, data: bytes, addr: Address, now: float
    ) -> tuple[bytes, int] | None:
        """Take a datagram received on ``endpoint`` from ``addr``.

        STUN messages are handled here. Anything else is application data: it
        is returned as ``(data, component)`` when ``addr`` has authenticated
        itself with a check or a response on that endpoint, and dropped (and
        counted) otherwise; data on a pair is counted in its
        :meth:`pair_stats`. Never raises for any bytes.
        """
        ep = self._list.endpoints.get(endpoint)
        if ep is None or self.state is IceState.CLOSED:
            relay = self._relays.by_transport(endpoint)
            if relay is not None and addr == relay.allocation.server:
                # A UDP datagram carries one message: at most one result.
                got = None
                for peer, payload in relay.allocation.receive(data, now):
                    got = self.receive_datagram(relay.endpoint, payload, peer, now)
                self._on_relay_events(relay, now)
                return got
            self.stats.unexpected += 1
            return None
        if not is_stun(data):
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
        if self._previous_receive(endpoint, message, len(data), addr, now):
            return None
        if message.message_class == Class.REQUEST:
            self._checks.on_request(endpoint, message, len(data), addr, now)
        elif message.message_class in (Class.SUCCESS, Class.ERROR):
            self._checks.on_response(endpoint, message, addr, now)
            self._settle(now)  # it may have been the last gather answer
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
        relay = self._relays.by_transport(transport)
        if relay is None:
            self.stats.unexpected += 1
            return []
        got = []
        for peer, payload in relay.allocation.receive(data, now):
            item = self.receive_datagram(relay.endpoint, payload, peer, now)
            if item is not None:
                got.append(item)
        self._on_relay_events(relay, now)
        return got

    def send(self, component: int, data: bytes, now: float) -> bool:
        """Queue application data on the selected pair of ``component``, and
        count it on that pair.

        Callers with a socket of their own may write to :meth:`route` instead
        (and credit it with :meth:`count_sent`); this is the way for relayed
        routes, whose data the TURN allocation wraps.

        :returns: whether there was a selected pair to send it on.
        """
        pair = self.data_pair(component)
        if pair is None or self.state in (IceState.FAILED, IceState.CLOSED):
            return False
        self._send(pair.endpoint, data, pair.remote_addr, now)
        pair.datagrams_sent += 1
        pair.bytes_sent += len(data)
        return True

    def count_sent(self, component: int, size: int, count: int = 1) -> bool:
        """Credit ``count`` datagrams of ``size`` bytes in all, which the
        caller sent itself on :meth:`route` of ``component``, to the selected
        pair of that component.

        :returns: whether there was a selected pair to credit.
        """
        pair = self.data_pair(component)
        if pair is None:
            return False
        pair.datagrams_sent += count
        pair.bytes_sent += size
        return True

    def count_received(
        self, endpoint: int, addr: Address, size: int, count: int = 1
    ) -> int | None:
        """Credit ``count`` datagrams of ``size`` bytes in all, which the
        caller read itself on ``endpoint`` from ``addr`` (an authenticated
        peer, see :meth:`authenticated_peers`) without going through
        :meth:`receive_datagram`, to the pair they arrived on.

        :returns: their component, or ``None`` when ``addr`` is not an
            authenticated peer of ``endpoint`` (nothing is counted then).
        """
        ep = self._list.endpoints.get(endpoint)
        if ep is None or addr not in ep.peers:
            return None
        pair = ep.peers[addr]
        if pair is not None:
            pair.datagrams_received += count
            pair.bytes_received += size
        return ep.component

    # --- outcomes of checks ---------------------------------------------------

    def _on_check_succeeded(
        self, pair: CandidatePair, nominated: bool, now: float
    ) -> None:
        component = pair.component
        self._nomination.first_valid(component, now)
        if nominated or (pair.remote_nominated and not self.controlling):
            self._select(pair, now)
        elif self.controlling and self.state is IceState.CHECKING:
            self._maybe_nominate(component, now)
        # This was perhaps the last pair in checks, with a component lost.
        self._maybe_fail(now)

    def _on_pair_failed(self, pair: CandidatePair, now: float) -> None:
        if self.state is not IceState.CHECKING:
            return
        if self.controlling and self._nomination.pending(pair.component):
            self._maybe_nominate(pair.component, now)
        self._maybe_fail(now)

    def _maybe_nominate(self, component: int, now: float) -> None:
        pair = self._nomination.choose(component, now, lite=self.remote_is_lite)
        if pair is not None:
            self._checks.send_check(pair, now, nominate=True)

    def _select(self, pair: CandidatePair, now: float) -> None:
        event = self._nomination.select(pair)
        if event is None:
            return
        self._log.emit(event)
        if not self.config.ice_lite:  # lite: no consent checks (RFC 7675 §4)
            self._consent.start(pair.component, now, pair.responded_at)
        if self.state is IceState.CHECKING and len(self.selected) >= len(
            self._active_components()
        ):
            self._set_state(IceState.COMPLETED)
            self._checks.cancel_checks()
            self._log.emit(IceCompleted())
        else:
            # Another component may have run out of pairs while this one was
            # still in checks: it can never complete now.
            self._maybe_fail(now)

    def _active_components(self) -> set[int]:
        return self._list.active_components(self.components, self.remote_end)

    def _maybe_fail(self, now: float) -> None:
        if self.state is not IceState.CHECKING or not self.remote_end:
            return
        active = self._active_components()
        if active and len(self.selected) >= len(active) and self.selected:
            self._set_state(IceState.COMPLETED)
            self._log.emit(IceCompleted())
            return
        # RFC 8445 §7.2.5.4: the check list fails once no pair is left to
        # check and some component has no valid pair. While a pair is still
        # in checks it may succeed; a valid one may still be nominated (by
        # us, or by the controlling peer), unless another component is lost.
        # A controlled agent without a pair on a component may still get
        # checks from the peer there (peer-reflexive candidates): the
        # nomination timeout bounds that wait. Nor while local candidates
        # are still being gathered: one may come that works (RFC 8838 §8);
        # the check is made again once gathering ends.
        if self._gathering.state is GatherState.GATHERING:
            self._failure_deferred = True
            return
        if self._list.lost(active - set(self.selected), self._checks.patient(now)):
            self._fail(self._failure_reason())

    def _fail(self, reason: str) -> None:
        """ICE failed: stop everything but gathering, and say why."""
        self._set_state(IceState.FAILED)
        # Checks still out (on components already selected) cannot change
        # the outcome: stop them, as completion does. Consent on a component
        # already selected stops too: the agent has given up, and answers no
        # check either, so that the peer's consent expires.
        self._checks.stop(keep_gathering=True)
        self._consent.clear()
        self._checks.abandon_checks()
        self._log.emit(IceFailed(reason=reason))

    def _failure_reason(self, *, nomination: bool = False) -> str:
        checks = self._checks
        facts = FailureFacts(
            nomination_timeout=self.config.nomination_timeout if nomination else None,
            checks_received=checks.checks_received,
            checks_rejected=checks.checks_rejected,
            waiting=sorted(self._active_components() - set(self.selected)),
            any_selected=bool(self.selected),
            local_candidates=bool(self._list.endpoints),
            remote_candidates=len(self.remote_candidates),
            candidates_refused=self.stats.candidates_refused,
            relays_lost=self._relays_lost,
        )
        return failure_reason(self.pairs, facts)

    # --- roles -----------------------------------------------------------------

    def set_role(self, controlling: bool) -> None:
        """Choose the role before :meth:`connect` (aioice's
        ``ice_controlling``); :class:`~syncice.events.RoleChanged` follows if
        it changes. Once checks have started only role conflicts change it
        (RFC 8445 §7.3.1.1): later calls do nothing. An ICE-lite agent stays
        controlled (it logs the request to control, and ignores it).
        """
        if self.config.ice_lite:  # always controlled (syncice._lite)
            lite_role(self.name, bool(controlling))
        elif self.state is IceState.NEW and controlling != self.controlling:
            self._checks.switch_role(bool(controlling))

    def set_remote_lite(self, lite: bool) -> None:
        """Say whether the peer is an ICE-lite agent (``a=ice-lite``). With a
        lite peer the full agent controls (RFC 8445 §6.1.1): a controlled
        agent switches to controlling, with a
        :class:`~syncice.events.RoleChanged`. Call it before :meth:`connect`.

        :raises ValueError: if both this agent and the peer are ICE-lite
            (they cannot connect, :mod:`syncice._lite`).
        """
        if lite and self.config.ice_lite:
            raise ValueError(BOTH_LITE)
        self.remote_is_lite = bool(lite)
        if lite and not self.controlling:
            self._checks.switch_role(True)

    def authenticated_peers(self) -> dict[tuple[int, Address], int]:
        """The remote addresses whose data is accepted, each with the
        component it belongs to, keyed by ``(endpoint, address)``: those that
        proved they know our password, by a check that passed
        MESSAGE-INTEGRITY or by a signed answer to ours. The set only grows
        while the agent lives; :meth:`authenticated_count` says when."""
        return self._list.authenticated_peers()

    def authenticated_count(self) -> int:
        """How many entries :meth:`authenticated_peers` would return."""
        return self._list.authenticated_count()

    # --- closing and statistics --------------------------------------------

    def close(self, now: float | None = None) -> None:
        """Stop everything: no more checks, consent or data.

        TURN allocations are released (RFC 8656 §7: a Refresh with a zero
        lifetime) when ``now`` is given: until :attr:`releasing` turns false
        their datagrams and timers go on, and the caller keeps their
        transports open.
        """
        if now is not None:
            for relay in self._relays:
                relay.allocation.close(now)
                self._on_relay_events(relay, now)
        if self.state is IceState.CLOSED:
            return
        self._set_state(IceState.CLOSED)
        self._checks.stop(keep_gathering=False)
        self._consent.clear()
        self._outbox = []

    def route(self, component: int) -> tuple[int, Address] | None:
        """Where data for ``component`` goes: ``(endpoint, remote address)``."""
        pair = self.data_pair(component)
        if pair is None or self.state in (IceState.FAILED, IceState.CLOSED):
            return None
        return pair.endpoint, pair.remote_addr

    def pair_stats(self) -> list[PairStats]:
        """A snapshot of every pair: its checks, and the data sent and
        received on it (see :class:`~syncice._checklist.PairStats`); while
        restarting, the old generation's pairs that still carry data too."""
        return [
            PairStats(
                component=p.component,
                local=p.valid_local,
                remote=p.remote,
                state=p.state.value,
                nominated=p.nominated,
                selected=self.data_pair(p.component) is p,
                requests_sent=p.requests_sent,
                requests_received=p.requests_received,
                responses_sent=p.responses_sent,
                responses_received=p.responses_received,
                datagrams_sent=p.datagrams_sent,
                datagrams_received=p.datagrams_received,
                bytes_sent=p.bytes_sent,
                bytes_received=p.bytes_received,
                rtt=p.rtt,
            )
            for p in self.pairs + self.old_pairs()
        ]
