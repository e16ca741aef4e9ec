"""Candidates and their SDP lines (:mod:`syncice.candidate`).

RFC 8839 §5.1 gives the grammar, RFC 8445 §5.1.1.3 and §5.1.2 the foundation
and priority, and aioice 0.13 the API and the line format to agree with.
"""

from __future__ import annotations

import copy
import enum
import pickle
import string
import sys
from pathlib import Path

import aioice.candidate
import pytest
from hypothesis import given

from syncice import Candidate, CandidateError, candidate_foundation, candidate_priority
from syncice.exceptions import IceError

# The strategies live with the fuzz harnesses, which import them by this name
# (fuzz/ is a directory of scripts, not a package); so does fuzz/deep.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
from candidate_strategies import (
    candidate_lines,
    candidates,
    canonical_line,
    fields,
    prefixed_lines,
    rebuild,
)

AIOICE_LINE = "6815297761 1 udp 659136 1.2.3.4 31102 typ host generation 0"
SRFLX_LINE = "2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 10.0.1.1 rport 8998"
IPV6_LINE = "1829461213 1 udp 2130706431 2001:db8::42 50000 typ host generation 0"
MDNS_HOST = "5a1b3c2d-0e9f-4a8b-9c7d-6e5f4a3b2c1d.local"


# --- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            AIOICE_LINE,
            (
                "6815297761",
                1,
                "udp",
                659136,
                "1.2.3.4",
                31102,
                "host",
                None,
                None,
                None,
                0,
                (),
            ),
            id="aioice-readme",
        ),
        pytest.param(
            SRFLX_LINE,
            (
                "2",
                1,
                "UDP",
                1694498815,
                "192.0.2.3",
                45664,
                "srflx",
                "10.0.1.1",
                8998,
                None,
                None,
                (),
            ),
            id="rfc-srflx",
        ),
        pytest.param(
            "3 2 udp 16777214 203.0.113.9 3478 typ relay raddr 192.0.2.3 rport 45664",
            (
                "3",
                2,
                "udp",
                16777214,
                "203.0.113.9",
                3478,
                "relay",
                "192.0.2.3",
                45664,
                None,
                None,
                (),
            ),
            id="relay",
        ),
        pytest.param(
            "4 1 udp 1862270975 198.51.100.20 50012 typ prflx raddr 10.0.0.5 "
            "rport 50012 generation 1",
            (
                "4",
                1,
                "udp",
                1862270975,
                "198.51.100.20",
                50012,
                "prflx",
                "10.0.0.5",
                50012,
                None,
                1,
                (),
            ),
            id="prflx",
        ),
        pytest.param(
            "4233069003 1 tcp 1518280447 192.0.2.56 9 typ host tcptype active "
            "generation 0 network-id 1",
            (
                "4233069003",
                1,
                "tcp",
                1518280447,
                "192.0.2.56",
                9,
                "host",
                None,
                None,
                "active",
                0,
                (("network-id", "1"),),
            ),
            id="tcp-active",
        ),
        pytest.param(
            "9 1 TCP 1015022079 203.0.113.70 0 typ host tcptype passive",
            (
                "9",
                1,
                "TCP",
                1015022079,
                "203.0.113.70",
                0,
                "host",
                None,
                None,
                "passive",
                None,
                (),
            ),
            id="tcp-passive",
        ),
        pytest.param(
            "a+/Z 256 tcp 2147483647 192.0.2.1 65535 typ host "
            "generation 4294967295 tcptype so",
            (
                "a+/Z",
                256,
                "tcp",
                2147483647,
                "192.0.2.1",
                65535,
                "host",
                None,
                None,
                "so",
                2**32 - 1,
                (),
            ),
            id="limits",
        ),
        pytest.param(
            IPV6_LINE,
            (
                "1829461213",
                1,
                "udp",
                2130706431,
                "2001:db8::42",
                50000,
                "host",
                None,
                None,
                None,
                0,
                (),
            ),
            id="ipv6",
        ),
        pytest.param(
            "1 1 udp 2 2001:0DB8:0000:0000:0000:0000:0000:0042 1 typ srflx "
            "raddr ::ffff:192.0.2.1 rport 2",
            (
                "1",
                1,
                "udp",
                2,
                "2001:0DB8:0000:0000:0000:0000:0000:0042",
                1,
                "srflx",
                "::ffff:192.0.2.1",
                2,
                None,
                None,
                (),
            ),
            id="ipv6-exploded-and-dotted",
        ),
        pytest.param(
            f"1f4712db 1 udp 2122260223 {MDNS_HOST} 54400 typ host generation 0 "
            "ufrag EsAw network-id 2 network-cost 10",
            (
                "1f4712db",
                1,
                "udp",
                2122260223,
                MDNS_HOST,
                54400,
                "host",
                None,
                None,
                None,
                0,
                (("ufrag", "EsAw"), ("network-id", "2"), ("network-cost", "10")),
            ),
            id="mdns-browser",
        ),
        pytest.param(
            "1 1 udp 1677729535 turn.example.com 3478 typ relay "
            "raddr 0.0.0.0 rport 0 x-future {a}",
            (
                "1",
                1,
                "udp",
                1677729535,
                "turn.example.com",
                3478,
                "relay",
                "0.0.0.0",
                0,
                None,
                None,
                (("x-future", "{a}"),),
            ),
            id="fqdn-unknown-extension",
        ),
    ],
)
def test_from_sdp(line: str, expected: tuple[object, ...]) -> None:
    candidate = Candidate.from_sdp(line)
    assert fields(candidate) == expected
    assert candidate.to_sdp() == line


@pytest.mark.parametrize("prefix", ["candidate:", "a=candidate:"])
@pytest.mark.parametrize("line", [AIOICE_LINE, SRFLX_LINE, IPV6_LINE])
def test_from_sdp_prefix(prefix: str, line: str) -> None:
    candidate = Candidate.from_sdp(prefix + line)
    assert candidate == Candidate.from_sdp(line)
    assert candidate.to_sdp() == line


def test_extension_order_is_kept() -> None:
    line = (
        "1 1 udp 1 192.0.2.1 9 typ host ufrag EsAw generation 2 x y "
        "tcptype passive ufrag again"
    )
    candidate = Candidate.from_sdp(line)
    assert candidate.generation == 2
    assert candidate.tcptype == "passive"
    assert candidate.extensions == (("ufrag", "EsAw"), ("x", "y"), ("ufrag", "again"))
    assert candidate.to_sdp() == line
    # The constructor writes tcptype and generation first, as aioice does.
    rebuilt = Candidate(
        "1", 1, "udp", 1, "192.0.2.1", 9, "host", None, None, "passive", 2,
        extensions=candidate.extensions,
    )  # fmt: skip
    assert rebuilt.to_sdp() == (
        "1 1 udp 1 192.0.2.1 9 typ host tcptype passive generation 2 "
        "ufrag EsAw x y ufrag again"
    )
    assert rebuilt.to_sdp() == canonical_line(line)
    assert rebuilt != candidate


def test_str_subclass_is_read_as_str() -> None:
    class Line(str):
        pass

    candidate = Candidate.from_sdp(Line(AIOICE_LINE))
    assert type(candidate.to_sdp()) is str
    assert type(candidate.host) is str
    assert candidate == Candidate.from_sdp(AIOICE_LINE)


@pytest.mark.parametrize("value", [b"1 1 udp 1 1.2.3.4 1 typ host", None, 5, ["1"]])
def test_from_sdp_rejects_non_str(value: object) -> None:
    with pytest.raises(TypeError, match=r"^sdp: must be str"):
        Candidate.from_sdp(value)  # type: ignore[arg-type]


# --- rejected lines ------------------------------------------------------------

H = "1 1 udp 1 192.0.2.1 9 typ host"  # a valid head to break
S = "1 1 udp 1 192.0.2.1 9 typ srflx"

REJECTED = [
    # (field the message starts with, line)
    ("foundation", ""),
    ("component", "1"),
    ("transport", "1 1"),
    ("priority", "1 1 udp"),
    ("host", "1 1 udp 1"),
    ("port", "1 1 udp 1 192.0.2.1"),
    ("typ", "1 1 udp 1 192.0.2.1 9"),
    ("type", "1 1 udp 1 192.0.2.1 9 typ"),
    ("foundation", " 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", "1(2) 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", '1"2 1 udp 1 192.0.2.1 9 typ host'),
    ("foundation", "f:x 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", "é 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", "x" * 33 + " 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", "candidate:candidate:1 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", "A=candidate:1 1 udp 1 192.0.2.1 9 typ host"),
    ("foundation", "candidate: 1 1 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 0 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 257 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 01 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 +1 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 -1 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 ٣ udp 1 192.0.2.1 9 typ host"),
    ("component", "1 1.0 udp 1 192.0.2.1 9 typ host"),
    ("component", "1 99999 udp 1 192.0.2.1 9 typ host"),
    ("component", "1  1 udp 1 192.0.2.1 9 typ host"),
    ("transport", "1 1 u/p 1 192.0.2.1 9 typ host"),
    ("transport", "1 1 (udp) 1 192.0.2.1 9 typ host"),
    ("transport", "1 1 udp\t 1 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp 0 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp 2147483648 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp 99999999999 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp 01 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp +5 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp 0x10 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp 1_0 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp ٣ 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp ² 192.0.2.1 9 typ host"),
    ("priority", "1 1 udp " + "9" * 5000 + " 192.0.2.1 9 typ host"),
    ("host", "1 1 udp 1 1.2.3.256 9 typ host"),
    ("host", "1 1 udp 1 01.2.3.4 9 typ host"),
    ("host", "1 1 udp 1 1.2.3 9 typ host"),
    ("host", "1 1 udp 1 1.2.3.4.5 9 typ host"),
    ("host", "1 1 udp 1 12345 9 typ host"),
    ("host", "1 1 udp 1 1::2::3 9 typ host"),
    ("host", "1 1 udp 1 ::1%eth0 9 typ host"),
    ("host", "1 1 udp 1 1:2:3:4:5:6:7:8:9 9 typ host"),
    ("host", "1 1 udp 1 1:2:3:4:5:6:7 9 typ host"),
    ("host", "1 1 udp 1 1::2:3:4:5:6:7:8 9 typ host"),
    ("host", "1 1 udp 1 1:2:3:4:5:6:7::8 9 typ host"),
    ("host", "1 1 udp 1 1:2:3:4:5:6::1.2.3.4 9 typ host"),
    ("host", "1 1 udp 1 [::1] 9 typ host"),
    ("host", "1 1 udp 1 a_b.local 9 typ host"),
    ("host", "1 1 udp 1 -a.local 9 typ host"),
    ("host", "1 1 udp 1 a..local 9 typ host"),
    ("host", "1 1 udp 1 é.local 9 typ host"),
    ("host", "1 1 udp 1 " + "a." * 127 + "com 9 typ host"),
    ("port", "1 1 udp 1 192.0.2.1 65536 typ host"),
    ("port", "1 1 udp 1 192.0.2.1 -1 typ host"),
    ("port", "1 1 udp 1 192.0.2.1 09 typ host"),
    ("port", "1 1 udp 1 192.0.2.1 x typ host"),
    ("port", "1 1 udp 1 192.0.2.1 123456 typ host"),
    ("typ", "1 1 udp 1 192.0.2.1 9 TYP host"),
    ("typ", "1 1 udp 1 192.0.2.1 9 type host"),
    ("type", "1 1 udp 1 192.0.2.1 9 typ ho/st"),
    ("type", "1 1 udp 1 192.0.2.1 9 typ "),
    ("raddr", f"{S} raddr"),
    ("raddr", f"{S} raddr 1.2.3.256 rport 9"),
    ("raddr", f"{S} raddr foo_bar rport 9"),
    ("rport", f"{S} raddr 10.0.0.1"),
    ("rport", f"{S} raddr 10.0.0.1 rport"),
    ("rport", f"{S} raddr 10.0.0.1 port 9"),
    ("rport", f"{S} raddr 10.0.0.1 generation 0"),
    ("rport", f"{S} raddr 10.0.0.1 rport 65536"),
    ("rport", f"{S} raddr 10.0.0.1 rport 09 generation 0"),
    ("rport", f"{S} rport 9"),
    ("rport", f"{S} rport 9 raddr 10.0.0.1"),
    ("raddr", f"{S} generation 0 raddr 10.0.0.1 rport 9"),
    ("typ", f"{H} typ host"),
    ("generation", f"{H} generation"),
    ("generation", f"{H} generation x"),
    ("generation", f"{H} generation -1"),
    ("generation", f"{H} generation 01"),
    ("generation", f"{H} generation 4294967296"),
    ("generation", f"{H} generation 99999999999"),
    ("generation", f"{H} generation 0 generation 0"),
    ("generation", f"{H} generation 0 ufrag x generation 1"),
    ("generation", f"{H} generation ٣"),
    ("tcptype", f"{H} tcptype"),
    ("tcptype", f"{H} tcptype Active"),
    ("tcptype", f"{H} tcptype active tcptype active"),
    ("extension", f"{H} ufrag"),
    ("extension", f"{H} generation 0 ufrag"),
    ("extension", f"{H} "),
    ("extension", f"{H}  ufrag x"),
    ("extension", f"{H} uf:rag x"),
    ("extension", f"{H} ufrag é"),
    ("extension", f"{H} ufrag x\x01"),
    ("extension", f"{H} ufrag x\n"),
    ("extension", f"{H} ufrag x\r\n"),
    ("extension", f"{H} " + "9" * 5000),
]


@pytest.mark.parametrize(
    ("field", "line"),
    [
        pytest.param(field, line, id=f"{field}:{line[:50]!r}")
        for field, line in REJECTED
    ],
)
def test_from_sdp_rejects(field: str, line: str) -> None:
    with pytest.raises(CandidateError) as info:
        Candidate.from_sdp(line)
    message = str(info.value)
    assert message.startswith(f"{field}: "), message
    assert len(message) < 200  # huge inputs are cut short in messages
    # The reference parser that the fast path defers to says the same.
    with pytest.raises(CandidateError) as reference:
        Candidate._parse(line)
    assert str(reference.value) == message


def test_candidate_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^priority: "):
        Candidate.from_sdp("1 1 udp 99999999999 1.2.3.4 1 typ host")
    assert issubclass(CandidateError, IceError)


def test_message_quotes_the_value_shortened() -> None:
    with pytest.raises(CandidateError) as info:
        Candidate.from_sdp("1 1 udp 1 " + "x" * 300 + "_ 9 typ host")
    assert str(info.value) == (
        "host: must be an IPv4 or IPv6 address or a host name, got '" + "x" * 56 + "..."
    )


@given(prefixed_lines())
def test_valid_lines_round_trip(line: str) -> None:
    candidate = Candidate.from_sdp(line)
    bare = line.split(":", 1)[1] if line.startswith(("candidate:", "a=")) else line
    assert candidate.to_sdp() == bare
    assert Candidate._parse(line) == candidate
    assert fields(Candidate._parse(line)) == fields(candidate)


@pytest.mark.parametrize(
    "line",
    [
        AIOICE_LINE,
        SRFLX_LINE,
        IPV6_LINE,
        f"1 1 udp 1 {MDNS_HOST} 9 typ host ufrag a tcptype so generation 7",
        "1 1 udp 1 2001:db8:85a3::8a2e:370:7334 9 typ srflx raddr ::1 rport 1",
        "1 1 udp 1 1:2:3:4:5:6:7:8 9 typ srflx raddr host.example rport 1",
    ],
)
@pytest.mark.parametrize("prefix", ["", "candidate:", "a=candidate:"])
def test_reference_parser_agrees(prefix: str, line: str) -> None:
    candidate = Candidate._parse(prefix + line)
    assert fields(candidate) == fields(Candidate.from_sdp(prefix + line))
    assert candidate.to_sdp() == line


# --- the constructor -----------------------------------------------------------


def test_constructor_writes_aioice_format() -> None:
    candidate = Candidate(
        "842163049", 1, "udp", 1677729535, "198.51.100.7", 50123, "srflx",
        "10.0.0.2", 50123, "passive", 0,
        extensions=[("ufrag", "EsAw"), ("network-cost", "50")],
    )  # fmt: skip
    assert candidate.to_sdp() == (
        "842163049 1 udp 1677729535 198.51.100.7 50123 typ srflx raddr 10.0.0.2 "
        "rport 50123 tcptype passive generation 0 ufrag EsAw network-cost 50"
    )
    assert candidate.extensions == (("ufrag", "EsAw"), ("network-cost", "50"))
    assert Candidate.from_sdp(candidate.to_sdp()) == candidate


def test_constructor_keywords_as_aioice() -> None:
    candidate = Candidate(
        foundation="1",
        component=1,
        transport="udp",
        priority=5,
        host="::1",
        port=9,
        type="host",
        related_address=None,
        related_port=None,
        tcptype=None,
        generation=None,
    )
    assert candidate.to_sdp() == "1 1 udp 5 ::1 9 typ host"
    assert candidate.extensions == ()


def test_constructor_takes_any_iterable_of_pairs() -> None:
    pairs = iter([("a", "1"), ("b", "2")])
    candidate = Candidate("1", 1, "udp", 1, "1.2.3.4", 9, "host", extensions=pairs)
    assert candidate.extensions == (("a", "1"), ("b", "2"))


class Number(enum.IntEnum):
    ONE = 1


def test_constructor_normalizes_subclasses() -> None:
    class Text(str):
        pass

    candidate = Candidate(
        Text("1"), Number.ONE, Text("udp"), Number.ONE, Text("1.2.3.4"),
        Number.ONE, Text("host"), Text("10.0.0.1"), Number.ONE, Text("so"),
        Number.ONE, extensions=[(Text("a"), Text("b"))],
    )  # fmt: skip
    assert candidate.to_sdp() == (
        "1 1 udp 1 1.2.3.4 1 typ host raddr 10.0.0.1 rport 1 tcptype so "
        "generation 1 a b"
    )
    assert {type(value) for value in fields(candidate)[:11]} == {str, int}
    assert type(candidate.extensions[0][0]) is str


GOOD = {
    "foundation": "1",
    "component": 1,
    "transport": "udp",
    "priority": 1,
    "host": "192.0.2.1",
    "port": 9,
    "type": "host",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("foundation", ""),
        ("foundation", "a(b)"),
        ("foundation", "a:b"),
        ("foundation", "a,b"),
        ("foundation", "x" * 33),
        ("component", 0),
        ("component", 257),
        ("transport", "u/p"),
        ("transport", ""),
        ("priority", 0),
        ("priority", 2**31),
        ("host", "1.2.3.256"),
        ("host", "fe80::1%eth0"),
        ("host", ""),
        ("host", "a b"),
        ("port", -1),
        ("port", 65536),
        ("type", "a b"),
        ("type", "é"),
    ],
)
def test_constructor_rejects_value(field: str, value: object) -> None:
    with pytest.raises(CandidateError, match=f"^{field}: "):
        Candidate(**{**GOOD, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("foundation", 1),
        ("component", True),
        ("component", "1"),
        ("component", 1.0),
        ("transport", None),
        ("priority", "1"),
        ("host", b"1.2.3.4"),
        ("port", None),
        ("type", 1),
    ],
)
def test_constructor_rejects_type(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=f"^{field}: must be "):
        Candidate(**{**GOOD, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "field", "error"),
    [
        ({"related_address": "10.0.0.1"}, "related_port", CandidateError),
        ({"related_port": 9}, "related_address", CandidateError),
        ({"related_address": "10.0.0.", "related_port": 9}, "related_address", None),
        ({"related_address": "::1", "related_port": 65536}, "related_port", None),
        ({"related_address": 1, "related_port": 9}, "related_address", TypeError),
        ({"related_address": "::1", "related_port": "9"}, "related_port", TypeError),
        ({"tcptype": "Active"}, "tcptype", None),
        ({"tcptype": 1}, "tcptype", TypeError),
        ({"generation": -1}, "generation", None),
        ({"generation": 2**32}, "generation", None),
        ({"generation": "0"}, "generation", TypeError),
        ({"extensions": [("generation", "0")]}, "generation", None),
        ({"extensions": [("tcptype", "so")]}, "tcptype", None),
        ({"extensions": [("raddr", "1.2.3.4")]}, "raddr", None),
        ({"extensions": [("rport", "9")]}, "rport", None),
        ({"extensions": [("typ", "host")]}, "typ", None),
        ({"extensions": [("uf:rag", "x")]}, "extension", None),
        ({"extensions": [("", "x")]}, "extension", None),
        ({"extensions": [("ufrag", "")]}, "extension", None),
        ({"extensions": [("ufrag", "a b")]}, "extension", None),
        ({"extensions": [("ufrag", "é")]}, "extension", None),
        ({"extensions": [("ufrag", "\x7f")]}, "extension", None),
        ({"extensions": ["ab"]}, "extensions", TypeError),
        ({"extensions": [["ufrag", "x"]]}, "extensions", TypeError),
        ({"extensions": [("a", "b", "c")]}, "extensions", TypeError),
        ({"extensions": [(1, "x")]}, "extension name", TypeError),
        ({"extensions": [("ufrag", 1)]}, "extension value", TypeError),
    ],
)
def test_constructor_rejects_option(
    options: dict[str, object], field: str, error: type[Exception] | None
) -> None:
    with pytest.raises(error or CandidateError, match=f"^{field}: "):
        Candidate(**GOOD, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "address",
    ["192.0.2.1", "::", "2001:db8:85a3::8a2e:370:7334", "::ffff:192.0.2.1", MDNS_HOST],
)
def test_constructor_accepts_addresses(address: str) -> None:
    candidate = Candidate(
        "1", 1, "udp", 1, address, 9, "srflx", related_address=address, related_port=9
    )
    assert candidate.host == candidate.related_address == address


@given(candidates())
def test_constructed_candidates_round_trip(candidate: Candidate) -> None:
    again = Candidate.from_sdp(candidate.to_sdp())
    assert again == candidate
    assert fields(again) == fields(candidate)


@given(candidate_lines())
def test_fields_rebuild_the_canonical_line(line: str) -> None:
    rebuilt = rebuild(Candidate.from_sdp(line))
    assert rebuilt.to_sdp() == canonical_line(line)


# --- value semantics -----------------------------------------------------------


def test_equality_and_hash() -> None:
    a = Candidate.from_sdp(AIOICE_LINE)
    b = Candidate("6815297761", 1, "udp", 659136, "1.2.3.4", 31102, "host", None,
                  None, None, 0)  # fmt: skip
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, Candidate.from_sdp("candidate:" + AIOICE_LINE)}) == 1
    assert a != Candidate.from_sdp(AIOICE_LINE.replace("31102", "31103"))
    assert a != AIOICE_LINE
    assert a != aioice.candidate.Candidate.from_sdp(AIOICE_LINE)
    assert {a: 1}[b] == 1


def test_equality_counts_extension_order() -> None:
    one = Candidate.from_sdp(f"{H} ufrag x generation 0")
    two = Candidate.from_sdp(f"{H} generation 0 ufrag x")
    assert fields(one) == fields(two)
    assert one != two  # the lines differ
    three = Candidate.from_sdp(f"{H} a 1 b 2")
    four = Candidate.from_sdp(f"{H} b 2 a 1")
    assert three != four
    assert three.extensions != four.extensions


@pytest.mark.parametrize(
    "name",
    [
        "foundation",
        "component",
        "transport",
        "priority",
        "host",
        "port",
        "type",
        "related_address",
        "related_port",
        "tcptype",
        "generation",
        "extensions",
        "other",
    ],
)
def test_immutable(name: str) -> None:
    candidate = Candidate.from_sdp(SRFLX_LINE)
    with pytest.raises(AttributeError):
        setattr(candidate, name, 1)
    with pytest.raises(AttributeError):
        delattr(candidate, name)
    assert candidate.to_sdp() == SRFLX_LINE
    assert not hasattr(candidate, "__dict__")


def test_copy_and_pickle() -> None:
    candidate = Candidate.from_sdp(f"{SRFLX_LINE} ufrag x generation 3")
    assert copy.copy(candidate) is candidate
    assert copy.deepcopy(candidate) is candidate
    again = pickle.loads(pickle.dumps(candidate))
    assert again == candidate
    assert fields(again) == fields(candidate)


def test_repr_evaluates_to_an_equal_candidate() -> None:
    candidate = Candidate.from_sdp("a=candidate:" + SRFLX_LINE)
    assert repr(candidate) == f"Candidate.from_sdp({SRFLX_LINE!r})"
    assert eval(repr(candidate), {"Candidate": Candidate}) == candidate


# --- can_pair_with -------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        ("1 1 udp 1 192.0.2.1 9 typ host", "2 1 udp 1 198.51.100.1 7 typ srflx "
         "raddr 10.0.0.1 rport 1", True),
        ("1 1 udp 1 192.0.2.1 9 typ host", "1 1 UDP 1 192.0.2.2 9 typ host", True),
        ("1 1 udp 1 ::1 9 typ host", "1 1 udp 1 2001:db8::1 9 typ host", True),
        ("1 1 udp 1 1:2:3:4:5:6:7:8 9 typ host", "1 1 udp 1 ::1 9 typ host", True),
        ("1 1 udp 1 192.0.2.1 9 typ host", "1 2 udp 1 192.0.2.2 9 typ host", False),
        ("1 1 udp 1 192.0.2.1 9 typ host", "1 1 tcp 1 192.0.2.2 9 typ host", False),
        ("1 1 udp 1 192.0.2.1 9 typ host", "1 1 udp 1 ::1 9 typ host", False),
        ("1 1 udp 1 ::1 9 typ host", "1 1 udp 1 192.0.2.1 9 typ host", False),
        ("1 1 udp 1 192.0.2.1 9 typ host", f"1 1 udp 1 {MDNS_HOST} 9 typ host", False),
        (f"1 1 udp 1 {MDNS_HOST} 9 typ host", f"1 1 udp 1 {MDNS_HOST} 9 typ host",
         False),
    ],
)  # fmt: skip
def test_can_pair_with(local: str, remote: str, expected: bool) -> None:
    a = Candidate.from_sdp(local)
    b = Candidate.from_sdp(remote)
    assert a.can_pair_with(b) is expected
    assert b.can_pair_with(a) is expected


# --- priority and foundation ---------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ((1, "host"), 2130706431),  # (126 << 24) + (65535 << 8) + 255
        ((2, "host"), 2130706430),
        ((1, "prflx"), 1862270975),
        ((1, "srflx"), 1694498815),
        ((1, "relay"), 16777215),
        ((256, "relay"), 16776960),
        ((1, "host", 0), 2113929471),
        ((256, "relay", 1), 256),
    ],
)
def test_candidate_priority(arguments: tuple[int, str], expected: int) -> None:
    assert candidate_priority(*arguments) == expected


@pytest.mark.parametrize(
    ("arguments", "field", "error"),
    [
        ((0, "host"), "candidate_component", CandidateError),
        ((257, "host"), "candidate_component", CandidateError),
        ((1, "host", -1), "local_pref", CandidateError),
        ((1, "host", 65536), "local_pref", CandidateError),
        ((1, "HOST"), "candidate_type", CandidateError),
        ((1, "other"), "candidate_type", CandidateError),
        ((256, "relay", 0), "priority", CandidateError),
        ((True, "host"), "candidate_component", TypeError),
        (("1", "host"), "candidate_component", TypeError),
        ((1, None), "candidate_type", TypeError),
        ((1, "host", 1.0), "local_pref", TypeError),
    ],
)
def test_candidate_priority_rejects(
    arguments: tuple[object, ...], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"^{field}: "):
        candidate_priority(*arguments)  # type: ignore[arg-type]


def test_candidate_priority_is_a_valid_priority() -> None:
    for component in (1, 2, 255, 256):
        for kind in ("host", "prflx", "srflx", "relay"):
            for local_pref in (0, 1, 65535):
                if (component, kind, local_pref) == (256, "relay", 0):
                    continue
                priority = candidate_priority(component, kind, local_pref)
                # The constructor checks the range.
                Candidate("1", component, "udp", priority, "1.2.3.4", 9, kind)


def test_candidate_foundation() -> None:
    foundation = candidate_foundation("host", "udp", "192.0.2.1")
    assert foundation == "b2a2cf914295916d"  # stable across runs and platforms
    assert foundation == candidate_foundation("host", "UDP", "192.0.2.1")
    assert len(foundation) == 16
    assert set(foundation) <= set(string.hexdigits.lower())
    Candidate(foundation, 1, "udp", 1, "192.0.2.1", 9, "host")
    others = {
        candidate_foundation("srflx", "udp", "192.0.2.1"),
        candidate_foundation("host", "tcp", "192.0.2.1"),
        candidate_foundation("host", "udp", "192.0.2.2"),
        candidate_foundation("host", "udp", "::1"),
        # No separator trick makes two inputs one key.
        candidate_foundation("host|udp", "", "192.0.2.1"),
        candidate_foundation("host", "udp|192.0.2.1", ""),
        # The server is part of the key when given (a syncice extension).
        candidate_foundation("host", "udp", "192.0.2.1", server="198.51.100.1"),
        candidate_foundation("host", "udp", "192.0.2.1", server="198.51.100.2"),
    }
    assert foundation not in others
    assert len(others) == 8


def test_candidate_foundation_rejects_non_str() -> None:
    with pytest.raises(TypeError, match=r"^base_address: must be str"):
        candidate_foundation("host", "udp", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^server: must be str"):
        candidate_foundation("host", "udp", "192.0.2.1", server=1)  # type: ignore[arg-type]


# --- aioice as the peer --------------------------------------------------------

# Lines aioice 0.13 reads and writes alike: it keeps no other extensions.
SHARED_LINES = [
    AIOICE_LINE,
    SRFLX_LINE,
    IPV6_LINE,
    "candidate:3 2 udp 16777214 203.0.113.9 3478 typ relay raddr 192.0.2.3 "
    "rport 45664 generation 2",
    "4233069003 1 tcp 1518280447 192.0.2.56 9 typ host tcptype active generation 0",
    "9 1 TCP 1015022079 203.0.113.70 0 typ host tcptype passive",
    f"1f4712db 1 udp 2122260223 {MDNS_HOST} 54400 typ host generation 0",
    "7 1 udp 2122262783 2001:db8:85a3::8a2e:370:7334 50001 typ host",
]


def aioice_fields(candidate: aioice.candidate.Candidate) -> tuple[object, ...]:
    return (
        candidate.foundation,
        candidate.component,
        candidate.transport,
        candidate.priority,
        candidate.host,
        candidate.port,
        candidate.type,
        candidate.related_address,
        candidate.related_port,
        candidate.tcptype,
        candidate.generation,
        (),
    )


@pytest.mark.interop
@pytest.mark.parametrize("line", SHARED_LINES)
def test_aioice_reads_our_lines(line: str) -> None:
    ours = Candidate.from_sdp(line)
    theirs = aioice.candidate.Candidate.from_sdp(ours.to_sdp())
    assert aioice_fields(theirs) == fields(ours)
    assert theirs.to_sdp() == ours.to_sdp()


@pytest.mark.interop
@pytest.mark.parametrize("line", SHARED_LINES)
def test_we_read_aioice_lines(line: str) -> None:
    theirs = aioice.candidate.Candidate.from_sdp(
        line.partition("candidate:")[2] or line
    )
    ours = Candidate.from_sdp(theirs.to_sdp())
    assert fields(ours) == aioice_fields(theirs)


@pytest.mark.interop
@given(candidates())
def test_aioice_formats_our_fields_alike(candidate: Candidate) -> None:
    theirs = aioice.candidate.Candidate(*fields(candidate)[:11])
    if not candidate.extensions:
        assert theirs.to_sdp() == candidate.to_sdp()
    else:
        assert candidate.to_sdp().startswith(theirs.to_sdp() + " ")
    assert (
        aioice_fields(aioice.candidate.Candidate.from_sdp(candidate.to_sdp()))[:11]
        == fields(candidate)[:11]
    )


@pytest.mark.interop
def test_aioice_priority_agrees() -> None:
    for component in (1, 2, 256):
        for kind in ("host", "prflx", "srflx", "relay"):
            for local_pref in (1, 65535):
                assert candidate_priority(
                    component, kind, local_pref
                ) == aioice.candidate.candidate_priority(component, kind, local_pref)


@pytest.mark.interop
def test_aioice_pairs_alike() -> None:
    lines = [AIOICE_LINE, IPV6_LINE, SRFLX_LINE, SRFLX_LINE.replace(" 1 UDP", " 2 UDP")]
    for a in lines:
        for b in lines:
            ours = Candidate.from_sdp(a).can_pair_with(Candidate.from_sdp(b))
            theirs = aioice.candidate.Candidate.from_sdp(a).can_pair_with(
                aioice.candidate.Candidate.from_sdp(b)
            )
            assert ours is theirs


@pytest.mark.parametrize(
    "foundation", ["some-foundation", "ipv6-foundation", "a.b", "x_1~", "a+b/c", "1"]
)
def test_foundation_accepts_what_aioice_accepts(foundation: str) -> None:
    """aioice takes any foundation (its tests use "some-foundation"); syncice
    takes RFC 8839's ice-chars and RFC 4566's token-chars, which keep the line
    parseable: the candidate round-trips through its SDP line."""
    candidate = Candidate(**{**GOOD, "foundation": foundation})  # type: ignore[arg-type]
    assert candidate.foundation == foundation
    assert Candidate.from_sdp(candidate.to_sdp()) == candidate


def test_address_cache_stays_bounded_and_never_keeps_an_invalid_text() -> None:
    from syncice import candidate as module

    module._KNOWN_ADDRESSES.clear()
    for n in range(3 * module._KNOWN_LIMIT):
        Candidate.from_sdp(
            f"1 1 udp 1 10.{n >> 16}.{(n >> 8) & 255}.{n & 255} 9 typ host"
        )
        assert len(module._KNOWN_ADDRESSES) <= module._KNOWN_LIMIT
    long_name = "a" * 60 + "." + "b" * 60 + ".local"
    Candidate.from_sdp(f"1 1 udp 1 {long_name} 9 typ host")
    assert long_name not in module._KNOWN_ADDRESSES  # too long to keep
    for text in ("1.2.3.256", "::1::2", "-bad-"):
        with pytest.raises(CandidateError):
            Candidate.from_sdp(f"1 1 udp 1 {text} 9 typ host")
        with pytest.raises(CandidateError):
            Candidate("1", 1, "udp", 1, text, 9, "host")
        assert text not in module._KNOWN_ADDRESSES


@pytest.mark.parametrize("line", ["10.0.0.1", "::1", "2001:db8::42", "x.local"])
def test_a_remembered_address_gives_what_a_fresh_check_gives(line: str) -> None:
    from syncice import candidate as module

    sdp = f"1 1 udp 1 {line} 9 typ srflx raddr {line} rport 9"
    module._KNOWN_ADDRESSES.clear()
    cold = Candidate.from_sdp(sdp)
    warm = Candidate.from_sdp(sdp)
    assert cold == warm == Candidate._parse(sdp)
    assert module._known_family(line) == module._address_family(line)
