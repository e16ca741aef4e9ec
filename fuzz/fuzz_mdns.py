"""Fuzz harnesses for the mDNS resolver and responder (:mod:`syncice.mdns`).

Invariant of every harness: whatever datagrams arrive on the mDNS socket, from
whatever address, :meth:`MdnsProtocol.receive_datagram` does not raise; what
the protocol then sends is either one of its own queries (for a name it was
asked to resolve) or an answer that names only a name it owns, with the
address it published; it reports only names it was asked to resolve; and its
state stays bounded (a cache of at most ``max_cache`` names, all of them
asked for). ``handle_timer`` then runs without raising either.

For coverage-guided fuzzing, hand atheris ``fuzz_one_input_datagram``, or
:func:`check_datagram`, which takes the raw bytes.
"""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from harness_tools import atheris_target, examples
from hypothesis import given
from hypothesis import strategies as st

from syncice.mdns import (
    MDNS_PORT,
    MdnsConfig,
    MdnsProtocol,
    NameResolved,
    NameUnresolved,
)

OURS = "5a1b3c2d-0e9f-4a8b-9c7d-6e5f4a3b2c1d.local"
OUR_V4 = "192.0.2.1"
OUR_V6 = "2001:db8::1"
ASKED = "0b8a2c7e-4f1d-4e5a-9c3b-2d6e8f0a1b2c.local"
STRANGER = "peer.local"
NAMES = (OURS, ASKED, STRANGER, OURS.upper(), "a.b.local", "local")
SOURCES = (("192.0.2.7", MDNS_PORT), ("fe80::7", MDNS_PORT), ("192.0.2.7", 40000))
CONFIG = MdnsConfig(max_cache=4, max_pending=4, max_queued=8)


def make_protocol() -> MdnsProtocol:
    """Publishes OURS (IPv4 and IPv6) and resolves ASKED, its query sent."""
    protocol = MdnsProtocol(CONFIG)
    protocol.publish(OURS, OUR_V4)
    protocol.publish(OURS, OUR_V6)
    protocol.resolve(ASKED, 0.0)
    protocol.datagrams_to_send(0.0)
    return protocol


def _check(
    protocol: MdnsProtocol, datagrams: list[tuple[bytes, tuple[str, int]]]
) -> None:
    asked = {dns.name.from_text(ASKED)}
    ours = dns.name.from_text(OURS)
    published = {
        ipaddress.ip_address(OUR_V4).packed,
        ipaddress.ip_address(OUR_V6).packed,
    }
    now = 1.0
    for data, source in datagrams:
        protocol.receive_datagram(data, source, now)
        now += 0.3
        protocol.handle_timer(now)
    for data, _ in protocol.datagrams_to_send(now):
        message = dns.message.from_wire(data)
        if message.flags & dns.flags.QR:
            for rrset in message.answer:
                assert rrset.name == ours, rrset
                assert {rd.to_wire() for rd in rrset} <= published
        else:
            assert {q.name for q in message.question} <= asked
    while (event := protocol.next_event()) is not None:
        assert isinstance(event, (NameResolved, NameUnresolved))
        assert event.name == ASKED
    assert len(protocol._cache) <= CONFIG.max_cache
    assert set(protocol._cache) <= asked
    assert set(protocol._pending) <= asked
    protocol.handle_timer(now + 10.0)


def check_datagram(data: bytes, source: tuple[str, int] = SOURCES[0]) -> None:
    """The invariant for one datagram from ``source``."""
    _check(make_protocol(), [(data, source)])


def _message(
    names: list[str], rdtypes: list[int], rdclass: int, response: bool
) -> bytes:
    message = dns.message.Message(id=0)
    if response:
        message.flags = dns.flags.QR | dns.flags.AA
    klass = dns.rdataclass.RdataClass.make(rdclass)
    for name, rdtype in zip(names, rdtypes, strict=False):
        kind = dns.rdatatype.RdataType.make(rdtype)
        rrset = dns.rrset.RRset(dns.name.from_text(name), klass, kind)
        if response:
            size = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 16}.get(kind, 3)
            rrset.update_ttl(120)
            rrset.add(dns.rdata.GenericRdata(klass, kind, bytes(range(size))))
            message.answer.append(rrset)
        else:
            message.question.append(rrset)
    return message.to_wire()


def _seeds() -> tuple[bytes, ...]:
    return (
        b"",
        _message([OURS], [1], 1, False),
        _message([OURS, OURS], [28, 255], 0x8001, False),
        _message([STRANGER], [1], 1, False),
        _message([ASKED], [1], 0x8001, True),
        _message([ASKED, ASKED], [28, 1], 1, True),
        _message([STRANGER, OURS], [1, 28], 0x8001, True),
    )


SEEDS = _seeds()
_RDTYPES = st.sampled_from([1, 28, 255, 16, 12, 0])
_CLASSES = st.sampled_from([1, 0x8001, 3, 255, 0x8003])
_STRUCTURED = st.builds(
    _message,
    st.lists(st.sampled_from(NAMES[:4]), min_size=1, max_size=4),
    st.lists(_RDTYPES, min_size=1, max_size=4),
    _CLASSES,
    st.booleans(),
)
_GARBAGE = st.one_of(st.binary(max_size=300), st.sampled_from(SEEDS), _STRUCTURED)


@examples(*SEEDS)
@given(st.binary(max_size=600))
def fuzz_datagram(data: bytes) -> None:
    """Any datagram from the mDNS port: no raise, no answer for others."""
    check_datagram(data)


@given(st.sampled_from(SEEDS), st.data(), st.sampled_from(SOURCES))
def fuzz_mutated_datagram(
    seed: bytes, draw: st.DataObject, source: tuple[str, int]
) -> None:
    """Near-valid queries and answers, bytes changed, cut or extended."""
    data = bytearray(seed)
    for _ in range(draw.draw(st.integers(0, 8))):
        if not data:
            break
        i = draw.draw(st.integers(0, len(data) - 1))
        data[i] = draw.draw(st.integers(0, 255))
    data = (
        data[: draw.draw(st.integers(0, len(data)))]
        if draw.draw(st.booleans())
        else data + draw.draw(st.binary(max_size=16))
    )
    check_datagram(bytes(data), source)


@given(_STRUCTURED, st.sampled_from(SOURCES))
def fuzz_structured_message(data: bytes, source: tuple[str, int]) -> None:
    """Well-formed queries and answers of any name, type and class."""
    check_datagram(data, source)


@given(st.lists(st.tuples(_GARBAGE, st.sampled_from(SOURCES)), max_size=12))
def fuzz_datagram_sequence(datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
    """Many datagrams in a row, time moving: the same, and bounded state."""
    _check(make_protocol(), datagrams)


fuzz_one_input_datagram = atheris_target(fuzz_datagram)
