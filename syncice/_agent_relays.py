"""The TURN verbs of :class:`~syncice.ice.IceAgent` (RFC 8445 §5.1.1.2, RFC
8656): registering allocations, their relay candidates, renewing and losing
them.

A mixin, so that the agent's public verbs stay one class while ice.py keeps
its size; the relays themselves are :class:`~syncice._relays.RelaySet`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._checklist import CandidatePair, CheckList, canonical
from ._checks import Checks
from ._ice_log import EventLog
from ._ice_states import IceState
from ._relays import Relay, RelayAllocated, RelayEnded, RelaySet, relay_candidate
from .candidate import Candidate
from .events import CandidateGathered, RelayLost
from .turn import TurnAllocation, TurnState

Address = tuple[str, int]


class RelayVerbs:
    """What :class:`~syncice.ice.IceAgent` does with TURN relays."""

    __slots__ = ()

    if TYPE_CHECKING:
        _relays: RelaySet
        _list: CheckList
        _log: EventLog
        _checks: Checks
        _relays_lost: list[str]
        components: int
        remote_candidates: list[Candidate]

        @property
        def state(self) -> IceState: ...

        @property
        def controlling(self) -> bool: ...

        @property
        def selected(self) -> dict[int, CandidatePair]: ...

        def _taken(self) -> set[int]: ...

        def _maybe_gathered(self, now: float | None = None) -> None: ...

        def close(self, now: float | None = None) -> None: ...

        def old_pairs(self) -> list[CandidatePair]: ...

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
        taken = self._taken()
        if transport in taken or endpoint in taken or transport == endpoint:
            raise ValueError("endpoint already added")
        if not 1 <= component <= self.components:
            raise ValueError(f"component must be 1 to {self.components}")
        self._relays.add(transport, endpoint, component, allocation)

    def relay(self, endpoint: int) -> tuple[int, TurnAllocation] | None:
        """The transport endpoint and allocation behind a relay endpoint, or
        ``None`` when ``endpoint`` is not a relay."""
        relay = self._relays.by_endpoint(endpoint)
        return None if relay is None else (relay.transport, relay.allocation)

    @property
    def relay_count(self) -> int:
        """How many TURN allocations were registered with :meth:`add_relay`."""
        return len(self._relays)

    @property
    def releasing(self) -> bool:
        """Whether a TURN allocation is still being released after
        :meth:`close` (its transport must stay open until then)."""
        return self._relays.releasing

    def _on_relay_events(self, relay: Relay, now: float) -> None:
        closed = self.state is IceState.CLOSED
        for outcome in self._relays.events(relay, closed=closed):
            if isinstance(outcome, RelayAllocated):
                self._add_relay_candidate(outcome, now)
            else:
                self._lose_relay(outcome, now)
        self._maybe_gathered(now)

    def _add_relay_candidate(self, outcome: RelayAllocated, now: float) -> None:
        if self.state is IceState.CLOSED:
            return
        relay = outcome.relay
        candidate = relay_candidate(outcome)
        self._list.add_endpoint(relay.endpoint, relay.component, candidate)
        self._log.emit(CandidateGathered(candidate=candidate))
        for remote in self.remote_candidates:
            self._permit(relay, remote, now)
        if self.state in (IceState.CHECKING, IceState.COMPLETED):
            for remote in self.remote_candidates:
                self._list.pair(relay.endpoint, remote, self.controlling)
            self._list.sort()

    def _permit(self, relay: Relay, remote: Candidate, now: float) -> None:
        """Let the peer's checks in through the relay before ours go out: a
        permission and a channel for every remote candidate it may pair with
        (so that a peer that checks first is not dropped by the server)."""
        ep = self._list.endpoints.get(relay.endpoint)
        if ep is not None and ep.candidate.can_pair_with(remote):
            relay.allocation.permit((canonical(remote.host), remote.port), now)

    def _lose_relay(self, outcome: RelayEnded, now: float) -> None:
        relay, reason = outcome
        ep = self._list.endpoints.get(relay.endpoint)
        if not self._relays.mark_lost(relay, reason) or ep is None:
            return
        # The relay candidate is gone: so are its pairs, and the old pair of
        # an ICE restart on it, which carries the data until the switch.
        pairs = list(ep.pairs.values())
        for old in self.old_pairs():
            if old.endpoint == relay.endpoint and self.state is not IceState.CLOSED:
                self._log.emit(RelayLost(component=old.component, reason=reason))
                self.close()
                return
        if pairs:
            self._relays_lost.append(reason)
        for pair in pairs:
            self._checks.drop(pair.transaction_id)
            pair.transaction = None
            if self.selected.get(pair.component) is pair:
                if self.state is not IceState.CLOSED:
                    self._log.emit(RelayLost(component=pair.component, reason=reason))
                    self.close()
                return
            pair.nominating = False
            pair.valid = False
            self._checks.fail_pair(pair, now)

    def transports_to_renew(self) -> list[int]:
        """Transport endpoints whose allocation the server refused with 437
        (Allocation Mismatch): the caller opens another socket and hands it
        to :meth:`renew_transport`. Gathering waits for that."""
        return self._relays.take_renew()

    def transports_to_reconnect(self) -> list[int]:
        """Stream transports (TCP, TLS) whose server redirected us
        (ALTERNATE-SERVER): the caller closes the stream and connects a new
        one, under the same endpoint, to :meth:`turn_server`; the allocation
        has queued its Allocate for it."""
        return self._relays.take_reconnect()

    def turn_server(self, transport: int) -> Address:
        """Where the allocation of a transport endpoint sends now.

        :raises KeyError: if ``transport`` is not a TURN transport.
        """
        return self._relays.server(transport)

    def renew_transport(
        self, old: int, new: int, allocation: TurnAllocation, now: float
    ) -> None:
        """Retry a relay from the new transport endpoint ``new``, with a new
        allocation, instead of ``old`` (see :meth:`transports_to_renew`).

        :raises ValueError: if ``new`` is already known or ``old`` is not a
            transport.
        """
        if self._relays.by_transport(old) is None or new in self._taken():
            raise ValueError("unknown transport or endpoint already added")
        relay = self._relays.move(old, new, allocation, now)
        self._on_relay_events(relay, now)

    def transport_lost(self, transport: int, reason: str, now: float) -> None:
        """The caller's path to a TURN server broke (a TCP or TLS connection
        refused, reset or closed): its allocation ends."""
        relay = self._relays.by_transport(transport)
        if relay is not None:
            relay.allocation.abandon(reason)
            self._on_relay_events(relay, now)
            if relay.allocation.state == TurnState.FAILED:
                # Also when it had failed already (a 437 kept for renewal).
                self._lose_relay(RelayEnded(relay, reason), now)
