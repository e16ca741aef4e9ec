"""The sans-IO TURN client (``syncice.turn``), layer 1: no sockets, threads or clocks.

A :class:`~tests.turn_server.FakeTurnServer` answers what the allocation
sends; time is stepped by hand from :meth:`TurnAllocation.get_timer` to
:meth:`TurnAllocation.get_timer`. Times, event orders and the messages on the
wire are asserted exactly.
"""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncice.stun import (
    ChannelData,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    parse_channel_data,
    parse_message,
)
from syncice.turn import (
    AllocationClosed,
    AllocationFailed,
    AllocationSucceeded,
    ChannelBound,
    PermissionFailed,
    ServerChanged,
    TurnAllocation,
    TurnConfig,
    TurnEvent,
    TurnState,
    TurnStats,
)
from tests.turn_server import MAPPED, RELAYED, SERVER, Address, FakeTurnServer

PEER = ("192.0.2.10", 7000)
PEER2 = ("192.0.2.10", 7001)  # same IP, another port
OTHER = ("192.0.2.20", 8000)
ALTERNATE = ("198.51.100.2", 3478)


def make(
    server: FakeTurnServer | None = None,
    *,
    transport: str = "udp",
    family: int | None = None,
    config: TurnConfig | None = None,
    password: str = "secret",
) -> tuple[TurnAllocation, FakeTurnServer]:
    if server is None:
        server = FakeTurnServer(padded=transport != "udp")
    allocation = TurnAllocation(
        server=SERVER,
        username="user",
        password=password,
        transport=transport,
        family=family,
        config=config,
        rng=random.Random(1),
        name="t",
    )
    return allocation, server


def deliver(
    allocation: TurnAllocation,
    server: FakeTurnServer,
    datagrams: list[bytes],
    now: float,
    *,
    bytewise: bool = False,
) -> list[tuple[Address, bytes]]:
    """Hand ``datagrams`` to the server and its answers back to the client."""
    got = []
    for data in datagrams:
        for answer in server.handle(data):
            if bytewise:
                for i in range(len(answer)):
                    got += allocation.receive(answer[i : i + 1], now)
            else:
                got += allocation.receive(answer, now)
    return got


def exchange(
    allocation: TurnAllocation,
    server: FakeTurnServer,
    now: float,
    *,
    bytewise: bool = False,
) -> list[tuple[Address, bytes]]:
    """Deliver until the client has nothing more to send."""
    got = []
    while out := allocation.datagrams_to_send():
        got += deliver(allocation, server, out, now, bytewise=bytewise)
    return got


def run(
    allocation: TurnAllocation, server: FakeTurnServer, now: float, until: float
) -> float:
    """Jump from timer to timer up to ``until``, the server answering."""
    exchange(allocation, server, now)
    while (at := allocation.get_timer()) is not None and at <= until:
        now = max(now, at)
        allocation.handle_timer(now)
        exchange(allocation, server, now)
    return until


def drain(allocation: TurnAllocation) -> list[TurnEvent]:
    events = []
    while (event := allocation.next_event()) is not None:
        events.append(event)
    return events


def allocated(
    server: FakeTurnServer | None = None,
    *,
    transport: str = "udp",
    config: TurnConfig | None = None,
) -> tuple[TurnAllocation, FakeTurnServer]:
    allocation, server = make(server, transport=transport, config=config)
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert allocation.state == TurnState.ALLOCATED
    drain(allocation)
    return allocation, server


def bound(
    server: FakeTurnServer | None = None, *, transport: str = "udp"
) -> tuple[TurnAllocation, FakeTurnServer]:
    """Allocated, with a permission for PEER's IP and a channel to PEER."""
    allocation, server = allocated(server, transport=transport)
    allocation.send(PEER, b"hello", 0.0)
    exchange(allocation, server, 0.0)
    assert allocation.channels == {PEER: 0x4000}
    drain(allocation)
    server.relayed_out.clear()
    server.requests.clear()
    return allocation, server


def parsed(datagrams: list[bytes]) -> list[Message | ChannelData]:
    return [
        parse_channel_data(d) if 0x40 <= d[0] <= 0x4F else parse_message(d)
        for d in datagrams
    ]


def failed_with(allocation: TurnAllocation) -> tuple[str | None, int | None]:
    events = drain(allocation)
    assert len(events) == 1
    assert isinstance(events[0], AllocationFailed)
    assert allocation.state == TurnState.FAILED
    assert (allocation.reason, allocation.error_code) == (
        events[0].reason,
        events[0].error_code,
    )
    return events[0].reason, events[0].error_code


# --- configuration and arguments ------------------------------------------------


def test_config_defaults() -> None:
    config = TurnConfig()
    assert (config.rto, config.max_sends, config.final_wait) == (0.5, 7, 16)
    assert config.reliable_timeout == 39.5
    assert (config.lifetime, config.refresh_margin) == (600, 60.0)
    assert (config.permission_refresh, config.channel_refresh) == (240.0, 540.0)
    assert (config.max_peers, config.max_held, config.close_timeout) == (64, 16, 1.0)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("rto", 0.0, "rto"),
        ("max_sends", 0, "rto"),
        ("final_wait", -1, "rto"),
        ("reliable_timeout", 0.0, "reliable_timeout"),
        ("lifetime", 0, "lifetime"),
        ("lifetime", 2**32, "lifetime"),
        ("refresh_margin", -1.0, "refresh_margin"),
        ("close_timeout", -1.0, "close_timeout"),
        ("permission_refresh", 300.0, "permission_refresh"),
        ("permission_refresh", 0.0, "permission_refresh"),
        ("channel_refresh", 600.0, "channel_refresh"),
        ("max_peers", 0, "max_peers"),
        ("max_peers", 4097, "max_peers"),
        ("max_held", -1, "max_held"),
    ],
)
def test_config_rejects_nonsense(field: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TurnConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transport": "sctp"}, "transport"),
        ({"family": 3}, "family"),
        ({"server": ("turn.example.org", 3478)}, "not an IP address"),
        ({"username": "u" * 513}, "512 bytes"),
        ({"password": "\u0007"}, "SASLprep"),
    ],
)
def test_constructor_rejects_bad_arguments(
    kwargs: dict[str, object], match: str
) -> None:
    arguments: dict[str, object] = {
        "server": SERVER,
        "username": "user",
        "password": "secret",
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        TurnAllocation(**arguments)  # type: ignore[arg-type]


def test_a_new_allocation() -> None:
    allocation = TurnAllocation(server=SERVER, username="u", password="p")
    assert allocation.state == TurnState.NEW
    assert allocation.server == SERVER
    assert allocation.transport == "udp"
    assert (allocation.relayed, allocation.mapped, allocation.lifetime) == (
        None,
        None,
        None,
    )
    assert (allocation.error_code, allocation.reason) == (None, None)
    assert allocation.channels == {}
    assert allocation.stats == TurnStats()
    assert allocation.get_timer() is None
    assert allocation.datagrams_to_send() == []
    assert allocation.next_event() is None
    assert repr(allocation) == "<TurnAllocation turn udp 198.51.100.1:3478 new>"
    allocation.handle_timer(100.0)  # nothing to do
    allocation.send(PEER, b"x", 0.0)  # ignored: not allocated
    assert allocation.datagrams_to_send() == []


# --- allocation -------------------------------------------------------------------


def test_allocate_401_then_success_with_md5() -> None:
    allocation, server = make()
    allocation.start(0.0)
    assert allocation.state == TurnState.ALLOCATING
    assert allocation.get_timer() == 0.5
    exchange(allocation, server, 0.0)
    first, second = server.requests
    assert first.method == Method.ALLOCATE
    assert first.message_class == Class.REQUEST
    assert first.attributes == {"REQUESTED-TRANSPORT": 17, "LIFETIME": 600}
    assert first.integrity is None
    assert first.has_fingerprint
    assert second.attributes == {
        "REQUESTED-TRANSPORT": 17,
        "LIFETIME": 600,
        "USERNAME": "user",
        "REALM": "example.org",
        "NONCE": b"nonce-1",
    }
    assert second.integrity == "sha1"
    assert second.check_integrity(server.key())
    assert second.has_fingerprint
    assert second.transaction_id != first.transaction_id
    assert drain(allocation) == [
        AllocationSucceeded(relayed=RELAYED, mapped=MAPPED, lifetime=600)
    ]
    assert allocation.state == TurnState.ALLOCATED
    assert (allocation.relayed, allocation.mapped, allocation.lifetime) == (
        RELAYED,
        MAPPED,
        600,
    )
    # Refresh at max(now + 600/2, now + 600 - 60).
    assert allocation.get_timer() == 540.0


def test_allocate_with_sha256_password_algorithm() -> None:
    allocation, server = make(FakeTurnServer(sha256=True))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    second = server.requests[1]
    assert second.attributes["PASSWORD-ALGORITHMS"] == (
        (PasswordAlgorithm.SHA256, b""),
        (PasswordAlgorithm.MD5, b""),
    )
    assert second.attributes["PASSWORD-ALGORITHM"] == (PasswordAlgorithm.SHA256, b"")
    assert second.integrity == "sha256"
    assert second.check_integrity(server.key(PasswordAlgorithm.SHA256))
    assert not second.check_integrity(server.key(PasswordAlgorithm.MD5))
    assert allocation.state == TurnState.ALLOCATED
    # Later requests are signed the same way.
    allocation.send(PEER, b"x", 0.0)
    exchange(allocation, server, 0.0)
    assert [m.integrity for m in server.requests[2:]] == ["sha256", "sha256"]
    assert allocation.channels == {PEER: 0x4000}


def test_password_algorithms_without_sha256_keep_md5_and_are_echoed() -> None:
    algorithms = ((PasswordAlgorithm.MD5, b""),)
    allocation, server = make(FakeTurnServer(algorithms=algorithms))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    second = server.requests[1]
    assert second.attributes["PASSWORD-ALGORITHMS"] == algorithms
    assert second.attributes["PASSWORD-ALGORITHM"] == (PasswordAlgorithm.MD5, b"")
    assert second.integrity == "sha1"
    assert allocation.state == TurnState.ALLOCATED


@pytest.mark.parametrize("family", [1, 2])
def test_requested_address_family_only_when_given(family: int) -> None:
    allocation, server = make(family=family)
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert [m.attributes.get("REQUESTED-ADDRESS-FAMILY") for m in server.requests] == [
        family,
        family,
    ]


def test_allocation_without_mapped_address_or_lifetime() -> None:
    allocation, server = make(FakeTurnServer(mapped=None, lifetime=None))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert drain(allocation) == [
        AllocationSucceeded(relayed=RELAYED, mapped=None, lifetime=600)
    ]


def test_start_twice_is_a_no_op() -> None:
    allocation, _server = make()
    allocation.start(0.0)
    allocation.start(1.0)
    assert len(allocation.datagrams_to_send()) == 1


def test_server_without_authentication() -> None:
    # A server that allocates without credentials: its success is taken as is.
    allocation, _server = make()
    allocation.start(0.0)
    request = parse_message(allocation.datagrams_to_send()[0])
    response = Message(
        Method.ALLOCATE,
        Class.SUCCESS,
        request.transaction_id,
        {"XOR-RELAYED-ADDRESS": RELAYED, "LIFETIME": 100},
    )
    allocation.receive(response.encode(), 0.0)
    assert drain(allocation) == [
        AllocationSucceeded(relayed=RELAYED, mapped=None, lifetime=100)
    ]
    assert allocation.get_timer() == 50.0  # max(0 + 50, 0 + 100 - 60)


def test_stale_nonce_on_allocate_is_retried_once() -> None:
    allocation, server = make(FakeTurnServer(stale=1))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert [m.attributes.get("NONCE") for m in server.requests] == [
        None,
        b"nonce-1",
        b"nonce-1+",
    ]
    assert len({m.transaction_id for m in server.requests}) == 3
    assert allocation.state == TurnState.ALLOCATED


def test_stale_nonce_takes_a_new_realm_too() -> None:
    allocation, server = make()
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    server.realm = "other.example.org"  # and so the key changes
    server.stale = 1
    exchange(allocation, server, 0.0)
    assert server.requests[-1].attributes["REALM"] == "other.example.org"
    assert server.requests[-1].check_integrity(server.key())
    assert allocation.state == TurnState.ALLOCATED


def test_second_stale_nonce_in_a_row_fails() -> None:
    allocation, server = make(FakeTurnServer(stale=2))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert len(server.requests) == 3
    assert failed_with(allocation) == ("438 Stale Nonce from the server", 438)
    assert allocation.get_timer() is None
    assert allocation.datagrams_to_send() == []


def test_stale_nonce_without_nonce_is_an_error() -> None:
    allocation, server = make()
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    request = parse_message(allocation.datagrams_to_send()[0])
    answer = Message(
        Method.ALLOCATE,
        Class.ERROR,
        request.transaction_id,
        {"ERROR-CODE": (438, "Stale Nonce")},
    )
    allocation.receive(answer.encode(), 0.0)
    assert failed_with(allocation) == ("438 Stale Nonce from the server", 438)


def test_alternate_server_is_followed_once() -> None:
    server = FakeTurnServer(errors={Method.ALLOCATE: [300]}, alternate=ALTERNATE)
    allocation, server = make(server)
    allocation.start(0.0)
    first = allocation.datagrams_to_send()
    deliver(allocation, server, first, 0.0)  # 401
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)  # 300
    assert drain(allocation) == [ServerChanged(server=ALTERNATE)]
    assert allocation.server == ALTERNATE
    # A new, unauthenticated Allocate, to the new server.
    again = parse_message(allocation.datagrams_to_send()[0])
    assert again.integrity is None
    assert "NONCE" not in again.attributes
    deliver(allocation, server, [again.encode(fingerprint=True)], 0.0)
    exchange(allocation, server, 0.0)
    assert [type(e) for e in drain(allocation)] == [AllocationSucceeded]


def test_second_alternate_server_fails() -> None:
    server = FakeTurnServer(errors={Method.ALLOCATE: [300, 300]}, alternate=ALTERNATE)
    allocation, server = make(server)
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    events = drain(allocation)
    assert events[0] == ServerChanged(server=ALTERNATE)
    assert isinstance(events[1], AllocationFailed)
    assert events[1].error_code == 300
    assert allocation.state == TurnState.FAILED


def test_alternate_server_of_another_family_fails() -> None:
    server = FakeTurnServer(
        errors={Method.ALLOCATE: [300]}, alternate=("2001:db8::1", 3478)
    )
    allocation, server = make(server)
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert failed_with(allocation) == (
        "300 Try Alternate to another address family",
        300,
    )
    assert allocation.server == SERVER


def test_300_without_alternate_server_fails() -> None:
    allocation, server = make(FakeTurnServer(errors={Method.ALLOCATE: [300]}))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert failed_with(allocation) == (
        "300 Try Alternate from the server, not followed",
        300,
    )


def test_wrong_password_fails_after_the_authenticated_401(
    caplog: pytest.LogCaptureFixture,
) -> None:
    allocation, server = make(password="wrong-password")
    with caplog.at_level(logging.WARNING, logger="syncice.turn"):
        allocation.start(0.0)
        exchange(allocation, server, 0.0)
    assert len(server.requests) == 2
    assert failed_with(allocation) == ("wrong credentials", 401)
    assert "t TURN allocation failed: wrong credentials" in caplog.text
    assert "wrong-password" not in caplog.text


def test_401_without_realm_or_nonce_fails() -> None:
    allocation, server = make(FakeTurnServer(challenge=False))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert failed_with(allocation) == (
        "401 without REALM or NONCE from the server",
        401,
    )


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (403, "403 Forbidden from the server"),
        (437, "437 Allocation Mismatch from the server"),
        (440, "440 Address Family not Supported from the server"),
        (441, "441 Wrong Credentials from the server"),
        (442, "442 Unsupported Transport Protocol from the server"),
        (486, "486 Allocation Quota Reached from the server"),
        (508, "508 Insufficient Capacity from the server"),
        (599, "599 Error from the server"),
    ],
)
def test_allocate_errors_fail_with_the_code(code: int, reason: str) -> None:
    allocation, server = make(FakeTurnServer(errors={Method.ALLOCATE: [code]}))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert failed_with(allocation) == (reason, code)


def test_error_response_without_error_code() -> None:
    allocation, _server = make()
    allocation.start(0.0)
    request = parse_message(allocation.datagrams_to_send()[0])
    answer = Message(Method.ALLOCATE, Class.ERROR, request.transaction_id)
    allocation.receive(answer.encode(), 0.0)
    assert failed_with(allocation) == (
        "an error response without ERROR-CODE from the server",
        None,
    )


def test_allocate_success_without_relayed_address_fails() -> None:
    allocation, server = make()
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    request = parse_message(allocation.datagrams_to_send()[0])
    answer = Message(
        Method.ALLOCATE, Class.SUCCESS, request.transaction_id, {"LIFETIME": 600}
    )
    allocation.receive(answer.encode(key=server.key()), 0.0)
    assert failed_with(allocation) == (
        "no XOR-RELAYED-ADDRESS in the Allocate success",
        None,
    )


def test_silent_server_fails_at_the_deadline() -> None:
    allocation, _server = make(FakeTurnServer(silent=True))
    allocation.start(0.0, deadline=2.0)
    times = []
    while (at := allocation.get_timer()) is not None:
        allocation.handle_timer(at)
        if allocation.datagrams_to_send():
            times.append(at)
    assert times == [0.5, 1.5]
    assert at is None
    assert failed_with(allocation) == ("timed out waiting for the TURN server", None)


def test_silent_server_fails_on_the_udp_schedule() -> None:
    allocation, _server = make(FakeTurnServer(silent=True))
    allocation.start(0.0)
    sends = [0.0]
    allocation.datagrams_to_send()
    now = 0.0
    while allocation.state == TurnState.ALLOCATING:
        now = allocation.get_timer()  # type: ignore[assignment]
        allocation.handle_timer(now)
        sends += [now] * len(allocation.datagrams_to_send())
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert now == 39.5
    assert failed_with(allocation)[1] is None


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_silent_server_over_a_stream_sends_once(transport: str) -> None:
    allocation, _server = make(FakeTurnServer(silent=True), transport=transport)
    allocation.start(0.0)
    assert len(allocation.datagrams_to_send()) == 1
    assert allocation.get_timer() == 39.5
    allocation.handle_timer(39.4)
    assert allocation.state == TurnState.ALLOCATING
    allocation.handle_timer(39.5)
    assert allocation.datagrams_to_send() == []
    assert failed_with(allocation) == ("timed out waiting for the TURN server", None)


def test_deadline_covers_the_authenticated_retry() -> None:
    allocation, server = make()
    allocation.start(0.0, deadline=3.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 1.0)  # the 401
    allocation.datagrams_to_send()  # the authenticated Allocate is lost
    assert allocation.get_timer() == 1.5
    run(allocation, FakeTurnServer(silent=True), 1.0, 10.0)
    assert failed_with(allocation)[0] == "timed out waiting for the TURN server"


# --- refresh ----------------------------------------------------------------------


def test_refresh_at_the_right_time_and_rescheduled() -> None:
    allocation, server = allocated(FakeTurnServer(lifetime=600))
    server.requests.clear()
    assert allocation.get_timer() == 540.0
    allocation.handle_timer(539.9)
    assert allocation.datagrams_to_send() == []
    server.lifetime = 300
    allocation.handle_timer(540.0)
    exchange(allocation, server, 540.0)
    (refresh,) = server.requests
    assert refresh.method == Method.REFRESH
    assert refresh.attributes["LIFETIME"] == 600
    assert refresh.check_integrity(server.key())
    assert allocation.lifetime == 300
    # max(540 + 150, 540 + 300 - 60)
    assert allocation.get_timer() == 780.0
    assert drain(allocation) == []


def test_refresh_without_lifetime_keeps_the_requested_one() -> None:
    allocation, server = allocated()
    server.lifetime = None
    run(allocation, server, 0.0, 540.0)
    assert allocation.lifetime == 600
    assert allocation.get_timer() == 1080.0


def test_refresh_437_fails() -> None:
    allocation, server = allocated()
    server.errors[Method.REFRESH] = [437]
    run(allocation, server, 0.0, 540.0)
    assert failed_with(allocation) == ("allocation mismatch", 437)
    assert allocation.get_timer() is None


def test_refresh_other_error_fails() -> None:
    allocation, server = allocated()
    server.errors[Method.REFRESH] = [500]
    run(allocation, server, 0.0, 540.0)
    assert failed_with(allocation) == (
        "500 Server Error from the server to a Refresh",
        500,
    )


def test_refresh_stale_nonce_is_retried() -> None:
    allocation, server = allocated()
    server.stale = 1
    server.requests.clear()
    run(allocation, server, 0.0, 540.0)
    assert [m.attributes["NONCE"] for m in server.requests] == [
        b"nonce-1",
        b"nonce-1+",
    ]
    assert allocation.state == TurnState.ALLOCATED
    assert allocation.get_timer() == 1080.0


def test_lifetime_expires_when_refreshes_go_unanswered() -> None:
    allocation, server = allocated()
    server.silent = True
    server.requests.clear()
    now = run(allocation, server, 0.0, 599.9)
    assert allocation.state == TurnState.ALLOCATED
    # Retransmissions on the UDP schedule, cut at the lifetime's end.
    assert allocation.get_timer() == 600.0
    # 540, 540.5, 541.5, 543.5, 547.5, 555.5, 571.5; timed out at 579.5, so
    # a new Refresh: 579.5, 580, 581, 583, 587, 595.
    assert len(server.requests) == 13
    assert len({m.transaction_id for m in server.requests}) == 2
    allocation.handle_timer(now)
    allocation.handle_timer(600.0)
    assert failed_with(allocation) == ("lifetime expired", None)


def test_refresh_that_times_out_is_tried_again_until_expiry() -> None:
    config = TurnConfig(max_sends=1, final_wait=20)  # one send, 10 s wait
    allocation, server = allocated(config=config)
    server.silent = True
    server.requests.clear()
    run(allocation, server, 0.0, 599.0)
    assert [m.method for m in server.requests] == [Method.REFRESH] * 6
    assert len({m.transaction_id for m in server.requests}) == 6
    run(allocation, server, 599.0, 600.0)
    assert failed_with(allocation) == ("lifetime expired", None)


def test_granted_lifetime_of_zero_expires_at_once() -> None:
    allocation, server = make(FakeTurnServer(lifetime=0))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert allocation.get_timer() == 0.0
    allocation.handle_timer(0.0)
    events = drain(allocation)
    assert [type(e) for e in events] == [AllocationSucceeded, AllocationFailed]


# --- permissions, channels and data ---------------------------------------------


def test_first_send_starts_permission_and_channel_bind_and_holds_data() -> None:
    allocation, server = allocated()
    allocation.send(PEER, b"one", 1.0)
    allocation.send(PEER, b"two", 1.0)
    out = allocation.datagrams_to_send()
    permission, bind = parsed(out)
    assert isinstance(permission, Message)
    assert isinstance(bind, Message)
    assert permission.method == Method.CREATE_PERMISSION
    assert permission.attributes["XOR-PEER-ADDRESS"] == PEER
    assert permission.check_integrity(server.key())
    assert permission.has_fingerprint
    assert bind.method == Method.CHANNEL_BIND
    assert bind.attributes["CHANNEL-NUMBER"] == 0x4000
    assert bind.attributes["XOR-PEER-ADDRESS"] == PEER
    # The permission succeeds first: the held data goes as Send indications.
    deliver(allocation, server, out[:1], 1.0)
    sent = parsed(allocation.datagrams_to_send())
    assert [(m.method, m.message_class) for m in sent] == [  # type: ignore[union-attr]
        (Method.SEND, Class.INDICATION)
    ] * 2
    assert [m.attributes["DATA"] for m in sent] == [b"one", b"two"]  # type: ignore[union-attr]
    assert all(m.attributes["XOR-PEER-ADDRESS"] == PEER for m in sent)  # type: ignore[union-attr]
    assert all(not m.has_fingerprint and m.integrity is None for m in sent)  # type: ignore[union-attr]
    # Until the channel is bound, Send indications.
    allocation.send(PEER, b"three", 1.0)
    (indication,) = parsed(allocation.datagrams_to_send())
    assert isinstance(indication, Message)
    assert indication.attributes["DATA"] == b"three"
    deliver(allocation, server, out[1:], 1.0)
    assert drain(allocation) == [ChannelBound(peer=PEER, channel=0x4000)]
    assert allocation.channels == {PEER: 0x4000}
    allocation.send(PEER, b"four", 1.0)
    assert allocation.datagrams_to_send() == [b"\x40\x00\x00\x04four"]


def test_channel_bind_first_flushes_held_data_as_channel_data() -> None:
    allocation, server = allocated()
    allocation.send(PEER, b"one", 1.0)
    allocation.send(PEER, b"two", 1.0)
    out = allocation.datagrams_to_send()
    deliver(allocation, server, out[1:], 1.0)  # ChannelBind answered first
    assert allocation.datagrams_to_send() == [
        b"\x40\x00\x00\x03one",
        b"\x40\x00\x00\x03two",
    ]
    deliver(allocation, server, out[:1], 1.0)  # then CreatePermission
    assert allocation.datagrams_to_send() == []
    assert allocation.get_timer() == 241.0  # the permission refresh


def test_data_flows_both_ways_through_the_fake_server() -> None:
    allocation, server = allocated()
    for i in range(3):
        allocation.send(PEER, b"%d" % i, 0.0)
    exchange(allocation, server, 0.0)
    assert server.relayed_out == [
        (PEER, b"0", "send"),
        (PEER, b"1", "send"),
        (PEER, b"2", "send"),
    ]
    allocation.send(PEER, b"3", 0.0)
    exchange(allocation, server, 0.0)
    assert server.relayed_out[-1] == (PEER, b"3", "channel")
    assert allocation.receive(server.channel_data(0x4000, b"back"), 0.0) == [
        (PEER, b"back")
    ]
    assert allocation.receive(server.data_indication(PEER, b"ind"), 0.0) == [
        (PEER, b"ind")
    ]


def test_second_port_of_a_permitted_ip_goes_out_at_once_and_gets_a_channel() -> None:
    allocation, _server = bound()
    allocation.send(PEER2, b"x", 0.0)
    out = parsed(allocation.datagrams_to_send())
    assert [m.method for m in out] == [Method.CHANNEL_BIND, Method.SEND]  # type: ignore[union-attr]
    assert out[0].attributes["CHANNEL-NUMBER"] == 0x4001  # type: ignore[union-attr]


def test_permission_and_channel_refreshes() -> None:
    allocation, server = bound()
    assert allocation.get_timer() == 240.0
    run(allocation, server, 0.0, 240.0)
    assert [m.method for m in server.requests] == [Method.CREATE_PERMISSION]
    assert server.requests[0].attributes["XOR-PEER-ADDRESS"] == PEER
    server.requests.clear()
    run(allocation, server, 240.0, 540.0)
    assert [
        (m.method, m.attributes.get("CHANNEL-NUMBER")) for m in server.requests
    ] == [
        (Method.CREATE_PERMISSION, None),  # 480
        (Method.REFRESH, None),  # 540
        (Method.CHANNEL_BIND, 0x4000),  # 540, the same number
    ]
    assert drain(allocation) == []  # no second ChannelBound
    assert allocation.get_timer() == 720.0
    server.requests.clear()
    run(allocation, server, 540.0, 1080.0)
    assert [m.method for m in server.requests] == [
        Method.CREATE_PERMISSION,  # 720
        Method.CREATE_PERMISSION,  # 960
        Method.REFRESH,  # 1080
        Method.CHANNEL_BIND,  # 1080
    ]


def test_permission_403_fails_its_peers_and_drops_their_data() -> None:
    allocation, server = allocated()
    server.errors[Method.CREATE_PERMISSION] = [403]
    server.errors[Method.CHANNEL_BIND] = [403]
    allocation.send(PEER, b"a", 0.0)
    allocation.send(PEER, b"b", 0.0)
    allocation.send(PEER2, b"c", 0.0)
    out = allocation.datagrams_to_send()
    assert len(out) == 3  # one permission, two channel binds
    deliver(allocation, server, out[:1], 0.0)
    assert drain(allocation) == [
        PermissionFailed(
            peer=PEER, reason="403 Forbidden from the server", error_code=403
        ),
        PermissionFailed(
            peer=PEER2, reason="403 Forbidden from the server", error_code=403
        ),
    ]
    assert allocation.stats.held_dropped == 3
    assert allocation.state == TurnState.ALLOCATED
    # The channel binds were forgotten: their answers are unexpected.
    deliver(allocation, server, out[1:], 0.0)
    assert allocation.stats.unexpected == 2
    assert allocation.get_timer() == 540.0
    # A later send tries again.
    allocation.send(PEER, b"d", 1.0)
    exchange(allocation, server, 1.0)
    assert server.relayed_out == [
        (PEER, b"d", "send"),
    ]
    assert allocation.channels == {PEER: 0x4000}


def test_permission_timeout_fails_its_peers() -> None:
    allocation, server = allocated()
    allocation.send(PEER, b"a", 0.0)
    server.silent = True
    run(allocation, server, 0.0, 39.5)
    assert drain(allocation) == [
        PermissionFailed(peer=PEER, reason="timed out", error_code=None)
    ]
    assert allocation.stats.held_dropped == 1
    assert allocation.state == TurnState.ALLOCATED


def test_permission_refresh_failure_keeps_bound_channels() -> None:
    allocation, server = bound()
    server.errors[Method.CREATE_PERMISSION] = [403]
    run(allocation, server, 0.0, 240.0)
    assert drain(allocation) == [
        PermissionFailed(
            peer=PEER, reason="403 Forbidden from the server", error_code=403
        )
    ]
    # The channel still carries data both ways.
    allocation.send(PEER, b"x", 240.0)
    assert allocation.datagrams_to_send() == [b"\x40\x00\x00\x01x"]
    assert allocation.receive(server.data_indication(PEER, b"y"), 240.0) == [
        (PEER, b"y")
    ]
    # Its refresh brings the permission back.
    server.requests.clear()
    run(allocation, server, 240.0, 540.0)
    assert [m.method for m in server.requests] == [Method.REFRESH, Method.CHANNEL_BIND]
    assert allocation.get_timer() == 780.0  # the permission's refresh
    assert allocation.receive(server.data_indication(PEER2, b"z"), 540.0) == [
        (PEER2, b"z")
    ]


def test_two_failing_permission_requests_for_one_ip() -> None:
    # The channel's success schedules the permission refresh while the first
    # CreatePermission is still out: two are pending when the refresh is due.
    allocation, server = allocated()
    allocation.send(PEER, b"a", 0.0)
    permission, bind = allocation.datagrams_to_send()
    deliver(allocation, server, [bind], 0.0)
    assert allocation.datagrams_to_send() == [b"\x40\x00\x00\x01a"]
    allocation.handle_timer(240.0)
    retransmission, refresh = allocation.datagrams_to_send()
    assert retransmission == permission
    server.errors[Method.CREATE_PERMISSION] = [403, 403]
    deliver(allocation, server, [refresh, permission], 240.0)
    events = drain(allocation)
    assert [type(e) for e in events] == [
        ChannelBound,
        PermissionFailed,
        PermissionFailed,
    ]
    assert allocation.channels == {PEER: 0x4000}


def test_channel_bind_error_leaves_send_indications_and_retries_once() -> None:
    allocation, server = allocated()
    server.errors[Method.CHANNEL_BIND] = [403, 403]
    allocation.send(PEER, b"a", 0.0)
    exchange(allocation, server, 0.0)
    assert server.relayed_out == [(PEER, b"a", "send")]
    assert allocation.channels == {}
    assert drain(allocation) == []
    allocation.send(PEER, b"b", 0.0)
    assert parsed(allocation.datagrams_to_send())[0].method == Method.SEND  # type: ignore[union-attr]
    server.requests.clear()
    run(allocation, server, 0.0, 240.0)  # the retry, with the permission refresh
    assert [m.method for m in server.requests] == [
        Method.CREATE_PERMISSION,
        Method.CHANNEL_BIND,
    ]
    assert server.requests[1].attributes["CHANNEL-NUMBER"] == 0x4000
    server.requests.clear()
    run(allocation, server, 240.0, 480.0)  # the retry failed: no more
    assert [m.method for m in server.requests] == [Method.CREATE_PERMISSION]
    assert allocation.channels == {}


def test_channel_bind_retry_can_succeed() -> None:
    allocation, server = allocated()
    server.errors[Method.CHANNEL_BIND] = [508]
    allocation.send(PEER, b"a", 0.0)
    run(allocation, server, 0.0, 240.0)
    assert drain(allocation) == [ChannelBound(peer=PEER, channel=0x4000)]


def test_channel_bind_timeout_leaves_send_indications() -> None:
    allocation, server = allocated()
    allocation.send(PEER, b"a", 0.0)
    permission, _ = allocation.datagrams_to_send()
    deliver(allocation, server, [permission], 0.0)
    assert allocation.datagrams_to_send()  # the held datagram
    now = 0.0
    while (at := allocation.get_timer()) is not None and at < 100.0:
        now = at
        allocation.handle_timer(now)
        allocation.datagrams_to_send()  # retransmissions lost
    assert now == 39.5
    assert allocation.channels == {}
    assert drain(allocation) == []
    allocation.send(PEER, b"b", 50.0)
    assert parsed(allocation.datagrams_to_send())[0].method == Method.SEND  # type: ignore[union-attr]


def test_channel_refresh_failure_keeps_the_channel_and_retries() -> None:
    allocation, server = bound()
    server.errors[Method.CHANNEL_BIND] = [500]
    run(allocation, server, 0.0, 540.0)
    assert allocation.channels == {PEER: 0x4000}
    server.requests.clear()
    run(allocation, server, 540.0, 720.0)
    assert [m.method for m in server.requests] == [
        Method.CREATE_PERMISSION,
        Method.CHANNEL_BIND,
    ]
    assert drain(allocation) == []


def test_channel_numbers_are_reused_after_a_failed_permission() -> None:
    allocation, server = allocated()
    server.errors[Method.CREATE_PERMISSION] = [403]
    allocation.send(PEER, b"a", 0.0)
    allocation.send(OTHER, b"b", 0.0)
    exchange(allocation, server, 0.0)
    assert allocation.channels == {OTHER: 0x4001}
    allocation.send(PEER2, b"c", 0.0)
    exchange(allocation, server, 0.0)
    assert allocation.channels == {OTHER: 0x4001, PEER2: 0x4000}


def test_data_from_peers_without_permission_is_dropped() -> None:
    allocation, server = bound()
    assert allocation.receive(server.data_indication(OTHER, b"x"), 0.0) == []
    assert allocation.stats.no_permission == 1
    # Permission is per IP: another port of a permitted IP is accepted.
    assert allocation.receive(server.data_indication(PEER2, b"y"), 0.0) == [
        (PEER2, b"y")
    ]


def test_data_indication_while_the_permission_is_pending_is_dropped() -> None:
    allocation, server = allocated()
    allocation.send(PEER, b"a", 0.0)
    assert allocation.receive(server.data_indication(PEER, b"x"), 0.0) == []
    assert allocation.stats.no_permission == 1


def test_channel_data_on_unknown_channels_is_dropped() -> None:
    allocation, server = allocated()
    allocation.send(PEER, b"a", 0.0)
    out = allocation.datagrams_to_send()
    # Before the ChannelBind success: not ours yet.
    assert allocation.receive(server.channel_data(0x4000, b"early"), 0.0) == []
    deliver(allocation, server, out, 0.0)
    assert allocation.receive(server.channel_data(0x4001, b"x"), 0.0) == []
    assert allocation.stats.unknown_channel == 2
    assert allocation.receive(server.channel_data(0x4000, b"ok"), 0.0) == [
        (PEER, b"ok")
    ]


def test_malformed_and_unexpected_input_is_counted() -> None:
    allocation, server = bound()
    stats = allocation.stats
    assert allocation.receive(b"", 0.0) == []
    assert allocation.receive(b"\xff" * 30, 0.0) == []
    assert allocation.receive(b"\x40\x00\x00\x10abc", 0.0) == []  # short ChannelData
    assert stats.malformed == 3
    no_data = Message(
        Method.DATA, Class.INDICATION, bytes(12), {"XOR-PEER-ADDRESS": PEER}
    )
    assert allocation.receive(no_data.encode(), 0.0) == []
    assert stats.malformed == 4
    unexpected = [
        Message(Method.BINDING, Class.REQUEST, bytes(12)),
        Message(Method.SEND, Class.INDICATION, bytes(12)),
        Message(Method.REFRESH, Class.SUCCESS, bytes(12)),  # no such transaction
        Message(Method.ALLOCATE, Class.ERROR, bytes(12), {"ERROR-CODE": (403, "x")}),
    ]
    for message in unexpected:
        assert allocation.receive(message.encode(), 0.0) == []
    assert stats.unexpected == 4
    # A response of the wrong method to a pending transaction.
    allocation.handle_timer(240.0)
    (request,) = parsed(allocation.datagrams_to_send())
    assert isinstance(request, Message)
    wrong = Message(Method.CHANNEL_BIND, Class.SUCCESS, request.transaction_id)
    allocation.receive(wrong.encode(key=server.key()), 240.0)
    assert stats.unexpected == 5
    assert stats == TurnStats(malformed=4, unexpected=5)
    assert allocation.state == TurnState.ALLOCATED


def test_unauthenticated_success_responses_are_dropped() -> None:
    allocation, server = make(FakeTurnServer(sign=False))
    allocation.start(0.0)
    exchange(allocation, server, 0.0)
    assert allocation.stats.unauthenticated == 1
    assert allocation.state == TurnState.ALLOCATING
    assert allocation.get_timer() == 0.5  # still waiting; retransmits
    server.sign = True
    run(allocation, server, 0.0, 0.5)
    assert allocation.state == TurnState.ALLOCATED


def test_success_signed_with_another_key_is_dropped() -> None:
    allocation, _server = allocated()
    allocation.handle_timer(540.0)
    (request,) = parsed(allocation.datagrams_to_send())
    assert isinstance(request, Message)
    forged = Message(
        Method.REFRESH, Class.SUCCESS, request.transaction_id, {"LIFETIME": 9999}
    )
    allocation.receive(forged.encode(key=b"not the key"), 540.0)
    assert allocation.stats.unauthenticated == 1
    assert allocation.lifetime == 600


def test_max_held_bounds_the_data_held_per_peer() -> None:
    allocation, server = allocated(config=TurnConfig(max_held=2))
    for data in (b"1", b"2", b"3", b"4"):
        allocation.send(PEER, data, 0.0)
    assert allocation.stats.held_dropped == 2
    exchange(allocation, server, 0.0)
    assert [d for _, d, _ in server.relayed_out] == [b"1", b"2"]


def test_max_peers_bounds_the_peers() -> None:
    allocation, _server = allocated(config=TurnConfig(max_peers=2))
    allocation.send(PEER, b"1", 0.0)
    allocation.send(OTHER, b"2", 0.0)
    allocation.send(("192.0.2.30", 1), b"3", 0.0)  # a third peer: dropped
    assert allocation.stats.held_dropped == 1
    assert len(allocation.datagrams_to_send()) == 4
    allocation.send(PEER2, b"4", 0.0)  # a permission is pending: dropped too
    assert allocation.stats.held_dropped == 2
    assert allocation.datagrams_to_send() == []
    allocation2, server2 = allocated(config=TurnConfig(max_peers=1))
    allocation2.send(PEER, b"1", 0.0)
    exchange(allocation2, server2, 0.0)
    # Over the bound, but its IP has a permission: Send indication, no channel.
    allocation2.send(PEER2, b"2", 0.0)
    (sent,) = parsed(allocation2.datagrams_to_send())
    assert sent.method == Method.SEND  # type: ignore[union-attr]
    assert allocation2.stats.held_dropped == 0


@pytest.mark.parametrize(
    ("peer", "data", "match"),
    [
        (("peer.example.org", 1), b"x", "not an IP address"),
        (("2001:DB8::1", 1), b"x", "canonical"),
        (("192.0.2.1", 0), b"x", "port"),
        (("192.0.2.1", 70000), b"x", "port"),
        (PEER, bytes(0x10000), "too large"),
    ],
)
def test_send_rejects_bad_arguments(peer: Address, data: bytes, match: str) -> None:
    allocation, _ = allocated()
    with pytest.raises(ValueError, match=match):
        allocation.send(peer, data, 0.0)


def test_data_too_large_for_a_send_indication_is_dropped() -> None:
    allocation, _server = bound()
    allocation.send(PEER, bytes(0xFFFF), 0.0)  # fits ChannelData
    assert len(allocation.datagrams_to_send()[0]) == 4 + 0xFFFF
    allocation.send(PEER2, bytes(0xFFFF), 0.0)  # a Send indication cannot
    assert allocation.stats.oversized == 1
    assert [m.method for m in parsed(allocation.datagrams_to_send())] == [  # type: ignore[union-attr]
        Method.CHANNEL_BIND
    ]


def test_ipv6_peer_through_the_fake_server() -> None:
    allocation, server = allocated()
    peer = ("2001:db8::5", 9000)
    allocation.send(peer, b"six", 0.0)
    exchange(allocation, server, 0.0)
    assert server.relayed_out == [(peer, b"six", "send")]
    assert allocation.channels == {peer: 0x4000}


# --- close ------------------------------------------------------------------------


def test_close_sends_refresh_lifetime_zero_and_closes_on_the_answer() -> None:
    allocation, server = bound()
    allocation.send(OTHER, b"held", 0.0)
    allocation.datagrams_to_send()
    allocation.close(10.0)
    assert allocation.state == TurnState.CLOSING
    assert allocation.stats.held_dropped == 1
    out = allocation.datagrams_to_send()
    (release,) = parsed(out)
    assert isinstance(release, Message)
    assert release.method == Method.REFRESH
    assert release.attributes["LIFETIME"] == 0
    assert release.check_integrity(server.key())
    assert allocation.get_timer() == 10.5  # retransmission; 11.0 is the limit
    allocation.send(PEER, b"x", 10.0)  # ignored
    assert allocation.datagrams_to_send() == []
    # Data still arrives while closing.
    assert allocation.receive(server.channel_data(0x4000, b"late"), 10.0) == [
        (PEER, b"late")
    ]
    deliver(allocation, server, out, 10.0)
    assert drain(allocation) == [AllocationClosed()]
    assert allocation.state == TurnState.CLOSED
    assert not server.allocated
    assert allocation.get_timer() is None
    assert allocation.receive(server.channel_data(0x4000, b"x"), 10.0) == []
    allocation.close(11.0)  # idempotent
    allocation.handle_timer(100.0)
    assert drain(allocation) == []
    assert allocation.datagrams_to_send() == []
    assert allocation.channels == {PEER: 0x4000}


def test_close_answered_with_an_error_closes() -> None:
    allocation, server = allocated()
    server.errors[Method.REFRESH] = [437]
    allocation.close(1.0)
    exchange(allocation, server, 1.0)
    assert drain(allocation) == [AllocationClosed()]


def test_close_times_out() -> None:
    allocation, server = allocated()
    allocation.close(5.0)
    server.silent = True
    times = []
    while (at := allocation.get_timer()) is not None:
        times.append(at)
        allocation.handle_timer(at)
    assert times == [5.5, 6.0]
    assert drain(allocation) == [AllocationClosed()]
    assert allocation.state == TurnState.CLOSED


def test_close_release_transaction_timing_out_first() -> None:
    # Over TCP the request times out after Ti; a longer close_timeout waits
    # no longer than that.
    config = TurnConfig(close_timeout=60.0, reliable_timeout=2.0)
    allocation, _server = allocated(transport="tcp", config=config)
    allocation.close(0.0)
    allocation.handle_timer(2.0)
    assert drain(allocation) == [AllocationClosed()]


def test_close_with_stale_nonce_is_retried() -> None:
    allocation, server = allocated()
    server.stale = 1
    allocation.close(1.0)
    exchange(allocation, server, 1.0)
    assert [m.attributes["LIFETIME"] for m in server.requests[-2:]] == [0, 0]
    assert drain(allocation) == [AllocationClosed()]
    assert not server.allocated


def test_close_while_allocating_then_success_releases_it() -> None:
    allocation, server = make()
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    allocation.close(0.1)  # the authenticated Allocate is in flight
    assert allocation.state == TurnState.CLOSING
    deliver(allocation, server, allocation.datagrams_to_send(), 0.2)
    assert drain(allocation) == []  # no AllocationSucceeded
    out = allocation.datagrams_to_send()
    (release,) = parsed(out)
    assert isinstance(release, Message)
    assert release.method == Method.REFRESH
    assert release.attributes["LIFETIME"] == 0
    deliver(allocation, server, out, 0.3)
    assert [m.method for m in server.requests] == [Method.ALLOCATE] * 2 + [
        Method.REFRESH
    ]
    assert not server.allocated
    assert drain(allocation) == [AllocationClosed()]


def test_close_while_allocating_then_failure_closes() -> None:
    allocation, server = make(FakeTurnServer(errors={Method.ALLOCATE: [486]}))
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    allocation.close(0.0)
    exchange(allocation, server, 0.0)
    assert drain(allocation) == [AllocationClosed()]


def test_close_while_allocating_times_out_after_close_timeout() -> None:
    allocation, server = make()
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    allocation.close(0.2)
    assert allocation.get_timer() == 0.5
    allocation.handle_timer(0.5)  # a retransmission
    assert len(allocation.datagrams_to_send()) == 2
    assert allocation.get_timer() == 1.2
    allocation.handle_timer(1.2)
    assert drain(allocation) == [AllocationClosed()]


def test_close_while_allocating_ends_when_the_allocate_times_out() -> None:
    allocation, server = make()
    allocation.start(0.0, deadline=0.6)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    allocation.close(0.1)
    allocation.handle_timer(0.6)
    assert drain(allocation) == [AllocationClosed()]


def test_close_before_the_first_401_closes_at_once() -> None:
    allocation, _server = make()
    allocation.start(0.0)
    allocation.close(0.0)
    assert allocation.state == TurnState.CLOSED
    assert drain(allocation) == [AllocationClosed()]
    assert allocation.get_timer() is None


def test_close_when_new_or_failed() -> None:
    allocation, _ = make()
    allocation.close(0.0)
    assert drain(allocation) == [AllocationClosed()]
    assert allocation.state == TurnState.CLOSED
    allocation.start(1.0)  # over: no-op
    assert allocation.datagrams_to_send() == []
    failed, server = make(FakeTurnServer(errors={Method.ALLOCATE: [403]}))
    failed.start(0.0)
    exchange(failed, server, 0.0)
    drain(failed)
    failed.close(1.0)
    assert drain(failed) == [AllocationClosed()]
    assert failed.datagrams_to_send() == []


def test_abandon() -> None:
    allocation, _server = bound()
    allocation.abandon("connection reset")
    assert failed_with(allocation) == ("connection reset", None)
    allocation.abandon("again")
    assert drain(allocation) == []
    closing, _ = allocated()
    closing.close(0.0)
    closing.abandon("reset")
    assert drain(closing) == [AllocationClosed()]


def test_abandon_when_failed_is_a_no_op() -> None:
    allocation, _ = make()
    allocation.abandon("gone")
    assert failed_with(allocation) == ("gone", None)
    assert allocation.receive(b"anything", 0.0) == []


# --- TCP and TLS ------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stream_fed_byte_by_byte(transport: str) -> None:
    allocation, server = make(transport=transport)
    assert allocation.transport == transport
    allocation.start(0.0)
    exchange(allocation, server, 0.0, bytewise=True)
    assert allocation.state == TurnState.ALLOCATED
    allocation.send(PEER, b"abc", 0.0)
    exchange(allocation, server, 0.0, bytewise=True)
    assert allocation.channels == {PEER: 0x4000}
    allocation.send(PEER, b"abcde", 0.0)
    assert allocation.datagrams_to_send() == [b"\x40\x00\x00\x05abcde\x00\x00\x00"]
    allocation.send(PEER, b"abcd", 0.0)
    assert allocation.datagrams_to_send() == [b"\x40\x00\x00\x04abcd"]
    stream = server.channel_data(0x4000, b"x") + server.data_indication(PEER, b"yz")
    got = []
    for i in range(len(stream)):
        got += allocation.receive(stream[i : i + 1], 0.0)
    assert got == [(PEER, b"x"), (PEER, b"yz")]
    assert allocation.stats == TurnStats()


def test_stream_out_of_step_fails() -> None:
    allocation, server = bound(transport="tcp")
    data = server.channel_data(0x4000, b"ok") + b"\xff\xff\xff\xff"
    assert allocation.receive(data, 0.0) == [(PEER, b"ok")]
    assert failed_with(allocation) == ("stream out of step", None)
    assert allocation.receive(server.channel_data(0x4000, b"x"), 0.0) == []


def test_stream_out_of_step_with_no_whole_frame() -> None:
    allocation, _ = allocated(transport="tls")
    assert allocation.receive(b"\x99\x00\x00\x00", 0.0) == []
    assert failed_with(allocation) == ("stream out of step", None)


def test_stream_bad_stun_frame_is_counted_and_skipped() -> None:
    allocation, server = bound(transport="tcp")
    bad = bytearray(server.data_indication(PEER, b"x"))
    bad[-1] ^= 1  # FINGERPRINT mismatch: dropped, the stream stays in step
    got = allocation.receive(bytes(bad) + server.channel_data(0x4000, b"ok"), 0.0)
    assert got == [(PEER, b"ok")]
    assert allocation.stats.malformed == 1
    assert allocation.state == TurnState.ALLOCATED


def test_stream_frames_after_a_failure_are_ignored() -> None:
    allocation, server = make(
        FakeTurnServer(errors={Method.ALLOCATE: [403]}, padded=True), transport="tcp"
    )
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    (request,) = allocation.datagrams_to_send()
    (answer,) = server.handle(request)
    # The 403, then data, then garbage: failed once, by the 403.
    got = allocation.receive(
        answer + server.data_indication(PEER, b"x") + b"\xff" * 4, 0.0
    )
    assert got == []
    assert failed_with(allocation) == ("403 Forbidden from the server", 403)


@pytest.mark.parametrize(
    "garbage", [b"\xff" * 8 + b"\x01\x01", b"\xff\xff\xff\xff"], ids=["long", "short"]
)
def test_stream_redirect_restarts_the_framer(garbage: bytes) -> None:
    server = FakeTurnServer(
        errors={Method.ALLOCATE: [300]}, alternate=ALTERNATE, padded=True
    )
    allocation, server = make(server, transport="tcp")
    allocation.start(0.0)
    deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
    (request,) = allocation.datagrams_to_send()
    (answer,) = server.handle(request)
    # The rest of the old stream, even garbage in the same chunk, is not read:
    # no failure.
    assert allocation.receive(answer + garbage, 0.0) == []
    assert drain(allocation) == [ServerChanged(server=ALTERNATE)]
    assert allocation.state == TurnState.ALLOCATING
    exchange(allocation, server, 0.0, bytewise=True)
    assert allocation.state == TurnState.ALLOCATED


# --- never raises -----------------------------------------------------------------

STATES = (
    "new",
    "allocating",
    "authenticating",
    "allocated",
    "closing",
    "closed",
    "failed",
)


def in_state(state: str, transport: str) -> tuple[TurnAllocation, FakeTurnServer]:
    allocation, server = make(transport=transport)
    if state == "new":
        return allocation, server
    allocation.start(0.0)
    if state == "allocating":
        allocation.datagrams_to_send()
        return allocation, server
    if state == "authenticating":
        deliver(allocation, server, allocation.datagrams_to_send(), 0.0)
        allocation.datagrams_to_send()
        return allocation, server
    exchange(allocation, server, 0.0)
    allocation.send(PEER, b"x", 0.0)
    exchange(allocation, server, 0.0)
    allocation.send(OTHER, b"y", 0.0)  # left pending
    allocation.datagrams_to_send()
    if state == "closing":
        allocation.close(0.0)
    elif state == "closed":
        allocation.close(0.0)
        exchange(allocation, server, 0.0)
    elif state == "failed":
        allocation.abandon("test")
    allocation.datagrams_to_send()
    drain(allocation)
    return allocation, server


@given(
    st.sampled_from(STATES),
    st.sampled_from(["udp", "tcp"]),
    st.lists(st.binary(max_size=200), max_size=5),
)
def test_receive_never_raises(state: str, transport: str, chunks: list[bytes]) -> None:
    allocation, _ = in_state(state, transport)
    before = allocation.state
    for chunk in chunks:
        got = allocation.receive(chunk, 1.0)
        assert isinstance(got, list)
    if allocation.state != before:
        # Only a stream out of step ends an allocation without a response.
        assert transport == "tcp"
        assert allocation.reason == "stream out of step" or before == TurnState.CLOSING
    allocation.handle_timer(2.0)
    assert allocation.get_timer() is None or allocation.get_timer() >= 2.0  # type: ignore[operator]


def test_permit_asks_for_a_permission_and_a_channel_without_data() -> None:
    allocation, server = allocated(config=TurnConfig(max_peers=2))
    allocation.permit(PEER, 1.0)
    out = allocation.datagrams_to_send()
    permission, bind = parsed(out)
    assert permission.method == Method.CREATE_PERMISSION  # type: ignore[union-attr]
    assert bind.method == Method.CHANNEL_BIND  # type: ignore[union-attr]
    # Known already (pending, then bound): nothing more.
    allocation.permit(PEER, 1.0)
    assert allocation.datagrams_to_send() == []
    deliver(allocation, server, out, 1.0)
    assert allocation.channels == {PEER: 0x4000}
    allocation.permit(PEER, 2.0)
    assert allocation.datagrams_to_send() == []
    # Another port of that IP: a channel only, the permission is there.
    allocation.permit(PEER2, 2.0)
    (bind2,) = parsed(allocation.datagrams_to_send())
    assert bind2.method == Method.CHANNEL_BIND  # type: ignore[union-attr]
    # Beyond max_peers: nothing.
    allocation.permit(OTHER, 2.0)
    assert allocation.datagrams_to_send() == []
    assert allocation.stats.held_dropped == 0
    with pytest.raises(ValueError, match="not an IP address"):
        allocation.permit(("peer.example.org", 1), 2.0)


def test_permit_does_nothing_unless_allocated() -> None:
    allocation, _server = make()
    allocation.permit(PEER, 0.0)
    assert allocation.datagrams_to_send() == []
