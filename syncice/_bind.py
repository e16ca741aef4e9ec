"""Binding sockets, choosing interfaces and resolving many servers: the
primitives of :mod:`syncice._sockets` that the connection's options shape.

- :func:`bind_socket` binds a UDP or TCP socket within a port range
  (``port_range=``) with the socket buffers of :class:`~syncice.IceConfig`
  (``so_rcvbuf``, ``so_sndbuf``); every socket a connection binds goes
  through it, so a range holds for host sockets, the sockets towards TURN
  servers and any TCP socket. An exhausted range is
  :class:`PortRangeExhausted`, an :class:`OSError` naming the range.
- :func:`choose_addresses` applies ``interface_filter=``, ``interfaces=``
  and ``exclude_interfaces=`` to the local addresses, before anything is
  bound. With any of them, interfaces that are down are left out too.
- :func:`resolve_all` looks server names up in parallel, so that one slow
  name does not delay the others.

Like the rest of gathering's I/O, this runs in a caller's thread (or an
executor's), never on the worker, and under no lock.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ifaddr

from . import _gather

__all__ = [
    "DEFAULT_BIND",
    "BindOptions",
    "Interfaces",
    "PortRangeExhausted",
    "bind_socket",
    "choose_addresses",
    "resolve_all",
]

Address = tuple[str, int]
#: What the kernel's SO_RCVBUF/SO_SNDBUF are raised to by default, if smaller.
DEFAULT_BUFFER = 1 << 20
_IFF_UP = 0x1


class PortRangeExhausted(OSError):
    """Every port of ``port_range`` is taken (``errno`` is ``EADDRINUSE``)."""


@dataclass(frozen=True, slots=True)
class BindOptions:
    """How a connection binds its sockets.

    :ivar port_range: ``(lo, hi)``, both included, or ``None`` for any port.
    :ivar rcvbuf: ``SO_RCVBUF`` to set, or ``None``: UDP sockets are then
        raised to 1 MiB if smaller (best effort), TCP ones left alone.
    :ivar sndbuf: the same for ``SO_SNDBUF``.
    """

    port_range: tuple[int, int] | None = None
    rcvbuf: int | None = None
    sndbuf: int | None = None

    @property
    def default(self) -> bool:
        """Whether nothing is asked for beyond the defaults."""
        return self.port_range is None and self.rcvbuf is None and self.sndbuf is None

    @staticmethod
    def exhausted(exc: BaseException) -> bool:
        """Whether ``exc`` is an exhausted port range (which fails the
        gathering, where another bind error only skips the address)."""
        return isinstance(exc, PortRangeExhausted)


#: Nothing asked for: one instance for every connection.
DEFAULT_BIND = BindOptions()


def _set_buffers(sock: socket.socket, options: BindOptions, stream: bool) -> None:
    for option, size in (
        (socket.SO_RCVBUF, options.rcvbuf),
        (socket.SO_SNDBUF, options.sndbuf),
    ):
        if size is not None:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        elif not stream:
            with contextlib.suppress(OSError):
                if sock.getsockopt(socket.SOL_SOCKET, option) < DEFAULT_BUFFER:
                    sock.setsockopt(socket.SOL_SOCKET, option, DEFAULT_BUFFER)


def bind_socket(
    address: str,
    options: BindOptions | None = None,
    *,
    stream: bool = False,
    reuse_address: bool = False,
    reuse_port: bool = False,
) -> socket.socket:
    """A non-blocking socket bound to ``address`` on a port of
    ``options.port_range`` (the first free one, from ``lo`` up), or on any
    port without a range.

    An IPv6 socket is IPv6-only.

    :param address: a local IP address, or a wildcard (``"0.0.0.0"``, ``"::"``).
    :param options: the port range and buffer sizes.
    :param stream: TCP rather than UDP.
    :param reuse_address: set ``SO_REUSEADDR`` (a TCP listener).
    :param reuse_port: set ``SO_REUSEPORT`` (the sockets of a simultaneous-open
        TCP candidate, which share its port).
    :raises PortRangeExhausted: every port of the range is in use.
    :raises OSError: the socket could not be made or bound (it is closed).
    """
    options = options or BindOptions()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM if stream else socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _set_buffers(sock, options, stream)
        sock.setblocking(False)
        if options.port_range is None:
            sock.bind((address, 0))
            return sock
        lo, hi = options.port_range
        for port in range(lo, hi + 1):
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            return sock
        raise PortRangeExhausted(
            errno.EADDRINUSE,
            f"port_range {lo}-{hi} exhausted: no free {'TCP' if stream else 'UDP'}"
            f" port on {address}",
        )
    except BaseException:
        sock.close()
        raise


@dataclass(frozen=True)
class Interfaces:
    """Which interfaces' addresses a connection uses.

    :ivar filter: ``filter(interface, address)`` says whether to use it.
    :ivar allow: only these interface names, or ``None`` for any.
    :ivar deny: never these.
    """

    filter: Callable[[str, str], bool] | None = None
    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()

    def allowed(self, name: str, address: str) -> bool:
        """Whether to use ``address`` of interface ``name``."""
        if name in self.deny or (self.allow is not None and name not in self.allow):
            return False
        return self.filter is None or bool(self.filter(name, address))


def _is_up(name: str) -> bool:
    """Whether interface ``name`` is up (Linux's ``IFF_UP``; unknown: up)."""
    try:
        with open(f"/sys/class/net/{name}/flags", encoding="ascii") as f:
            return bool(int(f.read().strip(), 16) & _IFF_UP)
    except (OSError, ValueError):
        return True


def _listed() -> list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Every address of every interface: ``(interface, address)``."""
    out = []
    for adapter in ifaddr.get_adapters():
        name = str(adapter.nice_name or adapter.name)
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                text, _, scope = ip.ip
                if scope:
                    continue
            else:
                text = ip.ip
            try:
                out.append((name, ipaddress.ip_address(text)))
            except ValueError:
                continue
    return out


def choose_addresses(
    local_addresses: Sequence[str] | None,
    interfaces: Interfaces,
    *,
    use_ipv4: bool,
    use_ipv6: bool,
) -> list[str]:
    """The local addresses that ``interfaces`` lets through.

    :param local_addresses: the caller's addresses (checked already), each
        taken as the interface's that has it (``lo`` for 127.0.0.0/8), or
        ``None`` for every usable address of every interface that is up
        (as :func:`syncice._gather.host_addresses` chooses them).
    :returns: addresses, IPv4 first, otherwise in order.
    :raises Exception: what ``interfaces.filter`` raises.
    """
    listed = _listed()
    if local_addresses is not None:
        names = {address.compressed: name for name, address in listed}
        chosen = []
        for text in local_addresses:
            name = names.get(text, "")
            if not name and ":" not in text and ipaddress.ip_address(text).is_loopback:
                name = "lo"
            if interfaces.allowed(name, text):
                chosen.append(text)
        return chosen
    wanted = {4: use_ipv4, 6: use_ipv6}
    seen: dict[str, int] = {}
    up: dict[str, bool] = {}
    for name, address in listed:
        if (
            not wanted[address.version]
            or address.is_loopback
            or address.is_link_local
            or address.is_unspecified
            or address.is_multicast
        ):
            continue
        if name not in up:
            up[name] = _is_up(name)
        text = address.compressed
        if up[name] and text not in seen and interfaces.allowed(name, text):
            seen[text] = address.version
    return sorted(seen, key=lambda text: seen[text])


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve_all(
    servers: Sequence[Address], *, use_ipv4: bool, use_ipv6: bool
) -> list[list[Address]]:
    """:func:`syncice._gather.resolve_server` for each of ``servers``, the
    names looked up at the same time (a name that does not resolve gives
    ``[]``, logged)."""

    def resolve(server: Address) -> list[Address]:
        return _gather.resolve_server(server, use_ipv4=use_ipv4, use_ipv6=use_ipv6)

    names = sum(1 for host, _ in servers if not _literal(host))
    if names <= 1:
        return [resolve(server) for server in servers]
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=min(8, names), thread_name_prefix="syncice-resolve"
    ) as pool:
        return list(pool.map(resolve, servers))
