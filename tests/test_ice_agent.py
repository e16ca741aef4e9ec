"""The sans-IO ICE agent (``syncice.ice``), layer 1: no sockets, threads or clocks.

Two agents talk over :class:`syncice.testing.VirtualNet` (built by
:func:`tests.helpers.exact_net`: 1 ms per datagram) in virtual time, or one
agent is fed hand-made datagrams. Times, event orders and the datagrams on the
wire are asserted exactly.
"""

from __future__ import annotations

import pytest

from syncice._checklist import PairState, pair_priority
from syncice.candidate import Candidate, candidate_foundation, candidate_priority
from syncice.events import (
    CandidateGathered,
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceEvent,
    IceFailed,
    PairStateChanged,
    RoleChanged,
    SelectedPairChanged,
)
from syncice.ice import (
    IceAgent,
    IceConfig,
    IceState,
    Transmit,
    validate_password,
    validate_username,
)
from syncice.stun import (
    Class,
    Message,
    Method,
    parse_message,
    short_term_key,
)
from syncice.testing import StunServer, VirtualNet
from tests.helpers import (
    DELAY,
    Address,
    agent_pair,
    check_request,
    connect_pair,
    drain,
    exact_net,
    exchange_candidates,
    link_down,
    make_agent,
    password_of,
)

HOST_PRIORITY = candidate_priority(1, "host", 65535)  # 2130706431
PRFLX_PRIORITY = candidate_priority(1, "prflx", 65535)  # 1862270975
A_ADDR = ("10.0.0.1", 1000)
B_ADDR = ("10.0.0.2", 2000)
STRANGER = ("192.0.2.99", 4444)
STUN_SERVER = ("198.51.100.1", 3478)


def role(agent: IceAgent) -> str:
    """The agent's role now (a function: mypy would narrow the property)."""
    return "controlling" if agent.controlling else "controlled"


def pair_states(agent: IceAgent) -> list[str]:
    return [p.state.value for p in agent.pairs]


def kinds(events: list[IceEvent]) -> list[str]:
    """Event names, with the new state of a pair and the component."""
    out = []
    for e in events:
        if isinstance(e, PairStateChanged):
            out.append(f"{e.component}:{e.new_state}")
        elif isinstance(e, SelectedPairChanged):
            out.append(f"selected:{e.component}")
        else:
            out.append(type(e).__name__)
    return out


def requests_of(
    net: VirtualNet, agent: IceAgent
) -> list[tuple[float, Address, Address, Message]]:
    return net.sent_messages(agent, Class.REQUEST)


# --- a lone agent, fed by hand ------------------------------------------------

B_CANDIDATE = Candidate("bbbb1", 1, "udp", HOST_PRIORITY, "10.0.0.2", 2000, "host")
B_CANDIDATE_2 = Candidate(
    "bbbb2", 1, "udp", HOST_PRIORITY - 256, "10.0.1.2", 2001, "host"
)


def lone(
    controlling: bool = True,
    *,
    config: IceConfig | None = None,
    remotes: tuple[Candidate, ...] = (B_CANDIDATE,),
    end: bool = True,
    connect: bool = True,
    components: int = 1,
) -> IceAgent:
    """Agent ``aaaa`` on 10.0.0.1:1000 (endpoint 0) with peer ``bbbb``'s
    credentials and ``remotes``; connected at 0 unless told otherwise, its
    output and events drained."""
    agent = make_agent(
        controlling, seed=7, ufrag="aaaa", config=config, components=components
    )
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    for remote in remotes:
        agent.add_remote_candidate(remote, 0.0)
    if end:
        agent.add_remote_candidate(None, 0.0)
    if connect:
        agent.connect(0.0)
    drain(agent)
    return agent


def peer_check(**kwargs: object) -> bytes:
    """A check from peer ``bbbb`` to agent ``aaaa``, signed with aaaa's password."""
    args: dict[str, object] = {
        "username": "aaaa:bbbb",
        "password": password_of("aaaa"),
    }
    args.update(kwargs)
    return check_request(**args)  # type: ignore[arg-type]


def sent(agent: IceAgent) -> list[tuple[Transmit, Message]]:
    return [(tx, parse_message(tx.data)) for tx in agent.datagrams_to_send()]


def answer(
    request: Message,
    *,
    mapped: Address | None = A_ADDR,
    error: tuple[int, str] | None = None,
    password: str | None = None,
) -> bytes:
    """peer bbbb's answer to ``request``: a success with XOR-MAPPED-ADDRESS,
    or an error; signed with bbbb's password unless told otherwise (``""``
    for unsigned)."""
    attributes: dict[str, object] = {}
    if error is not None:
        attributes["ERROR-CODE"] = error
    elif mapped is not None:
        attributes["XOR-MAPPED-ADDRESS"] = mapped
    message = Message(
        Method.BINDING,
        Class.ERROR if error is not None else Class.SUCCESS,
        request.transaction_id,
        attributes,  # type: ignore[arg-type]
    )
    password = password_of("bbbb") if password is None else password
    key = short_term_key(password) if password else None
    return message.encode(key=key, fingerprint=True)


def only_request(agent: IceAgent) -> tuple[Transmit, Message]:
    out = sent(agent)
    assert len(out) == 1
    assert out[0][1].message_class == Class.REQUEST
    return out[0]


# --- connecting -----------------------------------------------------------------


@pytest.mark.parametrize("a_controls", [True, False])
def test_connect_completes_after_four_link_delays(a_controls: bool) -> None:
    net, a, b = agent_pair(controlling=(a_controls, not a_controls))
    controlling, controlled = (a, b) if a_controls else (b, a)
    end = connect_pair(net, a, b)
    assert (a.state, b.state) == ("completed", "completed")
    # The first checks go out at once (t=0), the controlling agent's pair
    # succeeds at 2 ms and it nominates at once: the controlled agent selects
    # at 3 ms, the controlling one at 4 ms.
    assert end == pytest.approx(0.004)
    assert net.first(controlling, IceCompleted) == pytest.approx(0.004)
    assert net.first(controlled, IceCompleted) == pytest.approx(0.003)
    assert kinds(net.events(controlling)) == [
        "CandidateGathered",
        "1:waiting",
        "1:in-progress",
        "1:succeeded",
        "1:in-progress",  # the nomination check
        "1:succeeded",
        "selected:1",
        "IceCompleted",
    ]
    assert kinds(net.events(controlled)) == [
        "CandidateGathered",
        "1:waiting",
        "1:in-progress",
        "1:succeeded",
        "selected:1",
        "IceCompleted",
    ]
    # Regular nomination: USE-CANDIDATE only on the controlling agent's
    # second check, sent at 2 ms.
    mine = requests_of(net, controlling)
    assert [(t, "USE-CANDIDATE" in m.attributes) for t, _, _, m in mine] == [
        (0.0, False),
        (pytest.approx(0.002), True),
    ]
    assert all("ICE-CONTROLLING" in m.attributes for *_, m in mine)
    theirs = requests_of(net, controlled)
    assert [t for t, *_ in theirs] == [0.0]
    assert all(
        "USE-CANDIDATE" not in m.attributes and "ICE-CONTROLLED" in m.attributes
        for *_, m in theirs
    )
    for agent, other in ((a, b), (b, a)):
        assert agent.selected[1].nominated
        theirs_at = (other.local_candidates[0].host, other.local_candidates[0].port)
        assert agent.route(1) == (0, theirs_at)


@pytest.mark.parametrize("ta", [0.02, 0.05])
def test_ordinary_checks_are_paced_by_ta(ta: float) -> None:
    net, a, _b = agent_pair(
        config=IceConfig(ta=ta), a_hosts=("10.0.0.1", "10.0.1.1", "10.0.2.1")
    )
    # b never answers: only a's ordinary checks (and retransmissions) go out.
    net.filters.append(lambda src, dst, data: dst != B_ADDR)
    a.connect(0.0)
    net.run(0.4)
    # Three pairs of different foundations, all Waiting from the start, each
    # checked one Ta after the other.
    assert [(t, src) for t, src, _, _ in requests_of(net, a)] == [
        (0.0, ("10.0.0.1", 1000)),
        (pytest.approx(ta), ("10.0.1.1", 1001)),
        (pytest.approx(2 * ta), ("10.0.2.1", 1002)),
    ]
    assert pair_states(a) == ["in-progress"] * 3
    # Nothing is left to check: no Ta timer, only the retransmissions.
    assert a.get_timer() == pytest.approx(0.5)


def test_initial_unfreezing_by_foundation() -> None:
    # RFC 8445 §6.1.2.6: per foundation, only the pair of the lowest component
    # (then the highest priority) starts Waiting.
    net, a, _b = agent_pair(components=2, b_hosts=("10.0.0.2", "10.0.1.2"))
    net.filters.append(lambda src, dst, data: False)
    a.connect(0.0)
    by_key = {(p.component, p.remote.host): p.state for p in a.pairs}
    assert by_key == {
        (1, "10.0.0.2"): PairState.IN_PROGRESS,  # checked at once
        (1, "10.0.1.2"): PairState.WAITING,
        (2, "10.0.0.2"): PairState.FROZEN,  # same foundation as the first
        (2, "10.0.1.2"): PairState.FROZEN,
    }
    # Without a Waiting pair left, the best Frozen pair of a foundation not
    # being checked would go next: there is none while both are busy.
    net.run(0.03)
    froms = [(round(t, 3), dst[1]) for t, _, dst, _ in requests_of(net, a)]
    assert froms == [(0.0, 2000), (0.02, 2002)]


def test_initial_unfreezing_prefers_the_highest_priority_pair() -> None:
    agent = lone(
        remotes=(
            Candidate("same", 1, "udp", 1000, "10.0.0.2", 2000, "host"),
            Candidate("same", 1, "udp", 2000, "10.0.0.2", 2001, "host"),
            Candidate("other", 1, "udp", 500, "10.0.0.2", 2002, "host"),
        ),
        connect=False,
    )
    agent.connect(0.0)
    assert [(p.remote.port, p.state.value) for p in agent.pairs] == [
        (2001, "in-progress"),
        (2000, "frozen"),
        (2002, "waiting"),
    ]


def test_success_unfreezes_pairs_of_the_same_foundation() -> None:
    net, a, b = agent_pair(components=2)
    connect_pair(net, a, b)
    timeline = [
        (round(t, 3), k)
        for (t, _), k in zip(net.timeline(a), kinds(net.events(a)), strict=True)
    ]
    # Component 2's pair shares component 1's foundation: it is unfrozen when
    # that pair succeeds (2 ms), and checked at the next Ta tick.
    assert (0.002, "1:succeeded") in timeline
    assert (
        timeline.index((0.002, "2:waiting"))
        == timeline.index((0.002, "1:succeeded")) + 1
    )
    assert (0.02, "2:in-progress") in timeline


def test_frozen_pair_is_checked_when_no_pair_is_waiting() -> None:
    # RFC 8445 §6.1.4.2: when no pair is Waiting, the best Frozen pair whose
    # foundation is not being checked is checked.
    agent = lone(
        remotes=(
            Candidate("same", 1, "udp", 2000, "10.0.0.2", 2001, "host"),
            Candidate("same", 1, "udp", 1000, "10.0.0.2", 2000, "host"),
        )
    )
    first = only_request(agent)[0]
    assert first.addr == ("10.0.0.2", 2001)
    # The first pair fails (a 500 from its address): its foundation is free.
    agent.handle_timer(0.02)
    assert agent.datagrams_to_send() == []  # the foundation is still busy
    agent.receive_datagram(
        0, answer(parse_message(first.data), error=(500, "x")), first.addr, 0.021
    )
    assert pair_states(agent) == ["failed", "frozen"]
    # The last ordinary check left at 0, more than Ta ago: this one is due
    # at once (the Ta tick of 20 ms found nothing to check).
    assert agent.get_timer() == pytest.approx(0.02)
    agent.handle_timer(0.021)
    assert only_request(agent)[0].addr == ("10.0.0.2", 2000)
    assert pair_states(agent) == ["failed", "in-progress"]
    assert agent.get_timer() == pytest.approx(0.521)  # its retransmission


# --- triggered checks -------------------------------------------------------------


def test_check_from_peer_triggers_a_check_at_once() -> None:
    agent = lone(controlling=False, remotes=(B_CANDIDATE, B_CANDIDATE_2))
    assert only_request(agent)[0].addr == B_ADDR  # the ordinary check at 0
    assert pair_states(agent) == ["in-progress", "waiting"]
    # A check from the second candidate, 1 ms later, long before the next Ta
    # tick: the answer and a triggered check go out at once, in that order.
    other = ("10.0.1.2", 2001)
    agent.receive_datagram(0, peer_check(controlling=1), other, 0.001)
    (response, r), (check, c) = sent(agent)
    assert (r.message_class, response.addr) == (Class.SUCCESS, other)
    assert r.attributes["XOR-MAPPED-ADDRESS"] == other
    assert r.check_integrity(short_term_key(agent.local_password))
    assert (c.message_class, check.addr) == (Class.REQUEST, other)
    assert c.attributes["ICE-CONTROLLED"] == agent.tie_breaker
    assert pair_states(agent) == ["in-progress", "in-progress"]
    assert kinds(drain(agent)) == ["1:in-progress"]
    # Nothing is left for the Ta tick.
    agent.handle_timer(0.02)
    assert agent.datagrams_to_send() == []


def test_check_on_an_in_progress_pair_triggers_nothing() -> None:
    agent = lone(controlling=False)
    only_request(agent)
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 0.001)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]
    assert agent.pairs[0].requests_received == 1


def test_check_on_a_failed_pair_checks_it_again() -> None:
    agent = lone(controlling=False, end=False)  # no end-of-candidates: no failure
    _tx, request = only_request(agent)
    agent.receive_datagram(0, answer(request, error=(500, "x")), B_ADDR, 0.001)
    assert pair_states(agent) == ["failed"]
    drain(agent)
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 0.002)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS, Class.REQUEST]
    assert kinds(drain(agent)) == ["1:waiting", "1:in-progress"]


def test_check_on_a_succeeded_pair_triggers_nothing() -> None:
    net, a, b = agent_pair(
        config=IceConfig(nomination_wait=10.0, nomination_timeout=20.0)
    )
    net.filters.append(
        lambda src, dst, data: (
            "USE-CANDIDATE" not in parse_message(data).attributes
            if data[:2] == b"\x00\x01"
            else True
        )
    )
    connect_pair(net, a, b, until=1.0)
    assert pair_states(b) == ["succeeded"]
    before = len(requests_of(net, b))
    b.receive_datagram(
        0,
        check_request(
            username="bbbb:aaaa",
            password=password_of("bbbb"),
            controlling=a.tie_breaker,
        ),
        A_ADDR,
        net.now,
    )
    assert [m.message_class for _, m in sent(b)] == [Class.SUCCESS]
    assert len(requests_of(net, b)) == before


# --- pair priority and the check list ----------------------------------------------


def test_pair_priority_formula() -> None:
    # RFC 8445 §6.1.2.3: 2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0).
    g, d = 2130706431, 1694498815
    assert pair_priority(g, d) == 2**32 * d + 2 * g + 1
    assert pair_priority(d, g) == 2**32 * d + 2 * g
    assert pair_priority(g, g) == 2**32 * g + 2 * g
    assert pair_priority(1, 2) == 2**32 + 4


def test_both_agents_compute_the_same_pair_priorities() -> None:
    net = exact_net()
    a = make_agent(True, seed=1, ufrag="aaaa")
    b = make_agent(False, seed=2, ufrag="bbbb")
    net.attach(a)
    net.attach(b)
    for i, pref in enumerate((65535, 30000, 100)):
        net.peer(a).add_host(i, 1, (f"10.0.{i}.1", 1000 + i), local_pref=pref)
    for i, pref in enumerate((50000, 200)):
        net.peer(b).add_host(i, 1, (f"10.0.{i}.2", 2000 + i), local_pref=pref)
    a.set_remote_credentials("bbbb", password_of("bbbb"))
    b.set_remote_credentials("aaaa", password_of("aaaa"))
    exchange_candidates(net, a, b)
    a.connect(0.0)
    b.connect(0.0)
    g = [c.priority for c in a.local_candidates]
    d = [c.priority for c in b.local_candidates]
    expected = sorted((pair_priority(gi, dj) for gi in g for dj in d), reverse=True)
    assert [p.priority for p in a.pairs] == expected
    assert [p.priority for p in b.pairs] == expected
    # The same pair has the same priority on both sides.
    for pa, pb in zip(a.pairs, b.pairs, strict=True):
        assert (pa.local.host, pa.remote.host) == (pb.remote.host, pb.local.host)


def test_srflx_candidates_never_form_pairs() -> None:
    # RFC 8445 §6.1.2.4: a server-reflexive local candidate is redundant with
    # the host candidate of its base, so checks leave from hosts only.
    net, a, b = agent_pair(exchange=False)
    net.add_static_nat(A_ADDR, ("203.0.113.1", 61000))
    StunServer(net, STUN_SERVER)
    a.gather(0.0, [STUN_SERVER])
    net.run(0.01)
    assert [c.type for c in a.local_candidates] == ["host", "srflx"]
    exchange_candidates(net, a, b)
    a.connect(net.now)
    assert [(p.local.type, p.remote.type) for p in a.pairs] == [("host", "host")]
    # b pairs with both of a's candidates.
    b.connect(net.now)
    assert sorted(p.remote.type for p in b.pairs) == ["host", "srflx"]


# --- several components ---------------------------------------------------------------


def test_two_components_both_selected_and_completed_once() -> None:
    net, a, b = agent_pair(components=2)
    end = connect_pair(net, a, b)
    # Component 2 is unfrozen by component 1's success and checked at the
    # next Ta tick (20 ms); nominated at 22 ms, selected at 24 ms.
    assert end == pytest.approx(0.024)
    for agent in (a, b):
        assert agent.state == "completed"
        assert sorted(agent.selected) == [1, 2]
        events = net.events(agent)
        assert [type(e) for e in events].count(IceCompleted) == 1
        assert type(events[-1]) is IceCompleted
        selected = [e.component for e in events if isinstance(e, SelectedPairChanged)]
        assert selected == [1, 2]
        assert agent.route(1) is not None
        assert agent.route(2) is not None
    assert a.selected[2].local.port == 1001
    assert a.selected[2].remote.port == 2001
    assert net.first(a, IceCompleted) == pytest.approx(0.024)
    assert net.first(b, IceCompleted) == pytest.approx(0.023)


# --- role conflicts (RFC 8445 §7.3.1.1, §7.2.5.1) -------------------------------------


def role_conflict(
    controlling: bool, a_tie: int, b_tie: int
) -> tuple[VirtualNet, IceAgent, IceAgent]:
    """Both agents in the same role; a checks first, b connects at 10 ms."""
    net, a, b = agent_pair(controlling=(controlling, controlling))
    a.tie_breaker, b.tie_breaker = a_tie, b_tie
    a.connect(0.0)
    net.run(0.01)
    b.connect(net.now)
    net.run(1.0, stop=lambda: a.state != "checking" and b.state != "checking")
    assert (a.state, b.state) == ("completed", "completed")
    assert a.selected[1].remote.port == 2000
    assert b.selected[1].remote.port == 1000
    return net, a, b


@pytest.mark.parametrize("controlling", [True, False])
def test_role_conflict_487_path(controlling: bool) -> None:
    # b wins the tie-break (larger tie-breaker when both are controlling,
    # smaller when both are controlled): it answers a's check with a 487, and
    # a takes the other role and checks again at once.
    ties = (5, 10) if controlling else (10, 5)
    net, a, b = role_conflict(controlling, *ties)
    assert a.controlling is not controlling
    assert b.controlling is controlling
    changes = [(t, e) for t, e in net.timeline(a) if isinstance(e, RoleChanged)]
    assert [e for _, e in changes] == [RoleChanged(controlling=not controlling)]
    assert [t for t, _ in changes] == [pytest.approx(0.002)]
    assert not any(isinstance(e, RoleChanged) for e in net.events(b))
    (t, _, _, error), *_ = net.sent_messages(b, Class.ERROR)
    assert t == pytest.approx(0.001)
    assert error.error_code == 487
    assert error.check_integrity(short_term_key(b.local_password))
    first, second = requests_of(net, a)[:2]
    mine = "ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"
    theirs = "ICE-CONTROLLED" if controlling else "ICE-CONTROLLING"
    assert first[0] == 0.0
    assert mine in first[3].attributes
    assert second[0] == pytest.approx(0.002)
    assert second[3].attributes.get(theirs) == a.tie_breaker


@pytest.mark.parametrize("controlling", [True, False])
def test_role_conflict_switch_path(controlling: bool) -> None:
    # a wins: b switches role when a's check arrives, and answers it.
    ties = (10, 5) if controlling else (5, 10)
    net, a, b = role_conflict(controlling, *ties)
    assert a.controlling is controlling
    assert b.controlling is not controlling
    changes = [(t, e) for t, e in net.timeline(b) if isinstance(e, RoleChanged)]
    assert [e for _, e in changes] == [RoleChanged(controlling=not controlling)]
    assert [t for t, _ in changes] == [pytest.approx(0.001)]
    assert not any(isinstance(e, RoleChanged) for e in net.events(a))
    assert net.sent_messages(b, Class.ERROR) == []


def test_role_conflict_when_both_connect_at_once() -> None:
    net, a, b = agent_pair(controlling=(True, True))
    a.tie_breaker, b.tie_breaker = 5, 10
    end = connect_pair(net, a, b)
    # b answers a's check with a 487; a, with the lower tie-breaker, also
    # switched when b's check arrived, so the 487 only makes it check again.
    assert (a.controlling, b.controlling) == (False, True)
    assert [e for e in net.events(a) if isinstance(e, RoleChanged)] == [
        RoleChanged(controlling=False)
    ]
    assert net.first(a, RoleChanged) == pytest.approx(0.001)
    assert [m.error_code for *_, m in net.sent_messages(b, Class.ERROR)] == [487]
    assert end == pytest.approx(0.004)
    assert (a.state, b.state) == ("completed", "completed")


def test_role_switch_recomputes_pair_priorities() -> None:
    agent = lone(remotes=(Candidate("x", 1, "udp", 1000, "10.0.0.2", 2000, "host"),))
    local = agent.local_candidates[0].priority
    assert agent.pairs[0].priority == pair_priority(local, 1000)
    agent.receive_datagram(
        0, peer_check(controlling=agent.tie_breaker + 1), B_ADDR, 0.001
    )
    assert not agent.controlling
    assert RoleChanged(controlling=False) in drain(agent)
    assert agent.pairs[0].priority == pair_priority(1000, local)


def test_487_for_a_role_already_left_only_checks_again() -> None:
    # a switched role between sending a check and getting its 487: it keeps
    # its new role and checks again.
    agent = lone()
    _, request = only_request(agent)
    agent.receive_datagram(
        0, peer_check(controlling=agent.tie_breaker + 1), B_ADDR, 0.001
    )
    assert not agent.controlling
    drain(agent)
    agent.datagrams_to_send()
    agent.receive_datagram(
        0, answer(request, error=(487, "Role Conflict")), B_ADDR, 0.002
    )
    assert not agent.controlling
    assert [e for e in drain(agent) if isinstance(e, RoleChanged)] == []
    ((_, again),) = sent(agent)
    assert "ICE-CONTROLLED" in again.attributes


# --- peer-reflexive candidates --------------------------------------------------------


def test_remote_prflx_learnt_from_a_check() -> None:
    # a never learns b's candidates: b's check teaches it b's address as a
    # peer-reflexive candidate, with the check's PRIORITY (RFC 8445 §7.3.1.3).
    net, a, b = agent_pair(exchange=False)
    b.add_remote_candidate(a.local_candidates[0], 0.0)
    end = connect_pair(net, a, b, until=5.0)
    assert (a.state, b.state) == ("completed", "completed")
    (remote,) = a.remote_candidates
    assert (remote.type, remote.host, remote.port) == ("prflx", "10.0.0.2", 2000)
    assert remote.priority == PRFLX_PRIORITY
    assert remote.component == 1
    assert a.selected[1].remote is remote
    # a answers b's check (1 ms), sends its triggered check, which succeeds
    # (3 ms), and nominates: b selects at 4 ms, a at 5 ms.
    assert end == pytest.approx(0.005)
    assert net.first(a, IceCompleted) == pytest.approx(0.005)


def test_remote_and_local_prflx_behind_a_nat() -> None:
    # b sits behind a NAT: its checks reach a from 203.0.113.2:62000, which a
    # does not know (remote prflx), and a's answers tell b that address, which
    # is not its base (local prflx, RFC 8445 §7.2.5.3.1).
    public = ("203.0.113.2", 62000)
    net, a, b = agent_pair()
    net.add_static_nat(B_ADDR, public)
    net.filters.append(lambda src, dst, data: dst != B_ADDR)  # private: unreachable
    connect_pair(net, a, b, until=5.0)
    assert (a.state, b.state) == ("completed", "completed")
    prflx = [c for c in a.remote_candidates if c.type == "prflx"]
    assert [(c.host, c.port) for c in prflx] == [public]
    assert a.route(1) == (0, public)
    pair = b.selected[1]
    local = pair.valid_local
    assert (local.type, local.host, local.port) == ("prflx", *public)
    assert (local.related_address, local.related_port) == B_ADDR
    assert local.priority == PRFLX_PRIORITY
    assert local.foundation == candidate_foundation("prflx", "udp", "10.0.0.2")
    assert pair.local.type == "host"  # the base the checks leave from
    stats = {(s.local.type, s.remote.type): s for s in b.pair_stats()}
    assert stats[("prflx", "host")].selected
    # The selected-pair event reports the peer-reflexive candidate.
    (event,) = [e for e in net.events(b) if isinstance(e, SelectedPairChanged)]
    assert event.local == local
    # Not a candidate to signal: the local candidates are unchanged.
    assert [c.type for c in b.local_candidates] == ["host"]
    # Both agents agree on the pair.
    assert (a.selected[1].remote.host, a.selected[1].remote.port) == public
    assert (b.selected[1].remote.host, b.selected[1].remote.port) == A_ADDR


def test_local_prflx_is_reused_when_mapped_to_a_known_candidate() -> None:
    # The mapped address is one of our candidates (say a srflx gathered
    # earlier): that candidate is the valid pair's local one.
    agent = lone(end=False, connect=False)
    srflx = Candidate(
        "s", 1, "udp", 100, "203.0.113.1", 61000, "srflx", "10.0.0.1", 1000
    )
    agent.local_candidates.append(srflx)
    agent.connect(0.0)
    _, request = only_request(agent)
    agent.receive_datagram(
        0, answer(request, mapped=("203.0.113.1", 61000)), B_ADDR, 0.001
    )
    assert agent.pairs[0].valid_local is srflx
    assert agent.pairs[0].priority == pair_priority(100, HOST_PRIORITY)


def test_remote_prflx_is_bounded_by_max_remote_candidates() -> None:
    agent = lone(config=IceConfig(max_remote_candidates=2), end=False)
    agent.datagrams_to_send()
    for port in (5000, 5001, 5002):
        agent.receive_datagram(0, peer_check(controlled=1), ("192.0.2.7", port), 0.001)
    assert [(c.type, c.port) for c in agent.remote_candidates] == [
        ("host", 2000),
        ("prflx", 5000),
    ]
    assert agent.stats.candidates_refused == 2
    assert len(agent.pairs) == 2
    # Every authenticated check is still answered.
    answers = [m for _, m in sent(agent) if m.message_class == Class.SUCCESS]
    assert len(answers) == 3


def test_remote_prflx_refused_with_a_bad_priority() -> None:
    agent = lone(end=False)
    agent.datagrams_to_send()
    # RFC 8445 §5.1.2.1: a priority is 1 to 2**31 - 1; PRIORITY is 32 bits.
    for priority in (0, None, 2**31, 2**32 - 1):
        agent.receive_datagram(0, peer_check(priority=priority), STRANGER, 0.001)
    assert len(agent.remote_candidates) == 1
    assert agent.stats.candidates_refused == 4
    agent.receive_datagram(0, peer_check(priority=2**31 - 1), STRANGER, 0.002)
    assert agent.remote_candidates[-1].priority == 2**31 - 1


def test_remote_prflx_refused_when_the_check_list_is_full() -> None:
    agent = lone(config=IceConfig(max_pairs=1), end=False)
    agent.receive_datagram(0, peer_check(), STRANGER, 0.001)
    assert len(agent.pairs) == 1
    assert agent.stats.candidates_refused == 1
    # The candidate is known (and bounded), the pair is not formed.
    assert [c.type for c in agent.remote_candidates] == ["host", "prflx"]
    # Again from the same address: the candidate is known, still no pair.
    agent.receive_datagram(0, peer_check(), STRANGER, 0.002)
    assert len(agent.remote_candidates) == 2
    assert len(agent.pairs) == 1
    assert agent.stats.candidates_refused == 2


# --- checks before connect() ----------------------------------------------------------


def test_early_checks_are_answered_and_kept_until_connect() -> None:
    agent = lone(controlling=False, config=IceConfig(max_early_checks=2), connect=False)
    senders = [("192.0.2.7", 5000 + i) for i in range(3)]
    for i, addr in enumerate(senders):
        agent.receive_datagram(0, peer_check(controlling=1), addr, 0.001 * (i + 1))
        # Answered at once, although the agent is not checking yet.
        ((tx, response),) = sent(agent)
        assert (tx.addr, response.message_class) == (addr, Class.SUCCESS)
        assert response.attributes["XOR-MAPPED-ADDRESS"] == addr
    assert agent.state == "new"
    assert agent.pairs == []
    assert agent.remote_candidates == [B_CANDIDATE]
    # The oldest of three was dropped, and counted.
    assert agent.stats.early_checks_dropped == 1
    agent.connect(0.01)
    # The two kept become peer-reflexive candidates with triggered checks; the
    # ordinary check of the signalled candidate follows (Ta is not needed:
    # nothing was sent before).
    assert [c.port for c in agent.remote_candidates] == [2000, 5001, 5002]
    checks = [tx.addr for tx, m in sent(agent) if m.message_class == Class.REQUEST]
    assert checks == [senders[1], senders[2], B_ADDR]
    assert pair_states(agent) == ["in-progress"] * 3


def test_early_check_data_path_and_nomination() -> None:
    # An early check authenticates its sender at once (data is accepted), and
    # an early USE-CANDIDATE is remembered for when the pair succeeds.
    agent = lone(controlling=False, connect=False)
    agent.receive_datagram(
        0, peer_check(controlling=1, use_candidate=True), B_ADDR, 0.001
    )
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]
    assert agent.receive_datagram(0, b"hello", B_ADDR, 0.002) == (b"hello", 1)
    agent.connect(0.003)
    ((tx, request),) = sent(agent)
    assert tx.addr == B_ADDR  # one check: the triggered one
    agent.receive_datagram(0, answer(request), B_ADDR, 0.004)
    assert agent.state == "completed"
    assert kinds(drain(agent)) == [
        "1:waiting",
        "1:in-progress",
        "1:succeeded",
        "selected:1",
        "IceCompleted",
    ]


def test_no_early_check_kept_after_close_or_failure() -> None:
    agent = lone(remotes=(), end=True)
    agent.handle_timer(39.5)  # nothing came in the patience time: failed
    assert agent.state == "failed"
    agent.receive_datagram(0, peer_check(controlled=1), B_ADDR, 39.501)
    # Not even answered: a failed agent is silent (test_ice_failures.py).
    assert sent(agent) == []
    assert agent.pairs == []
    assert agent.stats.unexpected == 1


# --- authentication of requests (RFC 8445 §7.3, RFC 8489 §9.1.3) ----------------------


def assert_no_state(agent: IceAgent, pairs: int = 1, remotes: int = 1) -> None:
    assert len(agent.pairs) == pairs
    assert len(agent.remote_candidates) == remotes
    assert agent.receive_datagram(0, b"data", STRANGER, 0.5) is None


@pytest.mark.parametrize("connect", [False, True])
def test_wrong_password_gets_401_and_creates_no_state(connect: bool) -> None:
    agent = lone(connect=connect, end=False)
    agent.datagrams_to_send()
    # Authenticated, its tie-breaker would win the role conflict.
    check = peer_check(password="x" * 22, use_candidate=True, controlling=2**64 - 1)
    agent.receive_datagram(0, check, STRANGER, 0.001)
    ((tx, response),) = sent(agent)
    assert tx.addr == STRANGER
    assert response.message_class == Class.ERROR
    assert response.attributes["ERROR-CODE"] == (401, "Unauthenticated")
    assert response.integrity is None  # we cannot sign for a stranger
    assert response.has_fingerprint
    assert len(tx.data) <= len(check)
    assert agent.stats.unauthenticated == 1
    assert_no_state(agent, pairs=1 if connect else 0)
    assert role(agent) == "controlling"  # no role conflict was processed
    assert drain(agent) == []
    # Nothing was kept for connect() either.
    if not connect:
        agent.connect(0.01)
        assert [tx.addr for tx, _ in sent(agent)] == [B_ADDR]


@pytest.mark.parametrize(
    "username",
    [
        "xxxx:bbbb",  # not our ufrag
        "aaaa:cccc",  # not the peer's
        "aaaabbbb",  # no colon
        ":bbbb",
    ],
)
def test_wrong_username_gets_401(username: str) -> None:
    agent = lone()
    agent.datagrams_to_send()
    agent.receive_datagram(0, peer_check(username=username), STRANGER, 0.001)
    ((_, response),) = sent(agent)
    assert response.error_code == 401
    assert agent.stats.unauthenticated == 1
    assert_no_state(agent)


def test_peer_ufrag_is_not_checked_before_it_is_known() -> None:
    # Checks can arrive before the answer that carries the peer's ufrag.
    agent = make_agent(False, seed=1, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.receive_datagram(0, peer_check(username="aaaa:zzzz"), STRANGER, 0.001)
    ((_, response),) = sent(agent)
    assert response.message_class == Class.SUCCESS
    assert agent.receive_datagram(0, b"x", STRANGER, 0.002) == (b"x", 1)


def test_missing_username_gets_400() -> None:
    agent = lone()
    agent.datagrams_to_send()
    message = Message(
        Method.BINDING, Class.REQUEST, bytes(12), {"PRIORITY": 1, "ICE-CONTROLLED": 1}
    )
    data = message.encode(key=short_term_key(agent.local_password), fingerprint=True)
    agent.receive_datagram(0, data, STRANGER, 0.001)
    ((_, response),) = sent(agent)
    assert response.attributes["ERROR-CODE"] == (400, "Bad Request")
    assert response.integrity is None
    assert agent.stats.unauthenticated == 1
    assert_no_state(agent)


def test_missing_message_integrity_gets_400() -> None:
    agent = lone()
    agent.datagrams_to_send()
    agent.receive_datagram(0, peer_check(sign=False), STRANGER, 0.001)
    ((_, response),) = sent(agent)
    assert response.error_code == 400
    assert_no_state(agent)


def test_error_response_is_never_larger_than_the_request() -> None:
    agent = lone()
    agent.datagrams_to_send()
    # A bare 20-byte Binding request: a 400 would take 48 bytes.
    bare = Message(Method.BINDING, Class.REQUEST, bytes(12)).encode()
    assert len(bare) == 20
    agent.receive_datagram(0, bare, STRANGER, 0.001)
    assert agent.datagrams_to_send() == []
    assert agent.stats.error_responses_suppressed == 1
    assert agent.stats.unauthenticated == 1
    # One 4 bytes short of the answer's size is not answered either; one of
    # exactly its size is.
    reply = Message(
        Method.BINDING, Class.ERROR, bytes(12), {"ERROR-CODE": (400, "Bad Request")}
    ).encode(fingerprint=True)
    assert len(reply) == 48
    for size, answered in ((44, False), (48, True)):
        request = Message(
            Method.BINDING, Class.REQUEST, bytes(12), {"SOFTWARE": "x" * (size - 24)}
        ).encode()
        assert len(request) == size
        agent.receive_datagram(0, request, STRANGER, 0.002)
        assert [tx.data for tx in agent.datagrams_to_send()] == (
            [reply] if answered else []
        )
    assert agent.stats.error_responses_suppressed == 2


def test_non_binding_request_gets_400() -> None:
    agent = lone()
    agent.datagrams_to_send()
    message = Message(
        Method.ALLOCATE, Class.REQUEST, bytes(12), {"USERNAME": "aaaa:bbbb"}
    )
    data = message.encode(key=short_term_key(agent.local_password), fingerprint=True)
    agent.receive_datagram(0, data, STRANGER, 0.001)
    ((_, response),) = sent(agent)
    assert (response.method, response.error_code) == (Method.ALLOCATE, 400)
    assert_no_state(agent)


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    agent = lone()
    agent.datagrams_to_send()
    check = peer_check(extra=[(0x0031, b"abcd"), (0x8031, b"opt!"), (0x0032, b"")])
    agent.receive_datagram(0, check, STRANGER, 0.001)
    ((_, response),) = sent(agent)
    assert response.attributes["ERROR-CODE"] == (420, "Unknown Attribute")
    assert response.attributes["UNKNOWN-ATTRIBUTES"] == (0x0031, 0x0032)
    # The sender authenticated: the answer is signed.
    assert response.check_integrity(short_term_key(agent.local_password))
    assert_no_state(agent)
    # An unknown comprehension-optional attribute is ignored.
    agent.receive_datagram(0, peer_check(extra=[(0x8031, b"opt!")]), B_ADDR, 0.002)
    ((_, response),) = sent(agent)
    assert response.message_class == Class.SUCCESS


def test_sha256_integrity_is_accepted() -> None:
    agent = lone()
    agent.datagrams_to_send()
    message = Message(
        Method.BINDING,
        Class.REQUEST,
        bytes(12),
        {"USERNAME": "aaaa:bbbb", "PRIORITY": 1, "ICE-CONTROLLED": 1},
    )
    data = message.encode(
        key=short_term_key(agent.local_password), integrity="sha256", fingerprint=True
    )
    agent.receive_datagram(0, data, B_ADDR, 0.001)
    ((_, response),) = sent(agent)
    assert response.message_class == Class.SUCCESS


# --- responses to our checks ----------------------------------------------------------


def test_unauthenticated_response_is_ignored_and_counted() -> None:
    agent = lone()
    _, request = only_request(agent)
    agent.receive_datagram(0, answer(request, password="y" * 22), B_ADDR, 0.001)
    agent.receive_datagram(0, answer(request, password=""), B_ADDR, 0.001)
    assert agent.stats.unauthenticated == 2
    assert pair_states(agent) == ["in-progress"]
    assert agent.receive_datagram(0, b"data", B_ADDR, 0.002) is None
    # The transaction goes on: the genuine answer still counts.
    agent.receive_datagram(0, answer(request), B_ADDR, 0.003)
    assert agent.pairs[0].valid


def test_non_symmetric_response_fails_the_pair() -> None:
    # RFC 8445 §7.2.5.2.1: the source of the response must be where the
    # request went.
    agent = lone(end=False)
    _, request = only_request(agent)
    agent.receive_datagram(0, answer(request), ("10.0.0.2", 2001), 0.001)
    assert pair_states(agent) == ["failed"]
    assert agent.pairs[0].transaction is None
    assert agent.get_timer() is None
    # Nor does it authenticate the stranger address.
    assert agent.receive_datagram(0, b"data", ("10.0.0.2", 2001), 0.002) is None


def test_unknown_transaction_id_is_dropped() -> None:
    agent = lone()
    _, _request = only_request(agent)
    stray = Message(
        Method.BINDING, Class.SUCCESS, b"\xff" * 12, {"XOR-MAPPED-ADDRESS": A_ADDR}
    )
    agent.receive_datagram(
        0, stray.encode(key=short_term_key(password_of("bbbb"))), B_ADDR, 0.001
    )
    assert agent.stats.unexpected == 1
    assert pair_states(agent) == ["in-progress"]


def test_response_on_another_endpoint_is_dropped() -> None:
    agent = lone(connect=False)
    agent.add_host_candidate(1, 1, ("10.0.1.1", 1001))
    agent.connect(0.0)
    (tx, request), *_ = sent(agent)
    other = 1 - tx.endpoint
    agent.receive_datagram(other, answer(request), B_ADDR, 0.001)
    assert agent.stats.unexpected == 1
    assert not any(p.valid for p in agent.pairs)


@pytest.mark.parametrize("code", [400, 401])
def test_unsigned_400_or_401_from_the_peer_is_discarded(code: int) -> None:
    # RFC 8489 §9.1.5: a response without valid MESSAGE-INTEGRITY is
    # discarded as if never received, the unsigned 400 and 401 of RFC 8489
    # §9.1.3 too (anybody who saw the check could forge them).
    agent = lone(end=False)
    _, request = only_request(agent)
    unsigned = answer(request, error=(code, "x"), password="")
    agent.receive_datagram(0, unsigned, STRANGER, 0.001)
    agent.receive_datagram(0, unsigned, B_ADDR, 0.002)
    assert agent.stats.unauthenticated == 2
    assert pair_states(agent) == ["in-progress"]
    pair = agent.pairs[0]
    assert pair.responses_received == 0
    # Only the one from where the check went counts, for the failure reason.
    assert pair.faults.rejected == {code: 1}
    transaction = pair.transaction
    assert transaction is not None
    assert transaction.discarded == 1
    # The retransmissions go on, and the genuine answer still counts.
    agent.handle_timer(0.5)
    assert [m.transaction_id for _, m in sent(agent)] == [request.transaction_id]
    agent.receive_datagram(0, answer(request), B_ADDR, 0.501)
    assert pair.valid
    assert pair.faults.rejected == {}  # moot once it succeeded


@pytest.mark.parametrize(
    "reply",
    [
        {"error": (500, "Server Error")},  # any other (signed) error
        {"mapped": None},  # a success without XOR-MAPPED-ADDRESS
    ],
)
def test_other_failed_responses_fail_the_pair(reply: dict[str, object]) -> None:
    agent = lone(end=False)
    _, request = only_request(agent)
    agent.receive_datagram(0, answer(request, **reply), B_ADDR, 0.001)  # type: ignore[arg-type]
    assert pair_states(agent) == ["failed"]
    assert agent.state == "checking"  # no end-of-candidates yet


def test_487_switches_role_and_checks_again_at_once() -> None:
    agent = lone()
    _, request = only_request(agent)
    assert "ICE-CONTROLLING" in request.attributes
    agent.receive_datagram(
        0, answer(request, error=(487, "Role Conflict")), B_ADDR, 0.001
    )
    assert not agent.controlling
    assert kinds(drain(agent)) == ["RoleChanged", "1:waiting", "1:in-progress"]
    ((tx, again),) = sent(agent)
    assert tx.addr == B_ADDR
    assert again.attributes["ICE-CONTROLLED"] == agent.tie_breaker
    assert again.transaction_id != request.transaction_id
    assert agent.pairs[0].requests_sent == 2


# --- failure --------------------------------------------------------------------------


def test_lost_checks_fail_the_pair_at_the_rfc_time() -> None:
    # Every datagram is lost: the check is sent at 0, 0.5, 1.5 and 3.5 s, then
    # every 2 s (the cap) until 31.5 s, and times out 8 s later at 39.5 s
    # (RFC 8489 §6.2.1's bound, with Rc 18 and the interval capped); with
    # end-of-candidates, that is when ICE fails. (The controlled agent waits
    # so long here only as its nomination timeout is longer.)
    net, a, b = agent_pair(config=IceConfig(nomination_timeout=60.0))
    link_down(net)
    connect_pair(net, a, b)
    for agent in (a, b):
        assert agent.state == "failed"
        assert [t for t, *_ in requests_of(net, agent)] == [
            0.0,
            0.5,
            *(1.5 + 2.0 * i for i in range(16)),
        ]
        assert requests_of(net, agent)[-1][0] == 31.5
        assert net.timeline(agent)[-2:] == [
            (
                39.5,
                PairStateChanged(
                    component=1,
                    local=agent.local_candidates[0],
                    remote=agent.remote_candidates[0],
                    old_state="in-progress",
                    new_state="failed",
                ),
            ),
            (
                39.5,
                IceFailed(reason="no response to 1 check, sent 18 times (timeout)"),
            ),
        ]
        assert agent.get_timer() is None
        assert agent.route(1) is None


def test_lost_checks_with_the_default_nomination_timeout() -> None:
    # The controlled agent hears nothing from the controlling one: it fails
    # 10 s after connect(), its check still out; the controlling one at the
    # RFC time.
    net, a, b = agent_pair()
    link_down(net)
    connect_pair(net, a, b)
    assert net.timeline(b)[-2:] == [
        (
            10.0,
            PairStateChanged(
                component=1,
                local=b.local_candidates[0],
                remote=b.remote_candidates[0],
                old_state="in-progress",
                new_state="failed",
            ),
        ),
        (
            10.0,
            IceFailed(
                reason="no nomination: no check from the controlling peer in the "
                "10 s since connect() (nomination_timeout)"
            ),
        ),
    ]
    assert [t for t, *_ in requests_of(net, b)][-1] == 9.5
    assert b.get_timer() is None
    assert net.first(a, IceFailed) == 39.5


def test_host_only_failure_time_with_several_pairs() -> None:
    # Two pairs, checked Ta apart: the last one times out 39.5 s after its
    # first send, at 39.52 s.
    config = IceConfig(nomination_timeout=60.0)
    net, a, b = agent_pair(a_hosts=("10.0.0.1", "10.0.1.1"), config=config)
    link_down(net)
    connect_pair(net, a, b)
    assert a.state == "failed"
    assert net.first(a, IceFailed) == pytest.approx(39.52)
    assert net.first(b, IceFailed) == pytest.approx(39.52)
    assert net.timeline(a)[-1][1] == IceFailed(
        reason="no response to 2 checks, sent 36 times (timeout)"
    )


def test_failure_with_a_short_schedule() -> None:
    config = IceConfig(rto=0.1, max_sends=2, final_wait=2)
    net, a, b = agent_pair(config=config)
    link_down(net)
    connect_pair(net, a, b)
    assert [t for t, *_ in requests_of(net, a)] == [0.0, 0.1]
    assert net.first(a, IceFailed) == pytest.approx(0.3)


def test_connect_without_any_remote_candidate_fails_after_patience() -> None:
    # The peer's checks may still come (RFC 8863): tests/test_ice_patience.py.
    agent = lone(remotes=(), end=True, connect=False)
    agent.connect(0.0)
    assert agent.get_timer() == 39.5
    agent.handle_timer(39.5)
    assert agent.state == "failed"
    assert drain(agent) == [IceFailed(reason="no remote candidates")]
    assert agent.get_timer() is None


# --- consent freshness (RFC 7675) -----------------------------------------------------


def consent_checks(net: VirtualNet, agent: IceAgent, after: float) -> list[float]:
    return [t for t, *_ in requests_of(net, agent) if t > after]


def test_consent_checks_every_5_s_plus_or_minus_20_percent() -> None:
    net, a, b = agent_pair()
    done = connect_pair(net, a, b)
    net.run(120.0)
    for agent in (a, b):
        assert agent.state == "completed"
        times = consent_checks(net, agent, done)
        gaps = [y - x for x, y in zip([done, *times], times, strict=False)]
        assert len(times) >= 20
        assert all(4.0 - 1e-9 <= gap <= 6.0 + 1e-9 for gap in gaps)
        assert len({round(g, 6) for g in gaps}) > 1  # jittered
        # Consent checks carry no USE-CANDIDATE.
        assert all(
            "USE-CANDIDATE" not in m.attributes
            for t, *_, m in requests_of(net, agent)
            if t > done
        )
    assert not any(isinstance(e, ConsentExpired) for e in net.events(a))
    # Every consent check was answered and counted on the selected pair.
    stats = a.pair_stats()[0]
    assert stats.responses_received == stats.requests_sent


@pytest.mark.parametrize("down_at", [0.004, 20.0, 61.3])
def test_consent_expires_30_s_after_the_last_response(down_at: float) -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    net.run(down_at)
    link_down(net)
    net.run(200.0)
    for agent, other in ((a, b), (b, a)):
        # The last authenticated response this agent got from the other.
        answers = [
            t + DELAY
            for t, _, dst, m in net.sent_messages(other, Class.SUCCESS)
            if t + DELAY <= down_at + DELAY
            and dst in {(c.host, c.port) for c in agent.local_candidates}
        ]
        last = max(answers)
        assert net.first(agent, ConsentExpired) == pytest.approx(last + 30.0, abs=1e-9)
        assert net.timeline(agent)[-1][1] == ConsentExpired(component=1)
        assert agent.state == "closed"
        assert agent.route(1) is None
        assert agent.get_timer() is None
        assert agent.datagrams_to_send() == []
        # A closed agent takes nothing.
        assert agent.receive_datagram(0, b"x", B_ADDR, 300.0) is None


def test_consent_keeps_the_connection_alive() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    net.run(120.0)
    assert (a.state, b.state) == ("completed", "completed")
    assert a.route(1) == (0, B_ADDR)
    assert b.route(1) == (0, A_ADDR)


def test_consent_survives_a_lost_response() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    net.run(3.0)
    # Lose every response for 20 s: consent is not lost (the responses to
    # the retransmissions after the outage still count).
    outage = [True]
    net.filters.append(
        lambda src, dst, data: not (outage[0] and data[:2] == b"\x01\x01")
    )
    net.run(23.0)
    outage[0] = False
    net.run(120.0)
    assert (a.state, b.state) == ("completed", "completed")


def test_consent_transaction_timeout_is_harmless() -> None:
    # A short schedule: each consent check times out before the next one.
    config = IceConfig(rto=0.1, max_sends=2, final_wait=1)
    net, a, b = agent_pair(config=config)
    connect_pair(net, a, b)
    net.filters.append(lambda src, dst, data: data[:2] != b"\x01\x01")
    net.run(29.0)
    assert a.state == "completed"
    net.run(40.0)
    assert a.state == "closed"
    assert net.first(a, ConsentExpired) == pytest.approx(30.004)


# --- nomination -----------------------------------------------------------------------


def better_pair_unreachable(
    *, lite: bool = False, config: IceConfig | None = None
) -> tuple[VirtualNet, IceAgent, IceAgent]:
    """a (controlling) has two hosts; the better one cannot reach b. b
    answers checks but never connects (an ICE-lite agent behaves so)."""
    net = exact_net()
    a = make_agent(True, seed=1, ufrag="aaaa", config=config)
    b = make_agent(False, seed=2, ufrag="bbbb", config=config)
    net.attach(a)
    net.attach(b)
    net.peer(a).add_host(0, 1, A_ADDR, local_pref=65535)
    net.peer(a).add_host(1, 1, ("10.0.1.1", 1001), local_pref=1000)
    net.peer(b).add_host(0, 1, B_ADDR)
    a.set_remote_credentials("bbbb", password_of("bbbb"))
    b.set_remote_credentials("aaaa", password_of("aaaa"))
    a.set_remote_lite(lite)
    exchange_candidates(net, a, b)
    net.filters.append(lambda src, dst, data: A_ADDR not in (src, dst))
    a.connect(0.0)
    net.run(5.0, stop=lambda: a.state != "checking")
    return net, a, b


def test_ice_lite_peer_the_full_agent_nominates_at_once() -> None:
    net, a, b = better_pair_unreachable(lite=True)
    assert a.state == "completed"
    # The second pair is checked at 20 ms and succeeds at 22 ms: against a
    # lite peer, which never checks, there is no better pair to wait for.
    assert net.first(a, IceCompleted) == pytest.approx(0.024)
    nominations = [
        t for t, *_, m in requests_of(net, a) if "USE-CANDIDATE" in m.attributes
    ]
    assert nominations == [pytest.approx(0.022)]
    assert a.selected[1].local.port == 1001
    assert requests_of(net, b) == []  # the lite side only answers
    assert b.state == "new"


@pytest.mark.parametrize("controlling", [True, False])
def test_a_lite_peer_makes_the_agent_controlling(controlling: bool) -> None:
    agent = make_agent(controlling, seed=1, ufrag="aaaa")
    agent.set_remote_lite(True)
    assert agent.remote_is_lite is True
    assert agent.controlling is True
    # RFC 8445 §6.1.1: the switch is an event only when the role changed.
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    assert events == ([] if controlling else [RoleChanged(controlling=True)])
    agent.set_remote_lite(False)
    assert (agent.remote_is_lite, agent.controlling) == (False, True)


def test_authenticated_peers_are_those_that_proved_our_password() -> None:
    _net, a, b = better_pair_unreachable(lite=False)
    assert a.state == "completed"
    # a heard signed answers from b's one address, on its second socket only
    # (the first cannot reach b); b heard a's signed checks from it.
    assert a.authenticated_peers() == {(1, B_ADDR): 1}
    assert a.authenticated_count() == 1
    assert b.authenticated_peers() == {(0, ("10.0.1.1", 1001)): 1}
    assert b.authenticated_count() == 1


def test_nomination_waits_for_a_better_pair_still_in_checks() -> None:
    net, a, _b = better_pair_unreachable(lite=False)
    assert a.state == "completed"
    # The better pair is still being checked: a waits nomination_wait (0.5 s)
    # after the first success, then nominates what it has.
    nominations = [
        t for t, *_, m in requests_of(net, a) if "USE-CANDIDATE" in m.attributes
    ]
    assert nominations == [pytest.approx(0.522)]
    assert net.first(a, IceCompleted) == pytest.approx(0.524)


def test_nomination_when_the_better_pair_fails_first() -> None:
    config = IceConfig(
        rto=0.01,
        max_sends=2,
        final_wait=2,
        nomination_wait=10.0,
        nomination_timeout=20.0,
    )
    net, a, _b = better_pair_unreachable(config=config)
    # The better pair's check times out at 0.01 + 0.02 = 0.03 s: the valid
    # pair (succeeded at 22 ms) is nominated then.
    nominations = [
        t for t, *_, m in requests_of(net, a) if "USE-CANDIDATE" in m.attributes
    ]
    assert nominations == [pytest.approx(0.03)]
    assert a.state == "completed"


def nominate_then(reply: dict[str, object], addr: Address = B_ADDR) -> IceAgent:
    """A controlling agent whose single pair succeeded and is being
    nominated; the nomination gets ``reply`` (see :func:`answer`) from ``addr``."""
    agent = lone()
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    _, nomination = only_request(agent)
    assert "USE-CANDIDATE" in nomination.attributes
    assert agent.pairs[0].nominating
    drain(agent)
    agent.receive_datagram(0, answer(nomination, **reply), addr, 0.002)  # type: ignore[arg-type]
    return agent


@pytest.mark.parametrize(
    ("reply", "addr"),
    [
        ({"error": (500, "Server Error")}, B_ADDR),
        ({"error": (401, "Unauthenticated")}, B_ADDR),  # signed, strangely
        ({}, ("10.0.0.2", 2999)),  # not symmetric
    ],
)
def test_failed_nomination_fails_the_pair(
    reply: dict[str, object], addr: Address
) -> None:
    # The nomination failed: the pair leaves the valid list, and with no
    # other pair and end-of-candidates, ICE fails at once.
    agent = nominate_then(reply, addr)
    pair = agent.pairs[0]
    assert (pair.state, pair.valid, pair.nominating) == (PairState.FAILED, False, False)
    assert agent.state == "failed"
    assert kinds(drain(agent)) == ["1:failed", "IceFailed"]
    assert agent.get_timer() is None


def test_lost_nomination_fails_the_pair() -> None:
    agent = lone()
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    only_request(agent)
    drain(agent)
    while (at := agent.get_timer()) is not None:
        agent.handle_timer(at)
    assert at is None
    assert agent.state == "failed"
    assert (agent.pairs[0].valid, agent.pairs[0].nominating) == (False, False)
    # Sent at 1 ms; times out 39.5 s later.
    assert kinds(drain(agent)) == ["1:failed", "IceFailed"]


def test_failed_nomination_moves_on_to_another_valid_pair() -> None:
    agent = lone(remotes=(B_CANDIDATE, B_CANDIDATE_2))
    tx1, check1 = only_request(agent)
    agent.handle_timer(0.02)
    tx2, check2 = only_request(agent)
    assert (tx1.addr, tx2.addr) == (B_ADDR, ("10.0.1.2", 2001))
    agent.receive_datagram(0, answer(check2), tx2.addr, 0.021)
    assert agent.datagrams_to_send() == []  # the better pair is in checks
    agent.receive_datagram(0, answer(check1), tx1.addr, 0.022)
    tx, nomination = only_request(agent)
    assert tx.addr == B_ADDR
    assert "USE-CANDIDATE" in nomination.attributes
    agent.receive_datagram(0, answer(nomination, error=(500, "x")), B_ADDR, 0.023)
    tx, nomination = only_request(agent)
    assert tx.addr == tx2.addr
    assert "USE-CANDIDATE" in nomination.attributes
    agent.receive_datagram(0, answer(nomination), tx2.addr, 0.024)
    assert agent.state == "completed"
    assert agent.route(1) == (0, tx2.addr)


# --- trickle ICE (RFC 8838) -----------------------------------------------------------


def test_trickled_candidates_join_the_check_list_waiting() -> None:
    net, a, b = agent_pair(exchange=False)
    connect_pair(net, a, b, until=1.0)
    # Without candidates (and no end-of-candidates), nothing fails.
    assert (a.state, b.state) == ("checking", "checking")
    assert a.get_timer() is None
    a.add_remote_candidate(b.local_candidates[0], net.now)
    # RFC 8838 §11: the new pair's foundation is not being checked: Waiting,
    # and checked at once (the last ordinary check is more than Ta ago).
    assert pair_states(a) == ["waiting"]
    timer = a.get_timer()
    assert timer is not None
    assert timer <= net.now
    b.add_remote_candidate(a.local_candidates[0], net.now)
    net.run(2.0, stop=lambda: a.state != "checking" and b.state != "checking")
    assert (a.state, b.state) == ("completed", "completed")
    assert requests_of(net, a)[0][0] == 1.0
    assert net.first(a, IceCompleted) == pytest.approx(1.004)


def test_trickled_pair_of_a_busy_foundation_starts_frozen() -> None:
    agent = lone(remotes=(), end=False)
    agent.add_remote_candidate(B_CANDIDATE, 0.0)
    agent.handle_timer(0.0)
    assert pair_states(agent) == ["in-progress"]
    same = Candidate("bbbb1", 1, "udp", 1000, "10.0.0.2", 2005, "host")
    agent.add_remote_candidate(same, 0.001)
    assert pair_states(agent) == ["in-progress", "frozen"]


def test_no_failure_before_end_of_candidates() -> None:
    net, a, b = agent_pair(exchange=False)
    link_down(net)
    a.add_remote_candidate(b.local_candidates[0], 0.0)
    a.connect(0.0)
    net.run(100.0)
    assert pair_states(a) == ["failed"]
    assert a.state == "checking"
    assert a.get_timer() is None
    a.add_remote_candidate(None, net.now)
    assert a.state == "failed"
    assert net.timeline(a)[-1] == (
        100.0,
        IceFailed(reason="no response to 1 check, sent 18 times (timeout)"),
    )


def test_add_after_end_of_candidates_raises() -> None:
    agent = lone()
    with pytest.raises(ValueError, match="after end-of-candidates"):
        agent.add_remote_candidate(B_CANDIDATE_2, 1.0)
    with pytest.raises(ValueError, match="after end-of-candidates"):
        agent.add_remote_candidate(None, 1.0)


def test_components_without_remote_candidates_are_pruned() -> None:
    # Two components, but the peer only ever signals component 1: after its
    # end-of-candidates, component 1 alone completes ICE.
    net, a, b = agent_pair(components=2, exchange=False)
    for x, y in ((a, b), (b, a)):
        y.add_remote_candidate(x.local_candidates[0], 0.0)
        y.add_remote_candidate(None, 0.0)
    end = connect_pair(net, a, b)
    assert (a.state, b.state) == ("completed", "completed")
    assert end == pytest.approx(0.004)
    assert sorted(a.selected) == [1]
    assert a.route(2) is None


def test_end_of_candidates_after_the_only_signalled_component_completed() -> None:
    net, a, b = agent_pair(components=2, exchange=False)
    for x, y in ((a, b), (b, a)):
        y.add_remote_candidate(x.local_candidates[0], 0.0)
    connect_pair(net, a, b, until=1.0)
    # Component 1 is selected, component 2 waits for candidates.
    assert (a.state, sorted(a.selected)) == ("checking", [1])
    assert (b.state, sorted(b.selected)) == ("checking", [1])
    a.add_remote_candidate(None, 1.0)
    assert a.state == "completed"
    assert kinds(drain(a)) == ["IceCompleted"]


def test_end_of_candidates_without_any_candidate_keeps_every_component() -> None:
    agent = lone(remotes=(), end=False, components=2)
    agent.add_remote_candidate(None, 1.0)
    assert agent.state == "failed"


def test_end_of_candidates_with_a_valid_pair_not_yet_nominated() -> None:
    # The controlled side has a valid pair and waits for the nomination: no
    # failure, even if the other pairs failed.
    agent = lone(controlling=False, remotes=(B_CANDIDATE, B_CANDIDATE_2), end=False)
    tx1, check1 = only_request(agent)
    agent.handle_timer(0.02)
    tx2, check2 = only_request(agent)
    agent.receive_datagram(0, answer(check1), tx1.addr, 0.021)
    agent.receive_datagram(0, answer(check2, error=(500, "x")), tx2.addr, 0.022)
    agent.add_remote_candidate(None, 0.03)
    assert agent.state == "checking"
    agent.receive_datagram(
        0, peer_check(controlling=1, use_candidate=True), B_ADDR, 0.04
    )
    assert agent.state == "completed"


def test_local_candidate_added_while_checking() -> None:
    agent = lone(end=False)
    agent.datagrams_to_send()
    agent.add_host_candidate(1, 1, ("10.0.1.1", 1001))
    assert [
        e.candidate.port for e in drain(agent) if isinstance(e, CandidateGathered)
    ] == [1001]
    assert pair_states(agent) == ["in-progress", "frozen"]
    # Its pair shares no foundation with a busy pair: checked at the Ta tick.
    agent.handle_timer(0.02)
    ((tx, _),) = sent(agent)
    assert tx.endpoint == 1


def test_remote_candidates_that_cannot_be_paired_are_refused() -> None:
    agent = lone(end=False)
    refused = [
        Candidate("t", 1, "tcp", 1, "10.0.0.2", 9, "host", tcptype="active"),
        Candidate("x", 2, "udp", 1, "10.0.0.2", 9, "host"),  # no component 2
        Candidate("y", 1, "udp", 1, "10.0.0.2", 9, "ufo"),  # unknown type
    ]
    for candidate in refused:
        agent.add_remote_candidate(candidate, 0.001)
    assert agent.stats.candidates_refused == 3
    assert agent.remote_candidates == [B_CANDIDATE]
    # The same address again is ignored (not counted).
    agent.add_remote_candidate(
        Candidate("z", 1, "udp", 5, "10.0.0.2", 2000, "host"), 0.001
    )
    assert agent.remote_candidates == [B_CANDIDATE]
    assert agent.stats.candidates_refused == 3
    # A host name or another address family is kept, but forms no pair.
    agent.add_remote_candidate(
        Candidate("m", 1, "udp", 5, "peer.local", 9, "host"), 0.001
    )
    agent.add_remote_candidate(
        Candidate("v6", 1, "udp", 5, "2001:db8::2", 9, "host"), 0.001
    )
    assert len(agent.remote_candidates) == 3
    assert len(agent.pairs) == 1


def test_remote_candidates_are_bounded() -> None:
    agent = lone(config=IceConfig(max_remote_candidates=2), end=False)
    for port in (3000, 3001, 3002):
        agent.add_remote_candidate(
            Candidate("c", 1, "udp", 9, "10.0.0.3", port, "host"), 0.0
        )
    assert [c.port for c in agent.remote_candidates] == [2000, 3000]
    assert agent.stats.candidates_refused == 2


def test_check_list_is_bounded() -> None:
    agent = lone(config=IceConfig(max_pairs=2), end=False)
    for port in (3000, 3001):
        agent.add_remote_candidate(
            Candidate("c", 1, "udp", 9, "10.0.0.3", port, "host"), 0.0
        )
    assert len(agent.pairs) == 2
    assert len(agent.remote_candidates) == 3


def test_remote_candidates_ignored_once_closed_or_failed() -> None:
    agent = lone(end=False)
    agent.close()
    agent.add_remote_candidate(B_CANDIDATE_2, 1.0)
    assert agent.remote_candidates == [B_CANDIDATE]


# --- gathering (RFC 8445 §5.1.1.2) ----------------------------------------------------


def gathering_net(
    *hosts: Address, nat: dict[Address, Address] | None = None
) -> tuple[VirtualNet, IceAgent]:
    net = exact_net()
    agent = make_agent(True, seed=1, ufrag="aaaa")
    net.attach(agent)
    for i, addr in enumerate(hosts):
        net.peer(agent).add_host(i, 1, addr)
    for private, public in (nat or {}).items():
        net.add_static_nat(private, public)
    StunServer(net, STUN_SERVER)
    net.flush()
    return net, agent


def test_gather_srflx_candidate() -> None:
    public = ("203.0.113.1", 61000)
    net, agent = gathering_net(A_ADDR, nat={A_ADDR: public})
    agent.gather(0.0, [STUN_SERVER])
    net.run(10.0)
    (request,) = net.sent_messages(agent, Class.REQUEST)
    assert (request[0], request[2]) == (0.0, STUN_SERVER)
    assert request[3].attributes == {}  # a plain Binding request
    assert request[3].has_fingerprint
    host, srflx = agent.local_candidates
    assert (srflx.type, srflx.host, srflx.port) == ("srflx", *public)
    assert (srflx.related_address, srflx.related_port) == A_ADDR
    assert srflx.priority == candidate_priority(1, "srflx", 65535)
    assert srflx.foundation == candidate_foundation(
        "srflx", "udp", "10.0.0.1", server=STUN_SERVER[0]
    )
    assert srflx.foundation != host.foundation
    assert [(t, type(e)) for t, e in net.timeline(agent)] == [
        (0.0, CandidateGathered),
        (0.002, CandidateGathered),
        (0.002, GatheringCompleted),
    ]
    assert agent.get_timer() is None


def test_gather_drops_srflx_equal_to_its_base() -> None:
    net, agent = gathering_net(A_ADDR)
    agent.gather(0.0, [STUN_SERVER])
    net.run(10.0)
    assert [c.type for c in agent.local_candidates] == ["host"]
    assert net.timeline(agent)[-1] == (0.002, GatheringCompleted())


def test_gather_drops_a_srflx_already_gathered() -> None:
    # Two sockets mapped to one public address (a NAT that shares a port):
    # the second answer is redundant.
    agent = lone(connect=False)
    agent.add_host_candidate(1, 1, ("10.0.1.1", 1001))
    agent.gather(0.0, [STUN_SERVER])
    public: dict[str, object] = {"XOR-MAPPED-ADDRESS": ("203.0.113.1", 61000)}
    for tx in agent.datagrams_to_send():
        agent.receive_datagram(
            tx.endpoint, server_answer(tx.data, public), tx.addr, 0.01
        )
    assert [c.type for c in agent.local_candidates] == ["host", "host", "srflx"]
    assert agent.local_candidates[2].related_port == 1000
    assert agent.stats.unexpected == 0
    assert kinds(drain(agent))[-2:] == ["CandidateGathered", "GatheringCompleted"]


def test_gather_completes_at_gather_timeout_when_the_server_is_unreachable() -> None:
    net, agent = gathering_net(A_ADDR)
    net.unbind(STUN_SERVER)
    agent.gather(0.0, [STUN_SERVER])
    net.run(60.0)
    # Sent on the RFC 8489 schedule with the interval capped at
    # gather_rto_max (0.5 s): ten tries, cut short at gather_timeout (5 s).
    assert [t for t, *_ in net.sent_messages(agent, Class.REQUEST)] == [
        0.5 * i for i in range(10)
    ]
    assert net.timeline(agent)[-1] == (5.0, GatheringCompleted())
    assert [type(e) for e in net.events(agent)].count(GatheringCompleted) == 1


def test_gather_timeout_is_configurable() -> None:
    agent = make_agent(True, seed=1, ufrag="aaaa", config=IceConfig(gather_timeout=1.0))
    agent.add_host_candidate(0, 1, A_ADDR)
    drain(agent)
    agent.gather(10.0, [STUN_SERVER])
    assert agent.get_timer() == 10.5
    agent.handle_timer(10.5)
    assert agent.get_timer() == 11.0
    agent.handle_timer(11.0)
    assert drain(agent) == [GatheringCompleted()]
    assert agent.get_timer() is None


def test_gather_without_servers_completes_at_once() -> None:
    agent = lone(connect=False)
    agent.gather(0.0)
    assert drain(agent) == [GatheringCompleted()]
    assert agent.datagrams_to_send() == []
    # Only once.
    agent.gather(1.0, [STUN_SERVER])
    assert drain(agent) == []
    assert agent.datagrams_to_send() == []


def test_gather_asks_servers_of_the_same_address_family() -> None:
    agent = make_agent(True, seed=1, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.add_host_candidate(1, 1, ("2001:db8::1", 1001))
    drain(agent)
    v6_server = ("2001:db8::53", 3478)
    agent.gather(0.0, [STUN_SERVER, v6_server])
    assert sorted((tx.endpoint, tx.addr) for tx in agent.datagrams_to_send()) == [
        (0, STUN_SERVER),
        (1, v6_server),
    ]
    agent.gather(0.0, [STUN_SERVER])  # already gathering: nothing more
    assert agent.datagrams_to_send() == []


def server_answer(
    request: bytes, attributes: dict[str, object], klass: Class = Class.SUCCESS
) -> bytes:
    message = Message(
        Method.BINDING,
        klass,
        parse_message(request).transaction_id,
        attributes,  # type: ignore[arg-type]
    )
    return message.encode()


def test_gather_takes_mapped_address_from_old_servers() -> None:
    agent = lone(connect=False)
    agent.gather(0.0, [STUN_SERVER])
    (tx,) = agent.datagrams_to_send()
    reply = server_answer(tx.data, {"MAPPED-ADDRESS": ("203.0.113.1", 61000)})
    agent.receive_datagram(0, reply, STUN_SERVER, 0.01)
    assert [c.type for c in agent.local_candidates] == ["host", "srflx"]
    assert kinds(drain(agent)) == ["CandidateGathered", "GatheringCompleted"]


@pytest.mark.parametrize(
    ("attributes", "klass"),
    [
        ({"ERROR-CODE": (400, "Bad Request")}, Class.ERROR),
        ({}, Class.SUCCESS),  # no mapped address
    ],
)
def test_gather_failed_answer_gives_no_candidate(
    attributes: dict[str, object], klass: Class
) -> None:
    agent = lone(connect=False)
    agent.gather(0.0, [STUN_SERVER])
    (tx,) = agent.datagrams_to_send()
    agent.receive_datagram(
        0, server_answer(tx.data, attributes, klass), STUN_SERVER, 0.01
    )
    assert [c.type for c in agent.local_candidates] == ["host"]
    assert drain(agent) == [GatheringCompleted()]


def test_gather_answer_from_another_address_is_ignored() -> None:
    agent = lone(connect=False)
    agent.gather(0.0, [STUN_SERVER])
    (tx,) = agent.datagrams_to_send()
    reply = server_answer(tx.data, {"XOR-MAPPED-ADDRESS": ("203.0.113.1", 61000)})
    agent.receive_datagram(0, reply, ("198.51.100.2", 3478), 0.01)
    assert agent.stats.unexpected == 1
    assert drain(agent) == []
    assert [c.type for c in agent.local_candidates] == ["host"]


def test_close_stops_gathering() -> None:
    agent = lone(connect=False)
    agent.gather(0.0, [STUN_SERVER])
    agent.close()
    assert agent.get_timer() is None
    assert agent.datagrams_to_send() == []
    agent.handle_timer(5.0)
    assert drain(agent) == []
    agent.close()  # idempotent
    assert agent.state == "closed"


# --- set_selected_pair (a peer without ICE) -------------------------------------------


def test_set_selected_pair_without_checks() -> None:
    agent = lone(connect=False)
    local = agent.local_candidates[0]
    pair = agent.set_selected_pair(1, local.foundation, "bbbb1")
    assert agent.state == "completed"
    assert agent.selected[1] is pair
    assert (pair.valid, pair.nominated) == (True, True)
    assert drain(agent) == [
        SelectedPairChanged(component=1, local=local, remote=B_CANDIDATE),
        IceCompleted(),
    ]
    assert agent.route(1) == (0, B_ADDR)
    assert agent.receive_datagram(0, b"rtp", B_ADDR, 1.0) == (b"rtp", 1)
    # No checks and no consent on it.
    assert agent.get_timer() is None
    assert agent.datagrams_to_send() == []
    assert [s.selected for s in agent.pair_stats()] == [True]


def test_set_selected_pair_reuses_a_pair_of_the_check_list() -> None:
    agent = lone()
    assert (
        agent.set_selected_pair(1, agent.local_candidates[0].foundation, "bbbb1")
        is agent.pairs[0]
    )
    assert len(agent.pairs) == 1
    assert agent.state == "completed"


def test_set_selected_pair_accepts_a_srflx_foundation() -> None:
    agent = lone(connect=False)
    srflx = Candidate(
        "srflx1", 1, "udp", 100, "203.0.113.1", 61000, "srflx", "10.0.0.1", 1000
    )
    agent.local_candidates.append(srflx)
    pair = agent.set_selected_pair(1, "srflx1", "bbbb1")
    assert pair.endpoint == 0


def test_set_selected_pair_completes_once_every_component_has_one() -> None:
    agent = lone(
        connect=False,
        components=2,
        remotes=(
            B_CANDIDATE,
            Candidate("bbbb1", 2, "udp", 9, "10.0.0.2", 2001, "host"),
        ),
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    foundation = agent.local_candidates[0].foundation
    agent.set_selected_pair(1, foundation, "bbbb1")
    assert agent.state == "new"
    agent.set_selected_pair(2, foundation, "bbbb1")
    assert agent.state == "completed"
    assert [type(e) for e in drain(agent)][-1] is IceCompleted


@pytest.mark.parametrize(
    ("component", "local", "remote"),
    [(1, "nope", "bbbb1"), (1, "LOCAL", "nope"), (2, "LOCAL", "bbbb1")],
)
def test_set_selected_pair_unknown_candidates(
    component: int, local: str, remote: str
) -> None:
    agent = lone(connect=False, components=2)
    if local == "LOCAL":
        local = agent.local_candidates[0].foundation
    with pytest.raises(ValueError, match="no local candidate"):
        agent.set_selected_pair(component, local, remote)
    assert agent.selected == {}


def test_set_selected_pair_after_ice_stops_consent_on_the_component() -> None:
    net, a, b = agent_pair(b_hosts=("10.0.0.2", "10.0.1.2"))
    connect_pair(net, a, b)
    assert a.selected[1].remote.port == 2000
    other = next(c for c in a.remote_candidates if c.port == 2001)
    a.set_selected_pair(1, a.local_candidates[0].foundation, other.foundation)
    assert a.route(1) == (0, ("10.0.1.2", 2001))
    done = net.now
    link_down(net)
    net.run(100.0)
    # The pair chosen by hand is not subject to consent.
    assert a.state == "completed"
    assert consent_checks(net, a, done) == []


# --- the data path --------------------------------------------------------------------


def test_data_only_from_authenticated_addresses() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    assert a.receive_datagram(0, b"hello", B_ADDR, 1.0) == (b"hello", 1)
    assert a.receive_datagram(0, b"", B_ADDR, 1.0) == (b"", 1)
    assert a.receive_datagram(0, b"x" * 30, STRANGER, 1.0) is None
    assert a.stats.unknown_peer_data == 1
    (stats,) = a.pair_stats()
    assert (stats.datagrams_received, stats.bytes_received) == (2, 5)
    # RTP/RTCP, DTLS and the like start with bytes > 3: data, not STUN.
    dtls = b"\x16\xfe\xfd" + bytes(30)
    assert a.receive_datagram(0, dtls, B_ADDR, 1.0) == (dtls, 1)


def test_data_from_a_checked_address_before_the_pair_exists() -> None:
    agent = lone(connect=False, remotes=())
    agent.receive_datagram(0, peer_check(), STRANGER, 0.0)
    assert agent.receive_datagram(0, b"early", STRANGER, 0.1) == (b"early", 1)
    assert agent.pairs == []


def test_malformed_stun_is_counted() -> None:
    agent = lone()
    good = peer_check()
    broken = good[:-1] + bytes([good[-1] ^ 1])  # bad FINGERPRINT
    assert agent.receive_datagram(0, broken, B_ADDR, 0.1) is None
    short = good[:2] + b"\x00\x04" + good[4:20] + b"\x00\x00"
    assert agent.receive_datagram(0, short, B_ADDR, 0.1) is None
    assert agent.stats.malformed == 2
    assert agent.pairs[0].requests_received == 0


def test_indication_is_ignored() -> None:
    agent = lone()
    agent.datagrams_to_send()
    indication = Message(Method.BINDING, Class.INDICATION, bytes(12)).encode(
        fingerprint=True
    )
    agent.receive_datagram(0, indication, B_ADDR, 0.1)
    assert agent.stats.unexpected == 1
    assert agent.datagrams_to_send() == []


def test_datagram_on_an_unknown_endpoint_or_a_closed_agent() -> None:
    agent = lone()
    assert agent.receive_datagram(9, peer_check(), B_ADDR, 0.1) is None
    assert agent.stats.unexpected == 1
    agent.close()
    assert agent.receive_datagram(0, peer_check(), B_ADDR, 0.2) is None
    assert agent.stats.unexpected == 2
    assert agent.datagrams_to_send() == []
    agent.handle_timer(1.0)
    assert agent.get_timer() is None


# --- statistics -----------------------------------------------------------------------


def test_pair_stats_counters_and_rtt() -> None:
    config = IceConfig(consent_interval=100.0, consent_timeout=1000.0)
    net, a, b = agent_pair(config=config)
    connect_pair(net, a, b)
    (sa,) = a.pair_stats()
    assert (sa.component, sa.state, sa.nominated, sa.selected) == (
        1,
        "succeeded",
        True,
        True,
    )
    assert (sa.local, sa.remote) == (a.local_candidates[0], b.local_candidates[0])
    # a: its ordinary check and its nomination; b's check answered.
    assert (sa.requests_sent, sa.responses_received) == (2, 2)
    assert (sa.requests_received, sa.responses_sent) == (1, 1)
    assert (sa.datagrams_sent, sa.bytes_sent) == (0, 0)  # no data sent yet
    assert sa.rtt == pytest.approx(0.002)
    (sb,) = b.pair_stats()
    assert (sb.requests_sent, sb.responses_received) == (1, 1)
    assert (sb.requests_received, sb.responses_sent) == (2, 2)
    assert sb.rtt == pytest.approx(0.002)


def test_data_is_counted_on_its_pair_and_component_both_ways() -> None:
    config = IceConfig(consent_interval=100.0, consent_timeout=1000.0)
    net, a, b = agent_pair(config=config, components=2)
    connect_pair(net, a, b)
    assert a.send(1, b"one", net.now)
    assert a.send(2, b"two!", net.now)
    assert a.send(2, b"2", net.now)
    net.run(net.now + 1.0)
    assert sorted(data for data, _ in net.data(b)) == [b"2", b"one", b"two!"]
    sent = {s.component: s for s in a.pair_stats() if s.selected}
    assert (sent[1].datagrams_sent, sent[1].bytes_sent) == (1, 3)
    assert (sent[2].datagrams_sent, sent[2].bytes_sent) == (2, 5)
    received = {s.component: s for s in b.pair_stats() if s.selected}
    assert (received[1].datagrams_received, received[1].bytes_received) == (1, 3)
    assert (received[2].datagrams_received, received[2].bytes_received) == (2, 5)
    # Pairs that carried nothing count nothing.
    assert all(
        (s.datagrams_sent, s.datagrams_received) == (0, 0)
        for s in a.pair_stats() + b.pair_stats()
        if not s.selected
    )


def test_data_the_caller_moves_itself_is_credited_to_its_pair() -> None:
    config = IceConfig(consent_interval=100.0, consent_timeout=1000.0)
    net, a, b = agent_pair(config=config, components=2)
    connect_pair(net, a, b)
    route = a.route(2)
    assert route is not None
    endpoint, addr = route
    # Written straight to the route's socket, read straight from it.
    assert a.count_sent(2, 1200, count=3)
    assert a.count_received(endpoint, addr, 500, count=2) == 2
    assert a.count_received(endpoint, addr, 7) == 2
    (stats,) = [s for s in a.pair_stats() if s.selected and s.component == 2]
    assert (stats.datagrams_sent, stats.bytes_sent) == (3, 1200)
    assert (stats.datagrams_received, stats.bytes_received) == (3, 507)
    (other,) = [s for s in a.pair_stats() if s.selected and s.component == 1]
    assert (other.datagrams_sent, other.datagrams_received) == (0, 0)
    # Not an authenticated peer, or no endpoint, or no pair: nothing counted.
    assert a.count_received(endpoint, STRANGER, 9) is None
    assert a.count_received(99, addr, 9) is None
    assert sum(s.bytes_received for s in a.pair_stats()) == 507
    assert not b.count_sent(3, 10)
    lone_agent = lone(connect=False, remotes=())
    assert not lone_agent.count_sent(1, 10)


def test_data_from_a_peer_without_a_pair_yet_is_not_credited() -> None:
    agent = lone(connect=False, remotes=())
    agent.receive_datagram(0, peer_check(), STRANGER, 0.0)
    assert agent.count_received(0, STRANGER, 5) == 1
    assert agent.pair_stats() == []


def test_a_consent_answer_after_the_pair_was_chosen_by_hand_is_ignored() -> None:
    config = IceConfig(consent_interval=1.0, consent_timeout=3.0)
    net, a, b = agent_pair(config=config)
    done = connect_pair(net, a, b)
    net.run(done + 5.0, stop=lambda: bool(consent_checks(net, a, done)))
    (check_at,) = consent_checks(net, a, done)
    pair = a.selected[1]
    # Its answer is in flight when the same pair is chosen by hand.
    a.set_selected_pair(1, pair.local.foundation, pair.remote.foundation)
    net.run(check_at + 1.0)
    assert a.state == "completed"
    assert consent_checks(net, a, done) == [check_at]
    link_down(net)
    net.run(net.now + 10.0)
    assert a.state == "completed"  # no consent to lose


def test_rtt_only_from_first_sends() -> None:
    # Karn's rule: the answer to a retransmitted check says nothing about RTT.
    agent = lone()
    _, request = only_request(agent)
    agent.handle_timer(0.5)
    agent.datagrams_to_send()
    assert agent.pairs[0].requests_sent == 2
    agent.receive_datagram(0, answer(request), B_ADDR, 0.6)
    assert agent.pairs[0].rtt is None
    assert agent.pairs[0].valid
    # The nomination, answered on its first send, measures it.
    _, nomination = only_request(agent)
    agent.receive_datagram(0, answer(nomination), B_ADDR, 0.65)
    assert agent.pairs[0].rtt == pytest.approx(0.05)


def test_pair_repr() -> None:
    agent = lone()
    assert (
        repr(agent.pairs[0])
        == "CandidatePair(10.0.0.1:1000 -> 10.0.0.2:2000, in-progress)"
    )


# --- configuration and arguments ------------------------------------------------------


# IceConfig: tests/test_ice_config.py.


@pytest.mark.parametrize("value", ["abcd", "a" * 256, "AZaz09+/"])
def test_validate_username_accepts(value: str) -> None:
    assert validate_username(value) == value


@pytest.mark.parametrize("value", ["abc", "a" * 257, "abc-", "abcd ", "abcé"])
def test_validate_username_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="username must be 4 to 256 ice-chars"):
        validate_username(value)


@pytest.mark.parametrize("value", ["p" * 22, "p" * 256])
def test_validate_password_accepts(value: str) -> None:
    assert validate_password(value) == value


@pytest.mark.parametrize("value", ["p" * 21, "p" * 257, "p" * 21 + ":"])
def test_validate_password_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="password must be 22 to 256 ice-chars"):
        validate_password(value)


@pytest.mark.parametrize("validate", [validate_username, validate_password])
def test_validators_reject_non_strings(validate: object) -> None:
    with pytest.raises(TypeError, match="must be a str, not bytes"):
        validate(b"abcdabcdabcdabcdabcdabcd")  # type: ignore[operator]


def test_agent_arguments() -> None:
    for components in (0, 257, 1.0):
        with pytest.raises(ValueError, match="components must be an int"):
            IceAgent(
                controlling=True,
                local_username="aaaa",
                local_password="p" * 22,
                components=components,  # type: ignore[arg-type]
            )
    with pytest.raises(ValueError, match="username"):
        IceAgent(controlling=True, local_username="a", local_password="p" * 22)
    with pytest.raises(ValueError, match="password"):
        IceAgent(controlling=True, local_username="aaaa", local_password="short")
    agent = IceAgent(controlling=1, local_username="aaaa", local_password="p" * 22)  # type: ignore[arg-type]
    assert agent.controlling is True
    assert agent.state == IceState.NEW
    assert 0 <= agent.tie_breaker < 2**64


def test_add_host_candidate_arguments() -> None:
    agent = lone(connect=False)
    with pytest.raises(ValueError, match="endpoint 0 already added"):
        agent.add_host_candidate(0, 1, ("10.0.9.1", 1))
    with pytest.raises(ValueError, match="component must be 1 to 1"):
        agent.add_host_candidate(1, 2, ("10.0.9.1", 1))
    # Addresses are canonicalised.
    candidate = agent.add_host_candidate(2, 1, ("2001:DB8:0::1", 5))
    assert candidate.host == "2001:db8::1"
    assert candidate.foundation == candidate_foundation("host", "udp", "2001:db8::1")


def test_set_remote_credentials_arguments() -> None:
    agent = make_agent(True, seed=1, ufrag="aaaa")
    with pytest.raises(TypeError, match="remote username must be a str"):
        agent.set_remote_credentials(None, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="remote password must be a str"):
        agent.set_remote_credentials("x", b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="remote username must not be empty"):
        agent.set_remote_credentials("", "x")
    with pytest.raises(ValueError, match="remote password must not be empty"):
        agent.set_remote_credentials("x", "")
    # Lenient on lengths: some peers use short ones.
    agent.set_remote_credentials("x", "y")
    assert (agent.remote_username, agent.remote_password) == ("x", "y")


def test_connect_needs_remote_credentials_and_runs_once() -> None:
    agent = make_agent(True, seed=1, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    with pytest.raises(ValueError, match="remote username and password"):
        agent.connect(0.0)
    assert agent.state == "new"
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(B_CANDIDATE, 0.0)
    agent.connect(0.0)
    assert len(agent.datagrams_to_send()) == 1
    agent.connect(0.001)
    assert agent.datagrams_to_send() == []


def test_random_source_defaults_to_system_random() -> None:
    # Without an rng, tie-breakers (and credentials, IDs) come from the OS.
    agents = [
        IceAgent(controlling=True, local_username="aaaa", local_password="p" * 22)
        for _ in range(2)
    ]
    assert agents[0].tie_breaker != agents[1].tie_breaker


# --- corners of the state machine -----------------------------------------------------


def test_nomination_answered_with_487_then_role_flips_back() -> None:
    # a nominates, the peer answers 487: a becomes controlled and checks the
    # pair again. A later conflict makes a controlling again: it nominates
    # the (still valid) pair anew, replacing the check in progress.
    agent = lone()
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    _, nomination = only_request(agent)
    agent.receive_datagram(
        0, answer(nomination, error=(487, "Role Conflict")), B_ADDR, 0.002
    )
    assert not agent.controlling
    pair = agent.pairs[0]
    assert (pair.state, pair.valid, pair.nominating) == (
        PairState.IN_PROGRESS,
        True,
        False,
    )
    _tx, again = only_request(agent)
    assert "USE-CANDIDATE" not in again.attributes
    # The peer, controlled too, loses the tie-break: a takes control back.
    agent.receive_datagram(
        0, peer_check(controlled=agent.tie_breaker - 1), B_ADDR, 0.003
    )
    assert role(agent) == "controlling"
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]
    agent.handle_timer(0.003)
    _, renomination = only_request(agent)
    assert "USE-CANDIDATE" in renomination.attributes
    # The replaced check is forgotten: its answer is unexpected.
    agent.receive_datagram(0, answer(again), B_ADDR, 0.004)
    assert agent.stats.unexpected == 1
    agent.receive_datagram(0, answer(renomination), B_ADDR, 0.005)
    assert agent.state == "completed"


def controlled_with_two_valid_pairs(second_priority: int) -> IceAgent:
    second = Candidate("bbbb2", 1, "udp", second_priority, "10.0.1.2", 2001, "host")
    agent = lone(controlling=False, remotes=(B_CANDIDATE, second))
    for now in (0.0, 0.02):
        if now:
            agent.handle_timer(now)
        tx, check = only_request(agent)
        agent.receive_datagram(0, answer(check), tx.addr, now + 0.001)
    assert all(p.valid for p in agent.pairs)
    drain(agent)
    return agent


def test_controlled_agent_keeps_the_higher_priority_nomination() -> None:
    agent = controlled_with_two_valid_pairs(HOST_PRIORITY - 256)
    agent.receive_datagram(
        0, peer_check(controlling=1, use_candidate=True), B_ADDR, 0.1
    )
    assert agent.state == "completed"
    assert agent.route(1) == (0, B_ADDR)
    # RFC 8445 §8.1.1: with several nominated pairs, the highest priority wins.
    lower = ("10.0.1.2", 2001)
    agent.receive_datagram(0, peer_check(controlling=1, use_candidate=True), lower, 0.2)
    assert agent.route(1) == (0, B_ADDR)
    assert [e for e in drain(agent) if isinstance(e, SelectedPairChanged)] == [
        SelectedPairChanged(
            component=1, local=agent.local_candidates[0], remote=B_CANDIDATE
        )
    ]


def test_controlled_agent_moves_to_a_higher_priority_nomination() -> None:
    agent = controlled_with_two_valid_pairs(HOST_PRIORITY - 256)
    lower = ("10.0.1.2", 2001)
    agent.receive_datagram(0, peer_check(controlling=1, use_candidate=True), lower, 0.1)
    assert agent.route(1) == (0, lower)
    agent.receive_datagram(
        0, peer_check(controlling=1, use_candidate=True), B_ADDR, 0.2
    )
    assert agent.route(1) == (0, B_ADDR)
    changes = [
        e.remote.port for e in drain(agent) if isinstance(e, SelectedPairChanged)
    ]
    assert changes == [2001, 2000]
    assert [type(e) for e in drain(agent)].count(IceCompleted) == 0


def test_repeated_nomination_selects_once() -> None:
    # Two components; the nomination of component 1 arrives twice (a
    # retransmission) before component 2 is done.
    agent = lone(
        controlling=False,
        components=2,
        remotes=(
            B_CANDIDATE,
            Candidate("bbbb1", 2, "udp", 9, "10.0.0.2", 2001, "host"),
        ),
        connect=False,
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.connect(0.0)
    _tx, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    drain(agent)
    for now in (0.002, 0.003):
        agent.receive_datagram(
            0, peer_check(controlling=1, use_candidate=True), B_ADDR, now
        )
    assert kinds(drain(agent)) == ["selected:1"]
    assert agent.state == "checking"


def two_components_one_selected(
    config: IceConfig | None = None,
) -> tuple[IceAgent, Transmit, Message]:
    """Controlling, two components: component 1 has two pairs (the better
    one selected, the other still in checks), component 2 one pair, in checks."""
    agent = lone(
        config=config,
        components=2,
        remotes=(
            B_CANDIDATE,
            B_CANDIDATE_2,
            Candidate("bbbb1", 2, "udp", 9, "10.0.0.2", 2002, "host"),
        ),
        connect=False,
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.connect(0.0)
    tx1, check1 = only_request(agent)
    agent.handle_timer(0.02)
    tx2, _check2 = only_request(agent)
    assert (tx1.addr, tx2.addr) == (B_ADDR, ("10.0.1.2", 2001))
    agent.receive_datagram(0, answer(check1), B_ADDR, 0.021)
    _, nomination = only_request(agent)
    agent.receive_datagram(0, answer(nomination), B_ADDR, 0.022)
    assert sorted(agent.selected) == [1]
    agent.handle_timer(0.04)
    tx3, check3 = only_request(agent)
    assert tx3.endpoint == 1
    drain(agent)
    return agent, tx3, check3


def test_a_failed_component_fails_ice_and_stops_other_checks() -> None:
    agent, tx, check = two_components_one_selected()
    other = next(p for p in agent.pairs if p.remote.port == 2001)
    assert other.state is PairState.IN_PROGRESS
    transaction = other.transaction
    assert transaction is not None
    pending = Message(Method.BINDING, Class.REQUEST, transaction.transaction_id)
    agent.receive_datagram(1, answer(check, error=(500, "x")), tx.addr, 0.05)
    assert agent.state == "failed"
    # Component 1's other check can no longer change anything: stopped.
    assert kinds(drain(agent)) == ["2:failed", "1:failed", "IceFailed"]
    assert pair_states(agent).count("failed") == 2
    assert other.transaction is None
    # Its late answer is unexpected; no retransmission or timeout is left,
    # nor consent on the selected pair of component 1: a failed agent sends
    # nothing more (and has no route).
    agent.receive_datagram(0, answer(pending), ("10.0.1.2", 2001), 0.06)
    assert agent.stats.unexpected == 1
    assert other.responses_received == 0
    assert agent.get_timer() is None
    assert agent.route(1) is None
    assert not agent.send(1, b"data", 0.06)
    assert drain(agent) == []


def test_consent_answer_from_another_address_is_ignored() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    # Redirect b's answers to a's consent checks to come from elsewhere.
    net.add_static_nat(B_ADDR, ("10.0.0.2", 2999))
    net.run(100.0)
    assert a.state == "closed"  # no valid answer: consent lost
    assert a.pairs[0].state is PairState.SUCCEEDED


def completed_by_hand() -> IceAgent:
    """A controlling lone agent, completed at 2 ms (its check and its
    nomination answered at 1 and 2 ms)."""
    agent = lone()
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    _, nomination = only_request(agent)
    agent.receive_datagram(0, answer(nomination), B_ADDR, 0.002)
    assert agent.state == "completed"
    drain(agent)
    return agent


@pytest.mark.parametrize(
    "reply",
    [
        # An ICE restart (discarded: unsigned, RFC 8489 §9.1.5).
        {"error": (401, "Unauthenticated"), "password": ""},
        {"error": (500, "Server Error")},
    ],
)
def test_consent_error_answer_does_not_refresh(reply: dict[str, object]) -> None:
    agent = completed_by_hand()
    last = 0.0
    while (at := agent.get_timer()) is not None:
        agent.handle_timer(at)
        last = at
        for tx, request in sent(agent):
            agent.receive_datagram(0, answer(request, **reply), tx.addr, at + 0.001)  # type: ignore[arg-type]
    # Every consent check got an error: consent ran out 30 s after the
    # nomination's answer.
    assert last == pytest.approx(30.002)
    assert drain(agent)[-1] == ConsentExpired(component=1)
    # The check and the nomination, and the signed errors if any.
    signed = reply.get("password") != ""
    assert (agent.pairs[0].responses_received > 2) == signed
    assert (agent.stats.unauthenticated > 0) != signed


def test_consent_answer_for_a_pair_no_longer_selected() -> None:
    net, a, b = agent_pair(b_hosts=("10.0.0.2", "10.0.1.2"))
    connect_pair(net, a, b)
    old = a.selected[1]
    sent_before = len(requests_of(net, a))
    # Run until a's first consent check has just gone out.
    net.run(60.0, stop=lambda: len(requests_of(net, a)) > sent_before)
    answered = old.responses_received
    # Before its answer arrives, another pair is chosen by hand.
    other = next(c for c in a.remote_candidates if c.port == 2001)
    a.set_selected_pair(1, a.local_candidates[0].foundation, other.foundation)
    net.run(net.now + 100.0)
    # The answer came (counted on the old pair), with no consent left to
    # refresh; none is checked any more, none expires.
    assert old.responses_received == answered + 1
    assert len(requests_of(net, a)) == sent_before + 1
    assert a.state == "completed"
    assert not any(isinstance(e, ConsentExpired) for e in net.events(a))


def test_set_selected_pair_before_connect_keeps_the_pair_in_the_check_list() -> None:
    agent = lone(
        components=2,
        remotes=(
            B_CANDIDATE,
            Candidate("bbbb1", 2, "udp", 9, "10.0.0.2", 2001, "host"),
        ),
        connect=False,
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    pair = agent.set_selected_pair(1, agent.local_candidates[0].foundation, "bbbb1")
    agent.connect(0.0)
    assert agent.pairs.count(pair) == 1
    assert len(agent.pairs) == 2


def test_check_for_a_pruned_component_after_completion() -> None:
    # Two components, only component 1 signalled: completed with it alone.
    # A check then arrives for component 2 from an unknown address: a
    # peer-reflexive pair and a triggered check, which fails harmlessly.
    agent = lone(
        components=2,
        connect=False,
        config=IceConfig(rto=0.1, max_sends=1, final_wait=1),
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.set_selected_pair(1, agent.local_candidates[0].foundation, "bbbb1")
    agent.connect(0.0)
    assert agent.state == "completed"
    agent.datagrams_to_send()
    agent.receive_datagram(1, peer_check(controlled=1), ("10.0.0.2", 2001), 0.1)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS, Class.REQUEST]
    agent.handle_timer(0.2)
    comp2 = next(p for p in agent.pairs if p.component == 2)
    assert comp2.state is PairState.FAILED
    assert agent.state == "completed"


def test_consent_of_a_pair_nominated_long_after_it_succeeded() -> None:
    # The controlled agent's pair succeeded at 1 ms; the nomination comes
    # 20 s later. Consent counts from the response (RFC 7675 §5.1), so the
    # first consent check goes out at once.
    agent = lone(controlling=False)
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    agent.receive_datagram(
        0, peer_check(controlling=1, use_candidate=True), B_ADDR, 20.0
    )
    assert agent.state == "completed"
    assert agent.get_timer() == 20.0
    agent.handle_timer(20.0)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS, Class.REQUEST]
    # Unanswered, consent ends 30 s after the response of 1 ms.
    last = 0.0
    while (at := agent.get_timer()) is not None:
        agent.handle_timer(at)
        last = at
    assert last == pytest.approx(30.001)
    assert drain(agent)[-1] == ConsentExpired(component=1)
    assert agent.state == "closed"


def test_component_that_failed_first_fails_ice_once_the_other_is_selected() -> None:
    # Component 1's only pair fails while component 2 is still in checks:
    # no failure yet. Component 2 is then nominated and selected; component
    # 1 can never be, so ICE fails then (and does not stay checking).
    agent = lone(
        components=2,
        remotes=(
            B_CANDIDATE,
            Candidate("bbbb3", 2, "udp", 9, "10.0.0.2", 2001, "host"),
        ),
        connect=False,
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.connect(0.0)
    tx1, check1 = only_request(agent)
    agent.handle_timer(0.02)
    tx2, check2 = only_request(agent)
    assert (tx1.endpoint, tx2.endpoint) == (0, 1)
    agent.receive_datagram(0, answer(check1, error=(500, "x")), tx1.addr, 0.021)
    assert agent.state == "checking"
    agent.receive_datagram(1, answer(check2), tx2.addr, 0.022)
    _, nomination = only_request(agent)
    drain(agent)
    agent.receive_datagram(1, answer(nomination), tx2.addr, 0.023)
    assert agent.state == "failed"
    assert kinds(drain(agent)) == ["2:succeeded", "selected:2", "IceFailed"]


def test_waiting_pair_of_a_selected_component_does_not_block_its_foundation() -> None:
    # Component 1 is selected while its second pair is still Waiting (it
    # will never be checked now). Component 2's last pair shares that pair's
    # foundation and is Frozen: it must still be checked.
    agent = lone(
        components=2,
        remotes=(
            Candidate("f1", 1, "udp", 1000, "10.0.0.2", 2000, "host"),
            Candidate("f1", 2, "udp", 999, "10.0.0.2", 2001, "host"),
            Candidate("f2", 1, "udp", 500, "10.0.1.2", 2002, "host"),
            Candidate("f2", 2, "udp", 499, "10.0.1.2", 2003, "host"),
        ),
        connect=False,
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.connect(0.0)
    tx, check = only_request(agent)
    assert tx.addr == ("10.0.0.2", 2000)
    agent.receive_datagram(0, answer(check), tx.addr, 0.001)
    _, nomination = only_request(agent)
    agent.receive_datagram(0, answer(nomination), tx.addr, 0.002)
    assert sorted(agent.selected) == [1]
    agent.handle_timer(0.02)
    tx, check = only_request(agent)
    assert tx.addr == ("10.0.0.2", 2001)
    agent.receive_datagram(1, answer(check, error=(500, "x")), tx.addr, 0.021)
    states = {(p.component, p.remote.port): p.state.value for p in agent.pairs}
    assert states == {
        (1, 2000): "succeeded",
        (1, 2002): "waiting",
        (2, 2001): "failed",
        (2, 2003): "frozen",
    }
    agent.handle_timer(0.04)
    tx, check = only_request(agent)
    assert tx.addr == ("10.0.1.2", 2003)
    agent.receive_datagram(1, answer(check), tx.addr, 0.041)
    _, nomination = only_request(agent)
    agent.receive_datagram(1, answer(nomination), tx.addr, 0.042)
    assert agent.state == "completed"


def controlled_with_two_components() -> tuple[
    IceAgent, tuple[Transmit, Message], tuple[Transmit, Message]
]:
    """A controlled agent with one pair per component, both checks sent
    (component 1's at 0, component 2's at Ta): the agent and the two
    ``(transmit, request)`` of those checks."""
    agent = lone(
        controlling=False,
        components=2,
        remotes=(
            B_CANDIDATE,
            Candidate("bbbb3", 2, "udp", 9, "10.0.0.2", 2001, "host"),
        ),
        connect=False,
    )
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.connect(0.0)
    first = only_request(agent)
    agent.handle_timer(0.02)
    return agent, first, only_request(agent)


def test_controlled_agent_fails_when_a_component_is_lost_and_nothing_is_left() -> None:
    # Component 2 has a valid pair (waiting for a nomination), component 1's
    # only pair failed and nothing is left to check: RFC 8445 §7.2.5.4, the
    # check list fails (a nomination could not complete ICE anyway).
    agent, (tx1, check1), (tx2, check2) = controlled_with_two_components()
    agent.receive_datagram(1, answer(check2), tx2.addr, 0.021)
    assert agent.state == "checking"
    drain(agent)
    agent.receive_datagram(0, answer(check1, error=(500, "x")), tx1.addr, 0.022)
    assert agent.state == "failed"
    assert kinds(drain(agent)) == ["1:failed", "IceFailed"]


@pytest.mark.parametrize("heard", [False, True])
def test_controlled_agent_waits_for_the_nomination_of_valid_pairs(heard: bool) -> None:
    agent = lone(controlling=False)
    tx, check = only_request(agent)
    agent.receive_datagram(0, answer(check), tx.addr, 0.001)
    if heard:
        agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 3.0)
    # Nothing left to check, a valid pair: it waits for the controlling
    # agent, up to the nomination timeout (from connect() or the last check).
    deadline = 13.0 if heard else 10.0
    assert agent.get_timer() == deadline
    agent.handle_timer(deadline - 0.001)
    assert agent.state == "checking"
    agent.receive_datagram(
        0, peer_check(controlling=1, use_candidate=True), B_ADDR, deadline - 0.001
    )
    assert agent.state == "completed"


def test_controlled_agent_fails_when_its_last_pending_check_succeeds() -> None:
    # Component 1's pair failed while component 2's was in checks; that one
    # succeeds, and nothing is left to check: ICE fails then.
    agent, (tx1, check1), (tx2, check2) = controlled_with_two_components()
    agent.receive_datagram(0, answer(check1, error=(500, "x")), tx1.addr, 0.021)
    assert agent.state == "checking"
    drain(agent)
    agent.receive_datagram(1, answer(check2), tx2.addr, 0.022)
    assert agent.state == "failed"
    assert kinds(drain(agent)) == ["2:succeeded", "IceFailed"]


def test_late_handle_timer_with_a_timeout_that_cancels_another_due_one() -> None:
    # handle_timer() runs late (a busy caller): two checks are due to time
    # out. The first one's failure fails ICE, which stops the second check;
    # the loop must skip it rather than time it out again.
    config = IceConfig(rto=0.1, max_sends=1, final_wait=2)
    agent, _tx, _check = two_components_one_selected(config)
    other = next(p for p in agent.pairs if p.remote.port == 2001)
    assert other.transaction is not None
    old = Message(Method.BINDING, Class.REQUEST, other.transaction.transaction_id)
    agent.receive_datagram(0, answer(old, error=(500, "x")), ("10.0.1.2", 2001), 0.041)
    # The peer checks that pair: a triggered check, sent after component 2's.
    agent.receive_datagram(0, peer_check(controlled=1), ("10.0.1.2", 2001), 0.05)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS, Class.REQUEST]
    drain(agent)
    agent.handle_timer(1.0)
    assert agent.state == "failed"
    assert kinds(drain(agent)) == ["2:failed", "1:failed", "IceFailed"]
    assert agent.datagrams_to_send() == []


def test_local_prflx_is_learnt_once_per_pair() -> None:
    # The first success teaches the pair its peer-reflexive address; later
    # answers with other mapped addresses (a NAT rebinding, or a lying peer)
    # add nothing: at most one local prflx per pair, so max_pairs bounds them.
    agent = lone()
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check, mapped=("203.0.113.1", 1)), B_ADDR, 0.001)
    pair = agent.pairs[0]
    learnt = pair.valid_local
    assert (learnt.type, learnt.host, learnt.port) == ("prflx", "203.0.113.1", 1)
    _, nomination = only_request(agent)
    agent.receive_datagram(
        0, answer(nomination, mapped=("203.0.113.1", 2)), B_ADDR, 0.002
    )
    assert agent.state == "completed"
    assert pair.valid_local is learnt
    assert [c.type for c in agent.local_candidates] == ["host"]


def test_check_from_a_scoped_ipv6_source_is_answered_but_not_paired() -> None:
    # recvfrom() names a link-local sender with its zone ("fe80::1%eth0"),
    # which no candidate can carry: the check is answered, no pair is formed,
    # and nothing is raised.
    agent = make_agent(True, seed=1, ufrag="aaaa")
    agent.add_host_candidate(0, 1, ("fe80::2", 1000))
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.connect(0.0)
    scoped = ("fe80::1%eth0", 5000)
    agent.receive_datagram(0, peer_check(), scoped, 0.1)
    ((tx, response),) = sent(agent)
    assert (tx.addr, response.message_class) == (scoped, Class.SUCCESS)
    assert agent.stats.candidates_refused == 1
    assert agent.remote_candidates == []
    assert agent.pairs == []


# --- re-triggered checks towards a relayed peer (RFC 8445 §7.3.1.4) -----------------

R_ADDR = ("198.51.100.9", 3000)
R_CANDIDATE = Candidate(
    "rrrr1",
    1,
    "udp",
    candidate_priority(1, "relay"),
    R_ADDR[0],
    R_ADDR[1],
    "relay",
    related_address="10.0.0.2",
    related_port=2000,
)


def relayed_peer_check_retriggered(
    controlling: bool = False,
) -> tuple[IceAgent, Message, Message]:
    """A lone agent whose first check to the peer's relay candidate was lost
    (as the peer's TURN server drops it before its permission exists); the
    peer's own check then arrives through that relay: the answer and a new
    check go out at once. Returns the agent, the lost and the new check."""
    agent = lone(controlling=controlling, remotes=(R_CANDIDATE,))
    _, lost = only_request(agent)
    assert pair_states(agent) == ["in-progress"]
    claim = {"controlled": 1} if controlling else {"controlling": 1}
    agent.receive_datagram(0, peer_check(**claim), R_ADDR, 0.001)
    (response, r), (check, c) = sent(agent)
    assert (r.message_class, response.addr) == (Class.SUCCESS, R_ADDR)
    assert (c.message_class, check.addr) == (Class.REQUEST, R_ADDR)
    assert c.transaction_id != lost.transaction_id
    assert pair_states(agent) == ["in-progress"]
    return agent, lost, c


def test_check_from_a_relayed_peer_on_an_in_progress_pair_checks_again() -> None:
    agent, lost, again = relayed_peer_check_retriggered()
    assert agent.pairs[0].requests_sent == 2
    agent.receive_datagram(0, answer(again), R_ADDR, 0.002)
    assert pair_states(agent) == ["succeeded"]
    # The lost check is not sent again at its retransmission time, and its
    # silence fails nothing: nothing is left out at all.
    agent.handle_timer(0.5)
    assert agent.datagrams_to_send() == []
    assert pair_states(agent) == ["succeeded"]
    # Its answer, had it come after all, would count for nothing more.
    agent.receive_datagram(0, answer(lost), R_ADDR, 0.6)
    assert agent.pairs[0].responses_received == 1
    assert agent.stats.unexpected == 1


def test_relayed_pair_retriggered_once_per_check() -> None:
    agent, _, again = relayed_peer_check_retriggered()
    # The peer retransmits its check: answered, no third check of ours.
    agent.receive_datagram(0, peer_check(controlling=1), R_ADDR, 0.002)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]
    # The new check is retransmitted at its own time, the cancelled one not.
    agent.handle_timer(0.501)
    ((tx, resent),) = sent(agent)
    assert (tx.addr, resent.transaction_id) == (R_ADDR, again.transaction_id)


def test_cancelled_check_answered_first_stands_for_the_new_one() -> None:
    agent, lost, again = relayed_peer_check_retriggered()
    # The first check was only slow: its answer makes the pair succeed ...
    agent.receive_datagram(0, answer(lost), R_ADDR, 0.002)
    assert pair_states(agent) == ["succeeded"]
    assert agent.pairs[0].valid
    # ... and the new check is over: its answer is unexpected, never resent.
    agent.receive_datagram(0, answer(again), R_ADDR, 0.003)
    assert agent.stats.unexpected == 1
    assert agent.pairs[0].responses_received == 1
    agent.handle_timer(0.6)
    assert agent.datagrams_to_send() == []


def test_late_answer_of_a_cancelled_check_leaves_the_nomination_alone() -> None:
    # The new check succeeds first and the pair is nominated; the cancelled
    # check's answer then comes: it stands for nothing any more (it once
    # took the nomination's place, which was never sent again nor answered,
    # and the controlling agent waited for it for ever).
    agent, lost, again = relayed_peer_check_retriggered(controlling=True)
    agent.receive_datagram(0, answer(again), R_ADDR, 0.002)
    _, nomination = only_request(agent)
    assert "USE-CANDIDATE" in nomination.attributes
    agent.receive_datagram(0, answer(lost), R_ADDR, 0.003)
    pair = agent.pairs[0]
    assert pair.nominating
    assert pair.transaction is not None
    assert pair.transaction.transaction_id == nomination.transaction_id
    agent.handle_timer(0.502)
    ((_, resent),) = sent(agent)
    assert resent.transaction_id == nomination.transaction_id
    agent.receive_datagram(0, answer(nomination), R_ADDR, 0.503)
    assert agent.state == "completed"


def test_cancelled_check_error_answer_fails_nothing() -> None:
    agent, lost, again = relayed_peer_check_retriggered()
    agent.receive_datagram(0, answer(lost, error=(500, "x")), R_ADDR, 0.002)
    assert pair_states(agent) == ["in-progress"]
    agent.receive_datagram(0, answer(again), R_ADDR, 0.003)
    assert pair_states(agent) == ["succeeded"]


def test_check_on_a_nominating_relayed_pair_does_not_retrigger() -> None:
    agent = lone(controlling=True, remotes=(R_CANDIDATE,))
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), R_ADDR, 0.001)
    _, nomination = only_request(agent)
    assert "USE-CANDIDATE" in nomination.attributes
    agent.receive_datagram(0, peer_check(controlled=1), R_ADDR, 0.002)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]
    agent.receive_datagram(0, answer(nomination), R_ADDR, 0.003)
    assert agent.state == "completed"


# --- re-triggered checks after a retransmission (RFC 8445 §7.3.1.4) -------------


def resent_check(controlling: bool) -> tuple[IceAgent, Message]:
    """A lone agent whose check to the host candidate B went unanswered and was
    sent again at 0.5 s (lost, or dropped by B's NAT before B opened it).
    Returns the agent and that check."""
    agent = lone(controlling=controlling)
    _, first = only_request(agent)
    agent.handle_timer(0.5)
    _, again = only_request(agent)
    assert again.transaction_id == first.transaction_id
    assert pair_states(agent) == ["in-progress"]
    return agent, first


def test_peer_check_on_a_fresh_host_pair_sends_no_duplicate() -> None:
    # Our first check is still in flight: only the answer goes out.
    agent = lone(controlling=False)
    only_request(agent)
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 0.001)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]


def test_peer_check_after_a_resent_check_checks_again_at_once() -> None:
    agent, lost = resent_check(controlling=False)
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 0.6)
    (response, r), (check, c) = sent(agent)
    assert (r.message_class, response.addr) == (Class.SUCCESS, B_ADDR)
    assert (c.message_class, check.addr) == (Class.REQUEST, B_ADDR)
    assert c.transaction_id != lost.transaction_id
    assert agent.pairs[0].requests_sent == 3
    # The cancelled check is not sent again at its time (1.5 s); the new one
    # is, 0.5 s after it went out, and is re-triggered again once overdue.
    agent.handle_timer(1.1)
    ((_, resent),) = sent(agent)
    assert resent.transaction_id == c.transaction_id
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 1.2)
    (_, r2), (_, c2) = sent(agent)
    assert r2.message_class == Class.SUCCESS
    assert c2.transaction_id not in (lost.transaction_id, c.transaction_id)
    agent.receive_datagram(0, answer(c2), B_ADDR, 1.3)
    assert pair_states(agent) == ["succeeded"]


def test_peer_check_during_a_resent_nomination_nominates_again() -> None:
    agent = lone(controlling=True)
    _, check = only_request(agent)
    agent.receive_datagram(0, answer(check), B_ADDR, 0.001)
    _, nomination = only_request(agent)
    assert "USE-CANDIDATE" in nomination.attributes
    agent.handle_timer(0.501)
    _, again = only_request(agent)
    assert again.transaction_id == nomination.transaction_id
    # The answers were lost; the peer's check (consent, or its own check)
    # arrives: the nomination goes out again at once, still USE-CANDIDATE.
    agent.receive_datagram(0, peer_check(controlled=1), B_ADDR, 0.6)
    (_, r), (_, renominated) = sent(agent)
    assert r.message_class == Class.SUCCESS
    assert "USE-CANDIDATE" in renominated.attributes
    assert renominated.transaction_id != nomination.transaction_id
    agent.receive_datagram(0, answer(renominated), B_ADDR, 0.7)
    assert agent.state == "completed"


# --- canonical addresses (syncice._checklist.canonical) -----------------------


@pytest.mark.parametrize(
    ("text", "spelled", "address"),
    [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1", True),
        ("0:0:0:0:0:0:0:1", "::1", True),
        ("10.0.0.1", "10.0.0.1", True),
        ("host.local", "host.local", False),  # a name stays as it is
        ("10.0.0.256", "10.0.0.256", False),  # not an address: as it is
    ],
)
def test_canonical_spelling_cold_and_remembered(
    text: str, spelled: str, address: bool
) -> None:
    from syncice import _checklist

    _checklist._CANONICAL.clear()
    first = _checklist.canonical(text)
    assert (text in _checklist._CANONICAL) is address  # names are not kept
    assert first == _checklist.canonical(text) == spelled


def test_canonical_hands_out_one_string_and_stays_bounded() -> None:
    from syncice import _checklist

    _checklist._CANONICAL.clear()
    one = _checklist.canonical("2001:DB8::1")
    other = _checklist.canonical("2001:db8:0::1")
    assert one == other == "2001:db8::1"
    assert one is other  # one object for every spelling
    for n in range(3 * _checklist._CANONICAL_LIMIT):
        _checklist.canonical(f"10.1.{n >> 8}.{n & 255}")
        assert len(_checklist._CANONICAL) <= _checklist._CANONICAL_LIMIT
