"""ICE restart (RFC 8445 §9, RFC 8838 §4): the verbs of
:class:`~syncice.ice.IceAgent` that start a new generation of the check list,
and the generation it replaces, kept until the new one has nominated.

Rules, in the manner of h11's ``_state.py``:

- :meth:`RestartVerbs.restart` gives the agent new local credentials
  (drawn from its ``rng`` when not given; both must differ from the old ones,
  RFC 8445 §9), a new, empty check list over the same local candidates and
  endpoints, no remote credentials and no remote candidate: the agent is
  back in ``NEW``, and the peer's new credentials and candidates come the
  usual way, then :meth:`~syncice.ice.IceAgent.connect` starts the new
  checks. Role and tie-breaker are kept.
- The peer's restart is seen the same way: new remote credentials (a new
  ``ice-ufrag``) given to an agent whose checks have started restart it
  (:meth:`~syncice.ice.IceAgent.set_remote_credentials`), with generated
  local credentials that the application then signals back.
- Until the new generation has nominated a pair on a component, data on that
  component goes on over the old selected pair (:meth:`RestartVerbs.data_pair`)
  and consent (RFC 7675) keeps running on it with the old credentials. The
  old generation answers the peer's checks that name the old ``ice-ufrag``
  (signed with the old password), so the peer's consent holds too; checks
  with the new ``ice-ufrag`` before ``connect()`` are kept as early checks.
  Once the new generation completes, the old one is dropped: a check that
  names the old ``ice-ufrag`` then gets a 401, as any unknown one does.
- The switch of a component is one assignment: its new selected pair, said
  by a :class:`~syncice.events.SelectedPairChanged`. When every component has
  switched (the agent completes), :class:`~syncice.events.RestartCompleted`
  follows. Addresses that had authenticated themselves stay authenticated,
  so data the peer still sends on the old pair is accepted after the switch.
- The old pair's consent expiring (or its TURN relay lost) before the
  switch closes the agent, as it would without a restart; a new generation
  that fails is ICE failing.
"""

from __future__ import annotations

import random
import string
from typing import TYPE_CHECKING

from ._checklist import CandidatePair, CheckList, Endpoint
from ._checks import AgentStats, Checks, Kind
from ._consent import ConsentSet
from ._ice_config import IceConfig, validate_password, validate_username
from ._ice_log import EventLog
from ._ice_states import IceState, StateMachine
from ._nomination import Nomination
from .candidate import Candidate
from .events import ConsentExpired, RestartCompleted
from .stun import Class, Message

__all__ = ["Previous", "RestartVerbs", "random_credential"]

Address = tuple[str, int]

_ICE_CHARS = string.ascii_letters + string.digits + "+/"


def random_credential(rng: random.Random, length: int) -> str:
    """``length`` random ice-chars (RFC 8839 §5.4) drawn from ``rng``."""
    return "".join(rng.choice(_ICE_CHARS) for _ in range(length))


class Previous:
    """The generation an ICE restart replaced: its check driver (which answers
    checks naming its ``ice-ufrag``), its selected pairs and their consent.
    Also the listener of that driver, which hears only consent answers.
    """

    __slots__ = ("checks", "consent", "selected", "username")

    def __init__(
        self,
        checks: Checks,
        consent: ConsentSet,
        selected: dict[int, CandidatePair],
        username: str,
    ) -> None:
        self.checks = checks
        self.consent = consent
        self.selected = selected
        self.username = username

    # --- the retired driver's listener (CheckListener) ---------------------

    def check_succeeded(self, pair: CandidatePair, nominated: bool, now: float) -> None:
        """Nothing: the old generation selects nothing more."""

    def pair_failed(self, pair: CandidatePair, now: float) -> None:
        """Nothing: the old generation cannot fail."""

    def peer_nominated(self, pair: CandidatePair, now: float) -> None:
        """Nothing: nominations count in the new generation only."""

    def gather_answered(
        self, endpoint: int, server: Address, message: Message | None
    ) -> None:
        """Never called: gathering requests moved to the new driver."""

    def consent_answered(self, pair: CandidatePair, now: float) -> None:
        """Consent on an old selected pair lasts from now (consent checks
        go on selected pairs only)."""
        self.consent.answered(pair.component, now)

    def peer_renominated(self, pair: CandidatePair, value: int) -> bool:
        """Renominations count in the new generation only."""
        return False

    # --- what it takes -------------------------------------------------------

    def takes_request(self, endpoint: int, message: Message) -> bool:
        """Whether a request is the old generation's: it names the old
        ``ice-ufrag`` on an endpoint the old generation knew."""
        username = message.attributes.get("USERNAME")
        return (
            username is not None
            and username.partition(":")[0] == self.username
            and self.checks.knows_endpoint(endpoint)
        )

    def takes_response(self, message: Message) -> bool:
        """Whether a response answers one of the old generation's requests."""
        return message.transaction_id in self.checks.requests


class RestartVerbs:
    """What :class:`~syncice.ice.IceAgent` does for an ICE restart (a mixin
    without ``__slots__``: it replaces the agent's parts)."""

    if TYPE_CHECKING:
        config: IceConfig
        components: int
        local_username: str
        local_password: str
        remote_username: str | None
        remote_password: str | None
        remote_end: bool
        stats: AgentStats
        local_candidates: list[Candidate]
        remote_candidates: list[Candidate]
        _rng: random.Random
        _log: EventLog
        _list: CheckList
        _checks: Checks
        _nomination: Nomination
        _consent: ConsentSet
        _machine: StateMachine[IceState]
        _previous: Previous | None
        _generation: int

        @property
        def state(self) -> IceState: ...

        def _new_checks(
            self, username: str, password: str, controlling: bool
        ) -> Checks: ...

        def close(self, now: float | None = None) -> None: ...

    @property
    def generation(self) -> int:
        """How many ICE restarts this agent has made (0 before the first)."""
        return self._generation

    @property
    def restarting(self) -> bool:
        """Whether an old generation still carries data: a restart has not
        nominated on every component yet."""
        return self._previous is not None

    def restart(
        self, local_username: str | None = None, local_password: str | None = None
    ) -> None:
        """Start an ICE restart (RFC 8445 §9): new local credentials, a new
        generation of the check list over the same local candidates, back in
        ``NEW`` (see :mod:`syncice._restart` for what goes on meanwhile).

        Then set the peer's new credentials and candidates, and call
        :meth:`~syncice.ice.IceAgent.connect`.

        :param local_username: the new ``ice-ufrag`` (random if ``None``).
        :param local_password: the new ``ice-pwd`` (random if ``None``).
        :raises ValueError: on a closed agent, before the first
            :meth:`connect`, or with a credential that is malformed or not
            new.
        :raises TypeError: with a credential that is not a :class:`str`.
        """
        state = self.state
        if state is IceState.CLOSED or (state is IceState.NEW and not self._generation):
            raise ValueError(f"cannot restart an agent in state {state.value}")
        rng = self._rng
        username = validate_username(
            random_credential(rng, 4) if local_username is None else local_username
        )
        password = validate_password(
            random_credential(rng, 22) if local_password is None else local_password
        )
        if username == self.local_username or password == self.local_password:
            raise ValueError("an ICE restart needs a new username and password")
        old_list, old_checks = self._list, self._checks
        if self._previous is not None and state is not IceState.COMPLETED:
            # A restart of a restart that had not completed: the first old
            # generation still carries the data, and stays.
            listener = Previous(old_checks, ConsentSet(self.config, rng), {}, "")
        elif old_list.selected and state is not IceState.FAILED:
            self._previous = listener = Previous(
                old_checks, self._consent, old_list.selected, self.local_username
            )
        else:
            self._previous = None
            listener = Previous(old_checks, self._consent, {}, "")
        gathering = old_checks.retire(listener)
        self._list = new = CheckList(self._log, self.config.max_pairs)
        for endpoint, ep in old_list.endpoints.items():
            # Authenticated peers stay so: data may still come on old pairs.
            new.endpoints[endpoint] = Endpoint(
                ep.component, ep.candidate, {}, dict(ep.peers)
            )
        new.local_candidates.extend(old_list.local_candidates)
        self.local_candidates = new.local_candidates
        self.remote_candidates = new.remote_candidates
        checks = self._new_checks(username, password, old_checks.controlling)
        checks.tie_breaker = old_checks.tie_breaker
        checks.requests.update(gathering)
        self._checks = checks
        self._nomination = Nomination(new, self.config.nomination_wait)
        self._consent = ConsentSet(self.config, rng)
        self.local_username = username
        self.local_password = password
        self.remote_username = None
        self.remote_password = None
        self.remote_end = False
        self._generation += 1
        if state is not IceState.NEW:  # NEW: a restart before connect() again
            self._machine.to(IceState.NEW)
        self._log.info(
            "ICE restart: generation %d, %s",
            self._generation,
            "data on the old pairs until it nominates"
            if self._previous is not None
            else "no pair to keep",
        )

    def data_pair(self, component: int) -> CandidatePair | None:
        """The pair data of ``component`` goes on: the selected one, or while
        restarting the old generation's until the new one has selected."""
        pair = self._list.selected.get(component)
        if pair is None and self._previous is not None:
            return self._previous.selected.get(component)
        return pair

    def old_pairs(self) -> list[CandidatePair]:
        """The old generation's selected pairs that still carry data (while
        restarting): those of components the new one has not selected yet."""
        previous = self._previous
        if previous is None:
            return []
        selected = self._list.selected
        return [p for c, p in previous.selected.items() if c not in selected]

    def _restart_state(self, state: IceState) -> None:
        """After a change of state: a completed new generation ends the
        restart, a failed or closed one drops the old generation."""
        previous = self._previous
        if previous is None or state in (IceState.NEW, IceState.CHECKING):
            return
        self._previous = None
        if state is IceState.COMPLETED:
            self._log.emit(RestartCompleted(generation=self._generation))

    def _previous_receive(
        self, endpoint: int, message: Message, size: int, addr: Address, now: float
    ) -> bool:
        """Hand a STUN message to the old generation if it is its; whether it
        was."""
        previous = self._previous
        if previous is None:
            return False
        if message.message_class == Class.REQUEST:
            if not previous.takes_request(endpoint, message):
                return False
            previous.checks.on_request(endpoint, message, size, addr, now)
            return True
        if not previous.takes_response(message):
            return False
        previous.checks.on_response(endpoint, message, addr, now)
        return True

    def _previous_timers(self) -> list[float]:
        previous = self._previous
        if previous is None:
            return []
        return [*previous.checks.timers(), *previous.consent.timers()]

    def _previous_timer(self, now: float) -> None:
        """The old generation's consent checks, retransmissions and expiry."""
        previous = self._previous
        if previous is None:
            return
        checks = previous.checks
        checks.handle_timer(now)
        for component in self._list.selected:
            # Switched: no consent on the old pair any more.
            previous.consent.stop(component)

        def consent_check(component: int, pending: bytes | None) -> bytes:
            checks.drop(pending)
            pair = previous.selected[component]
            return checks.send_request(pair, now, kind=Kind.CONSENT)

        expired = previous.consent.run(now, consent_check)
        if expired is not None:
            self._log.emit(ConsentExpired(component=expired))
            self.close()
