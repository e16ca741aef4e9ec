"""The blocking :class:`~syncice.Connection` over the real worker thread and
real UDP sockets (STYLE §8, layer 2).

Every socket is on loopback (``local_addresses=["127.0.0.1"]``, or ``::1``
where the host has it). Nothing sleeps to wait for a condition: blocking calls
with ``timeout=`` are hang guards, other threads are waited for with events,
and nothing asserts how long a call took. Where a test must know that another
thread is blocked, it watches what that thread's call leaves behind (a waiter
in the inbox, a check sent to a silent peer) rather than hoping it got there.
"""

from __future__ import annotations

import concurrent.futures
import errno
import functools
import gc
import logging
import os
import socket
import ssl
import string
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

import syncice._routes
from syncice import (
    Candidate,
    ConnectionClosed,
    ConnectionClosedError,
    IceConfig,
    IceTimeoutError,
    NegotiationFailedError,
    NotConnectedError,
    TransportPolicy,
    candidate_priority,
)
from syncice import _gather as gather_module
from syncice import _worker as worker_module
from syncice._lifecycle import TRANSITIONS, Lifecycle, LifecycleError, Phase
from syncice._mailbox import Mailbox
from syncice._routes import Route
from syncice.connection import Connection
from syncice.events import GatheringCompleted
from syncice.stun import Class, Message, Method, parse_message
from tests.conftest import (
    ConnectionPairs,
    exchange_candidates,
    has_ipv6_loopback,
    requires,
    spawn,
    watch_recv,
)
from tests.descriptors import open_descriptors, opened_since
from tests.turn_server import FakeTurnServer

#: Hang guard of every blocking call that is expected to return.
GUARD = 10.0
ICE_CHARS = frozenset(string.ascii_letters + string.digits + "+/")
LOOPBACK = ["127.0.0.1"]

needs_ipv6 = requires(has_ipv6_loopback(), "this host has no IPv6 loopback (::1)")


# --- helpers ------------------------------------------------------------------


def watch_queued(conn: Connection) -> threading.Event:
    """An event set once the worker queues a datagram that no ``recv()``
    was waiting for."""
    inbox = conn._core.inbox
    queued = threading.Event()
    with inbox.lock:
        assert not len(inbox)
        inbox.queued_watch = queued
    return queued


@pytest.fixture
def silent_peer() -> Iterator[socket.socket]:
    """A UDP socket on loopback that answers nothing unless a test does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(GUARD)
    yield sock
    sock.close()


def candidate_at(sock: socket.socket, component: int = 1) -> Candidate:
    """A host candidate for the address ``sock`` is bound to."""
    host, port = sock.getsockname()[:2]
    return Candidate(
        foundation="silent",
        component=component,
        transport="udp",
        # Below a real host candidate's: a better pair never waits for it.
        priority=candidate_priority(component, "host", 1000),
        host=host,
        port=port,
        type="host",
    )


def facing(
    connection_pairs: ConnectionPairs,
    peer: socket.socket,
    config: IceConfig | None = None,
) -> Connection:
    """A controlling connection, gathered, with ``peer`` as its only remote
    candidate and made-up remote credentials: its checks go unanswered."""
    conn = connection_pairs.connection(True, config=config)
    conn.gather_candidates(timeout=GUARD)
    conn.remote_username, conn.remote_password = "user", "p" * 22
    conn.add_remote_candidate(candidate_at(peer))
    return conn


def wait_for_check(sock: socket.socket) -> bytes:
    """Block until a STUN request arrives on ``sock`` (``GUARD`` at most)."""
    data, _ = sock.recvfrom(2048)
    assert data[0] in (0, 1)  # a STUN message
    return data


needs_proc_fd = requires(
    os.path.isdir("/proc/self/fd"), "needs /proc/self/fd to count fds"
)


def fd_list() -> frozenset[str]:
    return open_descriptors()


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "syncice-worker"]


@pytest.fixture(autouse=True)
def no_worker_left_behind() -> Iterator[None]:
    """Each test stops every worker it started (the pairs fixture closes its
    connections first, being set up later)."""
    before = set(worker_threads())
    yield
    for thread in set(worker_threads()) - before:
        thread.join(GUARD)  # a finalizer may release the worker on its thread
    assert set(worker_threads()) <= before


# --- constructor and attributes -----------------------------------------------


def test_constructor_defaults() -> None:
    conn = Connection(ice_controlling=True)
    assert conn.ice_controlling is True
    assert conn.stun_server is None
    assert conn.turn_server is None
    assert conn.turn_username is None
    assert conn.turn_password is None
    assert conn.turn_ssl is False
    assert conn.turn_transport == "udp"
    assert conn.remote_is_lite is False
    assert conn.remote_username is None
    assert conn.remote_password is None
    assert conn.local_candidates == []
    assert conn.remote_candidates == []
    assert conn.get_default_candidate(1) is None
    assert conn.get_stats() == []
    assert conn.recv_drops == 0
    assert conn.send_drops == 0
    assert Connection(False).ice_controlling is False
    assert repr(conn).startswith("Connection(")
    conn.ice_controlling = True  # unchanged: nothing to do
    assert conn.ice_controlling is True


def test_constructor_keeps_server_settings() -> None:
    conn = Connection(
        False,
        components=2,
        stun_server=("stun.example", 3478),
        turn_server=("198.51.100.1", 3479),
        turn_username="user",
        turn_password="secret",
        turn_ssl=True,
        turn_transport="tcp",
        transport_policy=TransportPolicy.RELAY,
    )
    assert conn.stun_server == ("stun.example", 3478)
    assert conn.turn_server == ("198.51.100.1", 3479)
    assert conn.turn_username == "user"
    assert conn.turn_password == "secret"
    assert conn.turn_ssl is True
    assert conn.turn_transport == "tcp"


def test_random_local_credentials() -> None:
    a, b = Connection(True), Connection(True)
    for conn in (a, b):
        assert len(conn.local_username) == 4
        assert len(conn.local_password) == 22
        assert ICE_CHARS.issuperset(conn.local_username + conn.local_password)
    # 24 and 132 random bits: equal only by a broken generator.
    assert a.local_username != b.local_username
    assert a.local_password != b.local_password


def test_given_local_credentials_are_kept() -> None:
    conn = Connection(True, local_username="user", local_password="p" * 22)
    assert conn.local_username == "user"
    assert conn.local_password == "p" * 22


@pytest.mark.parametrize("username", ["", "abc", "abc!", "ab cd", "x" * 257, "ü" * 4])
def test_bad_local_username(username: str) -> None:
    with pytest.raises(ValueError, match="username"):
        Connection(True, local_username=username)


@pytest.mark.parametrize("password", ["", "p" * 21, "p" * 21 + "-", "p" * 257])
def test_bad_local_password(password: str) -> None:
    with pytest.raises(ValueError, match="password"):
        Connection(True, local_password=password)


def test_non_str_local_credentials() -> None:
    with pytest.raises(TypeError):
        Connection(True, local_username=1234)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Connection(True, local_password=b"p" * 22)  # type: ignore[arg-type]


def test_relay_policy_needs_a_server() -> None:
    with pytest.raises(ValueError, match="relay"):
        Connection(True, transport_policy=TransportPolicy.RELAY)
    Connection(
        True, stun_server=("127.0.0.1", 3478), transport_policy=TransportPolicy.RELAY
    )


@pytest.mark.parametrize(
    "entry",
    [
        "not an address",
        "0.0.0.0",
        "::",
        "224.0.0.251",
        "fe80::1%lo",
        "::ffff:127.0.0.1",
    ],
)
def test_bad_local_addresses_entry(entry: str) -> None:
    with pytest.raises(ValueError, match="local address"):
        Connection(True, local_addresses=["127.0.0.1", entry])


def test_local_addresses_must_be_a_sequence_of_str() -> None:
    with pytest.raises(TypeError):
        Connection(True, local_addresses="127.0.0.1")
    with pytest.raises(TypeError):
        Connection(True, local_addresses=[0x7F000001])  # type: ignore[list-item]


# --- gathering and candidates -------------------------------------------------


def test_local_candidates_after_gather() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        assert conn.local_candidates == []
        conn.gather_candidates(timeout=GUARD)
        [candidate] = conn.local_candidates
        assert candidate.host == "127.0.0.1"
        assert 0 < candidate.port < 65536
        assert candidate.component == 1
        assert candidate.type == "host"
        assert candidate.transport == "udp"
        assert candidate.priority == candidate_priority(1, "host")
        assert conn.get_default_candidate(1) == candidate
        assert conn.get_default_candidate(2) is None
        # The port is really ours: a datagram sent there is read by the worker
        # (and dropped, as it comes from no known peer).
        conn.local_candidates.clear()  # a copy: the connection keeps its own
        assert conn.local_candidates == [candidate]
        # Gathering again waits for the same gathering.
        conn.gather_candidates(timeout=GUARD)
        assert conn.local_candidates == [candidate]
    finally:
        conn.close()


def test_local_candidates_per_component() -> None:
    conn = Connection(True, components=3, local_addresses=LOOPBACK)
    try:
        conn.gather_candidates(timeout=GUARD)
        candidates = conn.local_candidates
        assert [c.component for c in candidates] == [1, 2, 3]
        assert len({c.port for c in candidates}) == 3
        for component in (1, 2, 3):
            default = conn.get_default_candidate(component)
            assert default is not None
            assert default.component == component
            assert default.priority == candidate_priority(component, "host")
        assert conn.get_default_candidate(4) is None
    finally:
        conn.close()


@needs_ipv6
def test_ipv6_loopback_pair(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(address="::1")
    [candidate] = a.local_candidates
    assert candidate.host == "::1"
    a.send(b"over IPv6")
    assert b.recv(timeout=GUARD) == b"over IPv6"
    b.send(b"and back")
    assert a.recv(timeout=GUARD) == b"and back"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"use_ipv4": False, "local_addresses": ["127.0.0.1"]},
        {"use_ipv6": False, "local_addresses": ["::1"]},
        {"local_addresses": []},
    ],
)
def test_local_addresses_that_leave_nothing_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="leaves no address to gather on"):
        Connection(True, **kwargs)


def test_no_candidate_gathered_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(
        "syncice._gather.host_addresses", lambda *, use_ipv4, use_ipv6: []
    )
    conn = Connection(True)
    try:
        conn.gather_candidates(timeout=GUARD)
        assert conn.local_candidates == []
        assert conn.get_default_candidate(1) is None
        assert "gathered no candidate at all" in caplog.text
    finally:
        conn.close()


@pytest.mark.parametrize("timeout", [float("inf"), 10**12])
def test_endless_timeouts_mean_none(
    connected_pair: tuple[Connection, Connection], timeout: float
) -> None:
    a, b = connected_pair
    a.send(b"no overflow")
    assert b.recv(timeout=timeout) == b"no overflow"


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(float("nan"), ValueError), ("1", TypeError), (True, TypeError), (-1, ValueError)],
)
def test_bad_timeouts_raise(
    connected_pair: tuple[Connection, Connection], timeout: Any, error: type
) -> None:
    _, b = connected_pair
    with pytest.raises(error, match="timeout must be None"):
        b.recv(timeout=timeout)
    with pytest.raises(error, match="timeout must be None"):
        b.connect(timeout=timeout)


@pytest.mark.parametrize(
    ("username", "error"), [(5, TypeError), (b"ufrag", TypeError), ("", ValueError)]
)
def test_bad_remote_credentials_raise_in_the_caller(
    connection_pairs: ConnectionPairs, username: Any, error: type
) -> None:
    a, b = connection_pairs.pair(connect=False)
    a.remote_username = username
    with pytest.raises(error, match="remote_username"):
        a.connect(timeout=GUARD)
    a.remote_username = b.local_username  # the connection is still usable
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)


def test_relay_policy_gathers_no_host_candidate(silent_peer: socket.socket) -> None:
    conn = Connection(
        True,
        stun_server=silent_peer.getsockname(),
        transport_policy=TransportPolicy.RELAY,
        local_addresses=LOOPBACK,
    )
    try:
        conn.gather_candidates(timeout=GUARD)
        assert conn.local_candidates == []
    finally:
        conn.close()


def test_an_address_that_cannot_be_bound_is_skipped(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 192.0.2.1 (TEST-NET-1) is not this host's: the constructor refuses it,
    # unless the host had it then (as here, pretended) and lost it since.
    monkeypatch.setattr(gather_module, "unassigned", lambda _: [])
    conn = Connection(True, local_addresses=["192.0.2.1", "127.0.0.1"])
    try:
        with caplog.at_level(logging.WARNING, logger="syncice"):
            conn.gather_candidates(timeout=GUARD)
        assert [c.host for c in conn.local_candidates] == ["127.0.0.1"]
        assert any("cannot bind to 192.0.2.1" in m for m in caplog.messages)
    finally:
        conn.close()


@needs_proc_fd
def test_a_failed_gather_start_leaks_no_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_worker() -> worker_module.Worker:
        raise RuntimeError("no worker today")

    monkeypatch.setattr(worker_module, "acquire_worker", no_worker)
    fds = fd_list()
    conn = Connection(True, components=2, local_addresses=LOOPBACK)
    with pytest.raises(RuntimeError, match="no worker today"):
        conn.gather_candidates(timeout=GUARD)
    assert not opened_since(fds)
    conn.close()


def test_remote_candidates(silent_peer: socket.socket) -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    first = candidate_at(silent_peer)
    second = Candidate.from_sdp("2 1 udp 2130706431 127.0.0.1 9 typ host")
    try:
        conn.add_remote_candidate(first)  # before gathering: kept for later
        conn.gather_candidates(timeout=GUARD)
        conn.add_remote_candidate(second)
        conn.add_remote_candidate(None)
        assert conn.remote_candidates == [first, second]
        conn.remote_candidates.clear()  # a copy
        assert conn.remote_candidates == [first, second]
    finally:
        conn.close()


def test_add_remote_candidate_type_error() -> None:
    conn = Connection(True)
    with pytest.raises(TypeError, match="Candidate"):
        conn.add_remote_candidate("1 1 udp 1 127.0.0.1 9 typ host")  # type: ignore[arg-type]
    assert conn.remote_candidates == []


# --- connect, send, receive ---------------------------------------------------


def test_connect_controlling_first(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(connect=False)
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    assert a.ice_controlling is True
    assert b.ice_controlling is False
    # Calling again after success returns at once.
    a.connect(timeout=0)
    b.connect(timeout=0)


def test_connect_controlled_first(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(connect=False)
    controlled = spawn(lambda: b.connect(timeout=GUARD))
    a.connect(timeout=GUARD)
    controlled.result(GUARD)
    a.send(b"ping")
    assert b.recv(timeout=GUARD) == b"ping"


def test_role_conflict_leaves_one_controlling(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = connection_pairs.pair(connect=False, b_controlling=True)
    both = spawn(lambda: b.connect(timeout=GUARD))
    a.connect(timeout=GUARD)
    both.result(GUARD)
    assert sorted([a.ice_controlling, b.ice_controlling]) == [False, True]
    b.send(b"resolved")
    assert a.recv(timeout=GUARD) == b"resolved"


def test_remote_is_lite_makes_us_controlling(connection_pairs: ConnectionPairs) -> None:
    # The peer here is a full agent in the controlled role: it behaves as a
    # lite one would towards a controlling agent, which we must become.
    a, b = connection_pairs.pair(connect=False, a_controlling=False)
    a.remote_is_lite = True
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    assert a.ice_controlling is True
    assert b.ice_controlling is False


def test_ice_controlling_can_be_set_before_connect(
    connection_pairs: ConnectionPairs,
) -> None:
    a = connection_pairs.connection(False)
    a.ice_controlling = True  # before gathering: on the agent directly
    assert a.ice_controlling is True
    assert a._core.agent.controlling is True
    b = connection_pairs.connection(True)
    exchange_candidates(a, b)
    b.ice_controlling = False  # after gathering: through the worker
    assert b.ice_controlling is False
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    assert (a.ice_controlling, b.ice_controlling) == (True, False)


def test_send_recv_both_ways(connected_pair: tuple[Connection, Connection]) -> None:
    a, b = connected_pair
    a.send(b"from a")
    assert b.recv(timeout=GUARD) == b"from a"
    b.send(b"from b")
    assert a.recv(timeout=GUARD) == b"from b"
    a.sendto(b"to b, component 1", 1)
    assert b.recvfrom(timeout=GUARD) == (b"to b, component 1", 1)
    b.sendto(b"to a, component 1", 1)
    assert a.recvfrom(timeout=GUARD) == (b"to a, component 1", 1)
    a.send(b"")
    assert b.recv(timeout=GUARD) == b""
    big = bytes(range(256)) * 200  # 51,200 bytes: fits a loopback datagram
    b.send(big)
    assert a.recv(timeout=GUARD) == big


def test_two_components(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(components=2)
    a.sendto(b"on two", 2)
    assert b.recvfrom(timeout=GUARD) == (b"on two", 2)
    a.sendto(b"on one", 1)
    assert b.recvfrom(timeout=GUARD) == (b"on one", 1)
    b.sendto(b"back on two", 2)
    assert a.recvfrom(timeout=GUARD) == (b"back on two", 2)
    b.send(b"back on one")
    assert a.recvfrom(timeout=GUARD) == (b"back on one", 1)
    with pytest.raises(ValueError, match="component must be 1 to 2"):
        a.sendto(b"no such component", 3)
    with pytest.raises(ValueError, match="component must be 1 to 2"):
        a.sendto(b"no such component", 0)


def test_send_too_large_raises_value_error(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    with pytest.raises(ValueError, match="too large"):
        a.send(b"x" * 70000)
    a.send(b"still fine")
    assert b.recv(timeout=GUARD) == b"still fine"


def test_get_stats(connected_pair: tuple[Connection, Connection]) -> None:
    a, b = connected_pair
    a.send(b"counted")
    assert b.recv(timeout=GUARD) == b"counted"
    [selected] = [s for s in b.get_stats() if s.selected]
    assert selected.nominated
    assert selected.component == 1
    assert selected.local == b.local_candidates[0]
    assert selected.datagrams_received == 1
    assert selected.bytes_received == len(b"counted")


# --- errors -------------------------------------------------------------------


def test_connect_before_gather() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.remote_username, conn.remote_password = "user", "p" * 22
    with pytest.raises(ConnectionError) as info:
        conn.connect(timeout=GUARD)
    assert isinstance(info.value, NotConnectedError)
    assert "gathering" in str(info.value)


def test_connect_without_remote_credentials() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        conn.gather_candidates(timeout=GUARD)
        with pytest.raises(NotConnectedError, match="Remote username or password"):
            conn.connect(timeout=GUARD)
        conn.remote_username = "user"
        with pytest.raises(ConnectionError, match="Remote username or password"):
            conn.connect(timeout=GUARD)
        conn.remote_username, conn.remote_password = None, "p" * 22
        with pytest.raises(NotConnectedError):
            conn.connect(timeout=GUARD)
    finally:
        conn.close()


def test_send_recv_before_connect() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        for _ in range(2):  # before gathering, then after
            for call in (
                lambda: conn.send(b"x"),
                lambda: conn.sendto(b"x", 1),
                lambda: conn.recv(timeout=GUARD),
                lambda: conn.recvfrom(timeout=GUARD),
            ):
                with pytest.raises(ConnectionError) as info:
                    call()
                assert isinstance(info.value, NotConnectedError)
            conn.gather_candidates(timeout=GUARD)
    finally:
        conn.close()


def closed_calls(conn: Connection) -> list[Callable[[], object]]:
    return [
        lambda: conn.send(b"x"),
        lambda: conn.sendto(b"x", 1),
        lambda: conn.recv(timeout=GUARD),
        lambda: conn.recvfrom(timeout=GUARD),
        lambda: conn.connect(timeout=GUARD),
        lambda: conn.gather_candidates(timeout=GUARD),
        lambda: conn.set_selected_pair(1, "a", "b"),
    ]


def test_calls_after_close_before_gather() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.close()
    for call in closed_calls(conn):
        with pytest.raises(ConnectionError) as info:
            call()
        assert isinstance(info.value, ConnectionClosedError)
        assert info.value.reason == "closed"
    # Adding a candidate to a closed connection is harmless, and ignored.
    conn.add_remote_candidate(Candidate.from_sdp("1 1 udp 1 127.0.0.1 9 typ host"))
    assert conn.remote_candidates == []


def test_calls_after_close(connected_pair: tuple[Connection, Connection]) -> None:
    a, b = connected_pair
    a.send(b"in flight")
    assert b.recv(timeout=GUARD) == b"in flight"
    a.close()
    for call in closed_calls(a):
        with pytest.raises(ConnectionClosedError) as info:
            call()
        assert info.value.reason == "closed"
    assert a.get_stats() == []


def test_close_discards_queued_datagrams(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    queued = watch_queued(b)
    a.send(b"queued")
    assert queued.wait(GUARD)
    b.close()  # a local close drops what was not received
    with pytest.raises(ConnectionClosedError):
        b.recv(timeout=GUARD)


def test_add_remote_candidate_after_end_of_candidates(
    silent_peer: socket.socket,
) -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        conn.add_remote_candidate(None)
        with pytest.raises(ValueError, match="end-of-candidates"):
            conn.add_remote_candidate(candidate_at(silent_peer))
        with pytest.raises(ValueError, match="end-of-candidates"):
            conn.add_remote_candidate(None)
        conn.gather_candidates(timeout=GUARD)
        with pytest.raises(ValueError, match="end-of-candidates"):
            conn.add_remote_candidate(candidate_at(silent_peer))
        assert conn.remote_candidates == []
    finally:
        conn.close()
    with pytest.raises(ValueError, match="end-of-candidates"):
        conn.add_remote_candidate(None)


def test_negative_timeouts(connected_pair: tuple[Connection, Connection]) -> None:
    a, _ = connected_pair
    for call in (
        lambda: a.gather_candidates(timeout=-1),
        lambda: a.connect(timeout=-0.001),
        lambda: a.recv(timeout=-1),
        lambda: a.recvfrom(timeout=-1),
        lambda: a.get_event(timeout=-1),
    ):
        with pytest.raises(ValueError, match="timeout"):
            call()
    fresh = Connection(True)
    with pytest.raises(ValueError, match="timeout"):
        fresh.gather_candidates(timeout=-1)
    assert fresh.get_stats() == []  # nothing was started
    with pytest.raises(ValueError, match="timeout"):
        fresh.connect(timeout=-1)


def test_connect_without_remote_candidates_fails_after_patience(
    connection_pairs: ConnectionPairs,
) -> None:
    # The peer's checks may still come (RFC 8863): the wait is the patience
    # timer, here 0.02 s (tests/test_ice_patience.py).
    fast = IceConfig(rto=0.01, max_sends=2, final_wait=1)
    a = connection_pairs.connection(True, config=fast)
    a.gather_candidates(timeout=GUARD)
    a.remote_username, a.remote_password = "user", "p" * 22
    a.add_remote_candidate(None)
    with pytest.raises(ConnectionError) as info:
        a.connect(timeout=GUARD)
    assert isinstance(info.value, NegotiationFailedError)
    # The failure stays: calling again reports it again.
    with pytest.raises(NegotiationFailedError):
        a.connect(timeout=GUARD)


def test_connect_to_a_silent_peer_fails(
    connection_pairs: ConnectionPairs, silent_peer: socket.socket
) -> None:
    fast = IceConfig(rto=0.01, max_sends=2, final_wait=1)
    a = facing(connection_pairs, silent_peer, config=fast)
    a.add_remote_candidate(None)
    with pytest.raises(NegotiationFailedError):
        a.connect(timeout=GUARD)
    wait_for_check(silent_peer)  # it was tried


# --- trickle ICE --------------------------------------------------------------


def test_trickle_from_another_thread(
    connection_pairs: ConnectionPairs, silent_peer: socket.socket
) -> None:
    a = connection_pairs.connection(True)
    b = connection_pairs.connection(False)
    a.gather_candidates(timeout=GUARD)
    b.gather_candidates(timeout=GUARD)
    a.remote_username, a.remote_password = b.local_username, b.local_password
    b.remote_username, b.remote_password = a.local_username, a.local_password
    for candidate in a.local_candidates:
        b.add_remote_candidate(candidate)
    b.add_remote_candidate(None)
    # a starts with a candidate that never answers. Its check reaching the
    # silent peer shows that a.connect() runs; only then do b's candidates
    # trickle in, from another thread.
    a.add_remote_candidate(candidate_at(silent_peer))

    def trickle() -> None:
        wait_for_check(silent_peer)
        for candidate in b.local_candidates:
            a.add_remote_candidate(candidate)
        a.add_remote_candidate(None)

    trickler = spawn(trickle, "trickler")
    a.connect(timeout=GUARD)
    trickler.result(GUARD)
    b.connect(timeout=GUARD)
    a.send(b"trickled")
    assert b.recv(timeout=GUARD) == b"trickled"
    assert a.remote_candidates == [candidate_at(silent_peer), *b.local_candidates]


def test_end_of_candidates_from_another_thread_fails_connect(
    connection_pairs: ConnectionPairs, silent_peer: socket.socket
) -> None:
    fast = IceConfig(rto=0.01, max_sends=2, final_wait=1)
    a = facing(connection_pairs, silent_peer, config=fast)

    def end() -> None:
        wait_for_check(silent_peer)
        a.add_remote_candidate(None)

    ender = spawn(end, "ender")
    with pytest.raises(NegotiationFailedError):
        a.connect(timeout=GUARD)
    ender.result(GUARD)


# --- set_selected_pair --------------------------------------------------------


def test_set_selected_pair_without_ice(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(components=2, connect=False, credentials=False)
    for local, remote in ((a, b), (b, a)):
        for component in (1, 2):
            ours = local.get_default_candidate(component)
            theirs = remote.get_default_candidate(component)
            assert ours is not None
            assert theirs is not None
            local.set_selected_pair(component, ours.foundation, theirs.foundation)
    a.sendto(b"no ICE", 2)
    assert b.recvfrom(timeout=GUARD) == (b"no ICE", 2)
    b.send(b"none at all")
    assert a.recvfrom(timeout=GUARD) == (b"none at all", 1)
    assert a.remote_username is None  # no checks needed credentials


def test_set_selected_pair_unknown_foundation(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = connection_pairs.pair(connect=False, credentials=False)
    ours = a.local_candidates[0].foundation
    theirs = b.local_candidates[0].foundation
    with pytest.raises(ValueError, match="no local candidate"):
        a.set_selected_pair(1, "unknown", theirs)
    with pytest.raises(ValueError, match="no local candidate"):
        a.set_selected_pair(1, ours, "unknown")
    with pytest.raises(ValueError, match="no local candidate"):
        a.set_selected_pair(2, ours, theirs)  # no such component
    with pytest.raises(NotConnectedError):
        a.send(b"not selected")
    # The connection survived the mistakes.
    a.set_selected_pair(1, ours, theirs)
    b.set_selected_pair(1, theirs, ours)
    a.send(b"selected")
    assert b.recv(timeout=GUARD) == b"selected"


def test_set_selected_pair_before_gather() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    with pytest.raises(NotConnectedError, match="gathering"):
        conn.set_selected_pair(1, "a", "b")


# --- consent and send errors ---------------------------------------------------


def test_lost_consent_closes_the_connection(connection_pairs: ConnectionPairs) -> None:
    fast = IceConfig(consent_interval=0.05, consent_timeout=0.5)
    a, b = connection_pairs.pair(config=fast)
    queued = watch_queued(b)
    a.send(b"last words")
    assert queued.wait(GUARD)
    a.close()  # b's consent checks now go unanswered
    assert b.get_event(timeout=GUARD) == ConnectionClosed()
    assert b.recv(timeout=GUARD) == b"last words"  # what was queued is kept
    with pytest.raises(ConnectionClosedError) as info:
        b.recv(timeout=GUARD)
    assert info.value.reason == "consent expired"
    with pytest.raises(ConnectionClosedError) as info:
        b.send(b"no consent")
    assert info.value.reason == "consent expired"


class _FailingSocket:
    """Stands in for a route's socket: each sendto raises the next error."""

    def __init__(self, *errors: OSError) -> None:
        self.errors = list(errors)
        self.closed = False

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        raise self.errors.pop(0)

    def fileno(self) -> int:
        return -1 if self.closed else 99


def test_send_errors(connected_pair: tuple[Connection, Connection]) -> None:
    a, _ = connected_pair
    published = a._core.published
    real = published.routes
    sock = _FailingSocket(
        BlockingIOError(errno.EAGAIN, "full"),  # a full buffer drops
        OSError(errno.ENOBUFS, "no buffers"),  # so does a transient error
        OSError(errno.EBADF, "closed"),  # a socket closed meanwhile
    )
    route = syncice._routes.Route(cast(socket.socket, sock), ("127.0.0.1", 9))
    published.routes = {1: route}
    try:
        a.send(b"dropped")
        a.send(b"dropped too")
        assert a.send_drops == 2
        sock.closed = True
        with pytest.raises(ConnectionClosedError):
            a.send(b"closed meanwhile")
    finally:
        published.routes = real


# --- timeouts -----------------------------------------------------------------


def test_recv_timeout_loses_nothing(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    with pytest.raises(TimeoutError) as info:
        b.recv(timeout=0.05)
    assert isinstance(info.value, IceTimeoutError)
    with pytest.raises(IceTimeoutError):
        b.recvfrom(timeout=0)  # polls
    a.send(b"after the timeouts")
    assert b.recv(timeout=GUARD) == b"after the timeouts"
    a.send(b"one")
    a.send(b"two")
    assert b.recv(timeout=GUARD) == b"one"
    assert b.recv(timeout=GUARD) == b"two"
    assert b.recv_drops == 0


def test_connect_timeout_then_close(
    connection_pairs: ConnectionPairs, silent_peer: socket.socket
) -> None:
    a = facing(connection_pairs, silent_peer)
    with pytest.raises(TimeoutError) as info:
        a.connect(timeout=0.05)
    assert isinstance(info.value, IceTimeoutError)
    assert "no candidate pair has succeeded" in str(info.value)
    with pytest.raises(IceTimeoutError):
        a.connect(timeout=0)  # checks go on; calling again waits again
    wait_for_check(silent_peer)
    a.close()
    with pytest.raises(ConnectionClosedError):
        a.connect(timeout=GUARD)


def test_gather_timeout(silent_peer: socket.socket) -> None:
    conn = Connection(
        True,
        stun_server=silent_peer.getsockname(),
        local_addresses=LOOPBACK,
        config=IceConfig(gather_timeout=60.0),
    )
    try:
        with pytest.raises(TimeoutError) as info:
            conn.gather_candidates(timeout=0.05)
        assert isinstance(info.value, IceTimeoutError)
        assert conn.local_candidates == []
        # Only now does the STUN server answer: gathering went on, and ends.
        data, addr = silent_peer.recvfrom(2048)
        request = parse_message(data)
        response = Message(
            Method.BINDING,
            Class.SUCCESS,
            request.transaction_id,
            {"XOR-MAPPED-ADDRESS": addr},
        )
        silent_peer.sendto(response.encode(fingerprint=True), addr)
        conn.gather_candidates(timeout=GUARD)
        # The mapped address is the host candidate's own: no srflx candidate.
        [candidate] = conn.local_candidates
        assert candidate.type == "host"
    finally:
        conn.close()


def test_get_event_timeout_before_close() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    with pytest.raises(TimeoutError) as info:
        conn.get_event(timeout=0.05)
    assert isinstance(info.value, IceTimeoutError)
    with pytest.raises(IceTimeoutError):
        conn.get_event(timeout=0)
    conn.close()


# --- close --------------------------------------------------------------------


def test_close_wakes_blocked_connect(
    connection_pairs: ConnectionPairs, silent_peer: socket.socket
) -> None:
    a = facing(connection_pairs, silent_peer)
    blocked = spawn(lambda: a.connect(timeout=GUARD), "connect-caller")
    wait_for_check(silent_peer)  # connect() has started the checks
    spawn(a.close, "closer").result(GUARD)
    with pytest.raises(ConnectionError) as info:
        blocked.result(GUARD)
    assert isinstance(info.value, ConnectionClosedError)
    assert info.value.reason == "closed"


def test_close_wakes_blocked_recv(
    connected_pair: tuple[Connection, Connection],
) -> None:
    _, b = connected_pair
    waiting = watch_recv(b)
    blocked = spawn(lambda: b.recv(timeout=GUARD), "recv-caller")
    assert waiting.wait(GUARD)
    spawn(b.close, "closer").result(GUARD)
    with pytest.raises(ConnectionError) as info:
        blocked.result(GUARD)
    assert isinstance(info.value, ConnectionClosedError)


def test_close_twice() -> None:
    never_gathered = Connection(True)
    never_gathered.close()
    never_gathered.close()
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.gather_candidates(timeout=GUARD)
    conn.close()
    conn.close()
    assert worker_module.active_worker_threads() == 0


def test_close_on_the_worker_thread() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.gather_candidates(timeout=GUARD)
    worker = conn._core.worker
    assert worker is not None
    worker.submit(conn.close).result(GUARD)  # as a callback would
    worker._thread.join(GUARD)  # the last release, from the worker: it ends
    assert worker_module.active_worker_threads() == 0
    with pytest.raises(ConnectionClosedError):
        conn.recv(timeout=GUARD)


def test_get_event_connection_closed_once() -> None:
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.gather_candidates(timeout=GUARD)
    closer = spawn(conn.close, "closer")
    assert conn.get_event(timeout=GUARD) == ConnectionClosed()
    closer.result(GUARD)
    assert conn.get_event() is None  # no wait once closed
    assert conn.get_event(timeout=0) is None
    conn.close()
    assert conn.get_event(timeout=GUARD) is None


def test_get_event_before_gather_close() -> None:
    conn = Connection(True)
    conn.close()
    assert isinstance(conn.get_event(timeout=0), ConnectionClosed)
    assert conn.get_event(timeout=0) is None


# --- threads ------------------------------------------------------------------


def test_concurrent_receivers_get_distinct_datagrams(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    count, receivers = 2000, 4
    # At most `window` datagrams in flight: no loss in loopback buffers.
    window = threading.BoundedSemaphore(64)
    got: list[list[int]] = [[] for _ in range(receivers)]

    def receive(index: int) -> None:
        while (data := b.recv(timeout=GUARD)) != b"stop":
            got[index].append(int(data))
            window.release()

    threads = [
        spawn(functools.partial(receive, i), f"receiver-{i}") for i in range(receivers)
    ]
    for n in range(count):
        assert window.acquire(timeout=GUARD)
        a.send(b"%d" % n)
    for _ in range(receivers):
        a.send(b"stop")  # each receiver takes one and returns
    for thread in threads:
        thread.result(GUARD)
    received = sorted(n for numbers in got for n in numbers)
    assert received == list(range(count))  # each exactly once
    for numbers in got:
        assert numbers == sorted(numbers)  # a caller sees arrival order
    assert b.recv_drops == 0
    assert a.send_drops == 0


def test_concurrent_senders_lose_nothing(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    senders, each = 8, 500
    window = threading.BoundedSemaphore(64)
    start = threading.Barrier(senders)

    def send(index: int) -> None:
        start.wait(GUARD)
        for n in range(each):
            assert window.acquire(timeout=GUARD)
            a.send(b"%d %d" % (index, n))

    threads = [spawn(functools.partial(send, i), f"sender-{i}") for i in range(senders)]
    got: dict[int, list[int]] = {i: [] for i in range(senders)}
    for _ in range(senders * each):
        index, n = map(int, b.recv(timeout=GUARD).split())
        got[index].append(n)
        window.release()
    for thread in threads:
        thread.result(GUARD)
    for numbers in got.values():
        assert numbers == list(range(each))  # one socket, one sender: in order
    with pytest.raises(IceTimeoutError):
        b.recv(timeout=0)  # nothing more: no duplicates
    assert b.recv_drops == 0
    assert a.send_drops == 0


def test_send_while_another_thread_blocks_in_recv(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, b = connected_pair
    waiting = watch_recv(a)
    blocked = spawn(lambda: a.recv(timeout=GUARD), "recv-caller")
    assert waiting.wait(GUARD)
    a.send(b"while a waits")  # the same connection, another thread
    assert b.recv(timeout=GUARD) == b"while a waits"
    b.send(b"wakes a")
    assert blocked.result(GUARD) == b"wakes a"


@pytest.mark.parametrize("connection_pairs", ["blocking"], indirect=True)
def test_blocking_call_on_the_worker_thread_raises(
    connected_pair: tuple[Connection, Connection],
) -> None:
    a, _ = connected_pair
    worker = a._core.worker
    assert worker is not None
    with pytest.raises(RuntimeError, match="worker thread"):
        worker.submit(a.get_stats).result(GUARD)


# --- the inbox (no worker: its contract with the worker, step by step) ---------


def get(inbox: Mailbox[tuple[bytes, int]], timeout: float | None) -> tuple[bytes, int]:
    """What recv() does with a mailbox: a future waiter, withdrawn on timeout."""
    fut: concurrent.futures.Future[tuple[bytes, int]] = concurrent.futures.Future()
    inbox.wait(fut)
    try:
        return fut.result(timeout)
    except concurrent.futures.TimeoutError:
        if inbox.withdraw(fut):
            raise IceTimeoutError("recv timed out") from None
        return fut.result()


def test_inbox_drops_when_full() -> None:
    inbox: Mailbox[tuple[bytes, int]] = Mailbox(2)
    for n in range(3):
        inbox.put((b"%d" % n, 1))
    assert inbox.dropped == 1
    assert get(inbox, 0) == (b"0", 1)
    assert inbox.get_nowait() == (True, (b"1", 1))
    assert inbox.get_nowait() == (False, None)
    with pytest.raises(IceTimeoutError):
        get(inbox, 0)


def test_idle_mailboxes_share_no_queue() -> None:
    # An idle mailbox has no deque of its own: the first item makes one.
    first: Mailbox[int] = Mailbox()
    second: Mailbox[int] = Mailbox()
    third: Mailbox[int] = Mailbox()
    first.put(1)
    third.put_back(3)
    assert (len(first), len(second), len(third)) == (1, 0, 1)
    assert second.get_nowait() == (False, None)
    assert (first.get_nowait(), third.get_nowait()) == ((True, 1), (True, 3))
    second.end(ConnectionClosedError("closed", "closed"), discard=True)
    first.put(4)  # the same deque again, emptied
    assert first.get_nowait() == (True, 4)


def test_inbox_close_keeps_the_first_error_and_maybe_the_data() -> None:
    inbox: Mailbox[tuple[bytes, int]] = Mailbox(8)
    inbox.put((b"kept", 2))
    first = ConnectionClosedError("consent", "consent expired")
    inbox.end(first, discard=False)
    inbox.end(ConnectionClosedError("later"), discard=False)
    assert get(inbox, None) == (b"kept", 2)
    with pytest.raises(ConnectionClosedError) as info:
        get(inbox, None)
    assert info.value is first
    inbox.end(first, discard=True)
    inbox.put((b"late", 1))  # (the worker puts nothing after a close)
    inbox.put_back((b"given back", 1))
    with pytest.raises(ConnectionClosedError):
        get(inbox, 0)


def test_inbox_waiter_futures() -> None:
    inbox: Mailbox[tuple[bytes, int]] = Mailbox(8)
    inbox.put((b"queued", 1))
    assert inbox.waiter().result(0) == (b"queued", 1)
    pending = inbox.waiter()
    cancelled = inbox.waiter()
    assert cancelled.cancel()  # a caller gave up without withdrawing: skipped
    later = inbox.waiter()
    inbox.put_many([(b"first", 1), (b"second", 1), (b"third", 1)])
    assert pending.result(0) == (b"first", 1)
    assert later.result(0) == (b"second", 1)
    assert len(inbox) == 1
    inbox.put_back((b"back", 2))  # first again
    assert inbox.get_nowait() == (True, (b"back", 2))
    error = ConnectionClosedError("closed")
    inbox.end(error, discard=False)  # the queued one is still to be read
    waiting = inbox.waiter()
    assert waiting.result(0) == (b"third", 1)
    assert inbox.waiter().exception(0) is error
    assert inbox.ended


def test_inbox_end_wakes_waiters_once_drained() -> None:
    events: Mailbox[str | None] = Mailbox()
    first, second = events.waiter(), events.waiter()
    events.put("closed")
    events.end(None, discard=False)
    assert first.result(0) == "closed"
    assert second.result(0) is None  # nothing comes after the last event
    assert events.get_nowait() == (True, None)


def test_inbox_timeout_keeps_a_datagram_claimed_meanwhile() -> None:
    # The wait runs out just as the worker hands the waiter a datagram: the
    # caller gets it rather than a timeout, and it is not lost.
    inbox: Mailbox[tuple[bytes, int]] = Mailbox(8)

    class LateFuture(concurrent.futures.Future[tuple[bytes, int]]):
        def result(self, timeout: float | None = None) -> tuple[bytes, int]:
            if timeout is not None and not self.done():
                inbox.put((b"just in time", 1))
                raise concurrent.futures.TimeoutError
            return super().result(timeout)

    fut = LateFuture()
    inbox.wait(fut)
    try:
        got = fut.result(0.05)
    except concurrent.futures.TimeoutError:
        assert not inbox.withdraw(fut)
        got = fut.result()
    assert got == (b"just in time", 1)
    with pytest.raises(IceTimeoutError):
        get(inbox, 0)


# --- the shared worker and cleanup --------------------------------------------


def test_worker_is_shared() -> None:
    assert worker_module.active_worker_threads() == 0
    conns = [Connection(i % 2 == 0, local_addresses=LOOPBACK) for i in range(4)]
    assert worker_module.active_worker_threads() == 0  # started on first use
    try:
        for conn in conns:
            conn.gather_candidates(timeout=GUARD)
            assert worker_module.active_worker_threads() == 1
        workers = {id(conn._core.worker) for conn in conns}
        assert len(workers) == 1
        assert len(worker_threads()) == 1
        for conn in conns[:-1]:
            conn.close()
            assert worker_module.active_worker_threads() == 1
    finally:
        for conn in conns:
            conn.close()
    assert worker_module.active_worker_threads() == 0
    assert worker_threads() == []


@needs_proc_fd
def test_cycles_leave_nothing_behind() -> None:
    threads, fds = set(threading.enumerate()), fd_list()
    workers = worker_module.active_worker_threads()
    for n in range(200):
        a = Connection(True, local_addresses=LOOPBACK)
        b = Connection(False, local_addresses=LOOPBACK)
        try:
            exchange_candidates(a, b)
            a.connect(timeout=GUARD)
            b.connect(timeout=GUARD)
            a.send(b"%d" % n)
            assert b.recv(timeout=GUARD) == b"%d" % n
            b.send(b"ack")
            assert a.recv(timeout=GUARD) == b"ack"
        finally:
            a.close()
            b.close()
    assert set(threading.enumerate()) == threads
    assert not opened_since(fds)
    assert worker_module.active_worker_threads() == workers


@needs_proc_fd
def test_dropped_connection_is_finalized() -> None:
    assert worker_module.active_worker_threads() == 0
    fds = fd_list()
    a = Connection(True, local_addresses=LOOPBACK)
    b = Connection(False, local_addresses=LOOPBACK)
    exchange_candidates(a, b)
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    [thread] = worker_threads()
    assert worker_module.active_worker_threads() == 1
    del a
    gc.collect()
    assert worker_module.active_worker_threads() == 1  # b still holds it
    del b
    gc.collect()
    thread.join(GUARD)
    assert worker_module.active_worker_threads() == 0
    assert not opened_since(fds)


@needs_proc_fd
def test_dropped_connection_is_finalized_while_the_worker_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The finalizer runs while the worker is in the middle of a turn, past the
    # commands it took for that turn. Closing the connection must not be lost
    # to the worker stopping at the end of the turn.
    fds = fd_list()
    conn = Connection(True, local_addresses=LOOPBACK)
    conn.gather_candidates(timeout=GUARD)
    worker = conn._core.worker
    assert worker is not None
    busy, go = threading.Event(), threading.Event()
    original_stop = worker_module.Worker.stop

    def stop(self: worker_module.Worker) -> None:
        self._stopping = True
        go.set()  # if called from here, stop() joins: the worker must go on
        original_stop(self)

    monkeypatch.setattr(worker_module.Worker, "stop", stop)

    def hold_the_worker() -> None:
        busy.set()
        go.wait(GUARD)

    worker.post(hold_the_worker)
    assert busy.wait(GUARD)
    del conn
    gc.collect()
    go.set()
    worker._thread.join(GUARD)
    assert not worker._thread.is_alive()
    assert worker_module.active_worker_threads() == 0
    assert not opened_since(fds)  # the connection's socket was closed, not dropped


def test_fault_in_one_connection_closes_only_it(
    connection_pairs: ConnectionPairs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a1, b1 = connection_pairs.pair()
    a2, b2 = connection_pairs.pair()
    assert len({id(c._core.worker) for c in (a1, b1, a2, b2)}) == 1

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(b1._core.agent, "receive_datagram", boom)
    caplog.set_level(logging.ERROR, logger="syncice")
    # A STUN message goes to the agent on the worker thread, even when a
    # recv() caller is the one that reads it off the socket.
    a1.send(bytes(Message(Method.BINDING, Class.INDICATION)))
    with pytest.raises(ConnectionClosedError) as info:
        b1.recv(timeout=GUARD)
    assert info.value.reason == "internal error"
    with pytest.raises(ConnectionClosedError) as info:
        b1.send(b"closed")
    assert info.value.reason == "internal error"
    assert b1.get_event(timeout=GUARD) == ConnectionClosed()
    [record] = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "boom" in str(record.exc_info[1])
    # The other connection on the same worker goes on.
    a2.send(b"unaffected")
    assert b2.recv(timeout=GUARD) == b"unaffected"
    b2.send(b"still")
    assert a2.recv(timeout=GUARD) == b"still"
    b1.close()  # still fine after an internal close
    assert worker_module.active_worker_threads() == 1


@pytest.mark.parametrize("method", ["connect", "handle_timer"])
def test_fault_during_connect_closes_the_connection(
    connection_pairs: ConnectionPairs,
    silent_peer: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
) -> None:
    # Checks to a silent peer: the retransmission timer fires soon.
    a = facing(connection_pairs, silent_peer, config=IceConfig(rto=0.01))

    def boom(now: float) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(a._core.agent, method, boom)
    with pytest.raises(ConnectionClosedError) as info:
        a.connect(timeout=GUARD)
    assert info.value.reason == "internal error"
    a.add_remote_candidate(None)  # reaches a closed session: ignored
    for call in (lambda: a.send(b"x"), lambda: a.recv(timeout=GUARD)):
        with pytest.raises(ConnectionClosedError) as info:
            call()
        assert info.value.reason == "internal error"


def test_controlled_connect_timeout_says_what_it_waits_for(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = connection_pairs.pair(connect=False)
    with pytest.raises(IceTimeoutError, match="controlling peer has not nominated"):
        b.connect(timeout=0.05)  # a (controlling) never calls connect()
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)


def test_turn_ssl_must_be_a_bool_or_a_context() -> None:
    with pytest.raises(TypeError, match="turn_ssl"):
        Connection(True, turn_ssl="yes")  # type: ignore[arg-type]
    context = ssl.create_default_context()
    assert Connection(True, turn_ssl=context, turn_transport="tcp").turn_ssl is context


def test_turn_server_needs_credentials() -> None:
    with pytest.raises(ValueError, match="turn_username and turn_password"):
        Connection(True, turn_server=("127.0.0.1", 3478), turn_username="user")
    with pytest.raises(ValueError, match="turn_username and turn_password"):
        Connection(True, turn_server=("127.0.0.1", 3478), turn_password="secret")


def test_turn_ssl_over_udp_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="syncice"):
        Connection(True, turn_ssl=True)
    assert any("turn_ssl" in r.getMessage() for r in caplog.records)


class UdpTurnServer:
    """:class:`tests.turn_server.FakeTurnServer` on a loopback UDP socket, in
    a thread; it answers whoever writes to it."""

    def __init__(self, fake: FakeTurnServer) -> None:
        self.fake = fake
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self.clients: list[tuple[str, int]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, client = self.sock.recvfrom(65536)
            except OSError:
                return
            if not data:
                return
            self.clients.append(client)
            self.fake.relayed = ("127.0.0.1", 50000)
            self.fake.mapped = client
            for answer in self.fake.handle(data):
                self.sock.sendto(answer, client)

    def close(self) -> None:
        self.sock.sendto(b"", self.address)  # wakes the thread: it ends
        self.thread.join(GUARD)
        self.sock.close()


def test_allocation_mismatch_is_retried_from_another_socket() -> None:
    """A 437 to the Allocate (the server still holds an allocation for this
    client address) is retried once from a new socket (RFC 8656 §7.3)."""
    server = UdpTurnServer(FakeTurnServer(errors={Method.ALLOCATE: [437]}))
    conn = Connection(
        True,
        local_addresses=["127.0.0.1"],
        turn_server=server.address,
        turn_username="user",
        turn_password="secret",
        transport_policy=TransportPolicy.RELAY,
    )
    try:
        conn.gather_candidates(timeout=GUARD)
        [relay] = conn.local_candidates
        assert relay.type == "relay"
        first, last = server.clients[0], server.clients[-1]
        assert first != last  # another client port
        assert (relay.related_address, relay.related_port) == last
    finally:
        conn.close()
        server.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_silent_turn_server_ends_gathering_at_the_bound(transport: str) -> None:
    """A server that takes the datagrams (or the TCP connection) and never
    answers ends its allocation at gather_timeout; gathering returns then."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as server:
        server.bind(("127.0.0.1", 0))
        if transport == "tcp":
            server.listen()  # the kernel accepts; nobody reads
        conn = Connection(
            True,
            local_addresses=["127.0.0.1"],
            turn_server=server.getsockname(),
            turn_username="user",
            turn_password="secret",
            turn_transport=transport,
            config=IceConfig(gather_timeout=0.5),
        )
        try:
            # Six times the bound, and well under the default 5 s: a wait for
            # anything but the configured bound raises IceTimeoutError.
            conn.gather_candidates(timeout=3.0)
            assert [c.type for c in conn.local_candidates] == ["host"]
        finally:
            conn.close()


# --- the life cycle (syncice._lifecycle) ------------------------------------------


@pytest.mark.parametrize("start", list(Phase))
@pytest.mark.parametrize("to", list(Phase))
def test_lifecycle_table(start: Phase, to: Phase) -> None:
    """Every (phase, move) pair: allowed moves happen, CLOSED ignores all,
    anything else is an internal error."""
    lifecycle = Lifecycle()
    lifecycle.phase = start
    if start is Phase.CLOSED:
        assert lifecycle.advance(to) is False
        assert lifecycle.phase is Phase.CLOSED
    elif to in TRANSITIONS[start]:
        assert lifecycle.advance(to) is True
        assert lifecycle.phase is to
    else:
        with pytest.raises(LifecycleError, match=f"{start.name} -> {to.name}"):
            lifecycle.advance(to)
        assert lifecycle.phase is start


def test_lifecycle_every_phase_is_reached_and_every_phase_closes() -> None:
    seen, todo = {Phase.NEW}, [Phase.NEW]
    while todo:
        for nxt in TRANSITIONS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    assert seen == set(Phase)
    assert all(Phase.CLOSED in TRANSITIONS[p] for p in Phase if p is not Phase.CLOSED)


def test_lifecycle_expect_and_reach() -> None:
    lifecycle = Lifecycle()
    assert lifecycle.advance(Phase.GATHERED, expect=Phase.GATHERING) is False
    assert lifecycle.advance(Phase.GATHERING) is True
    assert lifecycle.advance(Phase.GATHERED) is True
    assert lifecycle.reach(Phase.CONNECTED) is True
    assert lifecycle.reach(Phase.CONNECTED) is False  # already there: no error
    with pytest.raises(LifecycleError):
        lifecycle.advance(Phase.CONNECTED)


def test_a_connection_walks_its_life_cycle(
    connection_pairs: ConnectionPairs,
) -> None:
    a = Connection(True, local_addresses=LOOPBACK)
    phases = [a._core.phase]
    a.gather_candidates(timeout=GUARD)
    phases.append(a._core.phase)
    a.close()
    phases.append(a._core.phase)
    assert phases == [Phase.NEW, Phase.GATHERED, Phase.CLOSED]
    b, c = connection_pairs.pair()
    assert b._core.phase is c._core.phase is Phase.CONNECTED


def test_an_illegal_move_on_the_worker_is_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second GatheringCompleted would move GATHERED -> GATHERED: the
    session closes the connection with reason "internal error"."""
    conn = Connection(True, local_addresses=LOOPBACK)
    try:
        conn.gather_candidates(timeout=GUARD)
        session, worker = conn._core.session, conn._core.worker
        assert session is not None
        assert worker is not None
        with caplog.at_level(logging.ERROR, logger="syncice"):
            worker.submit(
                lambda: session._guard(session._dispatch, GatheringCompleted())
            ).result(GUARD)
        assert conn.get_event(timeout=GUARD) == ConnectionClosed()
        assert conn.get_event(timeout=GUARD) is None
        conn.remote_username, conn.remote_password = "peer", "p" * 22
        with pytest.raises(ConnectionClosedError) as info:
            conn.connect(timeout=GUARD)
        assert info.value.reason == "internal error"
        [record] = [r for r in caplog.records if r.exc_info]
        assert record.exc_info is not None
        assert "GATHERED -> GATHERED" in str(record.exc_info[1])
    finally:
        conn.close()


@pytest.mark.parametrize("connection_pairs", ["blocking"], indirect=True)
def test_routes_replaced_again_and_again_stay_bounded_and_counted(
    connection_pairs: ConnectionPairs,
) -> None:
    # A peer that renominates back and forth replaces the selected route as
    # often as it likes: the session keeps one retired route per pair, and
    # folds the counts of the earlier ones, so none is lost.
    a, _ = connection_pairs.pair()
    session = a._core.session
    assert session is not None
    (stat,) = [s for s in a.get_stats() if s.selected]
    key = (stat.component, stat.local, stat.remote)
    before = stat.datagrams_sent

    def retire_many() -> None:
        for _ in range(100):
            route = Route(None, ("127.0.0.1", 9), key=key)
            route.sent, route.sent_bytes = 1, 10
            session._retire(route)

    session.worker.call_soon(retire_many)
    (stat,) = [s for s in a.get_stats() if s.selected]  # after it, on the worker
    assert len(session.retired_routes) == 1
    assert stat.datagrams_sent == before + 100
