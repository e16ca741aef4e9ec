"""TURN relay candidates against a real coturn on loopback (layer 3).

coturn is the one ``tests/run-all.sh`` starts (``tests/coturn.sh``): long-term
credentials, relaying to loopback peers only, UDP, TCP and a TLS listener
with a self-signed certificate. aioice's host addresses are patched to
127.0.0.1 so that no traffic leaves loopback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aioice
import aioice.ice
import pytest

import syncice
from syncice import Connection, ConnectionClosedError, IceConfig, TransportPolicy
from syncice._worker import active_worker_threads
from tests.conftest import (
    PAIR_TIMEOUT,
    ConnectionPairs,
    TurnService,
    exchange_candidates,
    has_ipv6_loopback,
    missing_service,
    requires,
)
from tests.turn_probe import CoturnProbe

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("aioice_on_loopback")]

#: A short gather bound, so that failure cases end quickly.
QUICK = IceConfig(gather_timeout=1.0)


@pytest.fixture
def opened() -> Iterator[list[Connection]]:
    conns: list[Connection] = []
    yield conns
    for conn in conns:
        conn.close()


def relay_kwargs(
    coturn: TurnService, transport: str = "udp", *, ip: str | None = None
) -> dict[str, Any]:
    """Connection arguments for coturn over ``transport`` (udp, tcp, tls)."""
    ip = ip or coturn.ip
    kwargs: dict[str, Any] = {
        "turn_server": (ip, coturn.tls_port if transport == "tls" else coturn.port),
        "turn_username": coturn.username,
        "turn_password": coturn.password,
        "turn_transport": "udp" if transport == "udp" else "tcp",
    }
    if transport == "tls":
        kwargs["turn_ssl"] = ssl.create_default_context(cafile=str(coturn.cert))
    return kwargs


def relayed(
    opened: list[Connection] | ConnectionPairs,
    controlling: bool,
    coturn: TurnService,
    **kwargs: Any,
) -> Connection:
    transport = kwargs.pop("transport", "udp")
    args = relay_kwargs(coturn, transport)
    args.update(kwargs)
    args.setdefault("local_addresses", ["127.0.0.1"])
    if isinstance(opened, ConnectionPairs):  # blocking or asyncio, as it is set
        return opened.make(controlling, **args)
    conn = Connection(controlling, **args)
    opened.append(conn)
    return conn


def relay_candidates(conn: Connection) -> list[syncice.Candidate]:
    return [c for c in conn.local_candidates if c.type == "relay"]


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_relay_candidate_over_each_transport(
    coturn: TurnService, opened: list[Connection], transport: str
) -> None:
    conn = relayed(opened, True, coturn, transport=transport)
    conn.gather_candidates(timeout=PAIR_TIMEOUT)
    [relay] = relay_candidates(conn)
    assert relay.host == coturn.ip
    assert relay.related_address == "127.0.0.1"
    assert relay.related_port is not None
    assert conn.get_default_candidate(1) == relay
    # Host candidates are there too with the default policy.
    assert {c.type for c in conn.local_candidates} == {"host", "relay"}


@requires(has_ipv6_loopback(), "no IPv6 loopback on this host")
def test_ipv6_relay_over_ipv6(coturn: TurnService, opened: list[Connection]) -> None:
    if coturn.ip6 is None:
        missing_service("coturn listens on IPv4 only")
    args = relay_kwargs(coturn, ip=coturn.ip6)
    conn = Connection(
        True,
        local_addresses=["::1"],
        transport_policy=TransportPolicy.RELAY,
        **args,
    )
    opened.append(conn)
    conn.gather_candidates(timeout=PAIR_TIMEOUT)
    [relay] = relay_candidates(conn)
    assert relay.host == "::1"


@requires(has_ipv6_loopback(), "no IPv6 loopback on this host")
def test_ipv6_relay_requested_over_ipv4(
    coturn: TurnService, opened: list[Connection]
) -> None:
    """With use_ipv4=False, an IPv6 relay is asked for (REQUESTED-ADDRESS-FAMILY)
    over the IPv4 path to the server, which would otherwise give an IPv4 one."""
    if coturn.ip6 is None:
        missing_service("coturn relays on IPv4 only")
    conn = Connection(
        True,
        use_ipv4=False,
        transport_policy=TransportPolicy.RELAY,
        **relay_kwargs(coturn),
    )
    opened.append(conn)
    conn.gather_candidates(timeout=PAIR_TIMEOUT)
    [relay] = relay_candidates(conn)
    assert relay.host == "::1"
    assert relay.related_address == "127.0.0.1"


def exchange_datagrams(
    a: Connection, b: Connection, count: int, window: int = 50
) -> None:
    """``count`` datagrams each way in windows of ``window``, each checked."""
    for sender, receiver in ((a, b), (b, a)):
        for start in range(0, count, window):
            batch = [
                i.to_bytes(4, "big") + bytes([i % 251]) * 1196
                for i in range(start, min(start + window, count))
            ]
            for payload in batch:
                sender.send(payload)
            got = [receiver.recv(timeout=PAIR_TIMEOUT) for _ in batch]
            assert sorted(got) == batch


@pytest.mark.parametrize("both", [False, True], ids=["one-relayed", "both-relayed"])
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_relay_only_pair_exchanges_1000_datagrams(
    coturn: TurnService, connection_pairs: ConnectionPairs, both: bool, transport: str
) -> None:
    opened = connection_pairs
    a = relayed(
        opened,
        True,
        coturn,
        transport=transport,
        transport_policy=TransportPolicy.RELAY,
    )
    if both:
        b = relayed(
            opened,
            False,
            coturn,
            transport=transport,
            transport_policy=TransportPolicy.RELAY,
        )
    else:
        b = opened.connection(False)
    exchange_candidates(a, b)
    assert {c.type for c in a.local_candidates} == {"relay"}
    a.connect(timeout=PAIR_TIMEOUT)
    b.connect(timeout=PAIR_TIMEOUT)
    [stats] = [s for s in a.get_stats() if s.selected]
    assert stats.local.type == "relay"
    if both:
        [stats_b] = [s for s in b.get_stats() if s.selected]
        assert stats_b.local.type == "relay"
    # coturn drops part of a fast burst it relays to a TCP or TLS client
    # (measured: from about 27 back-to-back datagrams of 1200 bytes; an
    # aioice client lost 11 of 100): smaller windows there.
    exchange_datagrams(a, b, 1000, window=50 if transport == "udp" else 20)
    # ChannelData and a Send indication carry at most 65,535 bytes: the
    # caller hears it, and the relay carries on.
    with pytest.raises(ValueError, match="65536 bytes is too large"):
        a.send(bytes(0x10000))
    a.send(b"after the refusal")
    assert b.recv(timeout=PAIR_TIMEOUT) == b"after the refusal"


async def _against_aioice(
    coturn: TurnService, syncice_controlling: bool, pairs: ConnectionPairs
) -> None:
    ours = pairs.make(
        syncice_controlling,
        local_addresses=["127.0.0.1"],
        transport_policy=TransportPolicy.RELAY,
        **relay_kwargs(coturn),
    )
    theirs = aioice.Connection(ice_controlling=not syncice_controlling)
    try:
        await asyncio.gather(
            asyncio.to_thread(ours.gather_candidates, timeout=PAIR_TIMEOUT),
            theirs.gather_candidates(),
        )
        for c in theirs.local_candidates:
            ours.add_remote_candidate(syncice.Candidate.from_sdp(c.to_sdp()))
        ours.add_remote_candidate(None)
        for s in ours.local_candidates:
            await theirs.add_remote_candidate(aioice.Candidate.from_sdp(s.to_sdp()))
        await theirs.add_remote_candidate(None)
        ours.remote_username = theirs.local_username
        ours.remote_password = theirs.local_password
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password
        await asyncio.wait_for(
            asyncio.gather(
                asyncio.to_thread(ours.connect, timeout=PAIR_TIMEOUT), theirs.connect()
            ),
            PAIR_TIMEOUT + 5,
        )
        for i in range(100):
            payload = i.to_bytes(4, "big") + bytes(range(256))
            ours.send(payload)
            assert await asyncio.wait_for(theirs.recv(), 5.0) == payload
            await theirs.send(payload[::-1])
            assert await asyncio.to_thread(ours.recv, timeout=5.0) == payload[::-1]
    finally:
        await asyncio.to_thread(ours.close)
        await theirs.close()


@pytest.mark.parametrize(
    "syncice_controlling", [True, False], ids=["controlling", "controlled"]
)
def test_relay_only_against_aioice(
    coturn: TurnService, syncice_controlling: bool, connection_pairs: ConnectionPairs
) -> None:
    asyncio.run(_against_aioice(coturn, syncice_controlling, connection_pairs))


def test_ssl_cert_file_is_honoured_by_turn_ssl_true(
    coturn: TurnService, opened: list[Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(coturn.cert))
    conn = relayed(
        opened,
        True,
        coturn,
        transport="tls",
        turn_ssl=True,
        transport_policy=TransportPolicy.RELAY,
    )
    conn.gather_candidates(timeout=PAIR_TIMEOUT)
    assert len(relay_candidates(conn)) == 1


def free_port() -> int:
    """A TCP and UDP port on 127.0.0.1 that nobody listens on (just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


#: How gathering ends without a relay: the arguments, and what is logged.
NO_RELAY: dict[str, tuple[dict[str, Any], str]] = {
    "wrong-password": ({"turn_password": "wrong"}, "wrong credentials"),
    "untrusted-certificate": (
        # The default trust store does not know coturn's certificate.
        {"transport": "tls", "turn_ssl": True},
        "CERTIFICATE_VERIFY_FAILED",
    ),
    "server-down-udp": ({"down": True}, "timed out waiting for the TURN server"),
    "server-down-tcp": ({"down": True, "transport": "tcp"}, "ECONNREFUSED"),
    "server-down-tls": ({"down": True, "transport": "tls"}, "ECONNREFUSED"),
}


@pytest.mark.parametrize("case", NO_RELAY)
def test_no_relay_within_the_gather_bound(
    coturn: TurnService,
    opened: list[Connection],
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    """Each failure ends that allocation, logged, within ``gather_timeout``;
    the connection has no candidate then (relay policy), and says so."""
    kwargs, logged = NO_RELAY[case]
    kwargs = dict(kwargs)
    if kwargs.pop("down", False):
        kwargs["turn_server"] = ("127.0.0.1", free_port())
    conn = relayed(
        opened,
        True,
        coturn,
        transport_policy=TransportPolicy.RELAY,
        config=QUICK,
        **kwargs,
    )
    with caplog.at_level(logging.WARNING, logger="syncice"):
        # The timeout is a hang guard: gathering ends by itself at the bound.
        conn.gather_candidates(timeout=QUICK.gather_timeout + 2.0)
    assert conn.local_candidates == []
    assert any(logged in r.getMessage() for r in caplog.records)
    with pytest.raises(ConnectionError):
        conn.send(b"x")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@requires(os.path.isdir("/proc/self/fd"), "no /proc/self/fd to count descriptors")
def test_open_connect_close_cycles_leave_nothing_behind(coturn: TurnService) -> None:
    probe = CoturnProbe.from_service(coturn)
    baseline = probe.allocations()
    mark = probe.mark()
    fds = fd_count()
    threads = threading.active_count()
    cycles = 200
    for i in range(cycles):
        a = Connection(
            True,
            local_addresses=["127.0.0.1"],
            transport_policy=TransportPolicy.RELAY,
            **relay_kwargs(coturn),
        )
        b = Connection(False, local_addresses=["127.0.0.1"])
        try:
            exchange_candidates(a, b)
            a.connect(timeout=PAIR_TIMEOUT)
            b.connect(timeout=PAIR_TIMEOUT)
            a.send(i.to_bytes(2, "big"))
            assert b.recv(timeout=PAIR_TIMEOUT) == i.to_bytes(2, "big")
        finally:
            a.close()
            b.close()
    # Nothing left here at once; coturn deletes a released allocation one
    # second after the Refresh with LIFETIME 0.
    assert fd_count() == fds
    assert threading.active_count() == threads
    assert active_worker_threads() == 0
    assert probe.wait_allocations(baseline, timeout=10.0)
    made = [
        x for x in probe.log.allocations_since(mark) if x.username == coturn.username
    ]
    assert len(made) == cycles
    assert all(x.refreshed_to_zero for x in made)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
@pytest.mark.parametrize("stage", ["gathered", "failed", "connected"])
def test_allocation_is_released_on_close(
    coturn: TurnService, transport: str, stage: str
) -> None:
    """Released with a Refresh of LIFETIME 0 (RFC 8656 §7) whether connect()
    never ran, failed, or succeeded."""
    probe = CoturnProbe.from_service(coturn)
    mark = probe.mark()
    conn = Connection(
        True,
        local_addresses=["127.0.0.1"],
        transport_policy=TransportPolicy.RELAY,
        # "failed": with nothing to pair, ICE waits for the peer's checks
        # for the patience timer (RFC 8863), here one RTO, 0.5 s.
        config=IceConfig(max_sends=1, final_wait=1) if stage == "failed" else None,
        **relay_kwargs(coturn, transport),
    )
    peer = Connection(False, local_addresses=["127.0.0.1"])
    try:
        conn.gather_candidates(timeout=PAIR_TIMEOUT)
        [relay] = relay_candidates(conn)
        if stage == "failed":
            # A peer that never answers: no candidate at all.
            conn.remote_username, conn.remote_password = "abcd", "a" * 22
            conn.add_remote_candidate(None)
            with pytest.raises(ConnectionError):
                conn.connect(timeout=PAIR_TIMEOUT)
        elif stage == "connected":
            exchange_candidates(conn, peer)
            conn.connect(timeout=PAIR_TIMEOUT)
        assert probe.log.wait_allocated(mark, 1, timeout=5.0)
    finally:
        conn.close()
        peer.close()
    relayed = (relay.host, relay.port)
    assert probe.wait_gone(mark, 1, relays=[relayed], timeout=5.0)
    [made] = probe.log.allocations_since(mark)
    assert made.refreshed_to_zero


@pytest.fixture
def redirecting(coturn: TurnService, tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """A second coturn whose Allocate answer is 300 ALTERNATE-SERVER, pointing
    at the first (same credentials): its UDP/TCP and TLS ports, and its
    certificate."""
    script = Path(__file__).with_name("coturn.sh")
    env = dict(os.environ)
    env["TURN_PASSWORD"] = coturn.password
    env["TURN_EXTRA_CONF"] = (
        f"alternate-server={coturn.ip}:{coturn.port}\n"
        f"tls-alternate-server={coturn.ip}:{coturn.tls_port}"
    )
    started = subprocess.run(
        ["bash", str(script), "start", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"the second coturn did not start: {started.stderr}")
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in started.stdout.splitlines()
        if line.startswith("export ")
    )
    try:
        yield (
            int(exports["TURN_PORT"]),
            int(exports["TURN_TLS_PORT"]),
            Path(exports["TURN_CERT"]),
        )
    finally:
        subprocess.run(
            ["bash", str(script), "stop", str(tmp_path)], timeout=30, check=True
        )


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_alternate_server_is_followed(
    coturn: TurnService,
    opened: list[Connection],
    redirecting: tuple[int, int, Path],
    transport: str,
) -> None:
    port, tls_port, cert = redirecting
    extra: dict[str, Any] = {}
    if transport == "tls":
        # Each server has its own self-signed certificate: trust both.
        context = ssl.create_default_context(cafile=str(coturn.cert))
        context.load_verify_locations(cafile=str(cert))
        extra["turn_ssl"] = context
    conn = relayed(
        opened,
        True,
        coturn,
        transport=transport,
        turn_server=(coturn.ip, tls_port if transport == "tls" else port),
        transport_policy=TransportPolicy.RELAY,
        **extra,
    )
    probe = CoturnProbe.from_service(coturn)
    mark = probe.mark()
    conn.gather_candidates(timeout=PAIR_TIMEOUT)
    [relay] = relay_candidates(conn)
    # The relay is the first server's: its log has the allocation.
    assert probe.log.wait_allocated(mark, 1, timeout=5.0)
    assert relay.host == coturn.ip


def test_losing_the_relay_of_the_selected_pair_closes_the_connection(
    coturn: TurnService, opened: list[Connection]
) -> None:
    a = relayed(
        opened, True, coturn, transport="tcp", transport_policy=TransportPolicy.RELAY
    )
    b = Connection(False, local_addresses=["127.0.0.1"])
    opened.append(b)
    exchange_candidates(a, b)
    a.connect(timeout=PAIR_TIMEOUT)
    b.connect(timeout=PAIR_TIMEOUT)
    session, worker = a._core.session, a._core.worker
    assert session is not None
    assert worker is not None
    [stream] = session.streams.values()
    # Our end of the TCP connection to coturn goes away under the stream.
    worker.submit(lambda: stream._sock.shutdown(socket.SHUT_RDWR)).result(PAIR_TIMEOUT)
    with pytest.raises(ConnectionClosedError) as raised:
        a.recv(timeout=PAIR_TIMEOUT)
    # What our socket reports depends on whether coturn's RST came first.
    assert raised.value.reason in (
        "TURN relay lost: closed by the server",
        "TURN relay lost: Connection reset by peer",
    )
