"""Hypothesis strategies for ICE candidates and their SDP lines (RFC 8839 §5.1).

- :func:`candidates` builds :class:`~syncice.candidate.Candidate` objects with
  every field drawn: IPv4, IPv6 (compressed, exploded, upper case, with a
  dotted IPv4 tail) and host names (FQDN, mDNS ``.local``), related addresses,
  ``tcptype``, ``generation`` and other extension attributes.
- :func:`candidate_lines` writes valid bare lines directly, with ``tcptype``
  and ``generation`` anywhere among the extension attributes, which the
  constructor never does; :func:`prefixed_lines` adds ``candidate:`` or
  ``a=candidate:``.
- :func:`mutated_lines` damages valid lines the way a broken peer would:
  dropped, swapped and repeated tokens, numbers at and past their limits,
  stray characters and spaces, keywords out of place.
- :func:`address_like` draws text near the address grammars, for the
  address checks.

Every strategy draws only what the module promises to keep: a valid line is
canonical (one space between fields, no leading zeros), so that
``from_sdp(line).to_sdp() == line``.
"""

from __future__ import annotations

import ipaddress
import string

from hypothesis import strategies as st

from syncice.candidate import Candidate

__all__ = [
    "EDGE_TOKENS",
    "ICE_CHARS",
    "RESERVED_NAMES",
    "TOKEN_CHARS",
    "VCHARS",
    "address_like",
    "addresses",
    "candidate_lines",
    "candidates",
    "canonical_line",
    "extension_names",
    "extension_values",
    "foundations",
    "host_names",
    "ipv4_addresses",
    "ipv6_addresses",
    "mutated_lines",
    "prefixed_lines",
    "tokens",
]

#: ice-char (RFC 8839 §5.1).
ICE_CHARS = string.ascii_letters + string.digits + "+/"
#: token-char (RFC 4566 §9): %x21-7E but '"', '(', ')', ',', '/', ':' to '@',
#: '[' to ']'.
TOKEN_CHARS = "".join(
    c for c in map(chr, range(0x21, 0x7F)) if c not in '"(),/:;<=>?@[\\]'
)
#: VCHAR (RFC 5234): the characters of an extension attribute's value.
VCHARS = "".join(map(chr, range(0x21, 0x7F)))
#: Names that are not free extension attributes.
RESERVED_NAMES = frozenset({"typ", "raddr", "rport", "tcptype", "generation"})
#: Values to swap for a token: numbers at and past their limits, and spellings
#: that int() or ipaddress would take but the grammar does not.
EDGE_TOKENS = (
    "0",
    "1",
    "01",
    "00",
    "-1",
    "+5",
    " 5",
    "5 ",
    "1_0",
    "0x10",
    "٣",
    "²",
    "255",
    "256",
    "257",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "99999999999",
    "9" * 5000,
    "",
    "typ",
    "raddr",
    "rport",
    "generation",
    "tcptype",
    "active",
    "host",
    "udp",
    "::",
    ":::",
    "1::2::3",
    "::ffff:1.2.3.4",
    "::1%eth0",
    "1.2.3.256",
    "01.2.3.4",
    "1.2.3",
    "a-.local",
    "x" * 64 + ".local",
    "\x00",
    "\t",
    "é",
    "candidate:",
)

_LDH = string.ascii_letters + string.digits + "-"
_ALNUM = string.ascii_letters + string.digits


def foundations() -> st.SearchStrategy[str]:
    return st.text(ICE_CHARS, min_size=1, max_size=32)


def tokens(max_size: int = 10) -> st.SearchStrategy[str]:
    return st.text(TOKEN_CHARS, min_size=1, max_size=max_size)


def ipv4_addresses() -> st.SearchStrategy[str]:
    return st.ip_addresses(v=4).map(str)


def _ipv6_spellings(address: ipaddress.IPv6Address) -> list[str]:
    """RFC 4291 §2.2 spellings of one address: compressed, full, upper case,
    and, when its last two groups are written out, with a dotted IPv4 tail."""
    compressed = str(address)
    spellings = [compressed, address.exploded, compressed.upper()]
    parts = compressed.split(":")
    if len(parts) >= 3 and parts[-1] and parts[-2]:
        tail = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        spellings.append(":".join(parts[:-2]) + f":{tail}")
    return spellings


def ipv6_addresses() -> st.SearchStrategy[str]:
    return st.ip_addresses(v=6).flatmap(
        lambda address: st.sampled_from(
            _ipv6_spellings(ipaddress.IPv6Address(int(address)))
        )
    )


@st.composite
def _labels(draw: st.DrawFn, *, last: bool = False) -> str:
    """An LDH label (RFC 1123 §2.1); the last label of a name has a letter."""
    first = draw(st.sampled_from(_ALNUM))
    middle = draw(st.text(_LDH, max_size=8))
    end = draw(st.sampled_from(_ALNUM)) if middle else ""
    label = first + middle + end
    if last and not any(c.isalpha() for c in label):
        label += draw(st.sampled_from(string.ascii_letters))
    return label


@st.composite
def _fqdns(draw: st.DrawFn) -> str:
    labels = draw(st.lists(_labels(), max_size=3))
    return ".".join([*labels, draw(_labels(last=True))])


def host_names() -> st.SearchStrategy[str]:
    """FQDNs, and mDNS names as browsers write them (a UUID then .local)."""
    return st.one_of(_fqdns(), st.uuids().map(lambda uuid: f"{uuid}.local"))


def addresses() -> st.SearchStrategy[str]:
    return st.one_of(ipv4_addresses(), ipv6_addresses(), host_names())


def extension_names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["ufrag", "network-id", "network-cost"]),
        tokens().filter(lambda name: name not in RESERVED_NAMES),
    )


def extension_values() -> st.SearchStrategy[str]:
    return st.text(VCHARS, min_size=1, max_size=12)


_EXTENSIONS = st.lists(st.tuples(extension_names(), extension_values()), max_size=4)
_RELATED = st.none() | st.tuples(addresses(), st.integers(0, 65535))


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    """A candidate built by the constructor, every field drawn."""
    related = draw(_RELATED)
    return Candidate(
        foundation=draw(foundations()),
        component=draw(st.integers(1, 256)),
        transport=draw(st.sampled_from(["udp", "tcp", "UDP"]) | tokens()),
        priority=draw(st.integers(1, 2**31 - 1)),
        host=draw(addresses()),
        port=draw(st.integers(0, 65535)),
        type=draw(st.sampled_from(["host", "srflx", "prflx", "relay"]) | tokens()),
        related_address=None if related is None else related[0],
        related_port=None if related is None else related[1],
        tcptype=draw(st.none() | st.sampled_from(["active", "passive", "so"])),
        generation=draw(st.none() | st.integers(0, 2**32 - 1)),
        extensions=draw(_EXTENSIONS),
    )


@st.composite
def candidate_lines(draw: st.DrawFn) -> str:
    """A valid bare line, written directly: ``tcptype`` and ``generation``
    (each at most once) may stand anywhere among the extension attributes."""
    fields = [
        draw(foundations()),
        str(draw(st.integers(1, 256))),
        draw(st.sampled_from(["udp", "tcp", "UDP"]) | tokens()),
        str(draw(st.integers(1, 2**31 - 1))),
        draw(addresses()),
        str(draw(st.integers(0, 65535))),
        "typ",
        draw(st.sampled_from(["host", "srflx", "prflx", "relay"]) | tokens()),
    ]
    related = draw(_RELATED)
    if related is not None:
        fields += ["raddr", related[0], "rport", str(related[1])]
    pairs = draw(_EXTENSIONS)
    if draw(st.booleans()):
        tcptype = draw(st.sampled_from(["active", "passive", "so"]))
        pairs.insert(draw(st.integers(0, len(pairs))), ("tcptype", tcptype))
    if draw(st.booleans()):
        generation = str(draw(st.integers(0, 2**32 - 1)))
        pairs.insert(draw(st.integers(0, len(pairs))), ("generation", generation))
    for name, value in pairs:
        fields += [name, value]
    return " ".join(fields)


def prefixed_lines() -> st.SearchStrategy[str]:
    return st.tuples(
        st.sampled_from(["", "candidate:", "a=candidate:"]), candidate_lines()
    ).map("".join)


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    """A valid line with one to three of: a token dropped, two tokens
    swapped, a token repeated or replaced (often by an edge value), a
    character inserted or deleted, a space doubled or made a tab, a keyword
    upper-cased."""
    line = draw(prefixed_lines())
    for _ in range(draw(st.integers(1, 3))):
        bits = line.split(" ")
        index = draw(st.integers(0, len(bits) - 1))
        other = draw(st.integers(0, len(bits) - 1))
        kind = draw(st.integers(0, 8))
        if kind == 0:
            del bits[index]
        elif kind == 1:
            bits[index], bits[other] = bits[other], bits[index]
        elif kind == 2:
            bits.insert(other, bits[index])
        elif kind == 3:
            bits[index] = draw(st.sampled_from(EDGE_TOKENS))
        elif kind == 4:
            bits[index] = draw(st.text(max_size=6))
        elif kind == 5:
            bits[index] = bits[index].upper()
        line = " ".join(bits)
        at = draw(st.integers(0, len(line)))
        if kind == 6:
            line = line[:at] + draw(st.characters()) + line[at:]
        elif kind == 7:
            line = line[:at] + line[at + 1 :]
        elif kind == 8:
            line = line.replace(" ", draw(st.sampled_from(["  ", "\t", "\n"])), 1)
    return line


def address_like() -> st.SearchStrategy[str]:
    """Text near the address grammars: valid addresses, lightly damaged ones,
    and short strings over their alphabets."""
    alphabet = "0123456789abcdefABCDEF:.-%xz"
    damaged = st.tuples(addresses(), st.integers(0, 40), st.text(alphabet, max_size=3))
    return st.one_of(
        addresses(),
        damaged.map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),
        st.text(alphabet, max_size=24),
        st.sampled_from(EDGE_TOKENS),
    )


def canonical_line(line: str) -> str:
    """The bare line the constructor writes for the fields of valid ``line``:
    ``tcptype``, then ``generation``, then the other extension attributes.

    An oracle for the checks, written apart from :mod:`syncice.candidate`.
    """
    for prefix in ("candidate:", "a=candidate:"):
        if line.startswith(prefix):
            line = line[len(prefix) :]
            break
    bits = line.split(" ")
    start = 12 if len(bits) > 8 and bits[8] == "raddr" else 8
    pairs = list(zip(bits[start::2], bits[start + 1 :: 2], strict=True))
    first = [p for p in pairs if p[0] == "tcptype"] + [
        p for p in pairs if p[0] == "generation"
    ]
    rest = [p for p in pairs if p[0] not in ("tcptype", "generation")]
    return " ".join(bits[:start] + [x for pair in first + rest for x in pair])


def fields(candidate: Candidate) -> tuple[object, ...]:
    """Every public field, for comparisons that do not go through ``==``."""
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
        candidate.extensions,
    )


def rebuild(candidate: Candidate) -> Candidate:
    """The same fields through the constructor."""
    return Candidate(
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
        extensions=candidate.extensions,
    )
