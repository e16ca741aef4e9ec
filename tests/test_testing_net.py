"""Layer 1: :mod:`syncice.testing` itself, the virtual network with NATs.

NAT mapping and filtering (RFC 4787 §4, §5) one behaviour at a time, mapping
timeouts and hairpinning (§4.3, §6), routing of private addresses, link
statistics under a seeded RNG, and the TURN server (RFC 8656) against raw
requests and against syncice's own :class:`~syncice.turn.TurnAllocation`.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncice.events import IceCompleted, IceFailed
from syncice.ice import IceAgent, IceState
from syncice.stun import (
    ChannelData,
    Class,
    Message,
    Method,
    long_term_key,
    parse_channel_data,
    parse_message,
)
from syncice.testing import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    Address,
    Link,
    NatBehavior,
    Socket,
    StunServer,
    TurnServer,
    VirtualNet,
)
from syncice.turn import TurnAllocation, TurnState

PRIVATE = ("10.0.0.2", 5000)
S1 = ("198.51.100.1", 1000)
S1_OTHER_PORT = ("198.51.100.1", 2000)
S2 = ("198.51.100.2", 1000)


def natted(
    mapping: str = ENDPOINT_INDEPENDENT,
    filtering: str = ENDPOINT_INDEPENDENT,
    **kwargs: object,
) -> tuple[VirtualNet, Socket, dict[Address, Socket]]:
    """A private socket behind a NAT and three public sockets."""
    net = VirtualNet(seed=1)
    nat = net.add_nat(
        "203.0.113.1",
        NatBehavior(mapping, filtering, **kwargs),  # type: ignore[arg-type]
    )
    net.add_host(PRIVATE[0], nat=nat)
    for ip in ("198.51.100.1", "198.51.100.2"):
        net.add_host(ip)
    inside = net.socket(PRIVATE)
    outside = {addr: net.socket(addr) for addr in (S1, S1_OTHER_PORT, S2)}
    return net, inside, outside


def seen_from(net: VirtualNet, inside: Socket, outside: Socket) -> Address:
    """Send from inside to outside; the source address outside sees."""
    before = len(outside.received)
    inside.send(outside.addr, b"hello")
    net.run(net.now + 1.0)
    assert len(outside.received) == before + 1
    return outside.received[-1][1]


def gets_in(net: VirtualNet, inside: Socket, outside: Socket, to: Address) -> bool:
    """Whether a datagram from outside to the mapped address gets inside."""
    before = len(inside.received)
    outside.send(to, b"in")
    net.run(net.now + 1.0)
    return len(inside.received) > before


# --- mapping (RFC 4787 §4.1) -------------------------------------------------------


def test_endpoint_independent_mapping_keeps_one_port_for_every_destination() -> None:
    net, inside, out = natted(ENDPOINT_INDEPENDENT)
    seen = {seen_from(net, inside, out[a]) for a in (S1, S1_OTHER_PORT, S2)}
    assert len(seen) == 1
    assert seen.pop()[0] == "203.0.113.1"


def test_address_dependent_mapping_keeps_the_port_per_destination_ip() -> None:
    net, inside, out = natted(ADDRESS_DEPENDENT)
    first = seen_from(net, inside, out[S1])
    assert seen_from(net, inside, out[S1_OTHER_PORT]) == first
    assert seen_from(net, inside, out[S2]) != first
    assert seen_from(net, inside, out[S1]) == first


def test_address_and_port_dependent_mapping_is_symmetric() -> None:
    net, inside, out = natted(ADDRESS_AND_PORT_DEPENDENT)
    seen = [seen_from(net, inside, out[a]) for a in (S1, S1_OTHER_PORT, S2)]
    assert len(set(seen)) == 3
    assert seen_from(net, inside, out[S1]) == seen[0]


def test_nat_behaviour_presets() -> None:
    assert NatBehavior.full_cone() == NatBehavior()
    assert NatBehavior.restricted_cone().filtering == ADDRESS_DEPENDENT
    cone = NatBehavior.port_restricted_cone()
    assert (cone.mapping, cone.filtering) == (
        ENDPOINT_INDEPENDENT,
        ADDRESS_AND_PORT_DEPENDENT,
    )
    assert NatBehavior.symmetric().mapping == ADDRESS_AND_PORT_DEPENDENT
    with pytest.raises(ValueError, match="mapping and filtering"):
        NatBehavior("cone")
    with pytest.raises(ValueError, match="mapping_timeout"):
        NatBehavior(mapping_timeout=0)


# --- filtering (RFC 4787 §5) --------------------------------------------------------


@pytest.mark.parametrize(
    ("filtering", "other_port", "other_ip"),
    [
        (ENDPOINT_INDEPENDENT, True, True),
        (ADDRESS_DEPENDENT, True, False),
        (ADDRESS_AND_PORT_DEPENDENT, False, False),
    ],
)
def test_filtering(filtering: str, other_port: bool, other_ip: bool) -> None:
    net, inside, out = natted(ENDPOINT_INDEPENDENT, filtering)
    mapped = seen_from(net, inside, out[S1])
    assert gets_in(net, inside, out[S1], mapped)
    assert gets_in(net, inside, out[S1_OTHER_PORT], mapped) is other_port
    assert gets_in(net, inside, out[S2], mapped) is other_ip
    nat = net.nat_of(PRIVATE[0])
    assert nat is not None
    assert nat.stats.filtered == (not other_port) + (not other_ip)
    # What got in came with the sender's address, to the private address.
    assert inside.received[0][1] == S1


def test_nothing_gets_in_without_a_mapping() -> None:
    net, inside, out = natted()
    assert not gets_in(net, inside, out[S1], ("203.0.113.1", 40000))
    assert not gets_in(net, inside, out[S1], PRIVATE)  # not routed outside
    nat = net.nat_of(PRIVATE[0])
    assert nat is not None
    assert nat.stats.no_mapping == 1
    assert net.stats.unroutable == 1


def test_hosts_behind_the_same_nat_talk_directly() -> None:
    net, inside, _ = natted()
    net.add_host("10.0.0.3", nat=net.nat_of(PRIVATE[0]))
    neighbour = net.socket(("10.0.0.3", 5000))
    assert seen_from(net, inside, neighbour) == PRIVATE


# --- mapping timeout (§4.3) and hairpinning (§6) ----------------------------------


def test_mapping_expires_unless_outgoing_traffic_refreshes_it() -> None:
    net, inside, out = natted(mapping_timeout=30.0)
    mapped = seen_from(net, inside, out[S1])
    net.run(net.now + 20.0)
    assert gets_in(net, inside, out[S1], mapped)  # incoming does not refresh
    net.run(net.now + 5.0)
    assert seen_from(net, inside, out[S1]) == mapped  # outgoing does
    net.run(net.now + 31.0)
    assert not gets_in(net, inside, out[S1], mapped)
    nat = net.nat_of(PRIVATE[0])
    assert nat is not None
    assert nat.stats.expired == 1
    assert seen_from(net, inside, out[S1]) != mapped


@pytest.mark.parametrize("hairpinning", [True, False])
def test_hairpinning(hairpinning: bool) -> None:
    net, inside, out = natted(hairpinning=hairpinning)
    nat = net.nat_of(PRIVATE[0])
    net.add_host("10.0.0.3", nat=nat)
    neighbour = net.socket(("10.0.0.3", 5000))
    mapped = seen_from(net, inside, out[S1])
    their_mapped = seen_from(net, neighbour, out[S1])
    neighbour.send(mapped, b"via the public address")
    net.run(net.now + 1.0)
    got = [(src, data) for _, src, data in inside.received]
    if hairpinning:
        # The source is the sender's mapped address, not its private one.
        assert got == [(their_mapped, b"via the public address")]
    else:
        assert got == []
        assert nat is not None
        assert nat.stats.hairpin_dropped == 1


# --- links ------------------------------------------------------------------------


def blast(link: Link, count: int = 4000, seed: int = 7) -> list[tuple[float, bytes]]:
    """Send ``count`` numbered datagrams over a host's uplink, one per ms;
    what arrived: (arrival - departure, data)."""
    net = VirtualNet(seed=seed, link=Link())
    net.add_host("198.51.100.1", up=link)
    net.add_host("198.51.100.2")
    src, dst = net.socket(S1), net.socket(S2)
    sent_at = {}
    for i in range(count):
        data = i.to_bytes(4, "big")
        sent_at[data] = net.now
        src.send(S2, data)
        net.run(net.now + 0.001)
    net.run(net.now + 10.0)
    return [(at - sent_at[data], data) for at, _, data in dst.received]


def test_loss_probability() -> None:
    got = blast(Link(loss=0.3))
    # 4000 trials, p = 0.7: the standard deviation is 29 datagrams.
    assert abs(len(got) - 2800) < 4 * 29


def test_delay_and_jitter() -> None:
    got = [d for d, _ in blast(Link(delay=0.05, jitter=0.02))]
    assert len(got) == 4000
    assert min(got) >= 0.05 - 1e-9
    assert max(got) <= 0.07 + 1e-9
    assert statistics.mean(got) == pytest.approx(0.06, abs=0.001)


def test_duplication() -> None:
    got = blast(Link(duplicate=0.2))
    assert abs(len(got) - 4800) < 4 * 25
    assert len({data for _, data in got}) == 4000


def test_reordering() -> None:
    got = blast(Link(delay=0.01, reorder=0.1, reorder_delay=0.005))
    order = [int.from_bytes(data, "big") for _, data in got]
    assert sorted(order) == list(range(4000))
    overtaken = sum(1 for a, b in itertools.pairwise(order) if a > b)
    # A held datagram is overtaken by the 4 or 5 sent after it.
    assert 400 * 0.8 < sum(1 for d, _ in got if d > 0.011) < 400 * 1.2
    assert overtaken > 300


def test_same_seed_same_run_other_seed_other_run() -> None:
    lossy = Link(loss=0.2, jitter=0.01, duplicate=0.1, reorder=0.1)
    assert blast(lossy, 500, seed=1) == blast(lossy, 500, seed=1)
    assert blast(lossy, 500, seed=1) != blast(lossy, 500, seed=2)


def test_links_are_per_direction() -> None:
    net = VirtualNet(seed=3, link=Link())
    net.add_host(S1[0], up=Link(loss=1.0))
    net.add_host(S2[0])
    a, b = net.socket(S1), net.socket(S2)
    a.send(S2, b"lost")
    b.send(S1, b"arrives")
    net.run(1.0)
    assert (a.received, b.received) == ([(0.0, S2, b"arrives")], [])
    assert net.stats.lost == 1
    with pytest.raises(ValueError, match="probability"):
        Link(loss=1.5)


def test_datagrams_in_flight_can_be_dropped_copied_and_held() -> None:
    net = VirtualNet(seed=3, link=Link(delay=0.01))
    net.add_host(S1[0])
    net.add_host(S2[0])
    a, b = net.socket(S1), net.socket(S2)
    for data in (b"one", b"two", b"three"):
        a.send(S2, data)
    assert [d.data for d in net.in_flight()] == [b"one", b"two", b"three"]
    net.drop(0)
    net.duplicate(0, extra=0.5)
    net.hold(1, extra=1.0)
    net.run(5.0)
    assert [data for _, _, data in b.received] == [b"two", b"two", b"three"]
    assert [round(at, 3) for at, _, _ in b.received] == [
        0.02,
        0.52,
        1.02,
    ]  # up and down links
    with pytest.raises(IndexError):
        net.drop(0)


# --- STUN server ---------------------------------------------------------------------


def test_stun_server_answers_with_the_mapped_address() -> None:
    net, inside, _ = natted()
    server = StunServer(net, ("198.51.100.3", 3478))
    request = Message(Method.BINDING, Class.REQUEST, bytes(12))
    inside.send(server.addr, request.encode())
    inside.send(server.addr, b"\xff garbage")
    net.run(1.0)
    ((_, src, data),) = inside.received
    answer = parse_message(data)
    assert src == server.addr
    assert answer.message_class == Class.SUCCESS
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == ("203.0.113.1", 40000)
    assert (server.answered, server.ignored) == (1, 1)


# --- TURN server -------------------------------------------------------------------

TURN = ("198.51.100.9", 3478)
KEY = long_term_key("user", "syncice.test", "secret")


def turn_net() -> tuple[VirtualNet, TurnServer, Socket, Socket]:
    """A TURN server, a client behind a NAT and a public peer."""
    net, client, out = natted(ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT)
    return net, TurnServer(net, TURN), client, out[S2]


def request(
    method: Method,
    attributes: dict[str, object] | None = None,
    *,
    key: bytes | None = KEY,
    tid: int = 1,
) -> bytes:
    attrs: dict[str, object] = {"USERNAME": "user", "REALM": "syncice.test"}
    attrs["NONCE"] = b"0123456789abcdef"
    attrs.update(attributes or {})
    message = Message(
        method,
        Class.REQUEST,
        tid.to_bytes(12, "big"),
        attrs,  # type: ignore[arg-type]
    )
    return message.encode(key=key, fingerprint=True)


def ask(net: VirtualNet, client: Socket, data: bytes) -> Message:
    before = len(client.received)
    client.send(TURN, data)
    net.run(net.now + 1.0)
    assert len(client.received) == before + 1
    return parse_message(client.received[-1][2])


def allocate(net: VirtualNet, client: Socket) -> Address:
    answer = ask(
        net, client, request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}, tid=1)
    )
    assert answer.message_class == Class.SUCCESS, answer
    assert answer.check_integrity(KEY)
    relayed = answer.attributes["XOR-RELAYED-ADDRESS"]
    assert isinstance(relayed, tuple)
    return relayed


def test_turn_requires_credentials_and_creates_nothing_without() -> None:
    net, server, client, _ = turn_net()
    plain = Message(
        Method.ALLOCATE, Class.REQUEST, bytes(12), {"REQUESTED-TRANSPORT": 17}
    ).encode()
    wrong = request(
        Method.ALLOCATE,
        {"REQUESTED-TRANSPORT": 17},
        key=long_term_key("user", "syncice.test", "wrong"),
    )
    for data in (plain, wrong):
        answer = ask(net, client, data)
        assert (answer.message_class, answer.error_code) == (Class.ERROR, 401)
        assert answer.attributes["REALM"] == "syncice.test"
        assert "NONCE" in answer.attributes
    unknown = Message(0x0FF, Class.REQUEST, bytes(12), {"USERNAME": "user"})
    answer = ask(net, client, unknown.encode(key=KEY, fingerprint=True))
    assert answer.error_code == 400
    client.send(TURN, b"\x00\x01garbage")
    client.send(TURN, b"\x40\x00\x00\x10short")
    net.run(net.now + 1.0)
    assert server.allocations == {}
    assert server.dropped == 2


def test_turn_allocate_permission_send_and_data() -> None:
    net, server, client, peer = turn_net()
    relayed = allocate(net, client)
    assert relayed[0] == TURN[0]
    assert list(server.allocations) == [("203.0.113.1", 40000)]
    # A retransmitted Allocate gets the same answer; another one 437.
    again = ask(net, client, request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}))
    assert again.attributes["XOR-RELAYED-ADDRESS"] == relayed
    other = request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}, tid=2)
    assert ask(net, client, other).error_code == 437
    # No permission: the peer's data and our Send are dropped.
    peer.send(relayed, b"early")
    send = Message(
        Method.SEND,
        Class.INDICATION,
        bytes(12),
        {"XOR-PEER-ADDRESS": peer.addr, "DATA": b"out"},
    ).encode()
    client.send(TURN, send)
    net.run(net.now + 1.0)
    assert peer.received == []
    assert len(client.received) == 3
    permit = request(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": peer.addr}, tid=3)
    assert ask(net, client, permit).message_class == Class.SUCCESS
    client.send(TURN, send)
    net.run(net.now + 1.0)
    assert [(src, data) for _, src, data in peer.received] == [(relayed, b"out")]
    peer.send(relayed, b"back")
    net.run(net.now + 1.0)
    data = parse_message(client.received[-1][2])
    assert data.method == Method.DATA
    assert data.message_class == Class.INDICATION
    assert data.attributes["XOR-PEER-ADDRESS"] == peer.addr
    assert data.attributes["DATA"] == b"back"


def test_turn_channels() -> None:
    net, server, client, peer = turn_net()
    relayed = allocate(net, client)
    bad = request(
        Method.CHANNEL_BIND,
        {"XOR-PEER-ADDRESS": peer.addr, "CHANNEL-NUMBER": 0x3000},
        tid=5,
    )
    assert ask(net, client, bad).error_code == 400
    bind = request(
        Method.CHANNEL_BIND,
        {"XOR-PEER-ADDRESS": peer.addr, "CHANNEL-NUMBER": 0x4001},
        tid=6,
    )
    assert ask(net, client, bind).message_class == Class.SUCCESS
    other = request(
        Method.CHANNEL_BIND,
        {"XOR-PEER-ADDRESS": S1, "CHANNEL-NUMBER": 0x4001},
        tid=7,
    )
    assert ask(net, client, other).error_code == 400
    client.send(TURN, ChannelData(0x4001, b"cd out").encode())
    client.send(TURN, ChannelData(0x4002, b"unbound").encode())
    net.run(net.now + 1.0)
    assert [data for _, _, data in peer.received] == [b"cd out"]
    peer.send(relayed, b"cd back")
    net.run(net.now + 1.0)
    frame = parse_channel_data(client.received[-1][2])
    assert (frame.channel, frame.data) == (0x4001, b"cd back")
    assert server.dropped == 1


def test_turn_refresh_zero_deletes_and_the_lifetime_expires() -> None:
    net, server, client, peer = turn_net()
    allocate(net, client)
    refresh = request(Method.REFRESH, {"LIFETIME": 0}, tid=8)
    assert ask(net, client, refresh).attributes["LIFETIME"] == 0
    assert server.allocations == {}
    assert ask(net, client, request(Method.REFRESH, tid=9)).error_code == 437
    # A short lifetime, never refreshed: gone once it has passed.
    short = request(
        Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17, "LIFETIME": 60}, tid=10
    )
    relayed = ask(net, client, short).attributes["XOR-RELAYED-ADDRESS"]
    permit = request(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": peer.addr}, tid=11)
    ask(net, client, permit)
    net.run(net.now + 61.0)
    assert isinstance(relayed, tuple)
    peer.send(relayed, b"too late")
    net.run(net.now + 1.0)
    assert server.allocations == {}
    assert parse_message(client.received[-1][2]).message_class == Class.SUCCESS


class Client:
    """Drives a :class:`TurnAllocation` over a socket of the network."""

    def __init__(self, net: VirtualNet, addr: Address, transport: str) -> None:
        self.net = net
        self.allocation = TurnAllocation(
            server=TURN,
            username="user",
            password="secret",
            transport=transport,
            rng=random.Random(5),
        )
        self.got: list[tuple[Address, bytes]] = []
        self.out: Callable[[bytes], None]
        if transport == "udp":
            net.bind(addr, lambda src, dst, data: self._take(data))
            self.out = lambda data: net.send(addr, TURN, data)
        else:
            self.out = net.open_stream(addr, TURN, self._take).send

    def _take(self, data: bytes) -> None:
        self.got += self.allocation.receive(data, self.net.now)
        self.flush()

    def flush(self) -> None:
        for data in self.allocation.datagrams_to_send():
            self.out(data)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_syncice_turn_allocation_works_against_it(transport: str) -> None:
    net, server, _, peer = turn_net()
    client = Client(net, ("10.0.0.2", 6000), transport)
    client.allocation.start(net.now)
    client.flush()
    net.run(net.now + 1.0)
    allocation = client.allocation
    assert allocation.state == TurnState.ALLOCATED
    assert allocation.relayed is not None
    assert allocation.relayed[0] == TURN[0]
    assert allocation.mapped is not None
    assert allocation.mapped[0] == "203.0.113.1"
    # 401 first, then the authenticated Allocate.
    assert [m.method for _, m in server.requests[:2]] == [Method.ALLOCATE] * 2
    allocation.send(peer.addr, b"to peer", net.now)
    client.flush()
    net.run(net.now + 1.0)
    assert [data for _, _, data in peer.received] == [b"to peer"]
    peer.send(allocation.relayed, b"to client")
    net.run(net.now + 1.0)
    assert client.got == [(peer.addr, b"to client")]
    kinds = {m.method for _, m in server.requests}
    assert {Method.ALLOCATE, Method.CHANNEL_BIND} <= kinds


# --- agents ------------------------------------------------------------------------


def test_the_documented_example() -> None:
    net = VirtualNet(seed=1)
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
    assert outcome.relayed
    assert outcome.connect_time is not None
    assert outcome.connect_time < 2.0
    assert a.send(b"hello")
    net.run(net.now + 1.0)
    assert [data for _, data, _ in b.received] == [b"hello"]
    names = {name for _, name, _ in net.timeline()}
    assert names == {"a", "b"}


def test_a_run_is_reproducible_from_its_seed() -> None:
    def run(seed: int) -> list[tuple[float, str, str]]:
        net = VirtualNet(seed=seed, link=Link(loss=0.1, delay=0.02, jitter=0.01))
        stun = StunServer(net, ("198.51.100.1", 3478))
        for i in (1, 2):
            nat = net.add_nat(f"203.0.113.{i}")
            net.add_host(f"10.0.0.{i}", nat=nat)
        a = net.add_agent("a", "10.0.0.1", stun=stun.addr)
        b = net.add_agent("b", "10.0.0.2", stun=stun.addr, controlling=False)
        net.connect(a, b)
        return [(t, n, repr(e)) for t, n, e in net.timeline()]

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_agents_on_public_hosts_connect_host_to_host() -> None:
    net = VirtualNet()
    net.add_host("198.51.100.1")
    net.add_host("198.51.100.2")
    a = net.add_agent("a", "198.51.100.1", components=2)
    b = net.add_agent("b", "198.51.100.2", components=2, controlling=False)
    outcome = net.connect(a, b)
    assert outcome.connected
    assert outcome.states == (IceState.COMPLETED,) * 2
    assert (outcome.local_type, outcome.remote_type) == ("host", "host")
    assert set(a.agent.selected) == {1, 2}


def test_turn_refresh_quota_transport_and_binding() -> None:
    net, server, client, _ = turn_net()
    server.max_allocations = 1
    udp = request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 6}, tid=20)
    assert ask(net, client, udp).error_code == 442
    allocate(net, client)
    net.run(net.now + 500.0)
    refresh = request(Method.REFRESH, {"LIFETIME": 600}, tid=21)
    assert ask(net, client, refresh).attributes["LIFETIME"] == 600
    net.run(net.now + 500.0)  # past the first lifetime, not the refreshed one
    assert len(server.allocations) == 1
    # A second client: over quota.
    net.add_host("10.0.0.5", nat=net.nat_of(PRIVATE[0]))
    other = net.socket(("10.0.0.5", 5000))
    over = request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}, tid=22)
    assert ask(net, other, over).error_code == 486
    # Binding on the TURN port is answered, unauthenticated.
    binding = Message(Method.BINDING, Class.REQUEST, bytes(12)).encode()
    answer = ask(net, other, binding)
    assert answer.attributes["XOR-MAPPED-ADDRESS"] == ("203.0.113.1", 40001)
    # Requests for an allocation that is not there: 437; a malformed one: 400.
    permit = request(Method.CREATE_PERMISSION, {"XOR-PEER-ADDRESS": S1}, tid=23)
    assert ask(net, other, permit).error_code == 437
    bind = request(
        Method.CHANNEL_BIND, {"XOR-PEER-ADDRESS": S1, "CHANNEL-NUMBER": 0x4000}, tid=24
    )
    assert ask(net, other, bind).error_code == 437
    no_peer = request(Method.CREATE_PERMISSION, tid=25)
    assert ask(net, client, no_peer).error_code == 400


def test_turn_over_tcp_closes_a_stream_out_of_step() -> None:
    net, server, _, _ = turn_net()
    client = Client(net, ("10.0.0.2", 6000), "tcp")
    client.allocation.start(net.now)
    client.flush()
    net.run(net.now + 1.0)
    assert len(server.allocations) == 1
    client.out(b"\xff\xff\xff\xff not a frame")
    client.allocation.send(S1, b"after", net.now)
    client.flush()
    net.run(net.now + 1.0)
    assert server.allocations == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_servers_survive_any_bytes(chunks: list[bytes], tcp: bool) -> None:
    net, server, client, _ = turn_net()
    stun = StunServer(net, ("198.51.100.3", 3478))
    stream = net.open_stream(("10.0.0.2", 6000), TURN, lambda data: None)
    for chunk in chunks:
        for data in (chunk, b"\x00\x01" + chunk, b"\x40\x00" + chunk):
            if tcp:
                stream.send(data)
            else:
                client.send(TURN, data)
            client.send(stun.addr, data)
    net.run(net.now + 1.0)
    assert server.allocations == {}


def test_routing_errors_and_messages() -> None:
    net, inside, _ = natted()
    with pytest.raises(ValueError, match="already on the network"):
        net.add_host(PRIVATE[0])
    with pytest.raises(ValueError, match="no host"):
        net.bind(("192.0.2.1", 1), lambda src, dst, data: None)
    with pytest.raises(ValueError, match="already bound"):
        net.socket(PRIVATE)
    with pytest.raises(ValueError, match="no host"):
        net.send(("192.0.2.1", 1), S1, b"x")
    with pytest.raises(ValueError, match="no stream server"):
        net.open_stream(PRIVATE, S1, lambda data: None)
    with pytest.raises(ValueError, match="no host or NAT"):
        net.set_link("192.0.2.1", Link())
    inside.send(("198.51.100.1", 9), b"nobody there")
    request = Message(Method.BINDING, Class.REQUEST, bytes(12))
    inside.send(S1, request.encode())
    net.run(1.0)
    assert net.stats.unroutable == 1
    ((_, src, dst, message),) = net.messages(dst=S1)
    assert (src, dst, message) == (("203.0.113.1", 40000), S1, request)
    assert net.messages(src=S1) == []
    assert net.link(PRIVATE[0]) == (net.default_link, net.default_link)


# --- what white-box tests use: exact delays, filters, forged datagrams --------------


def exact() -> VirtualNet:
    """1 ms up, nothing down: every datagram between public hosts takes 1 ms."""
    return VirtualNet(up=Link(delay=0.001), down=Link())


def test_default_up_and_down_links_and_the_host_list() -> None:
    net = exact()
    net.add_host("192.0.2.1")
    assert net.link("192.0.2.1") == (Link(delay=0.001), Link())
    assert net.hosts == {"192.0.2.1"}
    net.set_link("192.0.2.1", down=Link(delay=0.5))
    assert net.link("192.0.2.1") == (Link(delay=0.001), Link(delay=0.5))
    one = VirtualNet(link=Link(delay=0.2), down=Link())
    one.add_host("192.0.2.2")
    assert one.link("192.0.2.2") == (Link(delay=0.2), Link())


def test_filters_drop_and_are_counted_and_see_the_static_nat_source() -> None:
    net = exact()
    net.add_host("10.0.0.1")
    net.add_host("192.0.2.9")
    a = net.socket(("10.0.0.1", 1000))
    b = net.socket(("192.0.2.9", 2000))
    public = ("203.0.113.7", 7000)
    net.add_static_nat(a.addr, public)
    seen: list[tuple[Address, Address, bytes]] = []

    def spy(src: Address, dst: Address, data: bytes) -> bool:
        seen.append((src, dst, data))
        return True

    net.filters.append(spy)
    net.filters.append(lambda src, dst, data: data != b"drop me")
    a.send(b.addr, b"hello")
    a.send(b.addr, b"drop me")
    net.run(1.0)
    assert b.received == [(0.001, public, b"hello")]
    assert seen[0] == (public, b.addr, b"hello")
    assert net.stats.filtered == 1
    # What is sent to the public address reaches the private one.
    b.send(public, b"back")
    net.run(2.0)
    assert a.received == [(1.001, b.addr, b"back")]


def test_inject_forges_any_source_with_the_sender_link_delay_or_a_given_one() -> None:
    net = exact()
    net.add_host("192.0.2.9")
    b = net.socket(("192.0.2.9", 2000))
    net.inject(("192.0.2.9", 1), b.addr, b"from a host")  # its 1 ms up link
    net.inject(("198.51.100.77", 5), b.addr, b"forged")  # no host: no delay
    net.inject(("198.51.100.78", 5), b.addr, b"later", delay=0.25)
    net.filters.append(lambda src, dst, data: data != b"filtered")
    net.inject(("198.51.100.79", 5), b.addr, b"filtered")
    net.run(1.0)
    assert b.received == [
        (0.0, ("198.51.100.77", 5), b"forged"),
        (0.001, ("192.0.2.9", 1), b"from a host"),
        (0.25, ("198.51.100.78", 5), b"later"),
    ]


def attached(net: VirtualNet, name: str, controlling: bool) -> IceAgent:
    agent = IceAgent(
        controlling=controlling,
        local_username=name * 4,
        local_password=name * 22,
        rng=random.Random(name),
        name=name,
    )
    net.attach(agent)
    return agent


def test_an_attached_agent_connects_and_its_views_are_per_agent() -> None:
    net = exact()
    a = attached(net, "a", True)
    b = attached(net, "b", False)
    net.peer(a).add_host(0, 1, ("10.0.0.1", 1000), local_pref=100)
    net.peer(b).add_host(0, 1, ("10.0.0.2", 2000))
    assert net.peer(a).ip == "10.0.0.1"
    assert net.peer(a).addresses == {("10.0.0.1", 1000)}
    assert net.peer(net.peer(b)) is net.peer(b)
    with pytest.raises(ValueError, match="already on the network"):
        net.attach(a)
    net.exchange(net.peer(a), net.peer(b))
    a.connect(net.now)
    b.connect(net.now)
    net.run(10.0, stop=lambda: a.state != IceState.CHECKING != b.state)
    assert a.state == b.state == IceState.COMPLETED
    # One round trip of 1 ms each way: b answers a's first check at 1 ms, a
    # has a valid pair at 2 ms and nominates at once.
    assert net.first(a, IceCompleted) == 0.004
    assert net.types(a)[-1] is IceCompleted
    assert net.events(a) == [e for _, e in net.timeline(a)]
    assert {name for _, name, _ in net.timeline()} == {"a", "b"}
    with pytest.raises(LookupError, match="no IceFailed"):
        net.first(a, IceFailed)
    requests = net.sent_messages(a, Class.REQUEST)
    assert requests[0][:3] == (0.0, ("10.0.0.1", 1000), ("10.0.0.2", 2000))
    assert all(src == ("10.0.0.1", 1000) for _, src, _, _ in requests)
    assert len(net.sent_messages()) > len(net.sent_messages(a))
    assert net.peer(a).send(b"data")
    net.run(net.now + 1.0)
    assert net.data(b) == [(b"data", 1)]
    # Application data is in the log of what was sent, not in the messages.
    assert net.sent[-1].data == b"data"
    assert all(m.transaction_id for *_, m in net.sent_messages(a))
    assert net.stuck_timers == []
    other = IceAgent(controlling=True, local_username="zzzz", local_password="z" * 22)
    with pytest.raises(KeyError, match="not on the network"):
        net.peer(other)


def test_a_timer_still_due_after_handle_timer_is_recorded() -> None:
    class Stuck(IceAgent):
        def get_timer(self) -> float | None:
            return 0.5

    net = exact()
    agent = Stuck(controlling=True, local_username="ssss", local_password="s" * 22)
    net.attach(agent)
    net.step()
    assert net.stuck_timers == [(agent.name, 0.5, 0.5)]


def test_turn_server_refuses_a_method_and_redirects_allocates() -> None:
    net, server, client, _ = turn_net()
    server.refuse[Method.ALLOCATE] = 486
    refused = ask(net, client, request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}))
    assert (refused.message_class, refused.error_code) == (Class.ERROR, 486)
    server.alternate = ("198.51.100.10", 3478)
    moved = ask(
        net, client, request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}, tid=2)
    )
    assert moved.error_code == 300
    assert moved.attributes["ALTERNATE-SERVER"] == ("198.51.100.10", 3478)
    assert server.allocations == {}
    server.alternate = None
    del server.refuse[Method.ALLOCATE]
    assert allocate(net, client)[0] == TURN[0]
    numbered = TurnServer(net, ("198.51.100.11", 3478), relay_port=50000)
    client.send(numbered.addr, request(Method.ALLOCATE, {"REQUESTED-TRANSPORT": 17}))
    net.run(net.now + 1.0)
    answer = parse_message(client.received[-1][2])
    assert answer.attributes["XOR-RELAYED-ADDRESS"] == ("198.51.100.11", 50000)


def test_a_stream_transport_reconnects_to_the_address_its_agent_sends_to() -> None:
    net = exact()
    first = TurnServer(net, ("198.51.100.1", 3478))
    second = TurnServer(net, ("198.51.100.2", 3478))
    first.alternate = second.addr
    agent = attached(net, "t", True)
    allocation = TurnAllocation(
        server=first.addr,
        username="user",
        password="secret",
        transport="tcp",
        rng=random.Random(3),
    )
    agent.add_relay(9, 10, 1, allocation)
    net.peer(agent).add_transport(9, ("10.0.0.1", 1500), stream_to=first.addr)
    assert net.peer(agent).addresses == {("10.0.0.1", 1500)}
    agent.gather(net.now)
    net.run(1.0)
    assert agent.transports_to_reconnect() == [9]
    assert [c.type for c in agent.local_candidates] == ["relay"]
    assert list(second.allocations) == [("10.0.0.1", 1500)]
    assert first.allocations == {}
    # Every datagram is logged from the transport's own address.
    assert {d.src for d in net.sent} == {("10.0.0.1", 1500)}
    assert {d.dst for d in net.sent} == {first.addr, second.addr}


def test_stream_bytes_and_datagrams_due_together_go_in_the_order_sent() -> None:
    net = exact()
    server = TurnServer(net, ("198.51.100.1", 3478))
    net.add_host("10.0.0.1")
    stream = net.open_stream(("10.0.0.1", 1), server.addr, lambda data: None)
    allocate = Message(Method.ALLOCATE, Class.REQUEST, bytes(12)).encode()
    for first_by_stream in (True, False):
        if first_by_stream:
            stream.send(allocate)
        net.send(("10.0.0.1", 2), server.addr, allocate)
        if not first_by_stream:
            net.run(net.now + 0.0005)
            stream.send(allocate)
        net.run(net.now + 1.0)
    # Both at 1 ms the first time: the stream's bytes were sent first.
    assert [client for client, _ in server.requests] == [
        ("10.0.0.1", 1),
        ("10.0.0.1", 2),
        ("10.0.0.1", 2),
        ("10.0.0.1", 1),
    ]
