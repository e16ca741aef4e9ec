"""Fuzz harness for the cost of :func:`~syncice.stun.parse_message` on hostile
datagrams, measured without a clock.

Invariant: whatever the bytes, ``parse_message`` makes at most
:data:`CALL_BOUND` function calls and allocates at most :func:`peak_bound`
bytes at once, so a 64 KiB datagram of 16k attributes costs a small multiple
of an ordinary 64 KiB message; and a message that needs more than
:data:`~syncice.stun.MAX_ATTRIBUTES` undecoded attributes is rejected.

The work is counted, not timed (tests never assert on time): :func:`parse_cost`
counts every Python and C function call the parse makes with
:func:`sys.setprofile`, and its peak allocation with :mod:`tracemalloc`. Calls
track the per-attribute work of the walk (one ``unpack_from`` per attribute
header, a dictionary look-up, an append); the peak catches what one C call
can do in proportion to its input, such as unpacking 32k UNKNOWN-ATTRIBUTES
types. Under a profiler (``fuzz/deep.py --profile``) the calls cannot be
counted, and only the peak is checked.

:func:`hostile_messages` builds layouts of up to 64 KiB from runs of repeated
attributes: empty unknown ones, comprehension-required ones, repeated known
ones, integrity attributes anywhere, long PASSWORD-ALGORITHMS and
UNKNOWN-ATTRIBUTES lists, IPv6 addresses, lengths that run past the end,
with or without a correct FINGERPRINT; ``hypothesis.target`` steers the
search towards the costliest.
"""

from __future__ import annotations

import sys
import tracemalloc
import zlib
from types import FrameType
from typing import NamedTuple, cast

from fuzz_stun import STUN_SEEDS, check_parsed, undecoded
from harness_tools import atheris_target, examples
from hypothesis import given, target
from hypothesis import strategies as st
from stun_strategies import attribute_values

from syncice.exceptions import StunParseError
from syncice.stun import (
    ATTRIBUTE_TYPES,
    COOKIE,
    MAX_ATTRIBUTES,
    Attributes,
    Class,
    Message,
    Method,
    parse_message,
)

_MI, _MI256, _FP = 0x0008, 0x001C, 0x8028
_BODY = 0xFFFC  # the longest body: a 64 KiB datagram less the header

#: The most function calls (Python and C) ``parse_message`` makes for any
#: input. A visited attribute costs at most 12 when decoded (the decoder and
#: what it calls), 4 when kept raw and 2 when ignored after integrity, and a
#: PASSWORD-ALGORITHM(S) entry 4 (16 entries at most, and one it rejects);
#: the walk visits one attribute per known type, MAX_ATTRIBUTES others, the
#: three integrity attributes and one it rejects. Before the budget, a 64 KiB
#: datagram of empty attributes after MESSAGE-INTEGRITY cost 2 calls for each
#: of its 16k attributes.
CALL_BOUND = (
    32 + 12 * len(ATTRIBUTE_TYPES) + 4 * (MAX_ATTRIBUTES + 4) + 4 * 2 * (16 + 1)
)


def peak_bound(size: int) -> int:
    """The most bytes ``parse_message`` may hold at once for ``size`` bytes:
    the input again (the slices it keeps, or the copy FINGERPRINT is checked
    over) and 32 KiB of objects for at most MAX_ATTRIBUTES attributes."""
    return 2 * size + 32 * 1024


class Cost(NamedTuple):
    """What one call of ``parse_message`` cost, and what it returned."""

    calls: int | None  # None under another profiler
    peak: int
    message: Message | None  # None when it raised StunParseError


def parse_cost(data: bytes) -> Cost:
    """Parse ``data``, counting the calls made and the peak bytes allocated."""
    calls = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call" or event == "c_call":
            calls += 1

    counting = sys.getprofile() is None
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    if counting:
        sys.setprofile(count)
    try:
        message: Message | None = parse_message(data)
    except StunParseError:
        message = None
    finally:
        if counting:
            sys.setprofile(None)
        peak = tracemalloc.get_traced_memory()[1] - base
        if not tracing:
            tracemalloc.stop()
    return Cost(calls if counting else None, peak, message)


# --- hostile layouts -------------------------------------------------------------


def tlv(attr_type: int, value: bytes = b"") -> bytes:
    """One attribute: header, value and padding."""
    padding = bytes(-len(value) & 3)
    return (
        attr_type.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value + padding
    )


def stun_message(
    body: bytes, *, fingerprint: bool = False, tid: bytes = bytes(12)
) -> bytes:
    """A Binding request with ``body``, and a correct FINGERPRINT if asked."""
    size = len(body) + (8 if fingerprint else 0)
    data = (
        b"\x00\x01" + size.to_bytes(2, "big") + COOKIE.to_bytes(4, "big") + tid + body
    )
    if fingerprint:
        crc = zlib.crc32(data) ^ 0x5354554E
        data += tlv(_FP, crc.to_bytes(4, "big"))
    return data


@st.composite
def _known_tlv(draw: st.DrawFn) -> bytes:
    """A known attribute with a valid value, encoded by the codec."""
    name = draw(st.sampled_from(sorted(ATTRIBUTE_TYPES)))
    value = draw(attribute_values(name))
    attributes = cast(Attributes, {name: value})
    return bytes(Message(Method.BINDING, Class.REQUEST, bytes(12), attributes))[20:]


_TYPES = st.integers(0, 0xFFFF)
_ENTRY = st.sampled_from([b"\x00\x01\x00\x00", b"\x00\x02\x00\x04abcd"])
_TLVS: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from([0x8888, 0x7777, 0xC057, 0x0006, 0x0024]).map(tlv),  # empty
    st.builds(tlv, _TYPES, st.binary(max_size=24)),
    _known_tlv(),
    st.sampled_from(
        [tlv(_MI, bytes(20)), tlv(_MI256, bytes(32)), tlv(_MI256, bytes(16))]
    ),
    st.builds(tlv, st.just(_FP), st.binary(min_size=4, max_size=4)),
    st.builds(  # PASSWORD-ALGORITHM(S): many entries
        lambda t, e, n: tlv(t, e * n),
        st.sampled_from([0x8002, 0x001D]),
        _ENTRY,
        st.integers(0, 8000),
    ),
    st.builds(  # UNKNOWN-ATTRIBUTES: many types
        lambda n: tlv(0x000A, b"\x7f\xff" * n), st.integers(0, 32000)
    ),
    st.builds(  # an IPv6 address, plain or XOR-ed, never seen before
        lambda t, raw: tlv(t, b"\x00\x02\x12\x34" + raw),
        st.sampled_from([0x0001, 0x0012, 0x0016, 0x0020, 0x8023]),
        st.binary(min_size=16, max_size=16),
    ),
    st.builds(  # a length that runs past the end
        lambda t, n: t.to_bytes(2, "big") + n.to_bytes(2, "big"),
        _TYPES,
        st.integers(4, 0xFFFF),
    ),
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A datagram of up to 64 KiB built from runs of repeated attributes."""
    fingerprint = draw(st.booleans())
    room = _BODY - (8 if fingerprint else 0)
    body = bytearray()
    for piece, count in draw(
        st.lists(st.tuples(_TLVS, st.integers(1, 16383)), min_size=1, max_size=8)
    ):
        fits = min(count, (room - len(body)) // len(piece))
        body += piece * fits
    return stun_message(bytes(body), fingerprint=fingerprint)


def _flood(first: bytes, piece: bytes, *, fingerprint: bool = False) -> bytes:
    room = _BODY - len(first) - (8 if fingerprint else 0)
    return stun_message(first + piece * (room // len(piece)), fingerprint=fingerprint)


def _all_known() -> bytes:
    """Every known attribute once, each with a costly valid value."""
    return b"".join(
        [
            tlv(0x0001, b"\x00\x02\x12\x34" + bytes(range(16))),
            tlv(0x0006, ("\U0001f600" * 128).encode()),
            tlv(0x0009, b"\x00\x00\x04\x00" + ("\u00e9" * 381).encode()),
            tlv(0x000A, b"\x00\x31" * MAX_ATTRIBUTES),
            tlv(0x000C, b"\x40\x00\x00\x00"),
            tlv(0x000D, bytes(4)),
            tlv(0x0012, b"\x00\x02\x12\x34" + bytes(range(1, 17))),
            tlv(0x0013, b""),
            tlv(0x0014, ("\u00e9" * 381).encode()),
            tlv(0x0015, bytes(763)),
            tlv(0x0016, b"\x00\x02\x12\x34" + bytes(range(2, 18))),
            tlv(0x0017, bytes(4)),
            tlv(0x0018, b"\x80"),
            tlv(0x0019, bytes(4)),
            tlv(0x001A),
            tlv(0x001D, b"\x00\x01\x00\x00"),
            tlv(0x001E, bytes(32)),
            tlv(0x0020, b"\x00\x02\x12\x34" + bytes(range(3, 19))),
            tlv(0x0022, bytes(8)),
            tlv(0x0024, bytes(4)),
            tlv(0x0025),
            tlv(0x8000, bytes(4)),
            tlv(0x8002, b"\x00\x01\x00\x00" * 16),
            tlv(0x8003, b"a" * 255),
            tlv(0x8022, ("\u00e9" * 381).encode()),
            tlv(0x8023, b"\x00\x02\x12\x34" + bytes(range(4, 20))),
            tlv(0x8029, bytes(8)),
            tlv(0x802A, bytes(8)),
        ]
    )


_UNKNOWN = tlv(0x8888)
_WORST = [
    _flood(b"", _UNKNOWN),
    _flood(tlv(_MI, bytes(20)), _UNKNOWN),
    _flood(tlv(_MI256, bytes(32)), _UNKNOWN),
    _flood(tlv(0x0006, b"u"), tlv(0x0006)),
    _flood(b"", tlv(0x8002, b"\x00\x01\x00\x00" * 16382)),
    _flood(b"", tlv(0x000A, b"\x7f\xff" * 32764)),
    stun_message(
        _all_known()
        + b"".join(tlv(0x7000 + i) for i in range(MAX_ATTRIBUTES))
        + tlv(_MI, bytes(20))
        + tlv(_MI256, bytes(32)),
        fingerprint=True,
    ),
    stun_message(
        _all_known()
        + tlv(_MI, bytes(20))
        + b"".join(tlv(0x7000 + i) for i in range(MAX_ATTRIBUTES))
        + tlv(_MI256, bytes(32)),
        fingerprint=True,
    ),
]


def check_cost(data: bytes) -> None:
    """The body of :func:`fuzz_parse_cost`, for fuzzers that feed raw bytes."""
    cost = parse_cost(data)
    if cost.calls is not None:
        target(float(cost.calls), label="calls")
        assert cost.calls <= CALL_BOUND, f"{cost.calls} calls"
    assert cost.peak <= peak_bound(len(data)), f"{cost.peak} bytes at the peak"
    if undecoded(data) > MAX_ATTRIBUTES:
        assert cost.message is None, "accepted past the budget"
    if cost.message is not None:
        check_parsed(cost.message, data)


@examples(*_WORST, *STUN_SEEDS)
@given(hostile_messages())
def fuzz_parse_cost(data: bytes) -> None:
    """parse_message makes at most CALL_BOUND calls and holds at most
    peak_bound(len(data)) bytes, and rejects what needs more than
    MAX_ATTRIBUTES undecoded attributes."""
    check_cost(data)


@given(st.binary(max_size=1500))
def fuzz_parse_cost_of_any_bytes(data: bytes) -> None:
    """The same for any bytes, which mostly fail early."""
    check_cost(data)


def test_the_counter_sees_the_walk() -> None:
    """The instrument measures what matters: calls grow with the attributes
    walked up to the budget, and then stop growing."""
    costs = [
        parse_cost(stun_message(tlv(_MI, bytes(20)) + _UNKNOWN * n)).calls
        for n in (0, 64, MAX_ATTRIBUTES, MAX_ATTRIBUTES + 1, 16000)
    ]
    if costs[0] is None:  # under a profiler
        return
    none, half, full, over, flood = (c or 0 for c in costs)
    assert none < half < full <= over
    assert flood == over  # rejected at the same attribute
    assert full - none >= MAX_ATTRIBUTES  # one unpack per attribute at least


def test_worst_cases_stay_within_the_bounds() -> None:
    for data in _WORST:
        cost = parse_cost(data)
        assert cost.calls is None or cost.calls <= CALL_BOUND
        assert cost.peak <= peak_bound(len(data))
    # The two largest accepted layouts parse.
    assert parse_cost(_WORST[-1]).message is not None
    assert parse_cost(_WORST[-2]).message is not None


# Entry points for atheris or AFL (see fuzz_stun's docstring).
fuzz_one_input_parse_cost = atheris_target(fuzz_parse_cost)
fuzz_one_input_parse_cost_of_any_bytes = atheris_target(fuzz_parse_cost_of_any_bytes)
