"""Local ICE-lite (RFC 8445 §2.5, ``syncice._lite``) in the sans-IO agent, in
virtual time (layer 1; ``tests/test_lite.py`` has both facades)."""

from __future__ import annotations

import logging

import pytest

from syncice.events import ConsentExpired, RoleChanged
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Class, parse_message
from syncice.testing import Link, StunServer, VirtualNet
from tests.helpers import check_request

LITE = IceConfig(ice_lite=True)


def _net() -> VirtualNet:
    net = VirtualNet(seed=1, up=Link(delay=0.001), down=Link())
    net.add_host("10.0.0.1")
    net.add_host("10.0.0.2")
    return net


def test_config_field_is_checked() -> None:
    assert IceConfig().ice_lite is False
    with pytest.raises(TypeError, match="ice_lite must be a bool"):
        IceConfig(ice_lite=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("full_controlling", [True, False])
def test_full_against_lite_connects_and_lite_sends_no_request(
    full_controlling: bool,
) -> None:
    """The full peer nominates whatever role it was given: a controlled one
    that was not told of the lite peer meets a 487 and takes control."""
    net = _net()
    full = net.add_agent("full", "10.0.0.1", controlling=full_controlling)
    lite = net.add_agent("lite", "10.0.0.2", controlling=False, config=LITE)
    outcome = net.connect(full, lite)
    assert outcome.connected, outcome.reason
    assert full.agent.controlling
    assert not lite.agent.controlling
    assert net.sent_messages(lite, Class.REQUEST) == []
    # The lite agent answered every check, signed.
    answers = net.sent_messages(lite, Class.SUCCESS)
    assert answers
    assert all(m.integrity is not None for _, _, _, m in answers)
    errors = [m.error_code for _, _, _, m in net.sent_messages(lite, Class.ERROR)]
    assert errors == ([] if full_controlling else [487])
    assert full.agent.selected[1].remote == lite.agent.local_candidates[0]
    assert lite.agent.selected[1].remote_addr == (
        full.agent.local_candidates[0].host,
        full.agent.local_candidates[0].port,
    )
    # Data flows both ways on the pair.
    assert lite.agent.send(1, b"\x80hello", net.now)
    assert full.agent.send(1, b"\x80back", net.now)
    net.run(net.now + 0.1)
    assert [r[1:] for r in full.received] == [(b"\x80hello", 1)]
    assert [r[1:] for r in lite.received] == [(b"\x80back", 1)]


def test_full_told_of_the_lite_peer_controls_at_once() -> None:
    net = _net()
    full = net.add_agent("full", "10.0.0.1", controlling=False)
    lite = net.add_agent("lite", "10.0.0.2", controlling=False, config=LITE)
    full.agent.set_remote_lite(True)
    outcome = net.connect(full, lite)
    assert outcome.connected
    assert net.sent_messages(lite, Class.ERROR) == []
    assert RoleChanged(controlling=True) in net.events(full)


def test_lite_asked_to_control_is_controlled_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="syncice.ice"):
        agent = IceAgent(
            controlling=True,
            local_username="abcd",
            local_password="a" * 22,
            config=LITE,
            name="L",
        )
    assert not agent.controlling
    assert "L ICE-lite: taking the controlled role" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="syncice.ice"):
        agent.set_role(True)
    assert not agent.controlling
    assert "ice_controlling=True ignored" in caplog.text
    assert agent.next_event() is None  # no RoleChanged


def test_lite_created_controlling_connects_with_a_controlling_full_peer() -> None:
    net = _net()
    full = net.add_agent("full", "10.0.0.1")
    lite = net.add_agent("lite", "10.0.0.2", controlling=True, config=LITE)
    assert net.connect(full, lite).connected
    assert net.sent_messages(lite, Class.REQUEST) == []


def test_lite_never_switches_role_on_a_conflict() -> None:
    """Even with the larger tie-breaker, a lite agent answers 487 to a peer
    that claims the controlled role too, and stays controlled."""
    net = _net()
    full = net.add_agent("full", "10.0.0.1", controlling=False)
    lite = net.add_agent("lite", "10.0.0.2", config=LITE)
    lite.agent.tie_breaker = 2**64 - 1
    full.agent.tie_breaker = 0
    assert net.connect(full, lite).connected
    assert RoleChanged(controlling=True) not in net.events(lite)
    assert not lite.agent.controlling
    assert [m.error_code for *_, m in net.sent_messages(lite, Class.ERROR)] == [487]


def test_lite_gathers_host_candidates_only(caplog: pytest.LogCaptureFixture) -> None:
    net = _net()
    stun = StunServer(net, ("198.51.100.1", 3478))
    lite = net.add_agent("lite", "10.0.0.2", stun=stun.addr, config=LITE)
    with caplog.at_level(logging.INFO, logger="syncice.ice"):
        net.gather(lite)
    assert [c.type for c in lite.agent.local_candidates] == ["host"]
    assert net.sent_messages(lite) == []
    assert "host candidates only, STUN/TURN server 198.51.100.1:3478 not used" in (
        caplog.text
    )


def test_two_lite_agents_cannot_connect() -> None:
    agent = IceAgent(
        controlling=False, local_username="abcd", local_password="a" * 22, config=LITE
    )
    with pytest.raises(ValueError, match="both agents are ICE-lite"):
        agent.set_remote_lite(True)
    assert not agent.remote_is_lite
    agent.set_remote_lite(False)  # a full peer: fine


def test_lite_sends_no_consent_check_and_answers_the_full_peers() -> None:
    net = _net()
    full = net.add_agent("full", "10.0.0.1")
    lite = net.add_agent("lite", "10.0.0.2", config=LITE)
    assert net.connect(full, lite).connected
    start = net.now
    net.run(start + 60.0)
    assert net.sent_messages(lite, Class.REQUEST) == []
    # The full peer kept checking consent (every 5 s +-20 %), answered.
    consent = [
        at for at, *_ in net.sent_messages(full, Class.REQUEST) if at > start + 1
    ]
    assert len(consent) >= 9
    late = [at for at, *_ in net.sent_messages(lite, Class.SUCCESS) if at > start + 1]
    assert len(late) == len(consent)
    assert full.agent.state is IceState.COMPLETED
    assert lite.agent.state is IceState.COMPLETED
    assert not any(isinstance(e, ConsentExpired) for e in net.events(full))


def test_lite_fails_when_the_full_peer_never_nominates() -> None:
    """Without checks from the peer, the lite (controlled) agent gives up
    after its nomination timeout, as a controlled full agent does."""
    net = _net()
    full = net.add_agent("full", "10.0.0.1")
    lite = net.add_agent("lite", "10.0.0.2", config=LITE)
    net.gather(full, lite)
    net.exchange(full, lite)
    start = net.now
    lite.agent.connect(start)  # the full peer never connects
    net.run(start + 30.0)
    assert lite.agent.state is IceState.FAILED
    assert net.sent_messages(lite, Class.REQUEST) == []
    failed_at = net.timeline(lite)[-1][0]
    assert failed_at == pytest.approx(start + LITE.nomination_timeout)


def _lite_agent() -> IceAgent:
    agent = IceAgent(
        controlling=False,
        local_username="lite",
        local_password="l" * 22,
        config=LITE,
        name="lite",
    )
    agent.add_host_candidate(0, 1, ("10.0.0.2", 5000))
    agent.set_remote_credentials("full", "f" * 22)
    agent.add_remote_candidate(None, 0.0)
    agent.connect(0.0)
    return agent


def _check(agent: IceAgent, source: tuple[str, int], **kwargs: object) -> list[bytes]:
    data = check_request(
        username="lite:full",
        password="l" * 22,
        controlling=1,
        transaction_id=bytes([len(source[0]), source[1] % 256, *range(10)]),
        **kwargs,  # type: ignore[arg-type]
    )
    assert agent.receive_datagram(0, data, source, 1.0) is None
    return [t.data for t in agent.datagrams_to_send()]


def test_checks_nominate_and_a_better_nominated_pair_takes_over() -> None:
    """RFC 8445 §7.3.2 and §8.2: a check without USE-CANDIDATE is only
    answered; with it, its pair is selected; the same again changes nothing;
    a nominated pair of higher priority takes over."""
    agent = _lite_agent()
    first = ("10.0.0.1", 4000)
    sent = _check(agent, first)
    assert [parse_message(d).message_class for d in sent] == [Class.SUCCESS]
    assert agent.selected == {}
    assert agent.authenticated_peers() == {(0, first): 1}
    _check(agent, first, use_candidate=True)
    assert agent.selected[1].remote_addr == first
    assert agent.state is IceState.COMPLETED
    events = [type(e).__name__ for e in iter(agent.next_event, None)]
    assert events[-2:] == ["SelectedPairChanged", "IceCompleted"]
    # Nominated again (aggressive nomination, or a repeated check).
    sent = _check(agent, first, use_candidate=True)
    assert [parse_message(d).message_class for d in sent] == [Class.SUCCESS]
    assert agent.next_event() is None
    # A lower pair nominated: kept out; a higher one: selected instead.
    low = ("10.0.0.3", 4000)
    _check(agent, low, use_candidate=True, priority=1)
    assert agent.selected[1].remote_addr == first
    high = ("10.0.0.4", 4000)
    _check(agent, high, use_candidate=True, priority=2**31 - 1)
    assert agent.selected[1].remote_addr == high
    assert all(s.requests_sent == 0 for s in agent.pair_stats())
