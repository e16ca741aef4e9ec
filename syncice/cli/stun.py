"""``syncice stun``: the mapped address per local address, and with
``--nat`` the NAT behaviour discovery of RFC 5780.

Built on the public STUN codec (:mod:`syncice.stun`) and plain UDP sockets.
The RFC 5780 attributes that the codec does not name (CHANGE-REQUEST,
RESPONSE-PORT, RESPONSE-ORIGIN, OTHER-ADDRESS) travel as raw attributes.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import ifaddr

from ..exceptions import StunParseError
from ..stun import Class, Message, Method, parse_message
from .common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_UNSUPPORTED,
    CommandError,
    Output,
    add_common_arguments,
    parse_host_port,
    resolve,
)

__all__ = ["Answer", "NatReport", "Prober", "add_parser", "discover", "run"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

CHANGE_REQUEST = 0x0003
RESPONSE_PORT = 0x0027
RESPONSE_ORIGIN = 0x802B
OTHER_ADDRESS = 0x802C
CHANGE_IP = 0x04
CHANGE_PORT = 0x02

EPILOG = (
    """\
examples:
  syncice stun stun.example.org              mapped address of every local address
  syncice stun 203.0.113.1:3478 --local 10.0.1.2
  syncice stun stun.example.org --nat        RFC 5780 mapping, filtering, hairpin
  syncice stun stun.example.org --nat --lifetime 120 --json

--nat needs a server that gives OTHER-ADDRESS (RFC 5780: a second IP address
and port); without it the command says so and exits with 3.

"""
    + EXIT_CODES_HELP
)


def _decode_address(value: bytes) -> Address | None:
    """A MAPPED-ADDRESS-style value (OTHER-ADDRESS, RESPONSE-ORIGIN)."""
    if len(value) < 4:
        return None
    family, port = value[1], int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == 1 and len(raw) == 4:
        return str(ipaddress.IPv4Address(raw)), port
    if family == 2 and len(raw) == 16:
        return str(ipaddress.IPv6Address(raw)), port
    return None


@dataclass(frozen=True)
class Answer:
    """A Binding response.

    :param mapped: XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS).
    :param source: where the response came from.
    :param other: OTHER-ADDRESS, when the server supports RFC 5780.
    :param origin: RESPONSE-ORIGIN, if given.
    :param software: SOFTWARE, if given.
    :param rtt: seconds from the first send to the answer.
    """

    mapped: Address | None
    source: Address
    other: Address | None
    origin: Address | None
    software: str | None
    rtt: float


class Prober:
    """One UDP socket sending Binding requests, with retransmissions
    (RFC 8489 §6.2.1: ``rto``, doubling) until ``timeout``.

    :param local: the address to bind to (port 0: any free port).
    """

    def __init__(self, local: Address, *, timeout: float, rto: float = 0.5) -> None:
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.bind(local)
        except OSError:
            self.sock.close()
            raise
        self.timeout = timeout
        self.rto = rto

    @classmethod
    def over(cls, sock: socket.socket, *, timeout: float, rto: float = 0.5) -> Prober:
        """A prober on a socket of the caller's (closing it closes ``sock``)."""
        prober = cls.__new__(cls)
        prober.sock, prober.timeout, prober.rto = sock, timeout, rto
        return prober

    @property
    def local(self) -> Address:
        """The bound address."""
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        server: Address,
        *,
        change: int = 0,
        response_port: int | None = None,
        listen: Prober | None = None,
    ) -> Answer | None:
        """Send a Binding request to ``server``; the answer, or ``None`` after
        ``timeout``.

        :param change: CHANGE-REQUEST flags (:data:`CHANGE_IP`, :data:`CHANGE_PORT`).
        :param response_port: RESPONSE-PORT: the server answers to that port.
        :param listen: wait for the answer on this prober's socket instead.
        :raises CommandError: the server answered with an error.
        """
        extra: list[tuple[int, bytes]] = []
        if change:
            extra.append((CHANGE_REQUEST, struct.pack("!I", change)))
        if response_port is not None:
            extra.append((RESPONSE_PORT, struct.pack("!HH", response_port, 0)))
        request = Message(Method.BINDING, Class.REQUEST, extra_attributes=extra)
        data = request.encode(fingerprint=True)
        receiver = listen if listen is not None else self
        start = time.monotonic()
        deadline = start + self.timeout
        send_at, rto = start, self.rto
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= send_at:
                try:
                    self.sock.sendto(data, server)
                except OSError as exc:
                    raise CommandError(
                        f"cannot send to {_text(server)}: {exc}"
                    ) from None
                logger.debug("binding request to %s change=%d", _text(server), change)
                send_at, rto = now + rto, rto * 2
            receiver.sock.settimeout(max(0.001, min(send_at, deadline) - now))
            try:
                packet, source = receiver.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError as exc:  # ICMP unreachable, reported on the socket
                logger.debug("receive error: %s", exc)
                continue
            answer = self._answer(packet, source, request, start)
            if answer is not None:
                return answer

    @staticmethod
    def _answer(
        packet: bytes, source: Any, request: Message, start: float
    ) -> Answer | None:
        try:
            message = parse_message(packet)
        except StunParseError:
            return None
        if (
            message.transaction_id != request.transaction_id
            or message.method != Method.BINDING
            or message.message_class not in (Class.SUCCESS, Class.ERROR)
        ):
            return None
        if message.message_class == Class.ERROR:
            code, reason = message.attributes.get("ERROR-CODE", (0, "?"))
            raise CommandError(f"the server answered {code} {reason}")
        attributes = message.attributes
        mapped = attributes.get("XOR-MAPPED-ADDRESS") or attributes.get(
            "MAPPED-ADDRESS"
        )
        raw = dict(message.extra_attributes)
        other = raw.get(OTHER_ADDRESS)
        origin = raw.get(RESPONSE_ORIGIN)
        return Answer(
            mapped=mapped,
            source=(str(source[0]), int(source[1])),
            other=_decode_address(other) if other is not None else None,
            origin=_decode_address(origin) if origin is not None else None,
            software=attributes.get("SOFTWARE"),
            rtt=time.monotonic() - start,
        )


def _text(address: Address | None) -> str:
    if address is None:
        return "-"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_addresses(family: int, server: str) -> list[str]:
    """The addresses to test from: every address of ``family`` on this host,
    loopback only when the server is a loopback address."""
    server_ip = ipaddress.ip_address(server)
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if (address.version == 6) != (family == socket.AF_INET6):
                continue
            if address.is_link_local or address.is_loopback != server_ip.is_loopback:
                continue
            if str(address) not in found:
                found.append(str(address))
    return found


# --- NAT behaviour discovery ------------------------------------------------------

EIM = "endpoint-independent"
ADM = "address-dependent"
APDM = "address-and-port-dependent"


@dataclass
class NatReport:
    """The verdicts of RFC 5780 §4.3-§4.6; ``None`` where undetermined."""

    server: Address
    other: Address
    local: Address
    mapped: Address
    behind_nat: bool
    mapping: str | None = None
    filtering: str | None = None
    hairpin: bool | None = None
    lifetime: tuple[float, float | None] | None = None
    notes: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": _text(self.server),
            "other_address": _text(self.other),
            "local": _text(self.local),
            "mapped": _text(self.mapped),
            "behind_nat": self.behind_nat,
            "mapping": self.mapping,
            "filtering": self.filtering,
            "hairpin": self.hairpin,
            "lifetime": None
            if self.lifetime is None
            else {"alive_after": self.lifetime[0], "expired_after": self.lifetime[1]},
            "notes": self.notes or [],
        }

    def lines(self) -> list[str]:
        out = [
            f"server       {_text(self.server)} (other address {_text(self.other)})",
            f"local        {_text(self.local)}",
            f"mapped       {_text(self.mapped)}",
            f"behind NAT   {'yes' if self.behind_nat else 'no'}",
            f"mapping      {self.mapping or 'undetermined'}",
            f"filtering    {self.filtering or 'undetermined'}",
            "hairpin      "
            + {True: "yes", False: "no", None: "undetermined"}[self.hairpin],
        ]
        if self.lifetime is not None:
            alive, expired = self.lifetime
            out.append(
                f"lifetime     more than {alive:g} s"
                if expired is None
                else f"lifetime     between {alive:g} and {expired:g} s"
            )
        out.extend(f"note         {note}" for note in self.notes or [])
        return out


def _mapping(
    prober: Prober, server: Address, first: Answer, other: Address, out: Output
) -> str | None:
    """RFC 5780 §4.3: the mapping behaviour, from one socket."""
    out.progress(f"mapping test II: to the alternate IP {_text((other[0], server[1]))}")
    second = prober.request((other[0], server[1]))
    if second is None or second.mapped is None:
        return None
    if second.mapped == first.mapped:
        return EIM
    out.progress(f"mapping test III: to the alternate address {_text(other)}")
    third = prober.request(other)
    if third is None or third.mapped is None:
        return None
    return ADM if third.mapped == second.mapped else APDM


def _filtering(
    local: str, server: Address, other: Address, out: Output, timeout: float
) -> tuple[str | None, list[str]]:
    """RFC 5780 §4.4, from a fresh socket that has sent to ``server`` only."""
    notes: list[str] = []
    with Prober((local, 0), timeout=timeout) as prober:
        out.progress("filtering test I: a fresh socket to the primary address")
        if prober.request(server) is None:
            return None, ["no answer to filtering test I"]
        out.progress("filtering test II: answer from the other IP and port")
        answer = prober.request(server, change=CHANGE_IP | CHANGE_PORT)
        if answer is not None:
            if answer.source[0] == server[0]:
                notes.append("the server ignored CHANGE-REQUEST (answered from its IP)")
                return None, notes
            return EIM, notes
        out.progress("filtering test III: answer from the other port")
        answer = prober.request(server, change=CHANGE_PORT)
        if answer is not None:
            if answer.source[1] == server[1]:
                notes.append(
                    "the server ignored CHANGE-REQUEST (answered from its port)"
                )
                return None, notes
            return ADM, notes
        return APDM, notes


def _hairpin(prober: Prober, mapped: Address, out: Output) -> bool:
    """RFC 5780 §4.5: does a packet to our own mapped address come back?"""
    out.progress(f"hairpin test: a request to our own mapped address {_text(mapped)}")
    request = Message(Method.BINDING, Class.REQUEST)
    data = request.encode(fingerprint=True)
    deadline = time.monotonic() + prober.timeout
    send_at, rto = time.monotonic(), prober.rto
    while (now := time.monotonic()) < deadline:
        if now >= send_at:
            try:
                prober.sock.sendto(data, mapped)
            except OSError as exc:  # no route to our own mapped address
                logger.debug("hairpin test: %s", exc)
                return False
            send_at, rto = now + rto, rto * 2
        prober.sock.settimeout(max(0.001, min(send_at, deadline) - now))
        try:
            packet, _ = prober.sock.recvfrom(2048)
        except OSError:
            continue
        try:
            message = parse_message(packet)
        except StunParseError:
            continue
        if message.transaction_id == request.transaction_id:
            return True
    return False


def _lifetime(
    local: str, server: Address, limit: float, out: Output, timeout: float
) -> tuple[tuple[float, float | None] | None, list[str]]:
    """RFC 5780 §4.6: how long an idle mapping lives, probed at 1, 2, 4 ...
    seconds of idleness (each answer that arrives refreshes the mapping)."""
    with (
        Prober((local, 0), timeout=timeout) as keeper,
        Prober((local, 0), timeout=timeout) as asker,
    ):
        first = keeper.request(server)
        if first is None or first.mapped is None:
            return None, ["lifetime: no answer to the first request"]
        port = first.mapped[1]
        alive, wait = 0.0, 1.0
        while wait <= limit:
            out.progress(f"lifetime test: idle for {wait:g} s")
            time.sleep(wait)  # the test is the idleness itself
            try:
                answer = asker.request(server, response_port=port, listen=keeper)
            except CommandError as exc:
                return None, [f"lifetime: RESPONSE-PORT refused: {exc}"]
            if answer is None:
                return (alive, wait), []
            alive, wait = wait, wait * 2
        return (alive, None), []


def discover(
    server: Address,
    local: str,
    out: Output,
    *,
    timeout: float,
    lifetime: float | None = None,
) -> NatReport:
    """RFC 5780 NAT behaviour discovery against ``server``, from ``local``.

    :raises CommandError: no answer, or (``code`` 3) no OTHER-ADDRESS.
    """
    with Prober((local, 0), timeout=timeout) as prober:
        out.progress(f"mapping test I: binding request to {_text(server)}")
        first = prober.request(server)
        if first is None or first.mapped is None:
            raise CommandError(f"no answer from {_text(server)} in {timeout:g} s")
        if first.other is None:
            raise CommandError(
                f"the server {_text(server)} does not support RFC 5780: "
                "its answer carries no OTHER-ADDRESS",
                EXIT_UNSUPPORTED,
            )
        other = first.other
        behind = first.mapped != prober.local
        report = NatReport(
            server=server,
            other=other,
            local=prober.local,
            mapped=first.mapped,
            behind_nat=behind,
            notes=[],
        )
        assert report.notes is not None
        report.mapping = _mapping(prober, server, first, other, out)
        if report.mapping is None:
            report.notes.append("no answer from the alternate address")
        if behind:
            report.hairpin = _hairpin(prober, first.mapped, out)
        else:
            report.notes.append("no NAT: the mapped address is the local address")
    report.filtering, notes = _filtering(local, server, other, out, timeout)
    report.notes.extend(notes)
    if lifetime is not None:
        if behind:
            report.lifetime, notes = _lifetime(local, server, lifetime, out, timeout)
            report.notes.extend(notes)
        else:
            report.notes.append("lifetime: no NAT, no mapping to time")
    return report


# --- the command ------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    """Register ``stun`` on the ``syncice`` parser's subcommands."""
    parser = commands.add_parser(
        "stun",
        help="mapped addresses, and RFC 5780 NAT behaviour (--nat)",
        description="Ask a STUN server for the mapped address of each local "
        "address; with --nat, find the NAT's mapping and filtering behaviour "
        "(RFC 5780).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("server", metavar="HOST[:PORT]", help="port 3478 by default")
    parser.add_argument(
        "--local",
        action="append",
        metavar="ADDRESS",
        help="a local address to test from (repeatable; default: every address "
        "of the server's family)",
    )
    parser.add_argument("--nat", action="store_true", help="RFC 5780 NAT discovery")
    parser.add_argument(
        "--lifetime",
        type=float,
        metavar="MAX",
        help="with --nat: probe the binding lifetime up to MAX seconds",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        help="seconds to wait for each answer (default 3)",
    )
    add_common_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: Output) -> int:
    """``syncice stun``."""
    if args.timeout <= 0 or (args.lifetime is not None and args.lifetime < 1):
        raise CommandError("--timeout must be positive and --lifetime at least 1", 2)
    if args.lifetime is not None and not args.nat:
        raise CommandError("--lifetime needs --nat", 2)
    try:
        host, port = parse_host_port(args.server, 3478)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    server = resolve(host, port)
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    locals_ = args.local or local_addresses(family, server[0])
    if not locals_:
        raise CommandError(f"no local address of the family of {server[0]}")
    if args.nat:
        report = discover(
            server, locals_[0], out, timeout=args.timeout, lifetime=args.lifetime
        )
        out.result(report.as_dict(), report.lines())
        return EXIT_OK
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    other = software = None
    for local in locals_:
        out.progress(f"binding request from {local} to {_text(server)}")
        entry: dict[str, Any] = {"local": local, "mapped": None}
        try:
            with Prober((local, 0), timeout=args.timeout) as prober:
                entry["local"] = _text(prober.local)
                answer = prober.request(server)
        except OSError as exc:
            entry["error"] = str(exc)
            lines.append(f"local {local:<24} error: {exc}")
        else:
            if answer is None or answer.mapped is None:
                entry["error"] = "no answer"
                lines.append(f"local {entry['local']:<24} no answer")
            else:
                entry["mapped"] = _text(answer.mapped)
                entry["rtt_ms"] = round(answer.rtt * 1e3, 3)
                other = other or answer.other
                software = software or answer.software
                lines.append(
                    f"local {entry['local']:<24} mapped {entry['mapped']:<24} "
                    f"rtt {answer.rtt * 1e3:.1f} ms"
                )
        results.append(entry)
    lines.insert(0, f"server {_text(server)}" + (f" ({software})" if software else ""))
    lines.append(
        f"RFC 5780: other address {_text(other)}"
        if other
        else "RFC 5780: not supported (no OTHER-ADDRESS)"
    )
    out.result(
        {
            "server": _text(server),
            "software": software,
            "other_address": _text(other) if other else None,
            "results": results,
        },
        lines,
    )
    if not any(entry["mapped"] for entry in results):
        raise CommandError("no local address got an answer", 1)
    return EXIT_OK
