"""Host addresses, UDP sockets and server resolution (``syncice._gather``).

Interface listings and name lookups are faked (``ifaddr.get_adapters``,
``socket.getaddrinfo``), so nothing depends on this machine's interfaces or
sends a DNS query; sockets are bound on loopback only.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
from collections.abc import Sequence

import ifaddr
import pytest

from syncice._gather import (
    bind_udp,
    host_addresses,
    resolve_server,
    select_addresses,
    unassigned,
)
from tests.conftest import has_ipv6_loopback, requires

needs_ipv6 = requires(has_ipv6_loopback(), "this host has no IPv6 loopback (::1)")

# --- host_addresses -------------------------------------------------------------


def adapter(name: str, *ips: str | tuple[str, int, int]) -> ifaddr.Adapter:
    return ifaddr.Adapter(name, name, [ifaddr.IP(ip, 64, name) for ip in ips])


ADAPTERS = [
    adapter("lo", "127.0.0.1", ("::1", 0, 0)),
    adapter(
        "eth0",
        ("fd00::2", 0, 0),  # IPv6 listed first: IPv4 still comes first
        "192.0.2.2",
        ("fe80::fc:ff:fe00:1", 0, 4),  # link-local, scoped
        "169.254.7.7",  # IPv4 link-local
    ),
    adapter(
        "eth1",
        "198.51.100.7",
        "127.1.2.3",  # all of 127.0.0.0/8 is loopback
        ("2001:DB8:0:0::1", 0, 0),  # normalised to 2001:db8::1
        ("fe80::2", 0, 0),  # link-local without a scope id
        ("fd00::3", 0, 7),  # global, but with a scope id
        ("fd00::4%eth1", 0, 0),  # the scope in the text
    ),
    adapter("eth0:1", "192.0.2.2", ("2001:db8::1", 0, 0)),  # duplicates
    adapter("odd", "0.0.0.0", "224.0.0.251", ("::", 0, 0), ("ff02::fb", 0, 0)),
    adapter("broken", "not an address", ("neither", 0, 0)),
]


@pytest.fixture
def fake_adapters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: ADAPTERS)


@pytest.mark.usefixtures("fake_adapters")
@pytest.mark.parametrize(
    ("use_ipv4", "use_ipv6", "expected"),
    [
        (True, True, ["192.0.2.2", "198.51.100.7", "fd00::2", "2001:db8::1"]),
        (True, False, ["192.0.2.2", "198.51.100.7"]),
        (False, True, ["fd00::2", "2001:db8::1"]),
        (False, False, []),
    ],
)
def test_host_addresses_leave_out_loopback_link_local_and_scoped(
    use_ipv4: bool, use_ipv6: bool, expected: list[str]
) -> None:
    assert host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6) == expected


def test_host_addresses_of_a_host_with_loopback_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: ADAPTERS[:1])
    assert host_addresses(use_ipv4=True, use_ipv6=True) == []


# --- select_addresses -----------------------------------------------------------


@pytest.mark.usefixtures("fake_adapters")
def test_select_addresses_none_means_the_interfaces() -> None:
    assert select_addresses(None, use_ipv4=True, use_ipv6=False) == [
        "192.0.2.2",
        "198.51.100.7",
    ]


CHOSEN = ["::1", "127.0.0.1", "0:0::1", "FE80::1", "169.254.1.1", "127.0.0.1"]


@pytest.mark.parametrize(
    ("use_ipv4", "use_ipv6", "expected"),
    [
        (True, True, ["127.0.0.1", "169.254.1.1", "::1", "fe80::1"]),
        (True, False, ["127.0.0.1", "169.254.1.1"]),
        (False, True, ["::1", "fe80::1"]),
        (False, False, []),
    ],
)
def test_select_addresses_keeps_the_callers_choice(
    use_ipv4: bool, use_ipv6: bool, expected: list[str]
) -> None:
    """Loopback and link-local allowed; normalised, deduplicated, IPv4 first."""
    assert select_addresses(CHOSEN, use_ipv4=use_ipv4, use_ipv6=use_ipv6) == expected


def test_select_addresses_takes_any_sequence() -> None:
    assert select_addresses(("127.0.0.1",), use_ipv4=True, use_ipv6=True) == [
        "127.0.0.1"
    ]
    assert select_addresses([], use_ipv4=True, use_ipv6=True) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("localhost", "'localhost' is not an IP address"),
        ("127.0.0.1:80", "'127.0.0.1:80' is not an IP address"),
        ("", "'' is not an IP address"),
        (" 127.0.0.1", "' 127.0.0.1' is not an IP address"),
        ("fe80::1%eth0", "'fe80::1%eth0': scoped IPv6 addresses are not supported"),
        ("fd00::1%2", "'fd00::1%2': scoped IPv6 addresses are not supported"),
        ("::ffff:127.0.0.1", "give the IPv4 address 127.0.0.1 instead"),
        ("0.0.0.0", "'0.0.0.0' is not a unicast address"),
        ("::", "'::' is not a unicast address"),
        ("224.0.0.251", "'224.0.0.251' is not a unicast address"),
        ("ff02::fb", "'ff02::fb' is not a unicast address"),
    ],
)
def test_select_addresses_rejects_a_bad_entry(entry: str, message: str) -> None:
    # Checked even where the family filter would drop it.
    for use_ipv4, use_ipv6 in [(True, True), (False, False)]:
        with pytest.raises(ValueError, match=r"^local address ") as info:
            select_addresses(["127.0.0.1", entry], use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        assert message in str(info.value)


@pytest.mark.parametrize("entry", [None, 2130706433, b"127.0.0.1"])
def test_select_addresses_wants_str_entries(entry: object) -> None:
    with pytest.raises(TypeError, match=rf"local address {entry!r} is not a str"):
        select_addresses([entry], use_ipv4=True, use_ipv6=True)  # type: ignore[list-item]


def test_select_addresses_refuses_a_single_str() -> None:
    """A bare str is a sequence too, of one-character strings."""
    with pytest.raises(TypeError, match="sequence of addresses, not the str"):
        select_addresses("127.0.0.1", use_ipv4=True, use_ipv6=True)


# --- bind_udp -------------------------------------------------------------------


def sock_buffers(sock: socket.socket) -> tuple[int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


def default_buffers() -> tuple[int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return sock_buffers(sock)


def echo_to_itself(sock: socket.socket) -> bytes:
    """Send a datagram from ``sock`` to ``sock`` and read it back."""
    sock.sendto(b"ping", sock.getsockname())
    readable, _, _ = select.select([sock], [], [], 5.0)  # a hang guard only
    assert readable == [sock]
    data, source = sock.recvfrom(64)
    assert source == sock.getsockname()
    return data


@pytest.mark.parametrize(
    ("address", "family"),
    [
        ("127.0.0.1", socket.AF_INET),
        pytest.param("::1", socket.AF_INET6, marks=needs_ipv6),
    ],
)
def test_bind_udp_on_loopback(address: str, family: socket.AddressFamily) -> None:
    with bind_udp(address) as sock:
        assert (sock.family, sock.type) == (family, socket.SOCK_DGRAM)
        assert not sock.getblocking()
        host, port = sock.getsockname()[:2]
        assert host == address
        assert port > 0
        if family == socket.AF_INET6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        # Raised where the kernel allows it (rmem_max and wmem_max cap it).
        assert all(
            ours >= default
            for ours, default in zip(sock_buffers(sock), default_buffers(), strict=True)
        )
        assert echo_to_itself(sock) == b"ping"


def test_bind_udp_never_lowers_the_buffers() -> None:
    with bind_udp("127.0.0.1", rcvbuf=1, sndbuf=1) as sock:
        assert sock_buffers(sock) == default_buffers()


def test_bind_udp_ignores_a_buffer_error(monkeypatch: pytest.MonkeyPatch) -> None:
    setsockopt = socket.socket.setsockopt

    def refuse_buffers(
        self: socket.socket, level: int, option: int, value: int | bytes
    ) -> None:
        if level == socket.SOL_SOCKET:
            raise OSError(errno.EPERM, "not allowed")
        setsockopt(self, level, option, value)

    monkeypatch.setattr(socket.socket, "setsockopt", refuse_buffers)
    with bind_udp("127.0.0.1") as sock:
        assert sock_buffers(sock) == default_buffers()
        assert echo_to_itself(sock) == b"ping"


@pytest.mark.parametrize(
    "address", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)]
)
def test_bind_udp_closes_the_socket_when_bind_fails(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    made: list[socket.socket] = []

    def fail(self: socket.socket, address: object) -> None:
        made.append(self)
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    monkeypatch.setattr(socket.socket, "bind", fail)
    with pytest.raises(OSError, match="Cannot assign") as info:
        bind_udp(address)
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert [sock.fileno() for sock in made] == [-1]  # closed


# --- resolve_server -------------------------------------------------------------


def test_resolve_server_numeric() -> None:
    server = ("127.0.0.1", 3478)
    assert resolve_server(server, use_ipv4=True, use_ipv6=True) == [server]
    assert resolve_server(server, use_ipv4=True, use_ipv6=False) == [server]
    assert resolve_server(("::1", 3478), use_ipv4=True, use_ipv6=True) == [
        ("::1", 3478)
    ]


def test_resolve_server_localhost() -> None:
    """From /etc/hosts; asked for IPv4 (and both), never AAAA only."""
    both = resolve_server(("localhost", 3478), use_ipv4=True, use_ipv6=True)
    assert ("127.0.0.1", 3478) in both
    assert set(both) <= {("127.0.0.1", 3478), ("::1", 3478)}
    assert both[0] == ("127.0.0.1", 3478)  # IPv4 first
    assert resolve_server(("localhost", 3478), use_ipv4=True, use_ipv6=False) == [
        ("127.0.0.1", 3478)
    ]


def test_resolve_server_wrong_family_is_unresolvable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="syncice._gather"):
        assert resolve_server(("::1", 3478), use_ipv4=True, use_ipv6=False) == []
    assert "'::1' does not resolve" in caplog.text


def test_resolve_server_neither_family_looks_nothing_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", pytest.fail)
    assert resolve_server(("127.0.0.1", 3478), use_ipv4=False, use_ipv6=False) == []


Info = tuple[
    socket.AddressFamily,
    socket.SocketKind,
    int,
    str,
    tuple[str, int] | tuple[str, int, int, int],
]


class FakeResolver:
    """Stands in for :func:`socket.getaddrinfo`: records calls, gives ``infos``."""

    def __init__(self, infos: Sequence[Info] = (), error: Exception | None = None):
        self.infos = list(infos)
        self.error = error
        self.calls: list[tuple[object, ...]] = []

    def __call__(self, *args: object) -> list[Info]:
        self.calls.append(args)
        if self.error is not None:
            raise self.error
        return self.infos


def v4(ip: str) -> Info:
    return (socket.AF_INET, socket.SOCK_DGRAM, 17, "", (ip, 3478))


def v6(ip: str, scope_id: int = 0) -> Info:
    return (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", (ip, 3478, 0, scope_id))


def test_resolve_server_orders_and_deduplicates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = FakeResolver(
        [
            v6("2001:db8::1"),
            v4("192.0.2.1"),
            v6("fe80::1", scope_id=2),  # scoped: left out
            v4("192.0.2.1"),
            v6("fe80::2"),
            v4("198.51.100.1"),
        ]
    )
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    assert resolve_server(("stun.example", 3478), use_ipv4=True, use_ipv6=True) == [
        ("192.0.2.1", 3478),
        ("198.51.100.1", 3478),
        ("2001:db8::1", 3478),
        ("fe80::2", 3478),
    ]
    assert resolver.calls == [
        ("stun.example", 3478, socket.AF_UNSPEC, socket.SOCK_DGRAM, 17)
    ]


@pytest.mark.parametrize(
    ("use_ipv4", "use_ipv6", "family"),
    [(True, False, socket.AF_INET), (False, True, socket.AF_INET6)],
)
def test_resolve_server_asks_for_the_families_in_use(
    monkeypatch: pytest.MonkeyPatch,
    use_ipv4: bool,
    use_ipv6: bool,
    family: socket.AddressFamily,
) -> None:
    resolver = FakeResolver([v4("192.0.2.1")] if use_ipv4 else [v6("2001:db8::1")])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    assert len(resolve_server(("h.example", 1), use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    assert [call[2] for call in resolver.calls] == [family]


@pytest.mark.parametrize(
    "error",
    [
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        UnicodeError("label too long"),  # what the idna codec raises
    ],
)
def test_resolve_server_unresolvable_name(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    """Nothing leaves the machine: the lookup of a .invalid name is faked."""
    monkeypatch.setattr(socket, "getaddrinfo", FakeResolver(error=error))
    with caplog.at_level(logging.WARNING, logger="syncice._gather"):
        server = ("stun.syncice.invalid", 3478)
        assert resolve_server(server, use_ipv4=True, use_ipv6=True) == []
    [record] = caplog.records
    assert record.name == "syncice._gather"
    assert record.levelno == logging.WARNING
    assert "'stun.syncice.invalid' does not resolve" in record.getMessage()


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("127.0.0.1", "must be a \\(host, port\\) tuple"),
        (["127.0.0.1", 3478], "must be a \\(host, port\\) tuple"),
        (("127.0.0.1",), "must be a \\(host, port\\) tuple"),
        (("127.0.0.1", 3478, 0), "must be a \\(host, port\\) tuple"),
        ((b"127.0.0.1", 3478), "must be a \\(host, port\\) tuple"),
        (None, "must be a \\(host, port\\) tuple"),
        (("127.0.0.1", 0), "port 0 is not in 1-65535"),
        (("127.0.0.1", 65536), "port 65536 is not in 1-65535"),
        (("127.0.0.1", -1), "port -1 is not in 1-65535"),
        (("127.0.0.1", "3478"), "port '3478' is not in 1-65535"),
        (("127.0.0.1", 3478.0), "port 3478.0 is not in 1-65535"),
        (("127.0.0.1", True), "port True is not in 1-65535"),
    ],
)
def test_resolve_server_rejects_a_bad_server(
    monkeypatch: pytest.MonkeyPatch, server: object, message: str
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", pytest.fail)
    with pytest.raises(ValueError, match=message):
        resolve_server(server, use_ipv4=True, use_ipv6=True)  # type: ignore[arg-type]


# --- unassigned -------------------------------------------------------------------


@pytest.mark.usefixtures("fake_adapters")
def test_unassigned_names_the_addresses_no_interface_has() -> None:
    chosen = [
        "192.0.2.2",  # eth0
        "127.0.0.1",
        "127.9.9.9",  # no interface lists it, but 127.0.0.0/8 is loopback
        "::1",
        "2001:db8::1",  # listed as 2001:DB8:0:0::1
        "fe80::2",
        "192.0.2.99",  # nobody's
        "fd00::99",  # nobody's
    ]
    assert unassigned(chosen) == ["192.0.2.99", "fd00::99"]


def test_unassigned_on_a_host_without_ipv6_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ifaddr, "get_adapters", lambda: [adapter("lo", "127.0.0.1")])
    assert unassigned(["127.0.0.1", "::1"]) == ["::1"]
