"""The sans-IO mDNS resolver and responder (``syncice.mdns``), layer 1.

No sockets, threads or clocks: datagrams are handed from one
:class:`MdnsProtocol` to another by hand, and time is a number the test
chooses, stepped to :meth:`MdnsProtocol.get_timer`. Messages on the wire are
built and checked with dnspython.
"""

from __future__ import annotations

import ipaddress
import random
import uuid

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncice.mdns import (
    MDNS_ADDRESS,
    MDNS_ADDRESS6,
    MDNS_PORT,
    MdnsConfig,
    MdnsEvent,
    MdnsProtocol,
    NameResolved,
    NameUnresolved,
    create_mdns_hostname,
    is_mdns_hostname,
)

NAME = "5a1b3c2d-0e9f-4a8b-9c7d-6e5f4a3b2c1d.local"
OTHER = "0b8a2c7e-4f1d-4e5a-9c3b-2d6e8f0a1b2c.local"
PEER = ("192.0.2.7", MDNS_PORT)
PEER6 = ("fe80::7", MDNS_PORT)
GROUP = (MDNS_ADDRESS, MDNS_PORT)
FLUSH_IN = dns.rdataclass.RdataClass.make(0x8001)


def events(protocol: MdnsProtocol) -> list[MdnsEvent]:
    out = []
    while (event := protocol.next_event()) is not None:
        out.append(event)
    return out


def query(
    name: str,
    *rdtypes: dns.rdatatype.RdataType,
    rdclass: int = dns.rdataclass.IN,
) -> bytes:
    message = dns.message.Message(id=0)
    for rdtype in rdtypes or (dns.rdatatype.A,):
        message.question.append(
            dns.rrset.RRset(
                dns.name.from_text(name),
                dns.rdataclass.RdataClass.make(rdclass),
                rdtype,
            )
        )
    return message.to_wire()


def answer(
    name: str,
    *addresses: str,
    ttl: int = 120,
    rdclass: int = 0x8001,
    section: str = "answer",
) -> bytes:
    """A response with one record per address, of class ``rdclass``."""
    message = dns.message.Message(id=0)
    message.flags = dns.flags.QR | dns.flags.AA
    rdclass_ = dns.rdataclass.RdataClass.make(rdclass)
    for address in addresses:
        ip = ipaddress.ip_address(address)
        rdtype = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
        rrset = dns.rrset.RRset(dns.name.from_text(name), rdclass_, rdtype)
        rrset.update_ttl(ttl)
        rrset.add(dns.rdata.GenericRdata(rdclass_, rdtype, ip.packed))
        getattr(message, section).append(rrset)
    return message.to_wire()


def deliver(sender: MdnsProtocol, receiver: MdnsProtocol, now: float) -> int:
    """Hand what ``sender`` queued to ``receiver``; how many datagrams."""
    out = sender.datagrams_to_send(now)
    for data, _ in out:
        receiver.receive_datagram(data, PEER, now)
    return len(out)


def resolved_pair(
    config: MdnsConfig | None = None,
) -> tuple[MdnsProtocol, MdnsProtocol]:
    """A resolver and a responder that publishes NAME (IPv4 and IPv6)."""
    resolver, responder = MdnsProtocol(config), MdnsProtocol(config)
    responder.publish(NAME, "192.0.2.1")
    responder.publish(NAME, "2001:db8::1")
    return resolver, responder


# --- names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [NAME, NAME.upper(), "a.local", "a-b.local", "A1.LOCAL", "x" * 63 + ".local"],
)
def test_mdns_hostnames(name: str) -> None:
    assert is_mdns_hostname(name)


@pytest.mark.parametrize(
    "name",
    [
        "local",
        ".local",
        "a.b.local",
        "a.local.",
        "-a.local",
        "a-.local",
        "a_b.local",
        "é.local",
        "x" * 64 + ".local",
        "a.localhost",
        "a.example",
        "192.0.2.1",
        "",
        None,
        b"a.local",
    ],
)
def test_not_mdns_hostnames(name: object) -> None:
    assert not is_mdns_hostname(name)


def test_created_names_are_random_uuid4_names() -> None:
    name = create_mdns_hostname(random.Random(1))
    assert name == create_mdns_hostname(random.Random(1))
    label = name.removesuffix(".local")
    assert uuid.UUID(label).version == 4
    assert str(uuid.UUID(label)) == label
    assert is_mdns_hostname(name)
    system = {create_mdns_hostname() for _ in range(8)}
    assert len(system) == 8
    assert all(uuid.UUID(n.removesuffix(".local")).version == 4 for n in system)


@pytest.mark.parametrize("field", ["retransmit", "max_cache", "ttl"])
@pytest.mark.parametrize("value", [0, -1, "1"])
def test_config_must_be_positive(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        MdnsConfig(**{field: value})  # type: ignore[arg-type]


# --- resolving -----------------------------------------------------------------


def test_query_answer_resolved() -> None:
    resolver, responder = resolved_pair()
    resolver.resolve(NAME.upper(), 0.0)
    [(data, addr)] = resolver.datagrams_to_send(0.0)
    assert addr == GROUP
    sent = dns.message.from_wire(data)
    assert sent.id == 0
    assert sent.flags == 0
    assert [(q.name, q.rdclass, q.rdtype) for q in sent.question] == [
        (dns.name.from_text(NAME), dns.rdataclass.IN, dns.rdatatype.A),
        (dns.name.from_text(NAME), dns.rdataclass.IN, dns.rdatatype.AAAA),
    ]
    responder.receive_datagram(data, PEER, 0.0)
    [(reply, to)] = responder.datagrams_to_send(0.0)
    assert to == GROUP
    message = dns.message.from_wire(reply)
    assert message.flags & dns.flags.QR
    assert message.flags & dns.flags.AA
    assert [(r.rdclass, r.rdtype, r.ttl) for r in message.answer] == [
        (FLUSH_IN, dns.rdatatype.A, 120),
        (FLUSH_IN, dns.rdatatype.AAAA, 120),
    ]
    assert events(resolver) == []
    resolver.receive_datagram(reply, PEER, 0.01)
    assert events(resolver) == [
        NameResolved(name=NAME, addresses=("192.0.2.1", "2001:db8::1"))
    ]
    assert resolver.get_timer() is None
    assert resolver.stats.queries_sent == 1
    assert responder.stats.answers_sent == 1


def test_retransmits_then_reports_unresolved() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 10.0)
    sends = [10.0] if resolver.datagrams_to_send(10.0) else []
    resolver.handle_timer(10.1)  # nothing is due yet
    assert resolver.datagrams_to_send(10.1) == []
    while (at := resolver.get_timer()) is not None:
        resolver.handle_timer(at)
        if resolver.datagrams_to_send(at):
            sends.append(at)
    # The interval doubles from 0.25 s; the name is given up after 2 s.
    assert sends == [10.0, 10.25, 10.75, 11.75]
    assert events(resolver) == [NameUnresolved(name=NAME)]
    assert resolver.stats.queries_sent == 4


def test_answer_after_a_retransmission() -> None:
    resolver, responder = resolved_pair()
    resolver.resolve(NAME, 0.0)
    resolver.datagrams_to_send(0.0)  # lost
    resolver.handle_timer(0.25)
    deliver(resolver, responder, 0.25)
    deliver(responder, resolver, 0.25)
    assert [type(e) for e in events(resolver)] == [NameResolved]


def test_a_pending_name_is_queried_once() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.resolve(NAME.upper(), 0.1)
    assert len(resolver.datagrams_to_send(0.1)) == 1
    assert resolver.get_timer() == 0.25


def test_pending_names_are_bounded() -> None:
    resolver = MdnsProtocol(MdnsConfig(max_pending=1))
    resolver.resolve(NAME, 0.0)
    resolver.resolve(OTHER, 0.0)
    assert events(resolver) == [NameUnresolved(name=OTHER)]
    assert len(resolver.datagrams_to_send(0.0)) == 1


def test_fail_pending_reports_every_name() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.resolve(OTHER, 0.0)
    resolver.fail_pending()
    assert events(resolver) == [NameUnresolved(name=NAME), NameUnresolved(name=OTHER)]
    assert resolver.get_timer() is None


def test_resolve_refuses_malformed_names() -> None:
    with pytest.raises(ValueError, match="not an mDNS host name"):
        MdnsProtocol().resolve("a.b.local", 0.0)


def test_send_queue_is_bounded() -> None:
    resolver = MdnsProtocol(MdnsConfig(max_queued=1))
    resolver.resolve(NAME, 0.0)
    resolver.resolve(OTHER, 0.0)
    assert len(resolver.datagrams_to_send(0.0)) == 1
    assert resolver.stats.queue_drops == 1


# --- the cache -----------------------------------------------------------------


def test_cached_answers_resolve_at_once_until_their_ttl() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.datagrams_to_send(0.0)
    resolver.receive_datagram(answer(NAME, "192.0.2.1", ttl=30), PEER, 1.0)
    events(resolver)
    assert resolver.cached(NAME, 30.9) == ("192.0.2.1",)
    resolver.resolve(NAME, 30.9)
    assert resolver.datagrams_to_send(30.9) == []
    assert events(resolver) == [NameResolved(name=NAME, addresses=("192.0.2.1",))]
    # Expired: queried again.
    assert resolver.cached(NAME, 31.0) is None
    resolver.resolve(NAME, 31.0)
    assert len(resolver.datagrams_to_send(31.0)) == 1
    assert events(resolver) == []
    assert resolver.cached(NAME, 31.0) is None


def test_cached_lookups_of_unknown_or_malformed_names() -> None:
    resolver = MdnsProtocol()
    assert resolver.cached(NAME, 0.0) is None
    assert resolver.cached("not a name", 0.0) is None


def test_ttl_is_capped() -> None:
    resolver = MdnsProtocol(MdnsConfig(max_ttl=60))
    resolver.resolve(NAME, 0.0)
    resolver.receive_datagram(answer(NAME, "192.0.2.1", ttl=86400), PEER, 0.0)
    assert resolver.cached(NAME, 59.9) is not None
    assert resolver.cached(NAME, 60.0) is None


def test_the_lowest_ttl_of_a_name_counts() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    message = dns.message.from_wire(answer(NAME, "192.0.2.1", ttl=100))
    message.additional.extend(
        dns.message.from_wire(answer(NAME, "2001:db8::1", ttl=10)).answer
    )
    resolver.receive_datagram(message.to_wire(), PEER, 0.0)
    assert events(resolver) == [
        NameResolved(name=NAME, addresses=("192.0.2.1", "2001:db8::1"))
    ]
    assert resolver.cached(NAME, 10.0) is None


def test_goodbye_removes_a_cached_name() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.receive_datagram(answer(NAME, "192.0.2.1"), PEER, 0.0)
    resolver.receive_datagram(answer(NAME, "192.0.2.1", ttl=0), PEER, 1.0)
    assert resolver.cached(NAME, 1.0) is None


def test_goodbye_does_not_resolve_a_pending_name() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.receive_datagram(answer(NAME, "192.0.2.1", ttl=0), PEER, 0.0)
    assert events(resolver) == []
    assert resolver.get_timer() == 0.25


def test_cache_is_bounded_oldest_first() -> None:
    resolver = MdnsProtocol(MdnsConfig(max_cache=2))
    names = [f"n{i}.local" for i in range(3)]
    for i, name in enumerate(names[:2]):
        resolver.resolve(name, 0.0)
        resolver.receive_datagram(answer(name, f"192.0.2.{i}"), PEER, 0.0)
    # A refreshed answer makes n0 the newest: n1 goes first.
    resolver.receive_datagram(answer(names[0], "192.0.2.9"), PEER, 1.0)
    resolver.resolve(names[2], 1.0)
    resolver.receive_datagram(answer(names[2], "192.0.2.2"), PEER, 1.0)
    assert [resolver.cached(n, 1.0) for n in names] == [
        ("192.0.2.9",),
        None,
        ("192.0.2.2",),
    ]


def test_unsolicited_answers_are_ignored() -> None:
    resolver = MdnsProtocol()
    resolver.receive_datagram(answer(NAME, "192.0.2.1"), PEER, 0.0)
    assert resolver.stats.ignored == 1
    assert resolver.cached(NAME, 0.0) is None
    resolver.resolve(NAME, 0.0)
    assert len(resolver.datagrams_to_send(0.0)) == 1  # not resolved from it
    assert events(resolver) == []


@given(
    st.lists(
        st.tuples(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True), st.ip_addresses()),
        max_size=50,
    )
)
def test_unsolicited_answers_create_no_state(
    answers: list[tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]],
) -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    for label, address in answers:
        resolver.receive_datagram(answer(f"{label}.local", str(address)), PEER, 0.0)
    assert all(resolver.cached(f"{label}.local", 0.0) is None for label, _ in answers)
    assert resolver.stats.ignored == len(answers)
    assert events(resolver) == []


def test_answers_in_the_additional_section_count() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    reply = answer(NAME.upper(), "192.0.2.1", "192.0.2.1", section="additional")
    resolver.receive_datagram(reply, PEER, 0.0)
    assert events(resolver) == [NameResolved(name=NAME, addresses=("192.0.2.1",))]


def test_plain_class_in_answers_count() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.receive_datagram(answer(NAME, "2001:db8::5", rdclass=1), PEER, 0.0)
    assert events(resolver) == [NameResolved(name=NAME, addresses=("2001:db8::5",))]


@pytest.mark.parametrize(
    ("rdclass", "rdtype", "data"),
    [
        (dns.rdataclass.HS, dns.rdatatype.A, b"\xc0\x00\x02\x01"),
        (FLUSH_IN, dns.rdatatype.A, b"\xc0\x00\x02\x01\x00"),  # 5 bytes
        (FLUSH_IN, dns.rdatatype.AAAA, b"\x20\x01" * 4),  # 8 bytes
        (FLUSH_IN, dns.rdatatype.TXT, b"\x03abc"),
    ],
)
def test_answers_without_a_usable_address_are_ignored(
    rdclass: dns.rdataclass.RdataClass, rdtype: dns.rdatatype.RdataType, data: bytes
) -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    message = dns.message.Message(id=0)
    message.flags = dns.flags.QR
    rrset = dns.rrset.RRset(dns.name.from_text(NAME), rdclass, rdtype)
    rrset.add(dns.rdata.GenericRdata(rdclass, rdtype, data))
    message.answer.append(rrset)
    resolver.receive_datagram(message.to_wire(), PEER, 0.0)
    assert events(resolver) == []
    assert resolver.stats.ignored == 1
    assert resolver.stats.malformed == 0


def test_answers_from_another_port_are_ignored() -> None:
    resolver = MdnsProtocol()
    resolver.resolve(NAME, 0.0)
    resolver.receive_datagram(answer(NAME, "192.0.2.1"), ("192.0.2.7", 5354), 0.0)
    assert events(resolver) == []
    assert resolver.stats.ignored == 1


# --- the responder -------------------------------------------------------------


def test_answers_only_for_our_names() -> None:
    responder = MdnsProtocol()
    responder.publish(NAME, "192.0.2.1")
    responder.receive_datagram(query(OTHER), PEER, 0.0)
    responder.receive_datagram(query("a.b.local"), PEER, 0.0)
    assert responder.datagrams_to_send(0.0) == []
    assert responder.stats.ignored == 2
    responder.receive_datagram(query(OTHER, dns.rdatatype.A), PEER, 0.0)
    responder.receive_datagram(query(NAME), PEER, 0.0)
    [(data, _)] = responder.datagrams_to_send(0.0)
    [rrset] = dns.message.from_wire(data).answer
    assert rrset.name == dns.name.from_text(NAME)


def test_answers_the_family_asked() -> None:
    responder = MdnsProtocol()
    responder.publish(NAME, "192.0.2.1")
    responder.receive_datagram(query(NAME, dns.rdatatype.AAAA), PEER, 0.0)
    assert responder.datagrams_to_send(0.0) == []  # no IPv6 address
    responder.receive_datagram(query(NAME, dns.rdatatype.TXT), PEER, 0.0)
    assert responder.datagrams_to_send(0.0) == []
    responder.receive_datagram(query(NAME, dns.rdatatype.ANY), PEER, 0.0)
    [(data, _)] = responder.datagrams_to_send(0.0)
    assert [r.rdtype for r in dns.message.from_wire(data).answer] == [dns.rdatatype.A]


def test_qu_questions_are_answered_other_classes_not() -> None:
    responder = MdnsProtocol()
    responder.publish(NAME, "192.0.2.1")
    responder.receive_datagram(query(NAME, rdclass=dns.rdataclass.CH), PEER, 0.0)
    assert responder.datagrams_to_send(0.0) == []
    responder.receive_datagram(query(NAME, rdclass=0x8001), PEER, 0.0)
    assert len(responder.datagrams_to_send(0.0)) == 1


def test_answers_go_to_the_group_of_the_query_family() -> None:
    responder = MdnsProtocol()
    responder.publish(NAME, "2001:db8::1")
    responder.receive_datagram(query(NAME, dns.rdatatype.AAAA), PEER6, 0.0)
    [(_, to)] = responder.datagrams_to_send(0.0)
    assert to == (MDNS_ADDRESS6, MDNS_PORT)


def test_answers_are_rate_limited() -> None:
    responder = MdnsProtocol()
    responder.publish(NAME, "192.0.2.1")
    sent = []
    for now in (0.0, 0.5, 0.999, 1.0, 1.5, 2.0):
        responder.receive_datagram(query(NAME), PEER, now)
        if responder.datagrams_to_send(now):
            sent.append(now)
    assert sent == [0.0, 1.0, 2.0]


def test_queries_from_another_port_are_ignored() -> None:
    responder = MdnsProtocol()
    responder.publish(NAME, "192.0.2.1")
    responder.receive_datagram(query(NAME), ("192.0.2.7", 40000), 0.0)
    assert responder.datagrams_to_send(0.0) == []


def test_publish_replaces_and_unpublish_stops() -> None:
    resolver, responder = MdnsProtocol(), MdnsProtocol()
    responder.publish(NAME, "192.0.2.1")
    responder.publish(NAME.upper(), "192.0.2.2")
    resolver.resolve(NAME, 0.0)
    deliver(resolver, responder, 0.0)
    deliver(responder, resolver, 0.0)
    assert events(resolver) == [NameResolved(name=NAME, addresses=("192.0.2.2",))]
    responder.unpublish(NAME)
    responder.unpublish(OTHER)  # not ours: nothing happens
    responder.unpublish("not a name")
    responder.receive_datagram(query(NAME), PEER, 5.0)
    assert responder.datagrams_to_send(5.0) == []


@pytest.mark.parametrize(
    ("name", "address", "match"),
    [
        ("a.b.local", "192.0.2.1", "not an mDNS host name"),
        (NAME, "192.0.2.256", "not an IP address"),
        (NAME, "fe80::1%eth0", "scoped"),
    ],
)
def test_publish_checks_its_arguments(name: str, address: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MdnsProtocol().publish(name, address)


@given(
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", fullmatch=True),
    st.ip_addresses(),
    st.floats(min_value=0, max_value=1e6),
)
def test_what_is_published_resolves(
    label: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address, now: float
) -> None:
    name = f"{label}.local"
    resolver, responder = MdnsProtocol(), MdnsProtocol()
    responder.publish(name, str(address))
    resolver.resolve(name, now)
    assert deliver(resolver, responder, now) == 1
    assert deliver(responder, resolver, now) == 1
    assert events(resolver) == [
        NameResolved(name=name.lower(), addresses=(address.compressed,))
    ]


# --- bytes from the network ------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\x00" * 11, query(NAME)[:-1], b"\xff" * 40, b"\x00" * 9001],
)
def test_malformed_datagrams_are_counted(data: bytes) -> None:
    protocol = MdnsProtocol()
    protocol.publish(NAME, "192.0.2.1")
    protocol.resolve(NAME, 0.0)
    protocol.datagrams_to_send(0.0)
    protocol.receive_datagram(data, PEER, 0.0)
    assert protocol.stats.malformed == 1
    assert protocol.datagrams_to_send(0.0) == []
    assert events(protocol) == []


def test_other_opcodes_are_ignored() -> None:
    protocol = MdnsProtocol()
    protocol.publish(NAME, "192.0.2.1")
    message = dns.message.from_wire(query(NAME))
    message.set_opcode(dns.opcode.STATUS)
    protocol.receive_datagram(message.to_wire(), PEER, 0.0)
    assert protocol.stats.ignored == 1
    assert protocol.datagrams_to_send(0.0) == []


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_nor_answer_for_others(data: bytes) -> None:
    protocol = MdnsProtocol()
    protocol.publish(NAME, "192.0.2.1")
    protocol.resolve(OTHER, 0.0)
    protocol.datagrams_to_send(0.0)
    protocol.receive_datagram(data, PEER, 0.0)
    stats = protocol.stats
    assert stats.malformed + stats.ignored + stats.answers_sent >= 1 or events(protocol)
    for reply, _ in protocol.datagrams_to_send(0.0):
        names = {r.name for r in dns.message.from_wire(reply).answer}
        assert names == {dns.name.from_text(NAME)}


# Chromium 156's announcement of its name for 10.78.0.1, as captured on the
# wire: an A record, and an NSEC record whose next domain name is a
# compression pointer to its own name (services/network/mdns_responder.cc,
# CreateNsecRdata; RFC 6762 §18.14 allows it, dnspython >= 2.8 refuses it).
CHROMIUM_NAME = "96a35380-d02c-4930-a4e4-a26ab4cb132d.local"
CHROMIUM_ANNOUNCEMENT = bytes.fromhex(
    "000084000000000100000001"
    "2439366133353338302d643032632d343933302d613465342d613236616234636231333264"
    "056c6f63616c00"
    "0001800100000078"
    "00040a4e0001"
    "2439366133353338302d643032632d343933302d613465342d613236616234636231333264"
    "056c6f63616c00"
    "002f800100000078"
    "0005c046000140"
)


def test_chromium_answers_with_a_compressed_nsec_resolve() -> None:
    protocol = MdnsProtocol()
    protocol.resolve(CHROMIUM_NAME, 0.0)
    protocol.datagrams_to_send(0.0)
    protocol.receive_datagram(CHROMIUM_ANNOUNCEMENT, PEER, 0.01)
    assert events(protocol) == [
        NameResolved(name=CHROMIUM_NAME, addresses=("10.78.0.1",))
    ]
    assert protocol.stats.malformed == 0


def test_a_compressed_nsec_does_not_excuse_other_errors() -> None:
    # The same message cut inside its A record's rdata: still malformed.
    protocol = MdnsProtocol()
    protocol.resolve(CHROMIUM_NAME, 0.0)
    protocol.datagrams_to_send(0.0)
    truncated = CHROMIUM_ANNOUNCEMENT[:60]
    protocol.receive_datagram(truncated, PEER, 0.01)
    assert events(protocol) == []
    assert protocol.stats.malformed == 1


# The NSEC record of CHROMIUM_ANNOUNCEMENT first (its name in full at offset
# 12, its next domain name a pointer back to it), then what follows it.
_NSEC_FIRST = bytes.fromhex(
    "0000840000000002000000002439366133353338302d643032632d343933302d613465"
    "342d613236616234636231333264056c6f63616c00002f800100000078"
    "0005c00c000140"
)


def test_a_compressed_nsec_before_another_error_is_still_malformed() -> None:
    # A record cut inside its header after the NSEC: the second parse, which
    # skips the NSEC, reports that error too, and the message is refused.
    protocol = MdnsProtocol()
    protocol.resolve(CHROMIUM_NAME, 0.0)
    protocol.datagrams_to_send(0.0)
    protocol.receive_datagram(_NSEC_FIRST + bytes.fromhex("c00c00"), PEER, 0.01)
    assert events(protocol) == []
    assert protocol.stats.malformed == 1


def test_a_second_parse_that_raises_drops_the_datagram(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # dnspython raises for some errors even with continue_on_error; no
    # crafted message reaches that here, so the parser is made to.
    strict = dns.message.from_wire

    def from_wire(data: bytes, **kwargs: object) -> dns.message.Message:
        if kwargs.get("continue_on_error"):
            raise ValueError("made to fail")
        return strict(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dns.message, "from_wire", from_wire)
    protocol = MdnsProtocol()
    protocol.resolve(CHROMIUM_NAME, 0.0)
    protocol.datagrams_to_send(0.0)
    protocol.receive_datagram(CHROMIUM_ANNOUNCEMENT, PEER, 0.01)
    assert events(protocol) == []
    assert protocol.stats.malformed == 1
