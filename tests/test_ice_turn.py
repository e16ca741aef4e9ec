"""Relay candidates in the ICE agent (``syncice.ice`` with ``syncice.turn``),
layer 1: agents and a TURN server (:class:`syncice.testing.TurnServer`) on a
:class:`syncice.testing.VirtualNet` (:func:`tests.helpers.exact_net`), in
virtual time."""

from __future__ import annotations

import random

import pytest

from syncice._relays import RELAY_PREFERENCES, Relay, RelayAllocated, relay_candidate
from syncice.candidate import Candidate, candidate_foundation, candidate_priority
from syncice.events import (
    CandidateGathered,
    GatheringCompleted,
    IceCompleted,
    RelayLost,
)
from syncice.ice import IceAgent, IceConfig, IceState
from syncice.stun import Class, Method, parse_message
from syncice.testing import TurnServer, VirtualNet
from syncice.turn import TurnAllocation, TurnState
from tests.helpers import (
    Address,
    agent_pair,
    connect_pair,
    exact_net,
    exchange_candidates,
)

SERVER = ("198.51.100.1", 3478)
A_TRANSPORT = ("10.0.0.1", 1500)
A_RELAY = 10  # the relay endpoint of agent a
A_PATH = 9  # its transport endpoint


def turn_server(net: VirtualNet, addr: Address = SERVER) -> TurnServer:
    """A TURN server at ``addr``; its relayed addresses are ``(host, 50000)``,
    ``(host, 50001)``..."""
    return TurnServer(net, addr, realm="test", relay_port=50000)


def add_relay(
    net: VirtualNet,
    agent: IceAgent,
    *,
    transport: int = A_PATH,
    endpoint: int = A_RELAY,
    addr: Address = A_TRANSPORT,
    server: Address = SERVER,
    password: str = "secret",
    kind: str = "udp",
    connect: bool = True,
) -> TurnAllocation:
    """Give ``agent`` a relay on ``server`` from ``addr``; over TCP, the
    stream is opened unless ``connect`` is false (the caller then tells the
    agent the transport is lost, as a refused connect would)."""
    allocation = TurnAllocation(
        server=server,
        username="user",
        password=password,
        transport=kind,
        rng=random.Random(7),
        name=agent.name,
    )
    agent.add_relay(transport, endpoint, 1, allocation)
    if kind == "udp":
        net.peer(agent).add_transport(transport, addr)
    elif connect:
        net.peer(agent).add_transport(transport, addr, stream_to=server)
    return allocation


def relayed_pair(
    *, a_hosts: tuple[str, ...] = ("10.0.0.1",), config: IceConfig | None = None
) -> tuple[VirtualNet, IceAgent, IceAgent, TurnServer, TurnAllocation]:
    """Agent a with a relay (and the given hosts), agent b with a host;
    gathered, candidates not exchanged yet."""
    net = exact_net()
    node = turn_server(net)
    net, a, b = agent_pair(net=net, a_hosts=a_hosts, exchange=False, config=config)
    allocation = add_relay(net, a)
    a.gather(net.now)
    b.gather(net.now)
    net.run(1.0, stop=lambda: bool(net.types(a)) and GatheringCompleted in net.types(a))
    return net, a, b, node, allocation


def test_relay_candidate_is_gathered_with_the_mapped_address_as_related() -> None:
    net, a, _, node, allocation = relayed_pair()
    relay = [c for c in a.local_candidates if c.type == "relay"]
    assert len(relay) == 1
    candidate = relay[0]
    assert (candidate.host, candidate.port) == node.allocations[A_TRANSPORT].relayed
    assert (candidate.related_address, candidate.related_port) == A_TRANSPORT
    assert candidate.priority == candidate_priority(1, "relay")
    assert candidate.foundation == candidate_foundation("relay", "udp", SERVER[0])
    # Gathering waited for the allocation: 401, then the authenticated retry.
    types = net.types(a)
    assert types.index(GatheringCompleted) > max(
        i for i, t in enumerate(types) if t is CandidateGathered
    )
    assert net.first(a, GatheringCompleted) == pytest.approx(0.004)
    assert allocation.state == TurnState.ALLOCATED
    assert a.relay(A_RELAY) == (A_PATH, allocation)
    assert a.relay(0) is None
    assert a.relay_count == 1


@pytest.mark.parametrize("relay_only", [False, True])
def test_relayed_agent_connects_and_data_goes_through_the_server(
    relay_only: bool,
) -> None:
    net, a, b, node, allocation = relayed_pair(
        a_hosts=() if relay_only else ("10.0.0.1",)
    )
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    assert a.state == b.state == IceState.COMPLETED
    pair = a.selected[1]
    if relay_only:
        assert pair.endpoint == A_RELAY
        assert pair.local.type == "relay"
        # b saw the checks come from the relayed address.
        assert b.selected[1].remote_addr == node.allocations[A_TRANSPORT].relayed
        # The first check waited for the permission, not for a retransmission.
        assert net.first(a, IceCompleted) < 0.1
        assert a.send(1, b"through the relay", net.now)
        net.run(net.now + 1.0)
        assert net.data(b)[-1] == (b"through the relay", 1)
        route = b.route(1)
        assert route is not None
        net.inject(("10.0.0.2", 2000), route[1], b"back")
        net.run(net.now + 1.0)
        assert net.data(a)[-1] == (b"back", 1)
        assert allocation.channels  # bound meanwhile: ChannelData both ways
    else:
        assert pair.local.type == "host"


def test_send_without_a_selected_pair_returns_false() -> None:
    net, a, _, _, _ = relayed_pair()
    assert not a.send(1, b"x", net.now)


def test_refused_allocation_leaves_the_other_candidates() -> None:
    net = exact_net()
    node = turn_server(net)
    node.refuse[Method.ALLOCATE] = 486
    net, a, _ = agent_pair(net=net, exchange=False)
    allocation = add_relay(net, a)
    a.gather(net.now)
    net.run(1.0)
    assert GatheringCompleted in net.types(a)
    assert [c.type for c in a.local_candidates] == ["host"]
    assert allocation.state == TurnState.FAILED


def test_silent_server_ends_gathering_at_the_bound() -> None:
    net, a, _ = agent_pair(exchange=False, config=IceConfig(gather_timeout=2.0))
    allocation = add_relay(net, a)  # nobody at SERVER
    a.gather(net.now)
    net.run(10.0)
    assert net.first(a, GatheringCompleted) == 2.0
    assert allocation.state == TurnState.FAILED


def test_datagrams_from_another_address_on_the_transport_are_dropped() -> None:
    _net, a, _, _, _ = relayed_pair()
    before = a.stats.unexpected
    assert (
        a.receive_datagram(A_PATH, b"\x40\x00\x00\x01x", ("192.0.2.9", 3478), 1.0)
        is None
    )
    assert a.stats.unexpected == before + 1


def test_stream_bytes_for_an_unknown_transport_are_counted() -> None:
    _net, a, _, _, _ = relayed_pair()
    before = a.stats.unexpected
    assert a.receive_stream(42, b"abc", 1.0) == []
    assert a.stats.unexpected == before + 1


def test_relay_over_a_stream_transport() -> None:
    net = exact_net()
    node = turn_server(net)
    net, a, b = agent_pair(net=net, a_hosts=(), exchange=False)
    add_relay(net, a, kind="tcp")
    a.gather(net.now)
    b.gather(net.now)
    net.run(1.0)
    assert [c.type for c in a.local_candidates] == ["relay"]
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    assert a.state == b.state == IceState.COMPLETED
    route = b.route(1)
    assert route is not None
    net.inject(("10.0.0.2", 2000), route[1], b"over tcp")
    net.run(net.now + 1.0)
    assert net.data(a)[-1] == (b"over tcp", 1)
    assert node.allocations


def test_close_releases_the_allocation() -> None:
    net, a, _, node, allocation = relayed_pair()
    assert A_TRANSPORT in node.allocations
    a.close(net.now)
    releasing_after_close = a.releasing
    assert releasing_after_close
    assert a.state == IceState.CLOSED
    assert a.get_timer() is not None  # the Refresh's retransmission
    net.run(net.now + 1.0, stop=lambda: not a.releasing)
    assert not a.releasing
    assert A_TRANSPORT not in node.allocations
    refresh = [m for _, m in node.requests if m.method == Method.REFRESH]
    assert refresh[-1].attributes["LIFETIME"] == 0
    assert allocation.state == TurnState.CLOSED
    assert a.get_timer() is None


def test_close_without_now_leaves_the_allocation_alone() -> None:
    net, a, _, node, _ = relayed_pair()
    a.close()
    assert not a.releasing
    net.run(net.now + 1.0)
    assert A_TRANSPORT in node.allocations


def test_allocation_finishing_after_close_adds_no_candidate() -> None:
    net = exact_net()
    turn_server(net)
    net, a, _ = agent_pair(net=net, exchange=False)
    add_relay(net, a)
    a.gather(net.now)
    a.close()
    net.run(1.0)
    assert [c.type for c in a.local_candidates] == ["host"]


def test_allocation_finishing_after_connect_pairs_the_relay_at_once() -> None:
    net = exact_net()
    turn_server(net)
    net, a, _b = agent_pair(net=net, exchange=True)
    add_relay(net, a)
    a.connect(net.now)
    a.gather(net.now)
    net.run(0.01, stop=lambda: any(c.type == "relay" for c in a.local_candidates))
    assert any(p.endpoint == A_RELAY for p in a.pairs)


def test_lost_transport_before_allocation_ends_it() -> None:
    net = exact_net()
    net, a, _ = agent_pair(net=net, exchange=False)
    allocation = add_relay(net, a, kind="tcp", connect=False)
    a.gather(net.now)
    a.transport_lost(A_PATH, "connection refused", net.now)
    net.flush()
    assert allocation.state == TurnState.FAILED
    assert GatheringCompleted in net.types(a)
    a.transport_lost(A_PATH, "again", net.now)  # nothing more
    a.transport_lost(77, "unknown", net.now)  # not a transport: ignored


def test_lost_relay_fails_its_pairs_during_checks() -> None:
    net, a, b, _, _ = relayed_pair()
    exchange_candidates(net, a, b)
    a.connect(net.now)
    net.flush()
    relay_pairs = [p for p in a.pairs if p.endpoint == A_RELAY]
    assert relay_pairs
    a.transport_lost(A_PATH, "reset", net.now)
    assert all(p.state.value == "failed" for p in relay_pairs)
    connect_pair(net, a, b)
    assert a.state == IceState.COMPLETED
    assert a.selected[1].endpoint != A_RELAY


def test_lost_relay_of_the_selected_pair_closes_the_agent() -> None:
    net, a, b, _, _ = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    assert a.selected[1].endpoint == A_RELAY
    a.transport_lost(A_PATH, "reset", net.now)
    net.flush()
    assert net.events(a)[-1] == RelayLost(component=1, reason="reset")
    assert a.state == IceState.CLOSED


def test_permission_refused_keeps_the_allocation() -> None:
    net, a, b, node, allocation = relayed_pair(a_hosts=())
    node.refuse[Method.CREATE_PERMISSION] = 403
    node.refuse[Method.CHANNEL_BIND] = 403
    exchange_candidates(net, a, b)
    connect_pair(net, a, b, until=net.now + 45.0)
    assert a.state == IceState.FAILED
    assert allocation.state == TurnState.ALLOCATED


def test_refresh_keeps_the_allocation_through_long_connections() -> None:
    net, a, b, node, _ = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    net.run(net.now + 1300.0)
    assert a.state == IceState.COMPLETED
    refreshes = [
        m
        for _, m in node.requests
        if m.method == Method.REFRESH and m.message_class == Class.REQUEST
    ]
    assert len(refreshes) >= 2


def test_relay_ids_must_be_new_and_the_component_valid() -> None:
    _net, a, _ = agent_pair(exchange=False)
    allocation = TurnAllocation(server=SERVER, username="u", password="p")
    with pytest.raises(ValueError, match="already"):
        a.add_relay(0, 20, 1, allocation)
    with pytest.raises(ValueError, match="already"):
        a.add_relay(21, 21, 1, allocation)
    with pytest.raises(ValueError, match="component"):
        a.add_relay(21, 22, 2, allocation)


def test_messages_the_server_got_are_well_formed() -> None:
    net, a, b, node, _ = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    methods = [m.method for _, m in node.requests]
    assert methods[:2] == [Method.ALLOCATE, Method.ALLOCATE]
    assert Method.CREATE_PERMISSION in methods
    assert Method.CHANNEL_BIND in methods
    for sent in net.sent:
        if sent.dst == SERVER and sent.data[0] < 2:
            assert parse_message(sent.data).message_class in (
                Class.REQUEST,
                Class.INDICATION,
            )


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_alternate_server_is_followed(kind: str) -> None:
    other = ("198.51.100.2", 3478)
    net = exact_net()
    turn_server(net).alternate = other
    second = turn_server(net, other)
    net, a, _ = agent_pair(net=net, a_hosts=(), exchange=False)
    allocation = add_relay(net, a, kind=kind)
    a.gather(net.now)
    net.run(1.0, stop=lambda: kind == "tcp" and a.turn_server(A_PATH) == other)
    if kind == "tcp":
        # A stream must be connected anew: the caller is told, and then
        # sends what the allocation queued for the new server.
        assert a.transports_to_reconnect() == [A_PATH]
        assert a.transports_to_reconnect() == []
        assert a.turn_server(A_PATH) == other
        net.run(2.0)
    assert GatheringCompleted in net.types(a)
    [relay] = a.local_candidates
    assert (relay.host, relay.port) == second.allocations[A_TRANSPORT].relayed
    assert allocation.server == other


def test_allocation_refused_with_437_is_retried_from_a_new_transport() -> None:
    net = exact_net()
    node = turn_server(net)
    node.refuse[Method.ALLOCATE] = 437
    net, a, _ = agent_pair(net=net, a_hosts=(), exchange=False)
    first = add_relay(net, a)
    a.gather(net.now)
    net.run(1.0)
    # Gathering waits for the caller to open another socket.
    assert GatheringCompleted not in net.types(a)
    assert first.state == TurnState.FAILED
    assert a.transports_to_renew() == [A_PATH]
    assert a.transports_to_renew() == []
    del node.refuse[Method.ALLOCATE]
    second = TurnAllocation(server=SERVER, username="user", password="secret")
    net.peer(a).add_transport(11, ("10.0.0.1", 1501))
    with pytest.raises(ValueError, match="unknown"):
        a.renew_transport(99, 12, second, net.now)
    with pytest.raises(ValueError, match="unknown"):
        a.renew_transport(A_PATH, A_RELAY, second, net.now)
    a.renew_transport(A_PATH, 11, second, net.now)
    net.run(2.0)
    assert GatheringCompleted in net.types(a)
    [relay] = a.local_candidates
    assert (relay.related_address, relay.related_port) == ("10.0.0.1", 1501)
    assert a.relay(A_RELAY) == (11, second)


def refused_with_437() -> tuple[VirtualNet, IceAgent, int]:
    """Agent a, relay only, its Allocate refused with 437 (every time)."""
    net = exact_net()
    node = turn_server(net)
    node.refuse[Method.ALLOCATE] = 437
    net, a, _ = agent_pair(net=net, a_hosts=(), exchange=False)
    add_relay(net, a)
    a.gather(net.now)
    net.run(1.0)
    [old] = a.transports_to_renew()
    return net, a, old


def test_a_second_437_ends_the_relay() -> None:
    net, a, old = refused_with_437()
    net.peer(a).add_transport(11, ("10.0.0.1", 1501))
    second = TurnAllocation(server=SERVER, username="user", password="secret")
    a.renew_transport(old, 11, second, net.now)
    net.run(2.0)
    assert GatheringCompleted in net.types(a)
    assert a.local_candidates == []
    assert a.transports_to_renew() == []


def test_a_relay_kept_for_renewal_can_still_be_given_up() -> None:
    net, a, old = refused_with_437()
    a.transport_lost(old, "no socket", net.now)
    net.flush()
    assert GatheringCompleted in net.types(a)


def test_remote_candidates_get_permissions_before_checks() -> None:
    net, a, b, node, allocation = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b, end=False)
    net.run(net.now + 0.01)
    # No connect() yet: the permissions were asked for the remote candidates.
    assert set(node.allocations[A_TRANSPORT].permissions) == {"10.0.0.2"}
    assert set(allocation.channels) == {("10.0.0.2", 2000)}
    # A candidate added after the allocation succeeded gets one too, unless
    # it cannot pair with the relay (another family).
    b_late = make_candidate("10.0.0.3", 2001)
    a.add_remote_candidate(b_late, net.now)
    a.add_remote_candidate(make_candidate("2001:db8::3", 2002), net.now)
    net.run(net.now + 0.01)
    assert set(node.allocations[A_TRANSPORT].permissions) == {"10.0.0.2", "10.0.0.3"}


def make_candidate(host: str, port: int) -> Candidate:
    return Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=candidate_priority(1, "host"),
        host=host,
        port=port,
        type="host",
    )


def test_lost_transport_after_close_without_release_changes_nothing() -> None:
    net, a, b, _, allocation = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    a.close()
    a.transport_lost(A_PATH, "reset", net.now)
    net.flush()
    assert allocation.state == TurnState.FAILED
    assert RelayLost not in net.types(a)


def test_lost_transport_while_releasing_ends_the_release() -> None:
    net, a, _, _, allocation = relayed_pair()
    a.close(net.now)
    assert allocation.state == TurnState.CLOSING
    a.transport_lost(A_PATH, "reset", net.now)
    assert allocation.state == TurnState.CLOSED
    assert not a.releasing


def test_lost_relay_drops_the_check_in_flight() -> None:
    net, a, b, _, _ = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    a.connect(net.now)
    [pair] = a.pairs
    in_flight = pair.transaction
    assert in_flight is not None  # the first check went out at once
    a.transport_lost(A_PATH, "reset", net.now)
    assert (pair.transaction, pair.state.value) == (None, "failed")
    assert a.state == IceState.FAILED
    assert a.get_timer() is None


def test_close_before_gathering_has_nothing_to_release() -> None:
    net, a, _ = agent_pair(exchange=False)
    allocation = add_relay(net, a)
    a.close(net.now)
    assert allocation.state == TurnState.CLOSED
    assert not a.releasing
    assert a.datagrams_to_send() == []


def test_lost_relay_of_the_old_pair_during_a_restart_closes_the_agent() -> None:
    net, a, b, _, _ = relayed_pair(a_hosts=())
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    assert a.selected[1].endpoint == A_RELAY
    a.restart()
    assert a.route(1) is not None  # the old pair, through the relay
    a.transport_lost(A_PATH, "reset", net.now)
    net.flush()
    assert net.events(a)[-1] == RelayLost(component=1, reason="reset")
    assert a.state == IceState.CLOSED


def test_lost_relay_during_a_restart_spares_an_old_pair_on_a_host() -> None:
    net, a, b, _, _ = relayed_pair()
    exchange_candidates(net, a, b)
    connect_pair(net, a, b)
    old = a.selected[1]
    assert old.endpoint != A_RELAY
    a.restart()
    a.transport_lost(A_PATH, "reset", net.now)
    net.flush()
    assert RelayLost not in net.types(a)
    assert a.route(1) == (old.endpoint, old.remote_addr)


def test_relay_priority_prefers_udp_then_tcp_then_tls() -> None:
    """Of relays that work, the one reached over UDP wins: RFC 8445
    §5.1.2.1 leaves the local preference to the agent, and a stream's
    head-of-line blocking is what TCP and TLS add."""
    priorities = {}
    for kind in ("udp", "tcp", "tls"):
        allocation = TurnAllocation(
            server=SERVER, username="u", password="p", transport=kind
        )
        relay = Relay(0, 1, 1, allocation)
        candidate = relay_candidate(RelayAllocated(relay, ("203.0.113.9", 50000), None))
        assert candidate.priority == candidate_priority(
            1, "relay", RELAY_PREFERENCES[kind]
        )
        priorities[kind] = candidate.priority
    assert priorities["udp"] > priorities["tcp"] > priorities["tls"]
    # Every relay stays below every other type, even the lowest host one.
    assert priorities["udp"] < candidate_priority(1, "srflx", 0)
