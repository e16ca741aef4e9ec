"""Host addresses, UDP sockets and server names for gathering (RFC 8445 §5.1.1).

The I/O half of candidate gathering, kept out of the sans-IO agent: which local
addresses get a host candidate, the socket bound to each, and the addresses of
the STUN and TURN servers. The connection calls these in the caller's thread
(name resolution may block) and hands the results to the worker.

Which addresses become host candidates:

- Found on the interfaces (:func:`host_addresses`): everything but loopback
  (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10) and IPv6
  addresses with a scope (zone) id, as aioice's ``get_host_addresses``; RFC 8445
  §5.1.1.1 leaves loopback and link-local out unless the application asks.
- Chosen by the caller (``local_addresses=``, :func:`select_addresses`): any
  unicast address the caller names, loopback and link-local included, except a
  scoped IPv6 address: a candidate's address is plain text, with nowhere to
  keep the zone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence

import ifaddr

__all__ = [
    "bind_udp",
    "host_addresses",
    "resolve_server",
    "select_addresses",
    "unassigned",
]

logger = logging.getLogger(__name__)

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ordered(addresses: Iterable[_IPAddress]) -> list[str]:
    """Compressed text of ``addresses``: IPv4 first, then first-seen order."""
    seen: dict[str, int] = {}
    for address in addresses:
        seen.setdefault(address.compressed, address.version)
    return sorted(seen, key=lambda text: seen[text])  # sorted() is stable


def _scoped(address: _IPAddress) -> bool:
    """Whether ``address`` carries a scope (zone) id, as ``fe80::1%eth0`` does."""
    return isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None


def host_addresses(*, use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """The addresses of this host's interfaces that can be host candidates.

    Loopback, link-local, unspecified and multicast addresses are left out, and
    so are IPv6 addresses with a scope id.

    :param use_ipv4: include IPv4 addresses.
    :param use_ipv6: include IPv6 addresses.
    :returns: distinct addresses in compressed form, IPv4 first, otherwise in
        the order the interfaces list them.
    """
    found: list[_IPAddress] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):  # IPv6: (address, flowinfo, scope_id)
                text, _, scope_id = ip.ip
                if not use_ipv6 or scope_id:
                    continue
            elif use_ipv4:
                text = ip.ip
            else:
                continue
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if not (
                _scoped(address)
                or address.is_loopback
                or address.is_link_local
                or address.is_unspecified
                or address.is_multicast
            ):
                found.append(address)
    return _ordered(found)


def _parse_local_address(entry: object) -> _IPAddress:
    """Check one caller-chosen local address; see :func:`select_addresses`."""
    if not isinstance(entry, str):
        raise TypeError(f"local address {entry!r} is not a str")
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        raise ValueError(f"local address {entry!r} is not an IP address") from None
    if _scoped(address):
        raise ValueError(
            f"local address {entry!r}: scoped IPv6 addresses are not supported"
        )
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(
            f"local address {entry!r}: give the IPv4 address"
            f" {address.ipv4_mapped} instead"
        )
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"local address {entry!r} is not a unicast address")
    return address


def select_addresses(
    local_addresses: Sequence[str] | None, *, use_ipv4: bool, use_ipv6: bool
) -> list[str]:
    """The local addresses to gather host candidates on.

    :param local_addresses: the caller's choice, or ``None`` for every usable
        interface address (:func:`host_addresses`). Each entry is checked,
        even one that the family filter then drops; loopback and link-local
        addresses are allowed.
    :param use_ipv4: keep IPv4 addresses.
    :param use_ipv6: keep IPv6 addresses.
    :returns: distinct addresses in compressed form, IPv4 first, otherwise in
        the caller's order.
    :raises TypeError: ``local_addresses`` is a single ``str``, or an entry is
        not a ``str``.
    :raises ValueError: an entry (named in the message) is not an IP address,
        is unspecified, multicast or IPv4-mapped, or is an IPv6 address with a
        scope (``"fe80::1%eth0"``), which is not supported.
    """
    if local_addresses is None:
        return host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    if isinstance(local_addresses, str):
        raise TypeError(
            f"local_addresses must be a sequence of addresses, not the str"
            f" {local_addresses!r}"
        )
    checked = [_parse_local_address(entry) for entry in local_addresses]
    wanted = {4: use_ipv4, 6: use_ipv6}
    return _ordered(address for address in checked if wanted[address.version])


def unassigned(addresses: Iterable[str]) -> list[str]:
    """The entries of ``addresses`` that are not addresses of this host.

    An address is this host's when one of its interfaces has it, loopback and
    link-local included, or when it is an IPv4 loopback address (the whole of
    127.0.0.0/8 is bound to the loopback interface).

    :param addresses: addresses as :func:`select_addresses` returns them.
    :returns: those that no socket could be bound to, in their order.
    """
    assigned: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            with contextlib.suppress(ValueError):
                assigned.add(ipaddress.ip_address(text).compressed)
    return [
        text
        for text in addresses
        if text not in assigned
        and not (":" not in text and ipaddress.ip_address(text).is_loopback)
    ]


def bind_udp(
    address: str, *, rcvbuf: int = 1 << 20, sndbuf: int = 1 << 20
) -> socket.socket:
    """A non-blocking UDP socket bound to ``(address, 0)``.

    An IPv6 socket is IPv6-only, so it never receives IPv4-mapped traffic.

    :param address: a local IP address, as :func:`select_addresses` returns.
    :param rcvbuf: the receive buffer to ask for, in bytes, if the socket's is
        smaller. Best effort: the kernel may cap it (``net.core.rmem_max``) and
        an error is ignored.
    :param sndbuf: the same for the send buffer.
    :raises OSError: the socket could not be made or bound (it is closed).
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for option, size in ((socket.SO_RCVBUF, rcvbuf), (socket.SO_SNDBUF, sndbuf)):
            with contextlib.suppress(OSError):
                if sock.getsockopt(socket.SOL_SOCKET, option) < size:
                    sock.setsockopt(socket.SOL_SOCKET, option, size)
        sock.setblocking(False)
        sock.bind((address, 0))
    except OSError:
        sock.close()
        raise
    return sock


def resolve_server(
    server: tuple[str, int], *, use_ipv4: bool, use_ipv6: bool
) -> list[tuple[str, int]]:
    """The UDP addresses of a STUN or TURN server.

    Resolves with :func:`socket.getaddrinfo`, so it blocks for as long as the
    system resolver does: call it in the caller's thread, never the worker's.

    :param server: ``(host, port)``; the host is a name or an IP address.
    :param use_ipv4: look up IPv4 addresses.
    :param use_ipv6: look up IPv6 addresses.
    :returns: distinct ``(ip, port)`` pairs, IPv4 first, otherwise in the
        resolver's order. A name that does not resolve gives ``[]`` and a
        warning on the ``syncice._gather`` logger.
    :raises ValueError: ``server`` is not a ``(str, int)`` tuple, or the port
        is not in 1-65535.
    """
    if not (
        isinstance(server, tuple) and len(server) == 2 and isinstance(server[0], str)
    ):
        raise ValueError(f"server must be a (host, port) tuple, not {server!r}")
    host, port = server
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"server {host!r}: port {port!r} is not in 1-65535")
    if use_ipv4 and use_ipv6:
        family = socket.AF_UNSPEC
    elif use_ipv4:
        family = socket.AF_INET
    elif use_ipv6:
        family = socket.AF_INET6
    else:
        return []
    try:
        infos = socket.getaddrinfo(
            host, port, family, socket.SOCK_DGRAM, socket.IPPROTO_UDP
        )
    except (socket.gaierror, UnicodeError) as exc:
        logger.warning("server %r does not resolve: %s", host, exc)
        return []
    # A link-local server comes back with a scope id: left out, as addresses
    # here are plain text, with nowhere to keep it.
    found = [
        ipaddress.ip_address(sockaddr[0])
        for *_, sockaddr in infos
        if len(sockaddr) == 2 or not sockaddr[3]
    ]
    return [(ip, port) for ip in _ordered(found)]
