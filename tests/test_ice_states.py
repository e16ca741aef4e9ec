"""The agent's states as data: every move of the tables reached by a real
scenario, and a move outside them refused (h2's ``test_state_machines.py``).

The scenarios run on :mod:`syncice.testing`'s virtual network, in virtual
time; each records the agent's states as it goes, and the moves seen over
all of them must be exactly the table's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from syncice._checklist import PAIR_TRANSITIONS, CandidatePair, PairState
from syncice._ice_states import (
    ICE_TRANSITIONS,
    IceState,
    IllegalTransitionError,
    StateMachine,
)
from syncice.candidate import Candidate
from syncice.events import PairStateChanged
from syncice.ice import IceConfig
from syncice.testing import Link, Peer, VirtualNet

Moves = set[tuple[IceState, IceState]]


def _pair_of_peers(**config: float) -> tuple[VirtualNet, Peer, Peer]:
    net = VirtualNet(seed=3)
    net.add_host("10.0.0.1")
    net.add_host("10.0.0.2")
    cfg = IceConfig(**config) if config else None  # type: ignore[arg-type]
    a = net.add_agent("a", "10.0.0.1", config=cfg)
    b = net.add_agent("b", "10.0.0.2", controlling=False, config=cfg)
    return net, a, b


class _Recorder:
    """Records every move of ``agent.state`` between calls of :meth:`see`."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.last = IceState(peer.agent.state)
        self.moves: Moves = set()

    def see(self) -> None:
        now = IceState(self.peer.agent.state)
        if now is not self.last:
            self.moves.add((self.last, now))
            self.last = now


def _run(net: VirtualNet, rec: _Recorder, until: float) -> None:
    """Run the network, looking at the agent's state at every step."""

    def look() -> bool:
        rec.see()
        return False

    net.run(until, stop=look)
    rec.see()


def connect_then_watch() -> Moves:
    net, a, b = _pair_of_peers()
    net.gather(a, b)
    net.exchange(a, b)
    rec = _Recorder(a)
    a.agent.connect(net.now)
    rec.see()
    b.agent.connect(net.now)
    _run(net, rec, net.now + 10.0)
    assert a.agent.state == "completed"
    a.agent.close(net.now)
    rec.see()
    return rec.moves


def consent_lost_closes() -> Moves:
    net, a, b = _pair_of_peers(consent_interval=1.0, consent_timeout=3.0)
    assert net.connect(a, b).connected
    rec = _Recorder(a)
    net.set_link("10.0.0.2", Link(loss=1.0))
    _run(net, rec, net.now + 10.0)
    assert a.agent.state == "closed"
    return rec.moves


def checking_fails_then_closes() -> Moves:
    # A controlled agent with no remote candidate waits nomination_timeout
    # for peer-reflexive ones, then fails.
    net, _, b = _pair_of_peers()
    agent = b.agent
    agent.set_remote_credentials("peer", "p" * 22)
    agent.add_remote_candidate(None, net.now)
    rec = _Recorder(b)
    agent.connect(net.now)
    rec.see()
    _run(net, rec, net.now + 60.0)
    assert agent.state == "failed"
    agent.close()
    rec.see()
    return rec.moves


def checking_closed() -> Moves:
    net, a, _ = _pair_of_peers()
    a.agent.set_remote_credentials("peer", "p" * 22)
    rec = _Recorder(a)
    a.agent.connect(net.now)
    rec.see()
    a.agent.close()
    rec.see()
    return rec.moves


def new_closed() -> Moves:
    _, a, _ = _pair_of_peers()
    rec = _Recorder(a)
    a.agent.close()
    rec.see()
    return rec.moves


def selected_by_hand() -> Moves:
    net, a, b = _pair_of_peers()
    remote = b.agent.local_candidates[0]
    a.agent.add_remote_candidate(remote, net.now)
    rec = _Recorder(a)
    a.agent.set_selected_pair(
        1, a.agent.local_candidates[0].foundation, remote.foundation
    )
    rec.see()
    return rec.moves


def restarts() -> Moves:
    # An ICE restart (RFC 8445 §9) from completed, from checking and from
    # failed: each goes back to new.
    net, a, b = _pair_of_peers()
    assert net.connect(a, b).connected
    rec = _Recorder(a)
    a.agent.restart()
    rec.see()
    a.agent.set_remote_credentials("peer", "p" * 22)
    a.agent.connect(net.now)
    rec.see()
    a.agent.restart()
    rec.see()
    net, _, b = _pair_of_peers()
    b.agent.set_remote_credentials("peer", "p" * 22)
    b.agent.add_remote_candidate(None, net.now)
    b.agent.connect(net.now)
    net.run(net.now + 60.0)
    failed = _Recorder(b)
    assert b.agent.state == "failed"
    b.agent.restart()
    failed.see()
    return rec.moves | failed.moves


SCENARIOS: list[Callable[[], Moves]] = [
    connect_then_watch,
    consent_lost_closes,
    checking_fails_then_closes,
    checking_closed,
    new_closed,
    selected_by_hand,
    restarts,
]


def test_every_move_of_the_table_is_reached_and_no_other() -> None:
    allowed = {(old, new) for old, news in ICE_TRANSITIONS.items() for new in news}
    seen: Moves = set()
    for scenario in SCENARIOS:
        moves = scenario()
        assert moves, scenario.__name__
        seen |= moves
    assert seen == allowed


def test_a_move_outside_the_table_raises() -> None:
    allowed = {(old, new) for old, news in ICE_TRANSITIONS.items() for new in news}
    for old, new in itertools.product(IceState, IceState):
        machine = StateMachine(old, ICE_TRANSITIONS)
        if (old, new) in allowed:
            assert machine.to(new) is old
            assert machine.state is new
        else:
            with pytest.raises(IllegalTransitionError, match=f"{old.value} -> "):
                machine.to(new)
            assert machine.state is old


def test_the_illegal_move_is_an_internal_error() -> None:
    assert issubclass(IllegalTransitionError, RuntimeError)
    with pytest.raises(RuntimeError):
        StateMachine(IceState.CLOSED, ICE_TRANSITIONS).to(IceState.CHECKING)


def test_states_compare_and_print_as_their_strings() -> None:
    assert IceState.NEW == "new"  # type: ignore[comparison-overlap]
    assert IceState("checking") is IceState.CHECKING
    assert str(IceState.FAILED) == "failed"
    assert f"{IceState.CLOSED}" == "closed"


# --- pair states ------------------------------------------------------------------


def _candidate(host: str, kind: str = "host") -> Candidate:
    return Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=100,
        host=host,
        port=1000,
        type=kind,
    )


def test_a_pair_move_outside_its_table_raises() -> None:
    allowed = {(old, new) for old, news in PAIR_TRANSITIONS.items() for new in news}
    for old, new in itertools.product(PairState, PairState):
        pair = CandidatePair(
            endpoint=0, local=_candidate("10.0.0.1"), remote=_candidate("10.0.0.2")
        )
        pair.state = old
        if (old, new) in allowed:
            assert pair.move_to(new) is old
        else:
            with pytest.raises(IllegalTransitionError, match="pair "):
                pair.move_to(new)
            assert pair.state is old


def _pair_moves(*peers: Peer) -> set[tuple[PairState, PairState]]:
    return {
        (PairState(e.old_state), PairState(e.new_state))
        for peer in peers
        for _, e in peer.timeline
        if isinstance(e, PairStateChanged)
    }


def test_pair_moves_seen_in_negotiations_are_in_the_table() -> None:
    allowed = {(old, new) for old, news in PAIR_TRANSITIONS.items() for new in news}
    seen: set[tuple[PairState, PairState]] = set()
    for seed, loss in ((1, 0.0), (2, 0.3), (5, 0.5)):
        net = VirtualNet(seed=seed, core=Link(loss=loss, delay=0.01))
        net.add_host("10.0.0.1")
        net.add_host("10.0.0.2")
        a = net.add_agent("a", "10.0.0.1", components=2)
        b = net.add_agent("b", "10.0.0.2", controlling=False, components=2)
        net.connect(a, b)
        seen |= _pair_moves(a, b)
    assert seen <= allowed
    # The ordinary path of a check, at least, is there.
    assert {
        (PairState.FROZEN, PairState.WAITING),
        (PairState.WAITING, PairState.IN_PROGRESS),
        (PairState.IN_PROGRESS, PairState.SUCCEEDED),
    } <= seen
