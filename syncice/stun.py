"""A sans-IO STUN codec (RFC 8489, RFC 5389), with TURN (RFC 8656) and ICE
(RFC 8445) attributes, ChannelData framing and a stream framer.

Rules this module keeps:

- It never touches a socket, a clock or a thread: bytes in, values out.
- :func:`parse_message` raises :class:`~syncice.exceptions.StunParseError` and
  nothing else, whatever the input bytes. It never reads past the buffer, and
  what it keeps is bounded by the input: at most :data:`MAX_ATTRIBUTES`
  attributes, each a slice of the input.
- Its work per message is bounded by a constant, not by the attribute count
  a 64 KiB datagram can hold (16k): the walk visits at most one attribute of
  each known type, :data:`MAX_ATTRIBUTES` others and the three integrity
  ones, and every list inside an attribute (UNKNOWN-ATTRIBUTES,
  PASSWORD-ALGORITHMS) has its own small bound.
- A FINGERPRINT that is present must be right and last, or the message is
  rejected. MESSAGE-INTEGRITY(-SHA256) is checked on demand with
  :meth:`Message.check_integrity`, because the key depends on the USERNAME the
  message carries. Attributes that follow an integrity attribute are ignored
  (RFC 8489 §14.5, §14.6), except MESSAGE-INTEGRITY-SHA256 after
  MESSAGE-INTEGRITY and FINGERPRINT.
- The first occurrence of a known attribute is decoded into
  :attr:`Message.attributes`; unknown attributes and repeated occurrences are
  kept raw, in order, in :attr:`Message.extra_attributes` and encoded again
  as they came. Unknown comprehension-required ones are reported by
  :attr:`Message.unknown_required`, so that a receiver can answer 420.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import ipaddress
import secrets
import stringprep
import struct
import unicodedata
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypedDict, cast

from ._demux import frame_channel_data
from .exceptions import StunParseError

__all__ = [
    "ATTRIBUTE_TYPES",
    "COOKIE",
    "MAX_ATTRIBUTES",
    "MAX_FRAME",
    "Address",
    "AttributeValue",
    "Attributes",
    "ChannelData",
    "Class",
    "Message",
    "Method",
    "PasswordAlgorithm",
    "StreamFramer",
    "decode_attribute",
    "is_channel_data",
    "is_stun",
    "long_term_key",
    "parse_channel_data",
    "parse_message",
    "random_transaction_id",
    "saslprep",
    "short_term_key",
    "userhash",
]

#: The magic cookie of RFC 5389 and later (RFC 8489 §5).
COOKIE = 0x2112A442
#: The most attributes one message may carry besides the first occurrence of
#: each known one: unknown and repeated attributes, and those ignored after an
#: integrity attribute; more is treated as malformed. Also the most types an
#: UNKNOWN-ATTRIBUTES may list. A real message has none or a few; the bound
#: keeps the time and memory that a hostile 64 KiB datagram can cost to a
#: small multiple of an ordinary one's.
MAX_ATTRIBUTES = 128

Address = tuple[str, int]
"""An ``(ip, port)`` pair, with the IP address in its text form."""

_COOKIE_BYTES = COOKIE.to_bytes(4, "big")
_FINGERPRINT_XOR = 0x5354554E
_HEADER_SIZE = 20
_MAX_STRING = 763  # REALM, NONCE, SOFTWARE, ERROR-CODE reason (RFC 8489 §14)
_MAX_USERNAME = 512  # RFC 5389 §15.3 ("less than 513 bytes"), a superset of 8489's
# PASSWORD-ALGORITHMS entries (RFC 8489 §14.11); IANA registers two algorithms.
_MAX_ALGORITHMS = 16

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_HHI = struct.Struct("!HHI")
_HHQ = struct.Struct("!HHQ")
_HHHH = struct.Struct("!HHHH")
_HHB3x = struct.Struct("!HHB3x")
_HI = struct.Struct("!HI")
_I = struct.Struct("!I")
_Q = struct.Struct("!Q")
_HEADER = struct.Struct("!HHI12s")
_8H = struct.Struct("!8H")
_V4_MAPPED = (0, 0, 0, 0, 0, 0xFFFF)
_V6_FIELDS = ":{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:".format
_ZERO_RUNS = tuple(":" + "0:" * n for n in range(8, 2, -1))  # 8 to 3 zero fields
_ATTR_FP = 0x8028
_FP_HEADER = b"\x80\x28\x00\x04"
_MI_HEADER = b"\x00\x08\x00\x14"
_ATTR_MI = 0x0008
_ATTR_MI256 = 0x001C


class Class(enum.IntEnum):
    """STUN message class, as the bits it sets in the message type (RFC 8489 §5)."""

    REQUEST = 0x000
    INDICATION = 0x010
    SUCCESS = 0x100
    ERROR = 0x110


class Method(enum.IntEnum):
    """STUN methods of RFC 8489 and RFC 8656."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class PasswordAlgorithm(enum.IntEnum):
    """Password algorithms of RFC 8489 §18.5."""

    MD5 = 0x0001
    SHA256 = 0x0002


_METHODS: dict[int, Method] = {m.value: m for m in Method}
_CLASSES: dict[int, Class] = {c.value: c for c in Class}

AttributeValue = (
    Address
    | str
    | bytes
    | int
    | bool
    | None
    | tuple[int, str]
    | tuple[int, bytes]
    | tuple[int, ...]
    | tuple[tuple[int, bytes], ...]
)
"""Any decoded attribute value; :data:`Attributes` says which goes where."""

Attributes = TypedDict(
    "Attributes",
    {
        "MAPPED-ADDRESS": Address,
        "USERNAME": str,
        "ERROR-CODE": tuple[int, str],
        "UNKNOWN-ATTRIBUTES": tuple[int, ...],
        "CHANNEL-NUMBER": int,
        "LIFETIME": int,
        "XOR-PEER-ADDRESS": Address,
        "DATA": bytes,
        "REALM": str,
        "NONCE": bytes,
        "XOR-RELAYED-ADDRESS": Address,
        "REQUESTED-ADDRESS-FAMILY": int,
        "EVEN-PORT": bool,
        "REQUESTED-TRANSPORT": int,
        "DONT-FRAGMENT": None,
        "PASSWORD-ALGORITHM": tuple[int, bytes],
        "USERHASH": bytes,
        "XOR-MAPPED-ADDRESS": Address,
        "RESERVATION-TOKEN": bytes,
        "PRIORITY": int,
        "USE-CANDIDATE": None,
        "ADDITIONAL-ADDRESS-FAMILY": int,
        "PASSWORD-ALGORITHMS": tuple[tuple[int, bytes], ...],
        "ALTERNATE-DOMAIN": str,
        "SOFTWARE": str,
        "ALTERNATE-SERVER": Address,
        "ICE-CONTROLLED": int,
        "ICE-CONTROLLING": int,
        "NOMINATION": int,
    },
    total=False,
)
"""The decoded attributes of a message, by their RFC names.

Flags (DONT-FRAGMENT, USE-CANDIDATE) have the value ``None``; EVEN-PORT holds
its R bit; ERROR-CODE is ``(code, reason)``; PASSWORD-ALGORITHM(S) hold
``(algorithm, parameters)`` pairs; REQUESTED-TRANSPORT is the IP protocol
number (17 for UDP); the two address-family attributes hold 1 (IPv4) or 2 (IPv6).
MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are not attributes
here: :meth:`Message.encode` adds them and :func:`parse_message` checks them.
"""


def random_transaction_id() -> bytes:
    """Return a new 96-bit transaction ID from :mod:`secrets` (RFC 8489 §5)."""
    return secrets.token_bytes(12)


# --- attribute values: decoders ------------------------------------------------
#
# A decoder gets the whole message, the value's start and end offsets and the
# 16 bytes that XOR-ed addresses use (cookie + transaction ID). Any exception
# it raises (StunParseError, ValueError, struct.error, UnicodeDecodeError)
# becomes a StunParseError naming the attribute.

_Decoder = Callable[[bytes, int, int, bytes], Any]
_Encoder = Callable[[int, Any, bytes], bytes]


@functools.lru_cache(maxsize=512)
def _ipv6_text(packed: bytes) -> str:
    # ipaddress's compressed form (RFC 5952 §4.2: lowercase hex, no leading
    # zeros, the first longest run of two or more zero fields as "::"), built
    # with a few C calls: a peer can send a new address in every attribute,
    # and IPv6Address takes about four times as long.
    words = _8H.unpack(packed)
    if words[:6] == _V4_MAPPED:
        # Python 3.13 writes these as ::ffff:a.b.c.d; follow whichever runs.
        return ipaddress.IPv6Address(packed).compressed
    text = _V6_FIELDS(*words)
    if ":0:0:" not in text:
        return text[1:-1]
    for run in _ZERO_RUNS:
        if run in text:
            break
    else:
        run = ":0:0:"
    at = text.find(run)
    return text[1:at] + "::" + text[at + len(run) : -1]


def _dec_address(data: bytes, start: int, end: int, _: bytes) -> Address:
    family = data[start + 1] if end - start >= 4 else 0
    if family == 1 and end - start == 8:
        port, a = _HI.unpack_from(data, start + 2)
        return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}", port
    if family == 2 and end - start == 20:
        port = _H.unpack_from(data, start + 2)[0]
        return _ipv6_text(data[start + 4 : end]), port
    raise StunParseError(f"address family {family} with {end - start} bytes")


def _dec_xor_address(data: bytes, start: int, end: int, xor: bytes) -> Address:
    family = data[start + 1] if end - start >= 4 else 0
    if family == 1 and end - start == 8:
        port, a = _HI.unpack_from(data, start + 2)
        a ^= COOKIE
        port ^= 0x2112
        return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}", port
    if family == 2 and end - start == 20:
        port = _H.unpack_from(data, start + 2)[0] ^ 0x2112
        raw = int.from_bytes(data[start + 4 : end], "big") ^ int.from_bytes(xor, "big")
        return _ipv6_text(raw.to_bytes(16, "big")), port
    raise StunParseError(f"address family {family} with {end - start} bytes")


def _dec_string(limit: int) -> _Decoder:
    def decode(data: bytes, start: int, end: int, _: bytes) -> str:
        if end - start > limit:
            raise StunParseError(f"{end - start} bytes, more than {limit}")
        return data[start:end].decode("utf-8")

    return decode


def _dec_bytes(limit: int, *, exact: bool = False) -> _Decoder:
    def decode(data: bytes, start: int, end: int, _: bytes) -> bytes:
        if end - start > limit or (exact and end - start != limit):
            raise StunParseError(
                f"{end - start} bytes, {'not' if exact else 'more than'} {limit}"
            )
        return data[start:end]

    return decode


def _dec_u32(data: bytes, start: int, end: int, _: bytes) -> int:
    if end - start != 4:
        raise StunParseError(f"{end - start} bytes instead of 4")
    return _I.unpack_from(data, start)[0]  # type: ignore[no-any-return]


def _dec_u64(data: bytes, start: int, end: int, _: bytes) -> int:
    if end - start != 8:
        raise StunParseError(f"{end - start} bytes instead of 8")
    return _Q.unpack_from(data, start)[0]  # type: ignore[no-any-return]


def _dec_flag(data: bytes, start: int, end: int, _: bytes) -> None:
    if end != start:
        raise StunParseError(f"{end - start} bytes instead of 0")


def _dec_first_byte(data: bytes, start: int, end: int, _: bytes) -> int:
    # REQUESTED-TRANSPORT and the address families: one byte, 3 bytes RFFU.
    if end - start != 4:
        raise StunParseError(f"{end - start} bytes instead of 4")
    return data[start]


def _dec_channel_number(data: bytes, start: int, end: int, _: bytes) -> int:
    if end - start != 4:
        raise StunParseError(f"{end - start} bytes instead of 4")
    return _H.unpack_from(data, start)[0]  # type: ignore[no-any-return]


def _dec_even_port(data: bytes, start: int, end: int, _: bytes) -> bool:
    if end - start != 1:
        raise StunParseError(f"{end - start} bytes instead of 1")
    return bool(data[start] & 0x80)


def _dec_error_code(data: bytes, start: int, end: int, _: bytes) -> tuple[int, str]:
    if end - start < 4:
        raise StunParseError(f"{end - start} bytes, fewer than 4")
    if end - start > 4 + _MAX_STRING:
        raise StunParseError(
            f"reason of {end - start - 4} bytes, more than {_MAX_STRING}"
        )
    klass, number = data[start + 2] & 0x07, data[start + 3]
    if not 3 <= klass <= 6 or number > 99:
        raise StunParseError(f"class {klass} number {number} is not a 300-699 code")
    return klass * 100 + number, data[start + 4 : end].decode("utf-8")


def _dec_unknown_attributes(
    data: bytes, start: int, end: int, _: bytes
) -> tuple[int, ...]:
    if (end - start) & 1:
        raise StunParseError(f"odd length {end - start}")
    # A 420 lists the unknown attributes of one request (RFC 8489 §14.9),
    # which parse_message bounds to MAX_ATTRIBUTES.
    if end - start > 2 * MAX_ATTRIBUTES:
        raise StunParseError(f"{(end - start) // 2} types, more than {MAX_ATTRIBUTES}")
    return struct.unpack_from(f"!{(end - start) // 2}H", data, start)


def _dec_algorithm_list(data: bytes, start: int, end: int) -> list[tuple[int, bytes]]:
    items: list[tuple[int, bytes]] = []
    pos = start
    while pos < end:
        if len(items) == _MAX_ALGORITHMS:
            raise StunParseError(f"more than {_MAX_ALGORITHMS} algorithms")
        if end - pos < 4:
            raise StunParseError("truncated algorithm entry")
        algorithm, length = _HH.unpack_from(data, pos)
        value_end = pos + 4 + length
        if value_end > end:
            raise StunParseError("algorithm parameters run past the attribute")
        items.append((algorithm, data[pos + 4 : value_end]))
        pos = value_end + (-length & 3)
    return items


def _dec_password_algorithms(
    data: bytes, start: int, end: int, _: bytes
) -> tuple[tuple[int, bytes], ...]:
    return tuple(_dec_algorithm_list(data, start, end))


def _dec_password_algorithm(
    data: bytes, start: int, end: int, _: bytes
) -> tuple[int, bytes]:
    items = _dec_algorithm_list(data, start, end)
    if len(items) != 1:
        raise StunParseError(f"{len(items)} entries instead of 1")
    return items[0]


# --- attribute values: encoders ------------------------------------------------
#
# An encoder gets the attribute type, the value and the 16 XOR bytes, and
# returns the whole attribute: header, value and padding.


def _tlv(attr_type: int, value: bytes) -> bytes:
    length = len(value)
    return _HH.pack(attr_type, length) + value + b"\x00" * (-length & 3)


@functools.lru_cache(maxsize=512)
def _packed_ip(host: str) -> tuple[int, bytes]:
    address = ipaddress.ip_address(host)
    return (1 if address.version == 4 else 2), address.packed


def _check_address(value: Any) -> tuple[int, bytes, int]:
    host, port = value
    if not isinstance(host, str):
        raise TypeError(f"address host must be a str, not {type(host).__name__}")
    family, packed = _packed_ip(host)
    return family, packed, port


def _enc_address(attr_type: int, value: Any, _: bytes) -> bytes:
    family, packed, port = _check_address(value)
    return _HHHH.pack(attr_type, 4 + len(packed), family, port) + packed


def _enc_xor_address(attr_type: int, value: Any, xor: bytes) -> bytes:
    family, packed, port = _check_address(value)
    mask = xor[: len(packed)]
    xored = (int.from_bytes(packed, "big") ^ int.from_bytes(mask, "big")).to_bytes(
        len(packed), "big"
    )
    return _HHHH.pack(attr_type, 4 + len(packed), family, port ^ 0x2112) + xored


def _enc_string(limit: int) -> _Encoder:
    def encode(attr_type: int, value: Any, _: bytes) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"expected str, not {type(value).__name__}")
        raw = value.encode("utf-8")
        if len(raw) > limit:
            raise ValueError(f"{len(raw)} bytes, more than {limit}")
        return _tlv(attr_type, raw)

    return encode


def _enc_bytes(limit: int, *, exact: bool = False) -> _Encoder:
    def encode(attr_type: int, value: Any, _: bytes) -> bytes:
        if not isinstance(value, bytes):
            raise TypeError(f"expected bytes, not {type(value).__name__}")
        if len(value) > limit or (exact and len(value) != limit):
            raise ValueError(
                f"{len(value)} bytes, {'not' if exact else 'more than'} {limit}"
            )
        return _tlv(attr_type, value)

    return encode


def _enc_u32(attr_type: int, value: Any, _: bytes) -> bytes:
    return _HHI.pack(attr_type, 4, value)


def _enc_u64(attr_type: int, value: Any, _: bytes) -> bytes:
    return _HHQ.pack(attr_type, 8, value)


def _enc_flag(attr_type: int, value: Any, _: bytes) -> bytes:
    if value is not None:
        raise TypeError("a flag attribute takes the value None")
    return _HH.pack(attr_type, 0)


def _enc_first_byte(attr_type: int, value: Any, _: bytes) -> bytes:
    return _HHB3x.pack(attr_type, 4, value)


def _enc_channel_number(attr_type: int, value: Any, _: bytes) -> bytes:
    return _HHHH.pack(attr_type, 4, value, 0)


def _enc_even_port(attr_type: int, value: Any, _: bytes) -> bytes:
    if not isinstance(value, bool):
        raise TypeError("EVEN-PORT takes a bool")
    return _HHB3x.pack(attr_type, 1, 0x80 if value else 0)


def _enc_error_code(attr_type: int, value: Any, _: bytes) -> bytes:
    code, reason = value
    if not isinstance(code, int) or not 300 <= code <= 699:
        raise ValueError(f"error code {code!r} is not in 300-699")
    if not isinstance(reason, str):
        raise TypeError("the reason phrase must be a str")
    raw = reason.encode("utf-8")
    if len(raw) > _MAX_STRING:
        raise ValueError(f"reason of {len(raw)} bytes, more than {_MAX_STRING}")
    return _tlv(attr_type, bytes((0, 0, code // 100, code % 100)) + raw)


def _enc_unknown_attributes(attr_type: int, value: Any, _: bytes) -> bytes:
    types = tuple(value)
    if len(types) > MAX_ATTRIBUTES:
        raise ValueError(f"{len(types)} types, more than {MAX_ATTRIBUTES}")
    return _tlv(attr_type, struct.pack(f"!{len(types)}H", *types))


def _algorithm_entry(item: Any) -> bytes:
    algorithm, params = item
    if not isinstance(params, bytes):
        raise TypeError("algorithm parameters must be bytes")
    return _HH.pack(algorithm, len(params)) + params + b"\x00" * (-len(params) & 3)


def _enc_password_algorithms(attr_type: int, value: Any, _: bytes) -> bytes:
    value = tuple(value)
    if len(value) > _MAX_ALGORITHMS:
        raise ValueError(f"{len(value)} algorithms, more than {_MAX_ALGORITHMS}")
    return _tlv(attr_type, b"".join(_algorithm_entry(item) for item in value))


def _enc_password_algorithm(attr_type: int, value: Any, _: bytes) -> bytes:
    return _tlv(attr_type, _algorithm_entry(value))


# type, name, decoder, encoder
_ATTRIBUTE_TABLE: tuple[tuple[int, str, _Decoder, _Encoder], ...] = (
    (0x0001, "MAPPED-ADDRESS", _dec_address, _enc_address),
    (0x0006, "USERNAME", _dec_string(_MAX_USERNAME), _enc_string(_MAX_USERNAME)),
    (0x0009, "ERROR-CODE", _dec_error_code, _enc_error_code),
    (0x000A, "UNKNOWN-ATTRIBUTES", _dec_unknown_attributes, _enc_unknown_attributes),
    (0x000C, "CHANNEL-NUMBER", _dec_channel_number, _enc_channel_number),
    (0x000D, "LIFETIME", _dec_u32, _enc_u32),
    (0x0012, "XOR-PEER-ADDRESS", _dec_xor_address, _enc_xor_address),
    (0x0013, "DATA", _dec_bytes(0xFFFF), _enc_bytes(0xFFFF)),
    (0x0014, "REALM", _dec_string(_MAX_STRING), _enc_string(_MAX_STRING)),
    (0x0015, "NONCE", _dec_bytes(_MAX_STRING), _enc_bytes(_MAX_STRING)),
    (0x0016, "XOR-RELAYED-ADDRESS", _dec_xor_address, _enc_xor_address),
    (0x0017, "REQUESTED-ADDRESS-FAMILY", _dec_first_byte, _enc_first_byte),
    (0x0018, "EVEN-PORT", _dec_even_port, _enc_even_port),
    (0x0019, "REQUESTED-TRANSPORT", _dec_first_byte, _enc_first_byte),
    (0x001A, "DONT-FRAGMENT", _dec_flag, _enc_flag),
    (0x001D, "PASSWORD-ALGORITHM", _dec_password_algorithm, _enc_password_algorithm),
    (0x001E, "USERHASH", _dec_bytes(32, exact=True), _enc_bytes(32, exact=True)),
    (0x0020, "XOR-MAPPED-ADDRESS", _dec_xor_address, _enc_xor_address),
    (0x0022, "RESERVATION-TOKEN", _dec_bytes(8, exact=True), _enc_bytes(8, exact=True)),
    (0x0024, "PRIORITY", _dec_u32, _enc_u32),
    (0x0025, "USE-CANDIDATE", _dec_flag, _enc_flag),
    (0x8000, "ADDITIONAL-ADDRESS-FAMILY", _dec_first_byte, _enc_first_byte),
    (0x8002, "PASSWORD-ALGORITHMS", _dec_password_algorithms, _enc_password_algorithms),
    (0x8003, "ALTERNATE-DOMAIN", _dec_string(255), _enc_string(255)),
    (0x8022, "SOFTWARE", _dec_string(_MAX_STRING), _enc_string(_MAX_STRING)),
    (0x8023, "ALTERNATE-SERVER", _dec_address, _enc_address),
    (0x8029, "ICE-CONTROLLED", _dec_u64, _enc_u64),
    (0x802A, "ICE-CONTROLLING", _dec_u64, _enc_u64),
    # libwebrtc's renomination (goog NOMINATION, draft-thatcher-ice-renomination).
    (0xC001, "NOMINATION", _dec_u32, _enc_u32),
)
_DECODERS: dict[int, tuple[str, _Decoder]] = {
    t: (n, d) for t, n, d, _ in _ATTRIBUTE_TABLE
}
_ENCODERS: dict[str, tuple[int, _Encoder]] = {
    n: (t, e) for t, n, _, e in _ATTRIBUTE_TABLE
}
#: Attribute types by name, for the attributes this codec decodes.
ATTRIBUTE_TYPES: dict[str, int] = {n: t for t, n, _, _ in _ATTRIBUTE_TABLE}
_INTEGRITY_NAMES = {
    _ATTR_MI: "MESSAGE-INTEGRITY",
    _ATTR_MI256: "MESSAGE-INTEGRITY-SHA256",
    _ATTR_FP: "FINGERPRINT",
}


def decode_attribute(
    attr_type: int, value: bytes, transaction_id: bytes
) -> tuple[str, AttributeValue]:
    """Decode one raw attribute value, as kept in :attr:`Message.extra_attributes`.

    Use it for the repeated occurrences of an attribute, for example a second
    XOR-PEER-ADDRESS.

    :param attr_type: the attribute type.
    :param value: the value bytes, without header or padding.
    :param transaction_id: the 12-byte transaction ID of the message.
    :returns: the attribute's name and decoded value.
    :raises StunParseError: the type is unknown or the value malformed.
    """
    entry = _DECODERS.get(attr_type)
    if entry is None:
        raise StunParseError(f"unknown attribute type 0x{attr_type:04x}")
    name, decode = entry
    try:
        return name, decode(value, 0, len(value), _COOKIE_BYTES + transaction_id)
    except (ValueError, struct.error, IndexError) as exc:
        raise StunParseError(f"malformed {name}: {exc}") from None


# --- messages ------------------------------------------------------------------


def _message_type(method: int, message_class: int) -> int:
    return (
        ((method & 0xF80) << 2)
        | ((method & 0x070) << 1)
        | (method & 0x00F)
        | message_class
    )


def _repad(body: bytes, padding: int) -> bytes:
    """Return ``body`` with every attribute's padding bytes set to ``padding``."""
    fill = bytes((padding,))
    out = bytearray(body)
    pos = 0
    while pos < len(out):
        length = _HH.unpack_from(out, pos)[1]
        end = pos + 4 + length
        pad = -length & 3
        out[end : end + pad] = fill * pad
        pos = end + pad
    return bytes(out)


@functools.lru_cache(maxsize=64)
def _keyed_hmac(key: bytes, digest: str) -> hmac.HMAC:
    # An HMAC with the key already absorbed: copying it skips the two hash
    # blocks of key set-up on every message (ICE and TURN reuse few keys).
    return hmac.new(key, digestmod=digest)


def _mac(key: bytes, digest: str, data: bytes) -> bytes:
    h = _keyed_hmac(key, digest).copy()
    h.update(data)
    return h.digest()


# Message type <-> (method, class), for the methods this codec names.
_KNOWN_TYPES: dict[int, tuple[int, Class]] = {
    _message_type(m, c): (m, c) for m in Method for c in Class
}
_TYPE_OF: dict[tuple[int, int], int] = {v: k for k, v in _KNOWN_TYPES.items()}


def _checked_message_type(method: int, message_class: int) -> int:
    if not isinstance(method, int) or not 0 <= method <= 0xFFF:
        raise ValueError(f"method {method!r} is not a 12-bit number")
    if message_class not in _CLASSES:
        raise ValueError(f"message class {message_class!r} is not a Class")
    return _message_type(method, message_class)


class Message:
    """A STUN message.

    :param method: the STUN method, a :class:`Method` or any 12-bit number.
    :param message_class: the message class.
    :param transaction_id: 12 bytes; a random one (:mod:`secrets`) by default.
    :param attributes: the decoded attributes, by RFC name (:data:`Attributes`).
    :param extra_attributes: raw ``(type, value)`` attributes, encoded after
        ``attributes`` in their order: unknown attributes, and repeated
        occurrences of known ones.

    Two messages are equal when their method, class, transaction ID and
    attributes are; how a parsed message was protected is not compared.

    >>> request = Message(Method.BINDING, Class.REQUEST, attributes={"PRIORITY": 1})
    >>> parse_message(request.encode(key=b"pwd", fingerprint=True)) == request
    True
    """

    __slots__ = (
        "_fingerprint",
        "_integrity_at",
        "_integrity_sha256_at",
        "_raw",
        "attributes",
        "extra_attributes",
        "message_class",
        "method",
        "transaction_id",
    )

    def __init__(
        self,
        method: int,
        message_class: Class,
        transaction_id: bytes | None = None,
        attributes: Attributes | None = None,
        extra_attributes: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        if transaction_id is None:
            transaction_id = secrets.token_bytes(12)
        elif not isinstance(transaction_id, bytes) or len(transaction_id) != 12:
            raise ValueError("transaction_id must be 12 bytes")
        self.method = method
        self.message_class = message_class
        self.transaction_id = transaction_id
        self.attributes: Attributes = {} if attributes is None else attributes
        self.extra_attributes: list[tuple[int, bytes]] = list(extra_attributes)
        self._raw = b""
        self._integrity_at = -1
        self._integrity_sha256_at = -1
        self._fingerprint = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.method == other.method
            and self.message_class == other.message_class
            and self.transaction_id == other.transaction_id
            and self.attributes == other.attributes
            and self.extra_attributes == other.extra_attributes
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __repr__(self) -> str:
        method = _METHODS.get(self.method, self.method)
        name = method.name if isinstance(method, Method) else f"0x{method:03x}"
        return (
            f"Message({name}, {Class(self.message_class).name}, "
            f"{self.transaction_id.hex()}, {self.attributes!r}"
            + (f", extra={self.extra_attributes!r})" if self.extra_attributes else ")")
        )

    @property
    def error_code(self) -> int | None:
        """The code of the ERROR-CODE attribute, or ``None``."""
        value = self.attributes.get("ERROR-CODE")
        return None if value is None else value[0]

    @property
    def unknown_required(self) -> tuple[int, ...]:
        """Unknown comprehension-required attribute types (0x0000-0x7FFF), in order.

        A server answers a request that has any with a 420 error whose
        UNKNOWN-ATTRIBUTES lists them (RFC 8489 §6.3.1.1).
        """
        return tuple(
            t for t, _ in self.extra_attributes if t < 0x8000 and t not in _DECODERS
        )

    @property
    def integrity(self) -> Literal["sha1", "sha256"] | None:
        """Which integrity attribute the parsed message carried, if any.

        ``"sha256"`` when it had MESSAGE-INTEGRITY-SHA256 (whether or not it
        had MESSAGE-INTEGRITY too), ``"sha1"`` for MESSAGE-INTEGRITY alone.
        """
        if self._integrity_sha256_at >= 0:
            return "sha256"
        return "sha1" if self._integrity_at >= 0 else None

    @property
    def has_fingerprint(self) -> bool:
        """Whether the parsed message carried a (correct) FINGERPRINT."""
        return self._fingerprint

    def check_integrity(self, key: bytes) -> bool:
        """Check the message integrity of a parsed message against ``key``.

        MESSAGE-INTEGRITY-SHA256 is checked when present, else MESSAGE-INTEGRITY
        (RFC 8489 §9.1.3, §9.2.4). The comparison takes constant time.

        :param key: from :func:`short_term_key` or :func:`long_term_key`.
        :returns: ``False`` as well when the message has no integrity attribute
            or was not parsed from bytes.
        """
        raw = self._raw
        at = self._integrity_sha256_at
        if at >= 0:
            digest, size = "sha256", raw[at + 3]
        else:
            at = self._integrity_at
            if at < 0:
                return False
            digest, size = "sha1", 20
        h = _keyed_hmac(key, digest).copy()
        h.update(raw[:2] + _H.pack(at + 4 + size - _HEADER_SIZE) + raw[4:at])
        mac = h.digest()[:size]
        return hmac.compare_digest(mac, raw[at + 4 : at + 4 + size])

    def encode(
        self,
        *,
        key: bytes | None = None,
        integrity: Literal["sha1", "sha256", "both"] = "sha1",
        fingerprint: bool = False,
        padding: int = 0,
    ) -> bytes:
        """Encode the message, optionally protected.

        :param key: when given, add MESSAGE-INTEGRITY computed with it
            (RFC 8489 §14.5).
        :param integrity: ``"sha256"`` adds MESSAGE-INTEGRITY-SHA256 instead
            (§14.6), ``"both"`` adds the two, SHA-1 first.
        :param fingerprint: add FINGERPRINT last (§14.7).
        :param padding: the value of the padding bytes, which receivers ignore
            (§14); RFC 5769's vectors pad with spaces (0x20).
        :raises ValueError: an attribute value is out of range or too long, an
            attribute name is unknown, or the message is over 64 KiB.
        :raises TypeError: an attribute value has the wrong type.
        """
        tid = self.transaction_id
        xor = _COOKIE_BYTES + tid
        parts = []
        try:
            for name, value in self.attributes.items():
                attr_type, encode = _ENCODERS[name]
                parts.append(encode(attr_type, value, xor))
        except KeyError:
            raise ValueError(f"unknown attribute {name!r}") from None
        except struct.error as exc:
            raise ValueError(f"bad value for {name}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"bad value for {name}: {exc}") from None
        except TypeError as exc:
            raise TypeError(f"bad value for {name}: {exc}") from None
        for attr_type, raw in self.extra_attributes:
            if attr_type in _INTEGRITY_NAMES:
                raise ValueError(f"{_INTEGRITY_NAMES[attr_type]} is added by encode()")
            if not isinstance(raw, bytes) or len(raw) > 0xFFFF:
                raise ValueError(
                    f"attribute 0x{attr_type:04x}: value must be bytes, at most 64 KiB"
                )
            try:
                parts.append(_tlv(attr_type, raw))
            except struct.error:
                raise ValueError(
                    f"attribute type {attr_type!r} is not 16 bits"
                ) from None
        body = b"".join(parts)
        if padding:
            body = _repad(body, padding)
        message_type = _TYPE_OF.get((self.method, self.message_class))
        if message_type is None:
            message_type = _checked_message_type(self.method, self.message_class)
        if key is not None:
            room = (0 if integrity == "sha256" else 24) + (
                0 if integrity == "sha1" else 36
            )
        else:
            room = 0
        if fingerprint:
            room += 8
        if len(body) + room > 0xFFFF:
            raise ValueError(f"message of {len(body) + room} bytes exceeds 64 KiB")
        if key is not None:
            if integrity != "sha256":
                length = len(body) + 24
                signed = _HEADER.pack(message_type, length, COOKIE, tid) + body
                body += b"\x00\x08\x00\x14" + _mac(key, "sha1", signed)
            if integrity != "sha1":
                length = len(body) + 36
                signed = _HEADER.pack(message_type, length, COOKIE, tid) + body
                body += b"\x00\x1c\x00\x20" + _mac(key, "sha256", signed)
        if fingerprint:
            data = _HEADER.pack(message_type, len(body) + 8, COOKIE, tid) + body
            return data + _HHI.pack(_ATTR_FP, 4, zlib.crc32(data) ^ _FINGERPRINT_XOR)
        return _HEADER.pack(message_type, len(body), COOKIE, tid) + body

    def __bytes__(self) -> bytes:
        return self.encode()


def _check_fingerprint(data: bytes, at: int, length: int, end: int) -> None:
    """Check a FINGERPRINT attribute at ``at``, ending at ``end`` (RFC 8489 §14.7)."""
    if length != 4:
        raise StunParseError("FINGERPRINT must be 4 bytes")
    if end != len(data):
        raise StunParseError("FINGERPRINT is not the last attribute")
    if zlib.crc32(data[:at]) ^ _FINGERPRINT_XOR != _I.unpack_from(data, at + 4)[0]:
        raise StunParseError("FINGERPRINT mismatch")


def _check_sha256_length(length: int) -> None:
    # 16 to 32 bytes, in multiples of 4 (RFC 8489 §14.6).
    if not 16 <= length <= 32 or length & 3:
        raise StunParseError(f"MESSAGE-INTEGRITY-SHA256 of {length} bytes")


def parse_message(data: bytes | bytearray | memoryview) -> Message:
    """Parse one STUN message (RFC 8489 §5, §14).

    The whole of ``data`` must be the message: its length field must match,
    and the attributes must tile the body exactly. A FINGERPRINT, when
    present, must be last and correct (§14.7). Integrity is checked
    afterwards with :meth:`Message.check_integrity`.

    After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
    count, and after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT; any other
    attribute there, a second integrity attribute included, is ignored, as
    §14.5 and §14.6 require: it is walked, to find the FINGERPRINT, but
    neither decoded nor kept.

    The cost is bounded whatever the bytes: the attributes that are not
    decoded (unknown and repeated ones, kept in
    :attr:`Message.extra_attributes`, and those ignored after integrity)
    share a budget of :data:`MAX_ATTRIBUTES`, and a message that needs more
    is rejected. The walk so visits at most one attribute per known type
    (:data:`ATTRIBUTE_TYPES`), :data:`MAX_ATTRIBUTES` others and the three
    integrity ones, instead of the 16k that 64 KiB can hold. UNKNOWN-ATTRIBUTES
    may list at most :data:`MAX_ATTRIBUTES` types and PASSWORD-ALGORITHMS
    16 algorithms (§14.9, §14.11).

    :param data: the datagram (or one frame from a :class:`StreamFramer`).
    :returns: the message; :attr:`Message.attributes` holds the first
        occurrence of each known attribute before the integrity attribute.
    :raises StunParseError: for anything malformed, including more than
        :data:`MAX_ATTRIBUTES` unknown, repeated or ignored attributes, and
        never another error.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    size = len(data)
    if size < _HEADER_SIZE:
        raise StunParseError(f"{size} bytes is shorter than a STUN header")
    message_type, length = _HH.unpack_from(data, 0)
    if message_type & 0xC000:
        raise StunParseError("the first two bits of a STUN message must be zero")
    if data[4:8] != _COOKIE_BYTES:
        raise StunParseError("no magic cookie")
    if length + _HEADER_SIZE != size or length & 3:
        raise StunParseError(f"length field {length} does not fit {size} bytes")
    message = Message.__new__(Message)
    known = _KNOWN_TYPES.get(message_type)
    if known is None:
        method = (
            (message_type & 0x000F)
            | ((message_type & 0x00E0) >> 1)
            | ((message_type & 0x3E00) >> 2)
        )
        known = method, _CLASSES[message_type & 0x0110]
    message.method, message.message_class = known
    tid = message.transaction_id = data[8:20]
    message._raw = data
    attributes: dict[str, Any] = {}
    extra: list[tuple[int, bytes]] = []
    integrity_at = integrity_sha256_at = -1
    fingerprint = False
    pos = _HEADER_SIZE
    xor = _COOKIE_BYTES + tid
    decoders = _DECODERS
    # Most ICE and TURN messages end in MESSAGE-INTEGRITY then FINGERPRINT:
    # when the walk reaches that tail, both are taken in one step.
    tail = (
        size - 32
        if data[size - 8 : size - 4] == _FP_HEADER
        and data[size - 32 : size - 28] == _MI_HEADER
        else -1
    )
    unpack = _HH.unpack_from
    # Every attribute the walk does not decode (unknown, repeated, ignored
    # after integrity) spends one unit of the budget, so the walk visits at
    # most len(_DECODERS) + MAX_ATTRIBUTES + 4 attributes whatever the input.
    budget = MAX_ATTRIBUTES
    while pos < size:
        if pos == tail:
            _check_fingerprint(data, size - 8, 4, size)
            integrity_at = tail
            fingerprint = True
            pos = size
            break
        attr_type, attr_length = unpack(data, pos)
        start = pos + 4
        end = start + attr_length
        at, pos = pos, end + (-attr_length & 3)
        if pos > size:
            raise StunParseError(f"attribute 0x{attr_type:04x} runs past the message")
        entry = decoders.get(attr_type)
        if entry is not None:
            name, decode = entry
            if name not in attributes:
                try:
                    attributes[name] = decode(data, start, end, xor)
                except (ValueError, struct.error, IndexError) as exc:
                    raise StunParseError(f"malformed {name}: {exc}") from None
                continue
        elif attr_type == _ATTR_MI:
            if attr_length != 20:
                raise StunParseError(f"MESSAGE-INTEGRITY of {attr_length} bytes")
            integrity_at = at
            break
        elif attr_type == _ATTR_MI256:
            _check_sha256_length(attr_length)
            integrity_sha256_at = at
            break
        elif attr_type == _ATTR_FP:
            _check_fingerprint(data, at, attr_length, pos)
            fingerprint = True
            break
        if not budget:
            raise StunParseError(
                f"more than {MAX_ATTRIBUTES} unknown or repeated attributes"
            )
        budget -= 1
        extra.append((attr_type, data[start:end]))
    # After an integrity attribute only MESSAGE-INTEGRITY-SHA256 (after
    # MESSAGE-INTEGRITY) and FINGERPRINT count; the rest is ignored (RFC 8489
    # §14.5, §14.6), but still walked, to find a FINGERPRINT and check the
    # framing, and still spends the budget.
    while pos < size:
        attr_type, attr_length = unpack(data, pos)
        at, pos = pos, pos + 4 + attr_length + (-attr_length & 3)
        if pos > size:
            raise StunParseError(f"attribute 0x{attr_type:04x} runs past the message")
        if attr_type == _ATTR_FP:
            _check_fingerprint(data, at, attr_length, pos)
            fingerprint = True
        elif attr_type == _ATTR_MI256 and integrity_sha256_at < 0:
            _check_sha256_length(attr_length)
            integrity_sha256_at = at
        elif budget:
            budget -= 1
        else:
            raise StunParseError(
                f"more than {MAX_ATTRIBUTES} unknown, repeated or ignored attributes"
            )
    message.attributes = cast(Attributes, attributes)
    message.extra_attributes = extra
    message._integrity_at = integrity_at
    message._integrity_sha256_at = integrity_sha256_at
    message._fingerprint = fingerprint
    return message


def is_stun(data: bytes) -> bool:
    """Tell a STUN message from other traffic on the same socket, cheaply.

    RFC 7983 §7: a first byte of 0-3, plus the RFC 5389 magic cookie.

    :param data: a received datagram.
    """
    return len(data) >= _HEADER_SIZE and data[0] < 4 and data[4:8] == _COOKIE_BYTES


# --- keys ----------------------------------------------------------------------


def saslprep(text: str) -> str:
    """Prepare a password or realm with SASLprep (RFC 4013).

    RFC 5389 keys use it and the RFC 5769 test vectors need it; for ASCII
    text it changes nothing. Unassigned code points are allowed (a query).

    :raises ValueError: the text holds a prohibited character or breaks the
        bidirectional rules.
    """
    if text.isascii() and text.isprintable():
        return text
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in text
        if not stringprep.in_table_b1(ch)
    )
    normalized = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for ch in normalized:
        if any(check(ch) for check in prohibited):
            raise ValueError(f"SASLprep prohibits {ch!r}")
    if any(stringprep.in_table_d1(ch) for ch in normalized):
        if any(stringprep.in_table_d2(ch) for ch in normalized):
            raise ValueError("SASLprep: mixed right-to-left and left-to-right text")
        if not (
            stringprep.in_table_d1(normalized[0])
            and stringprep.in_table_d1(normalized[-1])
        ):
            raise ValueError("SASLprep: right-to-left text must start and end so")
    return normalized


def short_term_key(password: str) -> bytes:
    """The short-term credential key (RFC 8489 §9.1.1): the prepared password.

    ICE uses it with the peer's ``ice-pwd`` (RFC 8445 §7.2.2).
    """
    return saslprep(password).encode("utf-8")


def long_term_key(
    username: str,
    realm: str,
    password: str,
    algorithm: PasswordAlgorithm = PasswordAlgorithm.MD5,
) -> bytes:
    """The long-term credential key (RFC 8489 §9.2.2).

    ``MD5(username ":" realm ":" password)``, or SHA-256 of the same for
    :attr:`PasswordAlgorithm.SHA256`; the password is prepared with
    :func:`saslprep`.

    :raises ValueError: the password is not valid for SASLprep, or the
        algorithm is unknown.
    """
    text = f"{username}:{realm}:{saslprep(password)}".encode()
    if algorithm == PasswordAlgorithm.MD5:
        return hashlib.md5(text, usedforsecurity=False).digest()
    if algorithm == PasswordAlgorithm.SHA256:
        return hashlib.sha256(text).digest()
    raise ValueError(f"unknown password algorithm {algorithm!r}")


def userhash(username: str, realm: str) -> bytes:
    """The USERHASH value: SHA-256 of ``username ":" realm`` (RFC 8489 §14.4)."""
    return hashlib.sha256(f"{username}:{realm}".encode()).digest()


# --- ChannelData and streams ------------------------------------------------------


class ChannelData:
    """A TURN ChannelData message (RFC 8656 §12.4).

    :param channel: the channel number, 0x4000-0x4FFF.
    :param data: the application data, at most 65535 bytes.
    """

    __slots__ = ("channel", "data")

    def __init__(self, channel: int, data: bytes) -> None:
        if not 0x4000 <= channel <= 0x4FFF:
            raise ValueError(f"channel number 0x{channel:04x} is not in 0x4000-0x4FFF")
        if len(data) > 0xFFFF:
            raise ValueError(f"{len(data)} bytes of data exceed 65535")
        self.channel = channel
        self.data = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelData):
            return NotImplemented
        return self.channel == other.channel and self.data == other.data

    def __hash__(self) -> int:
        return hash((self.channel, self.data))

    def __repr__(self) -> str:
        return f"ChannelData(0x{self.channel:04x}, {self.data!r})"

    def encode(self, *, padded: bool = False) -> bytes:
        """Encode the message.

        :param padded: pad to a multiple of four bytes, as TCP and TLS
            transports require (RFC 8656 §12.5); over UDP padding is optional.
        """
        return frame_channel_data(self.channel, self.data, padded=padded)

    def __bytes__(self) -> bytes:
        return self.encode()


def is_channel_data(data: bytes) -> bool:
    """Whether a datagram is TURN ChannelData: first byte 64-79 (RFC 7983 §7)."""
    return len(data) >= 4 and 0x40 <= data[0] <= 0x4F


def parse_channel_data(data: bytes) -> ChannelData:
    """Parse a ChannelData datagram (RFC 8656 §12.4).

    Up to three bytes of padding after the data are accepted.

    :raises StunParseError: the bytes are not a ChannelData message.
    """
    if len(data) < 4:
        raise StunParseError(f"{len(data)} bytes is shorter than a ChannelData header")
    channel, length = _HH.unpack_from(data, 0)
    if not 0x4000 <= channel <= 0x4FFF:
        raise StunParseError(f"channel number 0x{channel:04x} is not in 0x4000-0x4FFF")
    if not 0 <= len(data) - 4 - length <= 3:
        raise StunParseError(f"length field {length} does not fit {len(data)} bytes")
    return ChannelData(channel, bytes(data[4 : 4 + length]))


#: The longest frame on a stream: a STUN message of 20 + 65532 bytes.
MAX_FRAME = _HEADER_SIZE + 0xFFFC


class StreamFramer:
    """Split a TURN-over-TCP/TLS byte stream into messages (RFC 8656 §12.5).

    Feed it bytes in any chunking; it returns every whole STUN message and
    ChannelData message, in order. It never buffers more than one incomplete
    frame, at most ``max_frame`` bytes.

    A STUN frame that does not parse is dropped and counted in
    :attr:`dropped`: the framing is still in step. Bytes that start neither
    kind of message, or a frame longer than ``max_frame``, mean the stream is
    lost: :meth:`feed` raises :class:`StunParseError`, and so does every later
    call; the caller should close the connection. The whole frames that came
    before the bad bytes are not lost: a :meth:`feed` that completed some
    returns them, and the next call raises.

    :param max_frame: the longest frame accepted, in bytes (at least 24).
    """

    __slots__ = ("_buffer", "_error", "dropped", "max_frame")

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        if max_frame < 24:
            raise ValueError("max_frame must be at least 24 bytes")
        self.max_frame = max_frame
        self.dropped = 0
        self._buffer = bytearray()
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held for the next :meth:`feed`."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message | ChannelData]:
        """Add received bytes and return the messages they complete.

        :raises StunParseError: the stream is out of step, in these bytes and
            with no whole frame before them, or in an earlier call (see the
            class).
        """
        if self._error is not None:
            raise StunParseError(self._error)
        buffer = self._buffer
        buffer += data
        frames: list[Message | ChannelData] = []
        pos = 0
        available = len(buffer)
        while available - pos >= 4:
            first = buffer[pos]
            length = _HH.unpack_from(buffer, pos)[1]
            if first < 4:
                if available - pos < 8:
                    break
                if buffer[pos + 4 : pos + 8] != _COOKIE_BYTES or length & 3:
                    self._error = (
                        "stream out of step: a STUN frame without magic cookie"
                    )
                    break
                frame_size = _HEADER_SIZE + length
            elif 0x40 <= first <= 0x4F:
                frame_size = 4 + length + (-length & 3)
            else:
                self._error = (
                    f"stream out of step: a frame cannot start with 0x{first:02x}"
                )
                break
            if frame_size > self.max_frame:
                self._error = f"a frame of {frame_size} bytes exceeds {self.max_frame}"
                break
            if available - pos < frame_size:
                break
            frame = bytes(buffer[pos : pos + frame_size])
            pos += frame_size
            try:
                if first < 4:
                    frames.append(parse_message(frame))
                else:
                    frames.append(
                        ChannelData(_HH.unpack_from(frame)[0], frame[4 : 4 + length])
                    )
            except StunParseError:
                self.dropped += 1
        del buffer[:pos]
        if self._error is not None:
            buffer.clear()
            if not frames:
                raise StunParseError(self._error)
        return frames
