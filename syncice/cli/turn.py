"""``syncice turn``: one TURN allocation's life, step by step and timed.

Resolve, connect (TCP and TLS), Allocate, CreatePermission and ChannelBind
for a local UDP echo, round trips through the relay to that echo, Refresh,
release. Built on the public sans-IO client (:class:`syncice.turn.TurnAllocation`)
and the STUN codec, over a socket of its own.

The Refresh is the allocation's own: the command moves the allocation's
clock (the ``now`` it is handed) forward to its refresh time, so that the
Refresh goes out at once instead of minutes later.
"""

from __future__ import annotations

import argparse
import logging
import selectors
import socket
import ssl
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from ..exceptions import StunParseError
from ..stun import (
    Class,
    Message,
    Method,
    StreamFramer,
    is_stun,
    parse_message,
)
from ..turn import (
    AllocationClosed,
    AllocationFailed,
    AllocationSucceeded,
    PermissionFailed,
    TurnAllocation,
    TurnConfig,
    TurnEvent,
)
from .common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    CommandError,
    Output,
    add_common_arguments,
    parse_host_port,
    resolve,
)
from .stun import Prober

__all__ = ["Server", "add_parser", "check", "parse_url", "run"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

EPILOG = (
    """\
examples:
  syncice turn turn:turn.example.org --user alice --password secret
  syncice turn "turn:turn.example.org:3478?transport=tcp" --user alice --password s
  syncice turn turns:turn.example.org --user alice --password s --ca ca.pem
  syncice turn 127.0.0.1:3478 --transport tls --insecure --user u --password p --json

URL forms: turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT] (TLS), or
HOST[:PORT] with --transport. Ports: 3478, 5349 for TLS.

"""
    + EXIT_CODES_HELP
)


class Server:
    """Where and how to reach a TURN server."""

    def __init__(self, host: str, port: int, transport: str) -> None:
        self.host = host
        self.port = port
        self.transport = transport


def parse_url(url: str, transport: str | None) -> Server:
    """A TURN URL (RFC 7065) or ``HOST[:PORT]``.

    :raises ValueError: a malformed URL, or a transport that contradicts it.
    """
    scheme, rest = "", url
    if url.startswith(("turn:", "turns:")):
        scheme, rest = url.split(":", 1)
    rest, _, query = rest.partition("?")
    kind = "tls" if scheme == "turns" else None
    if query:
        values = parse_qs(query).get("transport", [])
        if values and values[0] not in ("udp", "tcp"):
            raise ValueError(f"{url!r}: transport must be udp or tcp")
        if values:
            if kind == "tls" and values[0] == "udp":
                raise ValueError(f"{url!r}: turns: runs over TCP")
            kind = kind or values[0]
    if transport is not None:
        if kind is not None and kind != transport:
            raise ValueError(f"{url!r} says {kind}, --transport says {transport}")
        kind = transport
    kind = kind or "udp"
    host, port = parse_host_port(rest, 5349 if kind == "tls" else 3478)
    return Server(host, port, kind)


class _Link:
    """The socket to the server, and what it observed: responses by method."""

    def __init__(self, sock: socket.socket, stream: bool) -> None:
        self.sock = sock
        self.stream = stream
        self.framer = StreamFramer() if stream else None
        self.successes: dict[int, int] = {}

    def observe(self, data: bytes) -> None:
        """Count the success responses in ``data`` (the allocation parses it too)."""
        messages: list[Any] = []
        if self.framer is not None:
            try:
                messages = self.framer.feed(data)
            except StunParseError:
                return
        elif is_stun(data):
            try:
                messages = [parse_message(data)]
            except StunParseError:
                return
        for message in messages:
            if isinstance(message, Message) and message.message_class == Class.SUCCESS:
                self.successes[message.method] = (
                    self.successes.get(message.method, 0) + 1
                )


class _Session:
    """Drives a :class:`TurnAllocation` over one socket, with an echo beside."""

    def __init__(
        self, allocation: TurnAllocation, link: _Link, echo: socket.socket
    ) -> None:
        self.allocation = allocation
        self.link = link
        self.echo = echo
        self.offset = 0.0
        self.events: list[TurnEvent] = []
        self.received: list[tuple[Address, bytes]] = []
        self.selector = selectors.DefaultSelector()
        self.selector.register(link.sock, selectors.EVENT_READ, "server")
        self.selector.register(echo, selectors.EVENT_READ, "echo")

    def now(self) -> float:
        return time.monotonic() + self.offset

    def flush(self) -> None:
        for data in self.allocation.datagrams_to_send():
            if self.link.stream:
                self.link.sock.sendall(data)
            else:
                self.link.sock.send(data)

    def pump(self, done: Callable[[], bool], timeout: float, what: str) -> float:
        """Run until ``done()``; the seconds it took.

        :raises CommandError: the allocation failed, or ``timeout`` passed.
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            self.flush()
            while (event := self.allocation.next_event()) is not None:
                logger.debug("TURN event %r", event)
                self.events.append(event)
                if isinstance(event, (AllocationFailed, PermissionFailed)):
                    code = "" if event.error_code is None else f" ({event.error_code})"
                    kind = (
                        "allocation failed"
                        if isinstance(event, AllocationFailed)
                        else "permission refused"
                    )
                    raise CommandError(f"{what}: {kind}: {event.reason}{code}")
            if done():
                return time.monotonic() - start
            wall = time.monotonic()
            if wall >= deadline:
                raise CommandError(f"{what}: no answer in {timeout:g} s")
            wait = deadline - wall
            timer = self.allocation.get_timer()
            if timer is not None:
                wait = min(wait, max(0.0, timer - self.now()))
            for key, _ in self.selector.select(wait):
                if key.data == "server":
                    self._from_server()
                else:
                    self._echo()
            self.allocation.handle_timer(self.now())

    def _from_server(self) -> None:
        try:
            data = self.link.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except OSError as exc:
            self.allocation.abandon(f"connection to the server lost: {exc}")
            return
        if not data:
            self.allocation.abandon("the server closed the connection")
            return
        sock = self.link.sock
        if isinstance(sock, ssl.SSLSocket):
            # Records already decrypted wait inside the TLS layer, where the
            # selector cannot see them.
            while sock.pending():
                data += sock.recv(sock.pending())
        self.link.observe(data)
        self.received.extend(self.allocation.receive(data, self.now()))

    def _echo(self) -> None:
        try:
            data, source = self.echo.recvfrom(65536)
        except OSError:
            return
        if data.startswith(b"ping "):
            self.echo.sendto(data, source)


def _connect(server: Server, address: Address, args: argparse.Namespace) -> _Link:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    if server.transport == "udp":
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.connect(address)
        return _Link(sock, stream=False)
    sock = socket.create_connection(address, timeout=args.timeout)
    if server.transport == "tls":
        context = ssl.create_default_context(cafile=args.ca)
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            sock = context.wrap_socket(sock, server_hostname=server.host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise CommandError(f"TLS handshake with {server.host}: {exc}") from None
    sock.settimeout(None)
    sock.setblocking(False)
    return _Link(sock, stream=True)


def _echo_address(echo: socket.socket, stun: Address, timeout: float) -> Address:
    """The echo's address as the server sees it (a Binding request from the
    echo's socket), or its local address when the server does not answer."""
    local = echo.getsockname()
    prober = Prober.over(echo, timeout=timeout, rto=0.25)
    try:
        answer = prober.request(stun)
    except CommandError:
        answer = None
    if answer is not None and answer.mapped is not None:
        return answer.mapped
    return str(local[0]), int(local[1])


def check(server: Server, args: argparse.Namespace, out: Output) -> dict[str, Any]:
    """Run every step; their timings (milliseconds) and what the server gave."""
    steps: dict[str, float] = {}
    started = time.monotonic()
    address = resolve(server.host, server.port)
    steps["resolve"] = time.monotonic() - started
    out.progress(f"connecting to {address[0]}:{address[1]} over {server.transport}")
    started = time.monotonic()
    link = _connect(server, address, args)
    if server.transport != "udp":
        steps["connect"] = time.monotonic() - started
    local_ip = str(link.sock.getsockname()[0])
    echo = socket.socket(link.sock.family, socket.SOCK_DGRAM)
    config = TurnConfig(reliable_timeout=args.timeout)
    allocation = TurnAllocation(
        server=address,
        username=args.user,
        password=args.password,
        transport=server.transport,
        config=config,
    )
    session = _Session(allocation, link, echo)
    try:
        echo.bind((local_ip, 0))
        stun_port = args.stun_port or (
            server.port if server.transport != "tls" else 3478
        )
        peer = _echo_address(echo, (address[0], stun_port), min(args.timeout, 1.0))
        out.progress("allocating")
        allocation.start(session.now(), deadline=session.now() + args.timeout)
        steps["allocate"] = session.pump(
            lambda: allocation.relayed is not None, args.timeout, "allocate"
        )
        [granted] = [e for e in session.events if isinstance(e, AllocationSucceeded)]
        relayed = granted.relayed
        out.progress(
            f"relayed address {relayed[0]}:{relayed[1]}; permission for {peer}"
        )
        allocation.permit(peer, session.now())
        steps["permission"] = session.pump(
            lambda: link.successes.get(Method.CREATE_PERMISSION, 0) > 0,
            args.timeout,
            "create permission",
        )
        steps["channel"] = steps["permission"] + session.pump(
            lambda: peer in allocation.channels, args.timeout, "channel bind"
        )
        echo.sendto(b"punch", relayed)  # opens the echo's side of a NAT, if any
        rtts: list[float] = []
        for i in range(args.count):
            payload = f"ping {i}".encode()
            out.progress(f"round trip {i + 1} of {args.count} through the relay")
            allocation.send(peer, payload, session.now())
            rtts.append(
                session.pump(
                    lambda p=payload: any(d == p for _, d in session.received),  # type: ignore[misc]
                    args.timeout,
                    "round trip",
                )
            )
        refreshes = link.successes.get(Method.REFRESH, 0)
        lifetime = allocation.lifetime or 0
        out.progress("refreshing (the allocation's clock moved to its refresh time)")
        # The allocation refreshes at the later of half its lifetime and its
        # lifetime less refresh_margin; earlier timers (permission refreshes)
        # run too when the clock passes them.
        margin = config.refresh_margin
        session.offset += max(lifetime / 2, lifetime - margin) + 0.001
        allocation.handle_timer(session.now())
        steps["refresh"] = session.pump(
            lambda: link.successes.get(Method.REFRESH, 0) > refreshes,
            args.timeout,
            "refresh",
        )
        out.progress("releasing")
        allocation.close(session.now())
        steps["release"] = session.pump(
            lambda: any(isinstance(e, AllocationClosed) for e in session.events),
            args.timeout,
            "release",
        )
        released = link.successes.get(Method.REFRESH, 0) > refreshes + 1
    finally:
        session.selector.close()
        echo.close()
        link.sock.close()
    return {
        "server": f"{address[0]}:{address[1]}",
        "transport": server.transport,
        "mapped": None
        if granted.mapped is None
        else f"{granted.mapped[0]}:{granted.mapped[1]}",
        "relayed": f"{relayed[0]}:{relayed[1]}",
        "lifetime": granted.lifetime,
        "refreshed_lifetime": allocation.lifetime,
        "peer": f"{peer[0]}:{peer[1]}",
        "release_answered": released,
        "round_trips": len(rtts),
        "rtt_ms": {
            "min": round(min(rtts) * 1e3, 3),
            "median": round(statistics.median(rtts) * 1e3, 3),
            "max": round(max(rtts) * 1e3, 3),
        },
        "steps_ms": {name: round(value * 1e3, 3) for name, value in steps.items()},
    }


def _lines(result: dict[str, Any]) -> list[str]:
    steps = result["steps_ms"]
    rtt = result["rtt_ms"]
    lines = [
        f"server       {result['server']} over {result['transport']}",
        f"mapped       {result['mapped'] or '-'}",
        f"relayed      {result['relayed']} (lifetime {result['lifetime']} s)",
        f"peer (echo)  {result['peer']}",
    ]
    labels = {
        "resolve": "resolve",
        "connect": "connect",
        "allocate": "allocate",
        "permission": "permission",
        "channel": "channel bind",
        "refresh": "refresh",
        "release": "release",
    }
    for name, label in labels.items():
        if name in steps:
            lines.append(f"{label:<13}{steps[name]:9.2f} ms")
        if name == "channel":
            lines.append(
                f"{'round trip':<13}{rtt['median']:9.2f} ms median of "
                f"{result['round_trips']} (min {rtt['min']:.2f}, max {rtt['max']:.2f})"
            )
    lines.append(
        "released     "
        + ("yes" if result["release_answered"] else "no answer to the release")
    )
    return lines


def add_parser(commands: Any) -> None:
    """Register ``turn`` on the ``syncice`` parser's subcommands."""
    parser = commands.add_parser(
        "turn",
        help="allocate, relay to a local echo, refresh, release; timed",
        description="Check a TURN server: allocate, create a permission and a "
        "channel, send round trips through the relay to a local UDP echo, "
        "refresh, release; time each step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", metavar="URL", help="turn:, turns: or HOST[:PORT]")
    parser.add_argument("--user", required=True, help="the long-term user name")
    parser.add_argument("--password", required=True, help="its password")
    parser.add_argument("--transport", choices=("udp", "tcp", "tls"))
    parser.add_argument("--ca", metavar="FILE", help="CA certificates for TLS")
    parser.add_argument(
        "--insecure", action="store_true", help="TLS without certificate checks"
    )
    parser.add_argument("--count", type=int, default=5, help="round trips (default 5)")
    parser.add_argument(
        "--stun-port",
        type=int,
        metavar="PORT",
        help="UDP port the echo asks for its mapped address (default: the "
        "server's port, 3478 for TLS)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per step (default 10)"
    )
    add_common_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: Output) -> int:
    """``syncice turn``."""
    if args.timeout <= 0 or args.count < 1:
        raise CommandError("--timeout must be positive and --count at least 1", 2)
    try:
        server = parse_url(args.url, args.transport)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    result = check(server, args, out)
    out.result(result, _lines(result))
    return EXIT_OK
