"""Tests of the STUN codec: RFC vectors, every attribute, every rejection."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib
from typing import Any, cast

import pytest

from syncice import stun
from syncice.exceptions import StunError, StunParseError
from syncice.stun import (
    COOKIE,
    ChannelData,
    Class,
    Message,
    Method,
    PasswordAlgorithm,
    StreamFramer,
    parse_message,
)
from tests.vectors import (
    MATRIX_PASSWORD,
    MATRIX_USERNAME,
    SAMPLE_IPV4_RESPONSE,
    SAMPLE_IPV6_RESPONSE,
    SAMPLE_LONG_TERM_REQUEST,
    SAMPLE_REQUEST,
    SAMPLE_SHA256_REQUEST,
    SHORT_TERM_PASSWORD,
    unhex,
)

TID = bytes(range(1, 13))
KEY = b"0123456789abcdef"


def header(message_type: int, length: int, tid: bytes = TID) -> bytes:
    return struct.pack("!HHI", message_type, length, COOKIE) + tid


def attr(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) & 3)


def message_bytes(*attributes: bytes, message_type: int = 0x0001) -> bytes:
    body = b"".join(attributes)
    return header(message_type, len(body)) + body


def with_fingerprint(data: bytes) -> bytes:
    data = data[:2] + struct.pack("!H", len(data) - 20 + 8) + data[4:]
    return data + struct.pack("!HHI", 0x8028, 4, zlib.crc32(data) ^ 0x5354554E)


# --- RFC 5769 and RFC 8489 vectors ---------------------------------------------------


def test_rfc5769_sample_request() -> None:
    message = parse_message(SAMPLE_REQUEST)
    assert message.method is Method.BINDING
    assert message.message_class is Class.REQUEST
    assert message.transaction_id == unhex("b7e7a701bc34d686fa87dfae")
    assert message.attributes == {
        "SOFTWARE": "STUN test client",
        "PRIORITY": 0x6E0001FF,
        "ICE-CONTROLLED": 0x932FF9B151263B36,
        "USERNAME": "evtj:h6vY",
    }
    assert message.has_fingerprint
    assert message.integrity == "sha1"
    assert message.check_integrity(stun.short_term_key(SHORT_TERM_PASSWORD))
    assert not message.check_integrity(stun.short_term_key("wrong"))
    encoded = message.encode(
        key=stun.short_term_key(SHORT_TERM_PASSWORD), fingerprint=True, padding=0x20
    )
    assert encoded == SAMPLE_REQUEST


@pytest.mark.parametrize(
    ("vector", "address"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
)
def test_rfc5769_sample_responses(vector: bytes, address: tuple[str, int]) -> None:
    key = stun.short_term_key(SHORT_TERM_PASSWORD)
    message = parse_message(vector)
    assert message.message_class is Class.SUCCESS
    assert message.attributes == {
        "SOFTWARE": "test vector",
        "XOR-MAPPED-ADDRESS": address,
    }
    assert message.check_integrity(key)
    assert message.encode(key=key, fingerprint=True, padding=0x20) == vector


def test_rfc5769_long_term_request() -> None:
    message = parse_message(SAMPLE_LONG_TERM_REQUEST)
    assert message.attributes == {
        "USERNAME": MATRIX_USERNAME,
        "NONCE": b"f//499k954d6OL34oL9FSTvy64sA",
        "REALM": "example.org",
    }
    assert not message.has_fingerprint
    key = stun.long_term_key(MATRIX_USERNAME, "example.org", MATRIX_PASSWORD)
    assert (
        key == hashlib.md5(f"{MATRIX_USERNAME}:example.org:TheMatrIX".encode()).digest()
    )
    assert message.check_integrity(key)
    assert message.encode(key=key) == SAMPLE_LONG_TERM_REQUEST


def test_rfc8489_sha256_request() -> None:
    message = parse_message(SAMPLE_SHA256_REQUEST)
    assert message.attributes == {
        "USERHASH": stun.userhash(MATRIX_USERNAME, "example.org"),
        "NONCE": b"obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA",
        "REALM": "example.org",
        "PASSWORD-ALGORITHM": (PasswordAlgorithm.SHA256, b""),
    }
    assert message.integrity == "sha256"
    key = stun.long_term_key(
        MATRIX_USERNAME, "example.org", MATRIX_PASSWORD, PasswordAlgorithm.SHA256
    )
    assert message.check_integrity(key)
    assert not message.check_integrity(
        stun.long_term_key(MATRIX_USERNAME, "example.org", MATRIX_PASSWORD)
    )
    assert message.encode(key=key, integrity="sha256") == SAMPLE_SHA256_REQUEST


# --- round trips of every attribute --------------------------------------------------

EVERY_ATTRIBUTE: dict[str, Any] = {
    "MAPPED-ADDRESS": ("198.51.100.7", 4000),
    "USERNAME": "ufrag:peer",
    "ERROR-CODE": (487, "Role Conflict"),
    "UNKNOWN-ATTRIBUTES": (0x0031, 0x7777),
    "CHANNEL-NUMBER": 0x4001,
    "LIFETIME": 600,
    "XOR-PEER-ADDRESS": ("2001:db8::1", 5000),
    "DATA": b"\x00\x01payload",
    "REALM": "example.org",
    "NONCE": b"obMatJos2AAAC",
    "XOR-RELAYED-ADDRESS": ("203.0.113.9", 49152),
    "REQUESTED-ADDRESS-FAMILY": 2,
    "EVEN-PORT": True,
    "REQUESTED-TRANSPORT": 17,
    "DONT-FRAGMENT": None,
    "PASSWORD-ALGORITHM": (2, b""),
    "USERHASH": bytes(range(32)),
    "XOR-MAPPED-ADDRESS": ("2001:db8::3", 1),
    "RESERVATION-TOKEN": b"12345678",
    "PRIORITY": 0x7EFFFFFF,
    "USE-CANDIDATE": None,
    "ADDITIONAL-ADDRESS-FAMILY": 2,
    "PASSWORD-ALGORITHMS": ((2, b""), (1, b"abc"), (0x1234, b"12345678")),
    "ALTERNATE-DOMAIN": "turn.example.org",
    "SOFTWARE": "syncice \u2603",
    "ALTERNATE-SERVER": ("2001:db8::2", 3478),
    "ICE-CONTROLLED": 2**64 - 1,
    "ICE-CONTROLLING": 0,
    "NOMINATION": 0x00FFFFFF,
}


def test_every_attribute_is_covered_by_the_table() -> None:
    assert set(EVERY_ATTRIBUTE) == set(stun.ATTRIBUTE_TYPES)
    assert set(EVERY_ATTRIBUTE) == set(stun.Attributes.__annotations__)


@pytest.mark.parametrize("name", sorted(EVERY_ATTRIBUTE))
@pytest.mark.parametrize("integrity", ["sha1", "sha256", "both"])
def test_attribute_round_trip(name: str, integrity: Any) -> None:
    attributes = cast(stun.Attributes, {name: EVERY_ATTRIBUTE[name]})
    message = Message(Method.ALLOCATE, Class.SUCCESS, TID, attributes)
    data = message.encode(key=KEY, integrity=integrity, fingerprint=True)
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.check_integrity(KEY)
    assert parsed.integrity == ("sha1" if integrity == "sha1" else "sha256")
    name_, value = stun.decode_attribute(
        stun.ATTRIBUTE_TYPES[name],
        attribute_value(data, stun.ATTRIBUTE_TYPES[name]),
        TID,
    )
    assert (name_, value) == (name, EVERY_ATTRIBUTE[name])


def attribute_value(data: bytes, wanted: int) -> bytes:
    pos = 20
    while pos < len(data):
        attr_type, length = struct.unpack_from("!HH", data, pos)
        if attr_type == wanted:
            return data[pos + 4 : pos + 4 + length]
        pos += 4 + length + (-length & 3)
    raise AssertionError(f"no attribute 0x{wanted:04x}")


def test_all_attributes_in_one_message() -> None:
    message = Message(Method.REFRESH, Class.ERROR, TID, dict(EVERY_ATTRIBUTE))  # type: ignore[arg-type]
    assert parse_message(bytes(message)) == message
    assert message.error_code == 487


def test_every_method_and_class_round_trip() -> None:
    for method in [*Method, 0x000, 0xFFF, 0x0AB]:
        for message_class in Class:
            message = Message(method, message_class, TID)
            parsed = parse_message(bytes(message))
            assert (parsed.method, parsed.message_class) == (method, message_class)
            assert parsed == message


def test_known_values_on_the_wire() -> None:
    data = bytes(
        Message(
            Method.CHANNEL_BIND,
            Class.INDICATION,
            TID,
            {"CHANNEL-NUMBER": 0x4001, "EVEN-PORT": False, "ERROR-CODE": (420, "x")},
        )
    )
    assert data[:2] == b"\x00\x19"  # ChannelBind 0x009 | indication 0x010
    assert attr(0x000C, b"\x40\x01\x00\x00") in data
    assert attr(0x0018, b"\x00") in data
    assert attr(0x0009, b"\x00\x00\x04\x14x") in data
    xor = bytes(
        Message(
            Method.BINDING, Class.SUCCESS, TID, {"XOR-MAPPED-ADDRESS": ("0.0.0.0", 0)}
        )
    )
    assert xor[24:] == b"\x00\x01\x21\x12\x21\x12\xa4\x42"


def test_random_transaction_ids() -> None:
    ids = {stun.random_transaction_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 12 for i in ids)
    assert len(Message(Method.BINDING, Class.REQUEST).transaction_id) == 12


def test_message_equality_and_repr() -> None:
    a = Message(Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 1})
    b = Message(Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 1})
    assert a == b
    assert a != Message(Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 2})
    assert a != Message(
        Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 1}, [(0x8888, b"")]
    )
    assert a != "not a message"
    assert repr(a) == f"Message(BINDING, REQUEST, {TID.hex()}, {{'PRIORITY': 1}})"
    extra = Message(0x0AB, Class.ERROR, TID, {}, [(0x8888, b"x")])
    assert (
        repr(extra)
        == f"Message(0x0ab, ERROR, {TID.hex()}, {{}}, extra=[(34952, b'x')])"
    )
    with pytest.raises(TypeError):
        hash(a)


@pytest.mark.parametrize("bad", [b"short", b"x" * 13, "a" * 12])
def test_transaction_id_must_be_12_bytes(bad: Any) -> None:
    with pytest.raises(ValueError, match="transaction_id"):
        Message(Method.BINDING, Class.REQUEST, bad)


def test_parse_accepts_bytes_like() -> None:
    data = bytes(Message(Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 5}))
    assert parse_message(bytearray(data)).attributes == {"PRIORITY": 5}
    assert parse_message(memoryview(data)).attributes == {"PRIORITY": 5}


# --- unknown, repeated and ignored attributes ----------------------------------------


def test_unknown_attributes_are_kept_and_reported() -> None:
    data = message_bytes(
        attr(0x8888, b"optional"),
        attr(0x0024, struct.pack("!I", 7)),
        attr(0x0031, b"required"),
        attr(0x0024, struct.pack("!I", 9)),
    )
    message = parse_message(data)
    assert message.attributes == {"PRIORITY": 7}
    assert message.extra_attributes == [
        (0x8888, b"optional"),
        (0x0031, b"required"),
        (0x0024, struct.pack("!I", 9)),
    ]
    assert message.unknown_required == (0x0031,)
    assert stun.decode_attribute(0x0024, struct.pack("!I", 9), TID) == ("PRIORITY", 9)
    # Encoded again: known attributes first, then the raw ones in order.
    again = parse_message(bytes(message))
    assert again == message


def test_attributes_after_message_integrity_are_ignored() -> None:
    mi = attr(0x0008, bytes(20))
    data = message_bytes(
        attr(0x0024, b"\x00\x00\x00\x01"), mi, attr(0x0006, b"late"), attr(0x8888, b"")
    )
    message = parse_message(data)
    assert message.attributes == {"PRIORITY": 1}
    assert message.extra_attributes == []
    assert message.integrity == "sha1"
    # A second MESSAGE-INTEGRITY after the first is ignored too.
    data = message_bytes(mi, attr(0x0008, bytes(20)))
    assert parse_message(data).integrity == "sha1"


def test_sha256_after_sha1_counts_and_nothing_else_after_it() -> None:
    mi = attr(0x0008, bytes(20))
    mi256 = attr(0x001C, bytes(32))
    message = parse_message(message_bytes(mi, mi256, attr(0x0024, b"\x00\x00\x00\x01")))
    assert message.integrity == "sha256"
    assert message.attributes == {}
    message = parse_message(message_bytes(mi256, mi, attr(0x001C, bytes(16))))
    assert message.integrity == "sha256"
    assert not message.check_integrity(KEY)


def test_only_sha256_and_fingerprint_count_after_message_integrity() -> None:
    # RFC 8489 §14.5: MESSAGE-INTEGRITY-SHA256 and FINGERPRINT still count
    # after MESSAGE-INTEGRITY, past attributes that are ignored; nothing
    # ignored is decoded, so a malformed one does not reject the message.
    priority = attr(0x0024, b"\x00\x00\x00\x01")
    ignored = [
        attr(0x0006, b"late"),
        attr(0x000D, b""),  # a malformed LIFETIME
        attr(0x0008, bytes(16)),  # a second, malformed, MESSAGE-INTEGRITY
        attr(0x7777, b"required"),
    ]
    mi, mi256 = attr(0x0008, bytes(20)), attr(0x001C, bytes(32))
    data = with_fingerprint(message_bytes(priority, mi, *ignored, mi256, *ignored))
    message = parse_message(data)
    assert message.attributes == {"PRIORITY": 1}
    assert message.extra_attributes == []
    assert message.unknown_required == ()
    assert message.integrity == "sha256"
    assert message.has_fingerprint


def test_only_fingerprint_counts_after_sha256() -> None:
    # RFC 8489 §14.6: after MESSAGE-INTEGRITY-SHA256, even MESSAGE-INTEGRITY
    # and a second (malformed) MESSAGE-INTEGRITY-SHA256 are ignored.
    mi256 = attr(0x001C, bytes(32))
    later = [attr(0x0008, bytes(20)), attr(0x001C, bytes(12)), attr(0x0024, b"")]
    message = parse_message(with_fingerprint(message_bytes(mi256, *later)))
    assert message.integrity == "sha256"
    assert message.attributes == {}
    assert message.has_fingerprint


@pytest.mark.parametrize(
    ("after", "error"),
    [
        ([attr(0x001C, bytes(12))], "SHA256 of 12"),
        ([attr(0x8028, bytes(4)), attr(0x8888, b"")], "not the last attribute"),
        ([attr(0x8028, bytes(8))], "FINGERPRINT must be 4"),
        ([attr(0x8028, bytes(4))], "FINGERPRINT mismatch"),
        ([b"\x88\x88\x00\x08\x00\x00\x00\x00"], "runs past the message"),
    ],
    ids=["sha256 size", "fingerprint not last", "fingerprint size", "crc", "overrun"],
)
def test_what_still_rejects_after_message_integrity(
    after: list[bytes], error: str
) -> None:
    data = message_bytes(attr(0x0008, bytes(20)), attr(0x8888, b""), *after)
    if error == "runs past the message":
        data = replace_length(data, len(data) - 20 - 4)[:-4]
    with pytest.raises(StunParseError, match=error):
        parse_message(data)


def test_ignored_attributes_share_the_budget() -> None:
    # Unknown or repeated attributes before integrity and those ignored after
    # it are MAX_ATTRIBUTES at most, together.
    limit = stun.MAX_ATTRIBUTES
    mi, mi256 = attr(0x0008, bytes(20)), attr(0x001C, bytes(32))
    unknown = attr(0x8888, b"")
    for integrity in (mi, mi256, mi + mi256):
        for before in (0, 1, limit // 2, limit):
            after = limit - before
            fine = message_bytes(*[unknown] * before, integrity, *[unknown] * after)
            assert len(parse_message(fine).extra_attributes) == before
            assert parse_message(with_fingerprint(fine)).has_fingerprint
            over = message_bytes(
                *[unknown] * before, integrity, *[unknown] * (after + 1)
            )
            with pytest.raises(StunParseError, match=f"more than {limit} unknown, "):
                parse_message(with_fingerprint(over))


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (b"", "unknown or repeated"),
        (attr(0x0006, b"user"), "unknown or repeated"),  # then repeated USERNAMEs
        (attr(0x0008, bytes(20)), "unknown, repeated or ignored"),
        (attr(0x001C, bytes(32)), "unknown, repeated or ignored"),
    ],
    ids=["unknown", "repeated", "after sha1", "after sha256"],
)
def test_a_64_kib_flood_of_attributes_is_rejected(first: bytes, error: str) -> None:
    # 16k empty attributes fill a 64 KiB datagram; the walk stops at the budget.
    flood = attr(0x0006, b"") if first[:2] == b"\x00\x06" else attr(0x8888, b"")
    count = (0xFFFC - len(first)) // 4
    data = message_bytes(first, *[flood] * count)
    assert len(data) == 20 + 0xFFFC
    with pytest.raises(StunParseError, match=error):
        parse_message(data)


def test_list_attributes_are_bounded() -> None:
    # UNKNOWN-ATTRIBUTES lists at most MAX_ATTRIBUTES types (a 420 answers one
    # request, RFC 8489 §14.9); PASSWORD-ALGORITHMS at most 16 (§14.11).
    limit = stun.MAX_ATTRIBUTES
    most: stun.Attributes = {
        "UNKNOWN-ATTRIBUTES": tuple(range(limit)),
        "PASSWORD-ALGORITHMS": tuple((i, b"") for i in range(16)),
    }
    message = Message(Method.ALLOCATE, Class.ERROR, TID, most)
    assert parse_message(message.encode(key=KEY, fingerprint=True)) == message
    too_many: list[tuple[str, Any, str]] = [
        ("UNKNOWN-ATTRIBUTES", tuple(range(limit + 1)), f"{limit + 1} types"),
        ("PASSWORD-ALGORITHMS", tuple((i, b"") for i in range(17)), "17 algorithms"),
    ]
    for name, value, error in too_many:
        attributes = cast(stun.Attributes, {name: value})
        with pytest.raises(ValueError, match=error):
            Message(Method.ALLOCATE, Class.ERROR, TID, attributes).encode()
    rejected = [
        attr(0x000A, struct.pack(f"!{limit + 1}H", *range(limit + 1))),
        attr(0x8002, b"\x00\x01\x00\x00" * 16382),
        attr(0x001D, b"\x00\x01\x00\x00" * 17),
    ]
    errors = [f"{limit + 1} types, more than {limit}"] + ["more than 16 algorithms"] * 2
    for value, error in zip(rejected, errors, strict=True):
        with pytest.raises(StunParseError, match=error):
            parse_message(message_bytes(value))


def _v6_words(mask: int, seed: int) -> list[int]:
    # Zero where the mask has a bit, else a value of 1 to 4 hex digits.
    values = (1, 0xA, 0x10, 0xFF, 0x100, 0xFFF, 0x1000, 0xFFFF)
    return [0 if mask >> i & 1 else values[(seed + 3 * i) % 8] for i in range(8)]


def test_ipv6_addresses_read_as_ipaddress_writes_them() -> None:
    # Every layout of zero fields (RFC 5952 §4.2: the first longest run of
    # two or more becomes "::"), and IPv4-mapped and -compatible addresses.
    packed = [struct.pack("!8H", *_v6_words(m, s)) for m in range(256) for s in (0, 5)]
    packed += [bytes(10) + b"\xff\xff\xc0\x00\x02\x01", bytes(12) + b"\xc0\x00\x02\x01"]
    for raw in packed:
        text = ipaddress.IPv6Address(raw).compressed
        value = struct.pack("!HH", 2, 3478) + raw
        assert stun.decode_attribute(0x0001, value, TID) == (
            "MAPPED-ADDRESS",
            (text, 3478),
        )
        # And XOR-ed, then through the cache a second time.
        message = Message(
            Method.BINDING, Class.SUCCESS, TID, {"XOR-MAPPED-ADDRESS": (text, 1)}
        )
        assert parse_message(bytes(message)) == message
        assert parse_message(bytes(message)) == message


def test_both_integrities_verify() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "a:b"})
    parsed = parse_message(message.encode(key=KEY, integrity="both", fingerprint=True))
    assert parsed.check_integrity(KEY)
    assert not parsed.check_integrity(b"other")
    # The SHA-1 attribute is right too: strip the SHA-256 one and check again.
    data = message.encode(key=KEY, integrity="both")
    sha1_only = data[:-36]
    sha1_only = sha1_only[:2] + struct.pack("!H", len(sha1_only) - 20) + sha1_only[4:]
    assert parse_message(sha1_only).check_integrity(KEY)


def test_truncated_sha256_integrity() -> None:
    # RFC 8489 §14.6 allows truncation to 16..32 bytes in multiples of 4.
    body = attr(0x0006, b"user")
    length = len(body) + 4 + 16
    signed = header(0x0001, length) + body
    mac = hmac.digest(KEY, signed, "sha256")[:16]
    message = parse_message(
        signed[:2] + struct.pack("!H", length) + signed[4:] + attr(0x001C, mac)
    )
    assert message.check_integrity(KEY)
    assert not message.check_integrity(b"nope")


def test_integrity_of_an_unparsed_or_unprotected_message() -> None:
    message = Message(Method.BINDING, Class.REQUEST, TID)
    assert not message.check_integrity(KEY)
    assert message.integrity is None
    assert not message.has_fingerprint
    parsed = parse_message(bytes(message))
    assert not parsed.check_integrity(KEY)
    assert parsed.error_code is None


def test_tampered_message_fails_integrity() -> None:
    data = bytearray(
        Message(Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 1}).encode(key=KEY)
    )
    data[27] ^= 1
    assert not parse_message(bytes(data)).check_integrity(KEY)


def test_fingerprint_mismatch_is_rejected() -> None:
    data = bytearray(
        Message(Method.BINDING, Class.REQUEST, TID, {"PRIORITY": 1}).encode(
            key=KEY, fingerprint=True
        )
    )
    data[-1] ^= 1
    with pytest.raises(StunParseError, match="FINGERPRINT mismatch"):
        parse_message(bytes(data))
    no_mi = bytearray(
        with_fingerprint(message_bytes(attr(0x0024, b"\x00\x00\x00\x01")))
    )
    assert parse_message(bytes(no_mi)).has_fingerprint
    no_mi[-1] ^= 1
    with pytest.raises(StunParseError, match="FINGERPRINT mismatch"):
        parse_message(bytes(no_mi))


def test_fingerprint_lookalike_inside_a_value() -> None:
    # The last 32 bytes look like MESSAGE-INTEGRITY + FINGERPRINT headers, but
    # they are the inside of a DATA attribute: the walk must not be fooled.
    fake_tail = (
        b"\x00\x08\x00\x14" + bytes(20) + b"\x80\x28\x00\x04" + b"\xde\xad\xbe\xef"
    )
    data = message_bytes(attr(0x0013, fake_tail))
    message = parse_message(data)
    assert message.attributes == {"DATA": fake_tail}
    assert not message.has_fingerprint
    assert message.integrity is None


def test_fast_tail_respects_an_earlier_integrity() -> None:
    fp_data = message_bytes(attr(0x001C, bytes(32)), attr(0x0008, bytes(20)))
    message = parse_message(with_fingerprint(fp_data))
    assert message.integrity == "sha256"
    assert message.has_fingerprint


def test_fast_tail_with_bad_fingerprint() -> None:
    data = bytearray(with_fingerprint(message_bytes(attr(0x0008, bytes(20)))))
    data[-1] ^= 0xFF
    with pytest.raises(StunParseError, match="FINGERPRINT mismatch"):
        parse_message(bytes(data))


# --- what parse_message rejects --------------------------------------------------


def replace_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:]


PRIORITY = attr(0x0024, b"\x00\x00\x00\x01")

REJECTED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "shorter than a STUN header"),
    ("19 bytes", header(1, 0)[:19], "shorter than a STUN header"),
    ("top bits", b"\x80" + header(1, 0)[1:], "first two bits"),
    ("no cookie", header(1, 0)[:4] + b"\x00\x00\x00\x00" + TID, "no magic cookie"),
    ("length too long", replace_length(message_bytes(PRIORITY), 12), "length field"),
    ("length too short", replace_length(message_bytes(PRIORITY), 4), "length field"),
    (
        "length unaligned",
        replace_length(message_bytes(PRIORITY), 6)[:26],
        "length field",
    ),
    ("trailing bytes", message_bytes(PRIORITY) + b"\x00" * 4, "length field"),
    (
        "attribute past end",
        replace_length(header(1, 0) + b"\x00\x24\x00\x08\x00\x00\x00\x01", 8),
        "runs past the message",
    ),
    (
        "padding past end",
        replace_length(header(1, 0) + b"\x00\x06\x00\x05abcd", 8),
        "runs past the message",
    ),
    (
        "fingerprint size",
        message_bytes(attr(0x8028, b"\x00" * 8)),
        "FINGERPRINT must be 4",
    ),
    (
        "fingerprint not last",
        message_bytes(attr(0x8028, b"\x00" * 4), PRIORITY),
        "not the last attribute",
    ),
    (
        "integrity size",
        message_bytes(attr(0x0008, b"\x00" * 16)),
        "MESSAGE-INTEGRITY of 16",
    ),
    ("sha256 too short", message_bytes(attr(0x001C, b"\x00" * 12)), "SHA256 of 12"),
    ("sha256 too long", message_bytes(attr(0x001C, b"\x00" * 36)), "SHA256 of 36"),
    ("sha256 unaligned", message_bytes(attr(0x001C, b"\x00" * 18)), "SHA256 of 18"),
    (
        "address short",
        message_bytes(attr(0x0001, b"\x00\x01")),
        "malformed MAPPED-ADDRESS",
    ),
    (
        "address family",
        message_bytes(attr(0x0001, b"\x00\x03" + b"\x00" * 6)),
        "family 3",
    ),
    (
        "ipv4 size",
        message_bytes(attr(0x0001, b"\x00\x01" + b"\x00" * 18)),
        "family 1 with 20",
    ),
    (
        "ipv6 size",
        message_bytes(attr(0x0001, b"\x00\x02" + b"\x00" * 6)),
        "family 2 with 8",
    ),
    ("xor short", message_bytes(attr(0x0020, b"\x00")), "malformed XOR-MAPPED-ADDRESS"),
    ("xor family", message_bytes(attr(0x0020, b"\x00\x00" + b"\x00" * 6)), "family 0"),
    (
        "xor ipv4 size",
        message_bytes(attr(0x0020, b"\x00\x01" + b"\x00" * 18)),
        "family 1",
    ),
    (
        "xor ipv6 size",
        message_bytes(attr(0x0020, b"\x00\x02" + b"\x00" * 6)),
        "family 2",
    ),
    ("username utf-8", message_bytes(attr(0x0006, b"\xff\xfe")), "malformed USERNAME"),
    (
        "username long",
        message_bytes(attr(0x0006, b"u" * 513)),
        "513 bytes, more than 512",
    ),
    ("realm long", message_bytes(attr(0x0014, b"r" * 764)), "malformed REALM"),
    ("nonce long", message_bytes(attr(0x0015, b"n" * 764)), "malformed NONCE"),
    ("userhash size", message_bytes(attr(0x001E, b"h" * 31)), "31 bytes, not 32"),
    (
        "token size",
        message_bytes(attr(0x0022, b"t" * 9)),
        "malformed RESERVATION-TOKEN",
    ),
    ("priority size", message_bytes(attr(0x0024, b"\x00" * 8)), "8 bytes instead of 4"),
    ("lifetime empty", message_bytes(attr(0x000D, b"")), "malformed LIFETIME"),
    (
        "controlling size",
        message_bytes(attr(0x802A, b"\x00" * 4)),
        "4 bytes instead of 8",
    ),
    (
        "flag with value",
        message_bytes(attr(0x0025, b"\x00" * 4)),
        "malformed USE-CANDIDATE",
    ),
    ("transport size", message_bytes(attr(0x0019, b"\x11")), "1 bytes instead of 4"),
    (
        "channel size",
        message_bytes(attr(0x000C, b"\x40\x00")),
        "malformed CHANNEL-NUMBER",
    ),
    (
        "even port size",
        message_bytes(attr(0x0018, b"\x80\x00")),
        "2 bytes instead of 1",
    ),
    ("error short", message_bytes(attr(0x0009, b"\x00\x00\x04")), "fewer than 4"),
    (
        "error class",
        message_bytes(attr(0x0009, b"\x00\x00\x02\x00")),
        "class 2 number 0",
    ),
    ("error class 7", message_bytes(attr(0x0009, b"\x00\x00\x07\x00")), "class 7"),
    ("error number", message_bytes(attr(0x0009, b"\x00\x00\x04\x64")), "number 100"),
    (
        "error reason",
        message_bytes(attr(0x0009, b"\x00\x00\x04\x00\xc3")),
        "ERROR-CODE",
    ),
    (
        "error reason long",
        message_bytes(attr(0x0009, b"\x00\x00\x04\x00" + b"r" * 764)),
        "reason of 764 bytes",
    ),
    ("unknown odd", message_bytes(attr(0x000A, b"\x00\x01\x00")), "odd length 3"),
    ("algorithms cut", message_bytes(attr(0x8002, b"\x00\x01")), "truncated algorithm"),
    (
        "algorithms overrun",
        message_bytes(attr(0x8002, b"\x00\x01\x00\x08abcd")),
        "run past the attribute",
    ),
    ("algorithm none", message_bytes(attr(0x001D, b"")), "0 entries instead of 1"),
    (
        "algorithm two",
        message_bytes(attr(0x001D, b"\x00\x01\x00\x00\x00\x02\x00\x00")),
        "2 entries instead of 1",
    ),
    (
        "too many unknown",
        message_bytes(*[attr(0x8888, b"")] * (stun.MAX_ATTRIBUTES + 1)),
        "more than 128",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"),
    [(d, m) for _, d, m in REJECTED],
    ids=[n for n, _, _ in REJECTED],
)
def test_malformed_messages_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(StunParseError, match=message):
        parse_message(data)


def test_parse_error_is_a_value_error_and_a_stun_error() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the point is the builtin base
        parse_message(b"")
    assert issubclass(StunParseError, StunError)


def test_many_known_attributes_are_fine() -> None:
    data = message_bytes(*[attr(0x8888, b"")] * stun.MAX_ATTRIBUTES)
    assert len(parse_message(data).extra_attributes) == stun.MAX_ATTRIBUTES


@pytest.mark.parametrize(
    ("attr_type", "value", "error"),
    [
        (0x8888, b"", "unknown attribute type 0x8888"),
        (0x0024, b"\x00", "malformed PRIORITY"),
        (0x0001, b"", "malformed MAPPED-ADDRESS"),
    ],
)
def test_decode_attribute_errors(attr_type: int, value: bytes, error: str) -> None:
    with pytest.raises(StunParseError, match=error):
        stun.decode_attribute(attr_type, value, TID)


# --- what encode() rejects -------------------------------------------------------

BAD_VALUES: list[tuple[str, Any, type[Exception], str]] = [
    ("PRIORITY", 2**32, ValueError, "bad value for PRIORITY"),
    ("PRIORITY", "1", ValueError, "bad value for PRIORITY"),
    ("ICE-CONTROLLING", -1, ValueError, "ICE-CONTROLLING"),
    ("USERNAME", b"bytes", TypeError, "expected str"),
    ("USERNAME", "u" * 513, ValueError, "more than 512"),
    ("USERNAME", "\ud800", ValueError, "bad value for USERNAME"),
    ("NONCE", "str", TypeError, "expected bytes"),
    ("USERHASH", b"short", ValueError, "5 bytes, not 32"),
    ("DATA", b"x" * 65536, ValueError, "more than 65535"),
    ("XOR-MAPPED-ADDRESS", ("not an ip", 1), ValueError, "XOR-MAPPED-ADDRESS"),
    ("XOR-MAPPED-ADDRESS", (b"1.2.3.4", 1), TypeError, "host must be a str"),
    ("XOR-MAPPED-ADDRESS", ("1.2.3.4", 65536), ValueError, "XOR-MAPPED-ADDRESS"),
    ("MAPPED-ADDRESS", ("1.2.3.4", -1), ValueError, "MAPPED-ADDRESS"),
    ("MAPPED-ADDRESS", ("1.2.3.4",), ValueError, "MAPPED-ADDRESS"),
    ("USE-CANDIDATE", True, TypeError, "takes the value None"),
    ("EVEN-PORT", 1, TypeError, "takes a bool"),
    ("REQUESTED-TRANSPORT", 256, ValueError, "REQUESTED-TRANSPORT"),
    ("CHANNEL-NUMBER", 70000, ValueError, "CHANNEL-NUMBER"),
    ("ERROR-CODE", (700, "x"), ValueError, "not in 300-699"),
    ("ERROR-CODE", ("400", "x"), ValueError, "not in 300-699"),
    ("ERROR-CODE", (400, b"x"), TypeError, "reason phrase must be a str"),
    ("ERROR-CODE", (400, "r" * 764), ValueError, "reason of 764 bytes"),
    ("UNKNOWN-ATTRIBUTES", (70000,), ValueError, "UNKNOWN-ATTRIBUTES"),
    ("PASSWORD-ALGORITHM", (1, "params"), TypeError, "parameters must be bytes"),
    (
        "PASSWORD-ALGORITHMS",
        ((1, b""), (70000, b"")),
        ValueError,
        "PASSWORD-ALGORITHMS",
    ),
    (
        "MESSAGE-INTEGRITY",
        b"x" * 20,
        ValueError,
        "unknown attribute 'MESSAGE-INTEGRITY'",
    ),
]


@pytest.mark.parametrize(
    ("name", "value", "exc", "error"),
    BAD_VALUES,
    ids=[f"{n}-{i}" for i, (n, *_) in enumerate(BAD_VALUES)],
)
def test_encode_rejects_bad_values(
    name: str, value: Any, exc: type[Exception], error: str
) -> None:
    attributes = cast(stun.Attributes, {name: value})
    message = Message(Method.BINDING, Class.REQUEST, TID, attributes)
    with pytest.raises(exc, match=error):
        message.encode()


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ([(0x0008, bytes(20))], "MESSAGE-INTEGRITY is added by encode"),
        ([(0x8028, bytes(4))], "FINGERPRINT is added by encode"),
        ([(0x8888, "text")], "value must be bytes"),
        ([(0x8888, bytes(65536))], "at most 64 KiB"),
        ([(0x10000, b"")], "not 16 bits"),
    ],
)
def test_encode_rejects_bad_extra_attributes(extra: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Message(Method.BINDING, Class.REQUEST, TID, {}, extra).encode()


def test_encode_rejects_oversized_messages() -> None:
    big = [(0x8888, bytes(40000)), (0x8889, bytes(25524))]
    exactly = Message(Method.BINDING, Class.REQUEST, TID, {}, big)
    assert len(bytes(exactly)) == 20 + 65532  # the longest body there is
    with pytest.raises(ValueError, match="exceeds 64 KiB"):
        exactly.encode(fingerprint=True)
    with pytest.raises(ValueError, match="exceeds 64 KiB"):
        exactly.encode(key=KEY)
    with pytest.raises(ValueError, match="message of 65568 bytes"):
        exactly.encode(key=KEY, integrity="sha256")


@pytest.mark.parametrize(
    ("method", "message_class", "error"),
    [
        (0x1000, Class.REQUEST, "not a 12-bit number"),
        (-1, Class.REQUEST, "not a 12-bit number"),
        ("1", Class.REQUEST, "not a 12-bit number"),
        (0x001, 0x001, "not a Class"),
    ],
)
def test_encode_rejects_bad_method_or_class(
    method: Any, message_class: Any, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Message(method, message_class, TID).encode()


# --- keys ------------------------------------------------------------------------


def test_short_term_key() -> None:
    assert stun.short_term_key("pass") == b"pass"
    assert stun.short_term_key("I\u00adX") == b"IX"


@pytest.mark.parametrize(
    ("text", "prepared"),
    [
        ("", ""),
        ("plain", "plain"),
        ("I\u00adX", "IX"),  # RFC 4013 §3: soft hyphen mapped to nothing
        ("user", "user"),
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # non-ASCII space to space
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),  # RandALCat at both ends
    ],
)
def test_saslprep(text: str, prepared: str) -> None:
    assert stun.saslprep(text) == prepared


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("\x07", "prohibits"),  # RFC 4013 §3: control character
        ("a\u2028", "prohibits"),
        ("\u0627\u0031", "start and end"),
        ("\u0627a\u0628", "mixed"),
    ],
)
def test_saslprep_rejects(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        stun.saslprep(text)


def test_long_term_keys() -> None:
    md5 = stun.long_term_key("user", "realm", "pass")
    assert md5 == hashlib.md5(b"user:realm:pass").digest()
    sha = stun.long_term_key("user", "realm", "pass", PasswordAlgorithm.SHA256)
    assert sha == hashlib.sha256(b"user:realm:pass").digest()
    with pytest.raises(ValueError, match="unknown password algorithm"):
        stun.long_term_key("user", "realm", "pass", 3)  # type: ignore[arg-type]


def test_userhash_matches_rfc8489() -> None:
    assert stun.userhash(MATRIX_USERNAME, "example.org") == unhex(
        "4a3cf38f ef6992bd a952c678 0417da0f 24819415 569e60b2 05c46e41 407f1704"
    )


# --- demultiplexing --------------------------------------------------------------


def test_is_stun() -> None:
    assert stun.is_stun(SAMPLE_REQUEST)
    assert not stun.is_stun(SAMPLE_REQUEST[:19])
    assert not stun.is_stun(b"\x04" + SAMPLE_REQUEST[1:])
    assert not stun.is_stun(
        SAMPLE_REQUEST[:4] + b"\x00\x00\x00\x00" + SAMPLE_REQUEST[8:]
    )
    assert not stun.is_stun(b"\x40\x00\x00\x10" + bytes(16))


def test_is_channel_data() -> None:
    assert stun.is_channel_data(b"\x40\x00\x00\x00")
    assert stun.is_channel_data(b"\x4f\xff\x00\x00")
    assert not stun.is_channel_data(b"\x50\x00\x00\x00")
    assert not stun.is_channel_data(b"\x3f\x00\x00\x00")
    assert not stun.is_channel_data(b"\x40\x00\x00")


# --- ChannelData -----------------------------------------------------------------


def test_channel_data_round_trip() -> None:
    for payload in (b"", b"a", b"ab", b"abc", b"abcd", b"abcde"):
        cd = ChannelData(0x4001, payload)
        assert stun.parse_channel_data(bytes(cd)) == cd
        padded = cd.encode(padded=True)
        assert len(padded) % 4 == 0
        assert stun.parse_channel_data(padded) == cd
    assert bytes(ChannelData(0x4ABC, b"xyz")) == b"\x4a\xbc\x00\x03xyz"
    assert ChannelData(0x4ABC, b"xyz").encode(padded=True) == b"\x4a\xbc\x00\x03xyz\x00"
    assert ChannelData(0x4000, b"abcd").encode(padded=True) == b"\x40\x00\x00\x04abcd"


def test_channel_data_value_semantics() -> None:
    a = ChannelData(0x4000, b"x")
    assert a == ChannelData(0x4000, b"x")
    assert a != ChannelData(0x4001, b"x")
    assert a != b"x"
    assert hash(a) == hash(ChannelData(0x4000, b"x"))
    assert repr(a) == "ChannelData(0x4000, b'x')"


@pytest.mark.parametrize(
    ("channel", "data", "error"),
    [
        (0x3FFF, b"", "not in 0x4000-0x4FFF"),
        (0x5000, b"", "not in 0x4000-0x4FFF"),
        (0x4000, bytes(65536), "exceed 65535"),
    ],
)
def test_channel_data_rejects(channel: int, data: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ChannelData(channel, data)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x40\x00\x00", "shorter than a ChannelData header"),
        (b"\x50\x00\x00\x00", "not in 0x4000-0x4FFF"),
        (b"\x40\x00\x00\x05abcd", "length field 5 does not fit 8"),
        (b"\x40\x00\x00\x01abcde", "length field 1 does not fit 9"),
    ],
)
def test_parse_channel_data_rejects(data: bytes, error: str) -> None:
    with pytest.raises(StunParseError, match=error):
        stun.parse_channel_data(data)


# --- the stream framer --------------------------------------------------------------


def stream_frames() -> tuple[list[Message | ChannelData], bytes]:
    frames: list[Message | ChannelData] = [
        Message(Method.ALLOCATE, Class.REQUEST, TID, {"REQUESTED-TRANSPORT": 17}),
        ChannelData(0x4000, b"abc"),
        Message(Method.DATA, Class.INDICATION, TID, {"DATA": b"hello"}),
        ChannelData(0x4FFF, b""),
        ChannelData(0x4001, b"abcd"),
    ]
    wire = b"".join(
        f.encode(padded=True)
        if isinstance(f, ChannelData)
        else f.encode(fingerprint=True)
        for f in frames
    )
    return frames, wire


def test_framer_whole_and_byte_by_byte() -> None:
    frames, wire = stream_frames()
    framer = StreamFramer()
    assert framer.feed(wire) == frames
    assert framer.buffered == 0
    framer = StreamFramer()
    out: list[Message | ChannelData] = []
    for i in range(len(wire)):
        out += framer.feed(wire[i : i + 1])
        assert framer.buffered < 60
    assert out == frames
    assert framer.buffered == 0
    assert framer.dropped == 0


def test_framer_drops_malformed_stun_frames_and_stays_in_step() -> None:
    bad = message_bytes(attr(0x0024, b"\x00"))  # PRIORITY of 1 byte
    good = ChannelData(0x4000, b"ok").encode(padded=True)
    framer = StreamFramer()
    assert framer.feed(bad + good) == [ChannelData(0x4000, b"ok")]
    assert framer.dropped == 1


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"\x80\x00\x00\x00", "cannot start with 0x80"),
        (b"\x00\x01\x00\x00\x00\x00\x00\x00", "without magic cookie"),
        (header(1, 2), "without magic cookie"),
    ],
)
def test_framer_out_of_step(wire: bytes, error: str) -> None:
    framer = StreamFramer()
    with pytest.raises(StunParseError, match=error):
        framer.feed(wire)
    assert framer.buffered == 0
    with pytest.raises(StunParseError, match=error):
        framer.feed(SAMPLE_REQUEST)


def test_framer_returns_the_frames_before_bad_bytes() -> None:
    frames, wire = stream_frames()
    framer = StreamFramer()
    assert framer.feed(wire + b"\xff\xff\xff\xff") == frames
    assert framer.buffered == 0
    with pytest.raises(StunParseError, match="cannot start with 0xff"):
        framer.feed(b"")
    with pytest.raises(StunParseError, match="cannot start with 0xff"):
        framer.feed(wire)


def test_framer_bounds_frames() -> None:
    framer = StreamFramer(max_frame=100)
    assert framer.feed(b"\x40\x00\x00\x60") == []  # 4 + 96 = 100: allowed, waiting
    assert framer.buffered == 4
    framer = StreamFramer(max_frame=100)
    with pytest.raises(StunParseError, match="exceeds 100"):
        framer.feed(b"\x40\x00\x00\x61")
    with pytest.raises(StunParseError, match="exceeds 100"):
        StreamFramer(max_frame=100).feed(header(1, 84))
    with pytest.raises(ValueError, match="at least 24"):
        StreamFramer(max_frame=23)


def test_framer_waits_for_the_cookie() -> None:
    framer = StreamFramer()
    assert framer.feed(SAMPLE_REQUEST[:6]) == []
    assert framer.feed(SAMPLE_REQUEST[6:]) == [parse_message(SAMPLE_REQUEST)]
