"""How an ICE agent fails, says why, and lets its peer find out (issue 13).

Layer 1, in virtual time: two agents on :class:`syncice.testing.VirtualNet`
(:func:`tests.helpers.exact_net`, 1 ms per datagram), or one agent facing a
fake peer. Every failure is asserted at its exact virtual time, with its exact
reason.

- A failed or closed agent answers no check at all, so that the peer's checks
  fail and its consent expires (RFC 7675 §5.1).
- The controlled agent gives up once the controlling peer has sent no
  authenticated check for ``nomination_timeout`` (10 s).
- A response without valid MESSAGE-INTEGRITY is discarded, the unsigned 400
  and 401 too (RFC 8489 §9.1.5): a spoofed one fails nothing, and a check that
  only ever got such answers fails at its timeout, as an integrity violation.
- :class:`~syncice.events.IceFailed` names the cause.
- Every event, and a few other things, is logged at DEBUG on ``syncice.ice``.
"""

from __future__ import annotations

import logging
import re

import pytest

from syncice._ice_log import describe
from syncice.candidate import Candidate, candidate_priority
from syncice.events import (
    ConsentExpired,
    GatheringCompleted,
    IceCompleted,
    IceFailed,
    RelayLost,
    RoleChanged,
)
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Class, Message, Method, parse_message, short_term_key
from syncice.testing import VirtualNet
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
    serve,
)
from tests.test_ice_turn import A_PATH, relayed_pair

A_ADDR = ("10.0.0.1", 1000)
B_ADDR = ("10.0.0.2", 2000)
B_CANDIDATE = Candidate(
    "bbbb1", 1, "udp", candidate_priority(1, "host", 65535), *B_ADDR, "host"
)
WRONG = "w" * 22

#: The reason of an agent whose checks the peer rejected ``n`` times.
REJECTED = (
    "the peer rejected our checks with 401 Unauthenticated (unsigned, {}): "
    "check remote_username/remote_password"
)
#: The reason of a controlled agent that never heard from the controlling one.
NEVER_NOMINATED = (
    "no nomination: no check from the controlling peer in the 10 s since "
    "connect() (nomination_timeout)"
)


def failure(net: VirtualNet, agent: IceAgent) -> tuple[float, str]:
    """When the agent failed, and why."""
    ((at, event),) = [
        (t, e) for t, e in net.timeline(agent) if isinstance(e, IceFailed)
    ]
    assert isinstance(event, IceFailed)
    return at, event.reason


def answers_to(net: VirtualNet, agent: IceAgent) -> list[float]:
    """When authenticated success responses reached ``agent``."""
    mine = {(c.host, c.port) for c in agent.local_candidates}
    return [
        t + DELAY
        for t, _, dst, m in net.sent_messages(message_class=Class.SUCCESS)
        if dst in mine
    ]


def lone(controlling: bool, *, config: IceConfig | None = None) -> IceAgent:
    """Agent ``aaaa`` on A_ADDR (endpoint 0) with peer ``bbbb``'s credentials
    and candidate, end-of-candidates given, connected at 0, drained."""
    agent = make_agent(controlling, seed=7, ufrag="aaaa", config=config)
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(B_CANDIDATE, 0.0)
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    drain(agent)
    return agent


def two_components(controlling: bool) -> IceAgent:
    """Agent ``aaaa`` with components 1 (A_ADDR) and 2 (port 1001), each
    with one candidate of peer ``bbbb``, connected at 0."""
    agent = make_agent(controlling, seed=7, ufrag="aaaa", components=2)
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.add_host_candidate(1, 2, ("10.0.0.1", 1001))
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(B_CANDIDATE, 0.0)
    b2 = Candidate("bbbb1", 2, "udp", 1000, "10.0.0.2", 2001, "host")
    agent.add_remote_candidate(b2, 0.0)
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    return agent


def only_request(agent: IceAgent) -> Message:
    ((_, message),) = sent(agent)
    assert message.message_class == Class.REQUEST
    return message


def sent(agent: IceAgent) -> list[tuple[Address, Message]]:
    return [(tx.addr, parse_message(tx.data)) for tx in agent.datagrams_to_send()]


def answer(
    request: Message,
    *,
    error: int | None = None,
    key: bytes | None = short_term_key(password_of("bbbb")),
    mapped: Address | None = A_ADDR,
) -> bytes:
    """Peer bbbb's answer to ``request``; ``key=None`` leaves it unsigned."""
    attributes: dict[str, object] = {}
    if error is not None:
        attributes["ERROR-CODE"] = (error, "whatever the peer says")
    elif mapped is not None:
        attributes["XOR-MAPPED-ADDRESS"] = mapped
    message = Message(
        Method.BINDING,
        Class.ERROR if error is not None else Class.SUCCESS,
        request.transaction_id,
        attributes,  # type: ignore[arg-type]
    )
    return message.encode(key=key, fingerprint=True)


def peer_check(**kwargs: object) -> bytes:
    """A check from peer ``bbbb`` to agent ``aaaa``, signed with aaaa's
    password unless told otherwise."""
    args: dict[str, object] = {"username": "aaaa:bbbb", "password": password_of("aaaa")}
    args.update(kwargs)
    return check_request(**args)  # type: ignore[arg-type]


def run_alone(agent: IceAgent, until: float, reply: object = None) -> None:
    """Run a lone agent's timers until ``until``; ``reply(request, now)``
    answers each request it sends (1 ms later), or nothing when None."""
    now = 0.0
    while (at := agent.get_timer()) is not None and at <= until:
        now = at
        agent.handle_timer(now)
        for addr, message in sent(agent):
            if reply is not None and message.message_class == Class.REQUEST:
                data = reply(message, now)  # type: ignore[operator]
                if data is not None:
                    agent.receive_datagram(0, data, addr, now + 0.001)


# --- a failed or closed agent is silent (RFC 7675 §5.1) ------------------------------


def failed(controlling: bool) -> IceAgent:
    """A lone agent whose only check got a (signed) 500: failed at 1 ms."""
    agent = lone(controlling)
    agent.receive_datagram(0, answer(only_request(agent), error=500), B_ADDR, 0.001)
    assert agent.state == IceState.FAILED
    assert drain(agent)[-1] == IceFailed(
        reason="the peer answered our checks with 500 Server Error (once)"
    )
    return agent


@pytest.mark.parametrize("controlling", [True, False])
@pytest.mark.parametrize("how", ["failed", "closed"])
def test_a_failed_or_closed_agent_answers_no_check(controlling: bool, how: str) -> None:
    if how == "failed":
        agent = failed(controlling)
    else:
        agent = lone(controlling)
        agent.datagrams_to_send()
        agent.close()
    role = {"controlled": 1} if controlling else {"controlling": 1}
    for check in (
        peer_check(**role),  # authenticated
        peer_check(**role, use_candidate=True),
        peer_check(password=WRONG, **role),  # would get a 401
        check_request(username="", password=WRONG),  # would get a 400
    ):
        agent.receive_datagram(0, check, B_ADDR, 1.0)
        assert agent.datagrams_to_send() == []
    assert agent.stats.unexpected == 4
    assert agent.stats.unauthenticated == 0
    assert agent.pairs[0].requests_received == 0
    # Nothing is pending, no consent check will go out, and no data either.
    assert agent.get_timer() is None
    assert agent.route(1) is None
    assert not agent.send(1, b"data", 1.0)
    assert drain(agent) == []


def test_failure_stops_consent_on_a_component_already_selected() -> None:
    # Two components: 1 is selected (consent runs on it), 2 fails.
    agent = two_components(True)
    ((_, check1),) = sent(agent)
    agent.receive_datagram(0, answer(check1), B_ADDR, 0.001)
    agent.receive_datagram(0, answer(only_request(agent)), B_ADDR, 0.002)
    assert sorted(agent.selected) == [1]
    agent.handle_timer(0.02)
    check2 = only_request(agent)
    # A consent check would be due within 6 s; the failure cancels it.
    timer = agent.get_timer()
    assert timer is not None
    assert timer < 6.1
    agent.receive_datagram(1, answer(check2, error=500), ("10.0.0.2", 2001), 0.03)
    assert agent.state == IceState.FAILED
    assert agent.get_timer() is None
    assert agent.route(1) is None


def test_controlled_side_with_a_wrong_password_lets_its_peers_consent_expire() -> None:
    # b signs its checks with a wrong password: a answers them with unsigned
    # 401s, which b discards (RFC 8489 §9.1.5) while it sends its check again
    # and again. a's checks reach b, which answers: a selects at 4 ms.
    # b's check ends at 39.5 s, every answer discarded: b fails then, naming
    # the 401s, and answers no more. a's consent, last refreshed by the answer
    # to its last consent check before that, runs out 30 s later.
    net, a, b = agent_pair()
    b.set_remote_credentials("aaaa", WRONG)
    connect_pair(net, a, b, until=1.0)
    net.run(120.0)
    assert net.first(a, IceCompleted) == pytest.approx(0.004)
    assert failure(net, b) == (39.5, REJECTED.format("18 times"))
    last = max(t for t in answers_to(net, a) if t < 39.5)
    expired = net.first(a, ConsentExpired)
    assert expired == pytest.approx(last + 30.0)
    assert expired == pytest.approx(67.180, abs=0.001)
    assert (a.state, b.state) == (IceState.CLOSED, IceState.FAILED)
    # b answered a's consent checks while checking, and none after it failed.
    assert [t for t in answers_to(net, a) if t > 39.5] == []
    # b's consent checks never started: it never selected a pair.
    assert b.selected == {}


@pytest.mark.parametrize("closing", ["controlling", "controlled"])
def test_a_closed_peer_lets_consent_expire(closing: str) -> None:
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    net.run(12.0)
    gone, other = (a, b) if closing == "controlling" else (b, a)
    gone.close()
    net.run(100.0)
    last = max(answers_to(net, other))
    assert net.first(other, ConsentExpired) == pytest.approx(last + 30.0)
    assert other.state == IceState.CLOSED


# --- the nomination timeout -------------------------------------------------------


def test_controlling_side_with_a_wrong_password_times_the_controlled_one_out() -> None:
    # a signs its checks with a wrong password: b rejects them (401) and
    # never hears from a, though its own check succeeds at 2 ms. b gives up
    # 10 s after connect() and falls silent; a got 7 unsigned 401s by then
    # (its sends at 0, 0.5, 1.5, ... 9.5 s), and fails at 39.5 s.
    net, a, b = agent_pair()
    a.set_remote_credentials("bbbb", WRONG)
    connect_pair(net, a, b)
    assert b.pairs[0].valid
    assert failure(net, b) == (
        10.0,
        NEVER_NOMINATED + "; we rejected the peer's checks with 401 "
        "Unauthenticated (7 times): check its remote_username/remote_password",
    )
    assert failure(net, a) == (39.5, REJECTED.format("7 times"))
    assert a.stats.unauthenticated == 7


def test_nomination_timeout_counts_from_the_last_check() -> None:
    # The controlling peer checks, then falls silent (it gave up): the wait
    # counts from its last check.
    agent = lone(False)
    agent.receive_datagram(0, answer(only_request(agent)), B_ADDR, 0.001)
    for at in (0.5, 4.0, 7.25):
        agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, at)
    agent.datagrams_to_send()
    assert agent.get_timer() == 17.25
    agent.handle_timer(17.25)
    assert drain(agent)[-1] == IceFailed(
        reason="no nomination: no check from the controlling peer for 10 s "
        "(nomination_timeout)"
    )


def test_no_timeout_while_checks_arrive_though_the_nomination_is_late() -> None:
    # b's answers to a are lost for 15 s: a checks again and again, and its
    # checks reach b, which waits for the nomination far longer than the
    # nomination timeout, without failing.
    net, a, b = agent_pair()
    outage = [True]
    net.filters.append(
        lambda src, dst, data: (
            not (outage[0] and src == B_ADDR and data[:2] == b"\x01\x01")
        )
    )
    a.connect(0.0)
    b.connect(0.0)
    net.run(15.0)
    assert (a.state, b.state) == (IceState.CHECKING, IceState.CHECKING)
    outage[0] = False
    net.run(60.0)
    # a's check was last sent at 15.5 s: answered, nominated at once.
    assert net.first(b, IceCompleted) == pytest.approx(15.503)
    assert net.first(a, IceCompleted) == pytest.approx(15.504)
    assert (a.state, b.state) == (IceState.COMPLETED, IceState.COMPLETED)


def test_no_timeout_during_a_regular_nomination_after_nomination_wait() -> None:
    # a's better pair never gets an answer: a waits nomination_wait (9.5 s,
    # just under b's nomination timeout) after its other pair succeeded, and
    # sends b nothing meanwhile. b hears a's check at 21 ms: no timeout.
    config = IceConfig(nomination_wait=9.5)
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
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates:
            y.add_remote_candidate(c, 0.0)
        y.add_remote_candidate(None, 0.0)
    # a's better host reaches nobody; the other one works.
    net.filters.append(lambda src, dst, data: A_ADDR not in (src, dst))
    connect_pair(net, a, b)
    nominations = [
        t
        for t, *_, m in net.sent_messages(a, Class.REQUEST)
        if "USE-CANDIDATE" in m.attributes
    ]
    assert nominations == [pytest.approx(9.522)]
    assert net.first(b, IceCompleted) == pytest.approx(9.523)
    assert (a.state, b.state) == (IceState.COMPLETED, IceState.COMPLETED)


def test_switching_to_the_controlled_role_starts_the_wait_again() -> None:
    # a controls until the peer's 487 at 12 s tells it otherwise: the wait for
    # the peer's nomination starts then, not at connect().
    agent = lone(True, config=IceConfig(nomination_timeout=20.0))
    request = only_request(agent)
    run_alone(agent, 12.0)
    agent.datagrams_to_send()
    agent.receive_datagram(0, answer(request, error=487), B_ADDR, 12.0)
    assert RoleChanged(controlling=False) in drain(agent)
    only_request(agent)  # checked again at once, as controlled
    assert agent.get_timer() == 12.5
    run_alone(agent, 31.9)
    assert agent.state == "checking"
    agent.handle_timer(32.0)
    assert agent.state == IceState.FAILED


@pytest.mark.parametrize("check", [False, True])
def test_controlled_agent_without_remote_candidates_waits_for_the_peers_checks(
    check: bool,
) -> None:
    # End-of-candidates, and nothing to pair: a controlled agent may still
    # get the controlling peer's checks (peer-reflexive candidates), for the
    # nomination timeout. (The controlling agent waits for its patience
    # timer: tests/test_ice_patience.py.)
    agent = make_agent(False, seed=7, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    assert agent.state == "checking"
    assert agent.get_timer() == 10.0
    if check:
        agent.receive_datagram(
            0, peer_check(controlling=1, use_candidate=True), B_ADDR, 9.0
        )
        request = [m for _, m in sent(agent) if m.message_class == Class.REQUEST]
        agent.receive_datagram(0, answer(request[0]), B_ADDR, 9.001)
        assert agent.state == IceState.COMPLETED
        assert agent.remote_candidates[0].type == "prflx"
    else:
        agent.handle_timer(10.0)
        assert drain(agent)[-1] == IceFailed(
            reason=NEVER_NOMINATED + "; no remote candidates"
        )


@pytest.mark.parametrize("controlling", [True, False])
def test_without_local_candidates_ice_fails_at_once(controlling: bool) -> None:
    agent = make_agent(controlling, seed=7, ufrag="aaaa")
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(B_CANDIDATE, 0.0)
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    assert drain(agent) == [IceFailed(reason="no local candidates")]


def test_nomination_timeout_is_configurable() -> None:
    net, a, b = agent_pair(config=IceConfig(nomination_timeout=2.5))
    link_down(net)
    connect_pair(net, a, b, until=5.0)
    assert failure(net, b) == (
        2.5,
        "no nomination: no check from the controlling peer in the 2.5 s since "
        "connect() (nomination_timeout)",
    )


# --- responses without valid integrity (RFC 8489 §9.1.5) ------------------------------


def spoofer(net: VirtualNet, victim: Address, code: int) -> None:
    """Someone who sees the checks ``victim`` sends answers each at once
    (0.1 ms, before the peer can), from the checked address, with an
    unsigned ``code``."""

    def spoof(src: Address, dst: Address, data: bytes) -> bool:
        message = parse_message(data)
        if src == victim and message.message_class == Class.REQUEST:
            forged = Message(
                Method.BINDING,
                Class.ERROR,
                message.transaction_id,
                {"ERROR-CODE": (code, "spoofed")},
            )
            net.inject(dst, src, forged.encode(fingerprint=True), delay=0.0001)
        return True

    net.filters.append(spoof)


@pytest.mark.parametrize("code", [400, 401])
@pytest.mark.parametrize("victim", ["controlling", "controlled"])
def test_a_spoofed_unsigned_error_fails_nothing(victim: str, code: int) -> None:
    # One spoofed datagram used to fail the pair, and ICE, in 0 s. Discarded,
    # it changes nothing: the real answers come 1 ms later, and the agents
    # complete when they would have.
    net, a, b = agent_pair()
    target = a if victim == "controlling" else b
    addr = (target.local_candidates[0].host, target.local_candidates[0].port)
    spoofer(net, addr, code)
    connect_pair(net, a, b)
    assert (a.state, b.state) == (IceState.COMPLETED, IceState.COMPLETED)
    assert net.first(a, IceCompleted) == pytest.approx(0.004)
    assert net.first(b, IceCompleted) == pytest.approx(0.003)
    # Every check of the victim was spoofed, and every spoof discarded.
    checks = len(net.sent_messages(target, Class.REQUEST))
    assert checks >= 1
    assert target.stats.unauthenticated == checks
    assert all(p.faults.rejected == {} for p in target.pairs)  # moot: succeeded


def always_401(request: Message, now: float) -> bytes:
    """A peer that answers every check with an unsigned 401 (it does not know
    our credentials, or we do not know its)."""
    return answer(request, error=401, key=None)


@pytest.mark.parametrize(
    ("controlling", "nomination_timeout", "at", "reason"),
    [
        (True, 10.0, 39.5, REJECTED.format("18 times")),
        # The controlled agent never hears a check from this peer either:
        # its nomination timeout comes first, after 7 answers.
        (False, 10.0, 10.0, NEVER_NOMINATED + "; " + REJECTED.format("7 times")),
        (False, 60.0, 39.5, REJECTED.format("18 times")),
    ],
)
def test_a_peer_that_always_answers_an_unsigned_401(
    controlling: bool, nomination_timeout: float, at: float, reason: str
) -> None:
    # The check goes on (the 401s are discarded) until its own timeout, and
    # ends as an integrity violation, named with the 401s it got.
    net = exact_net()
    config = IceConfig(nomination_timeout=nomination_timeout)
    agent = make_agent(controlling, seed=7, ufrag="aaaa", config=config)
    net.attach(agent)
    net.peer(agent).add_host(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(B_CANDIDATE, 0.0)
    agent.add_remote_candidate(None, 0.0)
    serve(net, B_ADDR, lambda src, data: always_401(parse_message(data), net.now))
    agent.connect(0.0)
    net.run(100.0)
    assert failure(net, agent) == (at, reason)
    assert agent.stats.unauthenticated == (18 if at == 39.5 else 7)
    assert agent.get_timer() is None


def test_a_check_answered_only_by_discarded_responses_is_not_sent_anew() -> None:
    # A check from the peer on an In-Progress pair whose check was sent
    # again starts a new check at once (it was likely lost): not when the
    # check got answers, if only discarded ones. The transaction, and its
    # count of discarded answers, go on to its end.
    agent = lone(False)
    request = only_request(agent)
    agent.handle_timer(0.5)
    assert only_request(agent).transaction_id == request.transaction_id
    agent.receive_datagram(0, always_401(request, 0.5), B_ADDR, 0.501)
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 0.6)
    assert [m.message_class for _, m in sent(agent)] == [Class.SUCCESS]
    transaction = agent.pairs[0].transaction
    assert transaction is not None
    assert transaction.transaction_id == request.transaction_id


@pytest.mark.parametrize(
    "reply",
    [
        {"key": short_term_key(WRONG)},  # a success signed with another key
        {"key": None},  # a success without MESSAGE-INTEGRITY
        {"error": 500, "key": None},  # an unsigned error, not 400 or 401
    ],
)
def test_other_responses_without_valid_integrity_are_discarded(
    reply: dict[str, object],
) -> None:
    agent = lone(True, config=IceConfig(rto=0.1, max_sends=3, final_wait=1))
    request = only_request(agent)

    def bad(message: Message, now: float) -> bytes:
        return answer(message, **reply)  # type: ignore[arg-type]

    agent.receive_datagram(0, bad(request, 0.0), B_ADDR, 0.001)
    assert agent.pairs[0].faults.rejected == {0: 1}
    run_alone(agent, 10.0, bad)
    assert drain(agent)[-1] == IceFailed(
        reason="responses to our checks failed their integrity check (3 times): "
        "check remote_password"
    )


def test_discarded_answers_from_elsewhere_are_not_counted() -> None:
    # Only the answers from where the check went can be the peer's.
    agent = lone(True, config=IceConfig(rto=0.1, max_sends=2, final_wait=1))
    request = only_request(agent)
    agent.receive_datagram(0, always_401(request, 0.0), ("192.0.2.9", 9), 0.001)
    assert agent.stats.unauthenticated == 1
    transaction = agent.pairs[0].transaction
    assert transaction is not None
    assert transaction.discarded == 0
    run_alone(agent, 10.0)
    assert drain(agent)[-1] == IceFailed(
        reason="no response to 1 check, sent 2 times (timeout)"
    )


# --- failure reasons -----------------------------------------------------------------


def fail_with(reply: dict[str, object], addr: Address = B_ADDR) -> str:
    """The reason of a lone controlling agent whose only check got ``reply``."""
    agent = lone(True)
    agent.receive_datagram(0, answer(only_request(agent), **reply), addr, 0.001)  # type: ignore[arg-type]
    event = drain(agent)[-1]
    assert isinstance(event, IceFailed)
    return event.reason


@pytest.mark.parametrize(
    ("reply", "addr", "reason"),
    [
        (
            {"error": 500},
            B_ADDR,
            "the peer answered our checks with 500 Server Error (once)",
        ),
        (
            {"error": 420},
            B_ADDR,
            "the peer answered our checks with 420 Unknown Attribute (once)",
        ),
        ({"error": 438}, B_ADDR, "the peer answered our checks with 438 (once)"),
        # Signed: not a peer that could not authenticate us.
        (
            {"error": 401},
            B_ADDR,
            "the peer answered our checks with 401 Unauthenticated (once)",
        ),
        (
            {},
            ("10.0.0.2", 2999),
            "responses came from another address than the checks went to (once)",
        ),
        (
            {"mapped": None},
            B_ADDR,
            "success responses without XOR-MAPPED-ADDRESS (once)",
        ),
    ],
)
def test_the_reason_names_the_answer(
    reply: dict[str, object], addr: Address, reason: str
) -> None:
    assert fail_with(reply, addr) == reason


def test_a_peer_that_answers_487_whatever_role_we_claim() -> None:
    # A genuine role conflict takes one or two 487s; the third on a pair in
    # a row fails it, rather than switching roles for ever.
    agent = lone(True)
    request = only_request(agent)
    roles = []
    for i in range(3):
        roles.append(agent.controlling)
        agent.receive_datagram(0, answer(request, error=487), B_ADDR, 0.001 * (i + 1))
        if i < 2:
            request = only_request(agent)
    assert roles == [True, False, True]
    assert agent.state == IceState.FAILED
    assert drain(agent)[-1] == IceFailed(
        reason="the peer answered our checks with 487 Role Conflict (3 times)"
    )


def test_a_genuine_role_conflict_starts_the_count_again() -> None:
    agent = lone(True)
    for i in range(2):
        agent.receive_datagram(
            0, answer(only_request(agent), error=487), B_ADDR, 0.001 * (i + 1)
        )
    agent.receive_datagram(0, answer(only_request(agent)), B_ADDR, 0.003)
    assert agent.pairs[0].role_conflicts == 0
    assert agent.state == IceState.CHECKING  # nominating


def test_remote_candidates_refused_are_mentioned() -> None:
    agent = make_agent(True, seed=7, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(Candidate.from_sdp("x 1 tcp 1 10.0.0.2 9 typ host"), 0.0)
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    agent.handle_timer(39.5)  # the patience timer (RFC 8863)
    assert drain(agent)[-1] == IceFailed(
        reason="no remote candidates (1 refused: see the DEBUG log)"
    )


def test_remote_candidates_of_another_family_pair_with_nothing() -> None:
    agent = make_agent(True, seed=7, ufrag="aaaa")
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    agent.add_remote_candidate(
        Candidate.from_sdp("x 1 udp 1 2001:db8::2 9 typ host"), 0.0
    )
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    agent.handle_timer(39.5)  # the patience timer (RFC 8863)
    assert drain(agent)[-1] == IceFailed(
        reason="no remote candidate pairs with a local one (address family or "
        "component)"
    )


def test_causes_are_summed_over_pairs_authentication_first() -> None:
    # Three pairs: one rejected with 401s, one with 400s, one timed out. The
    # reason counts each over the check list, the peer's rejections first.
    config = IceConfig(rto=0.1, max_sends=2, final_wait=1)
    agent = make_agent(True, seed=7, ufrag="aaaa", config=config)
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    rejecting = {("10.0.0.2", 2000): 401, ("10.0.0.3", 2000): 400}
    for i, host in enumerate(["10.0.0.2", "10.0.0.3", "10.0.0.4"]):
        agent.add_remote_candidate(
            Candidate(f"b{i}", 1, "udp", 1000 - i, host, 2000, "host"), 0.0
        )
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    now = 0.0
    while (at := agent.get_timer()) is not None:
        for addr, message in sent(agent):
            code = rejecting.get(addr)
            if code is not None:
                agent.receive_datagram(
                    0, answer(message, error=code, key=None), addr, now + 0.001
                )
        now = at
        agent.handle_timer(now)
    assert drain(agent)[-1] == IceFailed(
        reason="the peer rejected our checks with 400 Bad Request (unsigned, "
        "2 times) and 401 Unauthenticated (unsigned, 2 times): check "
        "remote_username/remote_password; no response to 1 check, sent "
        "2 times (timeout)"
    )


def test_the_reason_of_a_lost_relay() -> None:
    # a has only a relay candidate; its TCP connection to the server breaks
    # while checking: the pairs fail, and ICE with them.
    net, a, b, _, _ = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    a.connect(net.now)
    net.flush()
    a.transport_lost(A_PATH, "connection reset", net.now)
    assert failure(net, a)[1] == "TURN relay lost: connection reset"


# --- diagnostics: the syncice.ice logger ------------------------------------------


#: The kinds of DEBUG and INFO lines, by pattern.
LINE_KINDS = [
    ("local candidate", r"local candidate \S+ 1 udp \d+ [\d.]+ \d+ typ host$"),
    ("remote candidate", r"remote candidate \S+ 1 udp \d+ [\d.]+ \d+ typ host$"),
    ("end-of-candidates", r"remote end-of-candidates$"),
    ("connect", r"connect: (controlling|controlled), 1 pair, 0 early checks$"),
    ("pair", r"pair host [\d.:]+ -> host [\d.:]+ \(component 1\): (\S+) -> (\S+)$"),
    (
        "nominating",
        r"nominating pair host [\d.:]+ -> host [\d.:]+ \(component 1\) "
        r"\(USE-CANDIDATE\)$",
    ),
    (
        "nominated",
        r"pair host [\d.:]+ -> host [\d.:]+ \(component 1\) nominated by the "
        r"peer \(USE-CANDIDATE\)$",
    ),
    ("selected", r"selected pair host [\d.:]+ -> host [\d.:]+ \(component 1\)$"),
    ("completed", r"ICE completed$"),
]


def line_kinds(records: list[logging.LogRecord], name: str) -> list[str]:
    out = []
    for record in records:
        message = record.getMessage()
        if not message.startswith(name + " "):
            continue
        text = message[len(name) + 1 :]
        for kind, pattern in LINE_KINDS:
            match = re.match(pattern, text)
            if match:
                out.append(":".join([kind, *match.groups()]))
                break
        else:
            raise AssertionError(f"unexpected line {message!r}")
    return out


def test_a_connect_is_logged_line_by_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="syncice.ice")
    net, a, b = agent_pair()
    connect_pair(net, a, b)
    records = [r for r in caplog.records if r.name == "syncice.ice"]
    assert line_kinds(records, "aaaa") == [
        "local candidate",
        "remote candidate",
        "end-of-candidates",
        "connect:controlling",
        "pair:frozen:waiting",
        "pair:waiting:in-progress",
        "pair:in-progress:succeeded",
        "nominating",
        "pair:succeeded:in-progress",
        "pair:in-progress:succeeded",
        "selected",
        "completed",
    ]
    assert line_kinds(records, "bbbb") == [
        "local candidate",
        "remote candidate",
        "end-of-candidates",
        "connect:controlled",
        "pair:frozen:waiting",
        "pair:waiting:in-progress",
        "pair:in-progress:succeeded",
        "nominated",
        "selected",
        "completed",
    ]
    # Every event was logged once, in the order it was queued.
    events = sum(len(net.events(x)) for x in (a, b))
    eventful = ("local candidate", "pair", "selected", "completed")
    logged = [k for k in line_kinds(records, "aaaa") + line_kinds(records, "bbbb")]
    assert sum(k.startswith(eventful) for k in logged) == events
    assert {r.levelno for r in records} == {logging.DEBUG, logging.INFO}
    assert [r.getMessage() for r in records if r.levelno == logging.INFO] == [
        "bbbb ICE completed",
        "aaaa ICE completed",
    ]
    # Nothing at WARNING or above, anywhere, and no password.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert password_of("aaaa") not in text
    assert password_of("bbbb") not in text


def test_failures_and_what_is_not_an_event_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncice.ice")
    # Controlling side with a wrong password, as above: both sides' lines.
    net, a, b = agent_pair()
    a.set_remote_credentials("bbbb", WRONG)
    connect_pair(net, a, b)
    messages = [r.getMessage() for r in caplog.records if r.name == "syncice.ice"]
    assert (
        "bbbb check from 10.0.0.1:1000 refused (401): wrong USERNAME or "
        "MESSAGE-INTEGRITY" in messages
    )
    assert (
        "aaaa response to a check on host 10.0.0.1:1000 -> host 10.0.0.2:2000 "
        "(component 1) discarded: unsigned 401 Unauthenticated" in messages
    )
    assert (
        "aaaa check on host 10.0.0.1:1000 -> host 10.0.0.2:2000 (component 1) "
        "failed: integrity violation: 7 times answered, never validly" in messages
    )
    assert "aaaa ICE failed: " + REJECTED.format("7 times") in messages
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        "bbbb ICE failed: " + failure(net, b)[1],
        "aaaa ICE failed: " + REJECTED.format("7 times"),
    ]
    assert WRONG not in "\n".join(messages)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_remote_candidates_dropped_are_logged_with_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="syncice.ice")
    agent = make_agent(
        True, seed=7, ufrag="aaaa", config=IceConfig(max_remote_candidates=1)
    )
    agent.add_host_candidate(0, 1, A_ADDR)
    agent.set_remote_credentials("bbbb", password_of("bbbb"))
    for sdp in (
        "t 1 tcp 1 10.0.0.2 9 typ host",
        "c 3 udp 1 10.0.0.2 9 typ host",
        "k 1 udp 1 10.0.0.2 9 typ weird",
        "h 1 udp 1 10.0.0.2 2000 typ host",
        "h 1 udp 1 10.0.0.2 2000 typ host",
        "f 1 udp 1 10.0.0.3 2000 typ host",
    ):
        agent.add_remote_candidate(Candidate.from_sdp(sdp), 0.0)
    agent.close()
    agent.add_remote_candidate(Candidate.from_sdp("z 1 udp 1 10.0.0.4 9 typ host"), 0.0)
    lines = [
        r.getMessage() for r in caplog.records if "remote candidate" in r.getMessage()
    ]
    assert lines == [
        "aaaa remote candidate t 1 tcp 1 10.0.0.2 9 typ host refused: not UDP",
        "aaaa remote candidate c 3 udp 1 10.0.0.2 9 typ host refused: "
        "no component 3 here",
        "aaaa remote candidate k 1 udp 1 10.0.0.2 9 typ weird refused: "
        "unknown type 'weird'",
        "aaaa remote candidate h 1 udp 1 10.0.0.2 2000 typ host",
        "aaaa remote candidate h 1 udp 1 10.0.0.2 2000 typ host ignored: "
        "a known address",
        "aaaa remote candidate f 1 udp 1 10.0.0.3 2000 typ host refused: "
        "max_remote_candidates (1) reached",
        "aaaa remote candidate z 1 udp 1 10.0.0.4 9 typ host ignored: ICE closed",
    ]
    assert agent.stats.candidates_refused == 4


def test_every_kind_of_event_has_its_line(caplog: pytest.LogCaptureFixture) -> None:
    # The events not seen above: gathering, role switches, consent expiry,
    # a lost relay.
    lines = {
        GatheringCompleted(): "gathering completed",
        RoleChanged(controlling=True): "role changed: now controlling",
        RoleChanged(controlling=False): "role changed: now controlled",
        ConsentExpired(component=2): "consent expired on component 2",
        RelayLost(component=1, reason="refresh failed"): (
            "TURN relay of component 1 lost: refresh failed"
        ),
    }
    for event, line in lines.items():
        text, args = describe(event)
        assert text % args == line
    caplog.set_level(logging.INFO, logger="syncice.ice")
    agent = lone(True)
    agent.set_role(False)  # too late: nothing
    agent.receive_datagram(0, answer(only_request(agent), error=487), B_ADDR, 0.001)
    assert [r.getMessage() for r in caplog.records] == [
        "aaaa role changed: now controlled"
    ]


def test_set_role_before_connect() -> None:
    agent = make_agent(True, seed=7, ufrag="aaaa")
    agent.set_role(True)
    assert drain(agent) == []
    agent.set_role(False)
    assert not agent.controlling
    assert drain(agent) == [RoleChanged(controlling=False)]


def test_the_nomination_timeout_names_the_components_still_waiting() -> None:
    # Two components: the peer nominates component 1 and then falls silent
    # (its consent checks on component 1 say nothing of component 2).
    agent = two_components(False)
    ((_, check1),) = sent(agent)
    agent.receive_datagram(0, answer(check1), B_ADDR, 0.001)
    nomination = peer_check(controlling=1, use_candidate=True)
    agent.receive_datagram(0, nomination, B_ADDR, 0.002)
    assert sorted(agent.selected) == [1]
    agent.receive_datagram(0, peer_check(controlling=1), B_ADDR, 5.0)  # consent
    run_alone(agent, 10.002)
    assert drain(agent)[-1] == IceFailed(
        reason="no nomination: no check from the controlling peer on component 2 "
        "for 10 s (nomination_timeout)"
    )


def test_a_relay_lost_before_it_had_pairs_is_not_a_reason() -> None:
    net, a, b, _, _ = relayed_pair()
    a.transport_lost(A_PATH, "connection reset", net.now)
    link_down(net)
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    assert "TURN" not in failure(net, a)[1]
