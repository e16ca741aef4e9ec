"""ICE restart (RFC 8445 §9) and renomination (libwebrtc's NOMINATION) in the
sans-IO agent, layer 1: two agents on :mod:`syncice.testing`'s virtual
network in virtual time, or one agent fed hand-made checks.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from syncice.candidate import Candidate, candidate_priority
from syncice.events import (
    ConsentExpired,
    IceCompleted,
    IceEvent,
    RestartCompleted,
    SelectedPairChanged,
)
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Class, Message, Method, parse_message, short_term_key
from syncice.testing import Link, VirtualNet
from tests.helpers import (
    agent_pair,
    check_request,
    connect_pair,
    drain,
    make_agent,
    password_of,
)

A_ADDR = ("10.0.0.1", 1000)


def state(agent: IceAgent) -> IceState:
    """The agent's state now (a function: mypy would narrow the property)."""
    return agent.state


def exchange_new(net: VirtualNet, a: IceAgent, b: IceAgent) -> None:
    """What the applications signal after a restart: each side's (new)
    credentials and candidates, and end-of-candidates."""
    a.set_remote_credentials(b.local_username, b.local_password)
    b.set_remote_credentials(a.local_username, a.local_password)
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates:
            y.add_remote_candidate(c, net.now)
        y.add_remote_candidate(None, net.now)


def stream(
    net: VirtualNet, a: IceAgent, b: IceAgent, seconds: float, sent: list[int]
) -> None:
    """Send a numbered datagram each way every millisecond for ``seconds``."""
    pa, pb = net.peer(a), net.peer(b)
    end = net.now + seconds
    while net.now < end:
        n = len(sent)
        sent.append(n)
        assert pa.send(n.to_bytes(4, "big"))
        assert pb.send(n.to_bytes(4, "big"))
        net.run(net.now + 0.001)


def numbers(net: VirtualNet, agent: IceAgent) -> list[int]:
    return [int.from_bytes(d, "big") for d, _ in net.data(agent)]


def events_after(net: VirtualNet, agent: IceAgent, t: float) -> list[IceEvent]:
    return [e for at, e in net.timeline(agent) if at >= t]


@pytest.mark.parametrize("starter", ["controlling", "controlled"])
def test_a_restart_moves_data_to_the_new_generation_without_a_loss(
    starter: str,
) -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    assert a.state == b.state == IceState.COMPLETED
    old_ufrag = a.local_username, b.local_username
    sent: list[int] = []
    stream(net, a, b, 0.05, sent)
    t0 = net.now
    first, second = (a, b) if starter == "controlling" else (b, a)
    old_pair = first.selected[1]
    first.restart()
    assert state(first) is IceState.NEW
    assert first.restarting
    # Stats show the old pair, still selected, and nothing of the new yet.
    [stats] = first.pair_stats()
    assert stats.selected
    assert (stats.local, stats.remote) == (old_pair.valid_local, old_pair.remote)
    assert first.old_pairs() == [old_pair]
    # The other side sees the restart in the new remote ufrag and restarts too.
    second.set_remote_credentials(first.local_username, first.local_password)
    assert state(second) is IceState.NEW
    assert second.generation == 1
    stream(net, a, b, 0.05, sent)  # data goes on over the old pairs
    first.set_remote_credentials(second.local_username, second.local_password)
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates:
            y.add_remote_candidate(c, net.now)
        y.add_remote_candidate(None, net.now)
    a.connect(net.now)
    b.connect(net.now)
    stream(net, a, b, 1.0, sent)
    net.run(net.now + 0.01)
    for agent in (a, b):
        assert state(agent) is IceState.COMPLETED
        assert not agent.restarting
        assert agent.generation == 1
        kinds = [type(e) for e in events_after(net, agent, t0)]
        assert kinds.count(SelectedPairChanged) == 1
        assert kinds.count(RestartCompleted) == 1
        assert kinds.index(SelectedPairChanged) < kinds.index(RestartCompleted)
        assert IceCompleted in kinds
        # Every datagram, each way, in order: none lost across the switch.
        assert numbers(net, agent) == sent
    assert (a.local_username, b.local_username) != old_ufrag
    restarted = [e for e in events_after(net, a, t0) if isinstance(e, RestartCompleted)]
    assert restarted == [RestartCompleted(generation=1)]


def test_restart_with_given_credentials_and_its_refusals() -> None:
    net, a, b = agent_pair()
    with pytest.raises(ValueError, match="state new"):
        a.restart()
    connect_pair(net, a, b)
    with pytest.raises(ValueError, match="new username and password"):
        a.restart(local_username=a.local_username)
    with pytest.raises(ValueError, match="username"):
        a.restart(local_username="x")  # too short (RFC 8839)
    a.restart(local_username="cccc", local_password=password_of("cccc"))
    assert (a.local_username, a.local_password) == ("cccc", password_of("cccc"))
    assert a.remote_username is None
    assert a.remote_candidates == []
    assert [c.host for c in a.local_candidates] == ["10.0.0.1"]  # reused
    assert a.controlling
    a.close()
    with pytest.raises(ValueError, match="state closed"):
        a.restart()


def consent_checks(net: VirtualNet, agent: IceAgent, since: float) -> list[str]:
    """The USERNAME of each request ``agent`` sent since ``since``."""
    return [
        m.attributes["USERNAME"]
        for t, _, _, m in net.sent_messages(agent, Class.REQUEST)
        if t >= since
    ]


def test_consent_runs_on_the_old_pair_with_the_old_credentials_until_the_switch() -> (
    None
):
    config = IceConfig(consent_interval=1.0, consent_timeout=4.0)
    net, a, b = agent_pair(config=config)
    connect_pair(net, a, b)
    a.restart(local_username="cccc", local_password=password_of("cccc"))
    b.restart(local_username="dddd", local_password=password_of("dddd"))
    t0 = net.now
    # Ten seconds without signalling: far beyond consent_timeout, yet the old
    # pair's consent holds, each side answering the other's old-ufrag checks.
    net.run(t0 + 10.0)
    assert state(a) is IceState.NEW
    assert state(b) is IceState.NEW
    assert ConsentExpired not in net.types(a)
    assert net.peer(a).send(b"still here")
    net.run(net.now + 0.01)
    assert net.data(b)[-1] == (b"still here", 1)
    names = consent_checks(net, a, t0)
    assert len(names) >= 8
    assert set(names) == {"bbbb:aaaa"}
    exchange_new(net, a, b)
    t1 = net.now
    connect_pair(net, a, b)
    net.run(net.now + 5.0)
    assert state(a) is IceState.COMPLETED
    assert set(consent_checks(net, a, t1)) == {"dddd:cccc"}


def test_checks_with_the_old_ufrag_are_answered_until_the_switch_then_refused() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    b_addr = ("10.0.0.2", 2000)
    a.restart(local_username="cccc", local_password=password_of("cccc"))
    net.flush()
    old = check_request(username="aaaa:bbbb", password=password_of("aaaa"))
    a.receive_datagram(0, old, b_addr, net.now)
    (tx,) = a.datagrams_to_send()
    answer = parse_message(tx.data)
    assert answer.message_class == Class.SUCCESS
    assert answer.check_integrity(short_term_key(password_of("aaaa")))
    # A check with the new ufrag before connect() is kept, answered.
    new = check_request(username="cccc:dddd", password=password_of("cccc"))
    a.receive_datagram(0, new, b_addr, net.now)
    (tx,) = a.datagrams_to_send()
    assert parse_message(tx.data).check_integrity(short_term_key(password_of("cccc")))
    b.restart(local_username="dddd", local_password=password_of("dddd"))
    exchange_new(net, a, b)
    connect_pair(net, a, b)
    assert state(a) is IceState.COMPLETED
    assert not a.restarting
    net.flush()
    a.receive_datagram(0, old, b_addr, net.now)
    (tx,) = a.datagrams_to_send()
    refused = parse_message(tx.data)
    assert refused.message_class == Class.ERROR
    assert refused.error_code == 401


def test_a_restart_recovers_over_another_pair_when_the_old_one_is_blackholed() -> None:
    config = IceConfig(consent_interval=1.0, consent_timeout=10.0)
    net, a, b = agent_pair(
        config=config,
        a_hosts=("10.0.0.1", "10.0.1.1"),
        b_hosts=("10.0.0.2", "10.0.1.2"),
    )
    connect_pair(net, a, b)
    old = a.selected[1]
    dead = (old.local.host, old.remote.host)
    net.filters.append(
        lambda src, dst, data: (src[0], dst[0]) not in (dead, dead[::-1])
    )
    net.run(net.now + 3.0)  # consent checks go unanswered; not yet expired
    assert state(a) is IceState.COMPLETED
    a.restart()
    b.restart()
    exchange_new(net, a, b)
    t0 = net.now
    connect_pair(net, a, b)
    assert state(a) is b.state is IceState.COMPLETED
    new = a.selected[1]
    assert (new.local.host, new.remote.host) != dead
    assert net.peer(a).send(b"over the other path")
    net.run(net.now + 0.01)
    assert net.data(b)[-1] == (b"over the other path", 1)
    net.run(net.now + 20.0)  # the old pair's consent is no concern any more
    assert state(a) is IceState.COMPLETED
    assert ConsentExpired not in [type(e) for e in events_after(net, a, t0)]


def test_consent_lost_on_the_old_pair_before_the_switch_closes() -> None:
    config = IceConfig(consent_interval=1.0, consent_timeout=3.0)
    net, a, b = agent_pair(config=config)
    connect_pair(net, a, b)
    a.restart()
    net.filters.append(lambda src, dst, data: False)
    net.run(net.now + 5.0)
    assert state(a) is IceState.CLOSED
    assert ConsentExpired in net.types(a)


def test_a_restart_of_a_restart_keeps_data_on_the_first_old_pair() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    old = a.selected[1]
    a.restart()
    a.set_remote_credentials("zzzz", password_of("zzzz"))
    a.connect(net.now)  # checks to nobody (no candidate)
    a.restart()
    assert a.route(1) == (old.endpoint, old.remote_addr)
    b.set_remote_credentials(a.local_username, a.local_password)
    exchange_new(net, a, b)
    connect_pair(net, a, b)
    assert state(a) is IceState.COMPLETED
    assert a.generation == 2
    assert [type(e) for e in net.events(a)].count(RestartCompleted) == 1


# --- renomination (libwebrtc's NOMINATION, 0xC001) ----------------------------

B1 = Candidate(
    "bbbb1", 1, "udp", candidate_priority(1, "host", 65535), "10.0.0.2", 2000, "host"
)
B2 = Candidate(
    "bbbb2", 1, "udp", candidate_priority(1, "host", 100), "10.0.1.2", 2001, "host"
)


def renominating_check(nomination: int | None, tid: int) -> bytes:
    """A check from the controlling peer ``bbbb``, with NOMINATION."""
    attributes: dict[str, object] = {
        "USERNAME": "aaaa:bbbb",
        "PRIORITY": 1862270975,
        "ICE-CONTROLLING": 1,
    }
    if nomination is not None:
        attributes["NOMINATION"] = nomination
    message = Message(
        Method.BINDING,
        Class.REQUEST,
        tid.to_bytes(12, "big"),
        attributes,  # type: ignore[arg-type]
    )
    return message.encode(key=short_term_key(password_of("aaaa")), fingerprint=True)


def answer_checks(agent: IceAgent, now: float) -> None:
    """Answer every check the agent sent, as peer ``bbbb`` would."""
    for tx in agent.datagrams_to_send():
        request = parse_message(tx.data)
        if request.message_class != Class.REQUEST:
            continue
        response = Message(
            Method.BINDING,
            Class.SUCCESS,
            request.transaction_id,
            {"XOR-MAPPED-ADDRESS": A_ADDR},
        )
        data = response.encode(
            key=short_term_key(password_of("bbbb")), fingerprint=True
        )
        agent.receive_datagram(tx.endpoint, data, tx.addr, now)


def controlled_agent() -> IceAgent:
    agent = make_agent(False, seed=7, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    for c in (B1, B2):
        agent.add_remote_candidate(c, 0.0)
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    return agent


def selected_remote(agent: IceAgent) -> str:
    return agent.selected[1].remote.host


def test_nomination_attribute_round_trips() -> None:
    message = parse_message(renominating_check(7, 1))
    assert message.attributes["NOMINATION"] == 7


def test_the_controlled_agent_switches_to_the_highest_nomination() -> None:
    agent = controlled_agent()
    now = 0.0
    for _ in range(10):  # both pairs checked and valid
        answer_checks(agent, now)
        now += 0.05
        agent.handle_timer(now)
    answer_checks(agent, now)
    assert all(p.valid for p in agent.pairs)
    drain(agent)
    b1, b2 = ("10.0.0.2", 2000), ("10.0.1.2", 2001)
    agent.receive_datagram(0, renominating_check(1, 1), b1, now)
    assert state(agent) is IceState.COMPLETED
    assert selected_remote(agent) == "10.0.0.2"
    # A higher value on a pair of lower priority: the agent switches.
    agent.receive_datagram(0, renominating_check(2, 2), b2, now)
    assert selected_remote(agent) == "10.0.1.2"
    events = drain(agent)
    assert [type(e) for e in events].count(SelectedPairChanged) == 2
    # A lower or equal value, or a plain check, changes nothing.
    agent.receive_datagram(0, renominating_check(1, 3), b1, now)
    agent.receive_datagram(0, renominating_check(2, 4), b1, now)
    agent.receive_datagram(0, renominating_check(None, 5), b1, now)
    assert selected_remote(agent) == "10.0.1.2"
    assert SelectedPairChanged not in [type(e) for e in drain(agent)]
    # Each check was answered with a signed success.
    answers = [parse_message(tx.data) for tx in agent.datagrams_to_send()]
    assert [m.message_class for m in answers].count(Class.SUCCESS) >= 3
    agent.receive_datagram(0, renominating_check(3, 6), b1, now)
    assert selected_remote(agent) == "10.0.0.2"


def test_a_renominated_pair_not_valid_yet_is_checked_then_selected() -> None:
    agent = controlled_agent()
    b1, b2 = ("10.0.0.2", 2000), ("10.0.1.2", 2001)
    # Only the first pair answers our checks.
    now = 0.0
    for tx in agent.datagrams_to_send():
        if tx.addr == b1:
            response = Message(
                Method.BINDING,
                Class.SUCCESS,
                parse_message(tx.data).transaction_id,
                {"XOR-MAPPED-ADDRESS": A_ADDR},
            )
            agent.receive_datagram(
                0,
                response.encode(
                    key=short_term_key(password_of("bbbb")), fingerprint=True
                ),
                b1,
                now,
            )
    agent.receive_datagram(0, renominating_check(1, 1), b1, now)
    assert state(agent) is IceState.COMPLETED
    assert selected_remote(agent) == "10.0.0.2"
    agent.datagrams_to_send()
    agent.receive_datagram(0, renominating_check(5, 2), b2, now)
    assert selected_remote(agent) == "10.0.0.2"  # not valid yet: checked first
    answer_checks(agent, now + 0.01)
    assert selected_remote(agent) == "10.0.1.2"


def test_regular_nomination_is_unchanged_without_the_attribute() -> None:
    agent = controlled_agent()
    check = check_request(
        username="aaaa:bbbb",
        password=password_of("aaaa"),
        controlling=1,
        use_candidate=True,
    )
    answer_checks(agent, 0.0)
    agent.receive_datagram(0, check, ("10.0.0.2", 2000), 0.0)
    assert state(agent) is IceState.COMPLETED
    assert selected_remote(agent) == "10.0.0.2"
    agent.datagrams_to_send()
    agent.receive_datagram(0, check, ("10.0.1.2", 2001), 0.0)
    # A lower-priority pair nominated by USE-CANDIDATE does not take over.
    assert selected_remote(agent) == "10.0.0.2"


def test_two_components_switch_one_by_one_then_the_restart_completes() -> None:
    net, a, b = agent_pair(components=2)
    connect_pair(net, a, b)
    marks = {a: len(net.timeline(a)), b: len(net.timeline(b))}
    a.restart()
    b.set_remote_credentials(a.local_username, a.local_password)  # b restarts
    exchange_new(net, a, b)
    seen_half = False

    def half_switched() -> bool:
        nonlocal seen_half
        # One component on its new pair, the other still on the old one.
        seen_half |= a.restarting and len(a.selected) == 1
        return False

    a.connect(net.now)
    b.connect(net.now)
    net.run(net.now + 5.0, stop=half_switched)
    assert seen_half
    for agent in (a, b):
        kinds = [type(e) for _, e in net.timeline(agent)[marks[agent] :]]
        switches = [i for i, k in enumerate(kinds) if k is SelectedPairChanged]
        assert len(switches) == 2
        assert kinds.count(RestartCompleted) == 1
        assert kinds.index(RestartCompleted) > switches[-1]
        assert agent.route(1) is not None
        assert agent.route(2) is not None


def test_the_old_generation_answers_but_ignores_a_renomination() -> None:
    net, a, b = agent_pair(controlling=(False, True))
    connect_pair(net, a, b)
    old = a.selected[1]
    a.restart()
    net.flush()
    check = renominating_check(9, 77)  # aaaa:bbbb, the old credentials
    a.receive_datagram(0, check, old.remote_addr, net.now)
    (tx,) = a.datagrams_to_send()
    assert parse_message(tx.data).message_class == Class.SUCCESS
    assert a.route(1) == (old.endpoint, old.remote_addr)
    assert a.restarting


def test_the_end_of_a_restart_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="syncice.ice")
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    a.restart()
    b.restart()
    exchange_new(net, a, b)
    connect_pair(net, a, b)
    lines = [r.getMessage() for r in caplog.records]
    assert "aaaa ICE restart completed: generation 1" in lines
    assert any(line.startswith("aaaa ICE restart: generation 1") for line in lines)


def test_a_second_restart_before_connect_replaces_the_first() -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    old = a.selected[1]
    a.restart()
    a.restart(local_username="eeee", local_password=password_of("eeee"))
    assert state(a) is IceState.NEW
    assert a.generation == 2
    assert a.route(1) == (old.endpoint, old.remote_addr)
    b.set_remote_credentials(a.local_username, a.local_password)
    exchange_new(net, a, b)
    connect_pair(net, a, b)
    assert state(a) is IceState.COMPLETED
    assert not a.restarting


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    starter=st.sampled_from(["a", "b"]),
)
def test_under_loss_a_restart_never_leaves_data_without_a_route(
    seed: int, loss: float, starter: str
) -> None:
    """Loss, duplication and jitter on every link, a restart from either
    side: at every step of the run, each side has a route for its data, and
    both complete on the new generation."""
    link = Link(delay=0.005, jitter=0.01, loss=loss, duplicate=0.05)
    net = VirtualNet(seed=seed, up=link, down=Link())
    net, a, b = agent_pair(net=net, seed=seed % 1000 + 1)
    connect_pair(net, a, b)
    # The first connect losing too much is not what is tested here.
    assume(state(a) is IceState.COMPLETED and state(b) is IceState.COMPLETED)
    first, second = (a, b) if starter == "a" else (b, a)
    first.restart()
    second.set_remote_credentials(first.local_username, first.local_password)
    exchange_new(net, a, b)
    a.connect(net.now)
    b.connect(net.now)
    routes_missing: list[float] = []

    def look() -> bool:
        if a.route(1) is None or b.route(1) is None:
            routes_missing.append(net.now)
        return not (a.restarting or b.restarting)

    net.run(net.now + 25.0, stop=look)  # within consent's 30 s
    assert routes_missing == []
    assert state(a) is IceState.COMPLETED
    assert state(b) is IceState.COMPLETED
    assert a.generation == b.generation == 1
