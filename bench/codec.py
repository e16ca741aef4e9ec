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
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from aioice import stun as aioice_stun
from aioice.candidate import Candidate as AioiceCandidate

from syncice import stun
from syncice.candidate import Candidate

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds, best kept")
    args = parser.parse_args()

    import aioice

    print(
        f"syncice codec vs aioice {aioice.__version__}, Python {sys.version.split()[0]}"
    )
    results = stun_cases(args.seconds, args.repeat) + sdp_cases(
        args.seconds, args.repeat
    )
    print(f"{'case':28} {'syncice/s':>12} {'aioice/s':>12} {'ratio':>7} {'target':>7}")
    missed = []
    for result in results:
        target = TARGETS[result.case.split()[0]]
        ok = target is None or result.ratio >= target
        if not ok:
            missed.append(result.case)
        print(
            f"{result.case:28} {result.ours:12,.0f} {result.theirs:12,.0f} "
            f"{result.ratio:6.2f}x {'-' if target is None else f'{target:.1f}x':>7}"
            f"{'' if ok else '  MISSED'}"
        )
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
