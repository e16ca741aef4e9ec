"""Tests of your own with ``syncice.testing``: copy them into your suite.

Run with ``python -m pytest examples/own_tests.py``. The first two need no
socket, thread or clock (the virtual network, in virtual time); the last runs
real connections on loopback with their timers on a fake clock.
"""

from __future__ import annotations

import threading

import pytest

import syncice
from syncice.testing import Link, NatBehavior, StunServer, TurnServer, VirtualNet


@pytest.mark.parametrize("seed", range(5))
def test_two_cone_nats_need_no_relay(seed: int) -> None:
    net = VirtualNet(seed=seed)
    stun = StunServer(net, ("198.51.100.1", 3478))
    for i, public in enumerate(("203.0.113.1", "203.0.113.2")):
        nat = net.add_nat(public, NatBehavior.port_restricted_cone())
        net.add_host(f"10.0.{i}.1", nat=nat)
    a = net.add_agent("a", "10.0.0.1", stun=stun.addr)
    b = net.add_agent("b", "10.0.1.1", stun=stun.addr, controlling=False)
    outcome = net.connect(a, b)
    assert outcome.connected
    assert outcome.remote_type in ("srflx", "prflx")  # through the NATs, no relay


@pytest.mark.parametrize("seed", range(5))
def test_symmetric_nat_needs_turn(seed: int) -> None:
    net = VirtualNet(seed=seed, up=Link(loss=0.05))  # and 5 % loss on the way up
    stun = StunServer(net, ("198.51.100.1", 3478))
    turn = TurnServer(net, ("198.51.100.2", 3478))
    cone = net.add_nat("203.0.113.1", NatBehavior.port_restricted_cone())
    symmetric = net.add_nat("203.0.113.2", NatBehavior.symmetric())
    net.add_host("10.0.0.1", nat=cone)
    net.add_host("10.0.0.2", nat=symmetric)
    a = net.add_agent("a", "10.0.0.1", stun=stun.addr, turn=turn)
    b = net.add_agent("b", "10.0.0.2", stun=stun.addr, turn=turn, controlling=False)
    outcome = net.connect(a, b)
    assert outcome.connected
    assert "relay" in (outcome.local_type, outcome.remote_type)


def test_consent_expires_in_virtual_time() -> None:
    """Real connections, fake clock: 30 s of consent freshness in milliseconds."""
    from syncice.testing import virtual_time

    with virtual_time() as vt:
        a = syncice.Connection(True, local_addresses=["127.0.0.1"])
        b = syncice.Connection(False, local_addresses=["127.0.0.1"])
        try:
            for conn in (a, b):
                conn.gather_candidates(timeout=10)
            for ours, theirs in ((a, b), (b, a)):
                theirs.remote_username = ours.local_username
                theirs.remote_password = ours.local_password
                for candidate in ours.local_candidates:
                    theirs.add_remote_candidate(candidate)
                theirs.add_remote_candidate(None)
            other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
            other.start()
            a.connect(timeout=10)
            other.join()
            with vt.paused():
                silent_from = vt.now()
                b.close()  # b falls silent: a's consent checks go unanswered
            with pytest.raises(syncice.ConnectionClosedError, match="consent expired"):
                a.recv(timeout=10)  # real seconds: a hang guard only
            assert vt.now() - silent_from >= 24  # virtual seconds
        finally:
            a.close()
            b.close()
