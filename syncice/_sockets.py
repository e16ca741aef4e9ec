"""The I/O of gathering, in one place: interface listing, name lookups and
binding, for one connection (:func:`open_paths`).

It runs in a caller's thread (the blocking ``gather_candidates()``'s, or an
executor thread of the asyncio shim), never on the worker (which must not
block) nor on an event loop, and under no lock: the facade marks the
connection ``GATHERING`` first, so that no other call starts a second
gathering meanwhile. What it makes (:class:`Paths`) is handed to the
worker, which owns the sockets from then on. The primitives are
:mod:`syncice._gather`'s.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import _gather, _tcp_links

if TYPE_CHECKING:
    import ssl

__all__ = ["Paths", "Plan", "TurnPath", "bind_udp", "open_paths", "stream_socket"]

logger = logging.getLogger("syncice.connection")

Address = tuple[str, int]


class TurnPath:
    """The way to the TURN server for one component, made in the caller's thread."""

    __slots__ = (
        "component",
        "context",
        "family",
        "hostname",
        "password",
        "server",
        "sock",
        "transport",
        "username",
    )

    def __init__(
        self,
        component: int,
        sock: socket.socket,
        server: Address,
        transport: str,
        family: int | None,
        context: ssl.SSLContext | None,
        hostname: str | None,
        username: str,
        password: str,
    ) -> None:
        self.component = component
        self.sock = sock
        self.server = server
        self.transport = transport
        self.family = family
        self.context = context
        self.hostname = hostname
        self.username = username
        self.password = password


@dataclass
class Paths:
    """What gathering needs from the operating system."""

    #: A UDP socket per host address and component: ``(socket, component)``.
    sockets: list[tuple[socket.socket, int]] = field(default_factory=list)
    #: The STUN server's addresses.
    stun: list[Address] = field(default_factory=list)
    #: A path to the TURN server per component.
    turn: list[TurnPath] = field(default_factory=list)
    #: A listening TCP socket per host address and component (ICE-TCP), or
    #: ``None`` without TCP.
    listeners: list[tuple[socket.socket, int]] | None = None

    def close(self) -> None:
        """Close every socket (the gathering was abandoned)."""
        for sock, _ in [*self.sockets, *(self.listeners or ())]:
            sock.close()
        for path in self.turn:
            path.sock.close()


@dataclass(frozen=True)
class Plan:
    """What to open: the connection's checked options."""

    name: str
    components: int
    local_addresses: Sequence[str] | None
    use_ipv4: bool
    use_ipv6: bool
    relay_only: bool
    stun_server: Address | None
    turn_server: Address | None
    turn_username: str
    turn_password: str
    turn_transport: str
    turn_ssl: bool | ssl.SSLContext
    #: Which transports host candidates use: ``"udp"``, ``"tcp"`` or both.
    transports: tuple[str, ...] = ("udp",)


def bind_udp(address: str) -> socket.socket:
    """A non-blocking UDP socket bound to ``(address, 0)``
    (:func:`syncice._gather.bind_udp`)."""
    return _gather.bind_udp(address)


def open_paths(plan: Plan) -> Paths:
    """Bind the sockets and resolve the servers of ``plan`` (may block).

    A host address that cannot be bound is logged and skipped.

    :raises OSError: a TURN socket could not be made (nothing is left open).
    """
    paths = Paths()
    try:
        if not plan.relay_only:
            addresses = plan.local_addresses or _gather.host_addresses(
                use_ipv4=plan.use_ipv4, use_ipv6=plan.use_ipv6
            )
            if plan.stun_server is not None:
                paths.stun = _gather.resolve_server(
                    plan.stun_server, use_ipv4=plan.use_ipv4, use_ipv6=plan.use_ipv6
                )
            if "tcp" in plan.transports:
                paths.listeners = []
            for component in range(1, plan.components + 1):
                for address in addresses:
                    try:
                        if "udp" in plan.transports:
                            sock = _gather.bind_udp(address)
                            paths.sockets.append((sock, component))
                        if paths.listeners is not None:
                            sock = _tcp_links.listen_tcp(address)
                            paths.listeners.append((sock, component))
                    except OSError as exc:
                        logger.warning(
                            "%s cannot bind to %s: %s", plan.name, address, exc
                        )
        _turn_paths(plan, paths.turn)
    except BaseException:
        paths.close()
        raise
    return paths


def _turn_paths(plan: Plan, paths: list[TurnPath]) -> None:
    """A socket per component towards the TURN server, not yet connected."""
    if plan.turn_server is None:
        return
    servers = _gather.resolve_server(plan.turn_server, use_ipv4=True, use_ipv6=True)
    if not servers:
        return
    server = servers[0]
    ipv6 = ":" in server[0]
    # RFC 8656 §7.1: ask for an IPv6 relay where IPv6 is what we use
    # (a server gives an IPv4 one by default, even to a client on IPv6).
    family = 0x02 if plan.use_ipv6 and (ipv6 or not plan.use_ipv4) else None
    local = next(
        (a for a in plan.local_addresses or () if (":" in a) == ipv6),
        "::" if ipv6 else "0.0.0.0",
    )
    transport = plan.turn_transport
    context: ssl.SSLContext | None = None
    if transport == "tcp" and plan.turn_ssl:
        import ssl

        transport = "tls"
        context = (
            plan.turn_ssl
            if isinstance(plan.turn_ssl, ssl.SSLContext)
            else ssl.create_default_context()
        )
    for component in range(1, plan.components + 1):
        if transport == "udp":
            sock = _gather.bind_udp(local)
        else:
            sock = stream_socket(ipv6)
            if plan.local_addresses:
                try:
                    sock.bind((local, 0))
                except OSError:
                    sock.close()
                    raise
        paths.append(
            TurnPath(
                component,
                sock,
                server,
                transport,
                family,
                context,
                plan.turn_server[0],
                plan.turn_username,
                plan.turn_password,
            )
        )


def stream_socket(ipv6: bool) -> socket.socket:
    """A non-blocking TCP socket, not yet bound or connected."""
    sock = socket.socket(
        socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM
    )
    sock.setblocking(False)
    return sock
