"""Layer 1: the NAT matrix, syncice agents on both ends of a virtual network.

The topology is the NAT lab's (/work/shared/recipes, README §3) rebuilt with
:mod:`syncice.testing`: peers ``a`` and ``b`` behind cone NATs (endpoint-
independent mapping, address-and-port-dependent filtering, like nft
``masquerade``), ``c`` behind a symmetric NAT (address-and-port-dependent
mapping, ``masquerade fully-random``), and a STUN/TURN server on the public
segment. Each scenario asserts whether the peers connect and through which
candidate types; then the full RFC 4787 mapping by filtering matrix.
"""

from __future__ import annotations

import itertools

import pytest

from syncice.events import IceFailed
from syncice.ice import IceConfig, IceState
from syncice.testing import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    Link,
    NatBehavior,
    Outcome,
    Peer,
    StunServer,
    TurnServer,
    VirtualNet,
)

CONE = NatBehavior.port_restricted_cone()
SYMMETRIC = NatBehavior.symmetric()
STUN = ("203.0.113.1", 3478)
TURN = ("203.0.113.1", 3479)
HOSTS = {"a": "10.0.1.2", "b": "10.0.2.2", "c": "10.0.3.2"}


class Lab:
    """The NAT lab: hosts a, b behind cone NATs, c behind a symmetric one."""

    def __init__(
        self,
        seed: int = 1,
        *,
        wan: Link | None = None,
        nats: dict[str, NatBehavior] | None = None,
    ) -> None:
        self.net = VirtualNet(seed=seed, link=Link(delay=0.001))
        self.net.add_host(STUN[0])
        self.stun = StunServer(self.net, STUN)
        self.turn = TurnServer(self.net, TURN)
        behaviours = nats or {"a": CONE, "b": CONE, "c": SYMMETRIC}
        for i, (name, behaviour) in enumerate(behaviours.items()):
            nat = self.net.add_nat(f"203.0.113.{11 + i}", behaviour, link=wan)
            self.net.add_host(HOSTS[name], nat=nat)

    def agent(
        self,
        name: str,
        *,
        stun: bool = True,
        turn: str | None = None,
        relay_only: bool = False,
        controlling: bool = True,
        config: IceConfig | None = None,
    ) -> Peer:
        return self.net.add_agent(
            name,
            HOSTS[name],
            controlling=controlling,
            stun=STUN if stun else None,
            turn=self.turn if turn else None,
            turn_transport="tcp" if turn == "tcp" else "udp",
            relay_only=relay_only,
            config=config,
        )

    def connect(self, x: Peer, y: Peer, timeout: float = 60.0) -> Outcome:
        return self.net.connect(x, y, timeout=timeout)


def final_wait(config: IceConfig) -> float:
    """When a check's transaction gives up, after its first send (RFC 8489
    §6.2.1: Rc sends, the RTO doubling up to ``rto_max``, then Rm RTOs)."""
    cap = config.rto_max if config.rto_max is not None else float("inf")
    sends = sum(min(config.rto * 2.0**i, cap) for i in range(config.max_sends - 1))
    return float(sends + config.final_wait * config.rto)


def test_the_rfc_timing_bound_is_39_5_seconds() -> None:
    assert final_wait(IceConfig()) == pytest.approx(39.5)


def test_host_only_behind_nats_fails_within_the_rfc_bound() -> None:
    lab = Lab()
    a, b = lab.agent("a", stun=False), lab.agent("b", stun=False, controlling=False)
    assert a.candidate_types() == b.candidate_types() == ["host"]
    start = lab.net.now
    outcome = lab.connect(a, b)
    assert not outcome.connected
    assert outcome.states == (IceState.FAILED, IceState.FAILED)
    config = a.agent.config
    # The controlled side, never nominated, gives up first: it has heard no
    # check from its peer for nomination_timeout.
    assert outcome.fail_time == pytest.approx(config.nomination_timeout, abs=0.1)
    assert outcome.reason is not None
    assert outcome.reason.startswith("no nomination")
    # The controlling side's single check (and its retransmissions) ran its
    # whole course: not before the last send, not after the final wait (plus
    # Ta pacing slack).
    # (Virtual seconds of the lab's clock, not wall time.)
    (failed_at,) = [t for t, e in a.timeline if isinstance(e, IceFailed)]
    virtual_seconds = failed_at - start
    assert final_wait(config) - config.final_wait * config.rto < virtual_seconds
    assert virtual_seconds <= final_wait(config) + 0.1
    # Nothing crossed: private addresses are not routed on the internet.
    assert lab.net.stats.unroutable > 0
    assert a.received == b.received == []


def test_srflx_through_two_cone_nats() -> None:
    lab = Lab()
    a, b = lab.agent("a"), lab.agent("b", controlling=False)
    lab.net.gather(a, b)
    assert a.candidate_types() == ["host", "srflx"]
    outcome = lab.connect(a, b)
    assert outcome.connected, outcome
    assert not outcome.relayed
    assert outcome.remote_type in ("srflx", "prflx")
    assert outcome.connect_time is not None
    assert outcome.connect_time < 2.0
    assert a.send(b"ping")
    lab.net.run(lab.net.now + 1.0)
    assert [d for _, d, _ in b.received] == [b"ping"]


def test_stun_only_between_cone_and_symmetric_fails() -> None:
    lab = Lab()
    a, c = lab.agent("a"), lab.agent("c", controlling=False)
    outcome = lab.connect(a, c)
    assert not outcome.connected
    assert outcome.fail_time is not None
    assert outcome.fail_time <= 39.6


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_cone_to_symmetric_needs_and_uses_the_relay(transport: str) -> None:
    lab = Lab()
    a = lab.agent("a", turn=transport)
    c = lab.agent("c", turn=transport, controlling=False)
    lab.net.gather(a, c)
    assert sorted(a.candidate_types()) == ["host", "relay", "srflx"]
    outcome = lab.connect(a, c)
    assert outcome.connected, outcome
    assert outcome.relayed
    assert len(lab.turn.allocations) == 2
    over_tcp = [s.stream is not None for s in lab.turn.allocations.values()]
    assert over_tcp == [transport == "tcp"] * 2
    assert c.send(b"via turn")
    lab.net.run(lab.net.now + 1.0)
    assert [d for _, d, _ in a.received] == [b"via turn"]


def test_relay_only_on_both_sides() -> None:
    lab = Lab()
    a = lab.agent("a", stun=False, turn="udp", relay_only=True)
    b = lab.agent("b", stun=False, turn="udp", relay_only=True, controlling=False)
    assert a.candidate_types() == b.candidate_types() == []
    outcome = lab.connect(a, b)
    assert a.candidate_types() == b.candidate_types() == ["relay"]
    assert outcome.connected, outcome
    assert (outcome.local_type, outcome.remote_type) == ("relay", "relay")
    assert outcome.peer_types == ("relay", "relay")


def test_20_percent_loss_and_50_ms_on_every_nat_uplink() -> None:
    # As `natlab.sh netem up 20% 50ms`: one impaired hop each way.
    for seed in range(5):
        lab = Lab(seed, wan=None)
        for i in range(3):
            lab.net.set_link(
                f"203.0.113.{11 + i}", up=Link(loss=0.2, delay=0.05), down=Link()
            )
        a, b = lab.agent("a", turn="udp"), lab.agent("b", controlling=False)
        outcome = lab.connect(a, b)
        assert outcome.connected, (seed, outcome)
        assert outcome.connect_time is not None
        assert outcome.connect_time >= 0.1


def test_36_percent_loss_each_way_connects_in_19_of_20_seeds() -> None:
    # As `natlab.sh netem on 20% 50ms`: both directions of every NAT link,
    # so 1 - 0.8² = 36 % loss each way between the peers.
    connected = 0
    for seed in range(20):
        lab = Lab(seed, wan=Link(loss=0.2, delay=0.05))
        a, b = lab.agent("a"), lab.agent("b", controlling=False)
        outcome = lab.connect(a, b, timeout=30.0)
        if outcome.connected:
            assert outcome.connect_time is not None
            assert outcome.connect_time <= 30.0
            connected += 1
    assert lab.net.stats.lost > 0
    assert connected >= 19


# --- the RFC 4787 matrix -------------------------------------------------------------

BEHAVIOURS = (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT)
SHORT = {ENDPOINT_INDEPENDENT: "EI", ADDRESS_DEPENDENT: "AD"}
COMBOS = list(itertools.product(BEHAVIOURS, BEHAVIOURS))


def name(combo: tuple[str, str]) -> str:
    return "/".join(SHORT.get(b, "APD") for b in combo)


def expect_direct(x: tuple[str, str], y: tuple[str, str]) -> bool:
    """Whether two NATed peers can connect without a relay, by RFC 4787
    reasoning on each side's (mapping, filtering). ICE needs a check whose
    answer comes back from the address it went to (RFC 8445 §7.2.5.2.1).

    - Both mappings endpoint-independent: each side's srflx is the address it
      sends from; once both have sent, every filter lets the other in.
    - Only y's mapping is endpoint-independent: x's check comes from a new
      port x' to y's srflx, which y's filter lets in unless it is
      address-and-port-dependent (it has only sent to x's srflx port); y
      answers from its srflx, and its triggered check to x' gets in.
    - Neither is: x's srflx mapping has only sent to the STUN server, so y's
      check (from y', y's mapping towards x) gets in only if x's filtering is
      endpoint-independent; x then knows y' and checks it from x2 (x's
      mapping towards y'), which y' lets in unless its filter is
      address-and-port-dependent. The exchange settles if one side keeps its
      port for the other's IP whatever the port (address-dependent mapping):
      y answering from y' again, or x from x2 to y's checks from a new port.
      With two symmetric mappings every answer comes from yet another port.
    """

    def one_way(x: tuple[str, str], y: tuple[str, str]) -> bool:
        (xm, xf), (ym, yf) = x, y
        if xm == ENDPOINT_INDEPENDENT and ym == ENDPOINT_INDEPENDENT:
            return True
        if ym == ENDPOINT_INDEPENDENT:
            return yf != ADDRESS_AND_PORT_DEPENDENT
        if xm == ENDPOINT_INDEPENDENT:
            return xf != ADDRESS_AND_PORT_DEPENDENT
        return (
            xf == ENDPOINT_INDEPENDENT
            and yf != ADDRESS_AND_PORT_DEPENDENT
            and ADDRESS_DEPENDENT in (xm, ym)
        )

    return one_way(x, y) or one_way(y, x)


@pytest.mark.parametrize("x", COMBOS, ids=name)
def test_rfc4787_matrix(x: tuple[str, str]) -> None:
    """x (controlling) against every combination, STUN and TURN for both:
    all connect; directly exactly where :func:`expect_direct` says."""
    got = {}
    for y in COMBOS:
        lab = Lab(nats={"a": NatBehavior(*x), "b": NatBehavior(*y)})
        a, b = lab.agent("a", turn="udp"), lab.agent("b", turn="udp", controlling=False)
        outcome = lab.connect(a, b)
        assert outcome.connected, (name(x), name(y), outcome)
        got[name(y)] = not outcome.relayed
    assert got == {name(y): expect_direct(x, y) for y in COMBOS}
