"""ICE-TCP in the sans-IO core (RFC 6544, RFC 4571): ``syncice._ice_tcp``
and the agent's TCP verbs, layer 1: no sockets, threads or clocks.

Two agents are joined by a small model of TCP written here: a datagram the
agent queues on its active endpoint opens (or reuses) the connection of that
pair to the peer's listening address, which the peer sees arrive on its
passive endpoint from an ephemeral port; what the passive side queues goes
back over the connection of its pair. Time is an argument; every step is
exact.
"""

from __future__ import annotations

import random

import pytest

from syncice._checklist import PairState
from syncice._ice_tcp import (
    ACTIVE_PORT,
    MAX_FRAME,
    FrameDecoder,
    frame,
    mapped_is_base,
    tcp_candidate,
    tcp_pairable,
    tcp_priority,
)
from syncice.candidate import Candidate, candidate_priority
from syncice.events import IceCompleted, SelectedPairChanged
from syncice.ice import IceAgent, IceState

Address = tuple[str, int]
A_HOST = ("10.0.0.1", 5000)
B_HOST = ("10.0.0.2", 6000)
PASSIVE, ACTIVE, UDP = 10, 11, 0


# --- RFC 4571 framing ------------------------------------------------------


def test_frame_prefixes_the_length() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(b"x" * MAX_FRAME)[:2] == b"\xff\xff"
    for bad in (b"", b"x" * (MAX_FRAME + 1)):
        with pytest.raises(ValueError, match="cannot be sent"):
            frame(bad)


def test_decoder_cuts_frames_fed_byte_by_byte_and_in_bulk() -> None:
    frames = [b"one", b"x" * 300, b"\x00\x01\x02", b"last"]
    stream = b"".join(frame(f) for f in frames)
    decoder = FrameDecoder()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == frames
    assert decoder.pending == 0
    bulk = FrameDecoder()
    assert bulk.feed(stream + stream[:4]) == frames
    assert bulk.pending == 4


def test_decoder_holds_at_most_one_frame() -> None:
    decoder = FrameDecoder()
    # A peer announcing the largest frame and sending it slowly.
    assert decoder.feed(b"\xff\xff" + b"y" * 60000) == []
    assert decoder.pending == 60002
    assert decoder.feed(b"y" * 5535 + b"\x00\x02ab") == [b"y" * 65535, b"ab"]
    assert decoder.pending == 0


def test_decoder_refuses_a_zero_length() -> None:
    decoder = FrameDecoder()
    # The frames before it still count; nothing after.
    assert decoder.feed(frame(b"ok") + b"\x00\x00garbage") == [b"ok"]
    assert decoder.error == "a frame of length 0"
    assert decoder.pending == 0
    assert decoder.feed(frame(b"more")) == []


@pytest.mark.parametrize("seed", range(20))
def test_decoder_stays_bounded_on_random_bytes(seed: int) -> None:
    rng = random.Random(seed)
    decoder = FrameDecoder()
    for _ in range(50):
        decoder.feed(rng.randbytes(rng.randrange(1, 3000)))
        if decoder.error is not None:
            decoder = FrameDecoder()
        assert decoder.pending <= MAX_FRAME + 2


# --- candidates, priorities, pairing -----------------------------------------


def test_priorities_follow_rfc6544_direction_preferences() -> None:
    active = tcp_candidate(1, A_HOST, "active")
    passive = tcp_candidate(1, A_HOST, "passive")
    so = tcp_candidate(1, A_HOST, "so")
    # local pref = 2**13 * direction-pref + other-pref (8191 by default).
    assert active.priority == (63 << 24) + (((6 << 13) + 8191) << 8) + 255
    assert passive.priority == (63 << 24) + (((4 << 13) + 8191) << 8) + 255
    assert so.priority == (63 << 24) + (((2 << 13) + 8191) << 8) + 255
    assert active.priority > passive.priority > so.priority
    # Any UDP host candidate is preferred, even with the lowest local pref.
    assert candidate_priority(1, "host", 0) > active.priority
    assert tcp_priority(2, "host", "active") == active.priority - 1
    assert tcp_priority(1, "prflx", "active") < active.priority


def test_tcp_candidates_in_sdp() -> None:
    active = tcp_candidate(1, A_HOST, "active")
    passive = tcp_candidate(1, A_HOST, "passive")
    assert active.port == ACTIVE_PORT
    assert active.to_sdp().endswith(" 10.0.0.1 9 typ host tcptype active")
    assert passive.to_sdp().endswith(" 10.0.0.1 5000 typ host tcptype passive")
    assert Candidate.from_sdp(passive.to_sdp()) == passive
    # Same base, same type, another transport: another foundation.
    assert active.foundation == passive.foundation
    udp = IceAgent(controlling=True, local_username="abcd", local_password="p" * 22)
    host = udp.add_host_candidate(0, 1, A_HOST)
    assert host.foundation != active.foundation


def _remote(
    tcptype: str | None, transport: str = "tcp", typ: str = "host"
) -> Candidate:
    port = ACTIVE_PORT if tcptype == "active" and typ == "host" else 7000
    return Candidate("r", 1, transport, 1, "10.0.0.9", port, typ, tcptype=tcptype)


@pytest.mark.parametrize(
    ("local", "remote", "typ", "pairs"),
    [
        ("active", "passive", "host", True),
        ("active", "active", "host", False),
        ("active", "so", "host", False),
        ("passive", "active", "host", False),  # port 9: nothing to reach
        ("passive", "active", "prflx", True),  # learnt from its connection
        ("passive", "passive", "host", False),
        ("so", "so", "host", True),
        ("so", "active", "host", False),
    ],
)
def test_pairing_rules(local: str, remote: str, typ: str, pairs: bool) -> None:
    assert tcp_pairable(tcp_candidate(1, A_HOST, local), _remote(remote, typ=typ)) is (
        pairs
    )


def test_mapped_port_of_an_active_candidate_is_ignored() -> None:
    active = tcp_candidate(1, A_HOST, "active")
    passive = tcp_candidate(1, A_HOST, "passive")
    assert mapped_is_base(active, ("10.0.0.1", 40123))
    assert not mapped_is_base(active, ("192.0.2.1", 40123))
    assert mapped_is_base(passive, A_HOST)
    assert not mapped_is_base(passive, ("10.0.0.1", 40123))


# --- the agent ------------------------------------------------------------------


def make(controlling: bool, seed: int, *, udp: bool = False) -> IceAgent:
    agent = IceAgent(
        controlling=controlling,
        local_username="aaaa" if controlling else "bbbb",
        local_password=("a" if controlling else "b") * 22,
        rng=random.Random(seed),
    )
    host = A_HOST if controlling else B_HOST
    if udp:
        agent.add_host_candidate(UDP, 1, host)
    agent.add_tcp_candidates(PASSIVE, ACTIVE, 1, host)
    return agent


def test_remote_tcp_candidates_are_refused_unless_enabled() -> None:
    agent = IceAgent(controlling=True, local_username="aaaa", local_password="a" * 22)
    agent.add_host_candidate(UDP, 1, A_HOST)
    passive = tcp_candidate(1, B_HOST, "passive")
    agent.add_remote_candidate(passive, 0.0)
    assert agent.remote_candidates == []
    assert agent.stats.candidates_refused == 1
    agent.enable_tcp()
    agent.add_remote_candidate(passive, 0.0)
    no_type = Candidate("x", 1, "tcp", 5, "10.0.0.2", 6001, "host")
    agent.add_remote_candidate(no_type, 0.0)
    assert agent.remote_candidates == [passive]
    # A UDP candidate on the same address and port is another candidate.
    udp = Candidate("u", 1, "udp", 5, *B_HOST, "host")
    agent.add_remote_candidate(udp, 0.0)
    assert agent.remote_candidates == [passive, udp]


class TcpNet:
    """Two agents, the TCP connections between them, and the time."""

    def __init__(self, a: IceAgent, b: IceAgent) -> None:
        self.agents = {"a": a, "b": b}
        self.hosts = {"a": A_HOST, "b": B_HOST}
        # (side, endpoint, remote address) -> (other side, its key)
        self.links: dict[tuple[str, int, Address], tuple[str, int, Address]] = {}
        self.opened: list[tuple[str, Address]] = []
        self.now = 0.0
        self.next_port = 40000
        self.refuse = False
        self.wire: list[tuple[str, int, Address, bytes]] = []

    def other(self, side: str) -> str:
        return "b" if side == "a" else "a"

    def step(self) -> bool:
        moved = False
        for side, agent in self.agents.items():
            for endpoint, data, addr in agent.datagrams_to_send():
                moved = True
                self.wire.append((side, endpoint, addr, data))
                key = (side, endpoint, addr)
                if key not in self.links and endpoint == ACTIVE:
                    peer = self.other(side)
                    if self.refuse or addr != self.hosts[peer]:
                        agent.tcp_closed(endpoint, addr, self.now)
                        continue
                    self.next_port += 1
                    src = (self.hosts[side][0], self.next_port)
                    self.links[key] = (peer, PASSIVE, src)
                    self.links[(peer, PASSIVE, src)] = key
                    self.opened.append((side, addr))
                if key not in self.links:
                    continue  # no connection: what a closed one would do
                peer, endpoint_there, src = self.links[key]
                got = frame(data)
                frames = FrameDecoder().feed(got)
                assert frames == [data]
                self.agents[peer].receive_datagram(
                    endpoint_there, frames[0], src, self.now
                )
        return moved

    def run(self, until: float) -> None:
        while True:
            while self.step():
                pass
            timers = [t for a in self.agents.values() if (t := a.get_timer())]
            if not timers or min(timers) > until:
                return
            self.now = max(self.now, min(timers))
            for agent in self.agents.values():
                agent.handle_timer(self.now)


def start(net: TcpNet, *, signal_udp: bool = False) -> None:
    a, b = net.agents["a"], net.agents["b"]
    for me, peer in ((a, b), (b, a)):
        me.set_remote_credentials(peer.local_username, peer.local_password)
        for c in peer.local_candidates:
            if c.transport == "tcp" or signal_udp:
                me.add_remote_candidate(c, 0.0)
        me.add_remote_candidate(None, 0.0)
    a.connect(0.0)
    b.connect(0.0)


def events(agent: IceAgent) -> list[object]:
    out: list[object] = []
    while (event := agent.next_event()) is not None:
        out.append(event)
    return out


def test_two_agents_connect_over_tcp_one_connection_per_pair() -> None:
    net = TcpNet(make(True, 1), make(False, 2))
    start(net)
    a, b = net.agents["a"], net.agents["b"]
    # Each active candidate pairs with the other's passive one only.
    assert [(p.local.tcptype, p.remote.tcptype) for p in a.pairs] == [
        ("active", "passive")
    ]
    net.run(until=5.0)
    assert a.state is IceState.COMPLETED
    assert b.state is IceState.COMPLETED
    assert any(isinstance(e, IceCompleted) for e in events(a))
    assert any(isinstance(e, SelectedPairChanged) for e in events(b))
    sa, sb = a.selected[1], b.selected[1]
    # The controlling side nominated its active-to-passive pair; the
    # controlled side selected the pair of the connection it accepted, whose
    # remote is a peer-reflexive active candidate at the ephemeral port.
    assert (sa.endpoint, sa.local.tcptype, sa.remote.tcptype) == (
        ACTIVE,
        "active",
        "passive",
    )
    assert (sb.endpoint, sb.local.tcptype) == (PASSIVE, "passive")
    assert (sb.remote.type, sb.remote.tcptype, sb.remote.transport) == (
        "prflx",
        "active",
        "tcp",
    )
    # The active candidate learnt no peer-reflexive local candidate: the
    # mapped port is ignored.
    assert sa.valid_local is sa.local
    # Only a's active side opened connections: one per pair, at most. (b's
    # active candidate pairs with a's passive one too, and opens its own.)
    assert sorted(net.opened) == [("a", B_HOST), ("b", A_HOST)]
    # Data goes over the selected pair's connection, both ways.
    assert a.send(1, b"hello", net.now)
    ((endpoint, data, addr),) = a.datagrams_to_send()
    assert (endpoint, addr, data) == (ACTIVE, B_HOST, b"hello")
    _peer, there, src = net.links[("a", ACTIVE, B_HOST)]
    assert b.receive_datagram(there, data, src, net.now) == (b"hello", 1)
    assert b.route(1) == (sb.endpoint, sb.remote_addr)


def test_udp_is_preferred_when_both_work() -> None:
    # The TCP model carries only the TCP endpoints; UDP goes straight.
    net = TcpNet(make(True, 3, udp=True), make(False, 4, udp=True))
    start(net, signal_udp=True)
    a = net.agents["a"]
    first = a.pairs[0]
    assert first.local.transport == "udp"
    assert a.pairs[-1].local.transport == "tcp"


def test_refused_connection_fails_the_pair_at_once() -> None:
    net = TcpNet(make(True, 5), make(False, 6))
    net.refuse = True
    start(net)
    net.run(until=1.0)
    a = net.agents["a"]
    assert [p.state for p in a.pairs] == [PairState.FAILED]
    assert a.state is IceState.FAILED
    assert net.now < 1.0  # not at the 39.5 s check timeout


def test_unauthenticated_data_over_an_accepted_connection_is_dropped() -> None:
    b = make(False, 7)
    stranger = ("192.0.2.5", 41000)
    assert b.receive_datagram(PASSIVE, b"garbage!", stranger, 0.0) is None
    assert b.stats.unknown_peer_data == 1
    assert b.remote_candidates == []
    assert b.pairs == []


def test_tcp_closed_reports_a_selected_pair() -> None:
    net = TcpNet(make(True, 8), make(False, 9))
    start(net)
    net.run(until=5.0)
    a = net.agents["a"]
    pair = a.selected[1]
    assert a.tcp_closed(pair.endpoint, pair.remote_addr, net.now) is True
    assert a.tcp_closed(pair.endpoint, ("10.9.9.9", 1), net.now) is False
    assert a.tcp_closed(999, pair.remote_addr, net.now) is False


def test_tcp_endpoints_send_no_stun_binding_requests() -> None:
    agent = make(True, 10, udp=True)
    server = ("198.51.100.1", 3478)
    agent.gather(0.0, [server])
    sent = agent.datagrams_to_send()
    assert [(t.endpoint, t.addr) for t in sent] == [(UDP, server)]


# --- simultaneous open -------------------------------------------------------

SO = 12
B_STARTS = 0.2
A_SO, B_SO = ("10.0.0.1", 5001), ("10.0.0.2", 6001)


def make_so(controlling: bool, seed: int) -> IceAgent:
    agent = make(controlling, seed)
    agent.add_tcp_so_candidate(SO, 1, A_SO if controlling else B_SO)
    return agent


def test_so_candidate_is_registered_on_its_own_endpoint() -> None:
    agent = make_so(True, 7)
    (so,) = [c for c in agent.local_candidates if c.tcptype == "so"]
    assert (so.host, so.port, so.transport) == (*A_SO, "tcp")
    assert so.priority == tcp_priority(1, "host", "so")
    assert so.to_sdp().endswith(" 10.0.0.1 5001 typ host tcptype so")
    with pytest.raises(ValueError, match="endpoint 12 must be new"):
        agent.add_tcp_so_candidate(SO, 1, ("10.0.0.1", 5002))
    with pytest.raises(ValueError, match="component must be 1 to 1"):
        agent.add_tcp_so_candidate(13, 2, ("10.0.0.1", 5002))


def test_so_candidates_connect_when_their_syns_cross() -> None:
    """Only S-O candidates signalled. A connection exists once both sides
    have opened it (crossing SYNs); until then what a side sends is lost
    (its SYN met no socket: RFC 6544 §7.1), and the check's next
    transmission tries again."""
    a, b = make_so(True, 8), make_so(False, 9)
    agents = {"a": a, "b": b}
    so_of = {"a": A_SO, "b": B_SO}
    for me, peer in (("a", "b"), ("b", "a")):
        agents[me].set_remote_credentials(
            agents[peer].local_username, agents[peer].local_password
        )
        for c in agents[peer].local_candidates:
            if c.tcptype == "so":
                agents[me].add_remote_candidate(c, 0.0)
        agents[me].add_remote_candidate(None, 0.0)
    a.connect(0.0)
    assert [(p.local.tcptype, p.remote.tcptype) for p in a.pairs] == [("so", "so")]
    opening: set[str] = set()  # sides that sent a SYN, not yet answered
    lost = 0
    now = 0.0
    b_started = False
    while now < 10.0 and not (a.selected and b.selected):
        moved = True
        while moved:
            moved = False
            for side, agent in agents.items():
                peer = "b" if side == "a" else "a"
                for endpoint, data, addr in agent.datagrams_to_send():
                    moved = True
                    if endpoint != SO:  # the active endpoint's: refused
                        agent.tcp_closed(endpoint, addr, now)
                        continue
                    assert addr == so_of[peer]
                    opening.add(side)
                    if opening != {"a", "b"}:
                        lost += 1
                        continue
                    agents[peer].receive_datagram(SO, data, so_of[side], now)
        timers = [t for agent in agents.values() if (t := agent.get_timer())]
        if not b_started:
            timers.append(B_STARTS)
        now = max(now, min(timers))
        if not b_started and now >= B_STARTS:
            b_started = True
            b.connect(now)  # the controlled side starts later
        for agent in agents.values():
            agent.handle_timer(now)
    assert lost >= 1  # a's first check went before b had opened its side
    for agent, side in ((a, "a"), (b, "b")):
        pair = agent.selected[1]
        assert (pair.endpoint, pair.local.tcptype, pair.remote.tcptype) == (
            SO,
            "so",
            "so",
        )
        assert pair.valid_local is pair.local  # mapped address = the S-O port
        assert pair.remote_addr == so_of["b" if side == "a" else "a"]
    assert now < 5.0  # by the checks' retransmissions, not their timeout
