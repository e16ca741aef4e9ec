"""Hypothesis strategies for the STUN codec (:mod:`syncice.stun`).

- :func:`attribute_values` draws a valid value for any attribute of the
  :data:`~syncice.stun.Attributes` table; :func:`messages` builds whole
  :class:`~syncice.stun.Message` objects from them, with unknown and repeated
  attributes in ``extra_attributes``.
- :func:`encoded_messages` encodes such a message with a random protection
  (key, integrity mode, FINGERPRINT, padding byte).
- :func:`mutated_messages` damages encoded messages or seed files the way a
  hostile or broken peer would: bit flips, lying length fields, duplicated,
  swapped or moved attributes, malformed values of known types.
- :func:`channel_data`, :func:`stream_frames` and :func:`first_byte_biased`
  serve the ChannelData, stream framer and demultiplexing harnesses.

Every strategy only draws what the codec promises to round-trip: an IPv6
address in its compressed text form, strings within their UTF-8 byte limits,
at most :data:`~syncice.stun.MAX_ATTRIBUTES` extra attributes, and so on.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, cast

from hypothesis import strategies as st

from syncice.exceptions import StunParseError
from syncice.stun import (
    ATTRIBUTE_TYPES,
    COOKIE,
    MAX_ATTRIBUTES,
    Attributes,
    AttributeValue,
    ChannelData,
    Class,
    Message,
    Method,
    parse_message,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "INTEGRITY_TYPES",
    "MUTATIONS",
    "EncodedMessage",
    "Frame",
    "Integrity",
    "attribute_spans",
    "attribute_values",
    "channel_data",
    "channel_data_like",
    "encoded_messages",
    "first_byte_biased",
    "keys",
    "messages",
    "mutated_messages",
    "other_key",
    "stream_frames",
    "unknown_types",
]

Integrity = Literal["sha1", "sha256", "both"]

#: Every attribute name of :data:`~syncice.stun.Attributes`, sorted.
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(
    sorted(Attributes.__required_keys__ | Attributes.__optional_keys__)
)
#: MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT: encode() adds them.
INTEGRITY_TYPES = frozenset({0x0008, 0x001C, 0x8028})
_COOKIE_BYTES = COOKIE.to_bytes(4, "big")
_FP_XOR = 0x5354554E
_KNOWN_TYPES = frozenset(ATTRIBUTE_TYPES.values())


# --- attribute values ----------------------------------------------------------


def _utf8_prefix(limit: int) -> Callable[[str], str]:
    def cut(text: str) -> str:
        # A prefix of valid UTF-8 can only be broken in its last character.
        return text.encode("utf-8")[:limit].decode("utf-8", "ignore")

    return cut


def _strings(limit: int) -> st.SearchStrategy[str]:
    """Text whose UTF-8 form fits ``limit`` bytes, non-ASCII included."""
    exact_multibyte = "\u00e9" * (limit // 2) + "a" * (limit % 2)
    return st.one_of(
        st.text(max_size=min(limit, 64)).map(_utf8_prefix(limit)),
        st.text(
            alphabet=st.characters(min_codepoint=0x80, exclude_categories=["Cs"]),
            max_size=limit,
        ).map(_utf8_prefix(limit)),
        st.sampled_from(["", "a" * limit, exact_multibyte, "\u30de\u30c8\u30ea"]),
    )


_ADDRESSES: st.SearchStrategy[tuple[str, int]] = st.tuples(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda address: address.compressed),
    ),
    st.integers(0, 0xFFFF),
)
_U8 = st.integers(0, 0xFF)
_U16 = st.integers(0, 0xFFFF)
_U32 = st.integers(0, 0xFFFF_FFFF)
_U64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
_FAMILY = st.one_of(st.sampled_from([1, 2]), _U8)
_ALGORITHM: st.SearchStrategy[tuple[int, bytes]] = st.tuples(
    st.one_of(st.sampled_from([1, 2]), _U16),
    st.binary(max_size=40),  # any length: 1-3 byte tails need inner padding
)

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "MAPPED-ADDRESS": _ADDRESSES,
    "USERNAME": _strings(512),
    "ERROR-CODE": st.tuples(st.integers(300, 699), _strings(763)),
    "UNKNOWN-ATTRIBUTES": st.lists(_U16, max_size=24).map(tuple),
    "CHANNEL-NUMBER": st.one_of(st.integers(0x4000, 0x4FFF), _U16),
    "LIFETIME": _U32,
    "XOR-PEER-ADDRESS": _ADDRESSES,
    "DATA": st.binary(max_size=1500),
    "REALM": _strings(763),
    "NONCE": st.binary(max_size=763),
    "XOR-RELAYED-ADDRESS": _ADDRESSES,
    "REQUESTED-ADDRESS-FAMILY": _FAMILY,
    "EVEN-PORT": st.booleans(),
    "REQUESTED-TRANSPORT": st.one_of(st.just(17), _U8),
    "DONT-FRAGMENT": st.none(),
    "PASSWORD-ALGORITHM": _ALGORITHM,
    "USERHASH": st.binary(min_size=32, max_size=32),
    "XOR-MAPPED-ADDRESS": _ADDRESSES,
    "RESERVATION-TOKEN": st.binary(min_size=8, max_size=8),
    "PRIORITY": _U32,
    "USE-CANDIDATE": st.none(),
    "ADDITIONAL-ADDRESS-FAMILY": _FAMILY,
    "PASSWORD-ALGORITHMS": st.lists(_ALGORITHM, max_size=5).map(tuple),
    "ALTERNATE-DOMAIN": _strings(255),
    "SOFTWARE": _strings(763),
    "ALTERNATE-SERVER": _ADDRESSES,
    "ICE-CONTROLLED": _U64,
    "ICE-CONTROLLING": _U64,
    "NOMINATION": _U32,
}
if set(_VALUES) != set(ATTRIBUTE_NAMES):  # the codec grew or lost an attribute
    raise RuntimeError(
        "stun_strategies does not cover the Attributes table: "
        f"{sorted(set(_VALUES) ^ set(ATTRIBUTE_NAMES))}"
    )


def attribute_values(name: str) -> st.SearchStrategy[AttributeValue]:
    """Valid values of the attribute ``name`` (a key of :data:`Attributes`)."""
    return cast("st.SearchStrategy[AttributeValue]", _VALUES[name])


_UNKNOWN_TYPES: st.SearchStrategy[int] = st.one_of(
    st.sampled_from([0x0000, 0x0002, 0x0031, 0x7FFF, 0x8001, 0xC001, 0xFFFF]),
    st.integers(0x0000, 0x7FFF),
    st.integers(0x8000, 0xFFFF),
).filter(lambda t: t not in _KNOWN_TYPES and t not in INTEGRITY_TYPES)


def unknown_types() -> st.SearchStrategy[int]:
    """Attribute types the codec does not decode, comprehension-required or not.

    Never a type of the table, nor MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT.
    """
    return _UNKNOWN_TYPES


# --- messages ------------------------------------------------------------------

_ANY_METHOD: st.SearchStrategy[int] = st.one_of(
    st.sampled_from(Method), st.integers(0, 0xFFF)
)
_NAME_LISTS = st.lists(st.sampled_from(ATTRIBUTE_NAMES), unique=True)
_UNKNOWN_EXTRAS = st.lists(
    st.tuples(_UNKNOWN_TYPES, st.binary(max_size=48)), max_size=8
)
_REPEATS = st.lists(st.tuples(_U8, st.binary(max_size=24)), max_size=3)
_CLASSES = st.sampled_from(Class)
_TRANSACTION_IDS = st.binary(min_size=12, max_size=12)


@st.composite
def messages(draw: st.DrawFn, methods: st.SearchStrategy[int] = _ANY_METHOD) -> Message:
    """A :class:`Message` that encodes and parses back equal.

    Any method (a :class:`Method` or a 12-bit number; pass ``methods`` to
    narrow it) and class, a random transaction ID, a random subset of the
    attributes in a random order, and ``extra_attributes`` mixing unknown
    types with repeated occurrences of attributes the message already has.
    """
    names = draw(_NAME_LISTS)
    attributes = {name: draw(attribute_values(name)) for name in names}
    extra: list[tuple[int, bytes]] = draw(_UNKNOWN_EXTRAS)
    if names:
        # A repeated known attribute stays raw; it must follow the first one,
        # which encode() guarantees by writing attributes before extras.
        for index, value in draw(_REPEATS):
            extra.append((ATTRIBUTE_TYPES[names[index % len(names)]], value))
    if len(extra) > 1:
        extra = draw(st.permutations(extra))
    return Message(
        draw(methods),
        draw(_CLASSES),
        draw(_TRANSACTION_IDS),
        cast(Attributes, attributes),
        extra[:MAX_ATTRIBUTES],
    )


def keys() -> st.SearchStrategy[bytes]:
    """HMAC keys: empty, short, and longer than the SHA block size."""
    return st.binary(max_size=80)


def other_key(key: bytes) -> bytes:
    """A key whose HMACs differ from ``key``'s.

    Not ``key`` plus NUL bytes: HMAC pads short keys with zeros, so those
    keys are the same key.
    """
    return key + b"\x01"


_MESSAGES = messages()
_KEYS_OR_NONE = st.none() | keys()
_INTEGRITY_MODES: st.SearchStrategy[Integrity] = st.sampled_from(
    ["sha1", "sha256", "both"]
)
_PADDING = st.one_of(st.just(0), st.just(0x20), _U8)


class EncodedMessage(NamedTuple):
    """A message, how it was protected, and its encoding."""

    message: Message
    key: bytes | None
    integrity: Integrity
    fingerprint: bool
    data: bytes
    padding: int = 0

    @property
    def expected_integrity(self) -> Literal["sha1", "sha256"] | None:
        """What :attr:`Message.integrity` reports once ``data`` is parsed."""
        if self.key is None:
            return None
        return "sha1" if self.integrity == "sha1" else "sha256"


@st.composite
def encoded_messages(
    draw: st.DrawFn, message_strategy: st.SearchStrategy[Message] | None = None
) -> EncodedMessage:
    """A message from ``message_strategy`` (default :func:`messages`), encoded
    with or without a key, any integrity mode, with or without FINGERPRINT,
    and with a random padding byte."""
    message = draw(_MESSAGES if message_strategy is None else message_strategy)
    key = draw(_KEYS_OR_NONE)
    integrity: Integrity = draw(_INTEGRITY_MODES)
    fingerprint = draw(st.booleans())
    padding = draw(_PADDING)
    data = message.encode(
        key=key, integrity=integrity, fingerprint=fingerprint, padding=padding
    )
    return EncodedMessage(message, key, integrity, fingerprint, data, padding)


# --- mutations -----------------------------------------------------------------


def attribute_spans(data: bytes | bytearray) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each whole TLV (header, value, padding) after the
    header, walked without the codec; stops at the first that overruns."""
    spans = []
    pos = 20
    while pos + 4 <= len(data):
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 4 + length + (-length & 3)
        if end > len(data):
            break
        spans.append((pos, end))
        pos = end
    return spans


def _boundaries(data: bytearray) -> list[int]:
    return [20, *(end for _, end in attribute_spans(data))]


def _flip_bit(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        bit = draw(st.integers(0, len(data) * 8 - 1))
        data[bit // 8] ^= 1 << (bit % 8)
    return data


def _overwrite(draw: st.DrawFn, data: bytearray) -> bytearray:
    if data:
        at = draw(st.integers(0, len(data) - 1))
        new = draw(st.binary(min_size=1, max_size=4))
        data[at : at + len(new)] = new[: len(data) - at]
    return data


def _truncate(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data[: draw(st.integers(0, len(data)))]


def _extend(draw: st.DrawFn, data: bytearray) -> bytearray:
    return data + draw(st.binary(min_size=1, max_size=16))


def _lie_header_length(draw: st.DrawFn, data: bytearray) -> bytearray:
    if len(data) >= 4:
        true = max(len(data) - 20, 0)
        lie = draw(st.one_of(st.integers(0, 0xFFFF), st.integers(true - 8, true + 8)))
        data[2:4] = (lie & 0xFFFF).to_bytes(2, "big")
    return data


def _lie_attribute_length(draw: st.DrawFn, data: bytearray) -> bytearray:
    spans = attribute_spans(data)
    if spans:
        start, end = draw(st.sampled_from(spans))
        true = end - start - 4
        lie = draw(st.one_of(st.integers(0, 0xFFFF), st.integers(true - 5, true + 5)))
        data[start + 2 : start + 4] = (lie & 0xFFFF).to_bytes(2, "big")
    return data


def _duplicate(draw: st.DrawFn, data: bytearray) -> bytearray:
    spans = attribute_spans(data)
    if spans:
        start, end = draw(st.sampled_from(spans))
        at = draw(st.sampled_from(_boundaries(data)))
        data[at:at] = data[start:end]
    return data


def _delete(draw: st.DrawFn, data: bytearray) -> bytearray:
    spans = attribute_spans(data)
    if spans:
        start, end = draw(st.sampled_from(spans))
        del data[start:end]
    return data


def _swap(draw: st.DrawFn, data: bytearray) -> bytearray:
    spans = attribute_spans(data)
    if len(spans) >= 2:
        i, j = sorted(
            draw(
                st.lists(
                    st.sampled_from(range(len(spans))),
                    min_size=2,
                    max_size=2,
                    unique=True,
                )
            )
        )
        (a0, a1), (b0, b1) = spans[i], spans[j]
        data[a0:b1] = data[b0:b1] + data[a1:b0] + data[a0:a1]
    return data


def _move_protection(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Move a MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT elsewhere."""
    spans = [
        (start, end)
        for start, end in attribute_spans(data)
        if int.from_bytes(data[start : start + 2], "big") in INTEGRITY_TYPES
    ]
    if spans:
        start, end = draw(st.sampled_from(spans))
        tlv = data[start:end]
        del data[start:end]
        at = draw(st.sampled_from(_boundaries(data)))
        data[at:at] = tlv
    return data


_MUTATION_TYPES = sorted(_KNOWN_TYPES | INTEGRITY_TYPES)


def _insert_known(draw: st.DrawFn, data: bytearray) -> bytearray:
    """Insert an attribute of a decoded (or integrity) type with a random value."""
    attr_type = draw(st.sampled_from(_MUTATION_TYPES))
    value = draw(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([b"", b"\x00", b"\x00\x01", b"\x00\x01\x00\x00"]),
            st.integers(0, 36).map(bytes),
        )
    )
    tlv = len(value).to_bytes(2, "big")
    padding = bytes(-len(value) & 3)
    at = draw(st.sampled_from(_boundaries(data)))
    data[at:at] = attr_type.to_bytes(2, "big") + tlv + value + padding
    return data


_Mutation = Callable[[st.DrawFn, bytearray], bytearray]
MUTATIONS: tuple[_Mutation, ...] = (
    _flip_bit,
    _overwrite,
    _truncate,
    _extend,
    _lie_header_length,
    _lie_attribute_length,
    _duplicate,
    _delete,
    _swap,
    _move_protection,
    _insert_known,
)


def _fix_header_length(data: bytearray) -> bytearray:
    if len(data) >= 20:
        data[2:4] = ((len(data) - 20) & 0xFFFF).to_bytes(2, "big")
    return data


def _fix_fingerprints(data: bytearray) -> bytearray:
    """Make every 4-byte FINGERPRINT attribute correct for its position."""
    for start, end in attribute_spans(data):
        if data[start : start + 4] == b"\x80\x28\x00\x04" and end - start == 8:
            crc = zlib.crc32(data[:start]) ^ _FP_XOR
            data[start + 4 : end] = crc.to_bytes(4, "big")
    return data


@st.composite
def mutated_messages(draw: st.DrawFn, seeds: Sequence[bytes] = ()) -> bytes:
    """An encoded message (from :func:`encoded_messages` or ``seeds``) after
    one to four mutations of :data:`MUTATIONS`; then, usually, the header
    length field is made to fit and, half the time, the FINGERPRINTs are
    recomputed, so that the damage reaches the attribute decoders."""
    sources: list[st.SearchStrategy[bytes]] = [encoded_messages().map(lambda e: e.data)]
    if seeds:
        sources.insert(0, st.sampled_from(seeds))
    data = bytearray(draw(st.one_of(sources)))
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(MUTATIONS))(draw, data)
    if draw(st.integers(0, 3)):  # three times in four
        data = _fix_header_length(data)
    if draw(st.booleans()):
        data = _fix_fingerprints(data)
    return bytes(data)


# --- ChannelData, streams, demultiplexing -------------------------------------


def channel_data(max_size: int = 300) -> st.SearchStrategy[ChannelData]:
    """A valid :class:`ChannelData` with up to ``max_size`` bytes of data."""
    return st.builds(
        ChannelData,
        st.one_of(st.sampled_from([0x4000, 0x4FFF]), st.integers(0x4000, 0x4FFF)),
        st.binary(max_size=max_size),
    )


@st.composite
def channel_data_like(draw: st.DrawFn) -> bytes:
    """Bytes shaped like ChannelData: a channel number in and around
    0x4000-0x4FFF and a length field near the true one (padding included)."""
    channel = draw(st.one_of(st.integers(0x3FFF, 0x5000), st.integers(0, 0xFFFF)))
    payload = draw(st.binary(max_size=64))
    length = len(payload) - draw(st.integers(-2, 5))
    return channel.to_bytes(2, "big") + (length & 0xFFFF).to_bytes(2, "big") + payload


class Frame(NamedTuple):
    """One frame of a stream: its bytes and what the framer must return for it
    (``None``: a well-framed STUN message that does not parse, so dropped)."""

    data: bytes
    expected: Message | ChannelData | None


def _oracle(frame: bytes) -> Message | None:
    try:
        return parse_message(frame)
    except StunParseError:
        return None


@st.composite
def _framed_garbage(draw: st.DrawFn) -> Frame:
    """A STUN header that frames correctly in front of a random body."""
    body = draw(st.binary(max_size=64))
    body += bytes(-len(body) & 3)
    header = (
        draw(st.integers(0, 3)).to_bytes(1, "big")
        + draw(_U8).to_bytes(1, "big")
        + len(body).to_bytes(2, "big")
        + _COOKIE_BYTES
        + draw(st.binary(min_size=12, max_size=12))
    )
    frame = header + body
    return Frame(frame, _oracle(frame))


_STREAM_METHODS: st.SearchStrategy[int] = st.one_of(
    st.sampled_from(Method), st.integers(0, 0xFF)
)  # 0x100 and up put the first byte out of RFC 7983's 0-3
_STREAM_MESSAGES = messages(methods=_STREAM_METHODS)


def _bad_fingerprint(message: Message) -> Frame:
    data = message.encode(fingerprint=True)
    return Frame(data[:-1] + bytes([data[-1] ^ 0xFF]), None)


_FRAMES: st.SearchStrategy[Frame] = st.one_of(
    encoded_messages(_STREAM_MESSAGES).map(lambda e: Frame(e.data, e.message)),
    channel_data().map(lambda c: Frame(c.encode(padded=True), c)),
    _STREAM_MESSAGES.map(_bad_fingerprint),
    _framed_garbage(),
)


def stream_frames() -> st.SearchStrategy[list[Frame]]:
    """Frames as TURN over TCP carries them: STUN messages (some that fail to
    parse but frame correctly, some with a wrong FINGERPRINT) and padded
    ChannelData; methods stay below 0x100, as RFC 7983 demultiplexing needs."""
    return st.lists(_FRAMES, max_size=6)


@st.composite
def first_byte_biased(draw: st.DrawFn) -> bytes:
    """Bytes whose first byte sits on and around the RFC 7983 range edges,
    often with the magic cookie in place."""
    first = draw(
        st.one_of(
            st.sampled_from(
                [0, 3, 4, 15, 16, 19, 20, 63, 64, 79, 80, 127, 128, 191, 192, 255]
            ),
            _U8,
        )
    )
    rest = bytearray(draw(st.binary(max_size=40)))
    if draw(st.booleans()):
        rest[3:7] = _COOKIE_BYTES
    return bytes([first]) + bytes(rest)
