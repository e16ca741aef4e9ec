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
from ._bind import BindOptions, Interfaces, bind_socket, choose_addresses, resolve_all
from ._ice_servers import StunServer, TurnServer

if TYPE_CHECKING:
    import ssl

__all__ = [
    "BindOptions",
    "Interfaces",
    "Paths",
    "Plan",
    "TurnPath",
    "bind_socket",
    "bind_udp",
    "open_paths",
    "stream_socket",
]

logger = logging.getLogger("syncice.connection")

Address = tuple[str, int]


class TurnPath:
    """The way to the TURN server for one component, made in the caller's thread."""

    __slots__ = (
        "bind",
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
        bind: BindOptions | None = None,
    ) -> None:
        self.component = component
        #: How its sockets are bound (also a new one, after a 437).
        self.bind = bind
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
    #: A bound TCP socket (neither listening nor connected) per host address
    #: and component, holding the port of a simultaneous-open candidate.
    simultaneous: list[tuple[socket.socket, int]] = field(default_factory=list)
    #: ``SO_RCVBUF`` and ``SO_SNDBUF`` of each UDP socket, as the kernel
    #: reports them, by local address.
    buffers: dict[Address, tuple[int, int]] = field(default_factory=dict)

    def close(self) -> None:
        """Close every socket (the gathering was abandoned)."""
        for sock, _ in [*self.sockets, *(self.listeners or ()), *self.simultaneous]:
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
    #: The servers of ``ice_servers=``, after the old keywords' ones.
    stun_servers: tuple[StunServer, ...] = ()
    turn_servers: tuple[TurnServer, ...] = ()
    #: Port range and socket buffers.
    bind: BindOptions = field(default_factory=BindOptions)
    #: Which interfaces' addresses to use, or ``None`` for all.
    interfaces: Interfaces | None = None
    #: With TCP, an S-O candidate's port per host address too.
    tcp_simultaneous_open: bool = False


def bind_udp(address: str, options: BindOptions | None = None) -> socket.socket:
    """A non-blocking UDP socket bound to ``address``: on any port
    (:func:`syncice._gather.bind_udp`), or as ``options`` say
    (:func:`syncice._bind.bind_socket`)."""
    if options is None or options.default:
        return _gather.bind_udp(address)
    return bind_socket(address, options)


def _buffers(paths: Paths, sock: socket.socket) -> None:
    addr = sock.getsockname()
    paths.buffers[(addr[0], addr[1])] = (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )


def open_paths(plan: Plan) -> Paths:
    """Bind the sockets and resolve the servers of ``plan`` (may block).

    A host address that cannot be bound is logged and skipped.

    :raises OSError: a TURN socket could not be made (nothing is left open).
    """
    paths = Paths()
    try:
        addresses = _addresses(plan)
        if not plan.relay_only:
            stun = [s for s in [plan.stun_server] if s is not None]
            stun += [(s.host, s.port) for s in plan.stun_servers]
            for found in resolve_all(
                stun, use_ipv4=plan.use_ipv4, use_ipv6=plan.use_ipv6
            ):
                paths.stun += [a for a in found if a not in paths.stun]
            if "tcp" in plan.transports:
                paths.listeners = []
            for component in range(1, plan.components + 1):
                for address in addresses:
                    try:
                        if "udp" in plan.transports:
                            sock = bind_udp(address, plan.bind)
                            paths.sockets.append((sock, component))
                        if paths.listeners is not None:
                            sock = _tcp_links.listen_tcp(address, plan.bind)
                            paths.listeners.append((sock, component))
                            if plan.tcp_simultaneous_open:
                                sock = _tcp_links.bind_so(address, plan.bind)
                                paths.simultaneous.append((sock, component))
                    except OSError as exc:
                        if plan.bind.exhausted(exc):
                            raise
                        logger.warning(
                            "%s cannot bind to %s: %s", plan.name, address, exc
                        )
        _turn_paths(plan, addresses, paths.turn)
        _more_turn_paths(plan, addresses, paths.turn)
        for sock, _ in paths.sockets:
            _buffers(paths, sock)
        for path in paths.turn:
            if path.transport == "udp":
                _buffers(paths, path.sock)
    except BaseException:
        paths.close()
        raise
    return paths


def _addresses(plan: Plan) -> list[str]:
    """The local addresses to use: the caller's, or every interface's, as
    the interface options filter them (:func:`syncice._bind.choose_addresses`)."""
    if plan.interfaces is None:
        if plan.relay_only and not plan.turn_servers:
            return []  # not needed: no lookup, as before
        return list(plan.local_addresses or ()) or _gather.host_addresses(
            use_ipv4=plan.use_ipv4, use_ipv6=plan.use_ipv6
        )
    return choose_addresses(
        plan.local_addresses,
        plan.interfaces,
        use_ipv4=plan.use_ipv4,
        use_ipv6=plan.use_ipv6,
    )


def _turn_paths(plan: Plan, addresses: list[str], paths: list[TurnPath]) -> None:
    """A socket per component towards the TURN server (``turn_server=``),
    not yet connected, from the first of ``local_addresses`` of its family
    (of ``addresses`` with the interface options), else the wildcard."""
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
    chosen = addresses if plan.interfaces is not None else plan.local_addresses
    local = next(
        (a for a in chosen or () if (":" in a) == ipv6),
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
            sock = bind_udp(local, plan.bind)
        elif (
            plan.local_addresses
            or plan.interfaces is not None
            or (plan.bind.port_range is not None)
        ):
            sock = bind_socket(local, plan.bind, stream=True)
        else:
            sock = stream_socket(ipv6)
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
                plan.bind,
            )
        )


def _more_turn_paths(plan: Plan, addresses: list[str], paths: list[TurnPath]) -> None:
    """The paths to the TURN servers of ``ice_servers=``: one per server,
    component and local address of the server's family (from the wildcard
    address when there is none). A server that does not resolve, or whose
    socket cannot be made, is logged and left out; the others go on."""
    servers = plan.turn_servers
    if plan.turn_server is not None:  # the old keywords' server, once
        transport = plan.turn_transport
        if transport == "tcp" and plan.turn_ssl:
            transport = "tls"
        old = (*plan.turn_server, transport, plan.turn_username, plan.turn_password)
        servers = tuple(
            s
            for s in servers
            if (s.host, s.port, s.transport, s.username, s.password) != old
        )
    found = resolve_all(
        [(s.host, s.port) for s in servers], use_ipv4=True, use_ipv6=True
    )
    for server, resolved in zip(servers, found, strict=True):
        if not resolved:
            continue  # resolve_all logged it
        address = resolved[0]
        ipv6 = ":" in address[0]
        family = 0x02 if plan.use_ipv6 and (ipv6 or not plan.use_ipv4) else None
        context: ssl.SSLContext | None = None
        if server.transport == "tls":
            import ssl

            context = (
                server.context
                if isinstance(server.context, ssl.SSLContext)
                else ssl.create_default_context()
            )
        locals_ = [a for a in addresses if (":" in a) == ipv6] or [
            "::" if ipv6 else "0.0.0.0"
        ]
        for component in range(1, plan.components + 1):
            for local in locals_:
                try:
                    sock = bind_socket(
                        local, plan.bind, stream=server.transport != "udp"
                    )
                except OSError as exc:
                    if plan.bind.exhausted(exc):
                        raise
                    logger.warning(
                        "%s TURN server %s: cannot bind to %s: %s",
                        plan.name,
                        server.url,
                        local,
                        exc,
                    )
                    continue
                paths.append(
                    TurnPath(
                        component,
                        sock,
                        address,
                        server.transport,
                        family,
                        context,
                        server.host,
                        server.username,
                        server.password,
                        plan.bind,
                    )
                )


def stream_socket(ipv6: bool, options: BindOptions | None = None) -> socket.socket:
    """A non-blocking TCP socket, not yet connected: unbound, or bound to
    the wildcard address within ``options.port_range`` when it has one."""
    if options is not None and options.port_range is not None:
        return bind_socket("::" if ipv6 else "0.0.0.0", options, stream=True)
    sock = socket.socket(
        socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM
    )
    sock.setblocking(False)
    return sock
