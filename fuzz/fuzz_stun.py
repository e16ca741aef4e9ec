"""Fuzz harnesses for the STUN codec (:mod:`syncice.stun`), one invariant each.

pytest runs them with the ``ci`` Hypothesis profile; ``fuzz/deep.py`` runs
them for a set time. For coverage-guided fuzzing, hand a harness's
``.hypothesis.fuzz_one_input`` to atheris; this module exports one per
harness (``fuzz_one_input`` is :func:`fuzz_parse_message`'s)::

    import atheris, sys
    sys.path[:0] = [".", "fuzz"]
    import fuzz_stun
    atheris.Setup(sys.argv, fuzz_stun.fuzz_one_input)
    atheris.Fuzz()

Those targets read Hypothesis choice sequences, not raw messages. To fuzz with
``fuzz/corpus/stun/`` as seeds, give atheris (or AFL) :func:`check_parse_message`
instead: it takes the raw datagram.

Seed corpus, ``fuzz/corpus/stun/``: ``*.stun`` files are STUN messages that
parse — the four RFC 5769 test vectors (``rfc5769-*``; their integrity keys are
in :data:`RFC5769_KEYS`), TURN Allocate (request, 401, authenticated request,
success), Refresh, CreatePermission, ChannelBind, Send and Data indications, an
ICE Binding request, a 420 error, a message with unknown attributes, one with
the whole budget of them (:data:`~syncice.stun.MAX_ATTRIBUTES`) and one with
attributes ignored between MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 —
and ``*.chan`` files are ChannelData. :func:`test_corpus_parses` feeds each to
its parser; the harnesses use them as explicit examples and mutation seeds.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import zlib
from collections.abc import Sequence
from pathlib import Path

from harness_tools import atheris_target, examples
from hypothesis import example, given
from hypothesis import strategies as st
from stun_strategies import (
    INTEGRITY_TYPES,
    EncodedMessage,
    Frame,
    attribute_spans,
    channel_data,
    channel_data_like,
    encoded_messages,
    first_byte_biased,
    keys,
    messages,
    mutated_messages,
    other_key,
    stream_frames,
)

from syncice.exceptions import StunParseError
from syncice.stun import (
    ATTRIBUTE_TYPES,
    COOKIE,
    MAX_ATTRIBUTES,
    MAX_FRAME,
    ChannelData,
    Class,
    Message,
    Method,
    StreamFramer,
    decode_attribute,
    is_channel_data,
    is_stun,
    long_term_key,
    parse_channel_data,
    parse_message,
    short_term_key,
)

CORPUS = Path(__file__).parent / "corpus" / "stun"
STUN_SEEDS: tuple[bytes, ...] = tuple(
    path.read_bytes() for path in sorted(CORPUS.glob("*.stun"))
)
CHANNEL_SEEDS: tuple[bytes, ...] = tuple(
    path.read_bytes() for path in sorted(CORPUS.glob("*.chan"))
)
#: The keys of the RFC 5769 vectors: §2.1-2.3 short-term, §2.4 long-term.
RFC5769_KEYS: dict[str, bytes] = {
    "rfc5769-request.stun": short_term_key("VOkJxbRl1RmTxUk/WvJxBt"),
    "rfc5769-response-ipv4.stun": short_term_key("VOkJxbRl1RmTxUk/WvJxBt"),
    "rfc5769-response-ipv6.stun": short_term_key("VOkJxbRl1RmTxUk/WvJxBt"),
    "rfc5769-request-long-term.stun": long_term_key(
        "\u30de\u30c8\u30ea\u30c3\u30af\u30b9",
        "example.org",
        "The\u00adM\u00aatr\u2168",
    ),
}

_COOKIE_BYTES = COOKIE.to_bytes(4, "big")
_FP_HEADER = b"\x80\x28\x00\x04"
_FP_XOR = 0x5354554E
_DECODED = frozenset(ATTRIBUTE_TYPES.values())
_ANY_FRAME_SIZE = st.one_of(st.just(MAX_FRAME), st.integers(24, 400))
_GARBAGE = st.one_of(
    st.binary(max_size=200),
    mutated_messages(),
    first_byte_biased(),
    channel_data_like(),
)


# --- parse_message -------------------------------------------------------------


def independent_macs(data: bytes, key: bytes) -> list[bool]:
    """Whether each MESSAGE-INTEGRITY(-SHA256) of ``data`` matches ``key``,
    computed here with :mod:`hmac` as RFC 8489 §14.5-14.6 say: over the
    message up to the attribute, with the header length pointing past it."""
    verdicts = []
    for start, _ in attribute_spans(data):
        attr_type = int.from_bytes(data[start : start + 2], "big")
        if attr_type in (0x0008, 0x001C):
            length = int.from_bytes(data[start + 2 : start + 4], "big")
            signed = (
                data[:2] + (start + 4 + length - 20).to_bytes(2, "big") + data[4:start]
            )
            digest = "sha1" if attr_type == 0x0008 else "sha256"
            mac = hmac.new(key, signed, digest).digest()[:length]
            verdicts.append(
                hmac.compare_digest(mac, data[start + 4 : start + 4 + length])
            )
    return verdicts


def _with_fingerprint(data: bytes) -> bytes:
    """``data`` with a FINGERPRINT appended, computed here with :mod:`zlib`."""
    data = data[:2] + (len(data) - 20 + 8).to_bytes(2, "big") + data[4:]
    crc = zlib.crc32(data) ^ _FP_XOR
    return data + _FP_HEADER + crc.to_bytes(4, "big")


def undecoded(data: bytes) -> int:
    """How many attributes of ``data`` spend the budget, walked without the
    codec: unknown and repeated ones before the first integrity attribute,
    and after it all but FINGERPRINT and a MESSAGE-INTEGRITY-SHA256 that
    follows MESSAGE-INTEGRITY (RFC 8489 §14.5, §14.6)."""
    types = [int.from_bytes(data[a : a + 2], "big") for a, _ in attribute_spans(data)]
    seen: set[int] = set()
    count = 0
    for index, attr_type in enumerate(types):
        if attr_type in INTEGRITY_TYPES:
            after = types[index + 1 :]
            if after and after[-1] == 0x8028:  # FINGERPRINT
                after.pop()
            if attr_type == 0x0008 and 0x001C in after:  # SHA-256 after SHA-1
                after.remove(0x001C)
            return count + len(after)
        if attr_type in _DECODED and attr_type not in seen:
            seen.add(attr_type)
        else:
            count += 1
    return count


def check_parsed(message: Message, data: bytes) -> None:
    """What must hold of any message that :func:`parse_message` accepted.

    Checked without the codec where possible: the framing, an independent
    attribute walk, FINGERPRINT position and CRC-32 (with :mod:`zlib`), which
    integrity attribute counts, that every attribute before it was kept, and
    that the attributes not decoded fit the budget (:func:`undecoded`).
    Then the message re-encodes, with the same kind of protection, to bytes
    that parse back equal.
    """
    assert len(data) == 20 + int.from_bytes(data[2:4], "big")
    assert len(data) % 4 == 0
    assert data[0] < 0x40
    assert data[4:8] == _COOKIE_BYTES
    assert message.transaction_id == data[8:20]
    spans = attribute_spans(data)
    assert (spans[-1][1] if spans else 20) == len(data), "attribute walk disagrees"
    types = [int.from_bytes(data[start : start + 2], "big") for start, _ in spans]

    fingerprint_last = (
        bool(types) and data[spans[-1][0] : spans[-1][0] + 4] == _FP_HEADER
    )
    assert message.has_fingerprint == fingerprint_last
    assert 0x8028 not in types[:-1], "FINGERPRINT accepted before the end"
    if message.has_fingerprint:
        crc = zlib.crc32(data[:-8]) ^ _FP_XOR
        assert int.from_bytes(data[-4:], "big") == crc, "FINGERPRINT CRC wrong"

    if 0x001C in types:
        assert message.integrity == "sha256"
    elif 0x0008 in types:
        assert message.integrity == "sha1"
    else:
        assert message.integrity is None
    protected = [i for i, t in enumerate(types) if t in INTEGRITY_TYPES]
    kept = protected[0] if protected else len(types)
    assert len(message.attributes) + len(message.extra_attributes) == kept
    assert undecoded(data) <= MAX_ATTRIBUTES, "accepted past the attribute budget"

    assert isinstance(message.check_integrity(b"some key"), bool)
    assert isinstance(repr(message), str)
    assert all(t < 0x8000 for t in message.unknown_required)
    for attr_type, value in message.extra_attributes:
        with contextlib.suppress(StunParseError):
            decode_attribute(attr_type, value, message.transaction_id)

    integrity = message.integrity
    again = parse_message(
        message.encode(
            key=b"key" if integrity else None,
            integrity=integrity or "sha1",
            fingerprint=message.has_fingerprint,
        )
    )
    assert again == message
    assert again.integrity == integrity
    assert again.has_fingerprint == message.has_fingerprint


def check_parse_message(data: bytes) -> None:
    """The body of :func:`fuzz_parse_message`, for fuzzers that feed raw bytes."""
    message = _parse_or_none(data)
    assert _parse_or_none(memoryview(bytearray(data))) == message
    if message is not None:
        check_parsed(message, data)


def _parse_or_none(data: bytes | memoryview) -> Message | None:
    try:
        return parse_message(data)
    except StunParseError:
        return None


@examples(*STUN_SEEDS)
@given(st.binary(max_size=1500))
def fuzz_parse_message(data: bytes) -> None:
    """parse_message raises StunParseError or returns a message that re-encodes,
    with the same protection, to one that parses back equal."""
    check_parse_message(data)


@examples(*STUN_SEEDS)
@given(mutated_messages(STUN_SEEDS))
def fuzz_parse_mutated(data: bytes) -> None:
    """A damaged message raises only StunParseError, and if it parses with
    has_fingerprint its last attribute is a FINGERPRINT whose CRC-32 matches
    (and the rest of check_parsed holds)."""
    check_parse_message(data)


_MANY_EXTRAS = Message(
    Method.BINDING,
    Class.INDICATION,
    bytes(12),
    {"DATA": b"\x00" * 1000},
    [(0x7F00 + i, bytes(i % 5)) for i in range(MAX_ATTRIBUTES)],
)


@example(
    EncodedMessage(
        _MANY_EXTRAS,
        b"k",
        "both",
        True,
        _MANY_EXTRAS.encode(key=b"k", integrity="both", fingerprint=True),
    )
)
@given(encoded_messages())
def fuzz_roundtrip(encoded: EncodedMessage) -> None:
    """A generated message parses back equal, reporting the integrity and
    FINGERPRINT it was encoded with, and checks against its key and no other."""
    message, key, _, fingerprint, data, _ = encoded
    assert len(data) % 4 == 0
    assert len(data) == 20 + int.from_bytes(data[2:4], "big")
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.has_fingerprint is fingerprint
    assert parsed.integrity == encoded.expected_integrity
    if key is None:
        assert not parsed.check_integrity(b"")
        assert independent_macs(data, b"") == []
    else:
        assert parsed.check_integrity(key)
        assert not parsed.check_integrity(other_key(key))
        count = 2 if encoded.integrity == "both" else 1
        assert independent_macs(data, key) == [True] * count
        assert independent_macs(data, other_key(key)) == [False] * count
    expected_required = tuple(
        t for t, _ in message.extra_attributes if t < 0x8000 and t not in _DECODED
    )
    assert parsed.unknown_required == expected_required
    assert is_stun(data) is (message.method < 0x100)  # RFC 7983: first byte 0-3
    again = message.encode(
        key=key,
        integrity=encoded.integrity,
        fingerprint=fingerprint,
        padding=encoded.padding,
    )
    assert again == data, "encode() is not deterministic"


@given(messages(), keys(), st.sampled_from([16, 20, 24, 28]), st.booleans())
def fuzz_truncated_sha256(
    message: Message, key: bytes, size: int, fingerprint: bool
) -> None:
    """A MESSAGE-INTEGRITY-SHA256 truncated to 16-28 bytes (RFC 8489 §14.6),
    built here with hmac, parses and checks against its key and no other."""
    full = message.encode(key=key, integrity="sha256")
    at = len(full) - 36
    signed = full[:2] + (at + 4 + size - 20).to_bytes(2, "big") + full[4:at]
    mac = hmac.new(key, signed, "sha256").digest()[:size]
    data = signed + b"\x00\x1c" + size.to_bytes(2, "big") + mac
    if fingerprint:
        data = _with_fingerprint(data)
    parsed = parse_message(data)
    assert parsed == message
    assert parsed.integrity == "sha256"
    assert parsed.has_fingerprint is fingerprint
    assert parsed.check_integrity(key)
    assert not parsed.check_integrity(other_key(key))


# --- ChannelData ---------------------------------------------------------------


@examples(*CHANNEL_SEEDS)
@given(st.one_of(st.binary(max_size=300), channel_data_like()))
def fuzz_channel_data(data: bytes) -> None:
    """parse_channel_data raises only StunParseError, and accepts only a channel
    in 0x4000-0x4FFF with exactly its length of data and 0-3 bytes after it."""
    try:
        message = parse_channel_data(data)
    except StunParseError:
        return
    length = int.from_bytes(data[2:4], "big")
    assert is_channel_data(data)
    assert message.channel == int.from_bytes(data[:2], "big")
    assert 0x4000 <= message.channel <= 0x4FFF
    assert 0 <= len(data) - 4 - length <= 3
    assert message.data == data[4 : 4 + length]


@example(message=ChannelData(0x4FFF, b"x" * 0xFFFF), padded=True)
@example(message=ChannelData(0x4000, b""), padded=False)
@given(channel_data(), st.booleans())
def fuzz_channel_data_roundtrip(message: ChannelData, padded: bool) -> None:
    """A ChannelData parses back equal from its encoding, padded to a multiple
    of four bytes or not."""
    data = message.encode(padded=padded)
    assert len(data) == 4 + len(message.data) + (
        -len(message.data) & 3 if padded else 0
    )
    assert parse_channel_data(data) == message
    assert is_channel_data(data)
    assert bytes(message) == message.encode()


# --- StreamFramer --------------------------------------------------------------


def _expected(frames: Sequence[Frame]) -> tuple[list[Message | ChannelData], int]:
    kept = [frame.expected for frame in frames if frame.expected is not None]
    return kept, len(frames) - len(kept)


def _framer_for(frames: Sequence[Frame], max_frame: int) -> StreamFramer:
    return StreamFramer(max_frame=max(max_frame, *(len(f.data) for f in frames), 24))


def _feed_all(
    framer: StreamFramer, chunks: Sequence[bytes]
) -> list[Message | ChannelData]:
    out: list[Message | ChannelData] = []
    for chunk in chunks:
        out += framer.feed(chunk)
        assert framer.buffered <= framer.max_frame
    return out


def _feed_garbage(framer: StreamFramer, chunks: Sequence[bytes]) -> None:
    """Feed arbitrary bytes: only StunParseError, bounded buffer, sticky error."""
    failed = False
    for chunk in chunks:
        try:
            frames = framer.feed(chunk)
        except StunParseError:
            failed = True
            assert framer.buffered == 0
        else:
            assert not failed, "feed() returned after the stream was lost"
            assert all(isinstance(f, Message | ChannelData) for f in frames)
        assert framer.buffered <= framer.max_frame
    if failed:
        try:
            framer.feed(b"")
        except StunParseError:
            pass
        else:
            raise AssertionError("feed(b'') returned after the stream was lost")


def _chunks(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(stream_frames(), _GARBAGE, _ANY_FRAME_SIZE)
def fuzz_stream_framer_whole(
    frames: list[Frame], garbage: bytes, max_frame: int
) -> None:
    """A stream of frames fed whole yields its messages in order (frames that do
    not parse counted as dropped) and leaves nothing buffered; bytes fed after
    it raise only StunParseError, keep at most max_frame bytes buffered, and
    once feed() has raised it raises on every call."""
    framer = _framer_for(frames, max_frame)
    expected, dropped = _expected(frames)
    assert framer.feed(b"".join(f.data for f in frames)) == expected
    assert framer.dropped == dropped
    assert framer.buffered == 0
    _feed_garbage(framer, [garbage, garbage])


@given(stream_frames(), _GARBAGE, _ANY_FRAME_SIZE, st.data())
def fuzz_stream_framer_bytewise(
    frames: list[Frame], garbage: bytes, max_frame: int, data: st.DataObject
) -> None:
    """The same stream fed in random chunks, and byte by byte, yields the same
    messages in order and leaves nothing buffered; bytes fed after it raise only
    StunParseError, keep at most max_frame bytes buffered, and once feed() has
    raised it raises on every call."""
    stream = b"".join(f.data for f in frames)
    expected, dropped = _expected(frames)
    cut_points = st.lists(st.integers(0, len(stream)), max_size=12)
    chunked = _framer_for(frames, max_frame)
    assert _feed_all(chunked, _chunks(stream, data.draw(cut_points))) == expected
    bytewise = _framer_for(frames, max_frame)
    assert (
        _feed_all(bytewise, [stream[i : i + 1] for i in range(len(stream))]) == expected
    )
    for framer in (chunked, bytewise):
        assert framer.dropped == dropped
        assert framer.buffered == 0
    garbage_cuts = st.lists(st.integers(0, len(garbage)), max_size=6)
    _feed_garbage(chunked, _chunks(garbage, data.draw(garbage_cuts)))
    _feed_garbage(bytewise, [garbage[i : i + 1] for i in range(len(garbage))])


# --- demultiplexing ------------------------------------------------------------


@given(st.one_of(first_byte_biased(), st.binary(max_size=64)))
def fuzz_is_stun(data: bytes) -> None:
    """is_stun and is_channel_data never raise and answer exactly RFC 7983's
    first-byte ranges (STUN 0-3 with the magic cookie, ChannelData 64-79)."""
    stun = is_stun(data)
    channel = is_channel_data(data)
    assert stun is (len(data) >= 20 and data[0] <= 3 and data[4:8] == _COOKIE_BYTES)
    assert channel is (len(data) >= 4 and 64 <= data[0] <= 79)
    assert not (stun and channel)


# --- the seed corpus -----------------------------------------------------------


def test_corpus_parses() -> None:
    """Every corpus file parses with its parser and passes the harness checks;
    the RFC 5769 vectors verify with the RFC's passwords and no other key."""
    assert len(STUN_SEEDS) >= 10
    assert CHANNEL_SEEDS
    for path in sorted(CORPUS.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".stun":
            message = parse_message(data)
            check_parsed(message, data)
            key = RFC5769_KEYS.get(path.name)
            if key is not None:
                assert message.check_integrity(key), path.name
                assert not message.check_integrity(other_key(key)), path.name
                assert independent_macs(data, key) == [True], path.name
        elif path.suffix == ".chan":
            assert parse_channel_data(data).encode(padded=len(data) % 4 == 0) == data
        else:
            raise AssertionError(f"{path.name}: corpus files end in .stun or .chan")
    assert set(RFC5769_KEYS) <= {p.name for p in CORPUS.iterdir()}


# Entry points for atheris or AFL (see the module docstring).
fuzz_one_input = atheris_target(fuzz_parse_message)
fuzz_one_input_parse_message = fuzz_one_input
fuzz_one_input_parse_mutated = atheris_target(fuzz_parse_mutated)
fuzz_one_input_roundtrip = atheris_target(fuzz_roundtrip)
fuzz_one_input_truncated_sha256 = atheris_target(fuzz_truncated_sha256)
fuzz_one_input_channel_data = atheris_target(fuzz_channel_data)
fuzz_one_input_channel_data_roundtrip = atheris_target(fuzz_channel_data_roundtrip)
fuzz_one_input_stream_framer_whole = atheris_target(fuzz_stream_framer_whole)
fuzz_one_input_stream_framer_bytewise = atheris_target(fuzz_stream_framer_bytewise)
fuzz_one_input_is_stun = atheris_target(fuzz_is_stun)
