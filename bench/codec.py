"""Codec benchmark: syncice against aioice, in one process, on the same bytes.

Usage::

    python bench/codec.py [--seconds 0.4] [--repeat 5]

Each case runs ``--repeat`` rounds of about ``--seconds`` each for both
libraries, alternating, and keeps the best round (the least disturbed by the
rest of the machine). It prints operations per second and the ratio
syncice / aioice, then checks the ratios against the targets of the codec
milestone and exits 1 if one is missed.

Cases:

- parse+verify of an ICE Binding request (USERNAME, PRIORITY, ICE-CONTROLLING,
  MESSAGE-INTEGRITY, FINGERPRINT), and of a Binding success response with
  XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT: parse the bytes,
  check the integrity with the key, and check that the FINGERPRINT was there
  (both libraries verify its CRC while parsing);
- serialize the same two messages with MESSAGE-INTEGRITY and FINGERPRINT,
  building the message object each time, as a sender does;
- ``Candidate.from_sdp`` on host IPv4, srflx and host IPv6 lines;
  ``to_sdp`` of the candidates parsed from them; and, without a target,
  building a ``Candidate`` from the same fields and printing it (syncice
  validates in its constructor and keeps the line it makes there, so its
  ``to_sdp`` alone is a read).

Cost per datagram (issue 13), syncice alone: ``parse_message`` on the
costliest datagrams we know how to build (floods of 16k attributes before
and after MESSAGE-INTEGRITY, repeated and comprehension-required ones, 16k
PASSWORD-ALGORITHMS entries, 32k UNKNOWN-ATTRIBUTES types, every known
attribute with costly values plus the whole attribute budget), each timed
against an ordinary 64 KiB message in the same rounds. The ordinary message
is a Data indication of one 64 KiB DATA attribute with FINGERPRINT: what any
peer may send, and a floor for every 64 KiB datagram, since a hostile one can
carry a correct FINGERPRINT too. A case may cost at most
:data:`COST_LIMIT` times as much. Each case cycles through 128 variants
(fresh transaction IDs and IPv6 addresses, so that no cache helps), and so
does the ordinary message. The ratio to a bare 64 KiB DATA message, without
FINGERPRINT (a slice and little else), is printed too, without a limit.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from aioice import stun as aioice_stun
from aioice.candidate import Candidate as AioiceCandidate

from syncice import stun
from syncice.candidate import Candidate
from syncice.exceptions import StunParseError

KEY = b"s3cr3t-ice-password-22"
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
REQUEST_ATTRIBUTES: stun.Attributes = {
    "USERNAME": "x2fC:t6Rd",
    "PRIORITY": 1853824767,
    "ICE-CONTROLLING": 0x932FF9B151263B36,
}
RESPONSE_ATTRIBUTES: stun.Attributes = {"XOR-MAPPED-ADDRESS": ("192.0.2.1", 32853)}
SDP_LINES = [
    "6815297761 1 udp 659136 1.2.3.4 31102 typ host generation 0",
    "842163049 1 udp 1677729535 198.51.100.7 50123 typ srflx raddr 10.0.0.2 "
    "rport 50123 generation 0",
    "1829461213 1 udp 2130706431 2001:db8::42 50000 typ host generation 0",
]

# Targets of the codec milestone (issue 2): syncice ops/s over aioice's.
TARGETS: dict[str, float | None] = {
    "parse+verify": 1.5,
    "serialize": 2.0,
    "from_sdp": 1.0,
    "to_sdp": 1.0,
    "build+to_sdp": None,  # reported, no target
}
#: Cost per datagram (issue 13): the most a case may cost, in time per
#: parse_message, over an ordinary 64 KiB message.
COST_LIMIT = 5.0


@dataclass
class Result:
    case: str
    ours: float
    theirs: float

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs


def rate(func: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``func`` over about ``seconds``."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            func()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return number / elapsed
        number *= 2 if elapsed < seconds / 8 else 1 + int(seconds / elapsed)


def best_of(
    ours: Callable[[], object],
    theirs: Callable[[], object],
    seconds: float,
    repeat: int,
) -> tuple[float, float]:
    a = b = 0.0
    for _ in range(repeat):
        a = max(a, rate(ours, seconds))
        b = max(b, rate(theirs, seconds))
    return a, b


def syncice_bytes(attributes: stun.Attributes, message_class: stun.Class) -> bytes:
    message = stun.Message(stun.Method.BINDING, message_class, TID, attributes)
    return message.encode(key=KEY, fingerprint=True)


def aioice_message(
    attributes: stun.Attributes, message_class: aioice_stun.Class
) -> aioice_stun.Message:
    message = aioice_stun.Message(
        aioice_stun.Method.BINDING, message_class, TID, dict(attributes)
    )
    message.add_message_integrity(KEY)
    return message


def stun_cases(seconds: float, repeat: int) -> list[Result]:
    results = []
    for label, attributes, ours_class, theirs_class in (
        ("request", REQUEST_ATTRIBUTES, stun.Class.REQUEST, aioice_stun.Class.REQUEST),
        (
            "response",
            RESPONSE_ATTRIBUTES,
            stun.Class.SUCCESS,
            aioice_stun.Class.RESPONSE,
        ),
    ):
        data = syncice_bytes(attributes, ours_class)
        if bytes(aioice_message(attributes, theirs_class)) != data:
            raise SystemExit(f"the two libraries encode the {label} differently")

        def parse_ours(data: bytes = data) -> None:
            message = stun.parse_message(data)
            if not (message.check_integrity(KEY) and message.has_fingerprint):
                raise AssertionError("syncice failed to verify")

        def parse_theirs(data: bytes = data) -> None:
            message = aioice_stun.parse_message(data)
            if not (
                message.check_message_integrity(KEY)
                and "FINGERPRINT" in message.attributes
            ):
                raise AssertionError("aioice failed to verify")

        def encode_ours(
            attributes: stun.Attributes = attributes, cls: stun.Class = ours_class
        ) -> bytes:
            return syncice_bytes(dict(attributes), cls)  # type: ignore[arg-type]

        def encode_theirs(
            attributes: stun.Attributes = attributes,
            cls: aioice_stun.Class = theirs_class,
        ) -> bytes:
            return bytes(aioice_message(attributes, cls))

        if encode_ours() != encode_theirs():
            raise SystemExit(f"the two libraries serialize the {label} differently")
        results.append(
            Result(
                f"parse+verify {label}",
                *best_of(parse_ours, parse_theirs, seconds, repeat),
            )
        )
        results.append(
            Result(
                f"serialize {label}",
                *best_of(encode_ours, encode_theirs, seconds, repeat),
            )
        )
    return results


def build_and_print(
    cls: Callable[..., Candidate | AioiceCandidate], fields: tuple[object, ...]
) -> str:
    return cls(*fields).to_sdp()


def sdp_cases(seconds: float, repeat: int) -> list[Result]:
    results = []
    for line in SDP_LINES:
        kind = line.split()[7] + ("6" if ":" in line.split()[4] else "4")
        ours = Candidate.from_sdp(line)
        theirs = AioiceCandidate.from_sdp(line)
        if ours.to_sdp() != theirs.to_sdp() or ours.to_sdp() != line:
            raise SystemExit(f"the two libraries print {line!r} differently")
        results.append(
            Result(
                f"from_sdp {kind}",
                *best_of(
                    functools.partial(Candidate.from_sdp, line),
                    functools.partial(AioiceCandidate.from_sdp, line),
                    seconds,
                    repeat,
                ),
            )
        )
        fields = (
            theirs.foundation,
            theirs.component,
            theirs.transport,
            theirs.priority,
            theirs.host,
            theirs.port,
            theirs.type,
            theirs.related_address,
            theirs.related_port,
            theirs.tcptype,
            theirs.generation,
        )
        results.append(
            Result(
                f"to_sdp {kind}", *best_of(ours.to_sdp, theirs.to_sdp, seconds, repeat)
            )
        )
        # Build the candidate, then print it, as gathering and signalling do.
        # syncice validates every field in the constructor and keeps the line
        # it makes there; aioice's constructor only stores the fields.
        results.append(
            Result(
                f"build+to_sdp {kind}",
                *best_of(
                    functools.partial(build_and_print, Candidate, fields),
                    functools.partial(build_and_print, AioiceCandidate, fields),
                    seconds,
                    repeat,
                ),
            )
        )
    return results


# --- cost per datagram -------------------------------------------------------------

_MI = 0x0008
_MI256 = 0x001C
_BODY = 0xFFFC  # the longest body: a 64 KiB datagram less the header
_ADDRESSES = (0x0001, 0x0012, 0x0016, 0x0020, 0x8023)  # the IPv6 ones below
_VARIANTS = 128  # with 5 fresh addresses each, more than the decoder's cache


def _tlv(attr_type: int, value: bytes = b"") -> bytes:
    padding = bytes(-len(value) & 3)
    return (
        attr_type.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + padding
    )


def _datagram(
    body: bytes, rng: random.Random, *, fingerprint: bool, message_type: int = 0x0001
) -> bytes:
    size = len(body) + (8 if fingerprint else 0)
    data = (
        message_type.to_bytes(2, "big")
        + size.to_bytes(2, "big")
        + stun.COOKIE.to_bytes(4, "big")
        + rng.randbytes(12)
        + body
    )
    if fingerprint:
        crc = zlib.crc32(data) ^ 0x5354554E
        data += _tlv(0x8028, crc.to_bytes(4, "big"))
    return data


def _flood(first: bytes, piece: bytes) -> Callable[[random.Random], bytes]:
    """``first``, then ``piece`` as often as 64 KiB holds."""
    body = first + piece * ((_BODY - len(first)) // len(piece))
    return lambda rng: _datagram(body, rng, fingerprint=False)


def _every_known(rng: random.Random) -> bytes:
    """Each known attribute once, with the costliest valid value we know: a
    fresh IPv6 address in each address attribute, the longest multi-byte
    strings, full lists."""
    ipv6 = [_tlv(t, b"\x00\x02\x12\x34" + rng.randbytes(16)) for t in _ADDRESSES]
    text = ("\u00e9" * 381).encode()
    return b"".join(
        [
            *ipv6,
            _tlv(0x0006, ("\U0001f600" * 128).encode()),  # USERNAME, 512 bytes
            _tlv(0x0009, b"\x00\x00\x04\x00" + text),  # ERROR-CODE
            _tlv(0x000A, b"\x00\x31" * stun.MAX_ATTRIBUTES),  # UNKNOWN-ATTRIBUTES
            _tlv(0x000C, b"\x40\x00\x00\x00"),
            _tlv(0x000D, bytes(4)),
            _tlv(0x0013),
            _tlv(0x0014, text),  # REALM
            _tlv(0x0015, bytes(763)),  # NONCE
            _tlv(0x0017, bytes(4)),
            _tlv(0x0018, b"\x80"),
            _tlv(0x0019, bytes(4)),
            _tlv(0x001A),
            _tlv(0x001D, b"\x00\x01\x00\x00"),
            _tlv(0x001E, bytes(32)),
            _tlv(0x0022, bytes(8)),
            _tlv(0x0024, bytes(4)),
            _tlv(0x0025),
            _tlv(0x8000, bytes(4)),
            _tlv(0x8002, b"\x00\x01\x00\x00" * 16),  # PASSWORD-ALGORITHMS
            _tlv(0x8003, b"a" * 255),
            _tlv(0x8022, text),  # SOFTWARE
            _tlv(0x8029, bytes(8)),
            _tlv(0x802A, bytes(8)),
        ]
    )


def _every_known_and_the_budget(
    *, ignored: bool, spoil: bool = False
) -> Callable[[random.Random], bytes]:
    """Every known attribute, then MAX_ATTRIBUTES unknown ones (kept raw, or
    ignored after MESSAGE-INTEGRITY) as large as 64 KiB allows,
    MESSAGE-INTEGRITY-SHA256 and FINGERPRINT: the largest accepted message
    (or, with ``spoil``, one rejected at the very end)."""

    def build(rng: random.Random) -> bytes:
        known = _every_known(rng)
        integrity = _tlv(_MI, bytes(20))
        room = _BODY - len(known) - len(integrity) - 36 - 8
        size = (room // stun.MAX_ATTRIBUTES - 4) & ~3  # no padding
        extras = b"".join(
            _tlv(0x7000 + i, bytes(size)) for i in range(stun.MAX_ATTRIBUTES)
        )
        body = known + (integrity + extras if ignored else extras + integrity)
        data = _datagram(body + _tlv(_MI256, bytes(32)), rng, fingerprint=True)
        return data[:-1] + bytes([data[-1] ^ 1]) if spoil else data

    return build


#: The ordinary message, and the hostile ones.
ORDINARY: Callable[[random.Random], bytes] = lambda rng: _datagram(  # noqa: E731
    _tlv(0x0013, bytes(_BODY - 12)), rng, fingerprint=True, message_type=0x0017
)
BARE: Callable[[random.Random], bytes] = lambda rng: _datagram(  # noqa: E731
    _tlv(0x0013, bytes(_BODY - 4)), rng, fingerprint=False, message_type=0x0017
)
_N = stun.MAX_ATTRIBUTES
HOSTILE: dict[str, Callable[[random.Random], bytes]] = {
    "16k unknown": _flood(b"", _tlv(0x8888)),
    "16k required unknown": _flood(b"", _tlv(0x7777)),
    "16k repeated USERNAME": _flood(_tlv(0x0006, b"u"), _tlv(0x0006)),
    "16k after MI": _flood(_tlv(_MI, bytes(20)), _tlv(0x8888)),
    "16k after MI-SHA256": _flood(_tlv(_MI256, bytes(32)), _tlv(0x8888)),
    "16k PASSWORD-ALGORITHMS": _flood(
        b"", _tlv(0x8002, b"\x00\x01\x00\x00" * ((_BODY - 4) // 4))
    ),
    "32k UNKNOWN-ATTRIBUTES": _flood(
        b"", _tlv(0x000A, b"\x7f\xff" * ((_BODY - 4) // 2))
    ),
    "length past the end": _flood(b"", b"\x00\x13\xff\xff"),
    "every known": lambda rng: _datagram(_every_known(rng), rng, fingerprint=True),
    f"known+{_N} raw+MI+FP": _every_known_and_the_budget(ignored=False),
    f"known+MI+{_N} ignored+FP": _every_known_and_the_budget(ignored=True),
    f"known+{_N} raw, bad FP": _every_known_and_the_budget(ignored=False, spoil=True),
}


def _parser(build: Callable[[random.Random], bytes]) -> Callable[[], object]:
    """parse_message on the next of _VARIANTS variants of ``build``."""
    rng = random.Random(13)
    variants = itertools.cycle([build(rng) for _ in range(_VARIANTS)])
    parse = stun.parse_message

    def parse_next() -> object:
        try:
            return parse(next(variants))
        except StunParseError:
            return None

    return parse_next


@dataclass
class CostResult:
    case: str
    size: int
    rate: float  # parses per second of this case
    ordinary: float  # of the ordinary message, in the same rounds
    bare: float  # of the bare DATA message

    @property
    def ratio(self) -> float:
        """How many times the ordinary message's cost this case costs."""
        return self.ordinary / self.rate


def cost_cases(seconds: float, repeat: int) -> list[CostResult]:
    ordinary, bare = _parser(ORDINARY), _parser(BARE)
    size = len(ORDINARY(random.Random(0)))
    bare_rate = max(rate(bare, seconds) for _ in range(repeat))
    results = [CostResult("ordinary 64 KiB DATA+FP", size, 0.0, 0.0, bare_rate)]
    for case, build in HOSTILE.items():
        results.append(
            CostResult(
                case,
                len(build(random.Random(0))),
                *best_of(_parser(build), ordinary, seconds, repeat),
                bare_rate,
            )
        )
    results[0].rate = results[0].ordinary = max(r.ordinary for r in results[1:])
    return results


def print_costs(results: list[CostResult]) -> list[str]:
    """Print the cost table; return the cases over COST_LIMIT."""
    print(
        f"\n{'cost per datagram':28} {'bytes':>6} {'parses/s':>12} "
        f"{'x ordinary':>10} {'limit':>6} {'x bare':>7}"
    )
    missed = []
    for result in results:
        ok = result.ratio <= COST_LIMIT
        if not ok:
            missed.append(f"cost {result.case}")
        print(
            f"{result.case:28} {result.size:6} {result.rate:12,.0f} "
            f"{result.ratio:9.2f}x {COST_LIMIT:5.1f}x "
            f"{result.bare / result.rate:6.1f}x{'' if ok else '  MISSED'}"
        )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds, best kept")
    parser.add_argument(
        "--only",
        choices=["aioice", "cost"],
        help="run only the cases against aioice, or only the cost per datagram",
    )
    args = parser.parse_args()

    import aioice

    print(
        f"syncice codec vs aioice {aioice.__version__}, Python {sys.version.split()[0]}"
    )
    missed = []
    if args.only != "cost":
        results = stun_cases(args.seconds, args.repeat) + sdp_cases(
            args.seconds, args.repeat
        )
        print(
            f"{'case':28} {'syncice/s':>12} {'aioice/s':>12} {'ratio':>7} {'target':>7}"
        )
        for result in results:
            target = TARGETS[result.case.split()[0]]
            ok = target is None or result.ratio >= target
            if not ok:
                missed.append(result.case)
            print(
                f"{result.case:28} {result.ours:12,.0f} {result.theirs:12,.0f} "
                f"{result.ratio:6.2f}x "
                f"{'-' if target is None else f'{target:.1f}x':>7}"
                f"{'' if ok else '  MISSED'}"
            )
    if args.only != "aioice":
        missed += print_costs(cost_cases(args.seconds, args.repeat))
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
