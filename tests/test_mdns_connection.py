"""mDNS in :class:`syncice.Connection` without multicast, on loopback (layer 2).

Here, in the root namespace, no multicast socket may be opened: the fixture
replaces the function that opens it with one that fails as a host without
multicast does (``ENODEV``), and counts the attempts. What works over real
multicast is in ``tests/test_mdns_netns.py``, inside namespaces.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator

import pytest

from syncice import Candidate, Connection, IceConfig, _mdns_socket
from syncice._session import mdns_shown as _mdns_shown
from syncice.exceptions import NegotiationFailedError
from tests.conftest import PAIR_TIMEOUT

NAME = "0b8a2c7e-4f1d-4e5a-9c3b-2d6e8f0a1b2c.local"


@pytest.fixture
def no_multicast(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Opening the mDNS socket fails; yields the list of attempts."""
    attempts: list[int] = []

    def refuse() -> socket.socket:
        attempts.append(1)
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr(_mdns_socket, "_open_socket", refuse)
    _mdns_socket._reset_warning()
    yield attempts
    _mdns_socket._reset_warning()


def mdns_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "syncice._mdns_socket" and r.levelno >= logging.WARNING
    ]


def connected(a: Connection, b: Connection, a_to_b: bool, b_to_a: bool) -> None:
    """Gather, signal (each direction if asked), connect."""
    a.gather_candidates(timeout=PAIR_TIMEOUT)
    b.gather_candidates(timeout=PAIR_TIMEOUT)
    for local, remote, send in ((a, b, b_to_a), (b, a, a_to_b)):
        if send:
            for candidate in remote.local_candidates:
                local.add_remote_candidate(candidate)
        local.add_remote_candidate(None)
        local.remote_username = remote.local_username
        local.remote_password = remote.local_password
    a.connect(timeout=PAIR_TIMEOUT)
    b.connect(timeout=PAIR_TIMEOUT)


def test_no_mdns_socket_unless_needed(no_multicast: list[int]) -> None:
    a = Connection(True, local_addresses=["127.0.0.1"])
    b = Connection(False, local_addresses=["127.0.0.1"])
    try:
        connected(a, b, a_to_b=True, b_to_a=True)
        a.send(b"ping")
        assert b.recv(timeout=PAIR_TIMEOUT) == b"ping"
    finally:
        a.close()
        b.close()
    assert no_multicast == []


def test_obfuscated_host_candidates_without_multicast(
    no_multicast: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    a = Connection(
        True, components=2, local_addresses=["127.0.0.1"], mdns_host_candidates=True
    )
    b = Connection(False, components=2, local_addresses=["127.0.0.1"])
    try:
        with caplog.at_level(logging.INFO):
            # b cannot resolve a's names: a's checks make it known to b as
            # peer-reflexive, and the connection works all the same.
            connected(a, b, a_to_b=True, b_to_a=True)
        a.send(b"ping")
        assert b.recv(timeout=PAIR_TIMEOUT) == b"ping"
        hosts = {c.host for c in a.local_candidates}
        [name] = hosts  # one name for the address, both components
        assert name.endswith(".local")
        assert len(name) == len(NAME)
        assert a.get_default_candidate(1).host == name  # type: ignore[union-attr]
        assert {c.host for c in b.remote_candidates} == {name}  # as added
        assert {s.remote.type for s in b.get_stats() if s.selected} == {"prflx"}
    finally:
        a.close()
        b.close()
    assert len(mdns_warnings(caplog)) == 1  # one for the host, not per use
    dropped = [m for m in caplog.messages if "not resolved by mDNS, dropped" in m]
    assert len(dropped) == 2  # one line per candidate
    assert no_multicast == [1]  # both shared one (failed) service


def test_unresolvable_remote_name_is_dropped_and_eoc_still_ends(
    no_multicast: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    # A short patience timer (RFC 8863): 0.02 s of waiting for the peer's
    # checks after end-of-candidates.
    fast = IceConfig(rto=0.01, max_sends=2, final_wait=1)
    conn = Connection(True, local_addresses=["127.0.0.1"], config=fast)
    conn.remote_username, conn.remote_password = "user", "p" * 22
    try:
        conn.gather_candidates(timeout=PAIR_TIMEOUT)
        candidate = Candidate("1", 1, "udp", 100, NAME, 9, "host")
        conn.add_remote_candidate(candidate)
        conn.add_remote_candidate(None)
        assert conn.remote_candidates == [candidate]
        # The only candidate is dropped: end-of-candidates then fails the checks.
        with pytest.raises(NegotiationFailedError):
            conn.connect(timeout=PAIR_TIMEOUT)
    finally:
        conn.close()
    assert any(f"{NAME}: not resolved by mDNS" in m for m in caplog.messages)


@pytest.mark.parametrize("host", ["a.b.local", "peer.example.local"])
def test_malformed_local_names_are_dropped_unresolved(
    host: str, no_multicast: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    conn = Connection(True, local_addresses=["127.0.0.1"])
    try:
        conn.gather_candidates(timeout=PAIR_TIMEOUT)
        conn.add_remote_candidate(Candidate("1", 1, "udp", 100, host, 9, "host"))
        conn.get_stats()  # a round trip to the worker: the candidate was handled
    finally:
        conn.close()
    assert any("not an mDNS name" in m for m in caplog.messages)
    assert no_multicast == []


def test_names_added_before_gathering_wait_for_it(
    no_multicast: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    conn = Connection(True, local_addresses=["127.0.0.1"])
    try:
        conn.add_remote_candidate(Candidate("1", 1, "udp", 100, NAME, 9, "host"))
        assert no_multicast == []  # nothing before gathering
        conn.gather_candidates(timeout=PAIR_TIMEOUT)
        conn.get_stats()
    finally:
        conn.close()
    assert no_multicast == [1]
    assert any(f"{NAME}: not resolved by mDNS" in m for m in caplog.messages)


@pytest.mark.parametrize(
    ("sdp", "shown"),
    [
        (
            "1 1 udp 2130706431 192.168.1.5 4000 typ host",
            f"1 1 udp 2130706431 {NAME} 4000 typ host",
        ),
        (
            "2 1 udp 1694498815 203.0.113.9 5000 typ srflx raddr 192.168.1.5"
            " rport 4000 generation 0",
            "2 1 udp 1694498815 203.0.113.9 5000 typ srflx raddr 0.0.0.0"
            " rport 0 generation 0",
        ),
        (
            "3 1 udp 16777215 2001:db8::9 6000 typ relay raddr 2001:db8::5 rport 7000",
            "3 1 udp 16777215 2001:db8::9 6000 typ relay raddr :: rport 0",
        ),
        (
            "4 1 udp 16777215 198.51.100.1 6000 typ relay",
            "4 1 udp 16777215 198.51.100.1 6000 typ relay",
        ),
    ],
)
def test_what_an_obfuscating_connection_shows(sdp: str, shown: str) -> None:
    names = {"192.168.1.5": NAME}
    assert _mdns_shown(Candidate.from_sdp(sdp), names).to_sdp() == shown
