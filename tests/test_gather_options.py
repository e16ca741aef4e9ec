"""The options that shape gathering on real sockets: ``port_range=``, the
socket buffers of :class:`~syncice.IceConfig`, the interface options, and
many servers at once against coturn (loopback)."""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import ssl
import sys
import time
from collections.abc import Iterator

import pytest

import syncice.asyncio
from syncice import Connection, IceConfig, TransportPolicy
from syncice._bind import BindOptions, Interfaces, bind_socket, choose_addresses
from tests.conftest import TurnService, exchange_candidates, spawn

LOOPBACK = ["127.0.0.1"]


def free_range(count: int, *, tcp: bool = False) -> tuple[int, int]:
    """``count`` consecutive ports free on 127.0.0.1 now (UDP, and TCP too
    with ``tcp``), above the kernel's ephemeral range, so that no other
    socket of this machine is given one meanwhile by the kernel."""
    for _ in range(200):
        lo = random.randrange(61000, 65000 - count)
        kinds = [socket.SOCK_DGRAM] + ([socket.SOCK_STREAM] if tcp else [])
        try:
            for port in range(lo, lo + count):
                for kind in kinds:
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return (lo, lo + count - 1)
    pytest.fail("no free port range")


@pytest.fixture
def closing() -> Iterator[list[Connection]]:
    conns: list[Connection] = []
    yield conns
    for conn in conns:
        conn.close()


# --- port_range ------------------------------------------------------------------


def test_a_range_of_exactly_the_ports_needed(closing: list[Connection]) -> None:
    lo, hi = free_range(3)
    conn = Connection(True, components=3, local_addresses=LOOPBACK, port_range=(lo, hi))
    closing.append(conn)
    conn.gather_candidates(timeout=10)
    ports = sorted(c.port for c in conn.local_candidates)
    assert ports == list(range(lo, hi + 1))


def test_a_range_one_port_short_is_a_clear_error(closing: list[Connection]) -> None:
    lo, hi = free_range(2)
    conn = Connection(True, components=3, local_addresses=LOOPBACK, port_range=(lo, hi))
    closing.append(conn)
    with pytest.raises(OSError, match=f"port_range {lo}-{hi} exhausted") as info:
        conn.gather_candidates(timeout=10)
    assert info.value.errno == errno.EADDRINUSE
    # Nothing stays bound: the whole range is free again.
    for port in range(lo, hi + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))


def _established_peers(local_port: int) -> list[int]:
    """Remote ports of the established TCP connections on 127.0.0.1 whose
    local port is ``local_port`` (from /proc/net/tcp: this test's namespace)."""
    peers = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(local.split(":")[1], 16) == local_port:
                peers.append(int(remote.split(":")[1], 16))
    return peers


def test_ice_tcp_binds_listeners_and_connections_in_the_range(
    closing: list[Connection],
) -> None:
    # Each side: a listening socket and one outgoing connection (to the
    # peer's passive candidate): two TCP ports, taken from its own range.
    ranges = [free_range(2, tcp=True), free_range(2, tcp=True)]
    while ranges[0][0] <= ranges[1][1] and ranges[1][0] <= ranges[0][1]:
        ranges[1] = free_range(2, tcp=True)
    a, b = (
        Connection(
            controlling,
            local_addresses=LOOPBACK,
            transports=("tcp",),
            port_range=span,
        )
        for controlling, span in zip((True, False), ranges, strict=True)
    )
    closing += [a, b]
    exchange_candidates(a, b)
    other = spawn(lambda: b.connect(timeout=10))
    a.connect(timeout=10)
    other.result(10)
    a.send(b"in range")
    assert b.recv(timeout=10) == b"in range"
    for conn, (lo, hi), peer_range in (
        (a, ranges[0], ranges[1]),
        (b, ranges[1], ranges[0]),
    ):
        (passive,) = [c.port for c in conn.local_candidates if c.tcptype == "passive"]
        assert lo <= passive <= hi
        # Whoever connected to this listener did so from its own range.
        accepted = _established_peers(passive)
        assert accepted
        assert all(peer_range[0] <= port <= peer_range[1] for port in accepted)


def test_a_simultaneous_open_candidate_takes_its_port_from_the_range(
    closing: list[Connection],
) -> None:
    lo, hi = free_range(2, tcp=True)
    conn = Connection(
        True,
        local_addresses=LOOPBACK,
        transports=("tcp",),
        port_range=(lo, hi),
        config=IceConfig(tcp_simultaneous_open=True),
    )
    closing.append(conn)
    conn.gather_candidates(timeout=10)
    ports = {c.tcptype: c.port for c in conn.local_candidates}
    assert sorted([ports["passive"], ports["so"]]) == [lo, hi]


def test_the_asyncio_shim_binds_in_the_range() -> None:
    lo, hi = free_range(2)

    async def main() -> list[int]:
        conn = syncice.asyncio.Connection(
            True, components=2, local_addresses=LOOPBACK, port_range=(lo, hi)
        )
        try:
            await conn.gather_candidates()
            return sorted(c.port for c in conn.local_candidates)
        finally:
            await conn.close()

    assert asyncio.run(main()) == [lo, hi]


@pytest.mark.parametrize(
    ("port_range", "error"),
    [
        ((0, 10), ValueError),
        ((20, 10), ValueError),
        ((1, 65536), ValueError),
        ("1-2", TypeError),
        ((1.0, 2), TypeError),
        ((1, 2, 3), TypeError),
    ],
)
def test_a_bad_range_fails_the_construction(
    port_range: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="port_range"):
        Connection(True, port_range=port_range)  # type: ignore[arg-type]


def test_the_bind_helper_binds_tcp_in_the_range_too() -> None:
    lo, hi = free_range(2, tcp=True)
    options = BindOptions(port_range=(lo, hi))
    first = bind_socket("127.0.0.1", options, stream=True, reuse_address=True)
    second = bind_socket("127.0.0.1", options, stream=True)
    try:
        assert (first.type, first.getsockname()[1]) == (socket.SOCK_STREAM, lo)
        assert second.getsockname()[1] == hi
        with pytest.raises(OSError, match="no free TCP port") as info:
            bind_socket("127.0.0.1", options, stream=True)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        first.close()
        second.close()


def test_turn_sockets_are_in_the_range(
    coturn: TurnService, closing: list[Connection]
) -> None:
    """2 components: 2 host sockets and a UDP socket towards the server for
    each (turn_server=): 4 UDP ports; a TCP socket towards it for each
    (ice_servers=): 2 TCP ports of the same range."""
    lo, hi = free_range(4, tcp=True)
    conn = Connection(
        True,
        components=2,
        local_addresses=LOOPBACK,
        turn_server=(coturn.ip, coturn.port),
        turn_username=coturn.username,
        turn_password=coturn.password,
        ice_servers=[
            {
                "urls": f"turn:{coturn.ip}:{coturn.port}?transport=tcp",
                "username": coturn.username,
                "credential": coturn.password,
            }
        ],
        use_ipv6=False,
        port_range=(lo, hi),
    )
    closing.append(conn)
    conn.gather_candidates(timeout=10)
    relays = [c for c in conn.local_candidates if c.type == "relay"]
    assert len(relays) == 4  # two servers' allocations, per component
    # The relay candidates' related addresses are the client sockets' ports
    # as the server saw them: all in the range.
    ports = sorted(c.related_port or 0 for c in relays)
    assert ports == [lo, lo + 1, lo + 2, lo + 3]


# --- socket buffers -----------------------------------------------------------------


def test_socket_buffers_are_set_and_reported(closing: list[Connection]) -> None:
    conn = Connection(
        True,
        local_addresses=LOOPBACK,
        config=IceConfig(so_rcvbuf=65536, so_sndbuf=32768),
    )
    closing.append(conn)
    assert conn.socket_buffers == {}
    conn.gather_candidates(timeout=10)
    [host] = conn.local_candidates
    rcvbuf, sndbuf = conn.socket_buffers[(host.host, host.port)]
    # What the kernel reports: Linux doubles the size asked for.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        expected = (
            probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )
    assert (rcvbuf, sndbuf) == expected
    sys.stdout.write(f"socket_buffers: {conn.socket_buffers}\n")


@pytest.mark.parametrize("field", ["so_rcvbuf", "so_sndbuf"])
def test_bad_buffer_sizes(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        IceConfig(**{field: 0})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=field):
        IceConfig(**{field: 1.5})  # type: ignore[arg-type]


# --- interfaces ------------------------------------------------------------------


def test_interface_options_choose_the_callers_addresses() -> None:
    seen: list[tuple[str, str]] = []

    def keep(name: str, address: str) -> bool:
        seen.append((name, address))
        return address != "127.0.0.2"

    chosen = choose_addresses(
        ["127.0.0.1", "127.0.0.2"],
        Interfaces(filter=keep),
        use_ipv4=True,
        use_ipv6=True,
    )
    assert chosen == ["127.0.0.1"]
    assert seen == [("lo", "127.0.0.1"), ("lo", "127.0.0.2")]
    deny = Interfaces(deny=frozenset({"lo"}))
    assert choose_addresses(["127.0.0.1"], deny, use_ipv4=True, use_ipv6=True) == []
    allow = Interfaces(allow=frozenset({"lo"}))
    assert choose_addresses(["127.0.0.1"], allow, use_ipv4=True, use_ipv6=True) == [
        "127.0.0.1"
    ]


def test_a_connection_applies_the_filter_before_binding(
    closing: list[Connection],
) -> None:
    calls: list[tuple[str, str]] = []

    def only_first(name: str, address: str) -> bool:
        calls.append((name, address))
        return address == "127.0.0.1"

    conn = Connection(
        True, local_addresses=["127.0.0.1", "127.0.0.2"], interface_filter=only_first
    )
    closing.append(conn)
    assert calls == []  # called when gathering starts
    conn.gather_candidates(timeout=10)
    assert [c.host for c in conn.local_candidates] == ["127.0.0.1"]
    assert calls == [("lo", "127.0.0.1"), ("lo", "127.0.0.2")]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"interface_filter": "eth0"}, TypeError),
        ({"interfaces": "eth0"}, TypeError),
        ({"exclude_interfaces": [""]}, ValueError),
        ({"interfaces": [3]}, ValueError),
    ],
)
def test_bad_interface_options(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error, match="interface"):
        Connection(True, **kwargs)  # type: ignore[arg-type]


# --- many servers at once (coturn on loopback) ----------------------------------


def test_three_stun_and_two_turn_servers_one_silent(
    coturn: TurnService, closing: list[Connection]
) -> None:
    """3 STUN servers (coturn over IPv4 and IPv6, and a silent one) and 2
    TURN servers (coturn over UDP and over TLS): every live server's
    candidates, and the end of gathering at one bound, not two. On loopback
    the srflx candidates equal their bases and are pruned (RFC 8445
    §5.1.3). The time is measured and printed, not asserted."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    context = ssl.create_default_context(cafile=str(coturn.cert))
    addresses = ["127.0.0.1"] + ([coturn.ip6] if coturn.ip6 else [])
    stun6 = [f"stun:[{coturn.ip6}]:{coturn.port}"] if coturn.ip6 else []
    bound = 2.0
    conn = Connection(
        True,
        local_addresses=addresses,
        config=IceConfig(gather_timeout=bound),
        ice_servers=[
            f"stun:{coturn.ip}:{coturn.port}",
            *stun6,
            f"stun:127.0.0.1:{silent.getsockname()[1]}",
            {
                "urls": f"turn:{coturn.ip}:{coturn.port}",
                "username": coturn.username,
                "credential": coturn.password,
            },
            {
                "urls": f"turns:localhost:{coturn.tls_port}?transport=tcp",
                "username": coturn.username,
                "credential": coturn.password,
                "ssl_context": context,
            },
        ],
    )
    closing.append(conn)
    start = time.monotonic()
    try:
        conn.gather_candidates(timeout=30)  # a hang guard, not a timing
    finally:
        silent.close()
    elapsed = time.monotonic() - start
    sys.stdout.write(
        f"gathering with 3 STUN + 2 TURN servers, one silent: {elapsed:.3f} s"
        f" (per-server bound {bound} s)\n"
    )
    kinds = sorted(c.type for c in conn.local_candidates)
    assert kinds.count("host") == len(addresses)
    # UDP and TLS allocations from 127.0.0.1 (coturn relays IPv4 to an IPv4
    # client); the IPv6 host has no TURN server of its family here.
    relays = [c for c in conn.local_candidates if c.type == "relay"]
    assert len(relays) == 2
    assert len({(c.host, c.port) for c in relays}) == 2


def test_the_old_turn_keyword_follows_the_interface_options(
    coturn: TurnService, closing: list[Connection]
) -> None:
    calls: list[str] = []

    def second(name: str, address: str) -> bool:
        calls.append(address)
        return address == "127.0.0.2"

    conn = Connection(
        True,
        local_addresses=["127.0.0.1", "127.0.0.2"],
        interface_filter=second,
        turn_server=(coturn.ip, coturn.port),
        turn_username=coturn.username,
        turn_password=coturn.password,
        use_ipv6=False,
    )
    closing.append(conn)
    conn.gather_candidates(timeout=10)
    assert calls == ["127.0.0.1", "127.0.0.2"]  # once each, before binding
    [host] = [c for c in conn.local_candidates if c.type == "host"]
    [relay] = [c for c in conn.local_candidates if c.type == "relay"]
    assert host.host == relay.related_address == "127.0.0.2"


def test_a_437_retry_binds_another_port_of_the_range() -> None:
    """After a 437 the allocation is retried from a new socket: within the
    range, and on another port than the refused one (which is closed only
    once the new one is bound)."""
    from syncice.stun import Method
    from tests.test_connection import GUARD, UdpTurnServer
    from tests.turn_server import FakeTurnServer

    lo, hi = free_range(2)
    server = UdpTurnServer(FakeTurnServer(errors={Method.ALLOCATE: [437]}))
    conn = Connection(
        True,
        local_addresses=LOOPBACK,
        turn_server=server.address,
        turn_username="user",
        turn_password="secret",
        transport_policy=TransportPolicy.RELAY,
        port_range=(lo, hi),
    )
    try:
        conn.gather_candidates(timeout=GUARD)
        [relay] = conn.local_candidates
        assert [port for _, port in (server.clients[0], server.clients[-1])] == [lo, hi]
        assert relay.related_port == hi
    finally:
        conn.close()
        server.close()


def test_a_turn_server_given_both_ways_is_allocated_once(
    coturn: TurnService, closing: list[Connection]
) -> None:
    conn = Connection(
        True,
        local_addresses=LOOPBACK,
        use_ipv6=False,
        turn_server=(coturn.ip, coturn.port),
        turn_username=coturn.username,
        turn_password=coturn.password,
        ice_servers=[f"turn:{coturn.ip}:{coturn.port}"],  # the same credentials
    )
    closing.append(conn)
    conn.gather_candidates(timeout=10)
    assert [c.type for c in conn.local_candidates].count("relay") == 1
