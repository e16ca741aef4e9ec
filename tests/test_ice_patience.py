"""A peer that signals no candidates is reached through its checks (RFC 8863).

Browsers without a media permission signal no candidates at all: the only
way to them is the peer-reflexive candidate their first check creates. A
controlling agent given end-of-candidates and nothing to pair used to fail
at connect() ("no remote candidates"), even when the peer's first check came
a millisecond later. It now waits for such checks for the patience timer of
RFC 8863 §3 (:attr:`IceConfig.patience`, the time one check takes to fail:
39.5 s by default), as the controlled agent waits for its nomination timeout.

Layer 1, in virtual time: one agent facing a fake peer, every time exact.
"""

from __future__ import annotations

import pytest

from syncice.candidate import Candidate
from syncice.events import IceCompleted, IceFailed
from syncice.ice import IceAgent, IceConfig
from syncice.stun import Class, Message, Method, parse_message, short_term_key
from tests.helpers import (
    Address,
    agent_pair,
    check_request,
    connect_pair,
    drain,
    make_agent,
    password_of,
)

A_ADDR = ("10.0.0.1", 1000)
B_ADDR = ("10.0.0.2", 2000)


def silent_peer(
    *,
    config: IceConfig | None = None,
    connect: bool = True,
    remotes: tuple[Candidate, ...] = (),
) -> IceAgent:
    """Controlling agent ``aaaa`` on A_ADDR whose peer ``bbbb`` signalled
    its credentials, ``remotes`` (none by default) and end-of-candidates."""
    agent = make_agent(True, seed=7, ufrag="aaaa", config=config)
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    for remote in remotes:
        agent.add_remote_candidate(remote, 0.0)
    agent.add_remote_candidate(None, 0.0)
    if connect:
        agent.connect(0.0)
    return agent


def peer_check(n: int) -> bytes:
    """Peer bbbb's n-th check, as a controlled browser sends it."""
    return check_request(
        username="aaaa:bbbb",
        password=password_of("aaaa"),
        controlled=2,
        transaction_id=n.to_bytes(12, "big"),
    )


def answer(request: Message) -> bytes:
    response = Message(
        Method.BINDING,
        Class.SUCCESS,
        request.transaction_id,
        {"XOR-MAPPED-ADDRESS": A_ADDR},
    )
    return response.encode(key=short_term_key(password_of("bbbb")), fingerprint=True)


def sent(agent: IceAgent) -> list[tuple[Address, Message]]:
    return [(tx.addr, parse_message(tx.data)) for tx in agent.datagrams_to_send()]


def run_answering(agent: IceAgent, now: float, until: float) -> list[Message]:
    """Answer every request the agent sends (1 ms later) until ``until`` or
    completion; the requests, in order."""
    requests: list[Message] = []
    pending = sent(agent)
    while agent.state == "checking":
        for addr, message in pending:
            if message.message_class == Class.REQUEST:
                requests.append(message)
                agent.receive_datagram(0, answer(message), addr, now + 0.001)
        at = agent.get_timer()
        if at is None or at > until:
            break
        now = max(now, at)
        agent.handle_timer(now)
        pending = sent(agent)
    return requests


def test_patience_is_the_time_one_check_takes_to_fail() -> None:
    assert IceConfig().patience == 39.5
    assert IceConfig(rto=0.1, max_sends=2, final_wait=2).patience == pytest.approx(0.3)
    # Rc 7 without a cap: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, then 16 RTOs.
    assert IceConfig(max_sends=7, rto_max=None).patience == 39.5


@pytest.mark.parametrize("at", [0.001, 5.0, 39.4])
def test_a_check_after_connect_is_answered_and_connects(at: float) -> None:
    agent = silent_peer()
    # Still checking: the peer may yet check us; the patience timer is set.
    assert agent.state == "checking"
    assert not [e for e in drain(agent) if isinstance(e, IceFailed)]
    assert agent.get_timer() == 39.5
    agent.receive_datagram(0, peer_check(1), B_ADDR, at)
    (response,) = [m for _, m in sent(agent) if m.message_class == Class.SUCCESS]
    assert response.attributes["XOR-MAPPED-ADDRESS"] == B_ADDR
    # The check made a peer-reflexive candidate and a pair; our triggered
    # check on it, then the nomination (USE-CANDIDATE), complete ICE.
    (learnt,) = agent.remote_candidates
    assert (learnt.type, learnt.host, learnt.port) == ("prflx", *B_ADDR)
    run_answering(agent, at, until=at + 2.0)
    assert agent.state == "completed"
    assert agent.selected[1].remote_addr == B_ADDR
    assert drain(agent)[-1] == IceCompleted()


def test_a_check_before_connect_connects_at_once() -> None:
    agent = silent_peer(connect=False)
    agent.receive_datagram(0, peer_check(1), B_ADDR, 0.0)
    agent.connect(0.5)
    requests = run_answering(agent, 0.5, until=3.0)
    assert agent.state == "completed"
    assert "USE-CANDIDATE" in requests[-1].attributes


def test_without_any_check_ice_fails_when_patience_runs_out() -> None:
    agent = silent_peer()
    drain(agent)
    agent.handle_timer(39.499)
    assert agent.state == "checking"
    agent.handle_timer(39.5)
    assert agent.state == "failed"
    assert drain(agent) == [IceFailed(reason="no remote candidates")]
    assert agent.get_timer() is None
    # Failed: the peer's late check gets no answer.
    agent.receive_datagram(0, peer_check(1), B_ADDR, 40.0)
    assert sent(agent) == []


def test_patience_follows_the_check_schedule() -> None:
    agent = silent_peer(config=IceConfig(rto=0.1, max_sends=2, final_wait=2))
    at = agent.get_timer()
    assert at is not None
    assert at == pytest.approx(0.3)
    agent.handle_timer(at)
    assert agent.state == "failed"


def test_a_pair_still_in_checks_outlives_patience() -> None:
    # The check at 39.4 s starts a pair; when patience runs out at 39.5 s
    # that pair is still in checks, and it is what decides.
    agent = silent_peer()
    agent.receive_datagram(0, peer_check(1), B_ADDR, 39.4)
    drain(agent)
    sent(agent)  # our triggered check: not answered yet
    agent.handle_timer(39.5)
    assert agent.state == "checking"
    run_answering(agent, 39.5, until=42.0)
    assert agent.state == "completed"


def test_the_controlled_side_still_waits_its_nomination_timeout() -> None:
    agent = make_agent(False, seed=7, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    assert agent.get_timer() == 10.0
    agent.handle_timer(10.0)
    assert agent.state == "failed"


def test_two_agents_one_signalling_nothing() -> None:
    # b (controlled) signals no candidate to a; a knows b's; both connect
    # through the peer-reflexive candidate b's check gives a.
    net, a, b = agent_pair(exchange=False)
    b.add_remote_candidate(a.local_candidates[0], 0.0)
    b.add_remote_candidate(None, 0.0)
    a.add_remote_candidate(None, 0.0)
    connect_pair(net, a, b)
    assert a.state == b.state == "completed"
    assert a.selected[1].remote.type == "prflx"
    assert [e for _, e in net.timeline(a) if isinstance(e, IceFailed)] == []


def test_a_remote_candidate_of_another_family_does_not_end_the_wait() -> None:
    # (Nothing to pair with: it is the same as no candidate.)
    v6 = Candidate("x", 1, "udp", 1, "2001:db8::2", 9, "host")
    agent = silent_peer(remotes=(v6,))
    assert agent.state == "checking"
    agent.receive_datagram(0, peer_check(1), B_ADDR, 1.0)
    run_answering(agent, 1.0, until=4.0)
    assert agent.state == "completed"
