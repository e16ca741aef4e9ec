"""Local ICE-lite (RFC 8445 §2.5), in the core, in virtual time."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

import syncice
import syncice.asyncio as shim
from syncice.events import ConsentExpired, RoleChanged
from syncice.exceptions import NegotiationFailedError
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Class
from syncice.testing import Link, StunServer, VirtualNet
from tests.loopguard import SHIM, guarded_run

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


# --- both facades, on loopback ------------------------------------------------

LOOPBACK = ["127.0.0.1"]
GUARD = 10.0


def test_blocking_full_against_lite(caplog: pytest.LogCaptureFixture) -> None:
    full = syncice.Connection(ice_controlling=False, local_addresses=LOOPBACK)
    with caplog.at_level(logging.INFO, logger="syncice.ice"):
        lite = syncice.Connection(
            ice_controlling=True,
            local_addresses=LOOPBACK,
            stun_server=("127.0.0.1", 9),
            ice_lite=True,
        )
    try:
        assert "taking the controlled role" in caplog.text
        assert "host candidates only, STUN/TURN server 127.0.0.1:9" in caplog.text
        assert not lite.ice_controlling
        lite.ice_controlling = True  # ignored
        assert not lite.ice_controlling
        for c in (full, lite):
            c.gather_candidates(timeout=GUARD)
        assert [c.type for c in lite.local_candidates] == ["host"]
        assert lite.local_description().lite
        # The full side learns of the lite one from its description.
        full.set_remote_description(lite.local_description().to_sdp())
        lite.set_remote_description(full.local_description().to_json())
        assert full.remote_is_lite
        assert not lite.remote_is_lite
        done = threading.Thread(target=lite.connect, kwargs={"timeout": GUARD})
        done.start()
        full.connect(timeout=GUARD)
        done.join(GUARD)
        assert full.ice_controlling
        assert not lite.ice_controlling
        full.send(b"\x80ping")
        assert lite.recv(timeout=GUARD) == b"\x80ping"
        lite.send(b"\x80pong")
        assert full.recv(timeout=GUARD) == b"\x80pong"
        stats = lite.get_stats()
        assert sum(s.requests_sent for s in stats) == 0
        assert sum(s.requests_received for s in stats) >= 1
    finally:
        full.close()
        lite.close()


def test_blocking_two_lite_connections_fail_clearly() -> None:
    a = syncice.Connection(
        ice_controlling=True, local_addresses=LOOPBACK, ice_lite=True
    )
    b = syncice.Connection(
        ice_controlling=False,
        local_addresses=LOOPBACK,
        config=IceConfig(ice_lite=True),
    )
    try:
        for c in (a, b):
            c.gather_candidates(timeout=GUARD)
        with pytest.raises(NegotiationFailedError, match="both agents are ICE-lite"):
            a.set_remote_description(b.local_description())
        assert a.remote_username is None
        assert a.remote_candidates == []
        # Set by hand, the flag fails connect() with the same words.
        a.remote_username = b.local_username
        a.remote_password = b.local_password
        a.remote_is_lite = True
        with pytest.raises(NegotiationFailedError, match="both agents are ICE-lite"):
            a.connect(timeout=GUARD)
    finally:
        a.close()
        b.close()


def test_lite_refuses_the_relay_policy() -> None:
    with pytest.raises(ValueError, match="ice_lite gathers host candidates only"):
        syncice.Connection(
            ice_controlling=False,
            stun_server=("127.0.0.1", 3478),
            transport_policy=syncice.TransportPolicy.RELAY,
            ice_lite=True,
        )


def test_asyncio_full_against_lite_and_lite_against_lite() -> None:
    async def main() -> None:
        full = shim.Connection(ice_controlling=True, local_addresses=LOOPBACK)
        lite = shim.Connection(
            ice_controlling=True, local_addresses=LOOPBACK, ice_lite=True
        )
        other = shim.Connection(
            ice_controlling=False, local_addresses=LOOPBACK, ice_lite=True
        )
        try:
            assert not lite.ice_controlling
            await asyncio.gather(
                full.gather_candidates(),
                lite.gather_candidates(),
                other.gather_candidates(),
            )
            full.set_remote_description(lite.local_description().to_dict())
            lite.set_remote_description(full.local_description())
            await asyncio.wait_for(
                asyncio.gather(full.connect(), lite.connect()), GUARD
            )
            await full.send(b"\x80ping")
            assert await asyncio.wait_for(lite.recv(), GUARD) == b"\x80ping"
            await lite.send(b"\x80pong")
            assert await asyncio.wait_for(full.recv(), GUARD) == b"\x80pong"
            stats = await lite.get_stats()
            assert sum(s.requests_sent for s in stats) == 0
            with pytest.raises(NegotiationFailedError, match="ICE-lite"):
                other.set_remote_description(lite.local_description().to_sdp())
            other.remote_username = lite.local_username
            other.remote_password = lite.local_password
            other.remote_is_lite = True
            with pytest.raises(NegotiationFailedError, match="ICE-lite"):
                await other.connect()
        finally:
            for c in (full, lite, other):
                await c.close()

    guarded_run(main(), allow=SHIM)
