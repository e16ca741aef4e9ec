"""The ICE-TCP verbs of :class:`~syncice.ice.IceAgent` (RFC 6544): enabling
TCP, registering the host TCP candidates of a listening socket, and hearing
that a pair's TCP connection ended.

A mixin, so that the agent's public verbs stay one class while ice.py keeps
its size; the rules of TCP candidates are :mod:`syncice._ice_tcp`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._checklist import CandidatePair, CheckList, PairState, canonical
from ._checks import Checks
from ._ice_states import IceState
from ._ice_tcp import tcp_candidate
from .candidate import Candidate

Address = tuple[str, int]


class TcpVerbs:
    """What :class:`~syncice.ice.IceAgent` does with ICE-TCP (no
    ``__slots__``: :attr:`tcp` is set on the agent's own dict)."""

    #: Whether remote TCP candidates are accepted (:meth:`enable_tcp`).
    tcp = False

    if TYPE_CHECKING:
        _list: CheckList
        _checks: Checks
        components: int

        @property
        def state(self) -> IceState: ...

        @property
        def selected(self) -> dict[int, CandidatePair]: ...

        def _add_local(
            self, endpoint: int, component: int, candidate: Candidate
        ) -> None: ...

    def enable_tcp(self) -> None:
        """Accept remote TCP candidates (RFC 6544). Without this call they
        are refused, as before ICE-TCP existed; call it before adding any."""
        self.tcp = True

    def add_tcp_candidates(
        self,
        passive: int,
        active: int,
        component: int,
        addr: Address,
        *,
        local_pref: int = 65535,
    ) -> tuple[Candidate, Candidate]:
        """Register a listening TCP socket bound to ``addr`` as two host
        candidates (RFC 6544 §5.1): a passive one on endpoint ``passive``
        (checks arrive over connections it accepts) and an active one on
        endpoint ``active`` (checks leave over connections the caller opens,
        one per remote address); also enables TCP (:meth:`enable_tcp`).

        Whatever the agent queues for ``(endpoint, address)`` on these
        endpoints goes over the TCP connection of that pair, RFC 4571 framed.

        :returns: the passive and the active candidate.
        :raises ValueError: if an endpoint is already known or the component
            is out of range.
        """
        made = self._add_tcp_local(
            ((passive, "passive"), (active, "active")), component, addr, local_pref
        )
        return made[0], made[1]

    def add_tcp_so_candidate(
        self, endpoint: int, component: int, addr: Address, *, local_pref: int = 65535
    ) -> Candidate:
        """Register a simultaneous-open host candidate on endpoint
        ``endpoint``: the TCP port ``addr`` from which the caller opens a
        connection to each remote S-O candidate (RFC 6544 §4.1); it pairs
        with S-O candidates only. Also enables TCP (:meth:`enable_tcp`).

        :raises ValueError: if the endpoint is already known or the
            component is out of range.
        """
        return self._add_tcp_local(((endpoint, "so"),), component, addr, local_pref)[0]

    def _add_tcp_local(
        self,
        endpoints: tuple[tuple[int, str], ...],
        component: int,
        addr: Address,
        local_pref: int,
    ) -> list[Candidate]:
        """A host TCP candidate of ``addr`` on each new endpoint, with its
        ``tcptype``; enables TCP."""
        ids = [endpoint for endpoint, _ in endpoints]
        if len(set(ids)) != len(ids) or set(ids) & self._list.endpoints.keys():
            named = " and ".join(map(str, ids))
            raise ValueError(f"endpoint{'s' * (len(ids) > 1)} {named} must be new")
        if not 1 <= component <= self.components:
            raise ValueError(f"component must be 1 to {self.components}")
        self.tcp = True
        host = (canonical(addr[0]), addr[1])
        made = []
        for endpoint, tcptype in endpoints:
            candidate = tcp_candidate(component, host, tcptype, local_pref)
            self._add_local(endpoint, component, candidate)
            made.append(candidate)
        return made

    def is_authenticated(self, endpoint: int, addr: Address) -> bool:
        """Whether ``addr`` has authenticated itself on ``endpoint`` (see
        :meth:`~syncice.ice.IceAgent.authenticated_peers`), in constant time."""
        ep = self._list.endpoints.get(endpoint)
        return ep is not None and addr in ep.peers

    def tcp_closed(self, endpoint: int, addr: Address, now: float) -> bool:
        """The TCP connection of ``(endpoint, addr)`` ended (refused, reset,
        closed by the peer, or by the caller for bad framing): a check out on
        its pair fails at once (RFC 6544 §7.1), rather than at its timeout.

        :returns: whether it carried a component's selected pair (whose data
            path is gone: the caller closes the connection).
        """
        ep = self._list.endpoints.get(endpoint)
        if ep is None:
            return False
        pair = ep.pairs.get(addr)
        if pair is None:
            return False
        if pair.transaction is not None and pair.state is PairState.IN_PROGRESS:
            self._checks.drop(pair.transaction.transaction_id)
            pair.transaction = None
            pair.nominating = False
            self._checks.fail_pair(pair, now)
        return self.selected.get(pair.component) is pair
