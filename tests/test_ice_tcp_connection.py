"""ICE-TCP (RFC 6544) through both facades, both ends syncice, on loopback:
connecting with TCP only, data both ways with ``send()``/``recv()``
unchanged, the choice of UDP when both work, and what a TCP peer that has
not authenticated itself may do (nothing lasting). Connect time and
throughput against UDP are measured by ``bench/ice_tcp_vs_udp.py``, not here.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import syncice._tcp_links as tcp_links
import syncice.asyncio
from syncice import Candidate, Connection, ConnectionClosedError, IceConfig
from syncice.testing import virtual_time
from tests.conftest import exchange_candidates, has_ipv6_loopback, requires, spawn

LOOPBACK = ["127.0.0.1"]
GUARD = 10.0

needs_ipv6 = requires(has_ipv6_loopback(), "this host has no IPv6 loopback (::1)")


@contextmanager
def tcp_pair(
    transports: tuple[str, ...] = ("tcp",),
    *,
    components: int = 1,
    addresses: list[str] = LOOPBACK,
    config: IceConfig | None = None,
) -> Iterator[tuple[Connection, Connection]]:
    kwargs = {"local_addresses": addresses, "components": components, "config": config}
    a = Connection(True, transports=transports, **kwargs)  # type: ignore[arg-type]
    b = Connection(False, transports=transports, **kwargs)  # type: ignore[arg-type]
    try:
        exchange_candidates(a, b)
        other = spawn(lambda: b.connect(timeout=GUARD))
        a.connect(timeout=GUARD)
        other.result(GUARD)
        yield a, b
    finally:
        a.close()
        b.close()


def selected(conn: Connection) -> tuple[Candidate, Candidate]:
    (stats,) = [s for s in conn.get_stats() if s.selected]
    return stats.local, stats.remote


def passive_port(conn: Connection) -> int:
    (c,) = [c for c in conn.local_candidates if c.tcptype == "passive"]
    return c.port


def test_tcp_only_candidates() -> None:
    conn = Connection(True, local_addresses=LOOPBACK, transports=("tcp",))
    try:
        conn.gather_candidates(timeout=GUARD)
        got = [(c.transport, c.tcptype, c.host) for c in conn.local_candidates]
        assert got == [
            ("tcp", "passive", "127.0.0.1"),
            ("tcp", "active", "127.0.0.1"),
        ]
        (active,) = [c for c in conn.local_candidates if c.tcptype == "active"]
        assert active.port == 9
        # The passive candidate's port is listening.
        with socket.create_connection(("127.0.0.1", passive_port(conn)), GUARD):
            pass
    finally:
        conn.close()


SO = IceConfig(tcp_simultaneous_open=True)


def test_simultaneous_open_candidates_when_asked() -> None:
    conn = Connection(True, local_addresses=LOOPBACK, transports=("tcp",), config=SO)
    try:
        conn.gather_candidates(timeout=GUARD)
        got = [(c.tcptype, c.host) for c in conn.local_candidates]
        assert got == [
            ("passive", "127.0.0.1"),
            ("active", "127.0.0.1"),
            ("so", "127.0.0.1"),
        ]
        (so,) = [c for c in conn.local_candidates if c.tcptype == "so"]
        assert so.port not in (9, passive_port(conn))
        # Its port is held, not listening: a connection to it is refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", so.port), GUARD).close()
    finally:
        conn.close()
    # Closed with the connection: the port binds again, without SO_REUSEPORT.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", so.port))


def test_bad_simultaneous_open_option() -> None:
    with pytest.raises(TypeError, match="tcp_simultaneous_open must be a bool"):
        IceConfig(tcp_simultaneous_open=1)  # type: ignore[arg-type]


def test_refused_simultaneous_open_leaves_the_other_pairs_to_connect() -> None:
    # On a loopback each SYN to an S-O port meets no socket and is refused
    # (the peer's did not cross it): quietly, the connection goes on, and the
    # active-passive pair connects.
    with tcp_pair(config=SO) as (a, b):
        la, ra = selected(a)
        assert (la.tcptype, ra.tcptype) == ("active", "passive")
        assert ("so", "so") in [
            (s.local.tcptype, s.remote.tcptype) for s in a.get_stats()
        ]
        a.send(b"over active-passive")
        assert b.recv(timeout=GUARD) == b"over active-passive"


def test_connect_and_data_over_tcp_only() -> None:
    with tcp_pair() as (a, b):
        la, ra = selected(a)
        lb, rb = selected(b)
        assert (la.transport, la.tcptype, ra.tcptype) == ("tcp", "active", "passive")
        assert (lb.transport, lb.tcptype, rb.tcptype) == ("tcp", "passive", "active")
        for i in range(50):
            a.send(b"a%d" % i)
        assert [b.recv(timeout=GUARD) for _ in range(50)] == [
            b"a%d" % i for i in range(50)
        ]
        big = bytes(range(256)) * 255  # 65,280 bytes: one RFC 4571 frame
        b.send(big)
        assert a.recv(timeout=GUARD) == big
        with pytest.raises(ValueError, match="too large"):
            a.send(b"x" * 70000)
        (sa,) = [s for s in a.get_stats() if s.selected]
        assert sa.datagrams_sent >= 50
        assert sa.datagrams_received == 1


def test_many_datagrams_arrive_in_order() -> None:
    # 2,000 datagrams of 100 bytes: far less than the socket buffers and the
    # connection's 1 MiB, so TCP loses none, and keeps their order.
    with tcp_pair() as (a, b):
        sent = [i.to_bytes(4, "big") + bytes(96) for i in range(2000)]
        writer = spawn(lambda: a.send_many(sent))
        got = [b.recv(timeout=GUARD) for _ in sent]
        writer.result(GUARD)
        assert got == sent
        a.send(b"")  # cannot be framed: dropped, not an error
        a.send(b"after")
        assert b.recv(timeout=GUARD) == b"after"
        session = a._core.session
        assert session is not None
        assert session.tcp is not None
        assert session.tcp.dropped == 1
        (stats,) = [s for s in a.get_stats() if s.selected]
        assert stats.datagrams_sent == 2002


def test_two_components_over_tcp() -> None:
    with tcp_pair(components=2) as (a, b):
        pairs = [s for s in a.get_stats() if s.selected]
        assert sorted(s.component for s in pairs) == [1, 2]
        assert {s.local.transport for s in pairs} == {"tcp"}
        for component in (1, 2):
            a.sendto(b"to %d" % component, component)
            assert b.recvfrom(timeout=GUARD) == (b"to %d" % component, component)


@needs_ipv6
def test_ipv6_over_tcp() -> None:
    with tcp_pair(addresses=["::1"]) as (a, b):
        local, remote = selected(a)
        assert (local.host, local.transport) == ("::1", "tcp")
        assert (remote.host, remote.tcptype) == ("::1", "passive")
        b.send(b"over ::1")
        assert a.recv(timeout=GUARD) == b"over ::1"


def test_udp_pair_wins_when_both_work() -> None:
    with tcp_pair(("udp", "tcp")) as (a, b):
        assert {c.transport for c in a.local_candidates} == {"udp", "tcp"}
        assert selected(a)[0].transport == "udp"
        assert selected(b)[0].transport == "udp"
        a.send(b"ping")
        assert b.recv(timeout=GUARD) == b"ping"


def test_remote_tcp_candidates_refused_without_tcp() -> None:
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK, transports=("tcp",))
    try:
        a.gather_candidates(timeout=GUARD)
        assert {c.transport for c in a.local_candidates} == {"udp"}
        b.gather_candidates(timeout=GUARD)
        for c in b.local_candidates:
            a.add_remote_candidate(c)
        assert a.get_stats() == []  # a round trip to the worker: added by now
        agent = a._core.agent
        assert agent.remote_candidates == []
        assert agent.stats.candidates_refused == 2
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("tcp", TypeError),
        ((), ValueError),
        (("udp", "udp"), ValueError),
        (("sctp",), ValueError),
        ((1,), TypeError),
    ],
)
def test_bad_transports(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="transports"):
        Connection(True, transports=value)  # type: ignore[arg-type]


def test_losing_the_selected_connection_closes() -> None:
    with tcp_pair() as (a, b):
        b.close()
        with pytest.raises(ConnectionClosedError) as info:
            a.recv(timeout=GUARD)
        assert info.value.reason.startswith("TCP connection lost")


# --- untrusted peers ---------------------------------------------------------


def closed_by_peer(sock: socket.socket) -> bool:
    """Whether the other end closed ``sock`` (blocks until it does, or for
    the guard at most)."""
    sock.settimeout(GUARD)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "junk",
    [
        b"\x00\x05hello",  # data before authenticating
        b"\x00\x00",  # a zero length
        b"\x00\x14"
        + b"\x00\x01\x00\x00\x21\x12\xa4\x42"
        + b"\x00" * 12
        + b"\x00\x00",  # an unsigned Binding request, then a zero length
    ],
)
def test_garbage_closes_that_tcp_connection_only(junk: bytes) -> None:
    with tcp_pair() as (a, b):
        port = passive_port(b)
        with socket.create_connection(("127.0.0.1", port), GUARD) as raw:
            raw.sendall(junk)
            assert closed_by_peer(raw)
        # The ICE connection is untouched.
        a.send(b"still here")
        assert b.recv(timeout=GUARD) == b"still here"
        session = b._core.session
        assert session is not None
        assert session.tcp is not None
        assert session.tcp.garbage == 1


def test_pending_connections_are_bounded_and_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tcp_links, "PENDING_TIMEOUT", 0.3)
    conn = Connection(False, local_addresses=LOOPBACK, transports=("tcp",))
    try:
        conn.gather_candidates(timeout=GUARD)
        port = passive_port(conn)
        held = [
            socket.create_connection(("127.0.0.1", port), GUARD)
            for _ in range(tcp_links.MAX_PENDING)
        ]
        # One more than the bound: accepted and closed at once, while the
        # others are still pending (they time out only later).
        extra = socket.create_connection(("127.0.0.1", port), GUARD)
        assert closed_by_peer(extra)
        session = conn._core.session
        assert session is not None
        assert session.tcp is not None
        assert session.tcp.refused == 1
        # Those pending time out without a check: closed by us.
        assert all(closed_by_peer(s) for s in held)
        assert session.tcp.connections() == []
        # And a new one is accepted again.
        with socket.create_connection(("127.0.0.1", port), GUARD) as again:
            again.sendall(struct.pack("!H", 3) + b"abc")
            assert closed_by_peer(again)
        for s in [*held, extra]:
            s.close()
    finally:
        conn.close()


def test_asyncio_facade_over_tcp() -> None:
    async def main() -> None:
        kw = {"local_addresses": LOOPBACK, "transports": ("tcp",)}
        a = syncice.asyncio.Connection(True, **kw)  # type: ignore[arg-type]
        b = syncice.asyncio.Connection(False, **kw)  # type: ignore[arg-type]
        try:
            await asyncio.gather(a.gather_candidates(), b.gather_candidates())
            for local, remote in ((a, b), (b, a)):
                for candidate in remote.local_candidates:
                    await local.add_remote_candidate(candidate)
                await local.add_remote_candidate(None)
                local.remote_username = remote.local_username
                local.remote_password = remote.local_password
            await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), GUARD)
            await a.send(b"over tcp")
            assert await asyncio.wait_for(b.recv(), GUARD) == b"over tcp"
            await b.send(b"back")
            assert await asyncio.wait_for(a.recv(), GUARD) == b"back"
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_pending_connection_closed_after_10_virtual_seconds() -> None:
    """The default bound, in virtual time: an accepted connection that never
    authenticates is closed no sooner than PENDING_TIMEOUT after it came."""
    with virtual_time() as vt:
        conn = Connection(False, local_addresses=LOOPBACK, transports=("tcp",))
        try:
            conn.gather_candidates(timeout=GUARD)
            with vt.paused() as came:
                raw = socket.create_connection(("127.0.0.1", passive_port(conn)), GUARD)
            with raw:
                assert closed_by_peer(raw)
            assert vt.now() >= came + tcp_links.PENDING_TIMEOUT
        finally:
            conn.close()
