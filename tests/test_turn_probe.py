"""tests/turn_probe.py against coturn, with aioice (and a raw client) allocating.

The parsing tests read log lines recorded from coturn 4.6.1 and need no
server; the rest talk to the coturn that ``tests/run-all.sh`` starts and skip
without it (fail under CI), like ``tests/test_coturn_service.py``. aioice's
host addresses are patched to 127.0.0.1 so that no traffic leaves loopback.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from pathlib import Path

import aioice
import aioice.ice
import aioice.turn
import pytest

from syncice.stun import (
    Attributes,
    Class,
    Message,
    Method,
    long_term_key,
    parse_message,
)
from tests.conftest import TurnService
from tests.turn_probe import (
    Allocation,
    Cause,
    CoturnLog,
    CoturnProbe,
    proc_net_address,
)

#: A hang guard. coturn deletes an allocation 1 s after a Refresh with
#: LIFETIME 0 over UDP; everything else shows in the log within milliseconds.
TIMEOUT = 5.0

# Lines of coturn 4.6.1 (verbose), one allocation per case: UDP deleted by a
# Refresh with LIFETIME 0, TCP refreshed to 0 then closed (what aioice does),
# TLS reset, UDP timed out, and one still live.
RECORDED = """\
376: : IPv4. Local relay addr: 127.0.0.1:59603
376: : session 000000000000000005: new, realm=<syncice.test>, username=<syncice>, \
lifetime=600
376: : session 000000000000000005: refreshed, realm=<syncice.test>, \
username=<syncice>, lifetime=0
377: : IPv4. tcp or tls connected to: 127.0.0.1:57752
377: : session 001000000000000006: new, realm=<syncice.test>, username=<other>, \
lifetime=600
377: : session 000000000000000005: closed (2nd stage), user <syncice> realm \
<syncice.test> origin <>, local 127.0.0.1:58277, remote 127.0.0.1:43797, reason: \
allocation timeout
377: : session 000000000000000005: delete: realm=<syncice.test>, username=<syncice>
377: : session 001000000000000006: refreshed, realm=<syncice.test>, \
username=<other>, lifetime=0
377: : session 001000000000000006: TCP socket closed remotely 127.0.0.1:57752
377: : session 001000000000000006: closed (2nd stage), user <other> realm \
<syncice.test> origin <>, local 127.0.0.1:58277, remote 127.0.0.1:57752, reason: \
TCP connection closed by client (callback)
377: : session 001000000000000006: delete: realm=<syncice.test>, username=<other>
380: : session 001000000000000008: new, realm=<syncice.test>, username=<syncice>, \
lifetime=600, cipher=ECDHE-ECDSA-AES256-GCM-SHA384, method=TLSv1.2
380: : session 001000000000000008: TLS/TCP socket disconnected: 127.0.0.1:42132
380: : session 001000000000000008: closed (2nd stage), user <syncice> realm \
<syncice.test> origin <>, local ::1:57433, remote ::1:42132, reason: TLS/TCP \
socket buffer operation error (callback)
380: : session 001000000000000008: delete: realm=<syncice.test>, username=<syncice>
0: : session 001000000000000001: new, realm=<syncice.test>, username=<syncice>, \
lifetime=600
3: : session 001000000000000001: usage: realm=<syncice.test>, username=<syncice>, \
rp=2, rb=144, sp=2, sb=216
3: : session 001000000000000001: closed (2nd stage), user <syncice> realm \
<syncice.test> origin <>, local 127.0.0.1:55015, remote 127.0.0.1:44561, reason: \
allocation timeout
3: : session 001000000000000001: delete: realm=<syncice.test>, username=<syncice>
4: : session 000000000000000009: new, realm=<syncice.test>, username=<syncice>, \
lifetime=600
4: : session 000000000000000009: refreshed, realm=<syncice.test>, \
username=<syncice>, lif"""


@pytest.fixture
def recorded(tmp_path: Path) -> CoturnLog:
    path = tmp_path / "turnserver.log"
    path.write_text(RECORDED)
    return CoturnLog(path)


def test_recorded_allocations_and_causes(recorded: CoturnLog) -> None:
    allocations = recorded.allocations_since(0)
    assert [(a.session[-1], a.username, a.cause) for a in allocations] == [
        ("5", "syncice", Cause.REFRESH),
        ("6", "other", Cause.CONNECTION_CLOSED),
        ("8", "syncice", Cause.CONNECTION_CLOSED),
        ("1", "syncice", Cause.TIMEOUT),
        ("9", "syncice", None),
    ]
    assert [a.client for a in allocations] == [
        ("127.0.0.1", 43797),
        ("127.0.0.1", 57752),
        ("::1", 42132),
        ("127.0.0.1", 44561),
        None,
    ]
    assert [a.refreshed_to_zero for a in allocations] == [
        True,
        True,
        False,
        False,
        False,
    ]
    # The last line is being written: its Refresh is not read yet.
    assert allocations[-1] == Allocation(
        "000000000000000009", "syncice", "syncice.test"
    )


def test_recorded_waits_filter_by_user_and_client(recorded: CoturnLog) -> None:
    # Waits end at once when the answer is there, and look once with 0.
    assert recorded.wait_deallocated(0, username="other", timeout=0)
    assert not recorded.wait_deallocated(0, 2, username="other", timeout=0)
    # The live allocation may be anyone's: never a false "all gone".
    assert not recorded.wait_deallocated(0, username="syncice", timeout=0)
    assert not recorded.wait_deallocated(0, client=("::1", 42132), timeout=0)
    assert len(recorded.wait_allocated(0, 4, username="syncice", timeout=0)) == 4
    with pytest.raises(TimeoutError):
        recorded.wait_allocated(0, 5, username="syncice", timeout=0)
    # From a mark on: the log's end, then only what comes after.
    mark = recorded.mark()
    assert recorded.allocations_since(mark) == []
    with recorded.path.open("a") as log:
        log.write(
            "etime=0\n"
            "5: : session 000000000000000009: closed (2nd stage), user <syncice> "
            "realm <syncice.test> origin <>, local 127.0.0.1:58277, remote "
            "127.0.0.1:5000, reason: allocation timeout\n"
            "5: : session 000000000000000009: delete: realm=<syncice.test>, "
            "username=<syncice>\n"
        )
    assert recorded.allocations_since(mark) == []
    assert recorded.allocations_since(0)[-1].cause is Cause.REFRESH
    assert recorded.wait_deallocated(0, 4, username="syncice", timeout=0)
    assert recorded.wait_deallocated(0, client=("::1", 42132), timeout=0)
    assert not recorded.wait_deallocated(0, client=("::1", 1), timeout=0)


def test_proc_net_address() -> None:
    little = socket.htonl(1) != 1
    assert proc_net_address(
        "0100007F:0D96" if little else "7F000001:0D96", socket.AF_INET
    ) == ("127.0.0.1", 3478)
    one = "01000000" if little else "00000001"
    assert proc_net_address("0" * 24 + one + ":C350", socket.AF_INET6) == (
        "::1",
        50000,
    )


# --- against coturn ------------------------------------------------------------


@pytest.fixture
def probe(coturn: TurnService, aioice_on_loopback: None) -> CoturnProbe:
    return CoturnProbe.from_service(coturn)


class Closed(asyncio.DatagramProtocol):
    """Knows when aioice's TURN transport has deleted its allocation."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(None)


async def allocate_and_close(
    coturn: TurnService, probe: CoturnProbe, transport: str
) -> tuple[int, tuple[str, int]]:
    """Allocate with aioice over ``transport``, check that the probe sees it,
    close it (aioice deletes it: Refresh with LIFETIME 0, then it closes its
    socket) and return the mark and the relayed address."""
    context = ssl.create_default_context(cafile=str(coturn.cert))
    mark = probe.mark()
    turn, protocol = await aioice.turn.create_turn_endpoint(
        Closed,
        (coturn.ip, coturn.tls_port if transport == "tls" else coturn.port),
        coturn.username,
        coturn.password,
        ssl=context if transport == "tls" else None,
        transport="udp" if transport == "udp" else "tcp",
    )
    relay: tuple[str, int] = turn.get_extra_info("sockname")
    try:
        assert relay in probe.relays.addresses()
        [live] = probe.log.wait_allocated(mark, username=coturn.username, timeout=1)
        assert (live.deleted, live.reason, live.client) == (False, None, None)
        assert not probe.wait_gone(mark, relays=[relay], timeout=0)
    finally:
        turn.close()
        await asyncio.wait_for(protocol.lost, TIMEOUT)
    return mark, relay


@pytest.mark.interop
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_aioice_allocation_seen_then_gone(
    coturn: TurnService, probe: CoturnProbe, transport: str
) -> None:
    mark, relay = asyncio.run(allocate_and_close(coturn, probe, transport))
    assert probe.wait_gone(
        mark, username=coturn.username, relays=[relay], timeout=TIMEOUT
    )
    assert relay not in probe.relays.addresses()
    [gone] = probe.log.allocations_since(mark)
    assert gone.refreshed_to_zero
    # Over TCP and TLS, aioice closes the connection right after the Refresh,
    # and coturn deletes at once for that; over UDP, at its next tick.
    expected = Cause.REFRESH if transport == "udp" else Cause.CONNECTION_CLOSED
    assert gone.cause is expected
    assert gone.client is not None
    assert gone.client[0] == coturn.ip
    assert probe.log.wait_deallocated(mark, client=gone.client, timeout=0)
    assert not probe.log.wait_deallocated(
        mark, client=(coturn.ip, gone.client[1] ^ 1), timeout=0
    )


async def relay_pair(
    coturn: TurnService, probe: CoturnProbe
) -> tuple[int, tuple[str, int]]:
    """Two aioice agents, one relay-only through coturn over UDP, connect and
    exchange a datagram; the probe sees the allocation while they are open.
    Returns the mark from before they gathered and the relayed address."""
    mark = probe.mark()
    relayed = aioice.Connection(
        ice_controlling=True,
        turn_server=(coturn.ip, coturn.port),
        turn_username=coturn.username,
        turn_password=coturn.password,
        transport_policy=aioice.TransportPolicy.RELAY,
    )
    direct = aioice.Connection(ice_controlling=False)
    try:
        await asyncio.gather(relayed.gather_candidates(), direct.gather_candidates())
        [candidate] = relayed.local_candidates
        assert candidate.type == "relay"
        for local, remote in ((relayed, direct), (direct, relayed)):
            for c in local.local_candidates:
                await remote.add_remote_candidate(c)
            await remote.add_remote_candidate(None)
            remote.remote_username = local.local_username
            remote.remote_password = local.local_password
        await asyncio.wait_for(
            asyncio.gather(relayed.connect(), direct.connect()), TIMEOUT
        )
        await relayed.send(b"\x80through coturn")
        assert await asyncio.wait_for(direct.recv(), TIMEOUT) == b"\x80through coturn"
        assert (candidate.host, candidate.port) in probe.relays.addresses()
        assert probe.allocations() >= 1
        assert probe.log.wait_allocated(mark, username=coturn.username, timeout=1)
        assert not probe.log.wait_deallocated(mark, timeout=0)
    finally:
        await relayed.close()
        await direct.close()
    return mark, (candidate.host, candidate.port)


@pytest.mark.interop
def test_aioice_relay_connection_leaves_nothing(
    coturn: TurnService, probe: CoturnProbe
) -> None:
    mark, relay = asyncio.run(relay_pair(coturn, probe))
    # This test's allocation deleted and its relay socket closed: by its
    # address, not by a count of all the server's sockets, which other tests'
    # allocations, expiring meanwhile, would change.
    assert probe.wait_gone(
        mark, username=coturn.username, relays=[relay], timeout=TIMEOUT
    )
    [gone] = probe.log.allocations_since(mark)
    assert gone.cause is Cause.REFRESH
    # And no relay socket more than the log's live allocations.
    assert probe.wait_gone(mark, username=coturn.username, timeout=TIMEOUT)


def tcp_exchange(sock: socket.socket, request: Message, key: bytes | None) -> Message:
    """One STUN transaction over TCP (RFC 8489 §6.2.2: messages back to back)."""
    sock.sendall(request.encode(key=key, fingerprint=True))
    header = sock.recv(20, socket.MSG_WAITALL)
    (length,) = struct.unpack("!H", header[2:4])
    response = parse_message(header + sock.recv(length, socket.MSG_WAITALL))
    assert response.transaction_id == request.transaction_id
    return response


@pytest.mark.interop
def test_closing_the_tcp_connection_deletes_at_once(
    coturn: TurnService, probe: CoturnProbe
) -> None:
    """A client that drops its TCP connection without a Refresh: coturn
    deletes the allocation for the closed connection, not a timeout."""
    key = long_term_key(coturn.username, coturn.realm, coturn.password)
    mark = probe.mark()
    with socket.create_connection((coturn.ip, coturn.port), TIMEOUT) as sock:
        allocate: Attributes = {"REQUESTED-TRANSPORT": 17}
        challenge = tcp_exchange(
            sock, Message(Method.ALLOCATE, Class.REQUEST, attributes=allocate), None
        )
        assert challenge.error_code == 401
        allocate["USERNAME"] = coturn.username
        allocate["REALM"] = coturn.realm
        allocate["NONCE"] = challenge.attributes["NONCE"]
        response = tcp_exchange(
            sock, Message(Method.ALLOCATE, Class.REQUEST, attributes=allocate), key
        )
        assert response.message_class == Class.SUCCESS, response.attributes
        relay = response.attributes["XOR-RELAYED-ADDRESS"]
        client = sock.getsockname()[:2]
        assert relay in probe.relays.addresses()
    assert probe.wait_gone(mark, client=client, relays=[relay], timeout=TIMEOUT)
    [gone] = probe.log.allocations_since(mark)
    assert (gone.cause, gone.refreshed_to_zero) == (Cause.CONNECTION_CLOSED, False)
    assert gone.reason == "TCP connection closed by client (callback)"
