"""Checks that arrive before connect(): kept one per source, so that a
nomination is not forgotten behind the peer's later consent checks.

A controlled side that connects long after its controlling peer completed
(the peer nominated, then sent a consent check every ~5 s) used to keep only
the last ``max_early_checks`` (100) checks: after ~500 s the nomination was
among those dropped, and the controlled side never completed.
"""

from __future__ import annotations

from syncice.candidate import Candidate
from syncice.ice import IceAgent, IceConfig
from syncice.stun import Class, Message, Method, parse_message, short_term_key
from tests.helpers import check_request, make_agent, password_of

A_ADDR = ("10.0.0.1", 1000)
B_ADDR = ("10.0.0.2", 2000)


def controlled(config: IceConfig | None = None) -> IceAgent:
    agent = make_agent(False, seed=7, ufrag="aaaa", config=config)
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(
        Candidate("b", 1, "udp", 2130706431, B_ADDR[0], B_ADDR[1], "host"), 0.0
    )
    agent.add_remote_candidate(None, 0.0)
    return agent


def check(n: int, *, use_candidate: bool = False) -> bytes:
    """Peer bbbb's n-th check (its consent checks look the same)."""
    return check_request(
        username="aaaa:bbbb",
        password=password_of("aaaa"),
        controlling=1,
        use_candidate=use_candidate,
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


def test_a_nomination_survives_ten_minutes_of_consent_checks() -> None:
    agent = controlled()
    now = 0.0
    agent.receive_datagram(0, check(0, use_candidate=True), B_ADDR, now)
    for n in range(1, 121):  # 600 s of consent checks, every 5 s
        now += 5.0
        agent.receive_datagram(0, check(n), B_ADDR, now)
    # Every check was answered; one source, one entry: nothing dropped.
    answers = [parse_message(tx.data) for tx in agent.datagrams_to_send()]
    assert [m.message_class for m in answers] == [Class.SUCCESS] * 121
    assert agent.stats.early_checks_dropped == 0
    agent.connect(now)
    # Our triggered check on the pair goes out, and its answer completes:
    # the nomination seen ten minutes ago selects the pair.
    requests = [
        parse_message(tx.data)
        for tx in agent.datagrams_to_send()
        if parse_message(tx.data).message_class == Class.REQUEST
    ]
    assert requests
    agent.receive_datagram(0, answer(requests[0]), B_ADDR, now + 0.001)
    assert agent.state == "completed"
    assert agent.selected[1].remote_addr == B_ADDR


def test_sources_beyond_the_bound_drop_the_oldest() -> None:
    agent = controlled(IceConfig(max_early_checks=2))
    sources = [("10.0.0.2", 3000 + i) for i in range(3)]
    for n, source in enumerate(sources):
        agent.receive_datagram(0, check(n), source, 0.0)
        agent.receive_datagram(0, check(10 + n), source, 0.0)  # repeated
    assert agent.stats.early_checks_dropped == 1
    agent.connect(0.0)
    learnt = sorted(c.port for c in agent.remote_candidates if c.type == "prflx")
    assert learnt == [3001, 3002]
