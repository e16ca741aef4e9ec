"""``python -m syncice demo``: the STUN codec over real UDP sockets, on loopback.

Until the ICE agent lands, the demo runs what an ICE connectivity check is made
of (RFC 8445 §7.2): a responder thread answers STUN Binding requests carrying
USERNAME, PRIORITY and ICE-CONTROLLING, protected with MESSAGE-INTEGRITY (the
responder's short-term password) and FINGERPRINT, with an XOR-MAPPED-ADDRESS.
The client checks every response, prints the mapped address and the round-trip
time of each request, then the median. Nothing leaves 127.0.0.1.

Exit status: 0 when every response checked out, 1 otherwise (the reason goes to
stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType

from .candidate import candidate_priority
from .exceptions import StunParseError
from .stun import (
    Address,
    Class,
    Message,
    Method,
    is_stun,
    parse_message,
    short_term_key,
)

#: How long the client waits for each response, in seconds.
TIMEOUT = 2.0
#: How often the responder thread looks at its stop flag, in seconds.
_POLL = 0.05
_LOOPBACK = "127.0.0.1"
# Larger than any datagram the demo sends or answers.
_BUFFER = 2048


class DemoError(Exception):
    """A response that the client rejects."""


def _text(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _error_response(request: Message, code: int, reason: str) -> bytes:
    # RFC 8445 §7.3, RFC 8489 §6.3.4: errors carry no MESSAGE-INTEGRITY when
    # the request failed authentication; FINGERPRINT still goes on.
    response = Message(
        Method.BINDING,
        Class.ERROR,
        request.transaction_id,
        attributes={"ERROR-CODE": (code, reason)},
    )
    return response.encode(fingerprint=True)


def answer(data: bytes, source: Address, ufrag: str, key: bytes) -> bytes | None:
    """The responder's reply to one datagram, or ``None`` to drop it.

    A Binding request for ``ufrag`` with a FINGERPRINT and a MESSAGE-INTEGRITY
    made with ``key`` gets a success response: XOR-MAPPED-ADDRESS set to
    ``source``, protected with the same key and a FINGERPRINT. Other requests
    get 400 (malformed) or 401 (authentication failed); anything that is not
    a STUN request is dropped.
    """
    if not is_stun(data):
        return None
    try:
        request = parse_message(data)
    except StunParseError:
        return None
    if request.method != Method.BINDING or request.message_class != Class.REQUEST:
        return None
    username = request.attributes.get("USERNAME")
    if not request.has_fingerprint or username is None or request.integrity is None:
        return _error_response(request, 400, "Bad Request")
    if not username.startswith(f"{ufrag}:") or not request.check_integrity(key):
        return _error_response(request, 401, "Unauthorized")
    response = Message(
        Method.BINDING,
        Class.SUCCESS,
        request.transaction_id,
        attributes={"XOR-MAPPED-ADDRESS": source},
    )
    return response.encode(key=key, fingerprint=True)


class Responder:
    """A STUN Binding responder on a loopback UDP socket, in a thread of its own.

    Use it as a context manager: entering starts the thread, leaving stops it
    and closes the socket.
    """

    def __init__(self, ufrag: str, key: bytes) -> None:
        self._ufrag = ufrag
        self._key = key
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((_LOOPBACK, 0))
        self._sock.settimeout(_POLL)
        self.address: Address = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, name="syncice-demo-responder", daemon=True
        )

    def __enter__(self) -> Responder:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self._sock.recvfrom(_BUFFER)
            except TimeoutError:
                continue
            reply = answer(data, source, self._ufrag, self._key)
            if reply is not None:
                self._sock.sendto(reply, source)


def check_response(data: bytes, request: Message, key: bytes) -> Address:
    """Check the response to ``request`` and return its XOR-MAPPED-ADDRESS.

    :raises DemoError: the response is not a success response to ``request``
        with a correct FINGERPRINT and MESSAGE-INTEGRITY made with ``key``.
    """
    if not is_stun(data):
        raise DemoError("the response is not a STUN message")
    try:
        response = parse_message(data)
    except StunParseError as exc:
        raise DemoError(f"malformed response: {exc}") from None
    if response.transaction_id != request.transaction_id:
        raise DemoError("the response's transaction ID does not match the request")
    if response.message_class == Class.ERROR:
        code, reason = response.attributes.get("ERROR-CODE", (0, "no ERROR-CODE"))
        raise DemoError(f"error response {code} {reason}")
    if response.method != Method.BINDING or response.message_class != Class.SUCCESS:
        raise DemoError("the response is not a Binding success response")
    if not response.has_fingerprint:
        raise DemoError("the response has no FINGERPRINT")
    if not response.check_integrity(key):
        raise DemoError("the response's MESSAGE-INTEGRITY does not check out")
    mapped = response.attributes.get("XOR-MAPPED-ADDRESS")
    if mapped is None:
        raise DemoError("the response has no XOR-MAPPED-ADDRESS")
    return mapped


def demo(count: int) -> None:
    """Send ``count`` Binding requests to a loopback responder and report.

    :raises DemoError: a response was rejected.
    :raises OSError: a socket failed; :class:`TimeoutError` when no response
        came within :data:`TIMEOUT`.
    """
    # ICE credentials (RFC 8445 §5.3): the request is signed with the
    # responder's password and names the responder's ufrag first.
    ufrag, password = "demo", secrets.token_hex(12)
    key = short_term_key(password)
    tie_breaker = secrets.randbits(64)
    with (
        Responder(ufrag, key) as responder,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind((_LOOPBACK, 0))
        sock.settimeout(TIMEOUT)
        print(f"responder {_text(responder.address)}")
        print(f"client    {_text(sock.getsockname())}")
        rtts = []
        for number in range(1, count + 1):
            request = Message(
                Method.BINDING,
                Class.REQUEST,
                attributes={
                    "USERNAME": f"{ufrag}:client",
                    "PRIORITY": candidate_priority(1, "prflx"),
                    "ICE-CONTROLLING": tie_breaker,
                },
            )
            data = request.encode(key=key, fingerprint=True)
            sent_at = time.perf_counter()
            sock.sendto(data, responder.address)
            reply, source = sock.recvfrom(_BUFFER)
            rtt = time.perf_counter() - sent_at
            if source != responder.address:
                raise DemoError(f"a datagram came from {_text(source)}")
            mapped = check_response(reply, request, key)
            rtts.append(rtt)
            print(
                f"request {number}: mapped address {_text(mapped)}, "
                f"rtt {rtt * 1000:.3f} ms"
            )
        median = statistics.median(rtts)
        print(f"median rtt {median * 1000:.3f} ms over {count} requests")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m syncice", description="syncice command line"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo",
        help="STUN Binding requests to a responder thread, on loopback",
        description=(
            "Send STUN Binding requests, as ICE connectivity checks carry them, "
            "to a responder thread over UDP on 127.0.0.1, check every response "
            "and print the mapped address and round-trip times."
        ),
    )
    demo_parser.add_argument(
        "--count", type=_positive, default=5, help="requests to send (default: 5)"
    )
    args = parser.parse_args(argv)
    try:
        demo(args.count)
    except TimeoutError:
        print(f"syncice demo: no response within {TIMEOUT:g} s", file=sys.stderr)
        return 1
    except (DemoError, OSError) as exc:
        print(f"syncice demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
