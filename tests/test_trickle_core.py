"""Local trickle in the sans-IO core (RFC 8838), in virtual time.

The agent emits each local candidate as it is gathered (host candidates at
once, server-reflexive and relay ones when their servers answer), and may
connect while gathering still runs: its checks start with the host
candidates, a server-reflexive candidate found later forms no pair (its
base's pairs cover it), and a relay candidate allocated later joins the
check list at once and can carry the connection.
"""

from __future__ import annotations

from syncice.events import (
    CandidateGathered,
    GatheringCompleted,
    IceCompleted,
    IceFailed,
    SelectedPairChanged,
)
from syncice.ice import IceConfig, IceState
from syncice.testing import Link, NatBehavior, Peer, StunServer, TurnServer, VirtualNet

#: A STUN server that never answers: nothing listens there.
SILENT = ("198.51.100.99", 3478)
GATHER_TIMEOUT = IceConfig().gather_timeout


def gathered_at(net: VirtualNet, peer: Peer) -> list[tuple[float, str]]:
    """``(time, type)`` of every local candidate the agent emitted."""
    return [
        (t, e.candidate.type)
        for t, e in net.timeline(peer)
        if isinstance(e, CandidateGathered)
    ]


def test_host_candidates_come_out_before_a_silent_stun_server_gives_up() -> None:
    net = VirtualNet(seed=1)
    net.add_host("192.0.2.1")
    a = net.add_agent("a", "192.0.2.1", stun=SILENT, components=2)
    a.agent.gather(net.now, [SILENT])
    net.flush()
    # At once: both host candidates, gathering not done.
    assert gathered_at(net, a) == [(0.0, "host"), (0.0, "host")]
    assert not a.gathered
    net.run(GATHER_TIMEOUT + 1.0, stop=lambda: a.gathered)
    assert net.first(a, GatheringCompleted) == GATHER_TIMEOUT
    assert [type(e) for e in net.events(a)] == [
        CandidateGathered,
        CandidateGathered,
        GatheringCompleted,
    ]


def gathered(peer: Peer) -> bool:
    """Whether ``peer`` has emitted GatheringCompleted (a call: read anew)."""
    return peer.gathered


def start_both(net: VirtualNet, a: Peer, b: Peer) -> None:
    """Exchange credentials and the candidates gathered so far, then connect
    both agents now (gathering still running)."""
    a.agent.set_remote_credentials(b.agent.local_username, b.agent.local_password)
    b.agent.set_remote_credentials(a.agent.local_username, a.agent.local_password)
    for x, y in ((a, b), (b, a)):
        for candidate in x.agent.local_candidates:
            y.agent.add_remote_candidate(candidate, net.now)
    a.agent.connect(net.now)
    b.agent.connect(net.now)


def test_connect_over_host_pairs_completes_while_srflx_gathering_runs() -> None:
    net = VirtualNet(seed=2, up=Link(delay=0.001), down=Link())
    net.add_host("192.0.2.1")
    net.add_host("192.0.2.2")
    a = net.add_agent("a", "192.0.2.1", stun=SILENT)
    b = net.add_agent("b", "192.0.2.2", stun=SILENT, controlling=False)
    a.agent.gather(net.now, [SILENT])
    b.agent.gather(net.now, [SILENT])
    start_both(net, a, b)
    net.run(
        GATHER_TIMEOUT,
        stop=lambda: a.state == IceState.COMPLETED and b.state == IceState.COMPLETED,
    )
    assert a.state == IceState.COMPLETED
    assert b.state == IceState.COMPLETED
    done = max(net.first(a, IceCompleted), net.first(b, IceCompleted))
    assert done < 0.1  # a few round trips of 1 ms, not the gather bound
    assert not a.gathered
    assert not b.gathered
    # Data flows before gathering ends.
    assert a.send(b"early")
    net.run(net.now + 0.01)
    assert net.data(b) == [(b"early", 1)]
    assert not a.gathered
    # Gathering ends at its bound and changes nothing.
    net.run(GATHER_TIMEOUT + 1.0, stop=lambda: a.gathered and b.gathered)
    assert net.first(a, GatheringCompleted) == GATHER_TIMEOUT
    assert a.state == IceState.COMPLETED
    assert [type(e) for e in net.events(a)].count(SelectedPairChanged) == 1


def test_a_srflx_candidate_found_during_checks_forms_no_pair() -> None:
    # The STUN server answers late: its link takes 0.2 s each way.
    net = VirtualNet(seed=3, up=Link(delay=0.001), down=Link())
    net.add_host("198.51.100.1", link=Link(delay=0.2))
    stun = StunServer(net, ("198.51.100.1", 3478))
    nat = net.add_nat("203.0.113.1", NatBehavior.full_cone())
    net.add_host("10.0.0.1", nat=nat)
    net.add_host("192.0.2.2")
    a = net.add_agent("a", "10.0.0.1", stun=stun.addr)
    b = net.add_agent("b", "192.0.2.2", controlling=False)
    a.agent.gather(net.now, [stun.addr])
    b.agent.gather(net.now, [])
    start_both(net, a, b)
    pairs = len(a.agent.pairs)
    net.run(1.0, stop=lambda: a.gathered)
    assert a.gathered
    srflx = [(t, kind) for t, kind in gathered_at(net, a) if kind == "srflx"]
    assert len(srflx) == 1
    assert srflx[0][0] >= 0.4
    assert a.state in (IceState.CHECKING, IceState.COMPLETED)
    # Its base's pair covers it (RFC 8838 §10 step 4, RFC 8445 §6.1.2.4).
    assert len(a.agent.pairs) == pairs
    assert "srflx" in [c.type for c in a.agent.local_candidates]


def test_a_relay_allocated_during_checks_joins_and_carries_the_connection() -> None:
    # a is behind a NAT whose direct path to b is blocked: only a relay can
    # work. The TURN server's link is slow, so the allocation ends after
    # connect().
    net = VirtualNet(seed=4, up=Link(delay=0.001), down=Link())
    net.add_host("198.51.100.2", link=Link(delay=0.1))
    turn = TurnServer(net, ("198.51.100.2", 3478))
    nat = net.add_nat("203.0.113.1", NatBehavior.symmetric())
    net.add_host("10.0.0.1", nat=nat)
    net.add_host("192.0.2.2")
    net.filters.append(
        lambda src, dst, _: (src[0], dst[0]) != ("203.0.113.1", "192.0.2.2")
    )
    net.filters.append(
        lambda src, dst, _: (src[0], dst[0]) != ("192.0.2.2", "203.0.113.1")
    )
    a = net.add_agent("a", "10.0.0.1", turn=turn)
    b = net.add_agent("b", "192.0.2.2", controlling=False)
    a.agent.gather(net.now, [])
    b.agent.gather(net.now, [])
    net.run(0.05)
    assert not gathered(a)  # the allocation is under way
    start_both(net, a, b)  # b learns a's host candidate only
    connect_at = net.now
    net.run(2.0, stop=lambda: a.gathered)
    assert gathered(a)
    [(relay_at, _)] = [x for x in gathered_at(net, a) if x[1] == "relay"]
    assert relay_at > connect_at
    relay = next(c for c in a.agent.local_candidates if c.type == "relay")
    joined = [p for p in a.agent.pairs if p.local == relay]
    assert joined  # paired with b's host candidate at once
    # b hears of it the trickle way, and the relay carries the connection.
    b.agent.add_remote_candidate(relay, net.now)
    for peer in (a, b):
        peer.agent.add_remote_candidate(None, net.now)
    net.run(
        net.now + 30.0,
        stop=lambda: a.state != IceState.CHECKING and b.state != IceState.CHECKING,
    )
    assert a.state == IceState.COMPLETED
    assert b.state == IceState.COMPLETED
    assert a.agent.selected[1].local.type == "relay"


def relay_only_pair(
    seed: int, turn_link: Link
) -> tuple[VirtualNet, Peer, Peer, TurnServer]:
    """``a`` gathers only a relay on a TURN server behind ``turn_link``;
    ``b`` is a public host. Both have started gathering."""
    net = VirtualNet(seed=seed, up=Link(delay=0.001), down=Link())
    net.add_host("198.51.100.2", link=turn_link)
    turn = TurnServer(net, ("198.51.100.2", 3478))
    net.add_host("192.0.2.1")
    net.add_host("192.0.2.2")
    a = net.add_agent("a", "192.0.2.1", turn=turn, relay_only=True)
    b = net.add_agent("b", "192.0.2.2", controlling=False)
    a.agent.gather(net.now, [])
    b.agent.gather(net.now, [])
    return net, a, b, turn


def test_no_failure_while_a_relay_is_still_being_allocated() -> None:
    # RFC 8838 §8: the peer's end-of-candidates came, a has no candidate
    # yet (relay only, the allocation under way): it must wait, not fail.
    net, a, b, _ = relay_only_pair(5, Link(delay=0.1))
    start_both(net, a, b)
    for peer in (a, b):
        peer.agent.add_remote_candidate(None, net.now)
    net.flush()
    assert a.state == IceState.CHECKING  # not failed: "no local candidate"
    net.run(2.0, stop=lambda: gathered(a))
    relay = next(c for c in a.agent.local_candidates if c.type == "relay")
    # b is never told of it (its candidates are complete): a's checks from
    # the relay reach it, a peer-reflexive candidate for b.
    assert b.state == IceState.CHECKING
    net.run(
        net.now + 30.0,
        stop=lambda: a.state != IceState.CHECKING and b.state != IceState.CHECKING,
    )
    assert a.state == IceState.COMPLETED
    assert a.agent.selected[1].local == relay


def test_a_failure_put_off_while_gathering_comes_when_gathering_ends() -> None:
    # The TURN server never answers: the allocation gives up at the gather
    # bound, and with it a's only hope of a candidate.
    net, a, b, turn = relay_only_pair(6, Link(delay=0.001))
    net.filters.append(lambda src, dst, _: dst != turn.addr)
    start_both(net, a, b)
    for peer in (a, b):
        peer.agent.add_remote_candidate(None, net.now)
    net.run(GATHER_TIMEOUT + 1.0, stop=lambda: a.state != IceState.CHECKING)
    assert a.state == IceState.FAILED
    assert net.first(a, GatheringCompleted) == GATHER_TIMEOUT
    assert net.first(a, IceFailed) == GATHER_TIMEOUT  # at once, not at patience
